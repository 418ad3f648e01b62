"""The closed loop over ROS 2 topics in simulation with the shipped model: `wam demo` (what `make demo` runs).

    summary = run_demo("models/panda_tabletop", "onnxruntime", episodes=5, seed=10_000, out=Path("runs/demo"))
    wam demo --episodes 10 --seed 20000 --backend torch --out runs/demo          # wam_ros/cli/demo.py

Starts the sim_demo graph in-process (config/bringup/sim_demo.yaml: sim_node + wam_node, as `wam bringup sim_demo`),
adds a small driver node that resets episodes through the sim/reset and wam/reset services (std_srvs/Trigger), waits for
wam/episode_success, then prints the success rate, the achieved control rate, inference p50/p99, the node's ROS
overhead (its control step minus predict(): message conversion, safety filter, publishing) and missed control cycles,
and writes runs/demo/demo.gif (camera | imagined next frame, side by side) and runs/demo/summary.json.
Episode seeds start at 10000: the training collections use hashed 31-bit scene seeds (wam_ros.train.collect).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from wam_ros.ros import conversions as conv
from wam_ros.ros.bringup import Bringup

GIF_SCALE = 3
GIF_MAX_FRAMES = 240


class DemoDriver(Node):
    """Resets episodes and records outcomes and (camera, imagined) frame pairs, all over ROS topics."""

    def __init__(self, **kwargs) -> None:
        super().__init__("demo_driver", **kwargs)
        self.outcomes: list[bool] = []
        self.pairs: list[tuple[np.ndarray, np.ndarray]] = []
        self.predicted: np.ndarray | None = None
        self.create_subscription(
            Bool, "wam/episode_success", lambda m: self.outcomes.append(bool(m.data)), 10
        )
        self.create_subscription(Image, "wam/predicted_image", self.on_predicted, 10)
        self.create_subscription(Image, "camera/image_raw", self.on_camera, 10)
        self.reset_client = self.create_client(Trigger, "sim/reset")
        self.wam_reset_client = self.create_client(Trigger, "wam/reset")
        self.recording = True

    def on_predicted(self, msg: Image) -> None:
        self.predicted = np.array(conv.image_to_rgb(msg))

    def on_camera(self, msg: Image) -> None:
        if self.recording and self.predicted is not None and len(self.pairs) < GIF_MAX_FRAMES:
            self.pairs.append((np.array(conv.image_to_rgb(msg)), self.predicted))


def write_gif(pairs: list[tuple[np.ndarray, np.ndarray]], path: Path, fps: float) -> None:
    from PIL import Image as PILImage

    frames = []
    for cam, pred in pairs:
        pred = (
            pred if pred.shape == cam.shape else np.asarray(PILImage.fromarray(pred).resize(cam.shape[1::-1]))
        )
        gap = np.full((cam.shape[0], 2, 3), 255, np.uint8)
        row = np.concatenate([cam, gap, pred], axis=1)
        frames.append(
            PILImage.fromarray(row).resize(
                (row.shape[1] * GIF_SCALE, row.shape[0] * GIF_SCALE), PILImage.NEAREST
            )
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)


def pct(values: object, q: float) -> float:
    arr = np.asarray(list(values), dtype=np.float64)
    return float(np.percentile(arr, q)) if arr.size else float("nan")


def run_demo(
    model: str,
    backend: str,
    episodes: int,
    seed: int,
    out: Path | None,
    timeout_s: float = 30.0,
    domain_id: int | None = None,
    planner: str = "none",
    candidates: int = 16,
    robot: str = "panda",
) -> dict:
    """Run the closed-loop demo; returns the summary dict (also written to out/summary.json when out is given).
    planner "best_of_n": wam_node imagines `candidates` chunks per decision and executes the best (issue 16).
    robot: the profile sim_node builds; wam_node drives the robot its model was trained for, and a model whose joints
    are not the sim robot's is refused (ValueError) before any episode runs."""
    args = {
        "model": model,
        "robot": robot,
        "backend": backend,
        "seed": str(seed),
        "planner": planner,
        "candidates": str(candidates),
    }
    with Bringup("sim_demo", args, domain_id=domain_id) as b:
        sim, wam = b.nodes["sim"], b.nodes["wam"]
        if list(wam.joint_names) != list(sim.joint_names):
            raise ValueError(
                f"model {model} drives joints {wam.joint_names}, the simulated robot {robot!r} has "
                f"{sim.joint_names}: pass the --robot the model was trained for"
            )
        driver = DemoDriver(context=b.context)
        b.add_node(driver)
        t0, cycles0 = time.monotonic(), wam.stats["cycles"]
        for ep in range(episodes):
            if ep > 0:
                driver.recording = ep < 2  # the GIF shows the first two episodes
                for client in (
                    driver.reset_client,
                    driver.wam_reset_client,
                ):  # the sim, then the policy's history
                    future = client.call_async(Trigger.Request())
                    if not b.spin_until(future.done, 10.0):
                        raise RuntimeError(f"{client.srv_name} service did not answer within 10 s")
            n = len(driver.outcomes)
            if not b.spin_until(lambda n=n: len(driver.outcomes) > n, timeout_s):
                driver.outcomes.append(False)  # the episode did not end in time: a failure
        elapsed = time.monotonic() - t0
        stats = wam.stats
        infer, overhead = np.asarray(stats["infer_s"]), np.asarray(stats["overhead_s"])
        summary = {
            "model": model,
            "robot": robot,
            "backend": backend,
            "episodes": episodes,
            "seeds": [seed + i for i in range(episodes)],
            "successes": int(sum(driver.outcomes[:episodes])),
            "success_rate": float(np.mean(driver.outcomes[:episodes])) if episodes else float("nan"),
            "episode_results": sim.results,
            "control_hz_target": wam.control_hz,
            "control_hz_achieved": (stats["cycles"] - cycles0) / elapsed if elapsed > 0 else float("nan"),
            "inference_ms_p50": pct(infer * 1e3, 50),
            "inference_ms_p99": pct(infer * 1e3, 99),
            "ros_overhead_ms_p50": pct(overhead * 1e3, 50),
            "ros_overhead_ms_p99": pct(overhead * 1e3, 99),
            "planner": planner,
            "candidates": candidates if planner != "none" else None,
            "missed_cycles": stats["missed"],
            "ticks": stats["ticks"],
            "holds": stats["holds"],
            "refused": stats["refused"],
            "wall_s": elapsed,
        }
        pairs = list(driver.pairs)
        b.executor.remove_node(driver)
        driver.destroy_node()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if pairs:
            write_gif(pairs, out / "demo.gif", fps=summary["control_hz_target"])
            summary["gif"] = str(out / "demo.gif")
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
