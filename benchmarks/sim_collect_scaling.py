"""Collection throughput with 1 vs 2 worker processes, side by side in one run (parallel efficiency goal >= 0.9).

    .venv/bin/python benchmarks/sim_collect_scaling.py [--task reach] [--episodes 40] [--rounds 2]

Each round runs `collect()` (what `wam collect` runs) into fresh temporary directories, first with 1 worker
(in-process), then with 2 (spawned worker processes, start-up included). Wall-clock episodes/min; efficiency =
rate(2) / (2 * rate(1)). Wall time is the real measure, so run it on an otherwise idle machine: the load average
before and after is printed because other processes on the 2 cores lower the 2-worker figure directly.
Beside it, a load-robust proxy: CPU seconds per episode (this process + its reaped children, getrusage), 1 worker
÷ 2 workers. It is 1.0 when running in 2 processes costs no extra CPU per episode (no start-up, coordination or
contention overhead), i.e. the efficiency 2 free cores would give if the work is CPU-bound (it is: no I/O waits).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile

from wam_ros.train.collect import CollectConfig, collect


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="reach")
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=64)
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}  (cpus: {os.cpu_count()})")
    rates: dict[int, list[float]] = {1: [], 2: []}
    cpu: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.rounds):
        for workers in (1, 2):
            with tempfile.TemporaryDirectory(prefix="wam-bench-collect-") as out:
                cfg = CollectConfig(
                    task=args.task,
                    episodes=args.episodes,
                    out=out,
                    workers=workers,
                    image_size=args.image_size,
                )
                before = _cpu_seconds()
                s = collect(cfg, progress=False)
                used = _cpu_seconds() - before
                if s.errors:
                    raise SystemExit(f"collection errors: {s.errors[:3]}")
                rates[workers].append(s.written / s.seconds * 60)
                cpu[workers].append(used / s.written)
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    c1, c2 = statistics.median(cpu[1]), statistics.median(cpu[2])
    print(f"load average after : {os.getloadavg()[0]:.2f}")
    print(f"task={args.task} episodes={args.episodes} rounds={args.rounds} image={args.image_size}")
    print(f"1 worker : {one:7.1f} episodes/min   (rounds: {', '.join(f'{r:.1f}' for r in rates[1])})")
    print(f"2 workers: {two:7.1f} episodes/min   (rounds: {', '.join(f'{r:.1f}' for r in rates[2])})")
    print(f"median: speed-up {two / one:.2f}x, parallel efficiency {two / (2 * one):.2f}   (goal >= 0.9)")
    b1, b2 = max(rates[1]), max(rates[2])
    print(
        f"best round each (least disturbed): {b1:.1f} vs {b2:.1f} episodes/min, efficiency {b2 / (2 * b1):.2f}"
    )
    print(
        f"CPU s/episode: 1 worker {c1:.3f}, 2 workers {c2:.3f} -> CPU-time efficiency {c1 / c2:.2f} "
        "(load-robust proxy)"
    )


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # worker processes, once reaped (pool shut down)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


if __name__ == "__main__":
    main()
