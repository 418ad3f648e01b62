"""Teleop core: joint-space and Cartesian end-effector jogging with speed limits and joint-limit clamping.

    teleop = Jogger(RobotProfile.load("panda"), JogConfig())
    teleop.sync(q_measured)                       # start from where the robot is
    cmd = JoyMapping.from_dict(params).command(axes, buttons)
    q_target = teleop.step(cmd, dt=1/30)          # None while the deadman is released

Units: joint_vel in [-1, 1] per joint (fraction of the speed limit), twist in [-1, 1] per axis (x y z in the robot base
frame, then rotations about x y z), gripper in [-1, 1] (close .. open). Every returned target is clamped to the robot
profile's position limits and moves no joint faster than `joint_speed` x its velocity limit. Cartesian jog solves the
robot's URDF inverse kinematics in a private PyBullet DIRECT client (null-space rest pose = the current pose).

Core module: pure numpy + pybullet, never imports rclpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wam_ros.robot import RobotProfile

JOINT, CARTESIAN = "joint", "cartesian"
MODES = (JOINT, CARTESIAN)


@dataclass
class JogConfig:
    """Speed limits of teleoperation.

    Args:
        joint_speed: fraction (0, 1] of each joint's velocity limit reached at full stick (also caps Cartesian jog).
        linear_speed: end-effector speed in m/s at full stick.
        angular_speed: end-effector rotation speed in rad/s at full stick.
        gripper_speed: opening/closing speed of the gripper width in m/s.
        ee_link: URDF link jogged in Cartesian mode ("": the robot profile's `ee_link`).
        ik_iterations: PyBullet IK iterations per step.
    """

    joint_speed: float = 0.25
    linear_speed: float = 0.10
    angular_speed: float = 0.5
    gripper_speed: float = 0.05
    ee_link: str = ""
    ik_iterations: int = 60

    def __post_init__(self) -> None:
        if not 0 < self.joint_speed <= 1:
            raise ValueError(
                f"joint_speed must be in (0, 1] (fraction of the velocity limit), got {self.joint_speed}"
            )
        for name in ("linear_speed", "angular_speed", "gripper_speed"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.ik_iterations < 1:
            raise ValueError(f"ik_iterations must be >= 1, got {self.ik_iterations}")


@dataclass
class JogCommand:
    """One teleop input sample, device-independent."""

    enabled: bool = False  # deadman held
    joint_vel: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (J,) in [-1, 1]
    twist: np.ndarray = field(default_factory=lambda: np.zeros(6))  # (6,) in [-1, 1]
    gripper: float = 0.0  # -1 close .. +1 open
    toggle_mode: bool = False


@dataclass
class JoyMapping:
    """sensor_msgs/Joy axis and button indices (config/teleop_joy.yaml). -1 means "not mapped".

    Args:
        deadman_button: must be held for any motion.
        mode_button: toggles joint / Cartesian mode (on press).
        gripper_open_button / gripper_close_button: open / close while held.
        joint_axes: axis index per joint (the order of the robot profile); joint_scale: gain (sign) per joint.
        cartesian_axes: axis index for x, y, z, roll, pitch, yaw; cartesian_scale: gain (sign) per axis.
        deadband: stick values with |v| below this are zero.
    """

    deadman_button: int = 4
    mode_button: int = 0
    gripper_open_button: int = 1
    gripper_close_button: int = 2
    joint_axes: list[int] = field(default_factory=lambda: [0, 1, 3, 4, 6, 7, -1])
    joint_scale: list[float] = field(default_factory=lambda: [1.0] * 7)
    cartesian_axes: list[int] = field(default_factory=lambda: [1, 0, 4, 6, 7, 3])
    cartesian_scale: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    deadband: float = 0.1

    def __post_init__(self) -> None:
        if self.deadman_button < 0:
            raise ValueError(
                f"deadman_button must be a button index >= 0 (motion needs it held), "
                f"got {self.deadman_button}"
            )
        if len(self.joint_axes) != len(self.joint_scale):
            raise ValueError(
                f"joint_axes ({len(self.joint_axes)}) and joint_scale ({len(self.joint_scale)}) "
                "must have the same length"
            )
        if len(self.cartesian_axes) != 6 or len(self.cartesian_scale) != 6:
            raise ValueError(
                f"cartesian_axes and cartesian_scale need 6 entries (x y z roll pitch yaw), got "
                f"{len(self.cartesian_axes)} and {len(self.cartesian_scale)}"
            )
        if not 0 <= self.deadband < 1:
            raise ValueError(f"deadband must be in [0, 1), got {self.deadband}")
        self._last_mode_button = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JoyMapping:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown Joy mapping key(s) {unknown}; expected some of {sorted(known)}")
        return cls(**data)

    def _axis(self, axes: np.ndarray, index: int) -> float:
        if index < 0 or index >= len(axes):
            return 0.0
        v = float(np.clip(axes[index], -1.0, 1.0))
        if not np.isfinite(v) or abs(v) < self.deadband:
            return 0.0
        return (abs(v) - self.deadband) / (1 - self.deadband) * np.sign(v)  # continuous past the deadband

    @staticmethod
    def _button(buttons, index: int) -> bool:
        return 0 <= index < len(buttons) and bool(buttons[index])

    def command(self, axes, buttons, dof: int) -> JogCommand:
        axes = np.asarray(axes, dtype=np.float64)
        mode_pressed = self._button(buttons, self.mode_button)
        toggle = mode_pressed and not self._last_mode_button
        self._last_mode_button = mode_pressed
        joint = np.zeros(dof)
        for j, (a, s) in enumerate(zip(self.joint_axes[:dof], self.joint_scale[:dof], strict=True)):
            joint[j] = s * self._axis(axes, a)
        twist = np.array(
            [s * self._axis(axes, a) for a, s in zip(self.cartesian_axes, self.cartesian_scale, strict=True)]
        )
        grip = float(self._button(buttons, self.gripper_open_button)) - float(
            self._button(buttons, self.gripper_close_button)
        )
        return JogCommand(
            enabled=self._button(buttons, self.deadman_button),
            joint_vel=np.clip(joint, -1, 1),
            twist=np.clip(twist, -1, 1),
            gripper=grip,
            toggle_mode=toggle,
        )


class Kinematics:
    """URDF forward/inverse kinematics in a private PyBullet DIRECT client."""

    def __init__(self, profile: RobotProfile, ee_link: str) -> None:
        import pybullet as p
        import pybullet_data

        self.p = p
        self.client = p.connect(p.DIRECT)
        p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=self.client)
        if not profile.urdf:
            raise ValueError(f"robot profile {profile.name!r} names no urdf; Cartesian jog needs one")
        self.body = p.loadURDF(profile.urdf, useFixedBase=True, physicsClientId=self.client)
        joints = [
            p.getJointInfo(self.body, i, physicsClientId=self.client)
            for i in range(p.getNumJoints(self.body, physicsClientId=self.client))
        ]
        by_name = {j[1].decode(): j for j in joints}
        links = {j[12].decode(): j[0] for j in joints}
        if ee_link not in links:
            raise ValueError(f"ee_link {ee_link!r} is not a link of {profile.urdf}; links: {sorted(links)}")
        self.ee = links[ee_link]
        self.movable = [j[0] for j in joints if j[2] != p.JOINT_FIXED]
        # profile joints that are URDF joints (the Panda's `panda_gripper` width is not one)
        self.arm = [(k, by_name[n][0]) for k, n in enumerate(profile.joint_names) if n in by_name]
        if not self.arm:
            raise ValueError(f"none of the profile joints {profile.joint_names} is in {profile.urdf}")
        self.lower = [float(joints[i][8]) for i in self.movable]
        self.upper = [float(joints[i][9]) for i in self.movable]
        for k, idx in self.arm:  # the profile's limits win over the URDF's
            m = self.movable.index(idx)
            self.lower[m], self.upper[m] = profile.position_lower[k], profile.position_upper[k]
        self.ranges = [max(u - lo, 1e-3) for lo, u in zip(self.lower, self.upper, strict=True)]

    def _set(self, q: np.ndarray) -> None:
        for k, idx in self.arm:
            self.p.resetJointState(self.body, idx, float(q[k]), physicsClientId=self.client)

    def forward(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """End-effector (position xyz, quaternion xyzw) in the base frame."""
        self._set(q)
        s = self.p.getLinkState(
            self.body, self.ee, computeForwardKinematics=True, physicsClientId=self.client
        )
        return np.array(s[4]), np.array(s[5])

    def inverse(self, q: np.ndarray, pos: np.ndarray, orn: np.ndarray, iterations: int) -> np.ndarray:
        self._set(q)
        rest = [
            float(self.p.getJointState(self.body, i, physicsClientId=self.client)[0]) for i in self.movable
        ]
        sol = self.p.calculateInverseKinematics(
            self.body,
            self.ee,
            pos.tolist(),
            orn.tolist(),
            lowerLimits=self.lower,
            upperLimits=self.upper,
            jointRanges=self.ranges,
            restPoses=rest,
            maxNumIterations=iterations,
            residualThreshold=1e-6,
            physicsClientId=self.client,
        )
        out = np.array(q, dtype=np.float64)
        for k, idx in self.arm:
            out[k] = sol[self.movable.index(idx)]
        return out

    def close(self) -> None:
        if self.client is not None and self.p.isConnected(self.client):
            self.p.disconnect(self.client)
        self.client = None


class Jogger:
    """Integrates teleop commands into absolute joint targets, within speed and position limits."""

    def __init__(self, profile: RobotProfile, cfg: JogConfig | None = None, mode: str = JOINT) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.profile, self.cfg, self.mode = profile, cfg or JogConfig(), mode
        self.lower = np.asarray(profile.position_lower, dtype=np.float64)
        self.upper = np.asarray(profile.position_upper, dtype=np.float64)
        self.vmax = np.asarray(profile.velocity_limit, dtype=np.float64) * self.cfg.joint_speed
        self.gripper = profile.gripper_index  # the profile's `gripper` joint (None: every joint is arm)
        if self.gripper is not None:
            self.vmax[self.gripper] = min(self.vmax[self.gripper], self.cfg.gripper_speed)
        self.q: np.ndarray | None = None
        self._kin: Kinematics | None = None

    @property
    def kinematics(self) -> Kinematics:
        if self._kin is None:
            ee_link = self.cfg.ee_link or self.profile.ee_link
            if not ee_link:
                raise ValueError(
                    f"Cartesian jog needs an end-effector link: robot profile {self.profile.name!r} has no ee_link "
                    "(add it to the profile, or give JogConfig.ee_link / the teleop node's ee_link)"
                )
            self._kin = Kinematics(self.profile, ee_link)
        return self._kin

    def sync(self, q_measured) -> None:
        """Start jogging from the measured joint positions (after enable, so the robot never jumps)."""
        q = np.asarray(q_measured, dtype=np.float64)
        if q.shape != (self.profile.dof,) or not np.all(np.isfinite(q)):
            raise ValueError(f"joint positions must be {self.profile.dof} finite values, got {q!r}")
        self.q = np.clip(q, self.lower, self.upper)

    def toggle_mode(self) -> str:
        self.mode = CARTESIAN if self.mode == JOINT else JOINT
        return self.mode

    def _limit(self, q_new: np.ndarray, dt: float) -> np.ndarray:
        """Scale the step uniformly so no joint exceeds its speed limit (keeps the direction), then clamp."""
        dq = q_new - self.q
        ratio = float(np.max(np.abs(dq) / (self.vmax * dt + 1e-12)))
        if ratio > 1.0:
            dq /= ratio
        return np.clip(self.q + dq, self.lower, self.upper)

    def step(self, cmd: JogCommand, dt: float) -> np.ndarray | None:
        """New absolute joint target, or None when the deadman is released or nothing is synced."""
        if not dt > 0:
            raise ValueError(f"dt must be > 0, got {dt}")
        if cmd.toggle_mode:
            self.toggle_mode()
        if not cmd.enabled or self.q is None:
            return None
        target = self.q.copy()
        if self.mode == JOINT:
            v = np.zeros(self.profile.dof)
            n = min(len(cmd.joint_vel), self.profile.dof)
            v[:n] = np.clip(np.nan_to_num(cmd.joint_vel[:n]), -1, 1)
            target = target + v * self.vmax * dt
        elif np.any(cmd.twist):
            twist = np.clip(np.nan_to_num(np.asarray(cmd.twist, dtype=np.float64)), -1, 1)
            pos, orn = self.kinematics.forward(self.q)
            pos = pos + twist[:3] * self.cfg.linear_speed * dt
            w = twist[3:] * self.cfg.angular_speed * dt
            angle = float(np.linalg.norm(w))
            if angle > 0:
                p = self.kinematics.p
                dq = p.getQuaternionFromAxisAngle((w / angle).tolist(), angle)
                orn = np.array(p.multiplyTransforms([0, 0, 0], dq, [0, 0, 0], orn.tolist())[1])
            target = self.kinematics.inverse(self.q, pos, orn, self.cfg.ik_iterations)
            if self.gripper is not None:
                target[self.gripper] = self.q[self.gripper]
        if self.gripper is not None and cmd.gripper:  # +1 opens: toward the profile's `gripper.open` value
            g = self.profile.gripper
            opening = np.sign(float(g["open"]) - float(g["closed"]))
            target[self.gripper] = (
                self.q[self.gripper] + np.sign(cmd.gripper) * opening * self.vmax[self.gripper] * dt
            )
        self.q = self._limit(target, dt)
        return self.q.copy()

    def close(self) -> None:
        if self._kin is not None:
            self._kin.close()
            self._kin = None


KEY_HELP = (
    "teleop keys: m mode (joint/cartesian) | joint: 1-8 select joint, + / - jog it | cartesian: i/k +x/-x, "
    "j/l +y/-y, u/o +z/-z | g open, b close gripper | each press jogs for key_duration_s"
)
_CART_KEYS = {"i": (0, 1.0), "k": (0, -1.0), "j": (1, 1.0), "l": (1, -1.0), "u": (2, 1.0), "o": (2, -1.0)}


class KeyJog:
    """Terminal keys -> JogCommand. A key press is a deliberate, momentary action, so it counts as enabled."""

    def __init__(self, dof: int) -> None:
        self.dof = dof
        self.selected = 0

    def command(self, key: str) -> JogCommand | None:
        """The command for one key, or None for keys that only change state (joint selection) or are unknown."""
        if key.isdigit() and 1 <= int(key) <= self.dof:
            self.selected = int(key) - 1
            return None
        joint, twist, grip = np.zeros(self.dof), np.zeros(6), 0.0
        if key in "+=":
            joint[self.selected] = 1.0
        elif key == "-":
            joint[self.selected] = -1.0
        elif key in _CART_KEYS:
            axis, sign = _CART_KEYS[key]
            twist[axis] = sign
        elif key == "g":
            grip = 1.0
        elif key == "b":
            grip = -1.0
        elif key == "m":
            return JogCommand(enabled=False, joint_vel=joint, toggle_mode=True)
        else:
            return None
        return JogCommand(enabled=True, joint_vel=joint, twist=twist, gripper=grip)
