"""`wam campaign`: run a fall campaign, or report on one.

    wam campaign falls --episodes 100000 --workers 2 --out runs/falls          # rerun the same command to resume
    wam campaign falls --episodes 200 --workers 2 --out runs/falls_ray --backend ray
    wam campaign falls --episodes 1000 --out runs/falls_rec --record 0-9,every:100   # + traces and camera frames
    wam campaign report runs/falls                                             # summary.md + PNG plots in runs/falls

The runner is wam_ros/sim/campaign.py; the episode (robot, push, fall detection) is wam_ros/sim/falls.py.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

import numpy as np

from wam_ros.sim.campaign import (
    BACKENDS,
    CampaignError,
    CampaignSpec,
    load_results,
    read_campaign_config,
    run_campaign,
)
from wam_ros.sim.falls import ROBOTS, FallConfig


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
        fall = FallConfig(robot=args.robot, episode_s=args.episode_s, camera_size=args.camera_size)
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


# -- report ----------------------------------------------------------------------------------------------------------
def _binned_rate(
    x: np.ndarray, fell: np.ndarray, bins: int = 12
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fall rate per equal-width bin of x: (bin centres, rates, counts); empty bins give NaN."""
    lo, hi = float(np.min(x)), float(np.max(x))
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    which = np.clip(np.digitize(x, edges) - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    falls = np.bincount(which, weights=fell.astype(float), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(counts > 0, falls / np.maximum(counts, 1), np.nan)
    return (edges[:-1] + edges[1:]) / 2, rate, counts


def summary_markdown(cols: dict[str, np.ndarray], config: dict) -> str:
    n = len(cols["index"])
    fell, rec = cols["fell"], cols["recovered"]
    ttf = cols["time_to_fall"][fell]
    lines = [
        f"# Fall campaign: {config['fall']['robot']}, seed {config['seed']}",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| episodes | {n} (indices {int(cols['index'].min())}..{int(cols['index'].max())}) |",
        f"| fell | {int(fell.sum())} ({fell.mean():.1%}) |",
        f"| recovered | {int(rec.sum())} ({rec.mean():.1%}) |",
        f"| unsettled at {config['fall']['episode_s']} s | {int((~fell & ~rec).sum())} |",
        "| time to fall after push start, median (p10-p90) | "
        + (
            f"{np.median(ttf):.3f} s ({np.percentile(ttf, 10):.3f}-{np.percentile(ttf, 90):.3f}) |"
            if len(ttf)
            else "- |"
        ),
        f"| simulated time | {cols['sim_time'].sum():.0f} s |",
        f"| recorded episodes | {int(cols['recorded'].sum())} |",
        "",
        "| push impulse (N s) | episodes | fall rate |",
        "|---|---|---|",
    ]
    centres, rate, counts = _binned_rate(cols["push_impulse"], fell, bins=8)
    half = (centres[1] - centres[0]) / 2 if len(centres) > 1 else 0.5
    for c, r, k in zip(centres, rate, counts, strict=True):
        lines.append(f"| {c - half:.0f}-{c + half:.0f} | {k} | {'-' if math.isnan(r) else f'{r:.1%}'} |")
    return "\n".join(lines) + "\n"


def write_report(out: Path, plots: Path | None = None) -> tuple[str, list[Path]]:
    """Write summary.md and three PNGs for the campaign in `out`; returns (markdown, png paths)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config = read_campaign_config(out)
    table = load_results(out)
    if table.num_rows == 0:
        raise CampaignError(f"campaign {out} has no finished episodes yet")
    cols = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
    dest = plots or out
    dest.mkdir(parents=True, exist_ok=True)
    md = summary_markdown(cols, config)
    (dest / "summary.md").write_text(md)
    fell = cols["fell"]
    paths = []

    fig, ax = plt.subplots(figsize=(5, 3.5))
    x, rate, counts = _binned_rate(cols["push_impulse"], fell, bins=15)
    ax.plot(x, rate, "o-")
    ax.set(
        xlabel="push impulse (N s)",
        ylabel="fall rate",
        ylim=(-0.02, 1.02),
        title=f"fall rate vs push impulse (n={len(fell)})",
    )
    ax.grid(alpha=0.3)
    paths.append(_save(fig, dest / "fall_rate_vs_impulse.png"))

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ttf = cols["time_to_fall"][fell]
    ax.hist(ttf, bins=30)
    ax.set(
        xlabel="time to fall after push start (s)", ylabel="episodes", title=f"time to fall (n={len(ttf)})"
    )
    paths.append(_save(fig, dest / "time_to_fall_hist.png"))

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
    for ax, key, label in ((axes[0], "friction", "friction"), (axes[1], "slope_deg", "slope (deg)")):
        x, rate, _ = _binned_rate(cols[key], fell, bins=10)
        ax.plot(x, rate, "o-")
        ax.set(xlabel=label, ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fall rate")
    fig.suptitle("fall rate vs friction and slope")
    paths.append(_save(fig, dest / "fall_rate_vs_friction_slope.png"))
    return md, paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _report(args: argparse.Namespace) -> int:
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
