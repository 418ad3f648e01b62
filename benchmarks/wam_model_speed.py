"""Joint WAM speed, side by side in one run: full forward (action + next frame) vs the action-only path, and one
training step of the joint objective vs the action-only ablation (frame weight 0), per preset.

    .venv/bin/python benchmarks/wam_model_speed.py --threads 1 --iters 30

Prints medians (ms) and the ratios; absolute times depend on the machine and its load, the ratios much less.
Interleaved timing (A, B, A, B, ...) so background load hits both sides alike.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from wam_ros.data.windows import WindowArrays
from wam_ros.model import WamConfig, WorldActionModel
from wam_ros.model.losses import wam_loss
from wam_ros.train.synthetic import synthetic_episode


def interleaved(fns: dict, iters: int, warmup: int = 3) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(warmup + iters):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if i >= warmup:
                times[name].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--batch", type=int, default=32, help="training batch")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    eps = [synthetic_episode(i) for i in range(8)]
    print(f"threads={args.threads} iters={args.iters} train batch={args.batch}")
    print(
        "| preset | params | fwd full ms | fwd action-only ms | ratio | train step joint ms | train step "
        "action-only ms | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for preset in ("tiny", "small"):
        print(bench_preset(preset, eps, args.batch, args.iters))


def bench_preset(preset: str, eps: list, batch_size: int, iters: int) -> str:
    torch.manual_seed(0)
    model = WorldActionModel(WamConfig.preset(preset))
    data = WindowArrays(eps, model.cfg.k_frames, model.cfg.chunk, model.cfg.image_size, model.tokenizer)
    one = data.batch(np.array([0]))
    batch = data.batch(np.random.default_rng(0).integers(0, len(data), batch_size))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(weight: float) -> None:
        loss = wam_loss(model, batch, weight)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    model.eval()
    with torch.no_grad():
        fwd = interleaved(
            {
                "full": lambda: model(one["frames"], one["joint_pos"], one["tokens"]),
                "action": lambda: model.forward_action(one["frames"], one["joint_pos"], one["tokens"]),
            },
            iters * 3,
        )
    model.train()
    tr = interleaved({"joint": lambda: step(0.5), "action": lambda: step(0.0)}, iters)
    return (
        f"| {preset} | {model.num_parameters():,} | {fwd['full']:.2f} | {fwd['action']:.2f} | "
        f"{fwd['full'] / fwd['action']:.2f} | {tr['joint']:.1f} | {tr['action']:.1f} | "
        f"{tr['joint'] / tr['action']:.2f} |"
    )


if __name__ == "__main__":
    main()
