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
from dataclasses import dataclass

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from wam_ros.robot import RobotProfile
from wam_ros.ros import conversions as conv
from wam_ros.ros.executor import spin_node
from wam_ros.ros.parameters import declare_params, param
from wam_ros.teleop.jog import KEY_HELP, MODES, JogCommand, JogConfig, Jogger, JoyMapping, KeyJog
from wam_ros.teleop.keyboard import keyboard

INTERFACES = ("forward", "trajectory", "both")


_JOY, _JOG = JoyMapping(), JogConfig()  # the Joy-mapping and speed defaults live with the jog maths
JOY_FIELDS = (
    "deadman_button",
    "mode_button",
    "gripper_open_button",
    "gripper_close_button",
    "deadband",
    "joint_axes",
    "joint_scale",
    "cartesian_axes",
    "cartesian_scale",
)


@dataclass(frozen=True)
class TeleopNodeParams:
    """teleop_node's parameters: the one set of defaults (config/teleop_node.yaml and config/teleop_joy.yaml set a
    deployment's choices). The `joy_*` fields are wam_ros.teleop.jog.JoyMapping's, the speeds JogConfig's."""

    control_hz: float = param(30.0, "command rate (Hz)")
    mode: str = param("joint", "start mode: joint | cartesian")
    controller: str = param("arm_controller", "controller namespace of the command topics")
    command_interface: str = param("forward", "forward | trajectory | both")
    robot: str = param("panda", "robot profile name or path (joints, limits, urdf)")
    joint_speed: float = param(_JOG.joint_speed, "fraction of the joint velocity limits")
    linear_speed: float = param(_JOG.linear_speed, "end-effector speed (m/s)")
    angular_speed: float = param(_JOG.angular_speed, "end-effector rotation speed (rad/s)")
    gripper_speed: float = param(_JOG.gripper_speed, "gripper width speed (m/s)")
    ee_link: str = param(_JOG.ee_link, 'URDF link of Cartesian jog ("" = the robot profile\'s ee_link)')
    state_timeout_s: float = param(0.5, "stop when joint_states are older than this")
    joy_timeout_s: float = param(0.5, "stop when the Joy device is silent this long")
    key_duration_s: float = param(0.2, "how long one key press jogs")
    keyboard: bool = param(True, "read keys from the terminal (only when stdin is a TTY)")
    joy_deadman_button: int = param(_JOY.deadman_button, "Joy button that must be held for any motion")
    joy_mode_button: int = param(_JOY.mode_button, "Joy button toggling joint / Cartesian mode (-1: none)")
    joy_gripper_open_button: int = param(_JOY.gripper_open_button, "Joy button opening the gripper")
    joy_gripper_close_button: int = param(_JOY.gripper_close_button, "Joy button closing the gripper")
    joy_deadband: float = param(_JOY.deadband, "stick values with |v| below this are zero")
    joy_joint_axes: tuple[int, ...] = param(tuple(_JOY.joint_axes), "Joy axis per arm joint (-1: none)")
    joy_joint_scale: tuple[float, ...] = param(tuple(_JOY.joint_scale), "gain (sign) per arm joint")
    joy_cartesian_axes: tuple[int, ...] = param(
        tuple(_JOY.cartesian_axes), "Joy axis for x, y, z, roll, pitch, yaw (-1: none)"
    )
    joy_cartesian_scale: tuple[float, ...] = param(tuple(_JOY.cartesian_scale), "gain (sign) per axis")

    def check(self) -> None:
        """ValueError naming the first parameter with a value the node cannot run with."""
        if self.command_interface not in INTERFACES:
            raise ValueError(f"command_interface must be one of {INTERFACES}, got {self.command_interface!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not self.control_hz > 0:
            raise ValueError(f"control_hz must be > 0, got {self.control_hz}")

    def joy_mapping(self) -> JoyMapping:
        values = {name: getattr(self, f"joy_{name}") for name in JOY_FIELDS}
        for name in ("joint_axes", "cartesian_axes"):
            values[name] = [int(v) for v in values[name]]
        for name in ("joint_scale", "cartesian_scale"):
            values[name] = [float(v) for v in values[name]]
        return JoyMapping.from_dict(values)

    def jog_config(self) -> JogConfig:
        return JogConfig(
            joint_speed=self.joint_speed,
            linear_speed=self.linear_speed,
            angular_speed=self.angular_speed,
            gripper_speed=self.gripper_speed,
            ee_link=self.ee_link,
        )


class TeleopNode(Node):
    """Joy / keyboard -> clamped, speed-limited joint targets on the controller command topics."""

    def __init__(self, **kwargs) -> None:
        super().__init__("teleop", **kwargs)
        params = declare_params(self, TeleopNodeParams)
        params.check()
        self.params = params
        self.control_hz, self.interface = params.control_hz, params.command_interface
        self.state_timeout, self.joy_timeout = params.state_timeout_s, params.joy_timeout_s
        self.key_duration = params.key_duration_s
        mode, controller, use_keyboard = params.mode, params.controller, params.keyboard
        self.mapping = params.joy_mapping()
        self.profile = RobotProfile.load(params.robot)
        self.jog = Jogger(self.profile, params.jog_config(), mode)
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
        self.create_timer(1.0 / self.control_hz, self.on_timer)
        self._unsubscribe = keyboard.subscribe(self.on_key)
        if use_keyboard and keyboard.start():
            self.get_logger().info(KEY_HELP)
        self.get_logger().info(
            f"teleop: {mode} mode, deadman button {self.mapping.deadman_button}, "
            f"{self.control_hz:g} Hz on {controller}/"
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
        q = self.jog.step(cmd, 1.0 / self.control_hz)
        if q is None:
            return
        if self.interface in ("forward", "both"):
            self.forward_pub.publish(conv.float_array(q))
        if self.interface in ("trajectory", "both"):
            stamp = self.get_clock().now().to_msg()
            self.traj_pub.publish(
                conv.trajectory(self.profile.joint_names, q[None], 1.0 / self.control_hz, stamp)
            )
        self.published += 1

    def destroy_node(self) -> None:
        if hasattr(self, "_unsubscribe"):  # absent when __init__ refused the parameters
            self._unsubscribe()
        if hasattr(self, "jog"):
            self.jog.close()
        super().destroy_node()


NODE_CLASS = TeleopNode


def main(args: list[str] | None = None) -> None:
    spin_node(TeleopNode, args)


if __name__ == "__main__":
    main()
