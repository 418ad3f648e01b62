"""Export episodes to a LeRobot dataset (format v3.0), so the same demos train LeRobot policies too.

    wam data export-lerobot data/teleop --out data/teleop_lerobot --robot-type panda
    info = export_lerobot(list_episodes("data/teleop"), "data/teleop_lerobot")

Layout written (LeRobotDataset v3.0: many episodes per file, episode boundaries in meta/episodes):

    meta/info.json                              codebase_version "v3.0", fps, robot_type, features, path templates
    meta/stats.json                             min/max/mean/std/count per feature (images: per channel, in [0, 1])
    meta/tasks.parquet                          task (index) -> task_index
    meta/episodes/chunk-000/file-000.parquet    one row per episode: length, tasks, data/video locations
    data/chunk-000/file-000.parquet             one row per frame: observation.state, action, timestamp,
                                                frame_index, episode_index, index, task_index
    videos/observation.images.<cam>/chunk-000/file-000.mp4   every episode's frames, concatenated (mp4v, OpenCV)

The task string of an episode is its instruction. All episodes must share fps (meta control_hz), frame size and
joint names. Written into a temporary directory and renamed into place, so a failure never leaves half a dataset.
Core module: never imports rclpy.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from wam_ros.data.episode import Episode, read_episode

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
VIDEO_CODEC = ("mp4v", "mpeg4")  # (OpenCV fourcc, ffmpeg codec name) — h264 encoders are absent from opencv wheels


def _load(ep: str | Path | Episode) -> Episode:
    return ep if isinstance(ep, Episode) else read_episode(ep)


def _stats(x: np.ndarray, axis) -> dict:
    return {"min": np.min(x, axis=axis).tolist(), "max": np.max(x, axis=axis).tolist(),
            "mean": np.mean(x, axis=axis).tolist(), "std": np.std(x, axis=axis).tolist(), "count": [int(x.shape[0])]}


def _tasks_table(tasks: list[str]) -> pa.Table:
    """tasks.parquet as pandas writes it: the task string is the index (LeRobot reads it with pd.read_parquet)."""
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())})
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                     "numpy_type": "int64", "metadata": None},
                    {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object",
                     "metadata": None}],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


def export_lerobot(episodes: Sequence[str | Path | Episode], out_dir: str | Path, robot_type: str | None = None,
                   camera: str | None = None, overwrite: bool = False) -> dict:
    """Write a LeRobot v3.0 dataset of `episodes` to out_dir. Returns the info.json dict."""
    out_dir = Path(out_dir)
    if not episodes:
        raise ValueError("export_lerobot needs at least one episode")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir} exists and is not empty; pass overwrite=True (--overwrite) to replace it")
    eps = [_load(e) for e in episodes]
    first = eps[0]
    fps = float(first.meta["control_hz"])
    names = list(first.meta["robot"]["joint_names"])
    shape = first.frames.shape[1:]
    for i, ep in enumerate(eps):
        if float(ep.meta["control_hz"]) != fps:
            raise ValueError(f"episode {i}: control_hz {ep.meta['control_hz']} differs from {fps}; "
                             "a LeRobot dataset has one fps")
        if ep.frames.shape[1:] != shape:
            raise ValueError(f"episode {i}: frame shape {ep.frames.shape[1:]} differs from {shape}")
        if list(ep.meta["robot"]["joint_names"]) != names:
            raise ValueError(f"episode {i}: joint names differ from episode 0's {names}")
    robot_type = robot_type or str(first.meta["robot"].get("name", "unknown"))
    cam = camera or str((first.meta.get("camera") or {}).get("name") or "front").strip("/").replace("/", "_")
    video_key = f"observation.images.{cam}"
    h, w, _ = shape

    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write(eps, tmp, fps, names, video_key, h, w, robot_type)
        info = json.loads((tmp / "meta" / "info.json").read_text())
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info


def _write(eps: list[Episode], root: Path, fps: float, names: list[str], video_key: str, h: int, w: int,
           robot_type: str) -> None:
    tasks: list[str] = []
    for ep in eps:
        if ep.instruction not in tasks:
            tasks.append(ep.instruction)
    data_file = root / DATA_PATH.format(chunk_index=0, file_index=0)
    video_file = root / VIDEO_PATH.format(video_key=video_key, chunk_index=0, file_index=0)
    for p in (data_file, video_file, root / EPISODES_PATH):
        p.parent.mkdir(parents=True, exist_ok=True)

    writer = cv2.VideoWriter(str(video_file), cv2.VideoWriter_fourcc(*VIDEO_CODEC[0]), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {VIDEO_CODEC[0]} video to {video_file}")
    cols: dict[str, list] = {k: [] for k in ("observation.state", "action", "timestamp", "frame_index",
                                              "episode_index", "index", "task_index")}
    ep_rows: dict[str, list] = {k: [] for k in (
        "episode_index", "tasks", "length", "success", "data/chunk_index", "data/file_index", "dataset_from_index",
        "dataset_to_index", f"videos/{video_key}/chunk_index", f"videos/{video_key}/file_index",
        f"videos/{video_key}/from_timestamp", f"videos/{video_key}/to_timestamp", "meta/episodes/chunk_index",
        "meta/episodes/file_index")}
    index = 0
    try:
        for e, ep in enumerate(eps):
            t = len(ep)
            for frame in ep.frames:
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            cols["observation.state"] += ep.joint_pos.astype(np.float32).tolist()
            cols["action"] += ep.actions.astype(np.float32).tolist()
            cols["timestamp"] += (np.arange(t) / fps).astype(np.float32).tolist()  # LeRobot expects a uniform clock
            cols["frame_index"] += list(range(t))
            cols["episode_index"] += [e] * t
            cols["index"] += list(range(index, index + t))
            cols["task_index"] += [tasks.index(ep.instruction)] * t
            row = {"episode_index": e, "tasks": [ep.instruction], "length": t, "success": ep.success,
                   "data/chunk_index": 0, "data/file_index": 0, "dataset_from_index": index,
                   "dataset_to_index": index + t, f"videos/{video_key}/chunk_index": 0,
                   f"videos/{video_key}/file_index": 0, f"videos/{video_key}/from_timestamp": index / fps,
                   f"videos/{video_key}/to_timestamp": (index + t) / fps, "meta/episodes/chunk_index": 0,
                   "meta/episodes/file_index": 0}
            for k, v in row.items():
                ep_rows[k].append(v)
            index += t
    finally:
        writer.release()

    j = len(names)
    vec = pa.list_(pa.float32(), j)
    pq.write_table(pa.table({
        "observation.state": pa.array(cols["observation.state"], vec),
        "action": pa.array(cols["action"], vec),
        "timestamp": pa.array(cols["timestamp"], pa.float32()),
        **{k: pa.array(cols[k], pa.int64()) for k in ("frame_index", "episode_index", "index", "task_index")},
    }), data_file)
    ep_types = {"tasks": pa.list_(pa.string()), "success": pa.bool_()}
    ep_types.update({f"videos/{video_key}/from_timestamp": pa.float64(), f"videos/{video_key}/to_timestamp": pa.float64()})
    pq.write_table(pa.table({k: pa.array(v, ep_types.get(k, pa.int64())) for k, v in ep_rows.items()}),
                   root / EPISODES_PATH)
    pq.write_table(_tasks_table(tasks), root / "meta" / "tasks.parquet")

    state = np.concatenate([ep.joint_pos for ep in eps]).astype(np.float64)
    action = np.concatenate([ep.actions for ep in eps]).astype(np.float64)
    pix = np.concatenate([ep.frames[:: max(1, len(ep) // 20)] for ep in eps]).astype(np.float64) / 255.0
    img = _stats(pix.transpose(0, 3, 1, 2).reshape(pix.shape[0], 3, -1), axis=(0, 2))
    img = {k: (np.asarray(v).reshape(3, 1, 1).tolist() if k != "count" else v) for k, v in img.items()}
    scalar = {k: _stats(np.asarray(cols[k], np.float64)[:, None], axis=0)
              for k in ("timestamp", "frame_index", "episode_index", "index", "task_index")}
    stats = {"observation.state": _stats(state, 0), "action": _stats(action, 0), video_key: img, **scalar}
    (root / "meta" / "stats.json").write_text(json.dumps(stats, indent=2))

    features = {
        video_key: {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
                    "info": {"video.height": h, "video.width": w, "video.codec": VIDEO_CODEC[1],
                             "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": fps,
                             "video.channels": 3, "has_audio": False}},
        "observation.state": {"dtype": "float32", "shape": [j], "names": names},
        "action": {"dtype": "float32", "shape": [j], "names": names},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        **{k: {"dtype": "int64", "shape": [1], "names": None}
           for k in ("frame_index", "episode_index", "index", "task_index")},
    }
    info = {
        "codebase_version": CODEBASE_VERSION, "robot_type": robot_type, "total_episodes": len(eps),
        "total_frames": index, "total_tasks": len(tasks), "chunks_size": 1000, "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 200, "fps": int(fps) if float(fps).is_integer() else fps,
        "splits": {"train": f"0:{len(eps)}"}, "data_path": DATA_PATH, "video_path": VIDEO_PATH,
        "features": features,
    }
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
