"""Training windows (wam_ros.data.windows): the one implementation (WindowArrays) gives, for every window, exactly
the sample a plain per-window reading of the episode gives; its torch Dataset view gives the same items."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_episode import make_episode  # random episodes inside the Panda's limits

from wam_ros.data import windows
from wam_ros.data.episode import Episode, episode_path, write_episode
from wam_ros.data.windows import WindowArrays, WindowDataset
from wam_ros.model import batch as keys
from wam_ros.model.batch import ACTION_MASK, ACTIONS, FRAMES, INSTRUCTION, JOINT_POS, NEXT_FRAME, TASK, TOKENS
from wam_ros.model.tokenizer import PAD, UNK, Tokenizer, extend_vocab


def reference_window(ep: Episode, t: int, k: int, n: int, h: int) -> dict[str, np.ndarray]:
    """Window t of one episode read step by step (the definition, written independently of WindowArrays)."""
    T = len(ep)
    past = [max(s, 0) for s in range(t - k + 1, t + 1)]
    future = list(range(t, t + n))
    return {
        FRAMES: np.stack([ep.frames[s].transpose(2, 0, 1) for s in past]),
        JOINT_POS: ep.joint_pos[t].astype(np.float32),
        ACTIONS: np.stack([ep.actions[min(s, T - 1)] for s in future]).astype(np.float32),
        ACTION_MASK: np.array([s < T for s in future]),
        NEXT_FRAME: ep.frames[min(t + h, T - 1)].transpose(2, 0, 1),
    }


def test_batch_keys_are_defined_once_in_the_model_layer():
    assert (FRAMES, JOINT_POS, ACTIONS, ACTION_MASK, NEXT_FRAME, TOKENS) == keys.BATCH_KEYS
    assert windows.FRAMES is keys.FRAMES and windows.TOKENS is keys.TOKENS  # re-exported, not redefined


@pytest.mark.parametrize(("k", "n", "h"), [(1, 1, 1), (2, 3, 1), (3, 8, 2), (4, 5, 6)])
def test_every_window_is_the_reference_sample(k, n, h):
    eps = [make_episode(T=T, seed=s) for s, T in enumerate((2, 5, 9, 3))]
    tok = Tokenizer(extend_vocab([PAD, UNK], ["reach the red target"]), max_tokens=6)
    data = WindowArrays(eps, k, n, 8, tok, frame_horizon=h)
    expected = [(e, t) for e, ep in enumerate(eps) for t in range(len(ep) - 1)]
    assert len(data) == len(expected) == 1 + 4 + 8 + 2
    batch = data.batch(np.arange(len(data)))
    for i, (e, t) in enumerate(expected):
        ref = reference_window(eps[e], t, k, n, h)
        for key, want in ref.items():
            got = batch[key][i].numpy()
            assert got.dtype == want.dtype and np.array_equal(got, want), (key, e, t)
        assert np.array_equal(batch[TOKENS][i].numpy(), tok.encode(eps[e].instruction))
    shuffled = np.random.default_rng(0).permutation(len(data))[:7]  # any index order gathers the same windows
    for key, value in data.batch(shuffled).items():
        assert torch.equal(value, batch[key][shuffled]), key


def test_frames_of_another_size_are_resized_once_at_load():
    data = WindowArrays([make_episode(size=16), make_episode(size=8, seed=1)], 2, 3, 8, None)
    assert data.frames.shape[1:] == (3, 8, 8) and TOKENS not in data.batch(np.arange(2))
    with pytest.raises(ValueError, match="one frame size"):
        WindowArrays([make_episode(size=16), make_episode(size=8, seed=1)], 2, 3, None, None)


def test_dataset_view_items_are_the_batch_rows(tmp_path):
    eps = [make_episode(T=5, seed=0), make_episode(T=4, seed=1, task="push", instruction="push it")]
    paths = [write_episode(episode_path(tmp_path, i), ep) for i, ep in enumerate(eps)]
    ds = WindowDataset(paths, k_frames=2, chunk=3, frame_horizon=1)
    assert len(ds) == (5 - 1) + (4 - 1)
    first = ds[0]  # t = 0: the first frame repeats before the start
    assert first[FRAMES].shape == (2, 3, 8, 8)
    assert np.array_equal(first[FRAMES][0].numpy(), eps[0].frames[0].transpose(2, 0, 1))
    assert np.array_equal(first[FRAMES][1].numpy(), eps[0].frames[0].transpose(2, 0, 1))
    assert np.array_equal(first[NEXT_FRAME].numpy(), eps[0].frames[1].transpose(2, 0, 1))
    assert np.array_equal(first[JOINT_POS].numpy(), eps[0].joint_pos[0].astype(np.float32))
    last = ds[3]  # t = 3 of a 5-step episode: actions 3, 4, then padding
    assert last[ACTION_MASK].tolist() == [True, True, False]
    assert np.array_equal(last[ACTIONS].numpy(), eps[0].actions[[3, 4, 4]].astype(np.float32))
    assert np.array_equal(last[FRAMES][0].numpy(), eps[0].frames[2].transpose(2, 0, 1))
    assert (ds[4][INSTRUCTION], ds[4][TASK]) == ("push it", "push")
    rows = ds.windows.batch(np.arange(len(ds)))
    for i in range(len(ds)):
        for key, value in rows.items():
            assert torch.equal(ds[i][key], value[i])
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_dataset_view_filter_and_refuse():
    good = make_episode(seed=0)
    bad = make_episode(seed=1, success=False)
    assert len(WindowDataset([good, bad], only_success=True)) == len(good) - 1
    with pytest.raises(ValueError, match="success=True"):
        WindowDataset([bad], only_success=True)
    with pytest.raises(ValueError, match="one frame size"):
        WindowDataset([good, make_episode(size=16)])
    with pytest.raises(ValueError, match=">= 1"):
        WindowDataset([good], chunk=0)
    with pytest.raises(ValueError, match=">= 1"):
        WindowArrays([good], 0, 3, 8, None)
    with pytest.raises(ValueError, match="at least one episode"):
        WindowArrays([], 2, 3, 8, None)
