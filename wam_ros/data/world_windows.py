"""Training windows for an imagining model (issue 16): the windows of WindowArrays plus what the imagination and the
progress critic learn from — the executed chunk, a horizon h, the frame and joints at t + h, and the outcome.

    base = WindowArrays(episodes, k_frames=2, chunk=8, image_size=64, tokenizer=model.tokenizer)
    data = WorldWindows(base, episodes)
    batch = data.batch(np.arange(64))     # base keys + wam_ros.model.batch.WORLD_KEYS

The executed chunk is `extra["executed_actions"]` where the episode has it (DART noise and DAgger episodes: the label
is the expert's, but the world moved by what was executed) and the actions otherwise. h is drawn uniformly in 0..N
for each window from a generator seeded by the window indices, so a batch is the same in a DataLoader worker and in
the main process. Past the episode end the future is the last row (the robot holds).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from wam_ros.data.episode import Episode
from wam_ros.data.windows import WindowArrays
from wam_ros.model.batch import (
    EXECUTED,
    FUTURE_FRAME,
    FUTURE_JOINTS,
    GOAL_DISTANCE,
    HORIZON,
    STEPS_TO_GO,
    SUCCESS,
)


class WorldWindows:
    """WindowArrays + the imagination/critic targets (see the module docstring); batch() like WindowArrays'."""

    def __init__(self, base: WindowArrays, episodes: Sequence[Episode], seed: int = 0) -> None:
        if len(episodes) != int(base.episode.max()) + 1:
            raise ValueError(
                f"WorldWindows: {len(episodes)} episodes, the windows index {base.episode.max() + 1}"
            )
        self.base, self.seed = base, int(seed)
        executed, goal = [], []
        for ep in episodes:
            ex = ep.extra.get("executed_actions")
            executed.append(np.asarray(ep.actions if ex is None else ex, dtype=np.float32))
            g = ep.extra.get("goal_distance")
            goal.append(np.full(len(ep), np.nan, np.float32) if g is None else np.asarray(g, np.float32))
        self.executed = np.concatenate(executed)
        self.goal = np.concatenate(goal)
        self.success = np.array([bool(ep.success) for ep in episodes], np.float32)

    def __len__(self) -> int:
        return len(self.base)

    def __getattr__(self, name: str):  # noqa: ANN204 - the base's arrays (episode, current, ...) read through
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    def batch(self, idx: np.ndarray, augment: bool = True) -> dict[str, torch.Tensor]:
        """The base windows' batch (augment: as WindowArrays.batch) + the imagination and critic targets."""
        b = self.base
        out = b.batch(idx, augment=augment)
        idx = np.asarray(idx)
        rng = np.random.default_rng([self.seed, len(idx), int(idx.sum()) % (2**32), int(idx[:1].sum())])
        h = rng.integers(0, b.chunk + 1, len(idx))
        cur, last = b.current[idx], b.last[idx]
        fut = np.minimum(cur + h, last)
        out[EXECUTED] = torch.from_numpy(self.executed[b.future[idx]])
        out[HORIZON] = torch.from_numpy(h.astype(np.int64))
        out[FUTURE_FRAME] = torch.from_numpy(b.frames[fut])
        out[FUTURE_JOINTS] = torch.from_numpy(b.joint_pos[fut])
        out[SUCCESS] = torch.from_numpy(self.success[b.episode[idx]])
        out[STEPS_TO_GO] = torch.from_numpy((last - fut).astype(np.float32))
        out[GOAL_DISTANCE] = torch.from_numpy(self.goal[fut])
        return out
