"""`wam campaign`: run a fall campaign, or report on one.

    wam campaign falls --episodes 100000 --workers 2 --out runs/falls          # rerun the same command to resume
    wam campaign falls --episodes 200 --workers 2 --out runs/falls_ray --backend ray
    wam campaign falls --episodes 1000 --out runs/falls_rec --record 0-9,every:100   # + traces and camera frames
    wam campaign report runs/falls                                             # summary.md + PNG plots in runs/falls

The runner is wam_ros/train/campaign/ (report: report.py); the episode (robot, push, fall detection) is the
environment wam_ros/sim/falls.py.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from wam_ros.sim.falls import ROBOTS, FallConfig
from wam_ros.train.campaign import BACKENDS, CampaignError, CampaignSpec, run_campaign


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="campaign_command", metavar="<falls|report>")
    falls = sub.add_parser(
        "falls",
        help="run (or resume) a fall campaign",
        description="Push a legged robot over N times under randomised conditions. Resumable: "
        "rerun the same command to continue an interrupted campaign.",
    )
    falls.add_argument("--episodes", type=int, required=True, help="run episodes 0..N-1")
    falls.add_argument(
        "--out", type=Path, required=True, help="campaign directory (created; resumed if it exists)"
    )
    falls.add_argument("--workers", type=int, default=2, help="worker processes or Ray actors (default 2)")
    falls.add_argument("--seed", type=int, default=0, help="campaign seed (default 0)")
    falls.add_argument("--robot", choices=sorted(ROBOTS), default="laikago")
    falls.add_argument(
        "--episode-s", type=float, default=FallConfig.episode_s, help="longest episode, s simulated"
    )
    falls.add_argument("--backend", choices=BACKENDS, default="local")
    falls.add_argument(
        "--ray-address", default=None, help="Ray cluster address (default: start a local instance)"
    )
    falls.add_argument(
        "--record",
        default="",
        help="episodes to record with traces + camera frames, e.g. "
        "'0-9,every:1000' (default: none, physics only)",
    )
    falls.add_argument(
        "--camera-size", type=int, default=FallConfig.camera_size, help="recorded frame side (px)"
    )
    falls.add_argument(
        "--block", type=int, default=None, help="indices per work unit (default 16 local, 4 ray)"
    )
    falls.add_argument(
        "--standing-fraction",
        type=float,
        default=FallConfig.standing_fraction,
        help="share of episodes not pushed (standing, for false-alarm measurements; default 0)",
    )
    falls.add_argument(
        "--push",
        choices=("random", "none"),
        default="random",
        help="'none' = every episode standing (same as --standing-fraction 1)",
    )
    falls.add_argument(
        "--standing-s",
        type=float,
        default=FallConfig.standing_s,
        help="length of a standing episode, s simulated (default 10)",
    )
    falls.add_argument(
        "--trace-hz", type=int, default=FallConfig.trace_hz, help="IMU + joint trace rate (default 100)"
    )
    falls.add_argument(
        "--no-traces", action="store_true", help="no IMU + joint traces (results rows only, as before)"
    )
    falls.add_argument("--no-progress", action="store_true", help="no progress bar")
    report = sub.add_parser(
        "report",
        help="summary table + PNG plots of a campaign",
        description="Summary table (printed and written to summary.md) and PNG plots: fall rate "
        "vs push impulse, time-to-fall histogram, fall rate vs friction and slope.",
    )
    report.add_argument("out", type=Path, help="campaign directory")
    report.add_argument(
        "--plots", type=Path, default=None, help="where to write the report (default: the campaign dir)"
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.campaign_command == "falls":
        return _falls(args)
    if args.campaign_command == "report":
        return _report(args)
    print(
        "wam campaign: expected a sub-command: falls or report (see `wam campaign --help`)", file=sys.stderr
    )
    return 2


def _falls(args: argparse.Namespace) -> int:
    try:
        standing = 1.0 if args.push == "none" else args.standing_fraction
        fall = FallConfig(
            robot=args.robot,
            episode_s=args.episode_s,
            camera_size=args.camera_size,
            trace_hz=args.trace_hz,
            standing_fraction=standing,
            standing_s=args.standing_s,
        )
        block = args.block if args.block is not None else (16 if args.backend == "local" else 4)
        spec = CampaignSpec(
            out=args.out,
            episodes=args.episodes,
            seed=args.seed,
            workers=args.workers,
            backend=args.backend,
            ray_address=args.ray_address,
            record=args.record,
            block=block,
            fall=fall,
            traces=not args.no_traces,
        )
    except ValueError as exc:
        print(f"wam campaign falls: {exc}", file=sys.stderr)
        return 2
    try:
        summary = run_campaign(spec, progress=not args.no_progress)
    except CampaignError as exc:
        print(f"wam campaign falls: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"wam campaign falls: cannot use {args.out}: {exc}", file=sys.stderr)
        return 1
    print(
        f"{summary.episodes} episodes in {summary.out} ({summary.ran} run now in {summary.wall_s:.1f} s, "
        f"{summary.eps_per_s:.1f} eps/s); fall rate {summary.fall_rate:.1%}; worker deaths {summary.worker_deaths}"
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    from wam_ros.train.campaign.report import write_report

    try:
        md, paths = write_report(args.out, args.plots)
    except (FileNotFoundError, CampaignError) as exc:
        print(f"wam campaign report: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"wam campaign report: cannot read {args.out} or write the report: {exc}", file=sys.stderr)
        return 1
    print(md)
    for p in paths:
        print(f"wrote {p}")
    return 0
