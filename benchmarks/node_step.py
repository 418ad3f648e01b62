"""wam_node's own work per camera frame, in-process and without DDS: the node is driven by calling its callbacks.

    .venv/bin/python benchmarks/node_step.py                 # shipped model, onnxruntime, 1 thread, 300 frames
    .venv/bin/python benchmarks/node_step.py --frames 600

A WamNode (trigger:=camera, 30 Hz) gets joint_states and a random 64x64 rgb8 frame every 10 ms through
on_joints() / on_image(); its parts are timed by wrapping them (p50 per call, µs), and the node's own step overhead
(step time minus predict(), its `step_overhead_ms_p50` diagnostic) is printed. What is left of benchmarks/ros_latency.py's
overhead beyond this is transport (DDS + executor dispatch). Also printed: parsing one serialized 64x64 frame with
rclpy's deserialize_message vs conv.image_from_cdr (what the node's raw camera subscription uses), and one full
gc.collect() in this process (torch + onnxruntime + the node loaded) before and after gc.freeze().
"""

from __future__ import annotations

import argparse
import collections
import functools
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    import gc

    import rclpy
    from rclpy.context import Context
    from rclpy.parameter import Parameter
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image

    from wam_ros.robot import RobotProfile
    from wam_ros.ros import conversions as conv
    from wam_ros.ros.wam_node import WamNode

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "models" / "panda_tabletop"))
    ap.add_argument("--frames", type=int, default=300)
    a = ap.parse_args()
    profile = RobotProfile.load("panda")
    ctx = Context()
    rclpy.init(context=ctx)
    params = {"model_path": a.model, "threads": 1, "trigger": "camera", "control_hz": 30.0}
    node = WamNode(context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    acc: dict[str, list[float]] = collections.defaultdict(list)

    def wrap(obj: object, name: str, label: str) -> None:
        f = getattr(obj, name)

        @functools.wraps(f)
        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return f(*args, **kwargs)
            finally:
                acc[label].append(time.perf_counter() - t)

        setattr(obj, name, timed)

    for obj, name, label in (
        (node.watchdog, "check", "watchdog check"),
        (node.runner, "observe", "frame convert + resize + history"),
        (node.runner, "run_model", "network call"),
        (node.safety, "apply", "safety filter"),
        (node, "command_msg", "command bytes"),
        (node.cmd_pub, "publish", "command publish()"),
    ):
        wrap(obj, name, label)
    rng = np.random.default_rng(0)
    q = np.asarray(profile.home, dtype=np.float64)
    frames = [conv.rgb_to_image(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(16)]
    try:
        for k in range(a.frames + 30):
            if k == 30:  # warm-up done
                acc.clear()
                node.stats["overhead_s"].clear()
            stamp = node.get_clock().now().to_msg()
            node.on_joints(conv.joint_state(profile.joint_names, q, stamp=stamp))
            img = frames[k % len(frames)]
            img.header.stamp = stamp
            node.last_step = -1.0  # every frame is stepped on (the probe's frames are a period apart too)
            node.on_image(img)
            time.sleep(0.01)
        overhead = np.asarray(list(node.stats["overhead_s"])) * 1e6
        data = serialize_message(frames[0])
        parse = {}
        for label, fn in (
            ("rclpy deserialize_message", lambda: deserialize_message(data, Image)),
            ("conv.image_from_cdr", lambda: conv.image_from_cdr(data)),
        ):
            t = []
            for _ in range(2000):
                t0 = time.perf_counter()
                fn()
                t.append(time.perf_counter() - t0)
            parse[label] = np.median(t[200:]) * 1e6
        gc_ms = []
        for _ in range(2):  # before, then after the freeze wam_node's start-up does
            t0 = time.perf_counter()
            gc.collect()
            gc_ms.append((time.perf_counter() - t0) * 1e3)
            gc.freeze()
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
    print(
        f"wam_node driven in-process, {a.frames} frames, {a.model}, onnxruntime 1 thread (p50 per call, us)"
    )
    for label, t in acc.items():
        print(f"  {label:<20} {np.median(t) * 1e6:9.1f}")
    print(
        f"  node step overhead (step minus predict): p50 {np.median(overhead):.1f} us, p99 "
        f"{np.percentile(overhead, 99):.1f} us"
    )
    for label, us in parse.items():
        print(f"  parse a serialized 64x64 frame, {label:<26} {us:7.1f} us (warm, p50)")
    print(f"  full gc.collect() in this process: {gc_ms[0]:.1f} ms, after gc.freeze(): {gc_ms[1]:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
