#!/usr/bin/env python3
"""An outsider robot: another team's Franka Panda driver, written apart from wam_ros, that fuzzes whoever commands it.

It imports only rclpy, standard ROS 2 message packages and the Python standard library (nothing of wam_ros, not even
numpy), so it speaks to wam_node exactly as a separately written robot would: a standard Panda's /joint_states
(panda_joint1..7 + panda_finger_joint1/2, in random order, with extra joints of other devices), camera/image_raw in
rgb8 / bgr8 / mono8 of several sizes and row paddings, and wam/instruction.

    python tests/outsider_robot.py fuzz --duration 12 --seed 3 --out fuzz.json
    python tests/outsider_robot.py fuzz --messages 10000 --out fuzz.json
    python tests/outsider_robot.py stream --duration 4 --stop 3 --instruction "1.0=reach the zqx target" --out s.json

fuzz: a random sequence of windows (0.6-1.4 s each): `valid` (only good messages), `mixed` (each message bad with
probability 1/2) and `invalid` (only bad content, on both streams, longer than any input timeout), with instructions
at window starts. Bad joint_states: a joint at 1e300 or far outside its limits, a finger far open, NaN, inf, a
missing arm joint or finger, positions and names of different lengths, a duplicated name, no joints at all. Bad
images: larger than the node's pixel cap (--huge-side), zero width/height, a row step shorter than a row, data of the
wrong length, an encoding nobody decodes, garbage and truncated serialized (CDR) bytes. Stamps: unstamped (zero)
messages are valid; out-of-order ones (5 s older than the last one sent) carry the true reading and image, so taking
one would be harmless, and are counted apart ("stamp"). Bad instructions: 10,000 characters, empty, blank; words
nobody trained on are sent only at the start of `valid` windows.
stream: only valid messages (fingers, never `panda_gripper`), optionally stopping at --stop, with instructions at
given times (--instruction "T=TEXT", repeatable).

The ground truth it writes (JSON): every message sent, with its time (time.time()), stream, class, kind ("valid",
"invalid": bad content, "stamp": true content, out-of-order stamp), header stamp and, for joint readings with true
content, the reading as [panda_joint1..7, gripper width = finger1 + finger2]; the windows; and everything received:
each command (<controller>/joint_trajectory: stamp, joint names, points, times; <controller>/commands), each
/diagnostics status, and /rosout records of level WARN and above.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import threading
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import Log
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory

# The Panda's datasheet (Franka Emika): arm joint limits (rad), each finger 0..0.04 m.
ARM = [f"panda_joint{i}" for i in range(1, 8)]
FINGERS = ["panda_finger_joint1", "panda_finger_joint2"]
ARM_LOWER = [-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973]
ARM_UPPER = [2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973]
FINGER_MAX = 0.04
STATE = [*ARM, "gripper_width"]  # the ground truth's order: the arm, then finger1 + finger2
EXTRA = [
    "base_yaw",
    "camera_pan",
    "conveyor_belt",
    "panda_hand_tcp",
]  # other devices on the same /joint_states

JOINT_VALID = {"standard": 0.8, "unstamped": 0.1, "within_tolerance": 0.1}
JOINT_INVALID = [
    "absurd_1e300",
    "far_outside",
    "finger_far",
    "nan",
    "inf",
    "missing_joint",
    "missing_finger",
    "length_mismatch",
    "duplicate_name",
    "empty",
]
CAMERA_VALID = {"rgb8": 0.35, "bgr8": 0.25, "mono8": 0.2, "padded_step": 0.1, "unstamped": 0.1}
CAMERA_INVALID = [
    "huge",
    "zero_size",
    "short_step",
    "truncated_data",
    "unknown_encoding",
    "cdr_garbage",
    "cdr_truncated",
]
SIZES = [(64, 64), (80, 48), (160, 120), (320, 240)]  # (width, height)
ENCODINGS = {"rgb8": 3, "bgr8": 3, "mono8": 1}
UNKNOWN_ENCODINGS = ["rgba16", "16UC1", "yuv422", "bayer_rggb8", "", "jpeg"]
PLAIN = ["reach the red target", "push the blue cube", "touch the green ball", "move to the yellow goal"]


class Truth:
    """The robot's true state: each arm joint swings slowly (<= 0.16 rad/s) around the middle of its range, the
    gripper opens and closes (<= 0.01 m/s)."""

    def __init__(self, rng: random.Random) -> None:
        self.phase = [rng.uniform(0, 2 * math.pi) for _ in range(8)]

    def at(self, t: float) -> list[float]:
        q = [
            (lo + hi) / 2 + 0.4 * math.sin(0.4 * t + p)
            for lo, hi, p in zip(ARM_LOWER, ARM_UPPER, self.phase, strict=False)
        ]
        return [*q, 0.04 + 0.02 * math.sin(0.5 * t + self.phase[7])]


class Outsider(Node):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__("outsider_panda")
        self.args = args
        self.rng = random.Random(args.seed)  # message contents
        self.plan = random.Random(
            args.seed + 1
        )  # windows and instructions: the same sequence whatever the timing
        self.truth = Truth(self.rng)
        self.lock = threading.Lock()
        self.commands: list[dict] = []
        self.diagnostics: list[dict] = []
        self.rosout: list[dict] = []
        self.sent: list[dict] = []
        self.windows: list[dict] = []
        self.last_stamp = {"joints": None, "camera": None}  # the last stamp sent on each stream (not zero)
        self.payloads: dict[tuple, bytes] = {}
        sensor = qos_profile_sensor_data
        self.image_pub = self.create_publisher(Image, "camera/image_raw", sensor)
        self.joint_pub = self.create_publisher(JointState, "joint_states", sensor)
        self.instruction_pub = self.create_publisher(String, "wam/instruction", 10)
        ctl = args.controller
        self.create_subscription(JointTrajectory, f"{ctl}/joint_trajectory", self.on_trajectory, 100)
        self.create_subscription(Float64MultiArray, f"{ctl}/commands", self.on_forward, 100)
        self.create_subscription(DiagnosticArray, "/diagnostics", self.on_diagnostics, 100)
        self.create_subscription(Log, "/rosout", self.on_rosout, QoSProfile(depth=100))
        self.ctl_topic = f"/{ctl}/joint_trajectory".replace("//", "/")

    # ---- what comes back --------------------------------------------------------------------------------------
    def on_trajectory(self, msg: JointTrajectory) -> None:
        t = time.time()
        entry = {
            "t": t,
            "type": "trajectory",
            "stamp": [msg.header.stamp.sec, msg.header.stamp.nanosec],
            "names": list(msg.joint_names),
            "points": [list(p.positions) for p in msg.points],
            "times": [p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in msg.points],
        }
        with self.lock:
            self.commands.append(entry)

    def on_forward(self, msg: Float64MultiArray) -> None:
        with self.lock:
            self.commands.append({"t": time.time(), "type": "forward", "points": [list(msg.data)]})

    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        t = time.time()
        for st in msg.status:
            level = st.level if isinstance(st.level, int) else int.from_bytes(st.level, "little")
            entry = {
                "t": t,
                "name": st.name,
                "level": level,
                "message": st.message,
                "values": {kv.key: kv.value for kv in st.values},
            }
            with self.lock:
                self.diagnostics.append(entry)

    def on_rosout(self, msg: Log) -> None:
        if msg.level >= Log.WARN and msg.name != self.get_name():
            with self.lock:
                self.rosout.append(
                    {"t": time.time(), "level": int(msg.level), "name": msg.name, "msg": msg.msg}
                )

    def matched(self, timeout: float) -> bool:
        """True once the commanding node subscribes to our sensors and publishes commands."""
        end = time.time() + timeout
        while time.time() < end:
            if (
                self.joint_pub.get_subscription_count() > 0
                and self.image_pub.get_subscription_count() > 0
                and self.count_publishers(self.ctl_topic) > 0
            ):
                time.sleep(0.3)  # let the other direction of discovery settle too
                return True
            time.sleep(0.05)
        return False

    # ---- stamps and records -----------------------------------------------------------------------------------
    @staticmethod
    def stamp_of(t: float) -> tuple[int, int]:
        sec = math.floor(t)
        return sec, min(round((t - sec) * 1e9), 999_999_999)

    def stamp(self, stream: str, kind: str, t: float, cls: str) -> tuple[int, int]:
        if cls == "unstamped":
            return 0, 0
        if kind == "stamp":  # 5 s older than the last stamp sent on this stream
            return self.stamp_of(self.last_stamp[stream] - 5.0 - self.rng.uniform(0, 0.1))
        self.last_stamp[stream] = t
        return self.stamp_of(t)

    def record(
        self, t: float, stream: str, cls: str, kind: str, stamp: tuple[int, int], **extra: object
    ) -> None:
        self.sent.append({"t": t, "stream": stream, "cls": cls, "kind": kind, "stamp": list(stamp), **extra})

    # ---- joint_states -----------------------------------------------------------------------------------------
    def send_joints(self, cls: str, kind: str) -> None:
        t = time.time()
        q = self.truth.at(t - self.t0)
        if cls == "within_tolerance":  # an encoder a little past a limit: still a valid reading
            j = self.rng.randrange(8)
            past = self.rng.uniform(0.0, self.args.slightly_outside)
            if j < 7:
                q[j] = ARM_UPPER[j] + past if self.rng.random() < 0.5 else ARM_LOWER[j] - past
            else:
                q[7] = 2 * FINGER_MAX + past if self.rng.random() < 0.5 else -past
        split = self.rng.choice([0.5, 0.5, 0.3, 0.7])  # asymmetric fingers: only their sum is the width
        fingers = [q[7] * split, q[7] * (1 - split)]
        if (
            kind == "invalid"
        ):  # a wrongly taken bad message would move the reading 1 rad: visible in the commands
            q = [v + 1.0 for v in q[:7]] + q[7:]
            fingers = [q[7] * split, q[7] * (1 - split)]
        names, pos = [*ARM, *FINGERS], [*q[:7], *fingers]
        for name in self.rng.sample(EXTRA, self.rng.randrange(len(EXTRA) + 1)):
            names.append(name)  # other devices' joints, even absurd ones, must not matter
            pos.append(self.rng.choice([self.rng.uniform(-3, 3), 1e300, math.nan, -math.inf]))
        if cls == "absurd_1e300":
            pos[self.rng.randrange(7)] = self.rng.choice([1e300, -1e300, 1.7976931348623157e308])
        elif cls == "far_outside":
            j = self.rng.randrange(7)
            pos[j] = (
                ARM_UPPER[j] + self.rng.uniform(0.5, 3) if self.rng.random() < 0.5 else ARM_LOWER[j] - 1.0
            )
        elif cls == "finger_far":
            pos[7 + self.rng.randrange(2)] = self.rng.choice([0.5, 2.0, -0.3])
        elif cls in ("nan", "inf"):
            pos[self.rng.randrange(9)] = math.nan if cls == "nan" else self.rng.choice([math.inf, -math.inf])
        order = list(range(len(names)))
        self.rng.shuffle(order)
        names, pos = [names[i] for i in order], [pos[i] for i in order]
        if cls in ("missing_joint", "missing_finger"):
            drop = names.index(self.rng.choice(ARM if cls == "missing_joint" else FINGERS))
            del names[drop], pos[drop]
        elif cls == "length_mismatch":
            pos = pos[:-1] if self.rng.random() < 0.5 else [*pos, 0.0, 0.0]
        elif cls == "duplicate_name":
            i, k = self.rng.sample(range(len(names)), 2)
            names[k] = names[i]
        elif cls == "empty":
            names, pos = [], []
        msg = JointState(name=names, position=[float(v) for v in pos])
        if self.rng.random() < 0.3:  # velocities / efforts of any length: not read
            msg.velocity = [0.0] * self.rng.randrange(len(names) + 2)
        stamp = self.stamp("joints", kind, t, cls)
        msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
        msg.header.frame_id = "panda_link0"
        self.joint_pub.publish(msg)
        self.record(t, "joints", cls, kind, stamp, q=q if kind != "invalid" else None)

    # ---- camera -----------------------------------------------------------------------------------------------
    def payload(self, n: int) -> bytes:
        """Random bytes of length n (cached per length: a camera repeats its frame size)."""
        if n not in self.payloads:
            self.payloads[n] = self.rng.randbytes(n)
        return self.payloads[n]

    def send_image(self, cls: str, kind: str) -> None:
        t = time.time()
        w, h = self.rng.choice(SIZES)
        enc = cls if cls in ENCODINGS else self.rng.choice(list(ENCODINGS))
        step = w * ENCODINGS[enc] + (self.rng.choice([2, 8, 64]) if cls == "padded_step" else 0)
        data_len = step * h
        if cls == "huge":
            w = h = self.args.huge_side
            enc, step = "mono8", self.args.huge_side
            data_len = step * h
        elif cls == "zero_size":
            w, h = self.rng.choice([(0, 0), (0, 48), (64, 0)])
            step, data_len = w * 3, 0
        elif cls == "short_step":
            step = w * ENCODINGS[enc] - self.rng.randrange(1, w)
            data_len = step * h
        elif cls == "truncated_data":
            data_len = self.rng.choice([0, step * h - 1, step * h // 2, step * h + 7])
        elif cls == "unknown_encoding":
            enc = self.rng.choice(UNKNOWN_ENCODINGS)
        msg = Image(height=h, width=w, encoding=enc, is_bigendian=0, step=step)
        msg.data = self.payload(data_len)
        stamp = self.stamp("camera", kind, t, cls)
        msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
        msg.header.frame_id = "panda_camera"
        if cls in ("cdr_garbage", "cdr_truncated"):
            raw = serialize_message(msg)
            if cls == "cdr_truncated":
                raw = raw[: self.rng.randrange(4, len(raw) - 1)]
            else:  # a CDR header, then noise
                raw = raw[:4] + self.rng.randbytes(self.rng.randrange(0, 600))
            self.image_pub.publish(raw)
        else:
            self.image_pub.publish(msg)
        self.record(t, "camera", cls, kind, stamp, size=[w, h], encoding=enc)

    # ---- instructions -----------------------------------------------------------------------------------------
    def nonsense(self) -> str:
        return "zq" + "".join(self.rng.choice("bcdfghjklmnpvwx") for _ in range(self.rng.randrange(4, 9)))

    def send_instruction(self, cls: str, text: str | None = None) -> None:
        unknown: list[str] = []
        if text is None:
            if cls == "plain":
                text = self.rng.choice(PLAIN)
            elif cls == "unknown_words":
                unknown = [self.nonsense() for _ in range(self.rng.randrange(1, 3))]
                text = f"reach the {' '.join(unknown)} target"
            elif cls == "long_unknown":  # 150 characters, accepted (<= 200), never echoed whole
                unknown = [self.nonsense()]
                words = ["reach", "the", unknown[0]]
                while len(" ".join(words)) < 150:
                    words.append(self.nonsense())
                text = " ".join(words)[:150]
                unknown = [w for w in text.split() if w.startswith("zq")]
            elif cls == "too_long":
                words = []
                while len(" ".join(words)) < 10_000:
                    words.append(self.nonsense())
                text = " ".join(words)[:10_000]
            elif cls == "empty":
                text = ""
            elif cls == "blank":
                text = "   \t "
        else:
            unknown = [w for w in text.split() if w.startswith("zq")]
        t = time.time()
        self.instruction_pub.publish(String(data=text))
        kind = "given" if cls == "given" else "invalid" if cls in ("too_long", "empty", "blank") else "valid"
        self.record(t, "instruction", cls, kind, (0, 0), text=text, unknown=unknown)

    # ---- schedules --------------------------------------------------------------------------------------------
    def pick(self, weights: dict[str, float]) -> str:
        return self.rng.choices(list(weights), weights=list(weights.values()))[0]

    def send(self, stream: str, window: str) -> None:
        bad = window == "invalid" or (window == "mixed" and self.rng.random() < 0.5)
        if not bad:
            cls = self.pick(JOINT_VALID if stream == "joints" else CAMERA_VALID)
            if self.args.scenario == "stream":
                cls = "standard" if stream == "joints" else self.rng.choice(list(ENCODINGS))
            kind = "valid"
        elif window == "mixed" and self.rng.random() < 0.2 and self.last_stamp[stream] is not None:
            cls = "out_of_order"
            kind = "stamp"
        else:
            cls = self.rng.choice(JOINT_INVALID if stream == "joints" else CAMERA_INVALID)
            kind = "invalid"
        if stream == "joints":
            self.send_joints("standard" if cls == "out_of_order" else cls, kind)
        else:
            self.send_image(self.rng.choice(list(ENCODINGS)) if cls == "out_of_order" else cls, kind)
        if cls == "out_of_order":
            self.sent[-1]["cls"] = "out_of_order"

    def next_window(self, start: float) -> dict:
        if not self.windows:
            kind, length = "valid", 1.2  # start moving first: the hold after a gap needs a commanded robot
        else:
            kind = self.plan.choices(["valid", "mixed", "invalid"], weights=[0.35, 0.4, 0.25])[0]
            length = self.plan.uniform(0.9, 1.4) if kind == "invalid" else self.plan.uniform(0.6, 1.4)
        window = {"start": start, "end": start + length, "kind": kind}
        self.windows.append(window)
        if len(self.windows) > 1 and self.plan.random() < 0.6:
            bag = (
                ["unknown_words", "long_unknown", "plain"]
                if kind == "valid"
                else ["too_long", "empty", "blank"]
            )
            self.send_instruction(bag[self.instruction_turn[kind == "valid"] % len(bag)])
            self.instruction_turn[kind == "valid"] += 1
        return window

    def run(self) -> None:
        a = self.args
        self.t0 = time.time()
        self.instruction_turn = [0, 0]
        period = {"joints": 1.0 / a.joints_hz, "camera": 1.0 / a.camera_hz}
        due = {"joints": self.t0, "camera": self.t0 + 0.3 * period["camera"]}
        timeline = sorted((self.t0 + float(s), text) for s, text in (i.split("=", 1) for i in a.instruction))
        end = self.t0 + a.duration
        window = None
        while True:
            now = time.time()
            if now >= end or (a.messages and len(self.sent) >= a.messages):
                break
            while timeline and timeline[0][0] <= now:
                self.send_instruction("given", timeline.pop(0)[1])
            if a.scenario == "fuzz" and (window is None or now >= window["end"]):
                window = self.next_window(now)
            stream = min(due, key=due.get)
            if due[stream] > now:
                time.sleep(min(due[stream] - now, 0.01))
                continue
            due[stream] += period[stream]
            if due[stream] < now - 0.5:  # fell far behind (a loaded machine): do not burst to catch up
                due[stream] = now
            if a.stop is not None and now - self.t0 >= a.stop:
                continue
            self.send(stream, window["kind"] if window else "valid")
        if a.scenario == "fuzz":
            self.windows[-1]["end"] = min(self.windows[-1]["end"], time.time())
        self.t_end = time.time()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenario", choices=["fuzz", "stream"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds (an upper bound with --messages)")
    ap.add_argument(
        "--messages", type=int, default=0, help="stop after this many messages sent (0: --duration)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--joints-hz", type=float, default=100.0)
    ap.add_argument("--camera-hz", type=float, default=30.0)
    ap.add_argument("--controller", default="arm_controller")
    ap.add_argument("--huge-side", type=int, default=400, help="side of the oversized mono8 image")
    ap.add_argument(
        "--slightly-outside",
        type=float,
        default=0.004,
        help="within_tolerance readings: at most this past a limit",
    )
    ap.add_argument(
        "--stop", type=float, default=None, help="stream: stop publishing sensors after this many seconds"
    )
    ap.add_argument("--instruction", action="append", default=[], help='"T=TEXT": publish TEXT at T seconds')
    ap.add_argument(
        "--linger", type=float, default=0.6, help="keep listening this long after the last message"
    )
    ap.add_argument("--wait", type=float, default=20.0, help="seconds to wait for the commanding node")
    args = ap.parse_args(argv)
    rclpy.init()
    node = Outsider(args)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    result: dict = {"args": vars(args), "state_names": STATE}
    try:
        result["matched"] = node.matched(args.wait)
        result["instruction_subscribers"] = node.instruction_pub.get_subscription_count()
        if result["matched"]:
            node.run()
            time.sleep(args.linger)
            result["t0"], result["t_end"] = node.t0, node.t_end
    finally:
        with node.lock:
            result.update(
                sent=node.sent,
                windows=node.windows,
                commands=list(node.commands),
                diagnostics=list(node.diagnostics),
                rosout=list(node.rosout),
            )
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    with open(args.out, "w") as f:
        json.dump(result, f)
    return 0 if result["matched"] else 2


if __name__ == "__main__":
    sys.exit(main())
