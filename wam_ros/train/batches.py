"""In-memory training batches over episodes, gathered with numpy fancy indexing (no per-item Python).

    data = WindowArrays(episodes, k_frames=2, chunk=8, image_size=64, tokenizer=model.tokenizer)
    batch = data.batch(np.arange(64))     # dict of torch tensors, keys of wam_ros.data.windows + "tokens"

Same window semantics as `wam_ros.data.windows.WindowDataset` (one window per step t in [0, T-2]; past frames repeat
the first frame before the start; actions past the end repeat the last one and are masked), but a batch of 64 costs
~1 ms instead of ~64 `__getitem__` calls. Frames of another size are resized once at load (cv2 INTER_AREA).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from wam_ros.data.episode import Episode, list_episodes, read_episode
from wam_ros.data.windows import ACTION_MASK, ACTIONS, FRAMES, JOINT_POS, NEXT_FRAME
from wam_ros.model.losses import TOKENS
from wam_ros.model.tokenizer import Tokenizer


def load_episodes(dirs: Sequence[str | Path], only_success: bool = True) -> list[Episode]:
    """Every complete episode under the given directories (successful ones only, by default).

    DAgger episodes (meta "dagger", `wam collect --dagger`) are kept whatever their outcome: the model drove them and
    the expert labelled every step, so a failure is exactly the state whose correction is to be learned."""
    eps: list[Episode] = []
    for d in dirs:
        paths = list_episodes(d)
        if not paths:
            raise ValueError(f"no episode_*.npz files under {d}")
        eps.extend(
            ep for ep in map(read_episode, paths) if ep.success or not only_success or ep.meta.get("dagger")
        )
    if not eps:
        raise ValueError(f"no {'successful ' if only_success else ''}episodes in {list(map(str, dirs))}")
    return eps


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 (T, h, w, 3) -> uint8 (T, size, size, 3)."""
    if frames.shape[1:3] == (size, size):
        return frames
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])


class WindowArrays:
    """All training windows of a list of episodes as flat arrays."""

    def __init__(
        self, episodes: Sequence[Episode], k_frames: int, chunk: int, image_size: int, tokenizer: Tokenizer
    ) -> None:
        if not episodes:
            raise ValueError("WindowArrays needs at least one episode")
        joints = {ep.joint_pos.shape[1] for ep in episodes}
        if len(joints) != 1:
            raise ValueError(f"all episodes must have the same number of joints, got {sorted(joints)}")
        self.k_frames, self.chunk = k_frames, chunk
        frames, joint_pos, actions, tokens, tasks = [], [], [], [], []
        past, future, mask, nxt, ep_of, last = [], [], [], [], [], []
        offset = 0
        for e, ep in enumerate(episodes):
            T = len(ep)
            frames.append(resize_frames(ep.frames, image_size).transpose(0, 3, 1, 2))
            joint_pos.append(ep.joint_pos)
            actions.append(ep.actions)
            tokens.append(tokenizer.encode(ep.instruction))
            tasks.append(ep.task)
            t = np.arange(T - 1)
            past.append(offset + np.clip(t[:, None] + np.arange(-k_frames + 1, 1), 0, None))
            fut = t[:, None] + np.arange(chunk)
            future.append(offset + np.clip(fut, None, T - 1))
            mask.append(fut < T)
            nxt.append(offset + t + 1)
            ep_of.append(np.full(T - 1, e))
            last.append(np.full(T - 1, offset + T - 1))
            offset += T
        self.frames = np.ascontiguousarray(np.concatenate(frames))  # (sum T, 3, H, W) uint8
        self.joint_pos = np.concatenate(joint_pos).astype(np.float32)  # (sum T, J)
        self.actions = np.concatenate(actions).astype(np.float32)  # (sum T, J)
        self.tokens = np.stack(tokens)  # (E, L)
        self.tasks = tasks
        self.past, self.future = np.concatenate(past), np.concatenate(future)  # (W, K), (W, N)
        self.mask, self.next = np.concatenate(mask), np.concatenate(nxt)  # (W, N), (W,)
        self.episode = np.concatenate(ep_of)  # (W,)
        self.last = np.concatenate(last)  # (W,) index of the episode's last step
        self.current = self.past[:, -1]  # (W,) index of step t

    def __len__(self) -> int:
        return len(self.current)

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        cur = self.current[idx]
        return {
            FRAMES: torch.from_numpy(self.frames[self.past[idx]]),  # (B, K, 3, H, W)
            JOINT_POS: torch.from_numpy(self.joint_pos[cur]),  # (B, J)
            ACTIONS: torch.from_numpy(self.actions[self.future[idx]]),  # (B, N, J)
            ACTION_MASK: torch.from_numpy(self.mask[idx]),  # (B, N)
            NEXT_FRAME: torch.from_numpy(self.frames[self.next[idx]]),  # (B, 3, H, W)
            TOKENS: torch.from_numpy(self.tokens[self.episode[idx]]),  # (B, L)
        }

    def normalizer_stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(joint_mean (J,), joint_std (J,), delta_mean (N, J), delta_std (N, J)) over all windows."""
        q = self.joint_pos[self.current]
        delta = self.actions[self.future] - q[:, None, :]  # (W, N, J)
        m = self.mask[..., None].astype(np.float64)
        count = np.maximum(m.sum(0), 1.0)
        d_mean = (delta * m).sum(0) / count
        d_std = np.sqrt(((delta - d_mean) ** 2 * m).sum(0) / count)
        return q.mean(0), q.std(0), d_mean.astype(np.float32), d_std.astype(np.float32)
