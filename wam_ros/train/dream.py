"""Imagination rollout from a real start; real vs imagined side by side (GIF + PNG strip): `wam dream`.

    real, imagined, scores = dream(load_checkpoint(path), read_episode(ep_path), start=2, steps=8)
    write_side_by_side(real, imagined, "dream.gif")
    wam dream --model models/panda_tabletop --episode data/reach/episode_000003.npz --start 2 --steps 8 --out dream.gif

The model sees the real frames up to --start, then only its own predicted frames for --steps steps
(--proprio real: measured joint positions are still fed; imagined: its own action targets). Prints PSNR per step
against copy-last-frame. Writes <out> (GIF, left real, right imagined, upscaled) and <out>.png (top real, bottom
imagined).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from wam_ros.data.episode import Episode
from wam_ros.data.windows import resize_frames
from wam_ros.model import WorldActionModel
from wam_ros.train.metrics import imagine, psnr


def dream(
    model: WorldActionModel, episode: Episode, start: int, steps: int, proprio: str = "real"
) -> tuple[np.ndarray, np.ndarray, dict[str, list[float]]]:
    """(real frames (steps, H, W, 3) uint8, imagined (steps, H, W, 3) uint8, {"psnr": [...], "copy_last": [...]})."""
    cfg = model.cfg
    T = len(episode)
    if not 0 <= start < T - 1:
        raise ValueError(f"--start must be in 0..{T - 2} for an episode of {T} steps, got {start}")
    if steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    steps = min(steps, T - 1 - start)
    frames = resize_frames(episode.frames, cfg.image_size).transpose(0, 3, 1, 2)  # (T, 3, H, W)
    past = np.clip(np.arange(start - cfg.k_frames + 1, start + 1), 0, None)
    window = torch.from_numpy(frames[past][None])
    joints = torch.from_numpy(episode.joint_pos[start : start + steps][None])
    tokens = torch.from_numpy(model.tokenizer.encode(episode.instruction)[None])
    pred = imagine(model, window, tokens, joints, steps, proprio)[0]  # (h, 3, H, W)
    real = torch.from_numpy(frames[start + 1 : start + 1 + steps]).float() / 255.0
    last = torch.from_numpy(frames[start]).float()[None].expand_as(real) / 255.0
    scores = {"psnr": psnr(pred, real).tolist(), "copy_last": psnr(last, real).tolist()}
    to_u8 = lambda x: (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()  # noqa: E731
    return to_u8(real), to_u8(pred), scores


def write_side_by_side(real: np.ndarray, imagined: np.ndarray, out: str | Path, scale: int = 4) -> list[Path]:
    """GIF at `out` (real | imagined per frame) and a PNG strip at `out`.png (row 1 real, row 2 imagined)."""
    from PIL import Image

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    gap = np.full((real.shape[1], 2, 3), 255, np.uint8)
    pairs = [np.concatenate([r, gap, i], axis=1) for r, i in zip(real, imagined, strict=True)]
    big = [Image.fromarray(p).resize((p.shape[1] * scale, p.shape[0] * scale), Image.NEAREST) for p in pairs]
    big[0].save(out, save_all=True, append_images=big[1:], duration=300, loop=0)
    strip = np.concatenate(
        [np.concatenate(list(real), axis=1), np.concatenate(list(imagined), axis=1)], axis=0
    )
    png = out.with_suffix(out.suffix + ".png")
    Image.fromarray(strip).resize((strip.shape[1] * 2, strip.shape[0] * 2), Image.NEAREST).save(png)
    return [out, png]
