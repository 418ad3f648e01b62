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

from wam_ros.data.episode import Episode, camera_frames
from wam_ros.data.windows import resize_frames
from wam_ros.model import WorldActionModel
from wam_ros.train.metrics import imagine, psnr


def model_window(model: WorldActionModel, episode: Episode, start: int) -> tuple[np.ndarray, torch.Tensor]:
    """(the main camera's frames (T, 3, H, W) uint8 at the model size, the model's frames input at step `start`:
    (1, K, 3, H, W), or (1, M, K, 3, H, W) for a model with several cameras: cfg.cameras from the episode's `frames`
    and `<camera>_frames`, EpisodeError naming a missing one)."""
    cfg = model.cfg
    past = np.clip(np.arange(start - cfg.k_frames + 1, start + 1), 0, None)
    cams = [
        resize_frames(f, cfg.image_size).transpose(0, 3, 1, 2) for f in camera_frames(episode, cfg.cameras)
    ]
    window = cams[0][past][None] if len(cams) == 1 else np.stack([c[past] for c in cams])[None]
    return cams[0], torch.from_numpy(np.ascontiguousarray(window))


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
    if not cfg.imagine and len(cfg.cameras) > 1:
        raise ValueError(
            f"the model sees cameras {cfg.cameras} and predicts only {cfg.cameras[0]!r}: rolling it forward on its "
            "own frames would need the other cameras' future frames (an imagining model dreams from the real "
            "start instead)"
        )
    frames, window = model_window(model, episode, start)  # frames: (T, 3, H, W) of the main camera
    joints = torch.from_numpy(episode.joint_pos[start : start + steps][None])
    tokens = torch.from_numpy(model.tokenizer.encode(episode.instruction)[None])
    if cfg.imagine:  # action-conditioned: the frames imagined after the actions really executed from `start`
        executed = episode.extra.get("executed_actions", episode.actions)
        idx = np.minimum(np.arange(start, start + cfg.chunk), T - 1)
        chunk = torch.from_numpy(np.asarray(executed, np.float32)[idx][None])
        q = torch.from_numpy(episode.joint_pos[start][None])
        with torch.no_grad():
            pred = model.imagine_frames(window, q, tokens, chunk)[0, :steps]
    else:
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


@torch.no_grad()
def dream_candidates(
    model: WorldActionModel,
    episode: Episode,
    start: int,
    candidates: int = 4,
    score: str = "goal",
    noise: float = 0.05,
    seed: int = 0,
) -> dict:
    """What the planner imagines at step `start` of a real episode (issue 16): `candidates` chunks proposed the way
    wam_ros.runtime.planner.BestOfN proposes them, each imagined 1..N steps ahead, scored and chosen as the planner
    does (its default margin and proximity).

    Returns {"real": (N, H, W, 3) uint8 the real future, "imagined": (C, N, H, W, 3) uint8, "critic": (C, 3),
    "score": (C,), "chosen": int, "modes": (C,)}."""
    from wam_ros.runtime.planner import BestOfN, PlannerConfig, choose, ranking

    cfg = model.cfg
    if not cfg.imagine:
        raise ValueError("--candidates needs a model trained with imagination (cfg.imagine)")
    T = len(episode)
    if not 0 <= start < T - 1:
        raise ValueError(f"--start must be in 0..{T - 2} for an episode of {T} steps, got {start}")
    frames, window = model_window(model, episode, start)
    q = torch.from_numpy(episode.joint_pos[start][None])
    tokens = torch.from_numpy(model.tokenizer.encode(episode.instruction)[None])
    proposals, probs, ctx = model.context(window, q, tokens)
    pcfg = PlannerConfig(candidates=candidates, noise=noise, score=score, seed=seed)  # the planner's defaults
    planner = BestOfN(None, pcfg)
    chunks, modes = planner.candidates(proposals[0].double().numpy(), probs[0].double().numpy())
    C = len(chunks)
    ch = torch.from_numpy(chunks.astype(np.float32))
    critic, _ = model.imagine_score(
        ctx.expand(C, -1, -1), tokens.expand(C, *tokens.shape[1:]), q.expand(C, -1), ch
    )
    imagined = model.imagine_frames(
        window.expand(C, *window.shape[1:]), q.expand(C, -1), tokens.expand(C, *tokens.shape[1:]), ch
    )
    values = ranking(critic.double().numpy(), chunks, pcfg)
    idx = np.minimum(np.arange(start + 1, start + 1 + cfg.chunk), T - 1)
    to_u8 = lambda x: (x.clamp(0, 1) * 255).round().byte().permute(*range(x.ndim - 3), -2, -1, -3).numpy()  # noqa: E731
    return {
        "real": frames[idx].transpose(0, 2, 3, 1),
        "imagined": to_u8(imagined),
        "critic": critic.double().numpy(),
        "score": values,
        "chosen": choose(values, np.ones(C, bool), pcfg.margin),  # as the planner would (no limits here)
        "modes": modes,
    }


def write_candidates(res: dict, out: str | Path, scale: int = 3) -> list[Path]:
    """A PNG grid (row 0: the real future; then one row per candidate, h = 1..N left to right, the chosen one framed
    in green, each labelled with its success probability and score) at `out`.png, and a GIF at `out` stepping
    through h with every candidate side by side."""
    from PIL import Image, ImageDraw

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    real, imagined = res["real"], res["imagined"]
    C, N, H, W, _ = imagined.shape
    pad, label = 3, 46
    p_success = 1.0 / (1.0 + np.exp(-res["critic"][:, 0]))

    def framed(img: np.ndarray, chosen: bool) -> np.ndarray:
        colour = (40, 200, 60) if chosen else (255, 255, 255)
        canvas = np.empty((H + 2 * pad, W + 2 * pad, 3), np.uint8)
        canvas[:] = colour
        canvas[pad:-pad, pad:-pad] = img
        return canvas

    rows = [np.concatenate([framed(f, False) for f in real], axis=1)]
    for c in range(C):
        rows.append(np.concatenate([framed(f, c == res["chosen"]) for f in imagined[c]], axis=1))
    grid = np.concatenate(rows, axis=0)
    grid = np.concatenate([np.full((grid.shape[0], label, 3), 255, np.uint8), grid], axis=1)
    img = Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)
    draw = ImageDraw.Draw(img)
    step = (H + 2 * pad) * scale
    draw.text((4, step // 2 - 6), "real", fill=(0, 0, 0))
    for c in range(C):
        tag = f"#{c}{' *' if c == res['chosen'] else ''}\np={p_success[c]:.2f}\ns={res['score'][c]:.2f}"
        draw.text((4, (c + 1) * step + 4), tag, fill=(0, 0, 0))
    png = out.with_suffix(out.suffix + ".png")
    img.save(png)
    frames = []
    for h in range(N):
        row = np.concatenate(
            [framed(real[h], False)] + [framed(imagined[c, h], c == res["chosen"]) for c in range(C)], axis=1
        )
        frames.append(
            Image.fromarray(row).resize((row.shape[1] * scale, row.shape[0] * scale), Image.NEAREST)
        )
    frames[0].save(out, save_all=True, append_images=frames[1:], duration=300, loop=0)
    return [out, png]
