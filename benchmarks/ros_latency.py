"""End-to-end latency of wam_node over ROS 2 beside bare predict(), measured side by side in one run.

    .venv/bin/python benchmarks/ros_latency.py                       # shipped model, onnxruntime CPU, 300 frames
    .venv/bin/python benchmarks/ros_latency.py --model /tmp/m/model.pt --backend torch --count 200

An echo node (answers each frame at once, no model) measures the transport floor in the same run.
Three processes: this one (bare `policy.predict()` on the same inputs, before and after the ROS run), wam_node
(`wam bringup robot trigger:=camera control_hz:=30`, a subprocess) and the stand-in robot (wam_ros.ros._robot_probe
pingpong, a subprocess): it publishes joint_states + one 64x64 rgb8 frame, waits for the JointTrajectory computed from
that frame (matched by stamp) and records publish -> receive. ROS overhead = e2e p50 - bare predict p50. Goal: <= 1.5 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def bare_predict(model: str, backend: str, n: int) -> np.ndarray:
    from wam_ros.robot import RobotProfile
    from wam_ros.runtime import load_policy

    policy = load_policy(model, backend=backend, threads=1)  # the node's setting (config/wam_node.yaml)
    rng = np.random.default_rng(0)
    q = np.asarray(RobotProfile.load(policy.spec.robot).home, dtype=np.float64)
    frames = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(policy.spec.k_frames)]
    obs = {"images": frames, "joint_pos": q, "instruction": "reach the red target"}
    for _ in range(20):
        policy.predict(obs)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        policy.predict(obs)
        out.append(time.perf_counter() - t)
    return np.asarray(out)


def echo_node() -> None:
    """The transport floor: a node that answers each camera frame at once with a JointTrajectory (same stamp)."""
    import rclpy
    import rclpy.executors
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image, JointState
    from trajectory_msgs.msg import JointTrajectory

    from wam_ros.robot import RobotProfile
    from wam_ros.ros import conversions as cv

    rclpy.init()
    node = rclpy.create_node("echo")
    names, home = RobotProfile.load("panda").joint_names, np.asarray(RobotProfile.load("panda").home)[None]
    pub = node.create_publisher(JointTrajectory, "arm_controller/joint_trajectory", 10)
    node.create_subscription(Image, "camera/image_raw",
                             lambda m: pub.publish(cv.trajectory(names, home, 0.1, m.header.stamp)),
                             qos_profile_sensor_data)
    node.create_subscription(JointState, "joint_states", lambda m: None, qos_profile_sensor_data)  # like wam_node
    with contextlib.suppress(KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        rclpy.spin(node)


def ros_pingpong(model: str, backend: str, count: int, rate: float, domain: int, echo: bool = False) -> dict:
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain))
    cmd = ([sys.executable, __file__, "--echo-node"] if echo else
           [sys.executable, "-m", "wam_ros.cli", "bringup", "robot", f"model:={model}", f"backend:={backend}",
            "trigger:=camera", "control_hz:=30.0", "surprise_hold:=false"])
    node = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "pingpong.json"
            probe = subprocess.run([sys.executable, "-m", "wam_ros.ros._robot_probe", "pingpong", "--out", str(out),
                                    "--count", str(count), "--rate", str(rate)],
                                   env=env, cwd=ROOT, capture_output=True, text=True, timeout=120 + count / rate * 2)
            if not out.exists():
                raise RuntimeError(f"robot probe failed: {probe.stderr[-2000:]}")
            return json.loads(out.read_text())
    finally:
        node.terminate()
        try:
            node.wait(timeout=10)
        except subprocess.TimeoutExpired:
            node.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "models" / "panda_tabletop"))
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--count", type=int, default=300, help="frames in the ROS ping-pong")
    ap.add_argument("--rate", type=float, default=30.0, help="frames per second")
    ap.add_argument("--domain", type=int, default=200 + os.getpid() % 32,
                    help="ROS_DOMAIN_ID for the run (default: one of 200-231 from the pid, away from other runs)")
    ap.add_argument("--json", default="", help="also write the figures to this JSON file")
    ap.add_argument("--echo-node", action="store_true", help=argparse.SUPPRESS)  # internal: run the echo node
    a = ap.parse_args()
    if a.echo_node:
        echo_node()
        return 0
    if not Path(a.model).exists():
        print(f"model not found: {a.model}")
        return 2
    before = bare_predict(a.model, a.backend, a.count // 2)
    floor = ros_pingpong(a.model, a.backend, a.count, a.rate, a.domain, echo=True)
    res = ros_pingpong(a.model, a.backend, a.count, a.rate, a.domain)
    after = bare_predict(a.model, a.backend, a.count // 2)
    echo = np.asarray(floor.get("latency_s", [])) * 1e3
    bare = np.concatenate([before, after]) * 1e3
    e2e = np.asarray(res["latency_s"]) * 1e3
    if e2e.size == 0:
        print(f"no command came back ({res.get('lost')} frames lost); is the node running?")
        return 1
    figs = {"model": a.model, "backend": a.backend, "frames": a.count, "received": int(e2e.size), "lost": res["lost"],
            "bare_p50_ms": float(np.percentile(bare, 50)), "bare_p99_ms": float(np.percentile(bare, 99)),
            "e2e_p50_ms": float(np.percentile(e2e, 50)), "e2e_p99_ms": float(np.percentile(e2e, 99))}
    figs["overhead_p50_ms"] = figs["e2e_p50_ms"] - figs["bare_p50_ms"]
    figs["overhead_p99_ms"] = figs["e2e_p99_ms"] - figs["bare_p99_ms"]
    figs["ratio_p50"] = figs["e2e_p50_ms"] / figs["bare_p50_ms"]
    figs["node_step_overhead_p50_ms"] = float(res.get("last_diag", {}).get("step_overhead_ms_p50", "nan"))
    figs["echo_p50_ms"] = float(np.percentile(echo, 50)) if echo.size else float("nan")
    figs["echo_p99_ms"] = float(np.percentile(echo, 99)) if echo.size else float("nan")
    print(f"bare predict() ({a.backend}, 1 thread): p50 {figs['bare_p50_ms']:.2f} ms  p99 {figs['bare_p99_ms']:.2f} ms")
    print(f"ROS end-to-end (camera published -> command received, separate processes): "
          f"p50 {figs['e2e_p50_ms']:.2f} ms  p99 {figs['e2e_p99_ms']:.2f} ms  ({figs['received']}/{a.count} frames)")
    print(f"ROS overhead: p50 {figs['overhead_p50_ms']:.2f} ms (goal <= 1.5 ms)  p99 {figs['overhead_p99_ms']:.2f} ms  "
          f"e2e/bare p50 ratio {figs['ratio_p50']:.2f}")
    print(f"  of which inside wam_node (control step minus predict, last 100 steps): p50 "
          f"{figs['node_step_overhead_p50_ms']:.3f} ms; transport floor (an echo node answering each frame at once, "
          f"same processes and QoS): p50 {figs['echo_p50_ms']:.2f} ms  p99 {figs['echo_p99_ms']:.2f} ms")
    if a.json:
        Path(a.json).write_text(json.dumps(figs, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
