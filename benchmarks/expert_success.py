"""The scripted experts and a random policy in closed loop, for any robot profile the tabletop sim builds.

    .venv/bin/python benchmarks/expert_success.py --robot xarm6 [--tasks reach push] [--episodes 50] [--json out.json]

Seeds from --seed-start (default 1,000,000: the test scenes of `wam eval`), the same scenes for both policies
(wam_ros.train.closed_loop). Prints successes and mean steps per task and policy.
"""

from __future__ import annotations

import argparse
import json

from wam_ros.train.closed_loop import closed_loop, expert_factory, random_factory


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--robot", default="panda", help="robot profile name or .yaml path")
    ap.add_argument("--tasks", nargs="+", default=["reach", "push"])
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--seed-start", type=int, default=1_000_000)
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()
    seeds = range(args.seed_start, args.seed_start + args.episodes)
    out: dict = {"robot": args.robot, "seed_start": args.seed_start}
    for task in args.tasks:
        res = closed_loop(
            {"expert": expert_factory(), "random": random_factory(0)}, task, seeds, robot=args.robot
        )
        out[task] = {
            k: {f: r[f] for f in ("successes", "episodes", "success_rate", "mean_steps")}
            for k, r in res.items()
        }
        for name, r in out[task].items():
            print(
                f"{args.robot} {task:5s} {name:6s} {r['successes']}/{r['episodes']}  mean steps {r['mean_steps']:.1f}"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
