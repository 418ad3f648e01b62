"""legged_sim_node: the fall campaign's legged robot (wam_ros.sim.falls.FallSim) behind ROS 2 topics, in real time.

    ros2 run wam_ros legged_sim_node --ros-args --params-file config/legged_sim_node.yaml
    wam bringup fall_guard_demo                   # with fall_guard_node, in one process

Publishes at `control_hz`: imu (sensor_msgs/Imu, frame `frame_id`: orientation in a gravity-aligned frame, angular
velocity, linear acceleration as an accelerometer reads it; what the campaign's traces hold, wam_ros.sim.imu) and
joint_states (sensor_msgs/JointState: position, velocity, effort of the 12 motors). legged_sim/fallen
(std_msgs/Bool, latched) turns true when the campaign's fall detector fires, false at a reset. Takes joint position
targets on <controller>/commands (std_msgs/Float64MultiArray, the motors' order, as a forward_command_controller).
Services: legged_sim/push (std_srvs/Trigger) pushes the base with the `push_force`, `push_yaw_deg` and
`push_duration_s` parameters (settable at run time); legged_sim/reset (std_srvs/Trigger) restores the standing robot.
The physics (240 Hz) follows the wall clock: each tick advances it to the current time. Conditions (slope, friction,
mass, motor strength) are nominal (flat, 1.0) or, with `seed` >= 0, those of campaign `seed`'s episode `index`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import Trigger

from wam_ros.ros import conversions as conv
from wam_ros.ros.executor import spin_node
from wam_ros.ros.parameters import declare_params, param
from wam_ros.sim.falls import ROBOTS, FallConfig, FallSim, sample_params


@dataclass(frozen=True)
class LeggedSimNodeParams:
    """legged_sim_node's parameters (config/legged_sim_node.yaml sets a deployment's choices)."""

    robot: str = param("laikago", "legged robot: laikago | a1")
    control_hz: float = param(100.0, "imu + joint_states rate (Hz); the physics runs in real time")
    seed: int = param(
        -1, "campaign seed of the conditions; -1: nominal (flat, friction 1, mass 1, strength 1)"
    )
    index: int = param(0, "episode index of the conditions (with seed >= 0)")
    controller: str = param("leg_controller", "controller namespace of the command topic")
    frame_id: str = param("imu_link", "frame id of the imu messages")
    push_force: float = param(300.0, "push magnitude (N) of legged_sim/push")
    push_yaw_deg: float = param(0.0, "push direction in the world frame (deg)")
    push_duration_s: float = param(0.2, "push duration (s)")
    reset_hold_s: float = param(
        0.5, "after legged_sim/reset the robot stands up and ignores joint commands this long (s)"
    )

    def check(self) -> None:
        if self.robot not in ROBOTS:
            raise ValueError(f"robot must be one of {sorted(ROBOTS)}, got {self.robot!r}")
        if not 1.0 <= self.control_hz <= 1000.0:
            raise ValueError(f"control_hz must be in [1, 1000], got {self.control_hz}")
        if not (self.push_force >= 0 and math.isfinite(self.push_force)):
            raise ValueError(f"push_force must be a finite force >= 0, got {self.push_force}")
        if not 0 < self.push_duration_s <= 5:
            raise ValueError(f"push_duration_s must be in (0, 5], got {self.push_duration_s}")
        if not 0 <= self.reset_hold_s <= 10:
            raise ValueError(f"reset_hold_s must be in [0, 10], got {self.reset_hold_s}")


class LeggedSimNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("legged_sim", **kwargs)
        self.params = p = declare_params(self, LeggedSimNodeParams)
        p.check()
        self.sim = FallSim(FallConfig(robot=p.robot))
        self.joint_names = list(self.sim.profile["joint_names"])
        base = sample_params(max(p.seed, 0), p.index, self.sim.cfg)
        if p.seed < 0:
            base = dataclasses.replace(base, slope_deg=0.0, friction=1.0, mass_scale=1.0, motor_strength=1.0)
        self.conditions = dataclasses.replace(base, push_force=0.0, standing=True)
        self.imu_pub = self.create_publisher(Imu, "imu", qos_profile_sensor_data)
        self.joint_pub = self.create_publisher(JointState, "joint_states", qos_profile_sensor_data)
        latched = QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
        self.fallen_pub = self.create_publisher(Bool, "legged_sim/fallen", latched)
        self.create_subscription(Float64MultiArray, f"{p.controller}/commands", self.on_commands, 10)
        self.create_service(Trigger, "legged_sim/push", self.on_push)
        self.create_service(Trigger, "legged_sim/reset", self.on_reset)
        self.add_on_set_parameters_callback(self.on_set_parameters)
        self.commands = 0
        self.reset()
        self.timer = self.create_timer(1.0 / p.control_hz, self.on_timer)
        self.get_logger().info(
            f"legged_sim_node: {p.robot}, {p.control_hz:g} Hz, slope {self.conditions.slope_deg:.1f} deg, "
            f"commands on {p.controller}/commands"
        )

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def reset(self) -> None:
        self.sim.begin(self.conditions)
        self.t0 = self.now()
        # a command still in flight when the robot is reset (e.g. a fall guard's protective posture, sent before the
        # guard itself was reset) would otherwise fold the robot that was just stood up
        self.hold_until = self.t0 + self.params.reset_hold_s
        self.fallen = False
        self.fallen_pub.publish(Bool(data=False))
        self.publish()

    def on_timer(self) -> None:
        due = int((self.now() - self.t0) * self.sim.cfg.sim_hz)
        behind = due - self.sim.step_count
        if behind > self.sim.cfg.sim_hz:  # more than 1 s behind (a stalled process): skip ahead, do not race
            self.t0 += (behind - 1) / self.sim.cfg.sim_hz
            behind = 1
        if behind > 0:
            self.sim.step(behind)
        if not self.fallen and self.sim.fallen():
            self.fallen = True
            self.fallen_pub.publish(Bool(data=True))
            self.get_logger().info(f"fell at t={self.sim.time:.2f} s")
        self.publish()

    def publish(self) -> None:
        r = self.sim.read()
        stamp = conv.sec_to_stamp(self.now())
        imu = Imu()
        imu.header.stamp, imu.header.frame_id = stamp, self.params.frame_id
        q = r["orientation"]
        imu.orientation.x, imu.orientation.y, imu.orientation.z, imu.orientation.w = (float(v) for v in q)
        w, a = r["angular_velocity"], r["linear_acceleration"]
        imu.angular_velocity.x, imu.angular_velocity.y, imu.angular_velocity.z = (float(v) for v in w)
        imu.linear_acceleration.x, imu.linear_acceleration.y, imu.linear_acceleration.z = (
            float(v) for v in a
        )
        self.imu_pub.publish(imu)
        js = conv.joint_state(self.joint_names, r["joint_pos"], r["joint_vel"], stamp)
        js.effort = [float(v) for v in r["joint_effort"]]
        self.joint_pub.publish(js)

    def on_commands(self, msg: Float64MultiArray) -> None:
        try:
            targets = conv.float_array_values(msg, len(self.joint_names))
        except conv.MessageError as exc:
            self.get_logger().warning(f"refused command: {exc}", throttle_duration_sec=1.0)
            return
        if self.now() < self.hold_until:
            return  # standing up after a reset (reset_hold_s)
        self.sim.set_targets(targets)
        self.commands += 1

    def on_push(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        p = self.params
        self.sim.push_now(p.push_force, math.radians(p.push_yaw_deg), p.push_duration_s)
        response.success = True
        response.message = (
            f"pushing {p.push_force:g} N towards {p.push_yaw_deg:g} deg for {p.push_duration_s:g} s "
            f"at t={self.sim.time:.2f} s"
        )
        return response

    def on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.reset()
        response.success, response.message = True, "standing again"
        return response

    def on_set_parameters(self, params: list) -> SetParametersResult:
        """Push parameters may change at run time (validated); the rest are fixed at start-up."""
        changes = {}
        for prm in params:
            if prm.name not in ("push_force", "push_yaw_deg", "push_duration_s"):
                return SetParametersResult(successful=False, reason=f"{prm.name} is fixed at start-up")
            changes[prm.name] = float(prm.value)
        try:
            new = dataclasses.replace(self.params, **changes)
            new.check()
        except (ValueError, TypeError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self.params = new
        return SetParametersResult(successful=True)

    def destroy_node(self) -> None:
        self.sim.close()
        super().destroy_node()


NODE_CLASS = LeggedSimNode


def main(args: list[str] | None = None) -> None:
    spin_node(LeggedSimNode, args)


if __name__ == "__main__":
    main()
