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
    extra keys  optional arrays, e.g. `wrist_frames` uint8 (T, H, W, 3): another camera's frames are
                `<camera>_frames` (camera_frames); `frames` is the main camera's

Writes are atomic (wam_ros.fileio.atomic_path): a crash leaves at most a `.episode_*.tmp-*` file, which readers
never list, never a half episode.

Validation (`Episode.validate`, run when an episode is built, written and read) refuses, with an `EpisodeError`
naming the field (and the file, when read): frames that are not uint8 (a float image in [0, 1] is never cast: that
would make it black; `frames_to_uint8` converts one explicitly), wrong shapes or dtypes, NaN/Inf, absurd magnitudes
(> `ABSURD`), actions outside `meta.robot`'s position limits by more than `LIMIT_TOLERANCE` of the joint's range, a
`success` that is not a JSON boolean (the string "false" is refused, not read as True), and malformed meta.
"""

from __future__ import annotations

import json
import re
import struct
import tokenize
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wam_ros.fileio import atomic_path

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
_FLOAT_FIELDS = ("joint_pos", "joint_vel", "actions", "timestamps")
# |value| above this in joint_pos / joint_vel / actions is no joint reading in rad, m, rad/s or m/s: a corrupt
# recording (issue 15: actions of 1e30 trained a model)
ABSURD = 1e4
# an action may lie outside meta.robot's position limits by this fraction of the joint's range (Panda joint 1:
# 0.29 rad, gripper: 4 mm); producers clamp to the limits, so more than this is a recording in the wrong units or
# for another robot
LIMIT_TOLERANCE = 0.05
# what np.load / zipfile / zlib raise on a damaged archive (found by tests/test_episode.py's corruption property)
_LOAD_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    OSError,
    ValueError,
    EOFError,
    KeyError,
    NotImplementedError,
    RuntimeError,
    struct.error,
    OverflowError,
    SyntaxError,
    tokenize.TokenError,  # a damaged .npy header that numpy's Python-2 header filter cannot tokenize
    MemoryError,  # a damaged .npy header claiming an enormous shape
)


class EpisodeError(ValueError):
    """An episode file is missing, corrupt or does not follow the schema; the message names the file and field."""


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
        return self.meta["success"] is True

    def validate(self) -> None:
        """Check every field (see the module docstring); float fields are cast to their schema dtype."""
        self.frames = _frames_array(self.frames)
        for key in _FLOAT_FIELDS:
            setattr(self, key, _float_array(getattr(self, key), key))
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or 0 in self.frames.shape[1:3]:
            raise EpisodeError(f"frames must be uint8 (T, H, W, 3), got shape {self.frames.shape}")
        t = self.frames.shape[0]
        if t < 2:
            raise EpisodeError(f"an episode needs at least 2 steps, got {t}")
        j = self.joint_pos.shape[-1] if self.joint_pos.ndim == 2 else -1
        if j == 0:
            raise EpisodeError("joint_pos has 0 columns: an episode needs at least one joint")
        expected = {"joint_pos": (t, j), "joint_vel": (t, j), "actions": (t, j), "timestamps": (t,)}
        for key, shape in expected.items():
            arr = getattr(self, key)
            if arr.shape != shape:
                raise EpisodeError(f"{key} must have shape {shape} (T={t}, J={j}), got {arr.shape}")
            bad = np.argwhere(~np.isfinite(arr))
            if bad.size:
                idx = tuple(int(i) for i in bad[0])
                raise EpisodeError(f"{key} contains NaN or Inf: {key}{list(idx)} = {arr[idx]}")
            if key != "timestamps":
                _refuse_absurd(arr, key)
        steps = np.diff(self.timestamps)
        if np.any(steps <= 0):
            k = int(np.argmax(steps <= 0)) + 1
            raise EpisodeError(
                f"timestamps must be strictly increasing: timestamps[{k}] = {self.timestamps[k]:g} after "
                f"{self.timestamps[k - 1]:g}"
            )
        self.meta = _validated_meta(self.meta, j)
        self._check_limits()
        for key, arr in self.extra.items():
            if not isinstance(arr, np.ndarray) or arr.shape[:1] != (t,):
                shape = getattr(arr, "shape", type(arr).__name__)
                raise EpisodeError(f"extra array {key!r} must have T={t} rows, got shape {shape}")
            if key.endswith("frames") and (arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3):
                raise EpisodeError(
                    f"{key} must be uint8 (T, H, W, 3) like frames, got {arr.dtype} {arr.shape}"
                )

    def _check_limits(self) -> None:
        limits = _position_limits(self.meta["robot"], self.actions.shape[1])
        if limits is None:
            return
        lo, hi = limits
        tol = LIMIT_TOLERANCE * (hi - lo)
        out = np.argwhere((self.actions < lo - tol) | (self.actions > hi + tol))
        if out.size:
            i, k = (int(x) for x in out[0])
            name = self.meta["robot"]["joint_names"][k]
            raise EpisodeError(
                f"actions[{i}, {k}] = {float(self.actions[i, k]):g} is outside the position limits of {name} "
                f"[{lo[k]:g}, {hi[k]:g}] (meta.robot {self.meta['robot'].get('name', '')!r}, tolerance "
                f"{tol[k]:.3g}); {len(out)} value(s) out of limits"
            )


def camera_key(camera: str, first: bool) -> str:
    """The array holding a camera's frames: `frames` for the first (main) camera, `<camera>_frames` for another
    (e.g. `wrist_frames`, as `wam collect --wrist-camera` writes it)."""
    return "frames" if first else f"{camera}_frames"


def camera_frames(episode: Episode, cameras: list[str] | tuple[str, ...]) -> list[np.ndarray]:
    """uint8 (T, H, W, 3) frames of each camera, in order: cameras[0] is the episode's `frames`, each other camera
    its `<camera>_frames` array. EpisodeError naming the episode and the cameras it has when one is missing."""
    out = [episode.frames]
    for camera in cameras[1:]:
        arr = episode.extra.get(camera_key(camera, False))
        if arr is None:
            have = [k.removesuffix("_frames") for k in episode.extra if k.endswith("_frames")]
            raise EpisodeError(
                f"episode {episode.meta.get('episode_index', '?')} ({episode.task}, seed {episode.meta.get('seed', '?')}) "
                f"has no {camera_key(camera, False)} array for camera {camera!r}: it holds `frames` + "
                f"{[f'{h}_frames' for h in have]} (record extra cameras with e.g. `wam collect --wrist-camera`)"
            )
        out.append(arr)
    return out


def frames_to_uint8(frames: np.ndarray) -> np.ndarray:
    """Explicit conversion of float RGB frames in [0, 1] to uint8 (x * 255, rounded). Anything else is refused."""
    arr = np.asarray(frames)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind != "f":
        raise EpisodeError(f"frames_to_uint8 converts float frames in [0, 1], got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)) or arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
        raise EpisodeError("frames_to_uint8: float frames must be finite and in [0, 1]")
    return np.round(arr * 255.0).astype(np.uint8)


def _frames_array(value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind == "f":
        finite = arr[np.isfinite(arr)]
        span = f"values in [{finite.min():g}, {finite.max():g}]" if finite.size else "no finite values"
        raise EpisodeError(
            f"frames must be uint8 RGB (0..255), got {arr.dtype} with {span}; a float image is never cast "
            "silently (values in [0, 1] would turn black): convert it with "
            "wam_ros.data.episode.frames_to_uint8 (x * 255, rounded)"
        )
    raise EpisodeError(f"frames must be uint8 RGB (0..255), got dtype {arr.dtype}")


def _float_array(value: Any, key: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise EpisodeError(
            f"{key} must hold real numbers ({np.dtype(ARRAY_DTYPES[key])}), got dtype {arr.dtype}"
        )
    if key != "timestamps" and arr.dtype != ARRAY_DTYPES[key]:
        _refuse_absurd(arr, key)  # in the given precision: 1e300 is reported as 1e300, not as float32's Inf
    with np.errstate(over="ignore"):  # beyond float32 (only Inf and NaN left here): refused by validate()
        return arr.astype(ARRAY_DTYPES[key], copy=False)


def _refuse_absurd(arr: np.ndarray, key: str) -> None:
    with np.errstate(invalid="ignore"):
        big = np.argwhere(np.abs(arr) > ABSURD)  # NaN compares False; Inf is reported as NaN or Inf
    big = [tuple(int(i) for i in b) for b in big if np.isfinite(arr[tuple(b)])]
    if big:
        raise EpisodeError(
            f"{key}{list(big[0])} = {float(arr[big[0]]):g} is absurd (|value| > {ABSURD:g}): not a joint "
            "position, velocity or target"
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _validated_meta(meta: Any, j: int) -> dict[str, Any]:
    """meta checked field by field; numpy booleans become bool. Raises EpisodeError naming `meta.<field>`."""
    if not isinstance(meta, dict):
        raise EpisodeError(f"meta must be a JSON object, got {type(meta).__name__}")
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise EpisodeError(f"meta is missing {missing}")
    for key in ("task", "instruction"):
        if not isinstance(meta[key], str):
            raise EpisodeError(f"meta.{key} must be a string, got {meta[key]!r} ({type(meta[key]).__name__})")
    success = meta["success"]
    if isinstance(success, np.bool_):
        meta["success"] = success = bool(success)
    if not isinstance(success, bool):
        raise EpisodeError(
            f"meta.success must be true or false (a JSON boolean), got {success!r} ({type(success).__name__}); "
            "a string such as 'false' is not read as a boolean"
        )
    hz = meta["control_hz"]
    if not _is_number(hz) or not np.isfinite(hz) or hz <= 0:
        raise EpisodeError(f"meta.control_hz must be a number > 0, got {hz!r}")
    robot = meta["robot"]
    if not isinstance(robot, dict):
        raise EpisodeError(f"meta.robot must be an object (the robot profile), got {type(robot).__name__}")
    names = robot.get("joint_names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise EpisodeError(f"meta.robot.joint_names must be a list of strings, got {names!r}")
    if len(names) != j:
        raise EpisodeError(f"meta.robot.joint_names has {len(names)} names, joint_pos has {j} columns")
    return meta


def _position_limits(robot: dict, j: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(lower, upper) from meta.robot, else from the named robot profile in config/robots; None when neither."""
    if "position_lower" not in robot and "position_upper" not in robot:
        return _profile_limits(robot, j)
    lims = []
    for key in ("position_lower", "position_upper"):
        v = robot.get(key)
        if not isinstance(v, list) or len(v) != j or not all(_is_number(x) and np.isfinite(x) for x in v):
            raise EpisodeError(f"meta.robot.{key} must be a list of {j} finite numbers, got {v!r}")
        lims.append(np.asarray(v, dtype=np.float64))
    lo, hi = lims
    if np.any(lo >= hi):
        raise EpisodeError("meta.robot.position_lower must be < position_upper for every joint")
    return lo, hi


def _profile_limits(robot: dict, j: int) -> tuple[np.ndarray, np.ndarray] | None:
    name = robot.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
        return None
    from wam_ros.robot import RobotProfile

    try:
        profile = RobotProfile.load(name)
    except (FileNotFoundError, ValueError, TypeError):
        return None  # a robot without a profile here (e.g. the fall campaign's legged robots)
    if profile.joint_names != robot.get("joint_names") or profile.dof != j:
        return None
    return np.asarray(profile.position_lower, np.float64), np.asarray(profile.position_upper, np.float64)


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
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        (np.savez_compressed if compress else np.savez)(f, **arrays)
    return path


def _load_arrays(path: Path, only: str | None = None) -> dict[str, np.ndarray]:
    """The arrays of an npz file (or just `only`), every load failure as an EpisodeError."""
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise EpisodeError(f"episode file {path} is not an npz archive (np.load gave {type(z).__name__})")
        with z:
            if only is not None:
                return {only: z[only]} if only in z.files else {}
            return {key: z[key] for key in z.files}
    except EpisodeError:
        raise
    except _LOAD_ERRORS as exc:
        raise EpisodeError(
            f"episode file {path} is corrupt or not an npz archive: {type(exc).__name__}: {exc}"
        ) from exc


def _parse_meta(path: Path, arr: np.ndarray) -> dict[str, Any]:
    if arr.ndim != 0 or arr.dtype.kind != "U":
        raise EpisodeError(
            f"episode file {path}: meta must be a 0-d string array holding JSON, got {arr.dtype}"
        )
    try:
        meta = json.loads(str(arr))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise EpisodeError(f"episode file {path}: meta is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise EpisodeError(f"episode file {path}: meta must be a JSON object, got {type(meta).__name__}")
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise EpisodeError(
            f"episode file {path}: schema_version {meta.get('schema_version')!r}, this code reads {SCHEMA_VERSION}"
        )
    return meta


def read_meta(path: str | Path) -> dict[str, Any]:
    """Only the meta of an episode file (decompresses nothing else): for indexes over many episodes."""
    path = Path(path)
    if not path.is_file():
        raise EpisodeError(f"episode file not found: {path}")
    data = _load_arrays(path, only="meta")
    if "meta" not in data:
        raise EpisodeError(f"episode file {path} is missing arrays ['meta']")
    return _parse_meta(path, data["meta"])


def read_episode(path: str | Path) -> Episode:
    """Load and validate one episode file; every problem is an EpisodeError naming the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise EpisodeError(f"episode file not found: {path}")
    data = _load_arrays(path)
    missing = [k for k in (*ARRAY_DTYPES, "meta") if k not in data]
    if missing:
        raise EpisodeError(f"episode file {path} is missing arrays {missing}")
    meta = _parse_meta(path, data.pop("meta"))
    core = {key: data.pop(key) for key in ARRAY_DTYPES}
    for key in _FLOAT_FIELDS:  # a file holds floats; integers there mean another writer's schema
        if core[key].dtype.kind != "f":
            raise EpisodeError(
                f"episode file {path}: {key} must be {np.dtype(ARRAY_DTYPES[key])}, got {core[key].dtype}"
            )
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
