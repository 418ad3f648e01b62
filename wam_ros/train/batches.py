"""The training set: which episodes a run trains on, and the stream of batches a run draws from it.

    episodes = load_episodes(["data/reach", "data/push"])          # successful (and DAgger) episodes
    data = WindowArrays(episodes, k_frames=2, chunk=8, image_size=64, tokenizer=model.tokenizer)
    stream = BatchStream(data, train_idx, size=64, rng=rng, workers=2)   # batch after batch (DataLoader workers)

The windows and batches themselves are wam_ros.data.windows.WindowArrays (the one implementation).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from wam_ros.data.episode import Episode, list_episodes, read_episode
from wam_ros.data.windows import WindowArrays


def load_episodes(dirs: Sequence[str | Path], only_success: bool = True) -> list[Episode]:
    """Every complete episode under the given directories (successful ones only, by default).

    DAgger episodes (meta "dagger", `wam collect --dagger`) are kept whatever their outcome: the model drove them and
    the expert labelled every step, so a failure is exactly the state whose correction is to be learned.

    Every episode must have the same joints (meta.robot.joint_names, in order): one model drives one robot, and a
    column of another robot's episode would be learned as the wrong joint (ValueError naming both)."""
    eps: list[Episode] = []
    first: tuple[list[str], str] | None = None
    for d in dirs:
        paths = list_episodes(d)
        if not paths:
            raise ValueError(f"no episode_*.npz files under {d}")
        for path, ep in zip(paths, map(read_episode, paths), strict=True):
            joints = list(ep.meta["robot"].get("joint_names", []))
            if first is None:
                first = (joints, str(path))
            elif joints != first[0]:
                raise ValueError(
                    f"{path} has joints {joints} (robot {ep.meta['robot'].get('name')!r}), {first[1]} has "
                    f"{first[0]}: train one robot's episodes at a time"
                )
            if ep.success or not only_success or ep.meta.get("dagger"):
                eps.append(ep)
    if not eps:
        raise ValueError(f"no {'successful ' if only_success else ''}episodes in {list(map(str, dirs))}")
    return eps


class _Gather(Dataset):
    """Item `idx` (an array of window indices) is the whole batch data.batch(idx): workers gather batches."""

    def __init__(self, data: WindowArrays) -> None:
        self.data = data

    def __getitem__(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        return self.data.batch(idx)


class _Draws(Sampler):
    """The stream's index draws, one array per step, forever (drawn in the main process, so in the same order and
    from the same generator as without workers); records the generator state after each draw."""

    def __init__(self, stream: BatchStream) -> None:
        self.stream = stream

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            idx = self.stream.draw()
            self.stream._after.append(self.stream.rng.bit_generator.state)
            yield idx


class BatchStream:
    """The training batches of one rank, in order: batch k is data.batch(rng.choice(pool, size)) for the k-th draw.

        stream = BatchStream(data, train_idx, size=64, rng=np.random.default_rng(0), workers=2, pin_memory=True)
        batch = stream.next()          # dict of CPU tensors (pinned when pin_memory), keys of wam_ros.model.batch
        state = stream.rng_state()     # the generator state after the batches handed out so far (for a resume)
        stream.close()                 # stops the workers

    workers=0 gathers in the calling process. workers>0 gathers in a torch DataLoader's worker processes (persistent,
    `prefetch` batches ahead each); the indices are still drawn here, from `rng`, in order, so the batches are the
    same as with workers=0 for the same generator. Drawing ahead moves `rng` past the batches handed out; rng_state()
    returns the state recorded after the draw of the last batch handed out, which is what a resume must restore.
    The pool is sampled without replacement within a batch (with replacement when it is smaller than the batch).
    """

    def __init__(
        self,
        data: WindowArrays,
        pool: np.ndarray,
        size: int,
        rng: np.random.Generator,
        workers: int = 0,
        pin_memory: bool = False,
        prefetch: int = 2,
    ) -> None:
        if size < 1 or workers < 0 or prefetch < 1:
            raise ValueError(
                f"need size >= 1, workers >= 0, prefetch >= 1; got {size}, {workers}, {prefetch}"
            )
        if not len(pool):
            raise ValueError("BatchStream needs a non-empty pool of windows to sample from")
        self.data, self.pool, self.size, self.rng = data, pool, size, rng
        self.replace = len(pool) < size
        self.pin_memory = pin_memory
        self._after: deque[dict] = deque()
        self._consumed = rng.bit_generator.state
        self._it: Iterator | None = None
        if workers:
            loader = DataLoader(
                _Gather(data),
                batch_size=None,  # the sampler yields whole index arrays
                sampler=_Draws(self),
                num_workers=workers,
                pin_memory=pin_memory,
                persistent_workers=True,
                prefetch_factor=prefetch,
            )
            self._it = iter(loader)

    def draw(self) -> np.ndarray:
        return self.rng.choice(self.pool, size=self.size, replace=self.replace)

    def next(self) -> dict[str, torch.Tensor]:
        if self._it is None:
            batch = self.data.batch(self.draw())
            if self.pin_memory:
                batch = {k: v.pin_memory() for k, v in batch.items()}
            return batch
        batch = next(self._it)
        self._consumed = self._after.popleft()
        return batch

    def rng_state(self) -> dict:
        """The generator state right after the last batch handed out (== rng's state without workers)."""
        return self.rng.bit_generator.state if self._it is None else self._consumed

    def close(self) -> None:
        """Stop the worker processes (no-op without workers); the stream cannot be used afterwards."""
        it, self._it = self._it, None
        if it is not None:
            it._shutdown_workers()  # what the iterator's __del__ does, done now rather than at collection
