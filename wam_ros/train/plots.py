"""Metrics file + loss-curve PNG for training runs.

log = MetricsLog("runs/reach/metrics.csv"); log.write({"step": 1, "loss": 0.3}); plot_losses(path, png)
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

FIELDS = ["step", "elapsed_s", "lr", "loss", "action", "frame", "val_action", "val_frame", "val_action_mae"]
# an imagining model's extra terms (issue 16), after the first columns so older metrics files read the same
FIELDS += [
    "mode",
    "joints",
    "critic_bce",
    "critic_steps",
    "critic_goal",
    "val_mode",
    "val_joints",
    "val_critic_bce",
    "val_critic_steps",
    "val_critic_goal",
]


class MetricsLog:
    """Append-only CSV with a fixed header (resuming appends to the same file)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists() or self.path.stat().st_size == 0:
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(FIELDS)

    def write(self, row: dict[str, float]) -> None:
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow(["" if row.get(k) is None else f"{row[k]:.6g}" for k in FIELDS])


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def plot_losses(csv_path: str | Path, png_path: str | Path) -> Path:
    """Train/val action and frame losses vs step, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(csv_path)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, keys, title in (
        (axes[0], ("action", "val_action"), "action loss (normalised smooth-L1)"),
        (axes[1], ("frame", "val_frame"), "frame loss (MSE, [0,1] pixels)"),
    ):
        for key in keys:
            pts = [(r["step"], r[key]) for r in rows if key in r and r[key] > 0 and math.isfinite(r[key])]
            if pts:
                ax.plot(
                    [s for s, _ in pts],
                    [v for _, v in pts],
                    label=key,
                    marker="." if key.startswith("val") else None,
                )
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(title)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=80)
    plt.close(fig)
    return Path(png_path)
