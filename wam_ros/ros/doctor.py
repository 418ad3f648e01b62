"""`wam doctor`: a pre-flight check of a live ROS 2 graph for wam_node, before anything moves.

    report = run_doctor(DoctorConfig(model="models/panda_tabletop", robot="panda", timeout_s=3.0))
    print(report.table()); sys.exit(0 if report.ok else 1)          # or `wam doctor --model M --robot NAME`

For one model and one robot profile, a node (DoctorNode) listens for `timeout_s` to what wam_node would subscribe to,
with wam_node's QoS and parsers, and the graph is read for the command topic. Every check gives OK / WARN / FAIL (or
SKIP when an earlier failure leaves nothing to measure), the measured value and what to fix:

    model            loads as wam_node loads it (load_policy: integrity, backend); its joints, image size, rate
    profile          loads; every model joint is in it (its limits are what the safety filter clamps to)
    camera topic     has a publisher of sensor_msgs/msg/Image (else: the Image topics that do exist)
    camera messages  arrive (a publisher that sends nothing, or an incompatible QoS, is found here)
    camera encoding  rgb8 | bgr8 | mono8 and a well-formed image (wam_node's own parser)
    camera rate      >= 0.9 x the model's control rate; FAIL below 1 / input_timeout_s (the node would go STALE)
    camera stamps    non-zero and never going back in time (wam_node refuses out-of-order frames)
    joint_states ... topic, messages, rate, stamps as for the camera
    joint mapping    every model joint read through the profile's JointReader (joint_mapping rules)
    joint limits     measured positions inside [lower, upper] (WARN within measurement_tolerance, FAIL beyond)
    stamp skew       camera stamp - the latest joint_states stamp, p50 and max, against max_skew_s
    camera 'X' ...   a model with several cameras (issue 19): topic, messages, encoding, rate, stamps and stamp skew
                     of each other camera, on the topic wam_node would use (the profile's `cameras`, or
                     camera_topics); a camera the profile does not list is a FAIL naming it
    controller       <controller>/joint_trajectory (or /commands) has a subscriber of the right type; WARN when
                     another node already publishes on it (two commanders)

Decision: a controller topic without a subscriber is a FAIL: wam_node's commands would go nowhere (the robot would not
move while the node reports OK). Against sim_node every check is OK, because sim_node subscribes like ros2_control.

The checks are pure functions of what was recorded (check_rate, check_stamps, ...), unit-tested without ROS.
Topic names, controller, command type and thresholds default to wam_node's (WamNodeParams).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.exceptions import NameValidationException
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState

from wam_ros.robot import JointReader, RobotProfile
from wam_ros.ros import conversions as conv
from wam_ros.ros.executor import make_executor
from wam_ros.ros.wam_node import WamNodeParams, camera_topics
from wam_ros.runtime.safety import SafetyFilter, SafetyLimits

RCLError = rclpy_implementation.RCLError
LEVELS = ("OK", "WARN", "FAIL", "SKIP")
IMAGE_TYPE = "sensor_msgs/msg/Image"
JOINT_STATE_TYPE = "sensor_msgs/msg/JointState"
COMMAND_TYPES = {
    "trajectory": ("joint_trajectory", "trajectory_msgs/msg/JointTrajectory"),
    "forward": ("commands", "std_msgs/msg/Float64MultiArray"),
}
RATE_SLACK = 0.9  # a stream at >= 90 % of the control rate is OK (timer jitter over a few seconds)
MAX_SAMPLES = 10_000  # per stream: a 1 kHz joint_states over 10 s
LIMIT_EPS = 1e-6  # rad or m: float noise at a limit (a sim's gripper at 0.08 + 6e-9) is inside
MAX_JOINT_MESSAGES = 2_000  # positions kept for the limits check


def _node_default(name: str) -> object:
    return WamNodeParams.__dataclass_fields__[name].default


@dataclass(frozen=True)
class DoctorConfig:
    """Options of `run_doctor` (`wam doctor`).

    Args:
        model: model directory, .pt or .onnx (as wam_node's model_path).
        robot: robot profile name or path (as wam_node's robot; "" = the one the model was trained for).
        backend: the backend wam_node will load the model with.
        camera_topic / joint_states_topic: wam_node's inputs after remapping; relative names resolve in `namespace`.
        camera_topics: the other cameras' topics of a several-camera model, as wam_node's parameter ("name=topic,...";
            a camera not named: its topic in the robot profile).
        controller / command_type: wam_node's command topic is <controller>/joint_trajectory or <controller>/commands.
        namespace: wam_node's namespace ("" = root).
        timeout_s: how long to measure (s), once the inputs are discovered.
        discovery_s: how long to wait at most for the inputs' publishers to be discovered (s).
        input_timeout_s / max_skew_s / max_image_pixels: wam_node's thresholds.
    """

    model: str
    robot: str = _node_default("robot")
    backend: str = _node_default("backend")
    camera_topic: str = "camera/image_raw"
    camera_topics: str = _node_default("camera_topics")
    joint_states_topic: str = "joint_states"
    controller: str = _node_default("controller")
    command_type: str = _node_default("command_type")
    namespace: str = ""
    timeout_s: float = 3.0
    discovery_s: float = 5.0
    input_timeout_s: float = _node_default("input_timeout_s")
    max_skew_s: float = _node_default("max_skew_s")
    max_image_pixels: int = _node_default("max_image_pixels")

    def __post_init__(self) -> None:
        if self.command_type not in COMMAND_TYPES:
            raise ValueError(f"command_type must be one of {list(COMMAND_TYPES)}, got {self.command_type!r}")
        for name in ("timeout_s", "discovery_s", "input_timeout_s", "max_skew_s"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not self.model:
            raise ValueError("model must name a model directory, .pt or .onnx")


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, OK / WARN / FAIL / SKIP, the measured value, what to fix."""

    name: str
    level: str
    value: str
    fix: str = ""

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"Check.level must be one of {LEVELS}, got {self.level!r}")


@dataclass
class DoctorReport:
    checks: list[Check]
    config: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No FAIL (WARNs are printed, but wam_node can run)."""
        return all(c.level != "FAIL" for c in self.checks)

    def table(self) -> str:
        width = max(len(c.name) for c in self.checks)
        value_w = min(max(len(c.value) for c in self.checks), 60)
        lines = [f"{'check':<{width}}  status  {'measured':<{value_w}}  fix", "-" * (width + value_w + 20)]
        for c in self.checks:
            lines.append(f"{c.name:<{width}}  {c.level:<6}  {c.value:<{value_w}}  {c.fix}".rstrip())
        fails = [c for c in self.checks if c.level == "FAIL"]
        if fails:
            lines.append(f"\n{len(fails)} problem(s) to fix before running wam_node:")
            lines += [f"  {i}. {c.name}: {c.fix or c.value}" for i, c in enumerate(fails, 1)]
        else:
            warns = sum(c.level == "WARN" for c in self.checks)
            lines.append(f"\nready for wam_node{f' ({warns} warning(s))' if warns else ''}")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(
            {"ok": self.ok, "config": self.config, "checks": [asdict(c) for c in self.checks]}, indent=1
        )


# ---- recorded streams ------------------------------------------------------------------------------------------------
@dataclass
class Stream:
    """What arrived on one topic: receipt times (monotonic s), header stamps (s), refusals (reason -> count)."""

    received: list[float] = field(default_factory=list)
    stamps: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def add(self, received: float, stamp: float) -> None:
        if len(self.received) < MAX_SAMPLES:
            self.received.append(received)
            self.stamps.append(stamp)

    def error(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1

    @property
    def count(self) -> int:
        return len(self.received) + sum(self.errors.values())


# ---- pure checks -----------------------------------------------------------------------------------------------------
def check_topic(
    label: str, topic: str, publishers: list[tuple[str, str]], expected: str, others: list[str]
) -> Check:
    """publishers: (node, type) of every publisher on `topic`; others: topics of the expected type on the graph."""
    if not publishers:
        elsewhere = (
            f"; {expected} topics on the graph: {others}" if others else f"; no {expected} topic on the graph"
        )
        return Check(
            f"{label} topic",
            "FAIL",
            f"no publisher on {topic}",
            f"start the driver, or give wam_node the right topic (`wam bringup robot {label}_topic:=...` or a "
            f"remapping; here --{label.replace('_', '-')}-topic){elsewhere}",
        )
    types = sorted({t for _, t in publishers})
    if types != [expected]:
        return Check(
            f"{label} topic",
            "FAIL",
            f"{topic} has type {', '.join(types)}",
            f"wam_node reads {expected}"
            + (
                " (raw): republish raw, e.g. `ros2 run image_transport republish compressed raw`"
                if expected == IMAGE_TYPE
                else ""
            ),
        )
    nodes = ", ".join(sorted({n for n, _ in publishers}))
    return Check(f"{label} topic", "OK", f"{topic} ({expected}) from {nodes}")


def check_received(label: str, topic: str, stream: Stream, timeout_s: float) -> Check:
    if stream.count == 0:
        return Check(
            f"{label} messages",
            "FAIL",
            f"nothing received on {topic} in {timeout_s:g} s",
            "the publisher sends nothing, or its QoS is incompatible (wam_node subscribes best-effort, volatile)",
        )
    return Check(f"{label} messages", "OK", f"{stream.count} in {timeout_s:g} s")


def check_encoding(
    encodings: dict[str, int], sizes: dict[tuple[int, int], int], errors: dict[str, int]
) -> Check:
    """encodings/sizes: counts of the frames wam_node's parser accepted; errors: reason -> count of refused ones."""
    if errors:
        reason, n = max(errors.items(), key=lambda kv: kv[1])
        total = sum(errors.values()) + sum(encodings.values())
        return Check(
            "camera encoding",
            "FAIL",
            f"{sum(errors.values())}/{total} frames refused: {reason}",
            f"publish {' / '.join(sorted(conv.CHANNELS))} (e.g. through image_proc or a debayer node)"
            if "encoding" in reason
            else "publish well-formed images (step, data size) within max_image_pixels",
        )
    if not encodings:
        return Check("camera encoding", "SKIP", "no frame to check")
    enc = ", ".join(f"{e}" for e in sorted(encodings))
    size = ", ".join(f"{w}x{h}" for (w, h) in sorted(sizes))
    return Check("camera encoding", "OK", f"{enc} {size}")


def check_rate(label: str, received: list[float], control_hz: float, input_timeout_s: float) -> Check:
    """Receipt rate against the model's control rate: OK >= 0.9 x; FAIL below 1 / input_timeout_s (wam_node would
    hold STALE between messages); WARN in between, or when one gap exceeded input_timeout_s."""
    name = f"{label} rate"
    if len(received) < 2:
        return Check(
            name,
            "SKIP" if not received else "FAIL",
            f"{len(received)} message(s): no rate",
            "" if not received else f"publish continuously at >= {control_hz:g} Hz",
        )
    t = np.asarray(received)
    gaps = np.diff(t)
    rate = (len(t) - 1) / max(t[-1] - t[0], 1e-9)
    value = f"{rate:.1f} Hz (max gap {gaps.max() * 1e3:.0f} ms; model {control_hz:g} Hz)"
    if rate < 1.0 / input_timeout_s:
        return Check(
            name,
            "FAIL",
            value,
            f"publish at >= {control_hz:g} Hz: below {1 / input_timeout_s:.1f} Hz "
            f"wam_node holds (STALE) between messages (input_timeout_s {input_timeout_s:g})",
        )
    if rate < RATE_SLACK * control_hz:
        return Check(
            name, "WARN", value, f"slower than the model's {control_hz:g} Hz: frames repeat; raise the rate"
        )
    if gaps.max() > input_timeout_s:
        return Check(
            name, "WARN", value, f"a gap above input_timeout_s ({input_timeout_s:g} s): wam_node holds then"
        )
    return Check(name, "OK", value)


def check_stamps(label: str, stamps: list[float]) -> Check:
    name = f"{label} stamps"
    if not stamps:
        return Check(name, "SKIP", "no message")
    s = np.asarray(stamps)
    zero = int(np.sum(s == 0))
    if zero:
        return Check(
            name,
            "FAIL",
            f"{zero}/{len(s)} zero stamps",
            "stamp header.stamp with the capture time: wam_node cannot check camera/joint skew without it",
        )
    back = int(np.sum(np.diff(s) < 0))
    if back:
        return Check(
            name,
            "FAIL",
            f"{back}/{len(s) - 1} stamps go back in time",
            "stamps must not decrease: wam_node refuses out-of-order messages",
        )
    return Check(name, "OK", f"non-zero, monotonic ({len(s)} messages)")


def check_skew(camera: Stream, joints: Stream, max_skew_s: float) -> Check:
    """|camera stamp - stamp of the latest joint_states received before it|, p50 and max."""
    if not camera.stamps or not joints.stamps:
        return Check("stamp skew", "SKIP", "camera or joint_states missing")
    if min(camera.stamps) == 0 or min(joints.stamps) == 0:
        return Check("stamp skew", "SKIP", "zero stamps (see above)")
    jt, js = np.asarray(joints.received), np.asarray(joints.stamps)
    skews = []
    for received, stamp in zip(camera.received, camera.stamps, strict=True):
        i = np.searchsorted(jt, received, side="right") - 1
        if i >= 0:
            skews.append(abs(stamp - js[i]))
    if not skews:
        return Check("stamp skew", "SKIP", "no camera frame after a joint_states message")
    p50, worst = float(np.median(skews)), float(np.max(skews))
    value = f"p50 {p50 * 1e3:.1f} ms, max {worst * 1e3:.1f} ms (max_skew_s {max_skew_s * 1e3:.0f} ms)"
    if p50 > max_skew_s:
        return Check(
            "stamp skew",
            "FAIL",
            value,
            "stamp both streams from one clock (sim time vs wall time? "
            "use_sim_time) and publish them together: wam_node holds (STALE) on this skew",
        )
    if worst > max_skew_s:
        return Check("stamp skew", "WARN", value, "some frames exceed max_skew_s: wam_node holds on those")
    return Check("stamp skew", "OK", value)


def check_mapping(profile: RobotProfile, model_joints: list[str], names: list[str] | None) -> Check:
    """The last joint_states' names read through the profile's JointReader."""
    if names is None:
        return Check("joint mapping", "SKIP", "no joint_states message")
    try:
        JointReader(profile, model_joints).read(names, np.zeros(len(names)))
    except ValueError as exc:
        return Check(
            "joint mapping",
            "FAIL",
            str(exc)[:200],
            "publish these joints, or map them in the profile's joint_mapping "
            "({joint: NAME, scale, offset} or {sum: [A, B]}; docs/robots.md)",
        )
    rules = [
        f"{j} = {'+'.join(profile.joint_mapping[j].get('sum', [profile.joint_mapping[j].get('joint')]))}"
        for j in model_joints
        if j not in names and j in (profile.joint_mapping or {})
    ]
    return Check(
        "joint mapping",
        "OK",
        f"{len(model_joints)}/{len(model_joints)} model joints" + (f" ({'; '.join(rules)})" if rules else ""),
    )


def joint_columns(
    profile: RobotProfile, model_joints: list[str], messages: list[tuple[list[str], list[float]]]
) -> dict:
    """{model joint: positions over the messages} for every joint that can be read alone (partial mapping too)."""
    out: dict[str, list[float]] = {}
    for joint in model_joints:
        reader = JointReader(profile, [joint])
        for names, positions in messages:
            try:
                out.setdefault(joint, []).append(float(reader.read(names, positions)[0]))
            except (
                ValueError
            ) as exc:  # missing here (reported by check_mapping) or NaN/Inf (a FAIL of the limits)
                if "non-finite" in str(exc):
                    out[joint].append(float("nan"))
    return {k: v for k, v in out.items() if v}


def check_limits(profile: RobotProfile, columns: dict[str, list[float]], dt: float) -> Check:
    """Measured positions against [lower, upper], with wam_node's own tolerance (SafetyFilter: the profile's
    measurement_tolerance, capped at one velocity step of `dt`): FAIL beyond it (wam_node refuses the measurement),
    WARN past a limit within it, OK inside."""
    if not columns:
        return Check("joint limits", "SKIP", "no joint position could be read")
    names = list(columns)
    safety = SafetyFilter(SafetyLimits.from_profile(profile, names), dt)
    rows = []  # (excess - tolerance, excess, joint, farthest value, lower, upper, tolerance)
    for j, joint in enumerate(names):
        v = np.asarray(columns[joint])
        if not np.all(np.isfinite(v)):
            return Check(
                "joint limits", "FAIL", f"{joint} is not finite", "fix the driver: NaN/Inf positions"
            )
        lo, hi = safety.limits.position_lower[j], safety.limits.position_upper[j]
        out = np.maximum(lo - v, v - hi)
        k = int(np.argmax(out))
        tol = float(safety.tolerance[j])
        rows.append((float(out[k]) - tol, float(out[k]), joint, float(v[k]), lo, hi, tol))
    beyond, excess, joint, value, lo, hi, tol = max(rows)
    where = f"{joint} = {value:.4g} (limits [{lo:.4g}, {hi:.4g}])"
    if beyond > 0:
        return Check(
            "joint limits",
            "FAIL",
            f"{where}: {excess:.3g} outside",
            f"beyond the tolerance {tol:.3g}: wam_node refuses it; wrong units, offset or mapping? "
            "(joint_mapping scale/offset; or the profile's limits)",
        )
    _, excess, joint, value, lo, hi, tol = max(rows, key=lambda r: r[1])
    if excess > LIMIT_EPS:
        return Check(
            "joint limits",
            "WARN",
            f"{joint} = {value:.4g} (limits [{lo:.4g}, {hi:.4g}]): {excess:.3g} outside, within tolerance {tol:.3g}",
            "clipped into the limits for commands; move the robot inside its limits",
        )
    return Check(
        "joint limits", "OK", f"{len(names)} joints inside; nearest limit {-excess:.3g} away ({joint})"
    )


def check_controller(
    topic: str, expected: str, subscribers: list[tuple[str, str]], publishers: list[tuple[str, str]]
) -> Check:
    if not subscribers:
        return Check(
            "controller",
            "FAIL",
            f"no subscriber on {topic}",
            "start/activate the controller (ros2 control switch_controllers) or set controller:=NAME "
            "(and command_type:=forward for a forward_command_controller)",
        )
    bad = sorted({t for _, t in subscribers if t != expected})
    if bad:
        return Check(
            "controller",
            "FAIL",
            f"{topic} is subscribed as {', '.join(bad)}",
            f"wam_node publishes {expected}: set command_type to match the controller",
        )
    nodes = ", ".join(sorted({n for n, _ in subscribers}))
    if publishers:
        others = ", ".join(sorted({n for n, _ in publishers}))
        return Check(
            "controller",
            "WARN",
            f"{topic} <- {nodes}; already published by {others}",
            "another node commands this controller: two commanders fight",
        )
    return Check("controller", "OK", f"{topic} ({expected}) -> {nodes}")


# ---- the listening node ----------------------------------------------------------------------------------------------
@dataclass
class CameraRecord:
    """What arrived on one camera topic: the stream, the encodings and sizes wam_node's parser accepts, and how many
    frames it refuses, by reason."""

    stream: Stream = field(default_factory=Stream)
    encodings: dict[str, int] = field(default_factory=dict)
    sizes: dict[tuple[int, int], int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)


class DoctorNode(Node):
    """Subscribes like wam_node (sensor-data QoS, raw camera frames parsed by wam_node's parser) and records.
    `others`: {camera name: topic} of a several-camera model's other cameras."""

    def __init__(self, cfg: DoctorConfig, others: dict[str, str] | None = None, **kwargs) -> None:
        super().__init__(f"wam_doctor_{os.getpid()}", namespace=cfg.namespace or None, **kwargs)
        self.cfg = cfg
        self.other_topics = {name: self.resolve_topic_name(t) for name, t in (others or {}).items()}
        self.others = {name: CameraRecord() for name in self.other_topics}
        self.camera_topic = self.resolve_topic_name(cfg.camera_topic)
        self.joint_topic = self.resolve_topic_name(cfg.joint_states_topic)
        suffix, self.command_msg_type = COMMAND_TYPES[cfg.command_type]
        self.command_topic = self.resolve_topic_name(f"{cfg.controller}/{suffix}")
        self.camera, self.joints = Stream(), Stream()
        self.encodings: dict[str, int] = {}
        self.sizes: dict[tuple[int, int], int] = {}
        self.refused: dict[str, int] = {}  # frames wam_node's image parser refuses: reason -> count
        self.joint_messages: list[tuple[list[str], list[float]]] = []
        self.last_names: list[str] | None = None
        sensor = qos_profile_sensor_data
        conv.warm_image_parser()  # else the first frame holds the executor ~0.2 s
        self.create_subscription(Image, self.camera_topic, self.on_image_raw, sensor, raw=True)
        self.create_subscription(JointState, self.joint_topic, self.on_joints, sensor)
        for name, topic in self.other_topics.items():
            self.create_subscription(
                Image, topic, lambda data, name=name: self.on_other_raw(data, name), sensor, raw=True
            )

    def on_other_raw(self, data: bytes, name: str) -> None:
        """A frame of another camera: recorded as on_image_raw records the main camera's."""
        rec, received = self.others[name], time.monotonic()
        try:
            msg = conv.image_from_cdr(data)
        except conv.MessageError as exc:
            rec.stream.error(str(exc))
            return
        rec.stream.add(received, conv.stamp_to_sec(msg.header.stamp))
        try:
            rgb = conv.image_to_rgb(msg, self.cfg.max_image_pixels)
        except conv.MessageError as exc:
            rec.refused[str(exc)] = rec.refused.get(str(exc), 0) + 1
            return
        rec.encodings[msg.encoding] = rec.encodings.get(msg.encoding, 0) + 1
        size = (int(rgb.shape[1]), int(rgb.shape[0]))
        rec.sizes[size] = rec.sizes.get(size, 0) + 1

    def on_image_raw(self, data: bytes) -> None:
        """Rate and stamps count every well-formed Image; the encoding check counts what wam_node would refuse."""
        received = time.monotonic()
        try:
            msg = conv.image_from_cdr(data)
        except conv.MessageError as exc:
            self.camera.error(str(exc))
            return
        self.camera.add(received, conv.stamp_to_sec(msg.header.stamp))
        try:
            rgb = conv.image_to_rgb(msg, self.cfg.max_image_pixels)
        except conv.MessageError as exc:
            self.refused[str(exc)] = self.refused.get(str(exc), 0) + 1
            return
        self.encodings[msg.encoding] = self.encodings.get(msg.encoding, 0) + 1
        size = (int(rgb.shape[1]), int(rgb.shape[0]))
        self.sizes[size] = self.sizes.get(size, 0) + 1

    def on_joints(self, msg: JointState) -> None:
        received = time.monotonic()
        names, positions = list(msg.name), list(msg.position)
        if len(names) != len(positions):
            self.joints.error(f"{len(names)} names but {len(positions)} positions")
            return
        self.joints.add(received, conv.stamp_to_sec(msg.header.stamp))
        self.last_names = names
        if len(self.joint_messages) < MAX_JOINT_MESSAGES:
            self.joint_messages.append((names, positions))

    def discovered(self) -> bool:
        """Every input has a publisher on the graph (others than this node: it only subscribes)."""
        topics = [self.camera_topic, self.joint_topic, *self.other_topics.values()]
        return all(self.count_publishers(t) > 0 for t in topics)

    def reset(self) -> None:
        """Forget what arrived so far (the measuring window starts now)."""
        self.camera, self.joints = Stream(), Stream()
        self.encodings, self.sizes, self.refused = {}, {}, {}
        self.joint_messages, self.last_names = [], None
        self.others = {name: CameraRecord() for name in self.other_topics}

    def endpoints(self, topic: str, publishers: bool) -> list[tuple[str, str]]:
        get = self.get_publishers_info_by_topic if publishers else self.get_subscriptions_info_by_topic
        return [(f"{i.node_namespace.rstrip('/')}/{i.node_name}", i.topic_type) for i in get(topic)]

    def topics_of_type(self, msg_type: str) -> list[str]:
        """Topics of `msg_type` that someone publishes (the doctor's own subscriptions are topics too)."""
        return sorted(
            name
            for name, types in self.get_topic_names_and_types()
            if msg_type in types and self.count_publishers(name) > 0
        )


# ---- the run -------------------------------------------------------------------------------------------------------
def _model_checks(
    cfg: DoctorConfig,
) -> tuple[list[Check], list[str] | None, float, RobotProfile | None, list[str]]:
    """(checks, model joint names, control rate, profile, the model's cameras) from the model and the profile files."""
    from wam_ros.runtime import load_policy

    checks, joints, hz, cameras = [], None, float(_node_default("control_hz")), ["front"]
    try:
        spec = load_policy(cfg.model, backend=cfg.backend, threads=1).spec
        joints, hz, cameras = list(spec.joint_names), float(spec.control_hz), list(spec.cameras)
        h, w = spec.image_size
        cams = f", cameras {cameras}" if len(cameras) > 1 else ""
        checks.append(
            Check(
                "model",
                "OK",
                f"{len(joints)} joints, {w}x{h}, K={spec.k_frames}, {hz:g} Hz{cams} ({cfg.backend})",
            )
        )
    except Exception as exc:  # noqa: BLE001 - any load failure is the answer of this check
        checks.append(
            Check(
                "model",
                "FAIL",
                f"{type(exc).__name__}: {str(exc)[:160]}",
                "pass the model wam_node will run (--model) and a backend it has (--backend)",
            )
        )
        spec = None
    try:
        if not (cfg.robot or spec):
            raise ValueError("no robot profile: the model did not load, so pass --robot")
        profile = RobotProfile.load(cfg.robot or spec.robot)
    except (OSError, ValueError, TypeError) as exc:
        checks.append(
            Check(
                "profile",
                "FAIL",
                f"{type(exc).__name__}: {str(exc)[:160]}",
                "write one with `wam robot add --urdf ... --name ...` (docs/robots.md)",
            )
        )
        return checks, joints, hz, None, cameras
    if joints is None:
        joints = list(profile.joint_names)
    try:
        SafetyLimits.from_profile(profile, joints)
        robot = spec.robot if spec is not None else profile.name
        if robot != profile.name:
            checks.append(
                Check(
                    "profile",
                    "WARN",
                    f"{profile.name}: the model was trained for robot {robot!r}",
                    "check the joints mean the same on this robot",
                )
            )
        else:
            checks.append(
                Check("profile", "OK", f"{profile.name}: {profile.dof} joints, every model joint in it")
            )
    except ValueError as exc:
        checks.append(
            Check("profile", "FAIL", str(exc)[:200], "use the profile of the robot the model drives")
        )
        return checks, joints, hz, None, cameras
    return checks, joints, hz, profile, cameras


def _other_cameras(
    cfg: DoctorConfig, profile: RobotProfile | None, cameras: list[str]
) -> tuple[dict[str, str], list[Check]]:
    """({camera: topic} of a several-camera model's cameras after the first, as wam_node resolves them; the FAIL of
    a camera with no topic)."""
    if len(cameras) < 2 or profile is None:
        return {}, []
    try:
        topics = camera_topics(profile, cameras, cfg.camera_topics)
    except ValueError as exc:
        return {}, [Check("cameras", "FAIL", str(exc)[:200], "list the camera in the profile's `cameras`")]
    return dict(zip(cameras[1:], topics[1:], strict=True)), []


def _spin(executor: object, context: Context, seconds: float, done: object = None) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and context.ok() and not (done is not None and done()):
        executor.spin_once(timeout_sec=min(0.05, max(end - time.monotonic(), 0.001)))


def run_doctor(cfg: DoctorConfig, context: Context | None = None) -> DoctorReport:
    """Load the model and profile, listen for cfg.timeout_s on a fresh rclpy Context (or `context`), check."""
    checks, joints, hz, profile, cameras = _model_checks(cfg)
    others, failed = _other_cameras(cfg, profile, cameras)
    checks += failed
    own = context is None
    if own:
        context = Context()
        rclpy.init(context=context)
    node = executor = None
    try:
        try:
            node = DoctorNode(cfg, others, context=context)
        except (NameValidationException, RCLError) as exc:  # rcl's own name checks
            raise ValueError(f"invalid topic, controller or namespace name: {exc}") from None
        executor = make_executor(context)
        executor.add_node(node)
        # discovery first: a new DDS participant may see the others only at their next announcement (~3 s with
        # Fast DDS; measured here: 0 to 3 s), so the measuring window starts once both inputs have a publisher
        _spin(executor, context, cfg.discovery_s, node.discovered)
        node.reset()
        _spin(executor, context, cfg.timeout_s)
        checks += _graph_checks(node, cfg, joints, hz, profile)
    finally:
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        if own:
            rclpy.try_shutdown(context=context)
    return DoctorReport(checks, {k: v for k, v in asdict(cfg).items()} | {"control_hz": hz})


def _other_camera_checks(
    node: DoctorNode, name: str, rec: CameraRecord, cfg: DoctorConfig, hz: float
) -> list[Check]:
    """The camera checks for another camera of a several-camera model, each named `camera '<name>' ...`."""
    label, topic = f"camera {name!r}", node.other_topics[name]
    topic_check = check_topic(
        label, topic, node.endpoints(topic, True), IMAGE_TYPE, node.topics_of_type(IMAGE_TYPE)
    )
    out = [topic_check]
    if topic_check.level == "OK" or rec.stream.count:
        out.append(check_received(label, topic, rec.stream, cfg.timeout_s))
    else:
        out.append(Check(f"{label} messages", "SKIP", "no publisher (see above)"))
    encoding = check_encoding(rec.encodings, rec.sizes, rec.refused | rec.stream.errors)
    skew = check_skew(rec.stream, node.joints, cfg.max_skew_s)
    return [
        *out,
        replace(encoding, name=f"{label} encoding"),
        check_rate(label, rec.stream.received, hz, cfg.input_timeout_s),
        check_stamps(label, rec.stream.stamps),
        replace(skew, name=f"{label} stamp skew"),
    ]


def _graph_checks(
    node: DoctorNode, cfg: DoctorConfig, joints: list[str] | None, hz: float, profile: RobotProfile | None
) -> list[Check]:
    out = []
    for label, topic, stream, msg_type in (
        ("camera", node.camera_topic, node.camera, IMAGE_TYPE),
        ("joint_states", node.joint_topic, node.joints, JOINT_STATE_TYPE),
    ):
        topic_check = check_topic(
            label, topic, node.endpoints(topic, True), msg_type, node.topics_of_type(msg_type)
        )
        out.append(topic_check)
        if topic_check.level == "OK" or stream.count:
            out.append(check_received(label, topic, stream, cfg.timeout_s))
        else:
            out.append(Check(f"{label} messages", "SKIP", "no publisher (see above)"))
        if label == "camera":
            out.append(check_encoding(node.encodings, node.sizes, node.refused | node.camera.errors))
        elif stream.errors:
            reason, n = max(stream.errors.items(), key=lambda kv: kv[1])
            out.append(
                Check(
                    "joint_states format",
                    "FAIL",
                    f"{n} malformed: {reason}",
                    "names and positions must match",
                )
            )
        out.append(check_rate(label, stream.received, hz, cfg.input_timeout_s))
        out.append(check_stamps(label, stream.stamps))
    if profile is None or joints is None:
        out += [Check(n, "SKIP", "no usable profile") for n in ("joint mapping", "joint limits")]
    else:
        out.append(check_mapping(profile, joints, node.last_names))
        out.append(check_limits(profile, joint_columns(profile, joints, node.joint_messages), 1.0 / hz))
    out.append(check_skew(node.camera, node.joints, cfg.max_skew_s))
    for name, rec in node.others.items():
        out += _other_camera_checks(node, name, rec, cfg, hz)
    out.append(
        check_controller(
            node.command_topic,
            node.command_msg_type,
            node.endpoints(node.command_topic, False),
            node.endpoints(node.command_topic, True),
        )
    )
    return out
