"""wam_node: the World Action Model closing the loop over ROS 2 topics, with the safety filter in the command path.

    ros2 run wam_ros wam_node --ros-args --params-file config/wam_node.yaml -p model_path:=models/panda_tabletop
    wam bringup sim_demo                        # with the PyBullet robot (sim_node), in one process

Inputs (sensor-data QoS): camera/image_raw (sensor_msgs/Image rgb8 | bgr8 | mono8, any size), joint_states (matched
to the model's joints by name, any order, extra joints ignored), wam/instruction (std_msgs/String; also the
`instruction` parameter, changeable at run time). Service wam/reset (std_srvs/Trigger): a new episode starts, forget
the frame history and the plan. Every control period (or on each camera frame with
trigger:=camera) the node runs `policy.predict()` on the freshest valid inputs and publishes the action chunk as
trajectory_msgs/JointTrajectory on <controller>/joint_trajectory (points 1/control_hz apart, stamped with the camera
frame's stamp) or the first target as std_msgs/Float64MultiArray on <controller>/commands; plus wam/predicted_image,
wam/surprise (std_msgs/Float32) and /diagnostics.

Safety (wam_ros.runtime.safety): targets clamped to the robot profile's position and velocity limits; stale or
skewed inputs -> STALE and one hold command at the last measured position; NaN/Inf, malformed, mismatched or
out-of-order messages are refused with an ERROR diagnostic; a surprise above `surprise_threshold` holds when
`surprise_hold` is true. No command is published that was not computed from fresh, valid inputs (the hold is only sent
after the node has commanded motion). No torch here: the node calls only wam_ros.runtime.load_policy().
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
import rclpy
import rclpy.executors
import rclpy.parameter
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float32, Float64MultiArray, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from wam_ros.robot import RobotProfile
from wam_ros.ros import conversions as cv
from wam_ros.ros.executor import spin_node
from wam_ros.ros.parameters import declare
from wam_ros.runtime import load_policy
from wam_ros.runtime.preprocess import FrameStack
from wam_ros.runtime.safety import SafetyFilter, SafetyLimits, Stamped, StampGuard, UnsafeInput, Watchdog
from wam_ros.runtime.surprise import SurpriseMonitor

LEVEL_NAMES = {
    DiagnosticStatus.OK: "OK",
    DiagnosticStatus.WARN: "WARN",
    DiagnosticStatus.ERROR: "ERROR",
    DiagnosticStatus.STALE: "STALE",
}
STAT_WINDOW = 20_000  # samples kept for the p50/p99 figures (about 30 min at 10 Hz)


class WamNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("wam", **kwargs)
        model_path = declare(self, "model_path", "models/panda_tabletop", "model directory, .pt or .onnx")
        backend = declare(self, "backend", "onnxruntime", "auto | torch | onnxruntime | tensorrt")
        graph = declare(self, "graph", "full", "full (action + next frame) | action (lowest latency)")
        threads = declare(self, "threads", 2, "intra-op threads for the backend")
        robot = declare(self, "robot", "panda", "robot profile name or path (joint limits)")
        self.control_hz = declare(
            self, "control_hz", 10.0, "control rate (Hz); trajectory points are 1/rate apart"
        )
        self.trigger = declare(
            self, "trigger", "timer", "timer: predict every period | camera: on each new frame"
        )
        self.instruction = declare(self, "instruction", "reach the red target", "task instruction")
        self.command_type = declare(self, "command_type", "trajectory", "trajectory | forward")
        controller = declare(
            self, "controller", "arm_controller", "controller namespace of the command topics"
        )
        timeout = declare(self, "input_timeout_s", 0.3, "max age of camera / joint_states before STALE")
        skew = declare(self, "max_skew_s", 0.25, "max stamp difference between camera and joint_states")
        self.max_pixels = declare(self, "max_image_pixels", 4_000_000, "larger images are refused")
        threshold = declare(
            self, "surprise_threshold", 0.05, "mean squared pixel error (0..1) that counts as surprise"
        )
        self.surprise_hold = declare(
            self, "surprise_hold", False, "hold the robot while surprise > threshold"
        )
        self.publish_prediction = declare(
            self, "publish_predicted_image", True, "publish wam/predicted_image"
        )
        self.replan_steps = declare(
            self,
            "replan_steps",
            1,
            "control periods per prediction (the controller follows the published chunk in between)",
        )
        publish_timing = declare(
            self,
            "publish_timing",
            False,
            "publish wam/timing (per-command stage times, for latency measurements)",
        )
        self.diagnostics_period = declare(
            self,
            "diagnostics_period_s",
            1.0,
            "/diagnostics at least this often; at once when the level, message or instruction changes",
        )
        if not self.diagnostics_period > 0:
            raise ValueError(f"diagnostics_period_s must be > 0, got {self.diagnostics_period}")
        self._last_diag: tuple | None = None  # (level, message, instruction) last published
        self._last_diag_time = float("-inf")
        if self.command_type not in ("trajectory", "forward"):
            raise ValueError(f"command_type must be 'trajectory' or 'forward', got {self.command_type!r}")
        if self.trigger not in ("timer", "camera"):
            raise ValueError(f"trigger must be 'timer' or 'camera', got {self.trigger!r}")
        if not self.control_hz > 0:
            raise ValueError(f"control_hz must be > 0, got {self.control_hz}")
        if not isinstance(self.replan_steps, int) or self.replan_steps < 1:
            raise ValueError(f"replan_steps must be an int >= 1, got {self.replan_steps!r}")
        if not str(self.instruction).strip():
            raise ValueError("instruction must be a non-empty string")

        self.policy = load_policy(model_path, backend=backend, threads=threads, graph=graph)
        spec = self.policy.spec
        self.joint_names = list(spec.joint_names)
        profile = RobotProfile.load(robot)
        missing = [n for n in self.joint_names if n not in profile.joint_names]
        if missing:
            raise ValueError(f"model joints {missing} are not in robot profile {profile.name!r}")
        idx = [profile.joint_names.index(n) for n in self.joint_names]
        limits = SafetyLimits(
            self.joint_names,
            np.asarray(profile.position_lower)[idx],
            np.asarray(profile.position_upper)[idx],
            np.asarray(profile.velocity_limit)[idx],
        )
        self.dt = 1.0 / self.control_hz
        self.safety = SafetyFilter(limits, self.dt)
        self.trajectory_writer = cv.TrajectoryWriter(self.joint_names, self.dt)
        try:  # commands go out pre-serialized (TrajectoryWriter.serialized); else as messages
            self.trajectory_writer.serialized(np.zeros((spec.chunk, len(self.joint_names))))
            self.serialized_commands = True
        except RuntimeError as exc:
            self.get_logger().warning(f"publishing commands as messages: {exc}")
            self.serialized_commands = False
        self.watchdog = Watchdog(timeout, skew)
        self.surprise = SurpriseMonitor(threshold)
        self.frames = FrameStack(int(spec.k_frames))
        self.camera_guard, self.joint_guard = StampGuard("camera"), StampGuard("joint_states")

        self.camera: tuple[np.ndarray, Stamped] | None = None
        self.camera_wall = 0.0  # time.time() when the camera callback was entered (wam/timing)
        self.new_frame = (
            False  # a camera frame arrived since the last step (surprise compares only new frames)
        )
        self.joints: tuple[np.ndarray, Stamped] | None = None
        self.errors: list[str] = []  # refusals since the last diagnostics message
        self.hold_level: bytes | None = None  # STALE / WARN / ERROR while holding
        self.hold_reason = ""
        self.commanded = False  # a motion command has been published (only then is a hold sent)
        self.last_step = -1.0
        self.plan_age = 0  # control steps since the last published chunk
        self.chunk = np.zeros((0, len(self.joint_names)))  # the last published (safe) chunk
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
            "overhead_s": deque(maxlen=STAT_WINDOW),
        }  # step_s minus predict() per published command
        self._last_tick: float | None = None
        self._last_surprise: float | None = None

        sensor = qos_profile_sensor_data
        # raw: the frame is parsed by cv.image_from_cdr (no rclpy Python message, no pixel copy)
        self.create_subscription(Image, "camera/image_raw", self.on_image_raw, sensor, raw=True)
        self.create_subscription(JointState, "joint_states", self.on_joints, sensor)
        # volatile: matches every publisher (a transient-local subscription refuses volatile ones)
        self.create_subscription(String, "wam/instruction", self.on_instruction, 10)
        if self.command_type == "trajectory":
            self.cmd_pub = self.create_publisher(JointTrajectory, f"{controller}/joint_trajectory", 10)
        else:
            self.cmd_pub = self.create_publisher(Float64MultiArray, f"{controller}/commands", 10)
        self.pred_pub = self.create_publisher(Image, "wam/predicted_image", 10)
        self.surprise_pub = self.create_publisher(Float32, "wam/surprise", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.timing_pub = (
            self.create_publisher(Float64MultiArray, "wam/timing", 10) if publish_timing else None
        )
        self.create_service(Trigger, "wam/reset", self.on_reset)
        self.add_on_set_parameters_callback(self.on_set_parameters)
        self.timer = self.create_timer(self.dt, self.on_timer)
        self.get_logger().info(
            f"wam_node: {model_path} ({backend}), "
            f"{len(self.joint_names)} joints, {self.control_hz:g} Hz, {self.command_type} on "
            f"{self.cmd_pub.topic_name}, trigger={self.trigger}"
        )

    # ---- inputs -------------------------------------------------------------------------------------------------
    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def refuse(self, source: str, reason: str) -> None:
        self.stats["refused"] += 1
        if len(self.errors) < 10:
            self.errors.append(f"{source}: {reason}")
        self.get_logger().warning(f"refused {source}: {reason}", throttle_duration_sec=1.0)

    def on_image_raw(self, data: bytes) -> None:
        entered = time.time()
        try:
            msg = cv.image_from_cdr(data)
        except cv.MessageError as exc:
            self.refuse("camera", str(exc))
            return
        self.on_image(msg, entered)

    def on_image(self, msg: Image, entered: float | None = None) -> None:
        """A camera frame: a sensor_msgs/Image, or the Image-like object `cv.image_from_cdr` parses."""
        entered = time.time() if entered is None else entered
        try:
            rgb = cv.image_to_rgb(msg, self.max_pixels)
            stamp = cv.stamp_to_sec(msg.header.stamp)
            self.camera_guard.accept(stamp)
        except (cv.MessageError, UnsafeInput) as exc:
            self.refuse("camera", str(exc))
            return
        now = self.now()
        self.camera, self.camera_wall = (rgb, Stamped(now, stamp)), entered
        self.new_frame = True
        if self.trigger == "camera" and now - self.last_step >= 0.5 * self.dt:
            self.step(now)  # a frame sooner than that waits for the next timer tick (on_timer)

    def on_joints(self, msg: JointState) -> None:
        try:
            q = cv.joint_positions(msg, self.joint_names)
            stamp = cv.stamp_to_sec(msg.header.stamp)
            self.joint_guard.accept(stamp)
        except (cv.MessageError, UnsafeInput) as exc:
            self.refuse("joint_states", str(exc))
            return
        self.joints = (q, Stamped(self.now(), stamp))

    def on_instruction(self, msg: String) -> None:
        result = self.set_parameters([rclpy.parameter.Parameter("instruction", value=msg.data)])[0]
        if not result.successful:
            self.refuse("instruction", result.reason)

    def on_set_parameters(self, params: list) -> SetParametersResult:
        for p in params:
            if p.name == "instruction":
                if not isinstance(p.value, str) or not p.value.strip():
                    return SetParametersResult(
                        successful=False, reason=f"instruction must be a non-empty string, got {p.value!r}"
                    )
                if p.value != self.instruction:
                    self.instruction = p.value
                    self.frames.reset()  # a new task: do not mix the old frames into the new history
                    self.surprise.reset()
                    self.get_logger().info(f"instruction: {p.value!r}")
        return SetParametersResult(successful=True)

    def on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        """A new episode: forget the frame history, the pending prediction and the chunk being followed."""
        self.frames.reset()
        self.surprise.reset()
        self.plan_age = self.replan_steps  # predict at the next control step
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
        elif self.new_frame and now - self.last_step >= 0.5 * self.dt:
            # trigger:=camera, a frame not used yet: it came sooner than half a period after the last step, or before
            # any joint_states (an image and the joint_states published just before it travel on separate topics
            # and may arrive in either order); step on it now instead of dropping it until the next frame.
            self.step(now)
        else:
            status = self.watchdog.check(now, self.camera and self.camera[1], self.joints and self.joints[1])
            if not status.ok:
                self.hold(DiagnosticStatus.STALE, status.reason)
        self.publish_diagnostics(now)

    def step(self, now: float) -> None:
        """One control step on the freshest valid inputs: predict, check, clamp, publish (or hold)."""
        t0 = time.perf_counter()
        self.last_step = now
        status = self.watchdog.check(now, self.camera and self.camera[1], self.joints and self.joints[1])
        if not status.ok:
            self.hold(DiagnosticStatus.STALE, status.reason)
            return
        rgb, cam = self.camera
        q, _ = self.joints
        if self.hold_level == DiagnosticStatus.STALE:  # recovering from a gap: start a fresh frame history
            self.frames.reset()
            self.surprise.reset()
        self.stats["cycles"] += 1  # control cycles run on fresh inputs (the achieved control rate)
        self.frames.push(rgb)
        fresh, self.new_frame = self.new_frame, False
        # surprise: this frame vs the last prediction (~0.05 ms). Needed before commanding only when it can trigger a
        # hold; otherwise it is computed after the command is out (always before the next prediction replaces it)
        surprise = self.observe_surprise(rgb) if fresh and self.surprise_hold else None
        mid_chunk = self.commanded and self.hold_level is None and self.plan_age < self.replan_steps - 1
        if mid_chunk and not (self.surprise_hold and self.surprise.exceeded):
            self.plan_age += (
                1  # the controller is still executing the last chunk (inputs checked fresh above)
            )
            if self.command_type == "forward":  # a forward controller needs each target of the chunk in turn
                self.cmd_pub.publish(cv.float_array(self.chunk[min(self.plan_age, len(self.chunk) - 1)]))
            self.publish_surprise(self.surprise_after(surprise, fresh, rgb))
            return
        try:
            t1, wall1 = time.perf_counter(), time.time()
            out = self.policy.predict(
                {"images": self.frames.frames(), "joint_pos": q, "instruction": self.instruction}
            )
            infer, wall2 = time.perf_counter() - t1, time.time()
            self.stats["infer_s"].append(infer)
            safe = self.safety.apply(out["action"], q)
        except (ValueError, RuntimeError) as exc:  # UnsafeInput is a ValueError: NaN/Inf or wrong shape out
            self.refuse("model", str(exc))
            self.hold(DiagnosticStatus.ERROR, f"no safe command: {exc}")
            self.publish_surprise(self.surprise_after(surprise, fresh, rgb))
            return
        self.stats["steps"] += 1
        surprised = self.surprise_hold and self.surprise.exceeded
        if not surprised:  # the latency-critical path ends with this publish; monitoring outputs follow
            msg = self.command_msg(safe.points, cv.sec_to_stamp(cam.stamp) if cam.stamp > 0 else None)
            publishing = time.time()
            self.cmd_pub.publish(msg)
            self.commanded = True
            self.plan_age, self.chunk = 0, safe.points
            self.hold_level, self.hold_reason = None, ""
            self.stats["commands"] += 1
            self.stats["clamped"] += int(safe.position_clamped or safe.velocity_clamped)
            total = time.perf_counter() - t0
            self.stats["step_s"].append(total)
            self.stats["overhead_s"].append(total - infer)
            if (
                self.timing_pub is not None
            ):  # [camera stamp, callback entered, predict start, end, publish called]
                self.timing_pub.publish(
                    Float64MultiArray(data=[cam.stamp, self.camera_wall, wall1, wall2, publishing])
                )
        self.publish_surprise(self.surprise_after(surprise, fresh, rgb))
        nxt = out.get("next_frame")
        self.surprise.expect(nxt)
        if nxt is not None and self.publish_prediction:
            self.pred_pub.publish(cv.rgb_to_image(nxt, self.get_clock().now().to_msg(), "wam_prediction"))
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
        return cv.float_array(points[0])

    def hold(self, level: bytes, reason: str) -> None:
        """Hold the last measured valid position (sent once per hold, and only after motion was commanded)."""
        first = self.hold_level is None
        if (
            level == DiagnosticStatus.STALE
        ):  # after a gap, re-synchronise to the senders' clocks (e.g. a sim reset)
            self.camera_guard.reset()
            self.joint_guard.reset()
        self.hold_level, self.hold_reason = level, reason
        if first and self.commanded and self.joints is not None:
            q = np.clip(self.joints[0], self.safety.limits.position_lower, self.safety.limits.position_upper)
            self.cmd_pub.publish(self.command_msg(q[None], None))
            self.stats["holds"] += 1
            self.get_logger().warning(f"holding position: {reason}")

    def publish_diagnostics(self, now: float | None = None) -> None:
        """Publish /diagnostics when something changed (refusals pending, level, message, instruction) or
        `diagnostics_period_s` has passed (now=None: always). Building the message costs ~0.2 ms of Python: at the
        control rate it sat in front of camera frames arriving just after a tick (measured in ros_latency.py)."""
        if self.errors:
            level, message = DiagnosticStatus.ERROR, "refused: " + " | ".join(self.errors)
        elif self.hold_level is not None:
            level, message = self.hold_level, f"holding: {self.hold_reason}"
        else:
            level, message = DiagnosticStatus.OK, "running"
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
                ("instruction", self.instruction),
                ("commands", self.stats["commands"]),
                ("refused", self.stats["refused"]),
                ("holds", self.stats["holds"]),
                ("ticks", self.stats["ticks"]),
                ("missed_cycles", self.stats["missed"]),
                ("clamped", self.stats["clamped"]),
                ("inference_ms", f"{infer[-1] * 1e3:.2f}" if infer else "nan"),
                ("step_overhead_ms_p50", f"{np.median(overhead) * 1e3:.3f}" if overhead else "nan"),
                ("surprise", f"{self._last_surprise:.5f}" if self._last_surprise is not None else "nan"),
            )
        ]
        msg = DiagnosticArray(status=[st])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(msg)


NODE_CLASS = WamNode


def main(args: list[str] | None = None) -> None:
    spin_node(WamNode, args)


if __name__ == "__main__":
    main()
