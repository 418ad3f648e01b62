"""`wam campaign report`: a campaign's summary table (summary.md) and PNG plots.

Fall rate vs push impulse, time-to-fall histogram, fall rate vs friction and slope. matplotlib (Agg) is imported only
when a report is written.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from wam_ros.train.campaign.spec import CampaignError, read_campaign_config
from wam_ros.train.campaign.storage import load_results


def binned_rate(x: np.ndarray, fell: np.ndarray, bins: int = 12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
        *(
            [
                f"| standing (not pushed) | {int(cols['standing'].sum())}, of which fell "
                f"{int((cols['standing'] & fell).sum())} |"
            ]
            if "standing" in cols and cols["standing"].any()
            else []
        ),
        "",
        "| push impulse (N s) | episodes | fall rate |",
        "|---|---|---|",
    ]
    centres, rate, counts = binned_rate(cols["push_impulse"], fell, bins=8)
    half = (centres[1] - centres[0]) / 2 if len(centres) > 1 else 0.5
    for c, r, k in zip(centres, rate, counts, strict=True):
        lines.append(f"| {c - half:.0f}-{c + half:.0f} | {k} | {'-' if math.isnan(r) else f'{r:.1%}'} |")
    return "\n".join(lines) + "\n"


def write_report(
    out: Path, plots: Path | None = None, forecast_eval: Path | None = None
) -> tuple[str, list[Path]]:
    """Write summary.md and three PNGs for the campaign in `out` (+ three forecaster plots and a table when an
    eval-forecaster JSON is given); returns (markdown, png paths)."""
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
    x, rate, counts = binned_rate(cols["push_impulse"], fell, bins=15)
    ax.plot(x, rate, "o-")
    ax.set(
        xlabel="push impulse (N s)",
        ylabel="fall rate",
        ylim=(-0.02, 1.02),
        title=f"fall rate vs push impulse (n={len(fell)})",
    )
    ax.grid(alpha=0.3)
    paths.append(save_figure(fig, dest / "fall_rate_vs_impulse.png"))

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ttf = cols["time_to_fall"][fell]
    ax.hist(ttf, bins=30)
    ax.set(
        xlabel="time to fall after push start (s)", ylabel="episodes", title=f"time to fall (n={len(ttf)})"
    )
    paths.append(save_figure(fig, dest / "time_to_fall_hist.png"))

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
    for ax, key, label in ((axes[0], "friction", "friction"), (axes[1], "slope_deg", "slope (deg)")):
        x, rate, _ = binned_rate(cols[key], fell, bins=10)
        ax.plot(x, rate, "o-")
        ax.set(xlabel=label, ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fall rate")
    fig.suptitle("fall rate vs friction and slope")
    paths.append(save_figure(fig, dest / "fall_rate_vs_friction_slope.png"))
    if forecast_eval is not None:
        extra, more = forecast_plots(forecast_eval, dest)
        md += "\n" + extra
        (dest / "summary.md").write_text(md)
        paths += more
    return md, paths


FORECAST_KEYS = ("recall", "false_alarms_per_10min", "recovered_alarm_rate", "lead_time_median_s", "auroc")


def forecast_plots(eval_json: Path, dest: Path) -> tuple[str, list[Path]]:
    """ROC, lead-time histogram, lead vs push impulse of a forecaster and its baselines (eval-forecaster JSON)."""
    import json

    import matplotlib.pyplot as plt

    try:
        report = json.loads(Path(eval_json).read_text())
        curves = report["curves"]
    except (OSError, ValueError, KeyError) as exc:
        raise CampaignError(f"{eval_json} is not an eval-forecaster report ({exc})") from exc
    names = ["forecaster", *report.get("baselines", {})]
    rows = {"forecaster": report, **report.get("baselines", {})}
    lines = [
        f"## Fall forecaster ({report.get('model', '?')}) on {report.get('episodes', '?')} episodes",
        "",
        "| | " + " | ".join(FORECAST_KEYS) + " |",
        "|---" * (len(FORECAST_KEYS) + 1) + "|",
    ]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{rows[name][k]:.3f}" for k in FORECAST_KEYS) + " |")
    paths = []
    fig, ax = plt.subplots(figsize=(5, 4))
    for name in names:
        fpr, tpr = curves[name]["roc"]
        ax.plot(fpr, tpr, label=f"{name} (AUROC {rows[name]['auroc']:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(
        xlabel="false-positive rate (per window)", ylabel="true-positive rate", title="ROC: fall within 1 s"
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    paths.append(save_figure(fig, dest / "forecaster_roc.png"))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    bins = np.linspace(0, 1.0, 41)
    for name in names:
        lead = np.asarray(curves[name]["lead"])
        ax.hist(
            lead,
            bins=bins,
            histtype="step",
            label=f"{name} (median {np.median(lead) if len(lead) else 0:.2f} s)",
        )
    ax.set(xlabel="lead time: first alarm -> fall (s)", ylabel="falls", title="lead time at matched recall")
    ax.legend(fontsize=8)
    paths.append(save_figure(fig, dest / "forecaster_lead_hist.png"))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name in names:
        lead, imp = np.asarray(curves[name]["lead"]), np.asarray(curves[name]["impulse"])
        if len(lead) < 2:
            continue
        edges = np.linspace(imp.min(), imp.max() + 1e-9, 9)
        which = np.clip(np.digitize(imp, edges) - 1, 0, 7)
        med = [np.median(lead[which == b]) if np.any(which == b) else np.nan for b in range(8)]
        ax.plot((edges[:-1] + edges[1:]) / 2, med, "o-", label=name)
    ax.set(xlabel="push impulse (N s)", ylabel="median lead (s)", title="lead time vs push impulse")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    paths.append(save_figure(fig, dest / "forecaster_lead_vs_impulse.png"))
    return "\n".join(lines) + "\n", paths


def save_figure(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
