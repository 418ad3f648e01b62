"""Export episodes to a LeRobot dataset (format v3.0), so the same demos train LeRobot policies too.

    wam data export-lerobot data/teleop --out data/teleop_lerobot [--robot-type panda] [--vcodec h264]
    info = export_lerobot(list_episodes("data/teleop"), "data/teleop_lerobot", ExportConfig())

Features written (layout: wam_ros/data/lerobot/layout.py; docs/lerobot.md):

    observation.state       float32 (J,)  joint_pos, `names` = the robot profile's joint names
    observation.velocity    float32 (J,)  joint_vel, same names
    action                  float32 (J,)  actions (absolute joint position targets), same names
    observation.images.<camera>   video   frames (camera = meta.camera.name, or ExportConfig.camera)
    observation.images.wrist      video   wrist_frames, when every episode has them
    timestamp, frame_index, episode_index, index, task_index     LeRobot's default columns

The task string of an episode is its instruction; its `success` goes into an extra `success` column of
meta/episodes (LeRobot keeps unknown episode columns). Videos are encoded with PyAV as LeRobot encodes them (AV1 via
libsvtav1, g=2, crf=30 by default; H.264 as an option: wam_ros/data/video.py). All episodes must share fps (meta
control_hz), frame size and joint names, and sit on LeRobot's clock: step i at i/fps. Written into a hidden temporary
directory beside `out_dir` and renamed into place, so a failure never leaves half a dataset. Never imports rclpy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from wam_ros.data.episode import Episode, read_episode
from wam_ros.data.lerobot.layout import (
    ACTION,
    CHUNKS_SIZE,
    CODEBASE_VERSION,
    DATA_FILE_MB,
    DATA_PATH,
    EPISODES_PATH,
    IMAGES,
    INDEX_COLUMNS,
    INFO_PATH,
    QUANTILES,
    STATE,
    STATS_PATH,
    STD_FLOOR,
    TASKS_PATH,
    VELOCITY,
    VIDEO_FILE_MB,
    VIDEO_PATH,
    feature_stats,
    next_file,
    tasks_table,
)
from wam_ros.data.video import VideoEncoderConfig, VideoWriter, probe
from wam_ros.fileio import atomic_dir

MB = 1024 * 1024


@dataclass(frozen=True)
class ExportConfig:
    """How episodes become a LeRobot dataset.

    Args:
        robot_type: info.json robot_type; None: the robot profile's name.
        camera: camera key suffix, observation.images.<camera>; None: meta.camera.name of the first episode.
        video: encoder settings (LeRobot's defaults: libsvtav1, crf 30, g 2).
        overwrite: replace a non-empty out_dir.
        chunks_size, data_file_mb, video_file_mb: LeRobot's storage settings; a data or video file is closed and the
            next one started once it has grown past its limit (checked between episodes; a video counts the bytes its
            encoder has handed out, and an encoder holds a few frames back, so a file may pass its limit by that).
        clock_tolerance_s: how far an episode's timestamps may sit from LeRobot's uniform clock i/fps.
    """

    robot_type: str | None = None
    camera: str | None = None
    video: VideoEncoderConfig = field(default_factory=VideoEncoderConfig)
    overwrite: bool = False
    chunks_size: int = CHUNKS_SIZE
    data_file_mb: float = DATA_FILE_MB
    video_file_mb: float = VIDEO_FILE_MB
    clock_tolerance_s: float = 1e-4  # LeRobotDataset's tolerance_s

    def __post_init__(self) -> None:
        for name in ("chunks_size", "data_file_mb", "video_file_mb", "clock_tolerance_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.camera is not None and (not self.camera or "/" in self.camera or "." in self.camera):
            raise ValueError(
                f"camera must be a plain name (observation.images.<camera>), got {self.camera!r}"
            )


def _load(ep: str | Path | Episode) -> Episode:
    return ep if isinstance(ep, Episode) else read_episode(ep)


def export_lerobot(
    episodes: Sequence[str | Path | Episode], out_dir: str | Path, cfg: ExportConfig | None = None
) -> dict:
    """Write a LeRobot v3.0 dataset of `episodes` (paths are read one at a time) to out_dir. Returns info.json."""
    cfg, out_dir = cfg or ExportConfig(), Path(out_dir)
    if not episodes:
        raise ValueError("export_lerobot needs at least one episode")
    if out_dir.exists() and any(out_dir.iterdir()) and not cfg.overwrite:
        raise FileExistsError(
            f"{out_dir} exists and is not empty; pass overwrite=True (--overwrite) to replace it"
        )
    with atomic_dir(out_dir) as tmp:
        info = _Writer(tmp, cfg).write(episodes)
    return info


class _Histogram:
    """Per-channel counts of uint8 pixel values: exact image statistics without keeping the frames."""

    def __init__(self) -> None:
        self.counts, self.frames = np.zeros((3, 256), np.int64), 0

    def add(self, frames: np.ndarray) -> None:
        for c in range(3):
            self.counts[c] += np.bincount(frames[..., c].ravel(), minlength=256)
        self.frames += len(frames)

    def __iadd__(self, other: _Histogram) -> _Histogram:
        self.counts += other.counts
        self.frames += other.frames
        return self

    def stats(self, std_floor: float = 0.0) -> dict[str, list]:
        """LeRobot's image stats: per channel in [0, 1], each shaped (3, 1, 1); count = frames."""
        v = np.arange(256) / 255.0
        n = self.counts.sum(1)
        mean = (self.counts * v).sum(1) / n
        std = np.sqrt(np.maximum((self.counts * v**2).sum(1) / n - mean**2, 0.0))
        cdf = np.cumsum(self.counts, 1) / n[:, None]
        present = self.counts > 0
        out = {
            "min": v[present.argmax(1)],
            "max": v[255 - present[:, ::-1].argmax(1)],
            "mean": mean,
            "std": np.maximum(std, std_floor),
            **{f"q{round(q * 100):02d}": v[(cdf >= q).argmax(1)] for q in QUANTILES},
        }
        res = {k: val.reshape(3, 1, 1).tolist() for k, val in out.items()}
        res["count"] = [self.frames]
        return res


class _Writer:
    def __init__(self, root: Path, cfg: ExportConfig) -> None:
        self.root, self.cfg = root, cfg
        self.tasks: list[str] = []
        self.ep_rows: list[dict] = []
        self.columns: dict[str, list[np.ndarray]] = {k: [] for k in (STATE, VELOCITY, ACTION, "timestamp")}
        self.columns.update({k: [] for k in INDEX_COLUMNS})
        self.hist: dict[str, _Histogram] = {}
        self.data_writer: pq.ParquetWriter | None = None
        self.data_loc = (0, 0)
        self.videos: dict[str, VideoWriter] = {}
        self.video_loc: dict[str, tuple[int, int]] = {}

    def write(self, episodes: Sequence[str | Path | Episode]) -> dict:
        index = 0
        try:
            for e, item in enumerate(episodes):
                ep = _load(item)
                if e == 0:
                    self._setup(ep)
                self._check(e, ep)
                self._episode(e, ep, index)
                index += len(ep)
        finally:
            if self.data_writer is not None:
                self.data_writer.close()
            for w in self.videos.values():
                w.close()
        return self._finish(index)

    def _setup(self, ep: Episode) -> None:
        cfg, meta = self.cfg, ep.meta
        self.fps = float(meta["control_hz"])
        self.names = [str(n) for n in meta["robot"]["joint_names"]]
        self.shape = ep.frames.shape[1:]
        self.robot_type = cfg.robot_type or str(meta["robot"].get("name", "unknown"))
        cam = cfg.camera or str((meta.get("camera") or {}).get("name") or "front").strip("/").replace(
            "/", "_"
        )
        self.cameras = {IMAGES + cam.replace(".", "_"): "frames"}
        if "wrist_frames" in ep.extra:
            if IMAGES + "wrist" in self.cameras:
                raise ValueError("the main camera is named 'wrist': pass another camera name (--camera)")
            self.cameras[IMAGES + "wrist"] = "wrist_frames"
        j = len(self.names)
        vec = pa.list_(pa.float32(), j)
        self.schema = pa.schema(
            [(STATE, vec), (VELOCITY, vec), (ACTION, vec), ("timestamp", pa.float32())]
            + [(k, pa.int64()) for k in INDEX_COLUMNS]
        )
        self.hist = {k: _Histogram() for k in self.cameras}

    def _check(self, e: int, ep: Episode) -> None:
        if float(ep.meta["control_hz"]) != self.fps:
            raise ValueError(
                f"episode {e}: control_hz {ep.meta['control_hz']} differs from {self.fps}; "
                "a LeRobot dataset has one fps"
            )
        if ep.frames.shape[1:] != self.shape:
            raise ValueError(f"episode {e}: frame shape {ep.frames.shape[1:]} differs from {self.shape}")
        if [str(n) for n in ep.meta["robot"]["joint_names"]] != self.names:
            raise ValueError(f"episode {e}: joint names differ from episode 0's {self.names}")
        for key, array in self.cameras.items():
            if array != "frames" and (array not in ep.extra or ep.extra[array].shape[1:] != self.shape):
                raise ValueError(
                    f"episode {e}: {array} missing or not shaped {self.shape}, but episode 0 has it ({key})"
                )
        clock = np.arange(len(ep)) / self.fps
        drift = float(np.max(np.abs(ep.timestamps - ep.timestamps[0] - clock)))
        if drift > self.cfg.clock_tolerance_s:
            raise ValueError(
                f"episode {e}: timestamps are {drift:.4g} s off the uniform clock i/{self.fps:g} (tolerance "
                f"{self.cfg.clock_tolerance_s:g} s); LeRobot shows frame i at i/fps, so it cannot hold this episode"
            )

    def _episode(self, e: int, ep: Episode, index: int) -> None:
        t, cfg = len(ep), self.cfg
        if ep.instruction not in self.tasks:
            self.tasks.append(ep.instruction)
        task = self.tasks.index(ep.instruction)
        cols = {
            STATE: ep.joint_pos.astype(np.float32),
            VELOCITY: ep.joint_vel.astype(np.float32),
            ACTION: ep.actions.astype(np.float32),
            "timestamp": (np.arange(t) / self.fps).astype(np.float32),
            "frame_index": np.arange(t, dtype=np.int64),
            "episode_index": np.full(t, e, np.int64),
            "index": np.arange(index, index + t, dtype=np.int64),
            "task_index": np.full(t, task, np.int64),
        }
        for k, v in cols.items():
            self.columns[k].append(v)

        # data: one row group per episode; a new file once this one has passed data_file_mb
        path = self.root / DATA_PATH.format(chunk_index=self.data_loc[0], file_index=self.data_loc[1])
        if self.data_writer is not None and path.stat().st_size >= cfg.data_file_mb * MB:
            self.data_writer.close()
            self.data_writer, self.data_loc = None, next_file(*self.data_loc, cfg.chunks_size)
            path = self.root / DATA_PATH.format(chunk_index=self.data_loc[0], file_index=self.data_loc[1])
        if self.data_writer is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.data_writer = pq.ParquetWriter(path, self.schema, compression="snappy")
        self.data_writer.write_table(self._table(cols))

        row = {
            "episode_index": e,
            "tasks": [ep.instruction],
            "length": t,
            "data/chunk_index": self.data_loc[0],
            "data/file_index": self.data_loc[1],
            "dataset_from_index": index,
            "dataset_to_index": index + t,
        }
        ep_stats = {k: feature_stats(v[:, None] if v.ndim == 1 else v) for k, v in cols.items()}
        for key, array in self.cameras.items():
            frames = ep.frames if array == "frames" else ep.extra[array]
            row.update(self._video(key, frames))
            hist = _Histogram()
            hist.add(frames)
            self.hist[key] += hist
            ep_stats[key] = hist.stats()
        row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0, "success": ep.success})
        row.update({f"stats/{k}/{s}": v for k, st in ep_stats.items() for s, v in st.items()})
        self.ep_rows.append(row)

    def _table(self, cols: dict[str, np.ndarray]) -> pa.Table:
        arrays = []
        for f in self.schema:
            v = cols[f.name]
            if v.ndim == 2:
                arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), v.shape[1]))
            else:
                arrays.append(pa.array(v, f.type))
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def _video(self, key: str, frames: np.ndarray) -> dict:
        """Append an episode's frames to the camera's current file; a new file once it has passed video_file_mb."""
        cfg, writer = self.cfg, self.videos.get(key)
        if writer is not None and writer.bytes_written >= cfg.video_file_mb * MB:
            writer.close()
            writer = None
            self.video_loc[key] = next_file(*self.video_loc[key], cfg.chunks_size)
        if writer is None:
            chunk, file = self.video_loc.setdefault(key, (0, 0))
            path = self.root / VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
            writer = self.videos[key] = VideoWriter(path, self.fps, self.shape[1], self.shape[0], cfg.video)
        start = writer.frames_written
        writer.write(frames)
        chunk, file = self.video_loc[key]
        return {
            f"videos/{key}/chunk_index": chunk,
            f"videos/{key}/file_index": file,
            f"videos/{key}/from_timestamp": start / self.fps,
            f"videos/{key}/to_timestamp": (start + len(frames)) / self.fps,
        }

    def _finish(self, total: int) -> dict:
        root = self.root
        episodes_file = root / EPISODES_PATH.format(chunk_index=0, file_index=0)
        episodes_file.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(self.ep_rows), episodes_file)
        pq.write_table(tasks_table(self.tasks), root / TASKS_PATH)

        all_cols = {k: np.concatenate(v) for k, v in self.columns.items()}
        stats = {
            k: feature_stats(v[:, None] if v.ndim == 1 else v, std_floor=STD_FLOOR)
            for k, v in all_cols.items()
        }
        stats.update({k: h.stats(std_floor=STD_FLOOR) for k, h in self.hist.items()})
        (root / STATS_PATH).write_text(json.dumps(stats, indent=4))

        h, w, _ = self.shape
        vec = {"dtype": "float32", "shape": [len(self.names)], "names": self.names}
        features: dict[str, dict] = {}
        for key in self.cameras:
            stream = probe(root / VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0))
            stream.pop("frames")
            stream.pop("duration_s")
            features[key] = {
                "dtype": "video",
                "shape": [h, w, 3],
                "names": ["height", "width", "channels"],
                "info": {**stream, **self.cfg.video.info(), "is_depth_map": False},
            }
        features.update({STATE: dict(vec), VELOCITY: dict(vec), ACTION: dict(vec)})
        features["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
        features.update({k: {"dtype": "int64", "shape": [1], "names": None} for k in INDEX_COLUMNS})
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": len(self.ep_rows),
            "total_frames": total,
            "total_tasks": len(self.tasks),
            "chunks_size": self.cfg.chunks_size,
            "data_files_size_in_mb": self.cfg.data_file_mb,
            "video_files_size_in_mb": self.cfg.video_file_mb,
            "fps": int(self.fps) if self.fps.is_integer() else self.fps,
            "splits": {"train": f"0:{len(self.ep_rows)}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH,
            "features": features,
        }
        (root / INFO_PATH).write_text(json.dumps(info, indent=4))
        return info
