"""A stand-in robot in its own process, for the tests and benchmarks of wam_node over real DDS.

    python -m wam_ros.ros._robot_probe stream --rate 30 --duration 2 --stop 1 --out result.json
    python -m wam_ros.ros._robot_probe fuzz --duration 2 --then-valid 1.5 --out result.json
    python -m wam_ros.ros._robot_probe pingpong --count 300 --rate 30 --out result.json

It publishes camera/image_raw and joint_states like a robot driver (stream: valid messages in rotating encodings and
sizes, joints shuffled with extra names; fuzz: only malformed / NaN / mismatched / out-of-order messages, then
optionally valid ones; pingpong: one frame at a time, waiting for the command it causes) and records, with its own
monotonic clock, every command (<controller>/joint_trajectory or /commands), /diagnostics status and surprise value it
receives, and wam_node's wam/timing (when it publishes it). The result is one JSON file. Uses the ROS_DOMAIN_ID and
WAM_ROS_EXECUTOR (wam_ros.ros.executor.make_executor) of its environment.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float32, Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory

from wam_ros.robot import RobotProfile
from wam_ros.ros import conversions as conv
from wam_ros.ros.executor import make_executor

PROFILE = RobotProfile.load("panda")


class Probe(Node):
    def __init__(self, controller: str, huge_side: int = 2100, light: bool = False) -> None:
        super().__init__("robot_probe")
        self.huge_side, self.light = huge_side, light  # light: count commands, keep only the last diagnostics
        self.n_commands, self.last_diag = 0, {}
        self.image_pub = self.create_publisher(Image, "camera/image_raw", 10)
        self.joint_pub = self.create_publisher(JointState, "joint_states", 10)
        self.instruction_pub = self.create_publisher(String, "wam/instruction", 10)
        self.events: list[dict] = []
        # raw: the callback gets the serialized message, so the arrival time is taken before rclpy builds the Python
        # message (8 JointTrajectoryPoints: ~0.1-0.2 ms of Python work that a C++ controller does not pay); the
        # message is then deserialized and checked as before
        self.traj_sub = self.create_subscription(
            JointTrajectory, f"{controller}/joint_trajectory", self.on_traj_raw, 10, raw=True
        )
        self.fwd_sub = self.create_subscription(
            Float64MultiArray, f"{controller}/commands", self.on_forward, 10
        )
        self.create_subscription(DiagnosticArray, "/diagnostics", self.on_diag, 50)
        self.create_subscription(Float32, "wam/surprise", self.on_surprise, 10)
        self.create_subscription(Float64MultiArray, "wam/timing", self.on_timing, 10)
        self.timing: list[
            list[float]
        ] = []  # wam_node's [camera stamp, entered, predict start, end, sent] (wall s)
        self.t0 = time.monotonic()
        self.rng = np.random.default_rng(0)
        self.last_stamp: dict | None = None
        self.executor_ = make_executor()  # `executor` is Node's own property
        self.executor_.add_node(self)

    def t(self) -> float:
        return time.monotonic() - self.t0

    def on_traj_raw(self, data: bytes) -> None:
        wall = time.time()  # the command has reached this process
        self.n_commands += 1
        if not self.light:  # light (soak): count only, no need to build the Python message
            self.on_traj(deserialize_message(data, JointTrajectory), wall)

    def on_traj(self, msg: JointTrajectory, wall: float) -> None:
        names = list(msg.joint_names)
        pts = [list(p.positions) for p in msg.points]
        times = [p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in msg.points]
        self.events.append(
            {
                "kind": "command",
                "t": self.t(),
                "type": "trajectory",
                "names": names,
                "points": pts,
                "times": times,
                "stamp": conv.stamp_to_sec(msg.header.stamp),
                "wall": wall,
            }
        )

    def on_forward(self, msg: Float64MultiArray) -> None:
        self.events.append({"kind": "command", "t": self.t(), "type": "forward", "points": [list(msg.data)]})

    def on_diag(self, msg: DiagnosticArray) -> None:
        self.last_diag = {kv.key: kv.value for st in msg.status for kv in st.values}
        if self.light:
            return
        for st in msg.status:
            level = st.level if isinstance(st.level, int) else int.from_bytes(st.level, "little")
            self.events.append(
                {
                    "kind": "diag",
                    "t": self.t(),
                    "level": level,
                    "message": st.message,
                    "values": {kv.key: kv.value for kv in st.values},
                }
            )

    def on_timing(self, msg: Float64MultiArray) -> None:
        self.timing.append(list(msg.data))

    def spin_once(self, timeout_sec: float) -> None:
        self.executor_.spin_once(timeout_sec=timeout_sec)

    def on_surprise(self, msg: Float32) -> None:
        if self.light:
            return
        self.events.append({"kind": "surprise", "t": self.t(), "value": float(msg.data)})

    def wait_matched(self, timeout: float = 15.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if (
                self.image_pub.get_subscription_count() > 0
                and self.joint_pub.get_subscription_count() > 0
                and (self.traj_sub.get_publisher_count() + self.fwd_sub.get_publisher_count()) > 0
            ):
                return True
            self.spin_once(0.05)
        return False

    # ---- messages -----------------------------------------------------------------------------------------------
    def joints(self, k: int) -> np.ndarray:
        q = np.asarray(PROFILE.home, dtype=np.float64)
        q[0] += 0.1 * np.sin(0.1 * k)
        q[-1] = 0.04
        return q

    def publish_valid(self, k: int) -> dict:
        """Joints (shuffled, with extra names) then an image in a rotating encoding and size; returns what was sent
        (`publishing`: time.time() just before the image's publish() call)."""
        stamp = self.get_clock().now().to_msg()
        q = self.joints(k)
        names = [*PROFILE.joint_names, "head_pan", "panda_finger_joint1"]
        pos = [*q, 0.3, 0.02]
        order = self.rng.permutation(len(names))
        self.joint_pub.publish(
            conv.joint_state([names[i] for i in order], np.asarray(pos)[order], stamp=stamp)
        )
        enc = ("rgb8", "bgr8", "mono8")[k % 3]
        h, w = ((64, 64), (48, 80), (120, 160))[k % 3]
        img = self.rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
        msg = conv.rgb_to_image(img[:, :, 0] if enc == "mono8" else img, stamp, "camera", enc)
        publishing = time.time()
        self.image_pub.publish(msg)
        return {"t": self.t(), "q": q.tolist(), "stamp": conv.stamp_to_sec(stamp), "publishing": publishing}

    def publish_bad(self, k: int) -> str:
        """One malformed message of a rotating kind; returns the kind."""
        stamp = self.get_clock().now().to_msg()
        good = conv.rgb_to_image(np.zeros((64, 64, 3), np.uint8), stamp)
        kinds = [
            "encoding",
            "zero_size",
            "data_size",
            "huge",
            "nan_joints",
            "missing_joints",
            "length_mismatch",
            "out_of_order",
        ]
        kind = kinds[k % len(kinds)]
        if kind == "encoding":
            good.encoding = "rgba16"
            self.image_pub.publish(good)
        elif kind == "zero_size":
            good.height, good.width, good.step, good.data = 0, 0, 0, b""
            self.image_pub.publish(good)
        elif kind == "data_size":
            good.data = bytes(100)
            self.image_pub.publish(good)
        elif kind == "huge":
            n = self.huge_side
            big = Image(height=n, width=n, encoding="mono8", step=n)
            big.header.stamp = stamp
            big.data = bytes(n * n)
            self.image_pub.publish(big)
        elif kind == "nan_joints":
            q = self.joints(k)
            q[2] = np.nan
            self.joint_pub.publish(conv.joint_state(PROFILE.joint_names, q, stamp=stamp))
        elif kind == "missing_joints":
            self.joint_pub.publish(conv.joint_state(PROFILE.joint_names[:5], self.joints(k)[:5], stamp=stamp))
        elif kind == "length_mismatch":
            msg = conv.joint_state(PROFILE.joint_names, self.joints(k), stamp=stamp)
            msg.position = msg.position[:4]
            self.joint_pub.publish(msg)
        else:  # a valid image, then one stamped a second earlier: the second must be refused
            past = conv.sec_to_stamp(conv.stamp_to_sec(stamp) - 1.0)
            self.image_pub.publish(conv.rgb_to_image(np.zeros((64, 64, 3), np.uint8), stamp))
            self.image_pub.publish(conv.rgb_to_image(np.zeros((64, 64, 3), np.uint8), past))
        return kind

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.spin_once(min(0.01, max(0.0, end - time.monotonic())))


def run_stream(p: Probe, a: argparse.Namespace) -> dict:
    sent = []
    if a.instruction:
        p.instruction_pub.publish(String(data=a.instruction))
    period, k = 1.0 / a.rate, 0
    start = time.monotonic()
    while time.monotonic() < start + a.duration:
        info = p.publish_valid(k)
        if not a.light:
            sent.append(info)
        k += 1
        p.spin_for(start + k * period - time.monotonic())  # deadline pacing: no drift
    stop_t = p.t()
    p.spin_for(a.stop)
    return {"sent": sent, "stop_t": stop_t, "published": k}


def run_fuzz(p: Probe, a: argparse.Namespace) -> dict:
    kinds, k = [], 0
    end = time.monotonic() + a.duration
    while time.monotonic() < end:
        kinds.append(p.publish_bad(k))
        k += 1
        p.spin_for(1.0 / a.rate)
    fuzz_end = p.t()
    p.spin_for(0.3)
    sent = []
    end = time.monotonic() + a.then_valid
    while time.monotonic() < end:
        sent.append(p.publish_valid(k))
        k += 1
        p.spin_for(1.0 / a.rate)
    p.spin_for(0.3)
    return {"bad_kinds": sorted(set(kinds)), "fuzz_end_t": fuzz_end, "sent": sent}


def run_pingpong(p: Probe, a: argparse.Namespace) -> dict:
    """Publish joints + one frame, wait for the command computed from it (matched by the trajectory's stamp, which
    wam_node sets to the camera stamp); latency = command received - frame published, on this process's clock.

    Frames are at least one period apart (paced from the previous send, not from a fixed schedule): after a lost
    frame (0.5 s wait) a fixed schedule would send the overdue frames back to back, faster than control_hz, and a
    camera-triggered node rightly skips frames that come sooner than half a period after its last step. Per frame,
    `frames` holds time.time() stamps (send, image publish() called, command callback entered, matched)."""
    latencies, frames, lost = [], [], 0
    period = 1.0 / a.rate
    p.joint_pub.publish(
        conv.joint_state(PROFILE.joint_names, p.joints(0), stamp=p.get_clock().now().to_msg())
    )
    p.spin_for(period)  # like a robot whose joint_states stream is already running when the camera starts
    for k in range(a.count):
        n = len(p.events)
        t_send, wall_send = time.perf_counter(), time.time()
        info = p.publish_valid(k * 3)  # k*3 keeps the same encoding and size (rgb8 64x64) every time
        got, recv = None, None
        while got is None and time.perf_counter() < t_send + 0.5:
            p.spin_once(0.05)  # returns as soon as a message arrives: no busy polling
            for e in p.events[n:]:
                if e["kind"] == "command" and abs(e.get("stamp", -1.0) - info["stamp"]) < 1e-6:
                    got, recv = time.perf_counter(), e["wall"]
        if got is None:
            lost += 1
        else:
            latencies.append(got - t_send)
            frames.append(
                {
                    "stamp": info["stamp"],
                    "send": wall_send,
                    "publishing": info["publishing"],
                    "recv": recv,
                    "matched": wall_send + (got - t_send),
                }
            )
        del p.events[:]  # keep memory flat
        p.spin_for(t_send + period - time.perf_counter())
    return {"latency_s": latencies, "lost": lost, "frames": frames}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", choices=["stream", "fuzz", "pingpong"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--duration", type=float, default=2.0)
    ap.add_argument(
        "--stop", type=float, default=1.0, help="stream: seconds to keep listening after stopping"
    )
    ap.add_argument(
        "--then-valid", type=float, default=1.5, help="fuzz: seconds of valid messages afterwards"
    )
    ap.add_argument("--count", type=int, default=200, help="pingpong: frames")
    ap.add_argument("--controller", default="arm_controller")
    ap.add_argument("--huge-side", type=int, default=2100, help="fuzz: side of the oversized mono8 image")
    ap.add_argument("--instruction", default="", help="stream: publish this on wam/instruction first")
    ap.add_argument("--light", action="store_true", help="record counts and the last diagnostics only (soak)")
    ap.add_argument(
        "--match-timeout",
        type=float,
        default=15.0,
        help="seconds to wait for wam_node's topics (a node importing torch on a loaded machine: more)",
    )
    a = ap.parse_args(argv)
    rclpy.init()
    p = Probe(a.controller, a.huge_side, a.light)
    try:
        result: dict = {"matched": p.wait_matched(a.match_timeout)}
        if result["matched"]:
            p.spin_for(0.3)  # let the volatile subscriptions settle (first messages can be missed otherwise)
            result.update(
                {"stream": run_stream, "fuzz": run_fuzz, "pingpong": run_pingpong}[a.scenario](p, a)
            )
        result.update(events=p.events, n_commands=p.n_commands, last_diag=p.last_diag, timing=p.timing)
        with open(a.out, "w") as f:
            json.dump(result, f)
    finally:
        p.executor_.shutdown()
        p.destroy_node()
        rclpy.try_shutdown()
    return 0 if result["matched"] else 3


if __name__ == "__main__":
    sys.exit(main())
