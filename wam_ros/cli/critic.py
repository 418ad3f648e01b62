"""`wam critic`: counterfactual data for the planner's progress critic, and the critic head's refit (issue 16).

    wam critic collect --model runs/wam6/model.pt --task push --episodes 150 --seed-start 3000000 --out data/critic_push
    wam critic finetune --model runs/wam6/model.pt --data data/critic_push data/critic_reach --out runs/wam6_critic
    wam critic finetune --end-to-end --steps 600 --model runs/wam6/model.pt --data data/critic_push --out runs/wam6_e2e
    wam critic finetune --end-to-end --anchor data/reach data/push --model ... --data data/critic_push --out ...

collect: the learner drives the tabletop; every candidate chunk of every planning decision is rolled out in a copy of
the simulator and its true outcome recorded (wam_ros.train.critic_data). finetune: the critic head's goal-distance
output learns those outcomes from the frozen network's imagined states (with --end-to-end the imagination learns them
too, through a per-decision ranking loss); prints held-out ranking figures before and after. Exit status 0, or 2 on bad arguments or data.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    c = sub.add_parser("collect", help="roll the learner out; label every candidate chunk in the simulator")
    c.add_argument("--model", required=True, help="an imagining model (.pt or directory)")
    c.add_argument("--task", default="push", help="reach | push")
    c.add_argument("--episodes", type=int, default=100)
    c.add_argument(
        "--seed-start", type=int, default=3_000_000, help="scene seeds (keep apart from eval seeds)"
    )
    c.add_argument("--candidates", type=int, default=16)
    c.add_argument(
        "--noise", type=float, default=0.05, help="the planner's perturbation (rad at the chunk end)"
    )
    c.add_argument("--replan", type=int, default=4)
    c.add_argument(
        "--follow-oracle", type=float, default=0.5, help="probability of executing the oracle's pick"
    )
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--out", required=True)
    f = sub.add_parser("finetune", help="refit the critic head on collected counterfactual outcomes")
    f.add_argument("--model", required=True)
    f.add_argument("--data", nargs="+", required=True, help="folders of critic_*.npz")
    f.add_argument("--out", required=True, help="folder for the refitted model.pt and critic_finetune.json")
    f.add_argument("--steps", type=int, default=3000)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument(
        "--end-to-end",
        action="store_true",
        help="train the imagination with the critic (ranking loss per decision), not the critic head alone",
    )
    f.add_argument(
        "--rank-weight", type=float, default=1.0, help="weight of the ranking loss with --end-to-end"
    )
    f.add_argument(
        "--anchor",
        nargs="+",
        default=None,
        help="with --end-to-end: the model's demonstration folders; their windows keep the imagined frames "
        "(the training loss on them is added at every step)",
    )
    f.add_argument("--anchor-weight", type=float, default=1.0, help="weight of the anchor windows' loss")
    f.add_argument("--anchor-batch", type=int, default=16, help="anchor windows per step")
    f.add_argument("--lr", type=float, default=3e-4, help="learning rate with --end-to-end")
    f.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, one per core)")


def run(args: argparse.Namespace) -> int:
    from wam_ros.cli import config_from_args
    from wam_ros.train.critic_data import CriticDataConfig, collect, finetune

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.action == "collect":
            print(f"wam critic: wrote {collect(config_from_args(CriticDataConfig, args))}")
        else:
            report = finetune(
                args.model,
                args.data,
                args.out,
                steps=args.steps,
                seed=args.seed,
                end_to_end=args.end_to_end,
                rank_weight=args.rank_weight,
                anchor=args.anchor,
                anchor_weight=args.anchor_weight,
                anchor_batch=args.anchor_batch,
                lr=args.lr,
                threads=args.threads,
            )
            print(json.dumps(report, indent=2))
    except (ValueError, FileNotFoundError) as exc:
        print(f"wam critic: {exc}", file=sys.stderr)
        return 2
    return 0
