"""Import a LeRobot dataset (format v3.0) as episodes, so community datasets train a WAM.

    wam data import-lerobot path/to/dataset --robot panda --out data/imported [--camera top] [--success | --failure]
    summary = import_lerobot("path/to/dataset", "data/imported", ImportConfig(robot="panda"))

What becomes what (docs/lerobot.md):
    observation.state / action     joint_pos / actions, columns picked by the feature's `names` in the robot profile's
                                   joint order (a profile joint missing from `names` is an error; a name that is no
                                   joint of the profile is an error unless drop_unmapped)
    observation.velocity           joint_vel, mapped the same way; absent: finite differences of the state over time
    observation.images.<camera>    frames (video or image feature), decoded with PyAV at from_timestamp + timestamp
                                   (LeRobot's rule), the nearest frame within tolerance_s; `wrist_camera` -> wrist_frames
    task (task_index per frame)    instruction; an episode whose task changes mid-way is skipped and reported
    success                        ImportConfig.success, else meta/episodes column `success`, else any `next.success`
    timestamp                      timestamps (shifted to start at 0); fps -> control_hz

Episode i of the dataset is written as episode_<i>.npz. Everything is checked before it is trusted; a damaged or
unsupported dataset raises LeRobotError naming the file and the field. Written into a hidden temporary directory and
renamed into place, so a failed import leaves nothing behind. Never imports rclpy.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from wam_ros.data.episode import Episode, EpisodeError, episode_path, write_episode
from wam_ros.data.lerobot.layout import ACTION, IMAGES, INFO_PATH, STATE, TASKS_PATH, VELOCITY
from wam_ros.data.video import VideoError, VideoReader
from wam_ros.fileio import atomic_dir
from wam_ros.robot import JointReader, RobotProfile

PRODUCER = "wam data import-lerobot"


class _JointMap:
    """Rows of a LeRobot joint vector (dataset names) -> the profile's joints (wam_ros.robot.JointReader: by name,
    or by the profile's joint_mapping, e.g. a Panda's two finger joints summed into its gripper width)."""

    def __init__(self, reader: JointReader, names: list[str], key: str) -> None:
        self.reader, self.names, self.key = reader, names, key

    def __call__(self, x: np.ndarray, rate: bool = False) -> np.ndarray:
        """(T, n) -> (T, J) float32. rate: a velocity, so the mapping's offsets do not apply."""
        out = np.stack([self.reader.read(self.names, row) for row in x])
        if rate:
            out -= self.reader.read(self.names, np.zeros(len(self.names)))
        return out.astype(np.float32)


class LeRobotError(ValueError):
    """A LeRobot dataset is damaged, or uses something this importer does not read; says which file and field."""


@dataclass(frozen=True)
class ImportConfig:
    """How a LeRobot dataset becomes episodes.

    Args:
        robot: robot profile (name in config/robots or a YAML path) whose joint names map the state/action columns.
        camera: the camera feature, `observation.images.<camera>` or just <camera>; None: the only one, or the one
            named like the profile's camera.
        wrist_camera: a second camera feature, written as wrist_frames; None: none.
        state_key, action_key: the features read as joint_pos and actions.
        velocity_key: read as joint_vel when the dataset has it; otherwise joint_vel is the finite difference of the
            state. "" never reads it.
        success: every episode's success; None: as the dataset says (an error when it says nothing).
        task: meta.task of every episode; None: the dataset directory's name.
        image_size: resize frames to image_size x image_size (area interpolation); 0 keeps the stored size.
        drop_unmapped: import even when state/action have names that are no joint of the profile (dropping them).
        tolerance_s: how far the nearest video frame may be from the time a data row asks for (LeRobot's 1e-4 s).
        overwrite: replace a non-empty output directory.
    """

    robot: str = "panda"
    camera: str | None = None
    wrist_camera: str | None = None
    state_key: str = STATE
    action_key: str = ACTION
    velocity_key: str = VELOCITY
    success: bool | None = None
    task: str | None = None
    image_size: int = 0
    drop_unmapped: bool = False
    tolerance_s: float = 1e-4
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.image_size < 0:
            raise ValueError(f"image_size must be >= 0 (0 keeps the stored size), got {self.image_size}")
        if not self.tolerance_s > 0:
            raise ValueError(f"tolerance_s must be > 0, got {self.tolerance_s}")


def import_lerobot(dataset: str | Path, out_dir: str | Path, cfg: ImportConfig | None = None) -> dict:
    """Write every episode of the LeRobot v3.0 dataset at `dataset` to out_dir. Returns a summary (JSON-ready)."""
    cfg, root, out_dir = cfg or ImportConfig(), Path(dataset), Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not cfg.overwrite:
        raise FileExistsError(
            f"{out_dir} exists and is not empty; pass overwrite=True (--overwrite) to replace it"
        )
    reader = _Dataset(root, cfg)  # reads and checks all metadata before anything is written
    try:
        with atomic_dir(out_dir) as tmp:
            summary = reader.write(tmp)
    finally:
        reader.close()
    return {**summary, "out": str(out_dir)}


def _names(names: object) -> list[str] | None:
    """A feature's `names` as a flat list: ["a", "b"], {"motors": ["a", "b"]} (v2-style) or [["a", "b"]]."""
    if isinstance(names, dict) and len(names) == 1:
        names = next(iter(names.values()))
    if isinstance(names, list) and len(names) == 1 and isinstance(names[0], list):
        names = names[0]
    if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
        return list(names)
    return None


class _Dataset:
    def __init__(self, root: Path, cfg: ImportConfig) -> None:
        self.root, self.cfg = root, cfg
        self.profile = RobotProfile.load(cfg.robot)
        self.info = self._info()
        self.fps = float(self.info["fps"])
        features = self.info["features"]
        self.maps: dict[str, _JointMap] = {}  # episode array -> how it is read from its feature
        dropped: dict[str, list[str]] = {}
        for array, key in (("joint_pos", cfg.state_key), ("actions", cfg.action_key)):
            self.maps[array], dropped[key] = self._mapping(key)
        self.velocity = cfg.velocity_key if cfg.velocity_key and cfg.velocity_key in features else None
        if self.velocity:
            self.maps["joint_vel"], dropped[self.velocity] = self._mapping(self.velocity)
        self.dropped = {k: v for k, v in dropped.items() if v}
        self.camera = self._camera(cfg.camera)
        self.wrist = self._camera(cfg.wrist_camera) if cfg.wrist_camera else None
        if self.wrist == self.camera:
            raise LeRobotError(f"wrist camera and camera are the same feature {self.camera!r}")
        self.tasks = self._tasks()
        self.episodes = self._episodes()
        self.success_from = self._success_source()
        self._data: tuple[Path, pa.Table] | None = None
        self._videos: dict[Path, VideoReader] = {}

    # ---- metadata ------------------------------------------------------------------------------------------------
    def _info(self) -> dict:
        path = self.root / INFO_PATH
        if not self.root.is_dir():
            raise LeRobotError(f"{self.root}: not a directory")
        if not path.is_file():
            raise LeRobotError(f"{path}: missing; a LeRobot dataset has meta/info.json")
        try:
            info = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LeRobotError(f"{path}: not valid JSON: {exc}") from exc
        if not isinstance(info, dict):
            raise LeRobotError(f"{path}: expected a JSON object")
        version = str(info.get("codebase_version", ""))
        if version.startswith(("v1.", "v2.")):
            raise LeRobotError(
                f"{path}: codebase_version {version!r} is the LeRobot v2.x layout (episodes.jsonl, one file per "
                "episode); this importer reads v3.0. Convert it with LeRobot: "
                "python -m lerobot.datasets.v30.convert_dataset_v21_to_v30 --repo-id=<id>"
            )
        if not version.startswith("v3."):
            raise LeRobotError(f"{path}: codebase_version {version!r} is not v3.x")
        for key in ("fps", "features", "data_path"):
            if key not in info:
                raise LeRobotError(f"{path}: field {key!r} is missing")
        if not isinstance(info["fps"], int | float) or not info["fps"] > 0:
            raise LeRobotError(f"{path}: fps must be a positive number, got {info['fps']!r}")
        if not isinstance(info["features"], dict):
            raise LeRobotError(f"{path}: features must be an object")
        return info

    def _feature(self, key: str) -> dict:
        features = self.info["features"]
        if key not in features:
            raise LeRobotError(
                f"{self.root / INFO_PATH}: features has no {key!r} (it has {sorted(features)})"
            )
        if not isinstance(features[key], dict):
            raise LeRobotError(f"{self.root / INFO_PATH}: features[{key!r}] must be an object")
        return features[key]

    def _mapping(self, key: str) -> tuple[_JointMap, list[str]]:
        """How feature `key` maps onto the profile's joints (by name, through its joint_mapping), and the dataset
        names nothing reads."""
        where = f"{self.root / INFO_PATH}: features[{key!r}]"
        ft = self._feature(key)
        shape = ft.get("shape")
        if not (isinstance(shape, list | tuple) and len(shape) == 1):
            raise LeRobotError(f"{where}.shape is {shape!r}; a joint vector has shape [n]")
        if str(ft.get("dtype")) not in ("float32", "float64", "float16"):
            raise LeRobotError(f"{where}.dtype is {ft.get('dtype')!r}; expected float32 or float64")
        names = _names(ft.get("names"))
        if names is None:
            raise LeRobotError(
                f"{where}.names is {ft.get('names')!r}: joint names are needed to map the columns onto the "
                f"robot profile {self.profile.name!r}"
            )
        if len(names) != shape[0]:
            raise LeRobotError(f"{where}: {len(names)} names for shape {list(shape)}")
        if len(set(names)) != len(names):
            raise LeRobotError(f"{where}.names has duplicates: {names}")
        joints = self.profile.joint_names
        reader = JointReader(self.profile, joints)
        used = set()
        for joint in joints:
            used.update([joint] if joint in names else reader.rules.get(joint, ([joint], 1.0, 0.0))[0])
        missing = [
            n for n in joints if n not in names and not set(reader.rules.get(n, ([n],))[0]) <= set(names)
        ]
        if missing:
            raise LeRobotError(
                f"{where}.names lack joints {missing} of robot profile {self.profile.name!r} (nor do they hold what "
                f"its joint_mapping reads them from); the dataset's names are {names} (choose the profile with "
                "--robot)"
            )
        unknown = [n for n in names if n not in used]
        if unknown and not self.cfg.drop_unmapped:
            raise LeRobotError(
                f"{where}.names {unknown} are no joints of robot profile {self.profile.name!r} {joints}; pass "
                "--drop-unmapped to import without them"
            )
        return _JointMap(reader, names, key), unknown

    def _camera(self, name: str | None) -> str:
        features = self.info["features"]
        cams = [
            k for k, ft in features.items() if isinstance(ft, dict) and ft.get("dtype") in ("video", "image")
        ]
        if name is not None:
            key = name if name in features else IMAGES + name
            if key not in cams:
                raise LeRobotError(
                    f"{self.root / INFO_PATH}: no camera feature {name!r} (video/image features: {cams})"
                )
            return key
        if len(cams) == 1:
            return cams[0]
        preferred = IMAGES + str(self.profile.camera.get("name", ""))
        if preferred in cams:
            return preferred
        raise LeRobotError(
            f"{self.root / INFO_PATH}: {'no' if not cams else len(cams)} camera features {cams}; "
            "choose one with --camera"
        )

    def _read_parquet(self, path: Path, columns: list[str] | None = None) -> pa.Table:
        if not path.is_file():
            raise LeRobotError(f"{path}: missing")
        try:
            if columns is not None:
                have = pq.read_schema(path).names
                absent = [c for c in columns if c not in have]
                if absent:
                    raise LeRobotError(f"{path}: columns {absent} are missing (it has {have})")
            return pq.read_table(path, columns=columns)
        except (pa.ArrowException, OSError) as exc:
            raise LeRobotError(f"{path}: not a readable parquet file: {exc}") from exc

    def _tasks(self) -> dict[int, str]:
        path = self.root / TASKS_PATH
        if not path.is_file() and (self.root / "meta" / "tasks.jsonl").is_file():
            raise LeRobotError(f"{path}: missing, but meta/tasks.jsonl exists: a v2.x layout")
        table = self._read_parquet(path)
        names = table.column_names
        text = next((c for c in ("task", "__index_level_0__") if c in names), None)
        if "task_index" not in names or text is None:
            raise LeRobotError(
                f"{path}: needs columns task_index and task (the pandas index); it has {names}"
            )
        return dict(zip(table["task_index"].to_pylist(), table[text].to_pylist(), strict=True))

    def _episodes(self) -> list[dict]:
        files = sorted((self.root / "meta" / "episodes").glob("*/*.parquet"))
        if not files:
            where = self.root / "meta" / "episodes"
            if (self.root / "meta" / "episodes.jsonl").is_file():
                raise LeRobotError(
                    f"{where}: no parquet files, but meta/episodes.jsonl exists: a v2.x layout"
                )
            raise LeRobotError(f"{where}: no chunk-*/file-*.parquet files")
        need = ["episode_index", "length", "data/chunk_index", "data/file_index"]
        for cam in (self.camera, self.wrist):
            if cam and self.info["features"][cam]["dtype"] == "video":
                need += [
                    f"videos/{cam}/{k}"
                    for k in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")
                ]
        rows = []
        for path in files:
            schema = self._read_parquet_schema(path)
            wanted = [c for c in schema if not c.startswith("stats/")]
            absent = [c for c in need if c not in wanted]
            if absent:
                raise LeRobotError(f"{path}: columns {absent} are missing")
            rows += self._read_parquet(path, wanted).to_pylist()
        for r in rows:
            null = [c for c in need if r[c] is None]
            if null:
                raise LeRobotError(
                    f"{self.root / 'meta' / 'episodes'}: episode {r['episode_index']} has no value in {null}"
                )
        rows.sort(key=lambda r: r["episode_index"])
        seen = [r["episode_index"] for r in rows]
        if len(set(seen)) != len(seen):
            raise LeRobotError(f"{self.root / 'meta' / 'episodes'}: episode_index values repeat")
        total = self.info.get("total_episodes")
        if total is not None and total != len(rows):
            raise LeRobotError(
                f"{self.root / INFO_PATH}: total_episodes is {total}, meta/episodes lists {len(rows)} episodes"
            )
        return rows

    def _read_parquet_schema(self, path: Path) -> list[str]:
        try:
            return pq.read_schema(path).names
        except (pa.ArrowException, OSError) as exc:
            raise LeRobotError(f"{path}: not a readable parquet file: {exc}") from exc

    def _success_source(self) -> str:
        if self.cfg.success is not None:
            return "config"
        if self.episodes and all("success" in r and r["success"] is not None for r in self.episodes):
            return "episodes"
        if "next.success" in self.info["features"]:
            return "next.success"
        raise LeRobotError(
            f"{self.root}: the dataset does not say whether its episodes succeeded (no 'success' column in "
            "meta/episodes, no 'next.success' feature); pass --success or --failure"
        )

    # ---- data ----------------------------------------------------------------------------------------------------
    def _path(self, template: str, **fields) -> Path:
        """A file named by info.json's data_path / video_path template."""
        pattern = self.info.get(template)
        if not isinstance(pattern, str):
            raise LeRobotError(f"{self.root / INFO_PATH}: field {template!r} is missing")
        try:
            return self.root / pattern.format(**fields)
        except (KeyError, IndexError, ValueError) as exc:
            raise LeRobotError(
                f"{self.root / INFO_PATH}: {template} {pattern!r} has a field other than {sorted(fields)}: {exc}"
            ) from exc

    def _data_table(self, row: dict) -> tuple[Path, pa.Table]:
        path = self._path("data_path", chunk_index=row["data/chunk_index"], file_index=row["data/file_index"])
        if self._data is None or self._data[0] != path:
            cols = [self.cfg.state_key, self.cfg.action_key, "timestamp", "episode_index", "task_index"]
            cols += [self.velocity] if self.velocity else []
            cols += ["next.success"] if self.success_from == "next.success" else []
            cols += [
                c for c in (self.camera, self.wrist) if c and self.info["features"][c]["dtype"] == "image"
            ]
            self._data = (path, self._read_parquet(path, cols))
        return self._data

    @staticmethod
    def _matrix(table: pa.Table, key: str, rows: np.ndarray, path: Path) -> np.ndarray:
        col = table[key].take(pa.array(rows)).combine_chunks()
        try:
            if pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type):
                width = len(col[0]) if len(col) else 0
                flat = col.flatten().to_numpy(zero_copy_only=False)
                if flat.size != width * len(col):
                    raise LeRobotError(f"{path}: column {key!r} has rows of different lengths")
                return flat.reshape(len(col), width).astype(np.float32)
            return col.to_numpy(zero_copy_only=False).astype(np.float32)[:, None]
        except (pa.ArrowException, TypeError, ValueError) as exc:
            if isinstance(exc, LeRobotError):
                raise
            raise LeRobotError(f"{path}: column {key!r} is not a numeric vector: {exc}") from exc

    def _frames(self, cam: str, row: dict, ts: np.ndarray, table: pa.Table, rows: np.ndarray, path: Path):
        size = (self.cfg.image_size, self.cfg.image_size) if self.cfg.image_size else None
        e = row["episode_index"]
        if self.info["features"][cam]["dtype"] == "image":
            out = []
            for i, cell in enumerate(table[cam].take(pa.array(rows)).to_pylist()):
                data = cell.get("bytes") if isinstance(cell, dict) else None
                if not data:
                    raise LeRobotError(f"{path}: episode {e} row {i}: image {cam!r} holds no embedded bytes")
                try:
                    img = Image.open(io.BytesIO(data)).convert("RGB")
                except OSError as exc:
                    raise LeRobotError(
                        f"{path}: episode {e} row {i}: image {cam!r} does not decode: {exc}"
                    ) from exc
                out.append(np.asarray(img.resize(size, Image.Resampling.BOX) if size else img))
            return np.stack(out)
        video = self._path(
            "video_path",
            video_key=cam,
            chunk_index=row[f"videos/{cam}/chunk_index"],
            file_index=row[f"videos/{cam}/file_index"],
        )
        reader = self._videos.get(video)
        try:
            if reader is None:
                reader = self._videos[video] = VideoReader(video, size)
            want = float(row[f"videos/{cam}/from_timestamp"]) + ts  # LeRobot: from_timestamp + data timestamp
            tol = self.cfg.tolerance_s
            times, frames = reader.read(want[0] - tol, want[-1] + tol)
        except VideoError as exc:
            raise LeRobotError(f"episode {e}, {cam}: {exc}") from exc
        if len(times) == 0:
            raise LeRobotError(
                f"{video}: episode {e} needs frames at {want[0]:.4f}..{want[-1]:.4f} s (videos/{cam}/from_timestamp "
                f"+ timestamp) but the video has none there (last frame at {reader.last_time} s)"
            )
        j = (
            np.clip(np.searchsorted(times, want), 1, len(times) - 1)
            if len(times) > 1
            else np.zeros_like(want, int)
        )
        if len(times) > 1:
            j = np.where(np.abs(times[j - 1] - want) <= np.abs(times[j] - want), j - 1, j)
        gap = np.abs(times[j] - want)
        if np.any(gap > tol):
            i = int(np.argmax(gap > tol))
            shorter = want[i] > times[-1]
            raise LeRobotError(
                f"{video}: episode {e} frame {i} is at {want[i]:.4f} s (videos/{cam}/from_timestamp + timestamp) "
                + (
                    f"but the video ends at {times[-1]:.4f} s: the video is shorter than the data"
                    if shorter
                    else f"and the nearest frame is {gap[i]:.4g} s away (tolerance {tol:g} s)"
                )
            )
        return frames[j]

    def _episode(self, row: dict) -> Episode | str:
        """The episode, or the reason it cannot be one."""
        e, cfg = int(row["episode_index"]), self.cfg
        path, table = self._data_table(row)
        rows = np.flatnonzero(table["episode_index"].to_numpy() == e)
        if len(rows) != row["length"]:
            raise LeRobotError(
                f"{path}: {len(rows)} rows have episode_index {e}, meta/episodes says length {row['length']}"
            )
        if len(rows) < 2:
            return f"{len(rows)} frame(s): an episode needs at least 2"
        ts = table["timestamp"].take(pa.array(rows)).to_numpy().astype(np.float64)
        if np.any(np.diff(ts) <= 0):
            raise LeRobotError(f"{path}: episode {e}: timestamp is not strictly increasing")
        tasks = np.unique(table["task_index"].take(pa.array(rows)).to_numpy())
        if len(tasks) > 1:
            return f"task_index changes within the episode ({tasks.tolist()}); an episode has one instruction"
        if int(tasks[0]) not in self.tasks:
            raise LeRobotError(
                f"{path}: episode {e}: task_index {int(tasks[0])} is not in {self.root / TASKS_PATH}"
            )
        arrays = {}
        for array, key in (
            ("joint_pos", cfg.state_key),
            ("actions", cfg.action_key),
            ("joint_vel", self.velocity),
        ):
            if key:
                matrix = self._matrix(table, key, rows, path)
                try:
                    arrays[array] = self.maps[array](matrix, rate=array == "joint_vel")
                except ValueError as exc:
                    raise LeRobotError(f"{path}: episode {e}: {key}: {exc}") from exc
        if "joint_vel" not in arrays:
            arrays["joint_vel"] = np.gradient(arrays["joint_pos"], ts, axis=0).astype(np.float32)
        if self.success_from == "config":
            success = bool(cfg.success)
        elif self.success_from == "episodes":
            success = bool(row["success"])
        else:
            success = bool(np.any(table["next.success"].take(pa.array(rows)).to_numpy(zero_copy_only=False)))
        frames = self._frames(self.camera, row, ts, table, rows, path)
        extra = {"wrist_frames": self._frames(self.wrist, row, ts, table, rows, path)} if self.wrist else {}
        h, w = frames.shape[1:3]
        meta = {
            "task": cfg.task or self.root.resolve().name,
            "instruction": str(self.tasks[int(tasks[0])]),
            "success": success,
            "robot": self.profile.to_dict(),
            "control_hz": self.fps,
            "camera": {
                "name": self.camera.removeprefix(IMAGES),
                "width": int(w),
                "height": int(h),
                "encoding": "rgb8",
            },
            "producer": PRODUCER,
            "source": {
                "format": "lerobot",
                "codebase_version": self.info["codebase_version"],
                "dataset": str(self.root.resolve()),
                "robot_type": self.info.get("robot_type"),
                "episode_index": e,
                "camera": self.camera,
                "wrist_camera": self.wrist,
                "state": cfg.state_key,
                "action": cfg.action_key,
                "joint_vel": self.velocity or f"finite difference of {cfg.state_key} over timestamp",
                "success": self.success_from,
            },
        }
        try:
            return Episode(frames=frames, timestamps=ts - ts[0], meta=meta, extra=extra, **arrays)
        except EpisodeError as exc:
            raise LeRobotError(f"{path}: episode {e}: {exc}") from exc

    def write(self, out: Path) -> dict:
        written, frames, skipped = 0, 0, []
        for row in self.episodes:
            ep = self._episode(row)
            if isinstance(ep, str):
                skipped.append({"episode_index": int(row["episode_index"]), "reason": ep})
                continue
            write_episode(episode_path(out, int(row["episode_index"])), ep)
            written, frames = written + 1, frames + len(ep)
        if not written:
            raise LeRobotError(f"{self.root}: no episode could be imported: {skipped}")
        return {
            "dataset": str(self.root),
            "codebase_version": self.info["codebase_version"],
            "fps": self.fps,
            "robot": self.profile.name,
            "camera": self.camera,
            "wrist_camera": self.wrist,
            "episodes": written,
            "frames": frames,
            "skipped": skipped,
            "dropped_names": self.dropped,
            "joint_vel": self.velocity or "finite difference",
            "success": self.success_from,
        }

    def close(self) -> None:
        for reader in self._videos.values():
            reader.close()
        self._videos.clear()
