"""Training windows over episodes: K past frames + joint state + instruction -> next N actions + next frame.

    data = WindowArrays(episodes, k_frames=2, chunk=8, image_size=64, tokenizer=model.tokenizer)
    batch = data.batch(np.arange(64))     # dict of torch tensors, the keys of wam_ros.model.batch

    ds = WindowDataset(list_episodes("data/reach"), k_frames=2, chunk=8)   # a torch Dataset view of the same
    item = ds[0]                          # one window, no batch dimension, + INSTRUCTION and TASK strings

One implementation of the window semantics (WindowArrays): one window per step t in [0, T-2], so each has at least
one real action and a real next frame; past frames repeat the first frame before the episode start; actions past the
end repeat the last one and are masked; the next frame is the one at t + frame_horizon, clamped to the last frame.
Every window's indices are computed once at load, so a batch is gathered with numpy fancy indexing (a batch of 64
costs ~1 ms, against ~64 per-item calls). Frames of another size are resized once at load (wam_ros.data.images.area_resize, as the runtime does).
Several cameras (`cameras`, issue 19): the first camera is the episodes' `frames` (the next frame is its), the others
their `<camera>_frames` arrays; FRAMES is then (B, M, K, 3, H, W).
The batch keys are defined in wam_ros.model.batch (the loss reads them) and re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from wam_ros.data.episode import Episode, camera_frames, read_episode
from wam_ros.data.images import area_resize
from wam_ros.model.batch import ACTION_MASK, ACTIONS, FRAMES, INSTRUCTION, JOINT_POS, NEXT_FRAME, TASK, TOKENS
from wam_ros.model.tokenizer import Tokenizer

__all__ = [
    "ACTIONS",
    "ACTION_MASK",
    "FRAMES",
    "INSTRUCTION",
    "JOINT_POS",
    "NEXT_FRAME",
    "TASK",
    "TOKENS",
    "WindowArrays",
    "WindowDataset",
    "resize_frames",
]


AUGMENT_SEED = 17  # mixed into every batch's augmentation generator with the batch's window indices


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 (T, h, w, 3) -> uint8 (T, size, size, 3)."""
    if frames.shape[1:3] == (size, size):
        return frames
    return np.stack([area_resize(f, (size, size)) for f in frames])


class WindowArrays:
    """All training windows of a list of episodes as flat arrays (see the module docstring).

    image_size: frames are resized to image_size x image_size; None keeps the recorded size (all episodes must
        then share one).
    tokenizer: encodes each episode's instruction into TOKENS; None leaves TOKENS out of the batches.
    augment: (instruction, generator) -> instruction, e.g. wam_ros.model.paraphrase.augment_instruction (a
        module-level function or functools.partial, so DataLoader workers can pickle it). When set (with a
        tokenizer), batch(idx) encodes augment(instruction of each window) instead of the episode's cached tokens,
        drawing from a generator seeded by `idx` (AUGMENT_SEED and every index), so one batch gives the same tokens
        in a worker process and in the main process. None: the cached tokens, as before.
    cameras: the model's cameras (WamConfig.cameras). One camera (the default): FRAMES (B, K, 3, H, W) from each
        episode's `frames`, whatever the camera's name. Several: FRAMES (B, M, K, 3, H, W), camera 0 from `frames`,
        each other camera from its `<camera>_frames` array (an episode without one is refused, naming it).
    """

    def __init__(
        self,
        episodes: Sequence[Episode],
        k_frames: int,
        chunk: int,
        image_size: int | None,
        tokenizer: Tokenizer | None,
        frame_horizon: int = 1,
        augment: Callable[[str, np.random.Generator], str] | None = None,
        cameras: Sequence[str] = ("front",),
    ) -> None:
        if k_frames < 1 or chunk < 1 or frame_horizon < 1:
            raise ValueError(
                f"k_frames, chunk and frame_horizon must be >= 1, got {k_frames}, {chunk}, {frame_horizon}"
            )
        if augment is not None and not callable(augment):
            raise ValueError(f"augment must be callable (instruction, generator) -> str, got {augment!r}")
        if not episodes:
            raise ValueError("WindowArrays needs at least one episode")
        joints = {ep.joint_pos.shape[1] for ep in episodes}
        if len(joints) != 1:
            raise ValueError(f"all episodes must have the same number of joints, got {sorted(joints)}")
        if image_size is None and len({ep.frames.shape[1:] for ep in episodes}) != 1:
            shapes = sorted({ep.frames.shape[1:] for ep in episodes})
            raise ValueError(f"all episodes must share one frame size, got {shapes}")
        self.k_frames, self.chunk, self.frame_horizon = k_frames, chunk, frame_horizon
        self.tokenizer = tokenizer
        self.augment = augment if tokenizer is not None else None
        self.cameras = list(cameras)
        if not self.cameras:
            raise ValueError("WindowArrays needs at least one camera")
        extra: list[list[np.ndarray]] = [[] for _ in self.cameras[1:]]  # the other cameras' frames
        frames, joint_pos, actions, tokens = [], [], [], []
        past, future, mask, nxt, ep_of, last = [], [], [], [], [], []
        offset = 0
        for e, ep in enumerate(episodes):
            T = len(ep)
            f = ep.frames if image_size is None else resize_frames(ep.frames, image_size)
            frames.append(f.transpose(0, 3, 1, 2))
            for m, cam in enumerate(camera_frames(ep, self.cameras)[1:]):
                if image_size is not None:
                    cam = resize_frames(cam, image_size)
                elif cam.shape[1:] != f.shape[1:]:
                    raise ValueError(
                        f"camera {self.cameras[m + 1]!r} has frames {cam.shape[1:]}, `frames` {f.shape[1:]}: "
                        "give an image_size to resize both"
                    )
                extra[m].append(cam.transpose(0, 3, 1, 2))
            joint_pos.append(ep.joint_pos)
            actions.append(ep.actions)
            if tokenizer is not None:
                tokens.append(tokenizer.encode(ep.instruction))
            t = np.arange(T - 1)
            past.append(offset + np.clip(t[:, None] + np.arange(-k_frames + 1, 1), 0, None))
            fut = t[:, None] + np.arange(chunk)
            future.append(offset + np.clip(fut, None, T - 1))
            mask.append(fut < T)
            nxt.append(offset + np.minimum(t + frame_horizon, T - 1))
            ep_of.append(np.full(T - 1, e))
            last.append(np.full(T - 1, offset + T - 1))
            offset += T
        self.frames = np.ascontiguousarray(np.concatenate(frames))  # (sum T, 3, H, W) uint8, the first camera
        self.other_frames = [np.ascontiguousarray(np.concatenate(e)) for e in extra]  # the others, alike
        self.joint_pos = np.concatenate(joint_pos).astype(np.float32)  # (sum T, J)
        self.actions = np.concatenate(actions).astype(np.float32)  # (sum T, J)
        self.tokens = np.stack(tokens) if tokenizer is not None else None  # (E, L)
        self.tasks = [ep.task for ep in episodes]
        self.instructions = [ep.instruction for ep in episodes]
        self.past, self.future = np.concatenate(past), np.concatenate(future)  # (W, K), (W, N)
        self.mask, self.next = np.concatenate(mask), np.concatenate(nxt)  # (W, N), (W,)
        self.episode = np.concatenate(ep_of)  # (W,)
        self.last = np.concatenate(last)  # (W,) index of the episode's last step
        self.current = self.past[:, -1]  # (W,) index of step t

    def __len__(self) -> int:
        return len(self.current)

    def batch(self, idx: np.ndarray, augment: bool = True) -> dict[str, torch.Tensor]:
        """The windows `idx` as one batch (keys and shapes: wam_ros.model.batch); augment=False gives the cached
        (template) tokens even when an augment function is set (validation batches)."""
        cur = self.current[idx]
        past = self.past[idx]
        frames = self.frames[past]  # (B, K, 3, H, W)
        if self.other_frames:  # (B, M, K, 3, H, W)
            frames = np.stack([frames, *(c[past] for c in self.other_frames)], axis=1)
        out = {
            FRAMES: torch.from_numpy(frames),
            JOINT_POS: torch.from_numpy(self.joint_pos[cur]),  # (B, J)
            ACTIONS: torch.from_numpy(self.actions[self.future[idx]]),  # (B, N, J)
            ACTION_MASK: torch.from_numpy(self.mask[idx]),  # (B, N)
            NEXT_FRAME: torch.from_numpy(self.frames[self.next[idx]]),  # (B, 3, H, W)
        }
        if self.augment is not None and augment:
            out[TOKENS] = torch.from_numpy(self.augmented_tokens(idx))  # (B, L)
        elif self.tokens is not None:
            out[TOKENS] = torch.from_numpy(self.tokens[self.episode[idx]])  # (B, L)
        return out

    def augmented_tokens(self, idx: np.ndarray) -> np.ndarray:
        """int64 (B, L): augment(instruction) of each window `idx`, encoded; the same `idx` gives the same tokens."""
        idx = np.asarray(idx).reshape(-1)
        rng = np.random.default_rng([AUGMENT_SEED, len(idx), *(int(i) % len(self) for i in idx)])
        texts = []
        for e in self.episode[idx]:
            text = self.augment(self.instructions[e], rng)
            if not isinstance(text, str):
                raise ValueError(
                    f"augment must return a str, got {type(text).__name__} for {self.instructions[e]!r}"
                )
            texts.append(text)
        return self.tokenizer.encode_batch(texts)

    def normalizer_stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(joint_mean (J,), joint_std (J,), delta_mean (N, J), delta_std (N, J)) over all windows."""
        q = self.joint_pos[self.current]
        delta = self.actions[self.future] - q[:, None, :]  # (W, N, J)
        m = self.mask[..., None].astype(np.float64)
        count = np.maximum(m.sum(0), 1.0)
        d_mean = (delta * m).sum(0) / count
        d_std = np.sqrt(((delta - d_mean) ** 2 * m).sum(0) / count)
        return q.mean(0), q.std(0), d_mean.astype(np.float32), d_std.astype(np.float32)


class WindowDataset(Dataset):
    """A torch Dataset view of WindowArrays: item i is window i without the batch dimension, with the episode's
    INSTRUCTION and TASK strings (no tokenizer needed). Frames keep their recorded size, so all episodes must share
    one; `only_success` drops failed episodes; `cameras` as WindowArrays'. For a DataLoader; the trainer gathers whole
    batches instead."""

    def __init__(
        self,
        episodes: Sequence[str | Path | Episode],
        k_frames: int = 2,
        chunk: int = 8,
        frame_horizon: int = 1,
        only_success: bool = False,
        cameras: Sequence[str] = ("front",),
    ) -> None:
        if k_frames < 1 or chunk < 1 or frame_horizon < 1:
            raise ValueError(
                f"k_frames, chunk and frame_horizon must be >= 1, got {k_frames}, {chunk}, {frame_horizon}"
            )
        eps = [ep if isinstance(ep, Episode) else read_episode(ep) for ep in episodes]
        eps = [ep for ep in eps if ep.success or not only_success]
        if not eps:
            raise ValueError(
                "WindowDataset needs at least one episode" + (" with success=True" if only_success else "")
            )
        self.episodes = eps
        self.windows = WindowArrays(eps, k_frames, chunk, None, None, frame_horizon, cameras=cameras)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"window {i} out of range for {len(self)} windows")
        item = {k: v[0] for k, v in self.windows.batch(np.array([i % len(self)])).items()}
        e = int(self.windows.episode[i])
        item[INSTRUCTION] = self.windows.instructions[e]
        item[TASK] = self.windows.tasks[e]
        return item
