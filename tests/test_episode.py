"""The episode format: exact round trip, readable without our code, atomic writes (a killed writer leaves nothing
readable), validation errors, and training windows."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from wam_ros.data.episode import (
    Episode,
    EpisodeError,
    episode_index,
    episode_path,
    list_episodes,
    read_episode,
    write_episode,
)
from wam_ros.data.windows import ACTION_MASK, ACTIONS, FRAMES, JOINT_POS, NEXT_FRAME, WindowDataset
from wam_ros.robot import RobotProfile


def make_episode(T: int = 6, size: int = 8, seed: int = 0, **meta) -> Episode:
    rng = np.random.default_rng(seed)
    prof = RobotProfile.load("panda")
    return Episode(
        frames=rng.integers(0, 256, (T, size, size, 3), dtype=np.uint8),
        joint_pos=rng.normal(size=(T, 8)),
        joint_vel=rng.normal(size=(T, 8)),
        actions=rng.normal(size=(T, 8)),
        timestamps=np.arange(T) / 10.0,
        meta={
            "task": "reach",
            "instruction": "reach the red target",
            "success": True,
            "robot": prof.to_dict(),
            "control_hz": 10,
            "scene": {"goal": "target_0"},
            **meta,
        },
    )


def test_round_trip_is_exact(tmp_path):
    ep = make_episode(extra_meta_value=[1, 2.5, "x"])
    ep.extra["wrist_frames"] = ep.frames[:, ::-1].copy()
    path = write_episode(episode_path(tmp_path, 3), ep)
    assert path.name == "episode_000003.npz" and episode_index(path) == 3
    back = read_episode(path)
    for key in ("frames", "joint_pos", "joint_vel", "actions", "timestamps"):
        a, b = getattr(ep, key), getattr(back, key)
        assert a.dtype == b.dtype and np.array_equal(a, b), key
    assert np.array_equal(back.extra["wrist_frames"], ep.extra["wrist_frames"])
    assert back.meta == {"schema_version": 1, **ep.meta}
    assert back.success and back.instruction == "reach the red target"


def test_readable_without_our_code(tmp_path):
    path = write_episode(episode_path(tmp_path, 0), make_episode())
    code = (
        "import json, sys, numpy as np\n"
        "assert 'wam_ros' not in sys.modules\n"
        f"z = np.load({str(path)!r}, allow_pickle=False)\n"
        "meta = json.loads(str(z['meta']))\n"
        "print(z['frames'].shape, z['actions'].dtype, meta['task'], meta['schema_version'])\n"
    )
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(6, 8, 8, 3) float32 reach 1"


WRITER = """
import sys, numpy as np
sys.path.insert(0, {root!r})
from wam_ros.data.episode import Episode, write_episode, episode_path
from wam_ros.robot import RobotProfile
T = 400   # ~20 MB of incompressible frames: the compressed write takes long enough to be killed mid-way
rng = np.random.default_rng(0)
ep = Episode(frames=rng.integers(0, 256, (T, 128, 128, 3), dtype=np.uint8), joint_pos=np.zeros((T, 8)),
             joint_vel=np.zeros((T, 8)), actions=np.zeros((T, 8)), timestamps=np.arange(T) / 10,
             meta=dict(task='reach', instruction='x', success=True, robot=RobotProfile.load('panda').to_dict(),
                       control_hz=10))
print('writing', flush=True)
write_episode(episode_path({out!r}, 0), ep)
print('done', flush=True)
"""


def test_killed_writer_leaves_no_readable_episode(tmp_path, repo_root):
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER.format(root=str(repo_root), out=str(tmp_path))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "writing"
        deadline = time.monotonic() + 30
        while not list(tmp_path.glob(".episode_*.tmp-*")) and time.monotonic() < deadline:
            time.sleep(0.002)
        tmp_files = list(tmp_path.glob(".episode_*.tmp-*"))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert tmp_files, "the writer never created its temporary file"
    assert not (tmp_path / "episode_000000.npz").exists()
    assert list_episodes(tmp_path) == []  # the leftover temporary file is never listed
    with pytest.raises(EpisodeError, match="not found"):
        read_episode(tmp_path / "episode_000000.npz")


def test_truncated_or_foreign_file_is_refused(tmp_path):
    path = write_episode(episode_path(tmp_path, 0), make_episode())
    bad = tmp_path / "episode_000001.npz"
    bad.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(EpisodeError, match="corrupt"):
        read_episode(bad)
    np.savez(tmp_path / "episode_000002.npz", frames=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(EpisodeError, match="missing arrays"):
        read_episode(tmp_path / "episode_000002.npz")


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda kw: kw.update(frames=np.zeros((6, 8, 8), np.uint8)), "frames must be uint8"),
        (lambda kw: kw.update(actions=np.zeros((5, 8))), "actions must have shape"),
        (lambda kw: kw["joint_pos"].__setitem__((0, 0), np.nan), "NaN"),
        (lambda kw: kw.update(timestamps=np.zeros(6)), "strictly increasing"),
        (lambda kw: kw["meta"].pop("instruction"), "missing"),
    ],
)
def test_invalid_episodes_are_refused_with_a_reason(change, match):
    ep = make_episode()
    kw = {k: getattr(ep, k).copy() for k in ("frames", "joint_pos", "joint_vel", "actions", "timestamps")}
    kw["meta"] = dict(ep.meta)
    change(kw)
    with pytest.raises(EpisodeError, match=match):
        Episode(**kw)


def test_bad_names_and_indices(tmp_path):
    with pytest.raises(ValueError, match="episode_<index:06d>.npz"):
        write_episode(tmp_path / "ep.npz", make_episode())
    with pytest.raises(ValueError, match=">= 0"):
        episode_path(tmp_path, -1)
    with pytest.raises(FileNotFoundError):
        list_episodes(tmp_path / "missing")


def test_schema_version_mismatch_is_refused(tmp_path):
    path = write_episode(episode_path(tmp_path, 0), make_episode())
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    meta = json.loads(str(data["meta"]))
    meta["schema_version"] = 99
    data["meta"] = np.array(json.dumps(meta))
    np.savez(path, **data)
    with pytest.raises(EpisodeError, match="schema_version 99"):
        read_episode(path)


def test_windows_frames_actions_mask_and_next_frame(tmp_path):
    eps = [make_episode(T=5, seed=0), make_episode(T=4, seed=1)]
    paths = [write_episode(episode_path(tmp_path, i), ep) for i, ep in enumerate(eps)]
    ds = WindowDataset(paths, k_frames=2, chunk=3, frame_horizon=1)
    assert len(ds) == (5 - 1) + (4 - 1)
    first = ds[0]  # t = 0: the first frame repeats before the start
    assert first[FRAMES].shape == (2, 3, 8, 8)
    assert np.array_equal(first[FRAMES][0].numpy(), eps[0].frames[0].transpose(2, 0, 1))
    assert np.array_equal(first[FRAMES][1].numpy(), eps[0].frames[0].transpose(2, 0, 1))
    assert np.array_equal(first[NEXT_FRAME].numpy(), eps[0].frames[1].transpose(2, 0, 1))
    assert np.array_equal(first[JOINT_POS].numpy(), eps[0].joint_pos[0])
    last = ds[3]  # t = 3 of a 5-step episode: actions 3, 4, then padding
    assert last[ACTION_MASK].tolist() == [True, True, False]
    assert np.array_equal(last[ACTIONS].numpy(), eps[0].actions[[3, 4, 4]])
    assert np.array_equal(last[FRAMES][0].numpy(), eps[0].frames[2].transpose(2, 0, 1))


def test_windows_filter_and_refuse(tmp_path):
    good = make_episode(seed=0)
    bad = make_episode(seed=1, success=False)
    assert len(WindowDataset([good, bad], only_success=True)) == len(good) - 1
    with pytest.raises(ValueError, match="success=True"):
        WindowDataset([bad], only_success=True)
    with pytest.raises(ValueError, match="one frame size"):
        WindowDataset([good, make_episode(size=16)])
    with pytest.raises(ValueError, match=">= 1"):
        WindowDataset([good], chunk=0)
