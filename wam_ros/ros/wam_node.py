"""wam_node: the World Action Model closing the loop over ROS 2 topics, with the safety filter in the command path.

    ros2 run wam_ros wam_node --ros-args --params-file config/wam_node.yaml -p model_path:=models/panda_tabletop
    wam bringup sim_demo                        # with the PyBullet robot (sim_node), in one process

Inputs (sensor-data QoS): camera/image_raw (sensor_msgs/Image rgb8 | bgr8 | mono8, any size; a model with several
cameras subscribes one topic per camera: the robot profile's `cameras` topics, or `camera_topics`), joint_states (read
through the robot profile's joint mapping: the model's joint names, or e.g. a Panda's two finger joints for the gripper
width; any order, extra joints ignored), wam/instruction (std_msgs/String, unless `instruction_topic:=false`; also the
`instruction` parameter, changeable at run time). Service wam/reset (std_srvs/Trigger): a new episode starts, forget
the frame history and the plan. Every control period (or on each camera frame with trigger:=camera) the node runs the
chunk-following policy (wam_ros.runtime.chunk_policy.ChunkPolicy) on the freshest valid inputs and publishes the safe
action chunk as trajectory_msgs/JointTrajectory on <controller>/joint_trajectory (points 1/control_hz apart, stamped
with the camera frame's stamp) or the first target as std_msgs/Float64MultiArray on <controller>/commands; plus
wam/predicted_image, wam/surprise (std_msgs/Float32) and /diagnostics.

Safety (wam_ros.runtime.safety, docs/safety.md): every commanded point inside the position limits, the first within
one velocity step of the last valid measured position and each next within one step of the one before; a measurement
outside the limits by more than the profile's tolerance is refused (ERROR), never clamped into a target; stale or
skewed inputs (any of the model's cameras) -> STALE and one hold at the last valid measured position; NaN/Inf, malformed, mismatched or
out-of-order messages are refused with an ERROR diagnostic; any exception of the model backend -> hold + ERROR; a
surprise above `surprise_threshold` holds when `surprise_hold` is true; an instruction with words the model never saw
is reported (WARN, the words named) and, with `unknown_words:=hold`, held on. No command is published that was not
computed from fresh, valid inputs (the hold is only sent after the node has commanded motion). No torch here: the
node calls only wam_ros.runtime.load_policy().
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import rclpy
import rclpy.parameter
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float32, Float64MultiArray, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from wam_ros.robot import DEFAULT_CAMERA_TOPIC, JointReader, RobotProfile
from wam_ros.ros import conversions as conv
from wam_ros.ros.executor import spin_node
from wam_ros.ros.parameters import declare_params, param
from wam_ros.runtime import load_policy
from wam_ros.runtime.chunk_policy import ChunkPolicy
from wam_ros.runtime.plan_backends import open_plan_backend
from wam_ros.runtime.planner import BestOfN, PlannerConfig
from wam_ros.runtime.safety import SafetyFilter, SafetyLimits, Stamped, StampGuard, UnsafeInput, Watchdog
from wam_ros.runtime.surprise import SurpriseMonitor

LEVEL_NAMES = {
    DiagnosticStatus.OK: "OK",
    DiagnosticStatus.WARN: "WARN",
    DiagnosticStatus.ERROR: "ERROR",
    DiagnosticStatus.STALE: "STALE",
}
STAT_WINDOW = 20_000  # samples kept for the p50/p99 figures (about 30 min at 10 Hz)
ECHO_CHARS = 60  # at most this much of an instruction is echoed in diagnostics and logs


@dataclass(frozen=True)
class WamNodeParams:
    """wam_node's parameters: the one set of defaults (config/wam_node.yaml sets a deployment's choices)."""

    model_path: str = param("models/panda_tabletop", "model directory, .pt or .onnx")
    backend: str = param("onnxruntime", "auto | torch | onnxruntime | tensorrt")
    graph: str = param("full", "full (action + next frame) | action (lowest latency)")
    threads: int = param(
        1, "intra-op threads for the backend (1: on a shared 2-core machine more threads spin-wait)"
    )
    robot: str = param(
        "",
        'robot profile name or path (joints, joint mapping, limits); "" = the robot the model was trained for',
    )
    control_hz: float = param(10.0, "control rate (Hz); trajectory points are 1/rate apart")
    trigger: str = param("timer", "timer: predict every period | camera: on each new frame")
    instruction: str = param("reach the red target", "task instruction")
    instruction_topic: bool = param(
        True, "accept instructions on wam/instruction (false: the parameter only)"
    )
    max_instruction_chars: int = param(200, "longer instructions are refused")
    unknown_words: str = param(
        "warn", "instruction words the model never saw: warn (WARN, run) | hold (WARN, hold)"
    )
    command_type: str = param("trajectory", "trajectory | forward")
    controller: str = param("arm_controller", "controller namespace of the command topics")
    input_timeout_s: float = param(0.3, "max age of camera / joint_states before STALE")
    max_skew_s: float = param(0.25, "max stamp difference between camera and joint_states")
    max_image_pixels: int = param(4_000_000, "larger images are refused")
    camera_topics: str = param(
        "",
        'image topic per camera of the model, "name=topic,..." (e.g. "wrist=/hand_cam/image_raw"); a camera not '
        "named here uses its topic in the robot profile's `cameras` (the first camera: camera/image_raw by default)",
    )
    surprise_threshold: float = param(0.05, "mean squared pixel error (0..1) that counts as surprise")
    surprise_hold: bool = param(False, "hold the robot while surprise > threshold")
    publish_predicted_image: bool = param(True, "publish wam/predicted_image")
    publish_timing: bool = param(
        False, "publish wam/timing (per-command stage times, for latency measurements)"
    )
    diagnostics_period_s: float = param(
        1.0, "/diagnostics at least this often; at once when the level, message or instruction changes"
    )
    replan_steps: int = param(
        1, "control periods per prediction (the controller follows the published chunk in between)"
    )
    planner: str = param(
        "none",
        "none: follow the policy's chunk | best_of_n: propose `candidates` chunks, imagine each, keep those inside "
        "the limits, execute the one the progress critic scores best (needs an imagining model)",
    )
    candidates: int = param(16, "planner: candidate chunks per decision")
    planner_score: str = param(
        "goal", "planner: goal | progress | success | mix (how imagined futures rank; docs/planning.md)"
    )
    planner_noise: float = param(
        0.05, "planner: perturbation of the sampled candidates (rad at the chunk end)"
    )
    planner_backend: str = param("auto", "planner graphs: auto | onnxruntime | torch")
    planner_margin: float = param(
        0.05,
        "planner: another candidate replaces the policy's own chunk only when it scores this much higher",
    )
    planner_proximity: float = param(
        2.0, "planner: score penalty per rad of a candidate's rms distance from the policy's own chunk"
    )
    planner_trigger: str = param(
        "stall",
        "planner: always (choose at every decision) | stall (the policy's own chunk unless the critic's estimate of "
        "the present distance to the goal has stopped moving; docs/planning.md)",
    )
    planner_stall_span: float = param(
        0.01, "planner_trigger stall: the present-distance estimate moved less than this (m) ..."
    )
    planner_stall_window: int = param(2, "planner_trigger stall: ... over this many decisions ...")
    planner_stall_after: int = param(
        4, "planner_trigger stall: ... at least this many decisions after a reset"
    )

    def check(self) -> None:
        """ValueError naming the first parameter with a value the node cannot run with."""
        choices = {
            "backend": ("auto", "torch", "onnxruntime", "tensorrt"),
            "graph": ("full", "action"),
            "trigger": ("timer", "camera"),
            "command_type": ("trajectory", "forward"),
            "unknown_words": ("warn", "hold"),
            "planner": ("none", "best_of_n"),
            "planner_score": ("success", "progress", "goal", "mix"),
            "planner_trigger": ("always", "stall"),
            "planner_backend": ("auto", "onnxruntime", "torch"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                want = " or ".join(map(repr, allowed)) if len(allowed) == 2 else f"one of {list(allowed)}"
                raise ValueError(f"{name} must be {want}, got {getattr(self, name)!r}")
        for name in ("control_hz", "diagnostics_period_s", "input_timeout_s", "max_skew_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not (self.planner_margin >= 0 and self.planner_margin < 1e6):
            raise ValueError(f"planner_margin must be >= 0, got {self.planner_margin}")
        if not (self.planner_proximity >= 0 and self.planner_proximity < 1e6):
            raise ValueError(f"planner_proximity must be >= 0, got {self.planner_proximity}")
        if not (self.planner_noise >= 0 and self.planner_noise < 1.0):
            raise ValueError(f"planner_noise must be in [0, 1) rad, got {self.planner_noise}")
        for name in ("replan_steps", "threads", "max_instruction_chars", "max_image_pixels", "candidates"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be an int >= 1, got {getattr(self, name)!r}")


def camera_topics(profile: RobotProfile, cameras: list[str], overrides: str) -> list[str]:
    """The image topic of each of the model's cameras: `overrides` ("name=topic,..."), else the profile camera of
    that name, else (the first camera only) the profile's first camera. ValueError naming a camera with no topic or
    a malformed override."""
    given: dict[str, str] = {}
    for item in (x.strip() for x in overrides.split(",")):
        if not item:
            continue
        name, sep, topic = (t.strip() for t in item.partition("="))
        if not sep or not name or not topic:
            raise ValueError(f'camera_topics must be "name=topic,...", got item {item!r}')
        if name not in cameras:
            raise ValueError(f"camera_topics names camera {name!r}, but the model sees {cameras}")
        given[name] = topic
    specs = {c["name"]: c["topic"] for c in profile.camera_specs}
    first = profile.camera_specs[0]["topic"] if profile.camera_specs else DEFAULT_CAMERA_TOPIC
    topics = []
    for i, name in enumerate(cameras):
        topic = given.get(name) or specs.get(name) or (first if i == 0 else None)
        if topic is None:
            raise ValueError(
                f"the model sees camera {name!r}, which robot profile {profile.name!r} does not list "
                f"(its cameras: {sorted(specs)}): add it to the profile's `cameras` or set camera_topics:={name}=TOPIC"
            )
        topics.append(topic)
    if len(set(topics)) != len(topics):
        raise ValueError(
            f"two cameras of the model share one topic: {dict(zip(cameras, topics, strict=True))}"
        )
    return topics


def short(text: str, limit: int = ECHO_CHARS) -> str:
    """`text` cut to `limit` characters for logs and diagnostics (a 10,000-character instruction is not echoed)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


class WamNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("wam", **kwargs)
        self.params = p = declare_params(self, WamNodeParams)
        p.check()
        self.control_hz, self.trigger, self.command_type = p.control_hz, p.trigger, p.command_type
        self.replan_steps, self.surprise_hold = p.replan_steps, p.surprise_hold
        self.publish_prediction, self.diagnostics_period = p.publish_predicted_image, p.diagnostics_period_s
        self.dt = 1.0 / p.control_hz
        self._load_model(p)
        self._init_state(p)
        self._make_interfaces(p)
        self.instruction = ""
        reason = self.instruction_refusal(p.instruction)
        if reason:
            raise ValueError(f"instruction parameter: {reason}")
        self.apply_instruction(p.instruction)
        self.get_logger().info(
            f"wam_node: {p.model_path} ({self.policy.backend_name}), {len(self.joint_names)} joints, "
            f"{p.control_hz:g} Hz, {p.command_type} on {self.cmd_pub.topic_name}, trigger={p.trigger}"
        )

    # ---- construction -------------------------------------------------------------------------------------------
    def _load_model(self, p: WamNodeParams) -> None:
        self.policy = load_policy(p.model_path, backend=p.backend, threads=p.threads, graph=p.graph)
        spec = self.policy.spec
        self.joint_names = list(spec.joint_names)
        profile = RobotProfile.load(p.robot or spec.robot)
        self.joint_reader = JointReader(profile, self.joint_names)
        self.cameras = list(spec.cameras)  # the first is the main camera (frames, surprise); then the others
        self.camera_topic_names = camera_topics(profile, self.cameras, p.camera_topics)
        self.safety = SafetyFilter(SafetyLimits.from_profile(profile, self.joint_names), self.dt)
        self.planner = None
        if (
            p.planner == "best_of_n"
        ):  # imagine before acting (issue 16): the graphs run on onnxruntime, no torch
            self.planner = BestOfN(
                open_plan_backend(p.model_path, backend=p.planner_backend, threads=p.threads),
                PlannerConfig(
                    candidates=p.candidates,
                    noise=p.planner_noise,
                    score=p.planner_score,
                    margin=p.planner_margin,
                    proximity=p.planner_proximity,
                    trigger=p.planner_trigger,
                    stall_span=p.planner_stall_span,
                    stall_window=p.planner_stall_window,
                    stall_after=p.planner_stall_after,
                    want_frame=p.publish_predicted_image or p.surprise_hold,
                ),
                limits=self.safety.limits,
                dt=self.dt,
            )
        self.runner = ChunkPolicy(
            self.policy, replan=p.replan_steps, safety=self.safety, planner=self.planner
        )
        self.trajectory_writer = conv.TrajectoryWriter(self.joint_names, self.dt)
        try:  # commands go out pre-serialized (TrajectoryWriter.serialized); else as messages
            self.trajectory_writer.serialized(np.zeros((spec.chunk, len(self.joint_names))))
            self.serialized_commands = True
        except RuntimeError as exc:
            self.get_logger().warning(f"publishing commands as messages: {exc}")
            self.serialized_commands = False
        conv.warm_image_parser()  # its one-time set-up (~0.2 s) would delay the first frame's command

    def _init_state(self, p: WamNodeParams) -> None:
        self.max_pixels = p.max_image_pixels
        self.watchdog = Watchdog(p.input_timeout_s, p.max_skew_s)
        self.surprise = SurpriseMonitor(p.surprise_threshold)
        self.camera_guard, self.joint_guard = StampGuard("camera"), StampGuard("joint_states")
        self.camera: tuple[np.ndarray, Stamped] | None = None  # the main camera's last valid frame
        # the other cameras of a several-camera model (issue 19): last valid frame and stamp guard of each
        self.others: list[tuple[np.ndarray, Stamped] | None] = [None] * (len(self.cameras) - 1)
        self.other_guards = [StampGuard(f"camera {name!r}") for name in self.cameras[1:]]
        self.camera_wall = 0.0  # time.time() when the camera callback was entered (wam/timing)
        self.new_frame = (
            False  # a camera frame arrived since the last step (surprise compares only new frames)
        )
        self.joints: tuple[np.ndarray, Stamped] | None = None  # the last VALID measurement
        self.errors: list[str] = []  # refusals since the last diagnostics message
        self.hold_level: bytes | None = None  # STALE / WARN / ERROR while holding
        self.hold_reason = ""
        self.unknown: list[str] = []  # words of the current instruction the model never saw
        self.commanded = False  # a motion command has been published (only then is a hold sent)
        self.last_step = -1.0
        self.last_step_stamp = 0.0  # camera stamp of the frame the last control step ran on
        self.stats = {
            "cycles": 0,
            "steps": 0,
            "commands": 0,
            "holds": 0,
            "refused": 0,
            "ticks": 0,
            "missed": 0,
            "clamped": 0,
            "infer_s": deque(maxlen=STAT_WINDOW),
            "step_s": deque(maxlen=STAT_WINDOW),
            "overhead_s": deque(maxlen=STAT_WINDOW),  # step_s minus the network call, per published command
        }
        self._last_tick: float | None = None
        self._last_surprise: float | None = None
        self._last_diag: tuple | None = None  # (level, message, instruction) last published
        self._last_diag_time = float("-inf")

    def _make_interfaces(self, p: WamNodeParams) -> None:
        sensor = qos_profile_sensor_data
        # raw: the frame is parsed by conv.image_from_cdr (no rclpy Python message, no pixel copy)
        topics = self.camera_topic_names
        self.create_subscription(Image, topics[0], self.on_image_raw, sensor, raw=True)
        for m, topic in enumerate(topics[1:]):
            self.create_subscription(
                Image, topic, lambda data, m=m: self.on_other_raw(data, m), sensor, raw=True
            )
        self.create_subscription(JointState, "joint_states", self.on_joints, sensor)
        if (
            p.instruction_topic
        ):  # volatile: matches every publisher (transient-local would refuse volatile ones)
            self.create_subscription(String, "wam/instruction", self.on_instruction, 10)
        if p.command_type == "trajectory":
            self.cmd_pub = self.create_publisher(JointTrajectory, f"{p.controller}/joint_trajectory", 10)
        else:
            self.cmd_pub = self.create_publisher(Float64MultiArray, f"{p.controller}/commands", 10)
        self.pred_pub = self.create_publisher(Image, "wam/predicted_image", 10)
        self.surprise_pub = self.create_publisher(Float32, "wam/surprise", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.timing_pub = (
            self.create_publisher(Float64MultiArray, "wam/timing", 10) if p.publish_timing else None
        )
        self.create_service(Trigger, "wam/reset", self.on_reset)
        self.add_on_set_parameters_callback(self.on_set_parameters)
        self.timer = self.create_timer(self.dt, self.on_timer)

    # ---- inputs -------------------------------------------------------------------------------------------------
    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def refuse(self, source: str, reason: str) -> None:
        self.stats["refused"] += 1
        if len(self.errors) < 10:
            self.errors.append(f"{source}: {short(reason, 300)}")
        self.get_logger().warning(f"refused {source}: {short(reason, 300)}", throttle_duration_sec=1.0)

    def on_image_raw(self, data: bytes) -> None:
        entered = time.time()
        try:
            msg = conv.image_from_cdr(data)
        except conv.MessageError as exc:
            self.refuse("camera", str(exc))
            return
        self.on_image(msg, entered)

    def on_image(self, msg: Image, entered: float | None = None) -> None:
        """A camera frame: a sensor_msgs/Image, or the Image-like object `conv.image_from_cdr` parses."""
        entered = time.time() if entered is None else entered
        try:
            rgb = conv.image_to_rgb(msg, self.max_pixels)
            stamp = conv.stamp_to_sec(msg.header.stamp)
            self.camera_guard.accept(stamp)
        except (conv.MessageError, UnsafeInput) as exc:
            self.refuse("camera", str(exc))
            return
        now = self.now()
        self.camera, self.camera_wall = (rgb, Stamped(now, stamp)), entered
        self.new_frame = True
        if self.trigger == "camera" and self.due(stamp, now):
            self.step(now)  # a frame sooner than that waits for the next timer tick (on_timer)

    def on_other_raw(self, data: bytes, m: int) -> None:
        """A frame of another camera (self.cameras[m + 1]): parsed, checked and kept until the next control step."""
        source = f"camera {self.cameras[m + 1]!r}"
        try:
            msg = conv.image_from_cdr(data)
            rgb = conv.image_to_rgb(msg, self.max_pixels)
            stamp = conv.stamp_to_sec(msg.header.stamp)
            self.other_guards[m].accept(stamp)
        except (conv.MessageError, UnsafeInput) as exc:
            self.refuse(source, str(exc))
            return
        self.others[m] = (rgb, Stamped(self.now(), stamp))

    def stale_camera(self, now: float) -> str | None:
        """Why another camera's frame cannot be used now (missing, older than input_timeout_s, or its stamp more than
        max_skew_s from the joint_states'), None when every camera is fresh."""
        for name, topic, state in zip(
            self.cameras[1:], self.camera_topic_names[1:], self.others, strict=True
        ):
            if state is None:
                return f"no valid frame from camera {name!r} ({topic}) received yet"
            status = self.watchdog.check(now, state[1], self.joints[1])
            if not status.ok:
                return f"camera {name!r} ({topic}): {status.reason}"
        return None

    def on_joints(self, msg: JointState) -> None:
        try:
            q = conv.joint_positions(msg, self.joint_reader)
            q = self.safety.check_measurement(q)  # far outside the limits: a fault, refused, never a target
            stamp = conv.stamp_to_sec(msg.header.stamp)
            self.joint_guard.accept(stamp)
        except (conv.MessageError, UnsafeInput) as exc:
            self.refuse("joint_states", str(exc))
            return
        self.joints = (q, Stamped(self.now(), stamp))

    def on_instruction(self, msg: String) -> None:
        reason = self.instruction_refusal(msg.data)
        if reason:  # checked here too: set_parameters would echo the whole value in its own error
            self.refuse("instruction", reason)
            return
        result = self.set_parameters([rclpy.parameter.Parameter("instruction", value=msg.data)])[0]
        if not result.successful:
            self.refuse("instruction", result.reason)

    def instruction_refusal(self, text: object) -> str | None:
        """Why an instruction cannot be taken (None: it can)."""
        if not isinstance(text, str) or not text.strip():
            return f"instruction must be a non-empty string, got {short(repr(text))}"
        if len(text) > self.params.max_instruction_chars:
            return (
                f"instruction of {len(text)} characters is longer than max_instruction_chars "
                f"({self.params.max_instruction_chars}): {short(text)!r}"
            )
        return None

    def apply_instruction(self, text: str) -> None:
        """Take a new instruction: fresh history and plan; find the words the model never saw."""
        if text == self.instruction:
            return
        self.runner.set_instruction(text)
        self.instruction = text
        self.surprise.reset()
        self.unknown = self.policy.tokenizer.unknown_words(text)
        if self.unknown:
            self.get_logger().warning(
                f"instruction {short(text)!r} has words the model never saw: {short(', '.join(self.unknown))}"
                + ("; holding (unknown_words:=hold)" if self.params.unknown_words == "hold" else "")
            )
        else:
            self.get_logger().info(f"instruction: {short(text)!r}")
        if self.hold_level == DiagnosticStatus.WARN and self.hold_reason.startswith("unknown"):
            self.hold_level, self.hold_reason = None, ""  # a new instruction lifts a hold on unknown words

    def on_set_parameters(self, params: list) -> SetParametersResult:
        for p in params:
            if p.name == "instruction":
                reason = self.instruction_refusal(p.value)
                if reason:
                    return SetParametersResult(successful=False, reason=reason)
                if self.instruction:  # (the first call comes from the constructor)
                    self.apply_instruction(p.value)
        return SetParametersResult(successful=True)

    def on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        """A new episode: forget the frame history, the pending prediction and the chunk being followed."""
        self.runner.reset()
        self.surprise.reset()
        self.last_step_stamp = 0.0  # a new episode may restart the camera's stamps
        response.success, response.message = True, "frame history and plan cleared"
        return response

    # ---- control ------------------------------------------------------------------------------------------------
    def on_timer(self) -> None:
        now = self.now()
        self.stats["ticks"] += 1
        if self._last_tick is not None and now - self._last_tick > 1.5 * self.dt:
            self.stats["missed"] += 1
        self._last_tick = now
        if self.trigger == "timer":
            self.step(now)
        elif self.new_frame and self.due(self.camera[1].stamp, now):
            # trigger:=camera, a frame not used yet: it came sooner than half a period after the last step, or before
            # any joint_states (an image and the joint_states published just before it travel on separate topics
            # and may arrive in either order); step on it now instead of dropping it until the next frame.
            self.step(now)
        else:
            status = self.watchdog.check(now, self.camera and self.camera[1], self.joints and self.joints[1])
            if not status.ok:
                self.hold(DiagnosticStatus.STALE, status.reason)
        self.publish_diagnostics(now)

    def due(self, stamp: float, now: float) -> bool:
        """trigger:=camera: is a frame with this stamp at least half a control period after the frame of the last
        step? Judged on the camera's stamps (its own clock), so one late step does not make the next frame wait for a
        timer tick (measured: that cascade was the ~30 ms tail of benchmarks/ros_latency.py); on receipt times only
        for unstamped frames."""
        if stamp > 0 and self.last_step_stamp > 0:
            return stamp - self.last_step_stamp >= 0.5 * self.dt
        return now - self.last_step >= 0.5 * self.dt

    def step(self, now: float) -> None:
        """One control step on the freshest valid inputs: plan (or follow the plan), check, publish (or hold)."""
        t0 = time.perf_counter()
        self.last_step = now
        status = self.watchdog.check(now, self.camera and self.camera[1], self.joints and self.joints[1])
        if not status.ok:
            self.hold(DiagnosticStatus.STALE, status.reason)
            return
        stale = self.stale_camera(now) if self.others else None
        if stale:  # a several-camera model steps only when every camera has a fresh frame
            self.hold(DiagnosticStatus.STALE, stale)
            return
        if self.unknown and self.params.unknown_words == "hold":
            self.hold(DiagnosticStatus.WARN, f"unknown instruction words: {short(', '.join(self.unknown))}")
            return
        rgb, cam = self.camera
        q, _ = self.joints
        self.last_step_stamp = cam.stamp
        if self.hold_level == DiagnosticStatus.STALE:  # recovering from a gap: start a fresh frame history
            self.runner.reset()
            self.surprise.reset()
        self.stats["cycles"] += 1  # control cycles run on fresh inputs (the achieved control rate)
        fresh, self.new_frame = self.new_frame, False
        try:  # converted and resized once, here; the history keeps the model-size frame
            small = self.runner.observe(rgb)
            for name, (other, _) in zip(self.cameras[1:], self.others, strict=True):
                self.runner.observe(other, camera=name)
        except ValueError as exc:
            self.refuse("camera", str(exc))
            self.hold(DiagnosticStatus.ERROR, f"no safe command: {exc}")
            return
        # surprise: this frame vs the last prediction (~0.05 ms). Needed before commanding only when it can trigger a
        # hold; otherwise it is computed after the command is out (always before the next prediction replaces it)
        surprise = self.observe_surprise(small) if fresh and self.surprise_hold else None
        mid_chunk = self.commanded and self.hold_level is None and self.runner.steps_left > 0
        if mid_chunk and not (self.surprise_hold and self.surprise.exceeded):
            action = self.runner.next_action()  # the controller is still executing the chunk (inputs fresh)
            if self.command_type == "forward":  # a forward controller needs each target of the chunk in turn
                self.cmd_pub.publish(conv.float_array(action))
            self.publish_surprise(self.surprise_after(surprise, fresh, small))
            return
        try:
            t1, wall1 = time.perf_counter(), time.time()
            plan = self.runner.plan(q)
            infer, wall2 = time.perf_counter() - t1, time.time()
            self.stats["infer_s"].append(infer)
            self.runner.next_action()  # the first point is commanded now
        except Exception as exc:  # noqa: BLE001 - any backend error (onnxruntime, TensorRT, torch): hold, never crash
            reason = f"{type(exc).__name__}: {exc}"
            self.refuse("model", reason)
            self.hold(DiagnosticStatus.ERROR, f"no safe command: {short(reason, 200)}")
            self.publish_surprise(self.surprise_after(surprise, fresh, small))
            return
        self.stats["steps"] += 1
        surprised = self.surprise_hold and self.surprise.exceeded
        if not surprised:  # the latency-critical path ends with this publish; monitoring outputs follow
            msg = self.command_msg(plan.chunk, conv.sec_to_stamp(cam.stamp) if cam.stamp > 0 else None)
            publishing = time.time()
            self.cmd_pub.publish(msg)
            self.commanded = True
            self.hold_level, self.hold_reason = None, ""
            self.stats["commands"] += 1
            self.stats["clamped"] += int(plan.safe.position_clamped or plan.safe.velocity_clamped)
            total = time.perf_counter() - t0
            self.stats["step_s"].append(total)
            self.stats["overhead_s"].append(total - infer)
            if (
                self.timing_pub is not None
            ):  # [camera stamp, callback entered, predict start, end, publish called]
                self.timing_pub.publish(
                    Float64MultiArray(data=[cam.stamp, self.camera_wall, wall1, wall2, publishing])
                )
        self.publish_surprise(self.surprise_after(surprise, fresh, small))
        self.surprise.expect(plan.next_frame)
        if plan.next_frame is not None and self.publish_prediction:
            self.pred_pub.publish(
                conv.rgb_to_image(plan.next_frame, self.get_clock().now().to_msg(), "wam_prediction")
            )
        if surprised:
            self.hold(
                DiagnosticStatus.WARN,
                f"surprise {self.surprise.value:.4f} > threshold {self.surprise.threshold:.4f}",
            )

    def observe_surprise(self, rgb: np.ndarray) -> float | None:
        value = self.surprise.observe(rgb)
        if value is not None:
            self._last_surprise = value
        return value

    def surprise_after(self, surprise: float | None, fresh: bool, rgb: np.ndarray) -> float | None:
        """The step's surprise: the one computed before commanding, else (a fresh frame) computed now."""
        return surprise if surprise is not None or not fresh else self.observe_surprise(rgb)

    def publish_surprise(self, value: float | None) -> None:
        if value is not None:
            self.surprise_pub.publish(Float32(data=float(value)))

    def command_msg(self, points: np.ndarray, stamp: object) -> JointTrajectory | Float64MultiArray | bytes:
        """The command for `points`: a JointTrajectory serialized to bytes (publish() sends those as they are), or
        a reused message (publish it before the next call), or a Float64MultiArray."""
        if self.command_type == "trajectory":
            if self.serialized_commands:
                return self.trajectory_writer.serialized(points, stamp)
            return self.trajectory_writer(points, stamp)
        return conv.float_array(points[0])

    def hold(self, level: bytes, reason: str) -> None:
        """Hold the last VALID measured position (sent once per hold, and only after motion was commanded)."""
        first = self.hold_level is None
        if (
            level == DiagnosticStatus.STALE
        ):  # after a gap, re-synchronise to the senders' clocks (e.g. a sim reset)
            self.camera_guard.reset()
            self.joint_guard.reset()
            for guard in self.other_guards:
                guard.reset()
            self.last_step_stamp = 0.0
        self.hold_level, self.hold_reason = level, reason
        if first and self.commanded and self.joints is not None:
            self.cmd_pub.publish(self.command_msg(self.safety.hold_point(self.joints[0]), None))
            self.stats["holds"] += 1
            self.get_logger().warning(f"holding position: {short(reason, 200)}")

    def status(self) -> tuple[bytes, str]:
        """The node's diagnostic level and message now."""
        if self.errors:
            return DiagnosticStatus.ERROR, "refused: " + " | ".join(self.errors)
        if self.hold_level is not None:
            return self.hold_level, f"holding: {self.hold_reason}"
        if self.unknown:
            return DiagnosticStatus.WARN, f"unknown instruction words: {short(', '.join(self.unknown))}"
        return DiagnosticStatus.OK, "running"

    def publish_diagnostics(self, now: float | None = None) -> None:
        """Publish /diagnostics when something changed (refusals pending, level, message, instruction) or
        `diagnostics_period_s` has passed (now=None: always). Building the message costs ~0.2 ms of Python: at the
        control rate it sat in front of camera frames arriving just after a tick (measured in ros_latency.py)."""
        level, message = self.status()
        key = (level, message, self.instruction)
        if (
            now is not None
            and key == self._last_diag
            and now - self._last_diag_time < self.diagnostics_period
        ):
            return
        self._last_diag, self._last_diag_time = key, (self.now() if now is None else now)
        st = DiagnosticStatus(name="wam: control", hardware_id=self.get_fully_qualified_name())
        st.level, st.message = level, message
        self.errors = []
        infer, overhead = self.stats["infer_s"], list(self.stats["overhead_s"])[-100:]
        st.values = [
            KeyValue(key=k, value=str(v))
            for k, v in (
                ("instruction", short(self.instruction)),
                ("unknown_words", short(", ".join(self.unknown))),
                ("commands", self.stats["commands"]),
                ("refused", self.stats["refused"]),
                ("holds", self.stats["holds"]),
                ("ticks", self.stats["ticks"]),
                ("missed_cycles", self.stats["missed"]),
                ("clamped", self.stats["clamped"]),
                ("inference_ms", f"{infer[-1] * 1e3:.2f}" if infer else "nan"),
                # statistics.median: np.median's first call imports numpy internals (~17 ms, measured) while a
                # camera frame may be waiting behind this timer callback
                ("step_overhead_ms_p50", f"{statistics.median(overhead) * 1e3:.3f}" if overhead else "nan"),
                ("surprise", f"{self._last_surprise:.5f}" if self._last_surprise is not None else "nan"),
                *self._planner_values(),
                *self._camera_values(),
            )
        ]
        msg = DiagnosticArray(status=[st])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(msg)

    def _camera_values(self) -> list[tuple[str, str]]:
        """A several-camera model's cameras and topics (nothing for one camera: its diagnostics are unchanged)."""
        if len(self.cameras) == 1:
            return []
        pairs = zip(self.cameras, self.camera_topic_names, strict=True)
        return [("cameras", ", ".join(f"{name}={topic}" for name, topic in pairs))]

    def _planner_values(self) -> list[tuple[str, str]]:
        """The last decision of the planner (candidates kept, the chosen one's predicted success), if planning."""
        plan = self.runner.last_plan
        if self.planner is None or plan is None or not plan.info:
            return []
        info = plan.info
        p = 1.0 / (1.0 + np.exp(-float(info["critic"][info["chosen"]][0])))
        return [
            ("planner", f"best_of_n x{len(info['score'])}"),
            ("plan_feasible", str(int(info["feasible"].sum()))),
            ("plan_chosen", str(info["chosen"])),
            ("plan_p_success", f"{p:.3f}"),
            ("plan_fallback", str(bool(info["fallback"]))),
            *((("plan_stalled", str(bool(info["stalled"]))),) if "stalled" in info else ()),
        ]


NODE_CLASS = WamNode


def main(args: list[str] | None = None) -> None:
    spin_node(WamNode, args)


if __name__ == "__main__":
    main()
