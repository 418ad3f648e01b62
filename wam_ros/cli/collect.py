"""`wam collect`: record scripted-expert demonstrations in sim into episode files (parallel, resumable).

    wam collect --task reach --episodes 200 --workers 2 --out data/reach
    wam collect --task reach --robot xarm6 --episodes 300 --out data/xarm6_reach
    wam collect --task push --episodes 300 --seed 4 --dagger models/panda_tabletop --beta 0.2 --out data/push_dagger
    wam collect --task reach --episodes 1000 --workers 8 --backend ray --ray-address HEAD:6379 --out data/reach

The options map one to one onto wam_ros.train.collect.CollectConfig (see there for what each does). Exit status 0 when
every episode was written, 1 when some failed or a worker died (what was written stays; a re-run resumes), 2 on bad
arguments.
"""

from __future__ import annotations

import argparse
import sys

from wam_ros.cli import config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", default="reach", help="reach | push")
    parser.add_argument(
        "--robot",
        default="panda",
        help="robot profile the sim builds: a name in config/robots or a .yaml path",
    )
    parser.add_argument("--episodes", type=int, default=200, help="episode indices 0..N-1 to fill in")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--seed", type=int, default=0, help="collection seed (scene seeds derive from it)")
    parser.add_argument("--out", default=None, help="output directory (default data/<task>)")
    parser.add_argument("--image-size", type=int, default=64, help="square camera frame size")
    parser.add_argument("--control-hz", type=int, default=10, help="control rate (divides 240)")
    parser.add_argument("--max-steps", type=int, default=None, help="step limit (default: the task's)")
    parser.add_argument(
        "--noise",
        type=float,
        default=0.0,
        help="DART noise std (rad) on the executed arm targets; labels stay the expert's (default 0)",
    )
    parser.add_argument(
        "--dagger",
        default=None,
        metavar="MODEL",
        help="DAgger: this trained model drives, the expert labels every visited state",
    )
    parser.add_argument(
        "--beta",
        type=float,
        default=0.0,
        help="with --dagger: per-step probability the expert's action is executed (default 0)",
    )
    parser.add_argument(
        "--replan",
        type=int,
        default=4,
        help="with --dagger: chunk actions executed before the model re-plans (default 4)",
    )
    parser.add_argument("--wrist-camera", action="store_true", help="also record a wrist camera")
    parser.add_argument(
        "--no-randomize", action="store_true", help="nominal lighting/colours/camera/friction/start"
    )
    parser.add_argument(
        "--scene-per-episode",
        action="store_true",
        help="one scene per episode instead of every scene once per instruction",
    )
    parser.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="local worker processes, or Ray actors (same output; a run resumes on either)",
    )
    parser.add_argument(
        "--ray-address",
        default=None,
        help="with --backend ray: HOST:PORT | ray://HOST:PORT | auto (default: a local Ray instance)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from wam_ros.train.collect import CollectConfig, CollectError, collect

    try:
        out = args.out or f"data/{args.task}"
        cfg = config_from_args(CollectConfig, args, out=out, randomize=not args.no_randomize)
        summary = collect(cfg, progress=not args.quiet)
    except (ValueError, FileNotFoundError) as exc:
        print(f"wam collect: error: {exc}", file=sys.stderr)
        return 2
    except CollectError as exc:
        print(f"wam collect: error: {exc}", file=sys.stderr)
        return 1
    rate = f"{summary.success_rate:.1%}" if summary.written else "n/a"
    who = "driven by the model," if cfg.dagger else "expert"
    print(
        f"wam collect: {summary.written} episodes written to {cfg.out} ({summary.present_before} already there), "
        f"{who} success {summary.succeeded}/{summary.written} ({rate}), {len(summary.errors)} errors, "
        f"{summary.seconds:.1f} s"
    )
    return 1 if summary.errors else 0
