"""Robot profiles: joint names, position/velocity limits, home pose and camera, loaded from config/robots/<name>.yaml.

    >>> profile = RobotProfile.load("panda")
    >>> profile.clamp_position(q)

Core module: pure numpy + yaml, never imports rclpy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


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

    @property
    def dof(self) -> int:
        return len(self.joint_names)

    @classmethod
    def load(cls, name_or_path: str | Path) -> RobotProfile:
        path = Path(name_or_path)
        if not path.suffix:
            path = config_dir() / "robots" / f"{name_or_path}.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"robot profile not found: {path}")
        data = yaml.safe_load(path.read_text())
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)

    def clamp_position(self, q: np.ndarray) -> np.ndarray:
        return np.clip(q, self.position_lower, self.position_upper)
