"""A LeRobot v3.0 dataset written the way LeRobot writes one, without our exporter (pyarrow + PyAV only).

Follows huggingface/lerobot src/lerobot/datasets: dataset_writer.py (each episode's video encoded on its own, then
appended to the camera's current file with `concatenate_video_files`: the ffconcat demuxer + remux, no re-encode;
`videos/<key>/from_timestamp` = the file's duration so far, `to_timestamp` = that + the episode video's duration from
`get_video_duration_in_s`), dataset_metadata.py (episodes rows, tasks as a pandas DataFrame indexed by task),
configs/video.py (libsvtav1, yuv420p, g=2, crf=30, preset 12). Nothing here imports wam_ros.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only (its banner and notices go to stderr otherwise)
FPS = 15
# joint order of the dataset: not the panda profile's; a real Panda's two finger joints instead of the profile's
# gripper width (its joint_mapping sums them), and a dimension the profile does not have
NAMES = [
    "panda_finger_joint2",
    "panda_joint7",
    "base_x",
    "panda_joint1",
    "panda_joint2",
    "panda_joint3",
    "panda_joint4",
    "panda_joint5",
    "panda_joint6",
    "panda_finger_joint1",
]
TASKS = ["pick up the cube", "open the drawer"]
LENGTHS = [12, 17, 9, 14, 11]  # episode 4 switches task half way
CAMERAS = {  # key -> (height, width, encoder, options, episodes per video file)
    "observation.images.top": (
        48,
        64,
        "libsvtav1",
        {"g": "2", "crf": "30", "preset": "12"},
        [[0, 1], [2, 3, 4]],
    ),
    "observation.images.wrist": (32, 32, "h264", {"g": "2", "crf": "30"}, [[0, 1, 2, 3, 4]]),
}
WRIST = "observation.images.wrist"
IMAGE_CELL = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # datasets.Image() in parquet
DATA_FILES = [[0, 1, 2], [3, 4]]  # episodes per data parquet file
EPISODE_FILES = [[0, 1, 2], [3, 4]]  # episodes per meta/episodes parquet file


def frame(h: int, w: int, episode: int, i: int) -> np.ndarray:
    """A smooth background and a bright square whose place encodes the frame index (so neighbours differ)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.linspace(30, 200, w, dtype=np.uint8)[None, :]
    img[..., 1] = np.linspace(40, 160, h, dtype=np.uint8)[:, None]
    img[..., 2] = 60 + 30 * episode
    y, x = (2 * i) % (h - 8), (3 * i) % (w - 8)
    img[y : y + 8, x : x + 8] = (250, 250, 40)
    return img


def states(episode: int, t: int) -> np.ndarray:
    """(t, 10) float32 in NAMES order, within the panda's limits."""
    rng = np.random.default_rng(100 + episode)
    home = {"panda_joint1": 0.0, "panda_joint2": -0.4, "panda_joint3": 0.0, "panda_joint4": -2.4}
    home.update({"panda_joint5": 0.0, "panda_joint6": 2.0, "panda_joint7": 0.785})
    home.update({"panda_finger_joint1": 0.02, "panda_finger_joint2": 0.02})
    home["base_x"] = 5.0
    base = np.array([home[n] for n in NAMES])
    q = base + 0.02 * np.cumsum(rng.normal(size=(t, len(NAMES))), 0)
    fingers = [NAMES.index("panda_finger_joint1"), NAMES.index("panda_finger_joint2")]
    q[:, fingers] = np.clip(
        q[:, fingers], 0.0025, 0.0275
    )  # each 0..0.04 m; their sum (+ 0.02 in actions) < 0.08
    return q.astype(np.float32)


def _encode(path: Path, frames: list[np.ndarray], codec: str, options: dict) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, FPS, options=options)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _duration(path: Path) -> float:
    """lerobot get_video_duration_in_s."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return float(s.duration * s.time_base) if s.duration is not None else float(c.duration / av.time_base)


def _concatenate(inputs: list[Path], output: Path) -> None:
    """lerobot concatenate_video_files: ffconcat demuxer, stream copy."""
    with tempfile.NamedTemporaryFile("w", suffix=".ffconcat", delete=False) as f:
        f.write("ffconcat version 1.0\n")
        for p in inputs:
            f.write(f"file '{p.resolve()}'\n")
        listing = f.name
    src = av.open(listing, mode="r", format="concat", options={"safe": "0"})
    tmp = output.with_suffix(".tmp.mp4")
    dst = av.open(str(tmp), mode="w", options={"movflags": "faststart"})
    streams = {}
    for s in src.streams:
        if s.type == "video":
            streams[s.index] = dst.add_stream_from_template(template=s, opaque=True)
            streams[s.index].time_base = s.time_base
    for packet in src.demux():
        if packet.stream.index not in streams or packet.dts is None:
            continue
        packet.stream = streams[packet.stream.index]
        dst.mux(packet)
    src.close()
    dst.close()
    shutil.move(tmp, output)
    Path(listing).unlink()


def _tasks_parquet(path: Path) -> None:
    """pandas.DataFrame({"task_index": ...}, index=pd.Index(TASKS, name="task")).to_parquet(path), by hand."""
    table = pa.table({"task_index": pa.array(range(len(TASKS)), pa.int64()), "task": pa.array(TASKS)})
    meta = {
        "index_columns": ["task"],
        "column_indexes": [
            {"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object"}
        ],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64"},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object"},
        ],
        "pandas_version": "2.2.3",
    }
    pq.write_table(table.replace_schema_metadata({b"pandas": json.dumps(meta).encode()}), path)


def task_indices(episode: int, t: int) -> np.ndarray:
    ti = np.full(t, episode % 2, np.int64)
    if episode == 4:
        ti[t // 2 :] = 1 - ti[0]
    return ti


def success_column(episode: int, t: int) -> np.ndarray:
    """next.success: true on the last frames of episodes 0 and 3 only."""
    s = np.zeros(t, bool)
    if episode in (0, 3):
        s[-2:] = True
    return s


def _png(img: np.ndarray) -> dict:
    """An image cell as LeRobot's embed_images stores it: {"bytes": PNG, "path": None}."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


def write_dataset(root: Path, wrist_images: bool = False) -> Path:
    """Write the dataset under root; returns root. wrist_images: the wrist camera as an `image` feature (PNG bytes in
    the data parquet, LeRobot's use_videos=False) instead of a video."""
    videos = {k: v for k, v in CAMERAS.items() if not (wrist_images and k.endswith("wrist"))}
    root.mkdir(parents=True)
    (root / "meta").mkdir()
    rows: dict[int, dict] = {}
    start = np.cumsum([0, *LENGTHS])
    for e, t in enumerate(LENGTHS):
        rows[e] = {
            "episode_index": e,
            "tasks": sorted({TASKS[i] for i in task_indices(e, t)}),
            "length": t,
            "dataset_from_index": int(start[e]),
            "dataset_to_index": int(start[e + 1]),
        }

    # videos: one file per episode, concatenated into the camera's files
    scratch = root / "scratch"
    for key, (h, w, codec, options, files) in videos.items():
        for file_index, episodes in enumerate(files):
            dst = root / f"videos/{key}/chunk-000/file-{file_index:03d}.mp4"
            dst.parent.mkdir(parents=True, exist_ok=True)
            for e in episodes:
                ep_video = scratch / f"{key}-{e}.mp4"
                ep_video.parent.mkdir(parents=True, exist_ok=True)
                _encode(ep_video, [frame(h, w, e, i) for i in range(LENGTHS[e])], codec, options)
                offset = _duration(dst) if dst.exists() else 0.0
                if dst.exists():
                    _concatenate([dst, ep_video], dst)
                else:
                    shutil.copy(ep_video, dst)
                rows[e].update(
                    {
                        f"videos/{key}/chunk_index": 0,
                        f"videos/{key}/file_index": file_index,
                        f"videos/{key}/from_timestamp": offset,
                        f"videos/{key}/to_timestamp": offset + _duration(ep_video),
                    }
                )
    shutil.rmtree(scratch)

    vec = pa.list_(pa.float32(), len(NAMES))
    for file_index, episodes in enumerate(DATA_FILES):
        cols: dict[str, list] = {
            k: [] for k in ("action", "observation.state", "next.success", "timestamp", "frame_index")
        }
        cols.update({k: [] for k in ("episode_index", "index", "task_index")})
        for e in episodes:
            t = LENGTHS[e]
            q = states(e, t)
            cols["observation.state"] += list(q)
            cols["action"] += list(q + 0.01)
            cols["next.success"] += list(success_column(e, t))
            cols["timestamp"] += list((np.arange(t) / FPS).astype(np.float32))
            cols["frame_index"] += list(range(t))
            cols["episode_index"] += [e] * t
            cols["index"] += list(range(start[e], start[e] + t))
            cols["task_index"] += list(task_indices(e, t))
            if wrist_images:
                h, w = CAMERAS[WRIST][:2]
                cols.setdefault(WRIST, []).extend(_png(frame(h, w, e, i)) for i in range(t))
            rows[e].update({"data/chunk_index": 0, "data/file_index": file_index})
        table = pa.table(
            {
                "action": pa.array([list(map(float, v)) for v in cols["action"]], vec),
                "observation.state": pa.array([list(map(float, v)) for v in cols["observation.state"]], vec),
                "next.success": pa.array(cols["next.success"], pa.bool_()),
                "timestamp": pa.array(cols["timestamp"], pa.float32()),
                **{
                    k: pa.array(np.asarray(cols[k], np.int64))
                    for k in ("frame_index", "episode_index", "index", "task_index")
                },
                **({WRIST: pa.array(cols[WRIST], IMAGE_CELL)} if wrist_images else {}),
            }
        )
        path = root / f"data/chunk-000/file-{file_index:03d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)

    for file_index, episodes in enumerate(EPISODE_FILES):
        table_rows = []
        for e in episodes:
            q = states(e, LENGTHS[e])
            row = {**rows[e], "meta/episodes/chunk_index": 0, "meta/episodes/file_index": file_index}
            row["stats/observation.state/mean"] = q.mean(0).astype(float).tolist()
            row["stats/observation.state/count"] = [LENGTHS[e]]
            table_rows.append(row)
        path = root / f"meta/episodes/chunk-000/file-{file_index:03d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(table_rows), path)
    _tasks_parquet(root / "meta/tasks.parquet")

    vec_feature = {"dtype": "float32", "shape": [len(NAMES)], "names": NAMES}
    features = {
        "action": dict(vec_feature),
        "observation.state": dict(vec_feature),
        "next.success": {"dtype": "bool", "shape": [1], "names": None},
        **{
            key: {
                "dtype": "video",
                "shape": [h, w, 3],
                "names": ["height", "width", "channels"],
                "info": {"video.height": h, "video.width": w, "video.codec": "av1" if codec == "libsvtav1" else codec,
                         "video.pix_fmt": "yuv420p", "video.fps": FPS, "video.channels": 3, "has_audio": False,
                         "is_depth_map": False},
            }
            for key, (h, w, codec, _, _) in videos.items()
        },
        **({WRIST: {"dtype": "image", "shape": [*CAMERAS[WRIST][:2], 3], "names": ["height", "width", "channels"]}}
           if wrist_images else {}),
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        **{k: {"dtype": "int64", "shape": [1], "names": None} for k in ("frame_index", "episode_index", "index",
                                                                          "task_index")},
    }  # fmt: skip
    info = {
        "codebase_version": "v3.0",
        "robot_type": "franka",
        "total_episodes": len(LENGTHS),
        "total_frames": int(sum(LENGTHS)),
        "total_tasks": len(TASKS),
        "chunks_size": 1000,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 200,
        "fps": FPS,
        "splits": {"train": f"0:{len(LENGTHS)}"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": features,
    }
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    return root
