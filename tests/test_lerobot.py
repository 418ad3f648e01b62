"""LeRobot v3.0 export: meta/info.json, the data / episodes / tasks parquet schemas, stats, and the mp4 video."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wam_ros.data.episode import Episode, episode_path, write_episode
from wam_ros.data.lerobot import export_lerobot
from wam_ros.robot import RobotProfile

PROFILE = RobotProfile.load("panda")
J = PROFILE.dof
KEY = "observation.images.front"


def episode(t: int, instruction: str, success: bool, hz: float = 10.0, seed: int = 0) -> Episode:
    rng = np.random.default_rng(seed)
    frames = np.zeros((t, 32, 32, 3), np.uint8)
    frames[..., 0] = (np.arange(t) * 20 % 256)[
        :, None, None
    ]  # red ramps over time: checkable after mp4 coding
    q = rng.normal(size=(t, J)).astype(np.float32)
    return Episode(
        frames=frames,
        joint_pos=q,
        joint_vel=np.zeros((t, J)),
        actions=q + 0.1,
        timestamps=np.arange(t) / hz,
        meta=dict(
            task="reach",
            instruction=instruction,
            success=success,
            robot=PROFILE.to_dict(),
            control_hz=hz,
            camera={"name": "front"},
        ),
    )


@pytest.fixture
def episodes(tmp_path: Path) -> Path:
    d = tmp_path / "eps"
    for i, (t, ins, ok) in enumerate(
        [
            (6, "reach the red target", True),
            (9, "reach the blue target", False),
            (5, "reach the red target", True),
        ]
    ):
        write_episode(episode_path(d, i), episode(t, ins, ok, seed=i))
    return d


def test_export_layout_info_and_parquet_schemas(episodes: Path, tmp_path: Path):
    out = tmp_path / "lerobot"
    r = subprocess.run(
        [sys.executable, "-m", "wam_ros.cli", "data", "export-lerobot", str(episodes), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["robot_type"] == "panda" and info["fps"] == 10
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, 20, 2)
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    f = info["features"]
    assert f["observation.state"] == {"dtype": "float32", "shape": [J], "names": PROFILE.joint_names}
    assert f["action"]["shape"] == [J] and f[KEY]["dtype"] == "video" and f[KEY]["shape"] == [32, 32, 3]
    assert f[KEY]["info"]["video.fps"] == 10 and f[KEY]["info"]["video.codec"] == "mpeg4"
    for k in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert f[k]["shape"] == [1]

    data = pq.read_table(out / "data" / "chunk-000" / "file-000.parquet")
    assert data.schema.field("observation.state").type == pa.list_(pa.float32(), J)
    assert data.schema.field("action").type == pa.list_(pa.float32(), J)
    assert data.schema.field("timestamp").type == pa.float32()
    for k in ("frame_index", "episode_index", "index", "task_index"):
        assert data.schema.field(k).type == pa.int64()
    assert set(data.column_names) == {k for k, v in f.items() if v["dtype"] != "video"}
    d = data.to_pydict()
    assert d["index"] == list(range(20)) and d["episode_index"] == [0] * 6 + [1] * 9 + [2] * 5
    assert d["frame_index"][:7] == [0, 1, 2, 3, 4, 5, 0] and d["task_index"] == [0] * 6 + [1] * 9 + [0] * 5
    assert np.allclose(d["timestamp"][6:9], [0.0, 0.1, 0.2])
    first = episode(6, "", True, seed=0)
    assert np.allclose(d["observation.state"][:6], first.joint_pos) and np.allclose(
        d["action"][:6], first.actions
    )

    eps = pq.read_table(out / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pydict()
    assert eps["episode_index"] == [0, 1, 2] and eps["length"] == [6, 9, 5]
    assert eps["dataset_from_index"] == [0, 6, 15] and eps["dataset_to_index"] == [6, 15, 20]
    assert eps["tasks"] == [["reach the red target"], ["reach the blue target"], ["reach the red target"]]
    assert np.allclose(eps[f"videos/{KEY}/from_timestamp"], [0.0, 0.6, 1.5])
    assert np.allclose(eps[f"videos/{KEY}/to_timestamp"], [0.6, 1.5, 2.0])
    assert eps["success"] == [True, False, True]

    tasks = pq.read_table(out / "meta" / "tasks.parquet")
    assert tasks.to_pydict() == {
        "task_index": [0, 1],
        "task": ["reach the red target", "reach the blue target"],
    }
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == [
        "task"
    ]  # pandas: task is the index

    stats = json.loads((out / "meta" / "stats.json").read_text())
    assert set(stats) >= {"observation.state", "action", KEY}
    assert len(stats["action"]["mean"]) == J and np.array(stats[KEY]["mean"]).shape == (3, 1, 1)

    # the video holds every frame of every episode in order (mpeg4 is lossy: compare the red ramp loosely)
    cap = cv2.VideoCapture(str(out / "videos" / KEY / "chunk-000" / "file-000.mp4"))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(bgr)
    assert len(frames) == 20 and frames[0].shape == (32, 32, 3)
    red = [float(fr[..., 2].mean()) for fr in frames]
    expected = (
        [i * 20 % 256 for i in range(6)] + [i * 20 % 256 for i in range(9)] + [i * 20 % 256 for i in range(5)]
    )
    assert np.max(np.abs(np.array(red) - expected)) < 12


def test_export_refuses_bad_input(episodes: Path, tmp_path: Path):
    out = tmp_path / "lr"
    export_lerobot([episodes / "episode_000000.npz"], out)
    with pytest.raises(FileExistsError, match="not empty"):
        export_lerobot([episodes / "episode_000000.npz"], out)
    info = export_lerobot([episodes / "episode_000001.npz"], out, overwrite=True, robot_type="fr3")
    assert info["total_episodes"] == 1 and info["robot_type"] == "fr3"
    with pytest.raises(ValueError, match="control_hz 15.0 differs from 10.0"):
        export_lerobot([episode(4, "a", True), episode(4, "a", True, hz=15.0)], tmp_path / "x")
    assert not (tmp_path / "x").exists()  # nothing half-written
    with pytest.raises(ValueError, match="at least one episode"):
        export_lerobot([], tmp_path / "y")
