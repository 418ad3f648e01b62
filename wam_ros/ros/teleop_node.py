"""teleop_node: drive the robot from a gamepad / SpaceMouse (sensor_msgs/Joy) or the terminal keyboard.

    ros2 run wam_ros teleop_node --ros-args --params-file config/teleop_node.yaml --params-file config/teleop_joy.yaml
    wam bringup teleop_record                 # with the sim robot and the recorder

Joint-space jog (one axis per joint) or Cartesian end-effector jog (IK on the robot's URDF), toggled by the mode
button or key `m`. Targets are published on the same controller command topics the WAM uses:
<controller>/commands (std_msgs/Float64MultiArray, `command_interface: forward`) and/or
<controller>/joint_trajectory (one-point trajectory_msgs/JointTrajectory, `trajectory`).

Safety: nothing moves unless the deadman button is held (Joy) or a jog key was just pressed (keyboard); on enable the
target restarts from the measured joint state (no jump); every target is clamped to the robot profile's position
limits and moves no joint faster than `joint_speed` x its velocity limit; stale /joint_states (`state_timeout_s`) or a
silent Joy device (`joy_timeout_s`) stop publishing. The Joy axis/button mapping is the `joy_*` parameters
(config/teleop_joy.yaml). The keyboard reader runs only when stdin is a terminal.
"""

from __future__ import annotations

import time

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from wam_ros.robot import RobotProfile
from wam_ros.ros import conversions as conv
from wam_ros.ros.executor import spin_node
from wam_ros.ros.parameters import declare
from wam_ros.teleop.jog import KEY_HELP, MODES, JogCommand, JogConfig, Jogger, JoyMapping, KeyJog
from wam_ros.teleop.keyboard import keyboard

INTERFACES = ("forward", "trajectory", "both")


class TeleopNode(Node):
    """Joy / keyboard -> clamped, speed-limited joint targets on the controller command topics."""

    def __init__(self, **kwargs) -> None:
        super().__init__("teleop", **kwargs)
        self.rate_hz = declare(self, "rate_hz", 30.0, "command rate (Hz)")
        mode = declare(self, "mode", "joint", "start mode: joint | cartesian")
        controller = declare(
            self, "controller", "arm_controller", "controller namespace of the command topics"
        )
        self.interface = declare(self, "command_interface", "forward", "forward | trajectory | both")
        profile = declare(self, "robot_profile", "panda", "robot profile name or path (joints, limits, urdf)")
        jog = JogConfig(
            joint_speed=declare(self, "joint_speed", 0.25, "fraction of the joint velocity limits"),
            linear_speed=declare(self, "linear_speed", 0.10, "end-effector speed (m/s)"),
            angular_speed=declare(self, "angular_speed", 0.5, "end-effector rotation speed (rad/s)"),
            gripper_speed=declare(self, "gripper_speed", 0.05, "gripper width speed (m/s)"),
            ee_link=declare(self, "ee_link", "panda_grasptarget", "URDF link of Cartesian jog"),
        )
        self.state_timeout = declare(
            self, "state_timeout_s", 0.5, "stop when joint_states are older than this"
        )
        self.joy_timeout = declare(self, "joy_timeout_s", 0.5, "stop when the Joy device is silent this long")
        self.key_duration = declare(self, "key_duration_s", 0.2, "how long one key press jogs")
        use_keyboard = declare(
            self, "keyboard", True, "read keys from the terminal (only when stdin is a TTY)"
        )
        defaults = JoyMapping()
        mapping = {
            name: declare(self, f"joy_{name}", getattr(defaults, name), f"Joy mapping: {name}")
            for name in (
                "deadman_button",
                "mode_button",
                "gripper_open_button",
                "gripper_close_button",
                "deadband",
            )
        }
        for name in ("joint_axes", "cartesian_axes"):
            mapping[name] = [
                int(v) for v in declare(self, f"joy_{name}", list(getattr(defaults, name)), name)
            ]
        for name in ("joint_scale", "cartesian_scale"):
            mapping[name] = [
                float(v) for v in declare(self, f"joy_{name}", list(getattr(defaults, name)), name)
            ]
        if self.interface not in INTERFACES:
            raise ValueError(f"command_interface must be one of {INTERFACES}, got {self.interface!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not self.rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {self.rate_hz}")
        self.mapping = JoyMapping.from_dict(mapping)
        self.profile = RobotProfile.load(profile)
        self.jog = Jogger(self.profile, jog, mode)
        self.keys = KeyJog(self.profile.dof)

        self.q_measured: np.ndarray | None = None
        self.state_time = 0.0
        self.joy_cmd = JogCommand()
        self.joy_time = 0.0
        self.key_cmd: JogCommand | None = None
        self.key_until = 0.0
        self.enabled = False
        self.published = 0
        self.forward_pub = self.create_publisher(Float64MultiArray, f"{controller}/commands", 10)
        self.traj_pub = self.create_publisher(JointTrajectory, f"{controller}/joint_trajectory", 10)
        self.create_subscription(JointState, "joint_states", self.on_joint_states, 10)
        self.create_subscription(Joy, "joy", self.on_joy, 10)
        self.create_timer(1.0 / self.rate_hz, self.on_timer)
        self._unsubscribe = keyboard.subscribe(self.on_key)
        if use_keyboard and keyboard.start():
            self.get_logger().info(KEY_HELP)
        self.get_logger().info(
            f"teleop: {mode} mode, deadman button {self.mapping.deadman_button}, "
            f"{self.rate_hz:g} Hz on {controller}/"
            f"{'commands' if self.interface == 'forward' else self.interface}"
        )

    # ------------------------------------------------------------------------------------------------ inputs
    def on_joint_states(self, msg: JointState) -> None:
        try:
            self.q_measured = conv.joint_positions(msg, self.profile.joint_names)
        except conv.MessageError as exc:
            self.get_logger().warning(f"refused joint_states: {exc}", throttle_duration_sec=2.0)
            return
        self.state_time = time.monotonic()

    def on_joy(self, msg: Joy) -> None:
        cmd = self.mapping.command(msg.axes, msg.buttons, self.profile.dof)
        if cmd.toggle_mode:
            self.get_logger().info(f"mode: {self.jog.toggle_mode()}")
            cmd.toggle_mode = False
        self.joy_cmd, self.joy_time = cmd, time.monotonic()

    def on_key(self, key: str) -> None:
        cmd = self.keys.command(key)
        if cmd is None:
            return
        if cmd.toggle_mode:
            self.get_logger().info(f"mode: {self.jog.toggle_mode()}")
            return
        self.key_cmd, self.key_until = cmd, time.monotonic() + self.key_duration

    # ------------------------------------------------------------------------------------------------ output
    def current_command(self, now: float) -> JogCommand:
        if self.key_cmd is not None and now < self.key_until:
            return self.key_cmd
        if now - self.joy_time <= self.joy_timeout:
            return self.joy_cmd
        return JogCommand()  # nothing fresh: disabled

    def on_timer(self) -> None:
        now = time.monotonic()
        cmd = self.current_command(now)
        if not cmd.enabled:
            self.enabled = False
            return
        if self.q_measured is None or now - self.state_time > self.state_timeout:
            self.enabled = False
            self.get_logger().warning("teleop: no fresh joint_states; not moving", throttle_duration_sec=2.0)
            return
        if not self.enabled:  # rising edge of the deadman: start from where the robot is
            self.jog.sync(self.q_measured)
            self.enabled = True
        q = self.jog.step(cmd, 1.0 / self.rate_hz)
        if q is None:
            return
        if self.interface in ("forward", "both"):
            self.forward_pub.publish(conv.float_array(q))
        if self.interface in ("trajectory", "both"):
            stamp = self.get_clock().now().to_msg()
            self.traj_pub.publish(
                conv.trajectory(self.profile.joint_names, q[None], 1.0 / self.rate_hz, stamp)
            )
        self.published += 1

    def destroy_node(self) -> None:
        self._unsubscribe()
        self.jog.close()
        super().destroy_node()


NODE_CLASS = TeleopNode


def main(args: list[str] | None = None) -> None:
    spin_node(TeleopNode, args)


if __name__ == "__main__":
    main()
