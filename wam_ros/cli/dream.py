"""`wam dream`: imagination rollout from a real start; writes real vs imagined side by side (GIF + PNG strip).

    wam dream --model models/panda_tabletop --episode data/reach/episode_000003.npz --start 2 --steps 8 --out dream.gif

The model sees the real frames up to --start, then only its own predicted frames for --steps steps (wam_ros.train.dream).
Prints PSNR per step against copy-last-frame. Exit status 0, or 2 on a bad model, episode or range.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    from wam_ros.train.metrics import PROPRIO_MODES

    p.add_argument("--model", required=True, help="model directory or .pt checkpoint")
    p.add_argument("--episode", required=True, help="an episode_*.npz file (the real start and ground truth)")
    p.add_argument("--start", type=int, default=0, help="last real step")
    p.add_argument("--steps", type=int, default=8, help="imagination horizon")
    p.add_argument("--proprio", choices=PROPRIO_MODES, default="real")
    p.add_argument("--out", default="dream.gif", help="GIF path (a PNG strip goes beside it)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--candidates",
        type=int,
        default=0,
        help="draw what the planner imagines: this many candidate chunks side by side with their scores and the one "
        "chosen (needs an imagining model)",
    )
    p.add_argument("--score", default="goal", help="with --candidates: the critic score (see wam eval)")


def run(args: argparse.Namespace) -> int:
    import torch

    from wam_ros.data.episode import read_episode
    from wam_ros.model import load_checkpoint
    from wam_ros.runtime.text_encoder import attach_text_encoder
    from wam_ros.train.dream import dream, write_side_by_side

    torch.set_num_threads(args.threads)
    try:
        model = attach_text_encoder(load_checkpoint(args.model, require_fitted=True), args.model)
        episode = read_episode(args.episode)
        if args.candidates:
            return _candidates(model, episode, args)
        real, imagined, scores = dream(model, episode, args.start, args.steps, args.proprio)
    except (ValueError, FileNotFoundError) as exc:
        print(f"wam dream: {exc}", file=sys.stderr)
        return 2
    paths = write_side_by_side(real, imagined, args.out)
    print(f"instruction: {episode.instruction!r}; start step {args.start}; proprio {args.proprio}")
    print("step  psnr_model  psnr_copy_last")
    for h, (a, b) in enumerate(zip(scores["psnr"], scores["copy_last"], strict=True), start=1):
        print(f"{h:4d}  {a:10.2f}  {b:14.2f}")
    print("wrote " + ", ".join(map(str, paths)))
    return 0


def _candidates(model, episode, args: argparse.Namespace) -> int:  # noqa: ANN001 - model, Episode
    import numpy as np

    from wam_ros.model.modeling import DIST_SCALE, STEPS_SCALE
    from wam_ros.train.dream import dream_candidates, write_candidates

    res = dream_candidates(model, episode, args.start, args.candidates, score=args.score)
    paths = write_candidates(res, args.out)
    print(f"instruction: {episode.instruction!r}; start step {args.start}; {len(res['score'])} candidates")
    print("cand  mode  p_success  steps_to_go  goal_dist_m  score")
    for c, (crit, s, m) in enumerate(zip(res["critic"], res["score"], res["modes"], strict=True)):
        mark = "  <- chosen" if c == res["chosen"] else ""
        p = 1.0 / (1.0 + np.exp(-crit[0]))
        print(
            f"{c:4d}  {m:4d}  {p:9.3f}  {crit[1] * STEPS_SCALE:11.1f}  {crit[2] * DIST_SCALE:11.3f}  {s:5.3f}{mark}"
        )
    print("wrote " + ", ".join(map(str, paths)))
    return 0
