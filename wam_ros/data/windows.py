"""Training windows over episodes: K past frames + joint state + instruction -> next N actions + next frame.

    ds = WindowDataset(list_episodes("data/reach"), k_frames=2, chunk=8)
    item = ds[0]   # dict with the keys below (torch tensors, no batch dim)

Item keys (shared constants, used by the trainer and the model):
    FRAMES       uint8   (K, 3, H, W)  frames t-K+1 .. t (the first frame repeats before the episode start)
    JOINT_POS    float32 (J,)          joint positions at t
    ACTIONS      float32 (N, A)        absolute joint targets commanded at t .. t+N-1 (the last one repeats past the end)
    ACTION_MASK  bool    (N,)          False where the action was padded past the episode end
    NEXT_FRAME   uint8   (3, H, W)     the frame at t + frame_horizon (clamped to the last frame)
    INSTRUCTION  str                   the episode's instruction
    TASK         str

Windows start at every step t in [0, T-2]: each has at least one real action and a real next frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from wam_ros.data.episode import Episode, read_episode

FRAMES = "frames"
JOINT_POS = "joint_pos"
ACTIONS = "actions"
ACTION_MASK = "action_mask"
NEXT_FRAME = "next_frame"
INSTRUCTION = "instruction"
TASK = "task"


class WindowDataset(Dataset):
    """All windows of a list of episodes, held in memory (64x64 episodes are ~0.5 MB each)."""

    def __init__(self, episodes: Sequence[str | Path | Episode], k_frames: int = 2, chunk: int = 8,
                 frame_horizon: int = 1, only_success: bool = False) -> None:
        if k_frames < 1 or chunk < 1 or frame_horizon < 1:
            raise ValueError(f"k_frames, chunk and frame_horizon must be >= 1, got {k_frames}, {chunk}, {frame_horizon}")
        self.k_frames, self.chunk, self.frame_horizon = k_frames, chunk, frame_horizon
        self.episodes: list[Episode] = []
        for ep in episodes:
            ep = ep if isinstance(ep, Episode) else read_episode(ep)
            if only_success and not ep.success:
                continue
            self.episodes.append(ep)
        if not self.episodes:
            raise ValueError("WindowDataset needs at least one episode" + (" with success=True" if only_success else ""))
        shapes = {ep.frames.shape[1:] for ep in self.episodes}
        if len(shapes) != 1:
            raise ValueError(f"all episodes must share one frame size, got {sorted(shapes)}")
        self.index = [(e, t) for e, ep in enumerate(self.episodes) for t in range(len(ep) - 1)]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        e, t = self.index[i]
        ep = self.episodes[e]
        T = len(ep)
        past = np.clip(np.arange(t - self.k_frames + 1, t + 1), 0, None)
        future = np.arange(t, t + self.chunk)
        return {
            FRAMES: torch.from_numpy(np.ascontiguousarray(ep.frames[past].transpose(0, 3, 1, 2))),
            JOINT_POS: torch.from_numpy(ep.joint_pos[t]),
            ACTIONS: torch.from_numpy(ep.actions[np.clip(future, None, T - 1)]),
            ACTION_MASK: torch.from_numpy(future < T),
            NEXT_FRAME: torch.from_numpy(np.ascontiguousarray(ep.frames[min(t + self.frame_horizon, T - 1)]
                                                              .transpose(2, 0, 1))),
            INSTRUCTION: ep.instruction,
            TASK: ep.task,
        }
