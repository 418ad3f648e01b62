"""How far apart two training runs' learning-rate schedules were, from their metrics.csv (logged every 25 steps).

    .venv/bin/python benchmarks/lr_schedules.py runs/wam2/metrics.csv runs/wam2_ablation/metrics.csv

Used for the joint-vs-ablation comparison: the joint run decays by the wall clock (--max-minutes), the ablation by
steps over the same step count; this prints the largest and mean |lr difference| at the steps both logged.
"""

from __future__ import annotations

import csv
import sys

import numpy as np


def lrs(path: str) -> dict[int, float]:
    with open(path) as f:
        return {int(r["step"]): float(r["lr"]) for r in csv.DictReader(f) if r.get("lr")}


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    a, b = lrs(sys.argv[1]), lrs(sys.argv[2])
    steps = sorted(set(a) & set(b))
    if not steps:
        print("no common logged steps")
        return 1
    diff = np.array([abs(a[s] - b[s]) for s in steps])
    worst = steps[int(diff.argmax())]
    print(
        f"{len(steps)} common steps; max |lr diff| {diff.max():.2e} at step {worst} ({a[worst]:.2e} vs "
        f"{b[worst]:.2e}); mean {diff.mean():.2e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
