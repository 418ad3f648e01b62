"""The episode format: one file per episode, written by every producer (sim, teleop bags, robot), read by training.

Schema (version 1), documented in docs/episode_format.md. An episode is `episode_<index:06d>.npz`, a plain numpy
archive readable without our code (`np.load(path)`; `json.loads(str(z["meta"]))`):

    frames      uint8   (T, H, W, 3)  RGB camera frame observed at step t (camera `meta["camera"]["name"]`)
    joint_pos   float32 (T, J)        joint positions at step t, ordered as meta["robot"]["joint_names"]
    joint_vel   float32 (T, J)        joint velocities at step t
    actions     float32 (T, A)        absolute joint position targets commanded after observing step t (A == J)
    timestamps  float64 (T,)          seconds since the episode start
    meta        str (0-d)             JSON: schema_version, task, instruction, success, seed, robot, camera,
                                      control_hz, randomisation, scene, producer, ...
    extra keys  optional arrays, e.g. `wrist_frames` uint8 (T, H, W, 3)

Writes are atomic: the archive is written to a hidden temporary file in the same directory, fsynced, then renamed
into place. A crash leaves at most a `.episode_*.tmp-*` file, which readers never list, never a half episode.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 1
EPISODE_GLOB = "episode_*.npz"
_EPISODE_RE = re.compile(r"^episode_(\d{6,})\.npz$")
REQUIRED_META = ("task", "instruction", "success", "robot", "control_hz")
ARRAY_DTYPES = {
    "frames": np.uint8,
    "joint_pos": np.float32,
    "joint_vel": np.float32,
    "actions": np.float32,
    "timestamps": np.float64,
}


class EpisodeError(ValueError):
    """An episode file is missing, corrupt or does not follow the schema."""


@dataclass
class Episode:
    frames: np.ndarray
    joint_pos: np.ndarray
    joint_vel: np.ndarray
    actions: np.ndarray
    timestamps: np.ndarray
    meta: dict[str, Any]
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, dtype in ARRAY_DTYPES.items():
            setattr(self, key, np.asarray(getattr(self, key), dtype=dtype))
        self.validate()

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def instruction(self) -> str:
        return str(self.meta["instruction"])

    @property
    def task(self) -> str:
        return str(self.meta["task"])

    @property
    def success(self) -> bool:
        return bool(self.meta["success"])

    def validate(self) -> None:
        t = self.frames.shape[0] if self.frames.ndim else 0
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3:
            raise EpisodeError(f"frames must be uint8 (T, H, W, 3), got shape {self.frames.shape}")
        if t < 2:
            raise EpisodeError(f"an episode needs at least 2 steps, got {t}")
        j = self.joint_pos.shape[-1] if self.joint_pos.ndim == 2 else -1
        expected = {"joint_pos": (t, j), "joint_vel": (t, j), "actions": (t, j), "timestamps": (t,)}
        for key, shape in expected.items():
            arr = getattr(self, key)
            if arr.shape != shape:
                raise EpisodeError(f"{key} must have shape {shape} (T={t}, J={j}), got {arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise EpisodeError(f"{key} contains NaN or Inf")
        if np.any(np.diff(self.timestamps) <= 0):
            raise EpisodeError("timestamps must be strictly increasing")
        missing = [k for k in REQUIRED_META if k not in self.meta]
        if missing:
            raise EpisodeError(f"meta is missing {missing}")
        names = self.meta["robot"].get("joint_names", [])
        if len(names) != j:
            raise EpisodeError(f"meta.robot.joint_names has {len(names)} names, joint_pos has {j} columns")
        for key, arr in self.extra.items():
            if arr.shape[:1] != (t,):
                raise EpisodeError(f"extra array {key!r} must have T={t} rows, got shape {arr.shape}")


def episode_path(out_dir: str | Path, index: int) -> Path:
    if index < 0:
        raise ValueError(f"episode index must be >= 0, got {index}")
    return Path(out_dir) / f"episode_{index:06d}.npz"


def write_episode(path: str | Path, episode: Episode, compress: bool = True) -> Path:
    """Atomically write `episode` to `path` (tmp file + fsync + rename). Returns the final path."""
    path = Path(path)
    if not _EPISODE_RE.match(path.name):
        raise ValueError(f"episode files are named episode_<index:06d>.npz, got {path.name!r}")
    episode.validate()
    meta = {"schema_version": SCHEMA_VERSION, **episode.meta}
    arrays = {key: getattr(episode, key) for key in ARRAY_DTYPES}
    arrays.update(episode.extra)
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            (np.savez_compressed if compress else np.savez)(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)
    return path


def read_episode(path: str | Path) -> Episode:
    path = Path(path)
    if not path.is_file():
        raise EpisodeError(f"episode file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {key: z[key] for key in z.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise EpisodeError(f"episode file {path} is corrupt or not an npz archive: {exc}") from exc
    missing = [k for k in (*ARRAY_DTYPES, "meta") if k not in data]
    if missing:
        raise EpisodeError(f"episode file {path} is missing arrays {missing}")
    try:
        meta = json.loads(str(data.pop("meta")))
    except json.JSONDecodeError as exc:
        raise EpisodeError(f"episode file {path}: meta is not valid JSON: {exc}") from exc
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise EpisodeError(f"episode file {path}: schema_version {meta.get('schema_version')!r}, "
                           f"this code reads {SCHEMA_VERSION}")
    core = {key: data.pop(key) for key in ARRAY_DTYPES}
    try:
        return Episode(**core, meta=meta, extra=data)
    except EpisodeError as exc:
        raise EpisodeError(f"episode file {path}: {exc}") from exc


def list_episodes(root: str | Path) -> list[Path]:
    """Complete episode files under `root` (recursively), sorted. Temporary files are never listed."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"episode directory not found: {root}")
    return sorted(p for p in root.rglob(EPISODE_GLOB) if _EPISODE_RE.match(p.name))


def episode_index(path: str | Path) -> int:
    m = _EPISODE_RE.match(Path(path).name)
    if not m:
        raise ValueError(f"not an episode file name: {path}")
    return int(m.group(1))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
