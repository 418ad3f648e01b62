"""Robot profiles: joint names, position/velocity limits, home pose, cameras, tool link and gripper, loaded from
config/robots/<name>.yaml (docs/robots.md).

    >>> profile = RobotProfile.load("panda")
    >>> profile.clamp_position(q)

Core module: pure numpy + yaml, never imports rclpy.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"

# Cameras (issue 19): a name is a lower-case identifier (it becomes a graph input `frames_<name>`, a ROS parameter
# `cameras.<name>.topic` and an episode array `<name>_frames`); a mount tells the simulator where the camera sits:
# "fixed" (the scene's third-person camera) or "wrist" (on wrist_link, looking along the tool).
CAMERA_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
CAMERA_MOUNTS = ("fixed", "wrist")
DEFAULT_CAMERA_TOPIC = "camera/image_raw"  # the topic of a profile's only camera when it lists no `cameras`

# What a legged robot's base IMU reports, named as the fall campaign's traces store it and the fall forecaster reads
# it: orientation quaternion (x, y, z, w), angular velocity (rad/s), linear acceleration as an accelerometer sees it
# (m/s^2, gravity included), all in the base frame (docs/falls_dataset.md).
IMU_COLUMNS = (
    "imu_qx",
    "imu_qy",
    "imu_qz",
    "imu_qw",
    "imu_wx",
    "imu_wy",
    "imu_wz",
    "imu_ax",
    "imu_ay",
    "imu_az",
)


def config_dir() -> Path:
    """config/ of the source tree, or share/wam_ros/config of a colcon install."""
    if CONFIG_DIR.is_dir():
        return CONFIG_DIR
    try:  # installed with colcon: data files live in the ament share directory
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("wam_ros")) / "config"
    except Exception as exc:  # noqa: BLE001 - any failure means "not installed that way"
        raise FileNotFoundError(
            f"cannot find wam_ros config/ (looked in {CONFIG_DIR} and the ament index)"
        ) from exc


@dataclass
class RobotProfile:
    name: str
    joint_names: list[str]
    position_lower: list[float]
    position_upper: list[float]
    velocity_limit: list[float]
    home: list[float]
    urdf: str = ""
    camera: dict = field(default_factory=dict)
    joint_mapping: dict = field(default_factory=dict)
    measurement_tolerance: float = 0.05
    # The tool, for the simulator, its scripted experts and Cartesian jogging: the fingertip point is the origin of
    # `ee_link` plus `ee_offset` (m, in that link's frame, whose z axis points along the tool); a wrist camera sits on
    # `wrist_link` ("" = ee_link). "" = not given: the tabletop sim refuses such a profile, naming the key.
    ee_link: str = ""
    ee_offset: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    wrist_link: str = ""
    # {joint: NAME, open: V, closed: V}: the model joint that opens and closes the gripper and its two end values
    # (a Panda's width 0.08 m is open; an xArm's drive_joint 0 rad is open); {} = no gripper (every joint is arm).
    gripper: dict = field(default_factory=dict)
    # Every camera a model may see: [{name, topic, mount}], the first being `camera` (an episode's `frames`); [] =
    # that one camera alone, on DEFAULT_CAMERA_TOPIC (camera_specs). wam_node subscribes to each camera of its model
    # on the topic named here; sim_node publishes each.
    cameras: list = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.joint_names)
        for key in ("position_lower", "position_upper", "velocity_limit", "home"):
            if len(getattr(self, key)) != n:
                raise ValueError(
                    f"robot profile {self.name!r}: {key} has {len(getattr(self, key))} values, "
                    f"expected {n} (one per joint in joint_names)"
                )
        lo, hi = np.asarray(self.position_lower), np.asarray(self.position_upper)
        if np.any(lo >= hi):
            raise ValueError(
                f"robot profile {self.name!r}: position_lower must be < position_upper for every joint"
            )
        if np.any(np.asarray(self.velocity_limit) <= 0):
            raise ValueError(f"robot profile {self.name!r}: velocity_limit must be > 0 for every joint")
        if not (np.isfinite(self.measurement_tolerance) and self.measurement_tolerance >= 0):
            raise ValueError(
                f"robot profile {self.name!r}: measurement_tolerance must be a finite number >= 0, "
                f"got {self.measurement_tolerance!r}"
            )
        JointReader(self, self.joint_names)  # validates joint_mapping
        self._check_tool()
        self._check_cameras()

    def _check_cameras(self) -> None:
        where = f"robot profile {self.name!r}: cameras"
        if not isinstance(self.cameras, list):
            raise ValueError(f"{where} must be a list of {{name, topic, mount}}, got {self.cameras!r}")
        names = []
        for i, cam in enumerate(self.cameras):
            if (
                not isinstance(cam, dict)
                or not {"name", "topic"} <= set(cam)
                or set(cam) - {"name", "topic", "mount"}
            ):
                raise ValueError(
                    f"{where}[{i}] must be a mapping with keys name, topic (and mount), got {cam!r}"
                )
            if not isinstance(cam["name"], str) or not CAMERA_NAME.fullmatch(cam["name"]):
                raise ValueError(
                    f"{where}[{i}].name must be a lower-case identifier (a-z, 0-9, _), got {cam['name']!r}"
                )
            if not isinstance(cam["topic"], str) or not cam["topic"].strip():
                raise ValueError(f"{where}[{i}].topic must be a topic name, got {cam['topic']!r}")
            if cam.get("mount", "fixed") not in CAMERA_MOUNTS:
                raise ValueError(f"{where}[{i}].mount must be one of {CAMERA_MOUNTS}, got {cam['mount']!r}")
            names.append(cam["name"])
        if len(set(names)) != len(names):
            raise ValueError(f"{where} names a camera twice: {names}")
        main = self.camera.get("name") if isinstance(self.camera, dict) else None
        if names and main and names[0] != main:
            raise ValueError(
                f"{where}[0] is {names[0]!r} but camera.name is {main!r}: the first camera is the main one "
                "(an episode's `frames`)"
            )

    @property
    def camera_specs(self) -> list[dict]:
        """Every camera as {name, topic, mount}, the main one first (one camera on DEFAULT_CAMERA_TOPIC, mount
        fixed, when the profile lists none)."""
        if not self.cameras:
            name = self.camera.get("name", "front") if isinstance(self.camera, dict) else "front"
            return [{"name": name, "topic": DEFAULT_CAMERA_TOPIC, "mount": "fixed"}]
        return [{"mount": "fixed", **cam} for cam in self.cameras]

    def _check_tool(self) -> None:
        where = f"robot profile {self.name!r}"
        for key in ("ee_link", "wrist_link"):
            if not isinstance(getattr(self, key), str):
                raise ValueError(f"{where}: {key} must be a link name (a string), got {getattr(self, key)!r}")
        off = self.ee_offset
        if (
            not isinstance(off, list | tuple)
            or len(off) != 3
            or not all(isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) for v in off)
        ):
            raise ValueError(
                f"{where}: ee_offset must be 3 finite numbers (m, in ee_link's frame), got {off!r}"
            )
        g = self.gripper
        if not isinstance(g, dict):
            raise ValueError(f"{where}: gripper must be a mapping {{joint, open, closed}} or {{}}, got {g!r}")
        if not g:
            return
        if set(g) != {"joint", "open", "closed"}:
            raise ValueError(f"{where}: gripper needs exactly the keys joint, open, closed; got {sorted(g)}")
        if g["joint"] not in self.joint_names:
            raise ValueError(
                f"{where}: gripper.joint {g['joint']!r} is not one of joint_names {self.joint_names}"
            )
        j = self.joint_names.index(g["joint"])
        for key in ("open", "closed"):
            v = g[key]
            ok = isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)
            if not ok or not self.position_lower[j] <= v <= self.position_upper[j]:
                raise ValueError(
                    f"{where}: gripper.{key} must be a number inside {g['joint']}'s limits "
                    f"[{self.position_lower[j]:g}, {self.position_upper[j]:g}], got {v!r}"
                )
        if g["open"] == g["closed"]:
            raise ValueError(f"{where}: gripper.open and gripper.closed are equal ({g['open']!r})")

    @property
    def dof(self) -> int:
        return len(self.joint_names)

    @property
    def gripper_index(self) -> int | None:
        """Index of the gripper joint in joint_names, None without a gripper."""
        return self.joint_names.index(self.gripper["joint"]) if self.gripper else None

    @property
    def arm_indices(self) -> list[int]:
        """Indices of the arm joints (every joint but the gripper) in joint_names."""
        return [i for i in range(self.dof) if i != self.gripper_index]

    @classmethod
    def load(cls, name_or_path: str | Path) -> RobotProfile:
        path = Path(name_or_path)
        if not path.suffix:
            path = config_dir() / "robots" / f"{name_or_path}.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"robot profile not found: {path}")
        data = yaml.safe_load(path.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"robot profile {path} is not a YAML mapping")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"robot profile {path}: unknown key(s) {unknown}")
        return cls(**data)

    def to_dict(self) -> dict:
        out = asdict(self)
        if not out["cameras"]:  # one camera (camera_specs): the dict of every profile from before `cameras`
            del out["cameras"]
        return out

    def clamp_position(self, q: np.ndarray) -> np.ndarray:
        return np.clip(q, self.position_lower, self.position_upper)


class JointReader:
    """How each model joint is read from a sensor_msgs/JointState (names + positions), from the profile's
    `joint_mapping`. A model joint whose own name is in the message is read as it is; otherwise its mapping applies:

        joint_mapping:
          panda_gripper: {sum: [panda_finger_joint1, panda_finger_joint2]}   # width = finger1 + finger2
          wrist: {joint: wrist_joint, scale: -1.0, offset: 0.1}               # value = scale * position + offset

    So a standard robot's own /joint_states work without renaming, and our sim's (which publishes the model names)
    too. Index arrays are cached per distinct name list (a driver sends the same list every time)."""

    def __init__(self, profile: RobotProfile, model_joints: list[str]) -> None:
        self.model_joints = list(model_joints)
        self.rules: dict[str, tuple[list[str], float, float]] = {}
        for name, rule in (profile.joint_mapping or {}).items():
            where = f"robot profile {profile.name!r}: joint_mapping.{name}"
            if not isinstance(rule, dict):
                raise ValueError(f"{where} must be a mapping like {{joint: NAME}} or {{sum: [A, B]}}")
            unknown = sorted(set(rule) - {"joint", "sum", "scale", "offset"})
            if unknown or ("joint" in rule) == ("sum" in rule):
                raise ValueError(f"{where}: give exactly one of 'joint' or 'sum' (+ optional scale, offset)")
            sources = [rule["joint"]] if "joint" in rule else list(rule["sum"])
            if not sources or not all(isinstance(x, str) and x for x in sources):
                raise ValueError(f"{where}: source joint names must be non-empty strings, got {sources!r}")
            scale, offset = float(rule.get("scale", 1.0)), float(rule.get("offset", 0.0))
            if not (np.isfinite(scale) and np.isfinite(offset)):
                raise ValueError(f"{where}: scale and offset must be finite")
            self.rules[name] = (sources, scale, offset)
        self._plans: dict[tuple[str, ...], list[tuple[list[int], float, float]]] = {}

    def _plan(self, names: tuple[str, ...]) -> list[tuple[list[int], float, float]]:
        plan = self._plans.get(names)
        if plan is not None:
            return plan
        if len(set(names)) != len(names):
            raise ValueError("joint_states has duplicate joint names")
        index = {n: i for i, n in enumerate(names)}
        plan, missing = [], []
        for joint in self.model_joints:
            if joint in index:
                plan.append(([index[joint]], 1.0, 0.0))
                continue
            sources, scale, offset = self.rules.get(joint, ([joint], 1.0, 0.0))
            if all(s in index for s in sources):
                plan.append(([index[s] for s in sources], scale, offset))
            else:
                missing.append(joint if joint not in self.rules else f"{joint} (from {sources})")
        if missing:
            raise ValueError(f"joint_states is missing joints {missing} (got {list(names)})")
        if len(self._plans) > 16:
            self._plans.clear()
        self._plans[names] = plan
        return plan

    def read(self, names: list[str] | tuple[str, ...], positions: np.ndarray) -> np.ndarray:
        """float64 (J,) in model joint order; ValueError naming what is missing, duplicated or non-finite."""
        pos = np.asarray(positions, dtype=np.float64)
        if len(names) != len(pos):
            raise ValueError(f"joint_states has {len(names)} names but {len(pos)} positions (expected equal)")
        plan = self._plan(tuple(names))
        q = np.empty(len(plan))
        for j, (idx, scale, offset) in enumerate(plan):
            q[j] = scale * (pos[idx[0]] if len(idx) == 1 else float(pos[idx].sum())) + offset
        if not np.all(np.isfinite(q)):
            bad = [n for n, v in zip(self.model_joints, q, strict=True) if not np.isfinite(v)]
            raise ValueError(f"joint_states has non-finite positions for {bad}")
        return q
