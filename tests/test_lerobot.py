"""LeRobot v3.0 in and out: our export checked by LeRobot's own validator (lerobot-doctor), its layout and video,
the round trip export -> import, the import of a dataset written the way LeRobot writes one (not by our exporter),
and clear refusals of damaged or unsupported datasets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from lerobot_fixtures import CAMERAS, FPS, LENGTHS, NAMES, TASKS, frame, states, success_column, write_dataset

from wam_ros.data.episode import Episode, episode_path, list_episodes, read_episode, write_episode
from wam_ros.data.lerobot import ExportConfig, ImportConfig, LeRobotError, export_lerobot, import_lerobot
from wam_ros.data.lerobot.layout import STD_FLOOR
from wam_ros.data.video import VideoEncoderConfig, VideoError, VideoReader, VideoWriter, probe
from wam_ros.robot import RobotProfile
from wam_ros.sim.experts import make_expert
from wam_ros.sim.tabletop import TabletopEnv

PROFILE = RobotProfile.load("panda")
J = PROFILE.dof
KEY = "observation.images.front"
DOCTOR = Path(sys.executable).with_name("lerobot-doctor")
# Warnings lerobot-doctor gives about what the data holds, not about how it is written: the test episodes keep the
# gripper still (to exercise the stats.json std floor) and are shorter than a 1 s ACT chunk; a sim episode's last
# action repeats the one before (meta final_action "hold"), which it calls frozen.
DATA_WARNINGS = ("zero variance", "constant dimension", "shorter than", "too short", "flagged", "frozen")


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per frame, dB."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean(axis=(1, 2, 3))
    return 10 * np.log10(255.0**2 / np.maximum(mse, 1e-12))


def episode(
    t: int, instruction: str, success: bool, seed: int = 0, hz: float = 10.0, size: int = 32
) -> Episode:
    """Joints move within the panda's limits except the gripper, which stays still (a zero-std dimension)."""
    rng = np.random.default_rng(seed)
    q = np.asarray(PROFILE.home) + 0.03 * np.cumsum(rng.normal(size=(t, J)), 0)
    q[:, -1] = 0.04
    frames = np.stack([frame(size, size, seed, i) for i in range(t)])
    return Episode(
        frames=frames,
        joint_pos=q.astype(np.float32),
        joint_vel=np.gradient(q, axis=0).astype(np.float32) * hz,
        actions=(q + 0.01).astype(np.float32),
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
            (12, "reach the red target", True),
            (15, "reach the blue target", False),
            (11, "reach the red target", True),
        ]
    ):
        write_episode(episode_path(d, i), episode(t, ins, ok, seed=i))
    return d


def doctor(path: Path) -> list[tuple[str, str, str]]:
    """lerobot-doctor's findings that are not PASS: (severity, check, message)."""
    r = subprocess.run(
        [str(DOCTOR), "check", str(path), "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )
    report = json.loads(r.stdout)
    assert report["codebase_version"] == "v3.0", report
    return [
        (m["severity"], c["name"], m["message"])
        for c in report["checks"]
        for m in c["messages"]
        if m["severity"] != "PASS"
    ]


def assert_doctor_accepts(path: Path) -> None:
    findings = doctor(path)
    assert not [f for f in findings if f[0] == "FAIL"], findings
    ours = [f for f in findings if not any(w in f[2] for w in DATA_WARNINGS)]
    assert not ours, ours


def run_wam(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wam_ros.cli", "data", *args], capture_output=True, text=True
    )


# ---- export ------------------------------------------------------------------------------------------------------
def test_export_layout_info_and_parquet_schemas(episodes: Path, tmp_path: Path):
    out = tmp_path / "lerobot"
    r = run_wam("export-lerobot", str(episodes), "--out", str(out))
    assert r.returncode == 0, r.stderr
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["robot_type"] == "panda" and info["fps"] == 10
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, 38, 2)
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    f = info["features"]
    for key in ("observation.state", "observation.velocity", "action"):
        assert f[key] == {"dtype": "float32", "shape": [J], "names": PROFILE.joint_names}
    assert f[KEY]["dtype"] == "video" and f[KEY]["shape"] == [32, 32, 3]
    video = f[KEY]["info"]  # as LeRobot's get_video_info + encoder config write it
    assert video["video.codec"] == "av1" and video["video.pix_fmt"] == "yuv420p" and video["video.fps"] == 10
    assert (video["video.g"], video["video.crf"], video["video.preset"]) == (2, 30, 12)
    assert video["is_depth_map"] is False and video["has_audio"] is False
    for k in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert f[k]["shape"] == [1]

    data = pq.read_table(out / "data" / "chunk-000" / "file-000.parquet")
    for key in ("observation.state", "observation.velocity", "action"):
        assert data.schema.field(key).type == pa.list_(pa.float32(), J)
    assert data.schema.field("timestamp").type == pa.float32()
    for k in ("frame_index", "episode_index", "index", "task_index"):
        assert data.schema.field(k).type == pa.int64()
    assert set(data.column_names) == {k for k, v in f.items() if v["dtype"] != "video"}
    d = data.to_pydict()
    assert d["index"] == list(range(38)) and d["episode_index"] == [0] * 12 + [1] * 15 + [2] * 11
    assert d["frame_index"][:13] == [*range(12), 0] and d["task_index"] == [0] * 12 + [1] * 15 + [0] * 11
    assert np.allclose(d["timestamp"][12:15], [0.0, 0.1, 0.2])
    first = episode(12, "", True, seed=0)
    assert np.array_equal(np.array(d["observation.state"][:12], np.float32), first.joint_pos)
    assert np.array_equal(np.array(d["action"][:12], np.float32), first.actions)

    eps = pq.read_table(out / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pydict()
    assert eps["episode_index"] == [0, 1, 2] and eps["length"] == [12, 15, 11]
    assert eps["dataset_from_index"] == [0, 12, 27] and eps["dataset_to_index"] == [12, 27, 38]
    assert eps["tasks"] == [["reach the red target"], ["reach the blue target"], ["reach the red target"]]
    assert np.allclose(eps[f"videos/{KEY}/from_timestamp"], [0.0, 1.2, 2.7])
    assert np.allclose(eps[f"videos/{KEY}/to_timestamp"], [1.2, 2.7, 3.8])
    assert eps["success"] == [True, False, True]
    assert np.allclose(eps["stats/action/mean"][1], np.mean(episode(15, "", False, seed=1).actions, 0))
    assert eps["stats/action/count"] == [[12], [15], [11]]

    tasks = pq.read_table(out / "meta" / "tasks.parquet")
    assert tasks.to_pydict() == {
        "task_index": [0, 1],
        "task": ["reach the red target", "reach the blue target"],
    }
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == [
        "task"
    ]  # pandas: task is the index

    stats = json.loads((out / "meta" / "stats.json").read_text())
    assert set(stats) == set(f)
    assert set(stats["action"]) == {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}
    actions = np.concatenate([episode(t, "", True, seed=i).actions for i, t in enumerate((12, 15, 11))])
    assert np.allclose(stats["action"]["mean"], actions.mean(0)) and stats["action"]["count"] == [38]
    assert np.allclose(stats["action"]["q50"], np.quantile(actions, 0.5, axis=0))
    # the gripper never moves: its std is floored so that z-score normalisation stays finite
    assert stats["action"]["std"][-1] == STD_FLOOR and np.allclose(
        stats["action"]["std"][:-1], actions.std(0)[:-1]
    )
    assert np.array(stats[KEY]["mean"]).shape == (3, 1, 1)
    pix = np.concatenate([episode(t, "", True, seed=i).frames for i, t in enumerate((12, 15, 11))]) / 255.0
    assert np.allclose(np.array(stats[KEY]["mean"]).ravel(), pix.mean(axis=(0, 1, 2)))

    # the video holds every frame of every episode in order, frame i at i/fps, decoded with PyAV
    with av.open(str(out / "videos" / KEY / "chunk-000" / "file-000.mp4")) as c:
        s = c.streams.video[0]
        assert s.codec_context.name in ("libdav1d", "av1") and s.codec.canonical_name == "av1"
        decoded = [(float(fr.pts * s.time_base), fr.to_ndarray(format="rgb24")) for fr in c.decode(s)]
    assert np.allclose([t for t, _ in decoded], np.arange(38) / 10)
    source = np.concatenate([episode(t, "", True, seed=i).frames for i, t in enumerate((12, 15, 11))])
    video = np.stack([x for _, x in decoded])
    assert psnr(video, source).min() > 22  # AV1 at crf 30 on 32x32 frames: 25.7 dB at worst (inter frames)
    dist = ((video[:, None].astype(float) - source[None].astype(float)) ** 2).mean(axis=(2, 3, 4))
    assert np.array_equal(
        dist.argmin(1), np.arange(38)
    )  # every frame is its own source frame's nearest match


@pytest.mark.parametrize("vcodec", ["libsvtav1", "h264"])
def test_lerobot_doctor_accepts_the_export(episodes: Path, tmp_path: Path, vcodec: str):
    """LeRobot's own validator, run as LeRobot users run it: no FAIL, and no warning about how the data is written."""
    out = tmp_path / "lerobot"
    r = run_wam("export-lerobot", str(episodes), "--out", str(out), "--vcodec", vcodec)
    assert r.returncode == 0, r.stderr
    assert probe(out / "videos" / KEY / "chunk-000" / "file-000.mp4")["video.codec"] == {
        "libsvtav1": "av1"
    }.get(vcodec, vcodec)
    assert_doctor_accepts(out)

    # the validator is not blind: a zero std in stats.json (what the export writes without its floor) is flagged
    stats = json.loads((out / "meta" / "stats.json").read_text())
    stats["action"]["std"][-1] = 0.0
    (out / "meta" / "stats.json").write_text(json.dumps(stats))
    assert any("zero std" in m for _, _, m in doctor(out))


def test_export_refuses_bad_input(episodes: Path, tmp_path: Path):
    out = tmp_path / "lr"
    export_lerobot([episodes / "episode_000000.npz"], out)
    with pytest.raises(FileExistsError, match="not empty"):
        export_lerobot([episodes / "episode_000000.npz"], out)
    info = export_lerobot(
        [episodes / "episode_000001.npz"], out, ExportConfig(overwrite=True, robot_type="fr3")
    )
    assert info["total_episodes"] == 1 and info["robot_type"] == "fr3"
    with pytest.raises(ValueError, match="control_hz 15.0 differs from 10.0"):
        export_lerobot([episode(4, "a", True), episode(4, "a", True, hz=15.0)], tmp_path / "x")
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.tmp-*"))  # nothing half-written
    jittered = episode(6, "a", True)
    jittered.timestamps[3] += 0.03
    with pytest.raises(ValueError, match=r"episode 1: timestamps are 0\.03 s off the uniform clock"):
        export_lerobot([episode(4, "a", True), jittered], tmp_path / "x")
    with pytest.raises(ValueError, match="at least one episode"):
        export_lerobot([], tmp_path / "y")
    with pytest.raises(ValueError, match="vcodec 'mpeg4' is not supported"):
        VideoEncoderConfig(vcodec="mpeg4")
    assert (
        run_wam("export-lerobot", str(episodes), "--out", str(tmp_path / "z"), "--vcodec", "vp9").returncode
        == 1
    )


def sim_episode(env: TabletopEnv, seed: int, steps: int = 14) -> Episode:
    """The scripted expert in the real sim, recorded through the gym API: rendered frames from both cameras."""
    expert = make_expert(env)
    obs, info = env.reset(seed=seed)
    rows = []
    for _ in range(steps):
        obs_next, _, terminated, truncated, info = env.step(expert(obs))
        rows.append((obs, info["applied_action"]))
        obs = obs_next
        if terminated or truncated:
            break
    rows.append((obs, rows[-1][1]))  # the final observation holds the last target
    return Episode(
        frames=np.stack([o["image"] for o, _ in rows]),
        joint_pos=np.stack([o["joint_pos"] for o, _ in rows]),
        joint_vel=np.stack([o["joint_vel"] for o, _ in rows]),
        actions=np.stack([a for _, a in rows]).astype(np.float32),
        timestamps=np.arange(len(rows)) / env.control_hz,
        meta=dict(
            task="reach",
            instruction=info["instruction"],
            success=bool(info["success"]),
            robot=PROFILE.to_dict(),
            control_hz=float(env.control_hz),
            camera={"name": "front"},
        ),
        extra={"wrist_frames": np.stack([o["wrist_image"] for o, _ in rows])},
    )


# ---- round trip --------------------------------------------------------------------------------------------------
def test_round_trip_export_import_gives_the_same_episodes(tmp_path: Path):
    """Sim episodes (real rendered frames, wrist camera too) -> LeRobot (AV1, files rolled over after every
    episode) -> episodes: every array identical, frames within codec error (PSNR >= 24 dB per frame, >= 28 dB mean
    at LeRobot's crf 30 on 64x64 frames; docs/lerobot.md)."""
    env = TabletopEnv(task="reach", image_size=64, wrist_camera=True)
    try:
        source = [sim_episode(env, seed) for seed in range(3)]
    finally:
        env.close()
    source[1].meta["success"] = False  # one failure, so success is carried, not assumed
    lerobot = tmp_path / "lerobot"
    tiny = ExportConfig(data_file_mb=1e-6, video_file_mb=1e-6)  # a new file as soon as one holds anything
    export_lerobot(source, lerobot, tiny)
    assert len(list(lerobot.glob("data/chunk-000/*.parquet"))) == 3
    assert len(list(lerobot.glob(f"videos/{KEY}/chunk-000/*.mp4"))) >= 2  # AV1 holds the first frames back
    assert_doctor_accepts(lerobot)

    out = tmp_path / "imported"
    r = run_wam(
        "import-lerobot", str(lerobot), "--robot", "panda", "--out", str(out), "--wrist-camera", "wrist",
        "--task", "reach",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["episodes"], summary["skipped"], summary["success"]) == (3, [], "episodes")
    imported = [read_episode(p) for p in list_episodes(out)]
    assert len(imported) == 3
    for a, b in zip(source, imported, strict=True):
        for key in ("joint_pos", "joint_vel", "actions"):
            assert np.array_equal(getattr(a, key), getattr(b, key)), key
        assert np.allclose(a.timestamps, b.timestamps, atol=1e-6, rtol=0)  # LeRobot stores float32 seconds
        assert (b.instruction, b.success, b.task) == (a.instruction, a.success, a.task)
        assert b.meta["robot"] == a.meta["robot"] and b.meta["control_hz"] == a.meta["control_hz"]
        assert b.meta["camera"]["name"] == "front" and b.meta["source"]["codebase_version"] == "v3.0"
        for frames_a, frames_b in ((a.frames, b.frames), (a.extra["wrist_frames"], b.extra["wrist_frames"])):
            assert frames_b.shape == frames_a.shape
            p = psnr(frames_b, frames_a)
            assert p.min() >= 24 and p.mean() >= 28, p


# ---- import of a dataset our exporter did not write --------------------------------------------------------------
def test_import_dataset_written_like_lerobot(tmp_path: Path):
    root = write_dataset(tmp_path / "community")
    fails = [f for f in doctor(root) if f[0] == "FAIL"]
    assert not fails  # the fixture itself is a valid dataset to LeRobot's validator

    out = tmp_path / "eps"
    r = run_wam("import-lerobot", str(root), "--robot", "panda", "--out", str(out), "--camera", "top")
    assert r.returncode == 1 and "['base_x'] are no joints of robot profile 'panda'" in r.stderr
    assert "--drop-unmapped" in r.stderr and not out.exists()

    r = run_wam(
        "import-lerobot", str(root), "--robot", "panda", "--out", str(out), "--camera", "top",
        "--wrist-camera", "observation.images.wrist", "--drop-unmapped",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["episodes"] == 4 and summary["frames"] == sum(LENGTHS[:4])
    assert summary["skipped"] == [
        {
            "episode_index": 4,
            "reason": "task_index changes within the episode ([0, 1]); an episode has one instruction",
        }
    ]
    assert summary["dropped_names"] == {
        "observation.state": ["base_x"],
        "action": ["base_x"],
    }  # fingers are read
    assert summary["success"] == "next.success" and summary["joint_vel"] == "finite difference"

    def profile_joints(x: np.ndarray) -> np.ndarray:
        """The dataset's 10 columns -> the profile's 8 joints: arm joints by name, gripper = finger 1 + finger 2."""
        arm = x[:, [NAMES.index(n) for n in PROFILE.joint_names[:7]]].astype(np.float64)
        width = x[:, NAMES.index("panda_finger_joint1")] + x[:, NAMES.index("panda_finger_joint2")].astype(
            float
        )
        return np.column_stack([arm, width])

    for e, path in enumerate(list_episodes(out)):
        ep = read_episode(path)
        t = LENGTHS[e]
        assert path.name == f"episode_{e:06d}.npz" and len(ep) == t
        q = states(e, t)
        assert np.array_equal(ep.joint_pos, profile_joints(q).astype(np.float32))
        assert np.array_equal(ep.actions, profile_joints(q + np.float32(0.01)).astype(np.float32))
        velocity = np.gradient(
            profile_joints(q).astype(np.float32).astype(np.float64), np.arange(t) / FPS, axis=0
        )
        assert np.allclose(ep.joint_vel, velocity, atol=1e-5)
        assert (
            np.allclose(ep.timestamps, np.arange(t) / FPS, atol=1e-6, rtol=0) and ep.meta["control_hz"] == FPS
        )
        assert ep.instruction == TASKS[e % 2] and ep.success == bool(success_column(e, t).any())
        assert ep.task == "community" and ep.meta["robot"]["name"] == "panda"
        for key, frames in (
            ("observation.images.top", ep.frames),
            ("observation.images.wrist", ep.extra["wrist_frames"]),
        ):
            h, w = CAMERAS[key][:2]
            truth = np.stack([frame(h, w, e, i) for i in range(t)])
            assert frames.shape == truth.shape
            assert psnr(frames, truth).min() > 22, (key, e)  # crf 30 on 32x32 and 64x48: 24.9 dB at worst
            # each row got its own frame, not a neighbour's: the nearest source frame is the one at the same index
            dist = ((frames[:, None].astype(float) - truth[None].astype(float)) ** 2).mean(axis=(2, 3, 4))
            assert np.array_equal(dist.argmin(1), np.arange(t)), (key, e)

    # frames resized on import; success given on the command line wins
    r = run_wam(
        "import-lerobot", str(root), "--robot", "panda", "--out", str(out), "--camera", "top", "--drop-unmapped",
        "--image-size", "24", "--failure", "--overwrite",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    ep = read_episode(out / "episode_000000.npz")
    assert (
        ep.frames.shape == (LENGTHS[0], 24, 24, 3) and ep.success is False and "wrist_frames" not in ep.extra
    )


def test_import_image_feature(tmp_path: Path):
    """A camera stored as an `image` feature (PNG bytes in the data parquet, LeRobot's use_videos=False) is lossless."""
    root = write_dataset(tmp_path / "community", wrist_images=True)
    assert not [f for f in doctor(root) if f[0] == "FAIL"]
    out = tmp_path / "eps"
    cfg = ImportConfig(camera="wrist", drop_unmapped=True)
    summary = import_lerobot(root, out, cfg)
    assert summary["camera"] == "observation.images.wrist" and summary["episodes"] == 4
    for e, path in enumerate(list_episodes(out)):
        truth = np.stack([frame(32, 32, e, i) for i in range(LENGTHS[e])])
        assert np.array_equal(read_episode(path).frames, truth)
    import_lerobot(root, out, ImportConfig(camera="wrist", drop_unmapped=True, image_size=16, overwrite=True))
    assert read_episode(out / "episode_000002.npz").frames.shape == (LENGTHS[2], 16, 16, 3)


# ---- damaged and unsupported datasets ----------------------------------------------------------------------------
def _edit_info(root: Path, edit) -> None:
    info = json.loads((root / "meta/info.json").read_text())
    edit(info)
    (root / "meta/info.json").write_text(json.dumps(info))


def _short_video(root: Path) -> None:
    """Re-encode the top camera's second file (episodes 2, 3, 4) without its last 13 frames: episode 3 loses 2."""
    path = root / "videos/observation.images.top/chunk-000/file-001.mp4"
    with VideoReader(path) as r:
        _, frames = r.read(0.0, 1e9)
    h, w = frames.shape[1:3]
    with VideoWriter(path, FPS, w, h) as wr:
        wr.write(frames[:-13])


def _drop_episode_column(root: Path, column: str) -> None:
    for path in root.glob("meta/episodes/*/*.parquet"):
        table = pq.read_table(path)
        pq.write_table(table.drop_columns([column]), path)


DAMAGE = {
    "v2.1 layout": (
        lambda r: _edit_info(r, lambda i: i.update(codebase_version="v2.1")),
        r"info\.json: codebase_version 'v2\.1' is the LeRobot v2\.x layout.*convert_dataset_v21_to_v30",
    ),
    "missing feature": (
        lambda r: _edit_info(r, lambda i: i["features"].pop("action")),
        r"info\.json: features has no 'action'",
    ),
    "unknown joint names": (
        lambda r: _edit_info(
            r, lambda i: i["features"]["observation.state"].update(names=[f"m{k}" for k in range(10)])
        ),
        r"info\.json: features\['observation\.state'\]\.names lack joints \['panda_joint1'",
    ),
    "names missing": (
        lambda r: _edit_info(r, lambda i: i["features"]["action"].update(names=None)),
        r"features\['action'\]\.names is None: joint names are needed",
    ),
    "video shorter than the data": (
        _short_video,
        r"videos/observation\.images\.top/chunk-000/file-001\.mp4: episode 3 frame 12 is at 1\.4000 s .*"
        r"but the video ends at 1\.3333 s: the video is shorter than the data",
    ),
    "missing video file": (
        lambda r: (r / "videos/observation.images.top/chunk-000/file-001.mp4").unlink(),
        r"episode 2, observation\.images\.top: video file not found: .*file-001\.mp4",
    ),
    "corrupt data file": (
        lambda r: (r / "data/chunk-000/file-001.parquet").write_bytes(b"PAR1 not really"),
        r"data/chunk-000/file-001\.parquet: not a readable parquet file",
    ),
    "missing tasks": (
        lambda r: (r / "meta/tasks.parquet").unlink(),
        r"meta/tasks\.parquet: missing",
    ),
    "episode count": (
        lambda r: _edit_info(r, lambda i: i.update(total_episodes=7)),
        r"info\.json: total_episodes is 7, meta/episodes lists 5 episodes",
    ),
    "episodes metadata column": (
        lambda r: _drop_episode_column(r, "videos/observation.images.top/from_timestamp"),
        r"file-000\.parquet: columns \['videos/observation\.images\.top/from_timestamp'\] are missing",
    ),
    "length mismatch": (
        lambda r: _set_length(r),
        r"data/chunk-000/file-000\.parquet: 12 rows have episode_index 0, meta/episodes says length 13",
    ),
    "task not in the tasks table": (
        lambda r: pq.write_table(
            pq.read_table(r / "meta/tasks.parquet").slice(0, 1), r / "meta/tasks.parquet"
        ),
        r"file-000\.parquet: episode 1: task_index 1 is not in .*meta/tasks\.parquet",
    ),
    "frame off its time": (
        lambda r: _shift_from_timestamp(r, 0.5 / FPS),
        r"top/chunk-000/file-000\.mp4: episode 0 frame 0 is at 0\.0333 s .*and the nearest frame is 0\.03333 s away "
        r"\(tolerance 0\.0001 s\)",
    ),
    "null in episodes": (
        lambda r: _shift_from_timestamp(r, None),
        r"episode 0 has no value in \['videos/observation\.images\.top/from_timestamp'\]",
    ),
    "no success": (
        lambda r: _edit_info(r, lambda i: i["features"].pop("next.success")),
        r"does not say whether its episodes succeeded.*pass --success or --failure",
    ),
}


def _shift_from_timestamp(root: Path, shift: float | None) -> None:
    """Episode 0's top-camera from_timestamp moved by `shift` seconds (None: emptied)."""
    path = root / "meta/episodes/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    key = "videos/observation.images.top/from_timestamp"
    values = table[key].to_pylist()
    values[0] = None if shift is None else values[0] + shift
    pq.write_table(
        table.set_column(table.schema.get_field_index(key), key, pa.array(values, pa.float64())), path
    )


def _set_length(root: Path) -> None:
    path = root / "meta/episodes/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    lengths = table["length"].to_pylist()
    lengths[0] += 1
    pq.write_table(
        table.set_column(table.schema.get_field_index("length"), "length", pa.array(lengths)), path
    )


@pytest.fixture(scope="module")
def community(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("lerobot") / "community")


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_import_refuses_damaged_dataset(community: Path, tmp_path: Path, damage: str):
    root = tmp_path / "damaged"
    shutil.copytree(community, root)
    apply, message = DAMAGE[damage]
    apply(root)
    out = tmp_path / "eps"
    with pytest.raises(LeRobotError, match=message):
        import_lerobot(root, out, ImportConfig(camera="top", drop_unmapped=True))
    assert not out.exists() and not list(tmp_path.glob(".eps.tmp-*"))  # nothing written, nothing left behind


def test_import_refuses_other_inputs(tmp_path: Path):
    with pytest.raises(LeRobotError, match="meta/info.json: missing"):
        import_lerobot(tmp_path, tmp_path / "out")
    root = write_dataset(tmp_path / "community")
    with pytest.raises(LeRobotError, match=r"2 camera features .*choose one with --camera"):
        import_lerobot(root, tmp_path / "out", ImportConfig(drop_unmapped=True))
    with pytest.raises(LeRobotError, match="no camera feature 'side'"):
        import_lerobot(root, tmp_path / "out", ImportConfig(camera="side", drop_unmapped=True))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(FileExistsError, match="not empty"):
        import_lerobot(root, tmp_path / "full", ImportConfig(camera="top", drop_unmapped=True))


# ---- video -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("vcodec", ["libsvtav1", "h264"])
def test_video_writer_and_reader(tmp_path: Path, vcodec: str):
    frames = np.stack([frame(32, 48, 0, i) for i in range(20)])
    path = tmp_path / "v.mp4"
    with VideoWriter(path, 10, 48, 32, VideoEncoderConfig(vcodec=vcodec)) as w:
        w.write(frames[:7])
        w.write(frames[7:])
    info = probe(path)
    assert (info["video.width"], info["video.height"], info["video.fps"], info["frames"]) == (48, 32, 10, 20)
    assert info["video.codec"] == VideoEncoderConfig(vcodec=vcodec).codec_name and info["duration_s"] == 2.0
    with VideoReader(path) as r:
        t1, f1 = r.read(0.5, 0.9)  # forward
        t2, f2 = r.read(1.0, 1.9)  # continues without seeking
        t0, f0 = r.read(0.0, 0.2)  # back: seeks
        t3, _ = r.read(5.0, 6.0)  # past the end
    assert np.allclose(t1, [0.5, 0.6, 0.7, 0.8, 0.9]) and np.allclose(t2, np.arange(10, 20) / 10)
    assert np.allclose(t0, [0.0, 0.1, 0.2]) and len(t3) == 0
    decoded, truth = np.concatenate([f0, f1, f2]), frames[[0, 1, 2, 5, 6, 7, 8, 9, *range(10, 20)]]
    assert psnr(decoded, truth).min() > 24  # crf 30 on 48x32: 27 dB at worst
    dist = ((decoded[:, None].astype(float) - truth[None].astype(float)) ** 2).mean(axis=(2, 3, 4))
    assert np.array_equal(dist.argmin(1), np.arange(len(truth)))  # each read frame is the one asked for
    with VideoReader(path, size=(24, 16)) as r:
        assert r.read(0.0, 0.0)[1].shape == (1, 16, 24, 3)
    with pytest.raises(VideoError, match="even width and height"):
        VideoWriter(tmp_path / "odd.mp4", 10, 33, 32)
    with pytest.raises(VideoError, match="video file not found"):
        VideoReader(tmp_path / "nope.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(VideoError, match="bad.mp4: cannot open video"):
        VideoReader(tmp_path / "bad.mp4")
