"""`wam campaign`: run a fall campaign, or report on one.

    wam campaign falls --episodes 100000 --workers 2 --out runs/falls          # rerun the same command to resume
    wam campaign falls --episodes 200 --workers 2 --out runs/falls_ray --backend ray
    wam campaign falls --episodes 1000 --out runs/falls_rec --record 0-9,every:100   # + traces and camera frames
    wam campaign report runs/falls                                             # summary.md + PNG plots in runs/falls
    wam campaign train-forecaster --campaign runs/falls_train_s0 --out models/fall_forecaster_laikago
    wam campaign eval-forecaster --model models/fall_forecaster_laikago --campaign runs/falls_eval_s1 --json OUT
    wam campaign report runs/falls_eval_s1 --forecast-eval OUT                 # + ROC, lead-time plots

The runner is wam_ros/train/campaign/ (report: report.py); the episode (robot, push, fall detection) is the
environment wam_ros/sim/falls.py.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from wam_ros.cli import config_from_args
from wam_ros.sim.falls import ROBOTS, FallConfig
from wam_ros.train.campaign import BACKENDS, CampaignError, CampaignSpec, run_campaign


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(
        dest="campaign_command", metavar="<falls|report|train-forecaster|eval-forecaster|protect>"
    )
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
    report.add_argument(
        "--forecast-eval",
        type=Path,
        default=None,
        help="an eval-forecaster JSON: adds ROC, lead-time histogram and lead vs impulse plots",
    )
    tf = sub.add_parser(
        "train-forecaster",
        help="train the fall forecaster on a campaign's traces, export ONNX",
        description="Train the fall forecaster (last 0.5 s of IMU + joints -> P(fall within 0.5 s / 1 s), time "
        "to fall) on a campaign's traces with an episode-level split, choose its alarm rule on held-out "
        "episodes, tune the tilt / tilt-rate baselines on the training split, export ONNX (parity-checked).",
    )
    tf.add_argument("--campaign", type=Path, required=True, help="campaign directory with traces")
    tf.add_argument("--out", type=Path, required=True, help="model folder to write")
    tf.add_argument("--max-minutes", type=float, default=10.0, help="training time limit (default 10)")
    tf.add_argument("--epochs", type=int, default=8, help="at most this many epochs (default 8)")
    tf.add_argument("--target-recall", type=float, default=0.98, help="alarm threshold's held-out recall")
    tf.add_argument("--window", type=int, default=50, help="samples per window (default 50 = 0.5 s)")
    tf.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    tf.add_argument("--max-episodes", type=int, default=None, help="use only the first N episodes")
    tf.add_argument("--seed", type=int, default=0)
    ef = sub.add_parser(
        "eval-forecaster",
        help="recall, false alarms, lead time of a forecaster and its baselines on a campaign",
        description="Evaluate a fall forecaster beside the tilt and tilt-rate baselines (thresholds stored with "
        "the model, tuned on its training split) on the traces of a campaign of another seed.",
    )
    ef.add_argument("--model", type=Path, required=True, help="forecaster folder")
    ef.add_argument("--campaign", type=Path, required=True, help="campaign directory with traces")
    ef.add_argument("--json", type=Path, required=True, help="where to write the report")
    ef.add_argument("--threads", type=int, default=2, help="onnxruntime threads (default 2)")
    ef.add_argument("--max-episodes", type=int, default=None, help="evaluate only the first N episodes")
    pr = sub.add_parser(
        "protect",
        help="search a protective reaction (crouch + wide stance at the alarm); measure it with and without",
        description="Grid-search a protective posture triggered by the forecaster's alarm on one seed's pushes, "
        "then measure fall rate and peak impact with and without it on held-out pushes of another seed; "
        "writes the posture into the model folder (protective_pose.json) for fall_guard_node.",
    )
    pr.add_argument("--model", type=Path, required=True, help="forecaster folder")
    pr.add_argument("--json", type=Path, required=True, help="where to write the report")
    pr.add_argument("--search-episodes", type=int, default=120)
    pr.add_argument("--eval-episodes", type=int, default=400)
    pr.add_argument("--search-seed", type=int, default=0)
    pr.add_argument("--eval-seed", type=int, default=1)
    pr.add_argument("--no-write", action="store_true", help="do not write protective_pose.json")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.campaign_command == "falls":
        return _falls(args)
    if args.campaign_command == "report":
        return _report(args)
    if args.campaign_command == "train-forecaster":
        return _train_forecaster(args)
    if args.campaign_command == "eval-forecaster":
        return _eval_forecaster(args)
    if args.campaign_command == "protect":
        return _protect(args)
    print(
        "wam campaign: expected a sub-command: falls, report, train-forecaster or eval-forecaster "
        "(see `wam campaign --help`)",
        file=sys.stderr,
    )
    return 2


def _falls(args: argparse.Namespace) -> int:
    try:
        standing = 1.0 if args.push == "none" else args.standing_fraction
        fall = config_from_args(FallConfig, args, standing_fraction=standing)
        block = args.block if args.block is not None else (16 if args.backend == "local" else 4)
        spec = config_from_args(CampaignSpec, args, block=block, fall=fall, traces=not args.no_traces)
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
        md, paths = write_report(args.out, args.plots, args.forecast_eval)
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


def _train_forecaster(args: argparse.Namespace) -> int:
    from wam_ros.export.forecaster_onnx import ForecasterExportError, export_forecaster
    from wam_ros.train.campaign import read_campaign_config
    from wam_ros.train.forecaster import ForecasterTrainConfig, train_forecaster

    try:
        cfg = config_from_args(ForecasterTrainConfig, args, max_epochs=args.epochs)
        campaign = read_campaign_config(args.campaign)
        result = train_forecaster(cfg)
    except (ValueError, FileNotFoundError) as exc:
        print(f"wam campaign train-forecaster: {exc}", file=sys.stderr)
        return 2
    info = {
        "train_seed": campaign["seed"],
        "baselines": {
            k: {f: v[f] for f in ("threshold", "consecutive", "signal")} for k, v in result.baselines.items()
        },
        "heldout": result.validation,
        "baselines_on_train_split": {k: v["train"] for k, v in result.baselines.items()},
        "training": {
            **result.data,
            "history": result.history,
            "config": {k: str(v) for k, v in vars(cfg).items()},
        },
        "rule_candidates": result.candidates,
    }
    try:
        spec = export_forecaster(
            result.net,
            args.out,
            result.rule,
            result.joint_names,
            campaign["fall"]["robot"],
            result.parity_windows,
            info,
        )
    except (ForecasterExportError, OSError) as exc:
        print(f"wam campaign train-forecaster: {exc}", file=sys.stderr)
        return 1
    v = result.validation
    print(
        f"wrote {args.out} ({spec['parameters']} parameters, ONNX parity {spec['onnx_parity_max_abs']:.1e}); "
        f"alarm: {result.rule.signal} >= {result.rule.threshold:.3f} for {result.rule.consecutive} samples; "
        f"held-out: recall {v['recall']:.3f}, lead median {v['lead_time_median_s']:.3f} s, "
        f"false alarms {v['false_alarms_per_10min']:.2f} / 10 min, recovered alarms {v['recovered_alarm_rate']:.3f}"
    )
    return 0


def _eval_forecaster(args: argparse.Namespace) -> int:
    import json

    from wam_ros.fileio import atomic_write_text
    from wam_ros.runtime.fall_forecaster import ForecasterError
    from wam_ros.train.forecaster_eval import ForecasterEvalConfig, evaluate_forecaster

    try:
        report = evaluate_forecaster(
            ForecasterEvalConfig(args.model, args.campaign, args.threads, args.max_episodes)
        )
    except (ForecasterError, ValueError, FileNotFoundError) as exc:
        print(f"wam campaign eval-forecaster: {exc}", file=sys.stderr)
        return 2
    atomic_write_text(args.json, json.dumps(report, indent=1))
    keys = ("recall", "false_alarms_per_10min", "recovered_alarm_rate", "lead_time_median_s", "auroc")
    print(
        f"{report['episodes']} episodes of {args.campaign} (seed {report['campaign_seed']}), "
        f"{report['falls']} falls, {report['standing_minutes']:.1f} min standing"
    )
    print("| | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    rows = {"forecaster": report, **report["baselines"]}
    for name, m in rows.items():
        print(f"| {name} | " + " | ".join(f"{m[k]:.3f}" for k in keys) + " |")
    print(f"wrote {args.json}")
    return 0


def _protect(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from wam_ros.fileio import atomic_write_text
    from wam_ros.runtime.fall_forecaster import PROTECT_FILE, FallForecasterRuntime, ForecasterError
    from wam_ros.train.protect import ProtectConfig, evaluate_reaction, search_reaction

    try:
        cfg = config_from_args(ProtectConfig, args)
        names = FallForecasterRuntime.load(args.model).joint_names
        search = search_reaction(cfg)
        report = evaluate_reaction(cfg, search.best)
    except (ForecasterError, ValueError) as exc:
        print(f"wam campaign protect: {exc}", file=sys.stderr)
        return 2
    report["search"] = {
        "seed": cfg.search_seed,
        "episodes": cfg.search_episodes,
        "without": search.baseline,
        "grid": search.table,
    }
    atomic_write_text(args.json, json.dumps(report, indent=1))
    if not args.no_write:
        from wam_ros.sim.falls import FallSim

        with FallSim(cfg.fall) as sim:
            targets = search.best.targets(sim.spec)
        pose = {
            "joint_names": names,
            "targets": list(targets),
            "gain_scale": search.best.gain_scale,
            "reaction": asdict(search.best),
            "measured": {k: report[k] for k in ("with", "without", "eval_seed")},
        }
        atomic_write_text(args.model / PROTECT_FILE, json.dumps(pose, indent=1))
    a, b = report["without"], report["with"]
    print(
        f"reaction {report['reaction']} on {a['episodes']} held-out pushes (seed {cfg.eval_seed}): fall rate "
        f"{a['fall_rate']:.3f} -> {b['fall_rate']:.3f} ({report['fall_rate_change']:+.1%}), mean peak body "
        f"contact force {a['peak_force_mean_N']:.0f} -> {b['peak_force_mean_N']:.0f} N "
        f"({report['peak_force_change']:+.1%}), impact speed {a['impact_speed_mean_mps']:.2f} -> "
        f"{b['impact_speed_mean_mps']:.2f} m/s; wrote {args.json}"
    )
    return 0
