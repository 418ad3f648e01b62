"""fall_guard_node: the fall forecaster on a robot's IMU and joint states; risk out, /diagnostics, optional protection.

    ros2 run wam_ros fall_guard_node --ros-args --params-file config/fall_guard_node.yaml
    wam bringup fall_guard_demo                   # with the simulated legged robot (legged_sim_node)

Subscribes imu (sensor_msgs/Imu: orientation, angular velocity, linear acceleration incl. gravity, as an IMU driver
publishes them) and joint_states (sensor_msgs/JointState with position, velocity and effort of the model's joints,
matched by name, any order). Each IMU message (decimated to the model's rate, 100 Hz) with fresh joint states is one
sample of the forecaster's window (wam_ros.runtime.fall_forecaster: onnxruntime, no torch). Publishes
fall_guard/risk (std_msgs/Float32, P(fall within 1 s)), fall_guard/time_to_fall (std_msgs/Float32, s; the model's
horizon means "not soon") and /diagnostics: OK with the risk, WARN while the alarm rule holds (risk above the
threshold for the rule's consecutive samples) — published at once when the level changes —, STALE without fresh
imu / joint_states, ERROR for refused messages (NaN/Inf, no orientation, missing joints or efforts). With
`protect: true`, from the first alarm on it publishes the protective posture (the model folder's
protective_pose.json) on <controller>/commands (std_msgs/Float64MultiArray, the model's joint order) with every sample,
until fall_guard/reset (std_srvs/Trigger), which also clears the window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Float32, Float64MultiArray
from std_srvs.srv import Trigger

from wam_ros.ros import conversions as conv
from wam_ros.ros.executor import spin_node
from wam_ros.ros.parameters import declare_params, param
from wam_ros.runtime.fall_forecaster import AlarmRule, FallForecasterRuntime, load_protective_pose


@dataclass(frozen=True)
class FallGuardNodeParams:
    """fall_guard_node's parameters (config/fall_guard_node.yaml sets a deployment's choices)."""

    model_path: str = param("models/fall_forecaster_laikago", "fall forecaster folder")
    threads: int = param(1, "onnxruntime intra-op threads")
    threshold: float = param(-1.0, "alarm threshold on the risk; < 0: the model's own (fall_forecaster.json)")
    protect: bool = param(False, "publish the protective posture on <controller>/commands at an alarm")
    controller: str = param("leg_controller", "controller namespace of the protective command")
    input_timeout_s: float = param(0.2, "imu / joint_states older than this: STALE, no forecast")
    diagnostics_period_s: float = param(
        1.0, "/diagnostics at least this often; at once when the level changes"
    )

    def check(self) -> None:
        if self.threshold >= 1.0:
            raise ValueError(f"threshold must be < 1 (or < 0 for the model's), got {self.threshold}")
        for name in ("input_timeout_s", "diagnostics_period_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


class FallGuardNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("fall_guard", **kwargs)
        self.params = p = declare_params(self, FallGuardNodeParams)
        p.check()
        self.fc = FallForecasterRuntime.load(p.model_path, threads=p.threads)
        if p.threshold >= 0:
            r = self.fc.rule
            self.fc.rule = AlarmRule(p.threshold, r.consecutive, r.signal)
        self.stream = self.fc.stream()
        self.joints = self.fc.joint_names
        self.pose = load_protective_pose(p.model_path) if p.protect else None
        if p.protect and self.pose is None:
            raise ValueError(
                f"protect is true but {p.model_path} has no protective_pose.json (wam campaign protect)"
            )
        if self.pose is not None and self.pose.joint_names != self.joints:
            raise ValueError("the protective pose's joints differ from the forecaster's")
        self.period = 1.0 / self.fc.rate_hz
        self.joint_sample: np.ndarray | None = None
        self.joint_time = -math.inf
        self.last_sample_time = -math.inf
        self.last_imu_time = -math.inf
        self.alarm = self.protecting = False
        self.risk = self.ttf = math.nan
        self.errors: list[str] = []
        self.stats = {"samples": 0, "alarms": 0, "refused": 0, "commands": 0}
        self._last_diag: tuple | None = None
        self._last_diag_time = -math.inf
        self.risk_pub = self.create_publisher(Float32, "fall_guard/risk", 10)
        self.ttf_pub = self.create_publisher(Float32, "fall_guard/time_to_fall", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.cmd_pub = self.create_publisher(Float64MultiArray, f"{p.controller}/commands", 10)
        self.create_subscription(Imu, "imu", self.on_imu, qos_profile_sensor_data)
        self.create_subscription(JointState, "joint_states", self.on_joints, qos_profile_sensor_data)
        self.create_service(Trigger, "fall_guard/reset", self.on_reset)
        self.timer = self.create_timer(p.diagnostics_period_s / 2, self.on_timer)
        r = self.fc.rule
        self.get_logger().info(
            f"fall_guard_node: {p.model_path} ({len(self.joints)} joints, {self.fc.rate_hz:g} Hz); alarm when "
            f"{r.signal} >= {r.threshold:.3f} for {r.consecutive} samples; protect={p.protect}"
        )

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def refuse(self, reason: str) -> None:
        self.stats["refused"] += 1
        self.errors.append(reason)
        self.publish_diagnostics()

    def on_joints(self, msg: JointState) -> None:
        try:
            pos = conv.joint_positions(msg, self.joints)
            index = {n: i for i, n in enumerate(msg.name)}
            order = [index[n] for n in self.joints]
            if len(msg.velocity) != len(msg.name) or len(msg.effort) != len(msg.name):
                raise conv.MessageError(
                    f"joint_states needs velocity and effort for every joint (got {len(msg.velocity)} velocities, "
                    f"{len(msg.effort)} efforts for {len(msg.name)} names)"
                )
            vel = np.asarray(msg.velocity, dtype=np.float64)[order]
            eff = np.asarray(msg.effort, dtype=np.float64)[order]
        except (conv.MessageError, KeyError) as exc:
            self.refuse(f"joint_states: {exc}")
            return
        sample = np.concatenate([pos, vel, eff])
        if not np.all(np.isfinite(sample)):
            self.refuse("joint_states: non-finite values")
            return
        self.joint_sample, self.joint_time = sample.astype(np.float32), self.now()

    def on_imu(self, msg: Imu) -> None:
        now = self.now()
        o, w, a = msg.orientation, msg.angular_velocity, msg.linear_acceleration
        imu = np.array([o.x, o.y, o.z, o.w, w.x, w.y, w.z, a.x, a.y, a.z], dtype=np.float64)
        if not np.all(np.isfinite(imu)):
            self.refuse("imu: non-finite values")
            return
        if msg.orientation_covariance[0] == -1.0 or abs(np.linalg.norm(imu[:4]) - 1.0) > 0.01:
            self.refuse("imu: no valid orientation (covariance[0] == -1 or not a unit quaternion)")
            return
        self.last_imu_time = now
        stamp = conv.stamp_to_sec(msg.header.stamp) or now
        if stamp - self.last_sample_time < 0.9 * self.period:
            return  # faster than the model's rate: decimate
        if self.joint_sample is None or now - self.joint_time > self.params.input_timeout_s:
            return  # STALE (reported by the diagnostics)
        if stamp - self.last_sample_time > 3 * self.period:
            self.stream.reset()  # a gap: the window would mix old and new readings
        self.last_sample_time = stamp
        out = self.stream.push(np.concatenate([imu, self.joint_sample]).astype(np.float32))
        self.stats["samples"] += 1
        self.risk, self.ttf = out.p_fall_1s, out.time_to_fall_s
        self.risk_pub.publish(Float32(data=float(out.risk)))
        self.ttf_pub.publish(Float32(data=float(out.time_to_fall_s)))
        if out.alarm and not self.alarm:
            self.stats["alarms"] += 1
            self.get_logger().warning(
                f"fall predicted: risk {out.risk:.2f}, time to fall {out.time_to_fall_s:.2f} s"
            )
            if self.pose is not None:
                self.protecting = True
        self.alarm = out.alarm
        if self.protecting:
            self.cmd_pub.publish(conv.float_array(np.asarray(self.pose.targets)))
            self.stats["commands"] += 1
        self.publish_diagnostics(now)

    def status(self, now: float) -> tuple[bytes, str]:
        if self.errors:
            return DiagnosticStatus.ERROR, "refused: " + " | ".join(self.errors[-3:])
        if (
            now - self.last_imu_time > self.params.input_timeout_s
            or now - self.joint_time > self.params.input_timeout_s
        ):
            return DiagnosticStatus.STALE, "no fresh imu and joint_states"
        if self.alarm:
            return (
                DiagnosticStatus.WARN,
                f"fall predicted: risk {self.risk:.2f}, time to fall {self.ttf:.2f} s",
            )
        return DiagnosticStatus.OK, "no fall predicted"

    def publish_diagnostics(self, now: float | None = None) -> None:
        t = self.now() if now is None else now
        level, message = self.status(t)
        if (
            (level, self.protecting) == self._last_diag
            and t - self._last_diag_time < self.params.diagnostics_period_s
            and not self.errors
        ):
            return
        self._last_diag, self._last_diag_time = (level, self.protecting), t
        st = DiagnosticStatus(name="fall_guard: forecast", hardware_id=self.get_fully_qualified_name())
        st.level, st.message = level, message
        st.values = [
            KeyValue(key="risk", value=f"{self.risk:.4f}"),
            KeyValue(key="time_to_fall_s", value=f"{self.ttf:.3f}"),
            KeyValue(key="threshold", value=f"{self.fc.rule.threshold:.4f}"),
            KeyValue(key="protecting", value=str(self.protecting).lower()),
            *(KeyValue(key=k, value=str(v)) for k, v in self.stats.items()),
        ]
        self.errors = []
        msg = DiagnosticArray(status=[st])
        msg.header.stamp = conv.sec_to_stamp(t)
        self.diag_pub.publish(msg)

    def on_timer(self) -> None:
        self.publish_diagnostics(self.now())

    def on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.stream.reset()
        self.alarm = self.protecting = False
        self.last_sample_time = -math.inf
        self.publish_diagnostics()
        response.success, response.message = True, "window cleared, protection off"
        return response


NODE_CLASS = FallGuardNode


def main(args: list[str] | None = None) -> None:
    spin_node(FallGuardNode, args)


if __name__ == "__main__":
    main()
