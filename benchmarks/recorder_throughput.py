"""Recorder benchmark: 640x480 rgb8 images at 30 Hz + joint states at 100 Hz for N seconds, published by a separate
process, recorded by recorder_node in a third process. Prints messages recorded / published per topic (goal 1.0)
and the CPU used by the recorder and by the publisher (in % of one core, measured side by side in the same run).

    .venv/bin/python benchmarks/recorder_throughput.py --seconds 120 --out /tmp/wam_rec_bench
    .venv/bin/python benchmarks/recorder_throughput.py --seconds 10          # quick check

The bag is deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOPICS = ["/camera/image_raw", "/joint_states"]
TYPES = ["sensor_msgs/msg/Image", "sensor_msgs/msg/JointState"]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def publisher(seconds: float, image_hz: float, joint_hz: float, width: int, height: int) -> None:
    """Runs in its own process: waits for the recorder to match, publishes, prints the counts as JSON."""
    import numpy as np
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, JointState

    rclpy.init()
    node = rclpy.create_node("bench_source")
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    img_pub = node.create_publisher(Image, TOPICS[0], qos)
    js_pub = node.create_publisher(JointState, TOPICS[1], qos)
    end = time.monotonic() + 30
    while (
        img_pub.get_subscription_count() == 0 or js_pub.get_subscription_count() == 0
    ) and time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(1.0)  # matched subscriptions may still miss the first messages (volatile durability)
    pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), np.uint8).tobytes()
    names = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_gripper"]
    sent = {t: 0 for t in TOPICS}
    print("START", flush=True)  # the parent starts measuring the recorder's CPU here
    start = time.monotonic()
    next_img, next_js = start, start
    cpu0 = time.process_time()
    while (now := time.monotonic()) < start + seconds:
        if now >= next_img:
            msg = Image(height=height, width=width, encoding="rgb8", step=3 * width)
            msg.header.stamp = node.get_clock().now().to_msg()
            msg.data = pixels  # bytes assignment: the fast path (docs/environment.md)
            img_pub.publish(msg)
            sent[TOPICS[0]] += 1
            next_img += 1.0 / image_hz
        if now >= next_js:
            js = JointState(name=names, position=[0.1 * sent[TOPICS[1]] % 1.0] * 8)
            js.header.stamp = node.get_clock().now().to_msg()
            js_pub.publish(js)
            sent[TOPICS[1]] += 1
            next_js += 1.0 / joint_hz
        time.sleep(max(0.0, min(next_img, next_js) - time.monotonic()))
    cpu, wall = time.process_time() - cpu0, time.monotonic() - start
    print(json.dumps({"sent": sent, "publisher_cpu_s": cpu, "wall_s": wall}), flush=True)
    time.sleep(1.0)  # let the reliable queues drain
    node.destroy_node()
    rclpy.try_shutdown()


def call_stop() -> str:
    import rclpy
    from std_srvs.srv import Trigger

    rclpy.init()
    node = rclpy.create_node("bench_ctl")
    client = node.create_client(Trigger, "/recorder/stop_success")
    if not client.wait_for_service(timeout_sec=10):
        raise RuntimeError("recorder stop service not available")
    future = client.call_async(Trigger.Request())
    rclpy.spin_until_future_complete(node, future, timeout_sec=60)
    node.destroy_node()
    rclpy.try_shutdown()
    return future.result().message


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--image-hz", type=float, default=30.0)
    ap.add_argument("--joint-hz", type=float, default=100.0)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--out", type=Path, default=Path("/tmp/wam_rec_bench"))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--role", default="main", choices=["main", "publisher"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "publisher":
        publisher(args.seconds, args.image_hz, args.joint_hz, args.width, args.height)
        return 0

    os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 50))
    shutil.rmtree(args.out, ignore_errors=True)
    params = args.out.parent / f"{args.out.name}.params.yaml"
    args.out.mkdir(parents=True)
    import yaml

    params.write_text(
        yaml.safe_dump(
            {
                "recorder": {
                    "ros__parameters": {
                        "output_dir": str(args.out),
                        "topics": TOPICS,
                        "types": TYPES,
                        "auto_start": True,
                        "task": "benchmark",
                    }
                }
            }
        )
    )
    rec = subprocess.Popen(
        [sys.executable, "-m", "wam_ros.ros.recorder_node", "--ros-args", "--params-file", str(params)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        bag = args.out / "episode_0000"
        end = time.monotonic() + 30
        while not (bag / "metadata.yaml").is_file() and time.monotonic() < end:
            time.sleep(0.1)
        pub = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--role",
                "publisher",
                "--seconds",
                str(args.seconds),
                "--image-hz",
                str(args.image_hz),
                "--joint-hz",
                str(args.joint_hz),
                "--width",
                str(args.width),
                "--height",
                str(args.height),
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        line = pub.stdout.readline()
        if line.strip() != "START":
            pub.wait()
            print(f"publisher failed before starting: {line}", file=sys.stderr)
            return 1
        rec_cpu0, t0 = cpu_seconds(rec.pid), time.monotonic()
        line = pub.stdout.readline()  # the publisher's report, printed when it stops publishing
        rec_cpu, wall = cpu_seconds(rec.pid) - rec_cpu0, time.monotonic() - t0
        pub.wait(timeout=30)
        if pub.returncode != 0:
            return 1
        pub_report = json.loads(line)
        stop = json.loads(call_stop())
    finally:
        rec.send_signal(signal.SIGINT)
        try:
            rec.wait(timeout=20)
        except subprocess.TimeoutExpired:
            rec.kill()
    from rosbags.rosbag2 import Reader

    with Reader(bag) as reader:
        in_bag = {c.topic: c.msgcount for c in reader.connections}
    size_mb = sum(p.stat().st_size for p in bag.iterdir()) / 1e6
    sent = pub_report["sent"]
    print(
        f"recorder benchmark: {args.width}x{args.height} rgb8 @ {args.image_hz:g} Hz + joint states @ "
        f"{args.joint_hz:g} Hz for {args.seconds:g} s (publisher and recorder in separate processes)"
    )
    for t in TOPICS:
        print(
            f"  {t:20s} published {sent[t]:6d}  received {stop['received'][t]:6d}  in bag {in_bag[t]:6d}  "
            f"recorded/published = {in_bag[t] / sent[t]:.4f}"
        )
    total = sum(in_bag.values()) / sum(sent.values())
    print(f"  all topics: recorded/published = {total:.4f} (goal 1.0)")
    print(
        f"  recorder CPU {100 * rec_cpu / wall:.1f}% of one core; publisher CPU "
        f"{100 * pub_report['publisher_cpu_s'] / pub_report['wall_s']:.1f}% (ratio recorder/publisher "
        f"{(rec_cpu / wall) / (pub_report['publisher_cpu_s'] / pub_report['wall_s']):.2f}); "
        f"bag {size_mb:.0f} MB = {size_mb / wall:.1f} MB/s"
    )
    if not args.keep:
        shutil.rmtree(args.out, ignore_errors=True)
        params.unlink(missing_ok=True)
    return 0 if total == 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
