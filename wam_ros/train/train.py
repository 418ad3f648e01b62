"""`wam train`: train the joint WAM on episodes (progress bar, checkpoints, resume, seeded, DDP via torchrun).

    wam train --data data/reach data/push --preset small --out runs/panda --steps 6000
    wam train --data data/reach --preset tiny --out /tmp/r --steps 20 --resume       # continue a run
    torchrun --nproc_per_node 2 -m wam_ros.train.train --data data/reach --out runs/ddp   # 2 CPU processes, gloo

Writes into --out: model.pt (the model checkpoint, see wam_ros.model.checkpoint), train_state.pt (optimizer, step,
RNG: what --resume needs), metrics.csv, loss_curves.png, train_args.json. Loss = action + frame_weight * frame;
--frame-weight 0 trains the action-only ablation (same network, the frame decoder gets no signal).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from wam_ros.data.windows import WindowArrays
from wam_ros.model import WamConfig, WorldActionModel, save_checkpoint
from wam_ros.model.batch import ACTION_MASK, ACTIONS, FRAMES, JOINT_POS, TOKENS
from wam_ros.model.losses import wam_loss
from wam_ros.model.tokenizer import extend_vocab
from wam_ros.train.batches import load_episodes
from wam_ros.train.plots import MetricsLog, plot_losses

log = logging.getLogger("wam.train")
STATE = "train_state.pt"


@dataclass
class TrainConfig:
    """Options of one training run (validated)."""

    data: list[str]
    out: str
    preset: str = "small"
    steps: int = 4000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 200
    frame_weight: float = 0.5
    seed: int = 0
    threads: int = 2
    ckpt_every: int = 500
    eval_every: int = 250
    val_frac: float = 0.05
    max_minutes: float = 0.0  # 0: no wall-clock limit
    resume: bool = False

    def __post_init__(self) -> None:
        if not self.data:
            raise ValueError("TrainConfig.data must name at least one episode directory")
        for name in ("steps", "batch_size", "threads", "ckpt_every", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr!r}")
        if self.frame_weight < 0:
            raise ValueError(f"TrainConfig.frame_weight must be >= 0, got {self.frame_weight!r}")
        if not 0.0 <= self.val_frac < 1.0:
            raise ValueError(f"TrainConfig.val_frac must be in [0, 1), got {self.val_frac!r}")
        if self.max_minutes < 0:
            raise ValueError(f"TrainConfig.max_minutes must be >= 0, got {self.max_minutes!r}")


class _TrainForward(nn.Module):
    """The module DDP wraps: its forward is the training forward (normalised deltas + frame)."""

    def __init__(self, model: WorldActionModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames, joint_pos, tokens, with_frame: bool):
        return self.model.forward_train(frames, joint_pos, tokens, with_frame)


def split_episodes(n: int, val_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Episode indices (train, val), split by episode (never by window) with a seeded permutation."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = min(int(round(n * val_frac)), n - 1)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def lr_at(step: int, cfg: TrainConfig, time_frac: float = 0.0) -> float:
    """Linear warm-up then cosine decay to 5% of the peak.

    With a wall-clock budget (--max-minutes) the decay follows whichever is further along, steps or time, so a run
    cut short by the budget still ends at a low learning rate (such a run is then only as deterministic as the
    machine's speed; without --max-minutes it depends on the seed alone).
    """
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = min(1.0, max(time_frac, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)))
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p)))


@torch.no_grad()
def validate(
    model: WorldActionModel, data: WindowArrays, idx: np.ndarray, frame_weight: float, batch_size: int = 128
) -> dict[str, float]:
    """Mean val losses + action MAE in raw units (absolute targets, masked) over the windows `idx`."""
    model.eval()
    sums = {"val_action": 0.0, "val_frame": 0.0, "val_action_mae": 0.0}
    n = 0
    for s in range(0, len(idx), batch_size):
        b = data.batch(idx[s : s + batch_size])
        out = wam_loss(
            model, b, frame_weight=1.0
        )  # always measure the frame loss, whatever the training weight
        action = model.forward_action(b[FRAMES], b[JOINT_POS], b[TOKENS])
        mask = b[ACTION_MASK][..., None].float()
        mae = ((action - b[ACTIONS]).abs() * mask).sum() / (mask.sum() * action.shape[-1])
        k = len(b[TOKENS])
        sums["val_action"] += float(out["action"]) * k
        sums["val_frame"] += float(out["frame"]) * k
        sums["val_action_mae"] += float(mae) * k
        n += k
    model.train()
    return {key: v / max(n, 1) for key, v in sums.items()}


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) training; returns the path of the final model checkpoint."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    rank = dist.get_rank() if world > 1 else 0
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE
    state = None
    if cfg.resume and state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    elif cfg.resume and rank == 0:
        log.warning("--resume: no %s yet, starting from scratch", state_path)

    episodes = load_episodes(cfg.data)
    if state is not None:
        mcfg = WamConfig.from_dict(state["config"])
    else:
        base = WamConfig.preset(cfg.preset)
        mcfg = WamConfig.preset(
            cfg.preset,
            vocab=extend_vocab(base.vocab, sorted({e.instruction for e in episodes})),
            num_joints=episodes[0].joint_pos.shape[1],
            joint_names=list(episodes[0].meta["robot"].get("joint_names", base.joint_names)),
            control_hz=float(episodes[0].meta["control_hz"]),
            robot=str(episodes[0].meta["robot"].get("name", base.robot)),
        )
    torch.manual_seed(cfg.seed)
    model = WorldActionModel(mcfg)
    train_ep, val_ep = split_episodes(len(episodes), cfg.val_frac, cfg.seed)
    data = WindowArrays(episodes, mcfg.k_frames, mcfg.chunk, mcfg.image_size, model.tokenizer)
    train_idx = np.flatnonzero(np.isin(data.episode, train_ep))
    val_idx = np.flatnonzero(np.isin(data.episode, val_ep))
    val_idx = val_idx[np.random.default_rng(cfg.seed).permutation(len(val_idx))[:1024]]
    if state is None:
        sub = (
            WindowArrays(
                [episodes[i] for i in train_ep], mcfg.k_frames, mcfg.chunk, mcfg.image_size, model.tokenizer
            )
            if len(val_ep)
            else data
        )
        model.set_normalizer(*map(torch.from_numpy, sub.normalizer_stats()))
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "emb" not in n and "queries" not in n]
    no_decay = [
        p for n, p in model.named_parameters() if not (p.ndim >= 2 and "emb" not in n and "queries" not in n)
    ]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
    )
    step, elapsed_before = 0, 0.0
    rng = np.random.default_rng(cfg.seed * 1000 + rank)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, elapsed_before = int(state["step"]), float(state["elapsed_s"])
        rng.bit_generator.state = state["rng"][rank] if rank < len(state["rng"]) else rng.bit_generator.state
        torch.set_rng_state(state["torch_rng"])
    model.train()
    fwd = _TrainForward(model)
    if world > 1:
        fwd = nn.parallel.DistributedDataParallel(fwd, find_unused_parameters=cfg.frame_weight == 0)
    metrics = MetricsLog(out / "metrics.csv") if rank == 0 else None
    if rank == 0:
        (out / "train_args.json").write_text(
            json.dumps(
                {
                    **vars(cfg),
                    "world_size": world,
                    "model_params": model.num_parameters(),
                    "episodes": len(episodes),
                    "windows": len(data),
                    "val_episodes": len(val_ep),
                },
                indent=2,
            )
        )
    t0 = time.monotonic()

    def sync_save() -> None:
        """Write model.pt + train_state.pt (rank 0) with every rank's sampler state, so a resume continues exactly."""
        rngs = [rng.bit_generator.state]
        if world > 1:
            rngs = [None] * world
            dist.all_gather_object(rngs, rng.bit_generator.state)
        if rank != 0:
            return
        elapsed = elapsed_before + time.monotonic() - t0
        save_checkpoint(
            out / "model.pt",
            model,
            extra={
                "step": step,
                "train_elapsed_s": round(elapsed, 1),
                "frame_weight": cfg.frame_weight,
                "data": list(cfg.data),
                "seed": cfg.seed,
                "world_size": world,
            },
        )
        tmp = out / f".{STATE}.tmp"
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "step": step,
                "elapsed_s": elapsed,
                "rng": rngs,
                "torch_rng": torch.get_rng_state(),
                "config": mcfg.to_dict(),
            },
            tmp,
        )
        os.replace(tmp, state_path)
        plot_losses(out / "metrics.csv", out / "loss_curves.png")

    from tqdm import tqdm

    bar = tqdm(
        total=cfg.steps, initial=step, desc="train", disable=rank != 0, dynamic_ncols=True, mininterval=2
    )
    per_rank = max(1, cfg.batch_size // world)
    stop = False

    def time_frac() -> float:
        if not cfg.max_minutes:
            return 0.0
        frac = torch.tensor([(elapsed_before + time.monotonic() - t0) / (cfg.max_minutes * 60)])
        if world > 1:  # all ranks use rank 0's clock
            dist.broadcast(frac, 0)
        return float(frac)

    lr = cfg.lr
    while step < cfg.steps and not stop:
        tf = time_frac()
        lr = lr_at(step, cfg, tf)
        for group in opt.param_groups:
            group["lr"] = lr
        batch = data.batch(rng.choice(train_idx, size=per_rank, replace=len(train_idx) < per_rank))
        losses = wam_loss(model, batch, cfg.frame_weight, forward=fwd)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        bar.update(1)
        stop = tf >= 1.0  # the same decision on every rank (rank 0's clock)
        row = None
        if step % 25 == 0 or step == 1:
            row = {
                "step": step,
                "elapsed_s": elapsed_before + time.monotonic() - t0,
                "lr": lr,
                **{k: float(v.detach()) for k, v in losses.items()},
            }
            bar.set_postfix(loss=f"{row['loss']:.4f}", act=f"{row['action']:.4f}", frm=f"{row['frame']:.5f}")
        if rank == 0 and len(val_idx) and (step % cfg.eval_every == 0 or step == cfg.steps or stop):
            row = {
                **(row or {"step": step, "elapsed_s": elapsed_before + time.monotonic() - t0}),
                **validate(model, data, val_idx, cfg.frame_weight),
            }
        if rank == 0 and row is not None:
            metrics.write(row)
        if step % cfg.ckpt_every == 0 or step == cfg.steps or stop:
            sync_save()
    bar.close()
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return out / "model.pt"


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig(data=["x"], out="x")
    p.add_argument("--data", nargs="+", required=True, help="episode directories (e.g. data/reach data/push)")
    p.add_argument("--out", required=True, help="run directory (model.pt, train_state.pt, metrics.csv, PNG)")
    p.add_argument("--preset", default=d.preset, choices=["tiny", "small"])
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument(
        "--batch-size", type=int, default=d.batch_size, help="global batch (split across DDP ranks)"
    )
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--warmup", type=int, default=d.warmup)
    p.add_argument("--frame-weight", type=float, default=d.frame_weight, help="0 = action-only ablation")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads per process")
    p.add_argument("--ckpt-every", type=int, default=d.ckpt_every)
    p.add_argument("--eval-every", type=int, default=d.eval_every)
    p.add_argument("--val-frac", type=float, default=d.val_frac, help="fraction of episodes held out")
    p.add_argument(
        "--max-minutes", type=float, default=d.max_minutes, help="stop (and save) after this wall time"
    )
    p.add_argument("--resume", action="store_true", help="continue from <out>/train_state.pt")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    keys = [f for f in TrainConfig.__dataclass_fields__]
    try:
        cfg = TrainConfig(**{k: getattr(args, k) for k in keys})
        path = train(cfg)
    except (ValueError, FileNotFoundError) as exc:
        print(f"wam train: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"wam train: wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point for `python -m wam_ros.train.train` (what torchrun launches)."""
    p = argparse.ArgumentParser(prog="wam train")
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
