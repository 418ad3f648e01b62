"""What the campaign's traces cost: the same episodes with traces off and on, side by side, and the bytes they take.

    .venv/bin/python benchmarks/falls_traces_bench.py --episodes 600 --workers 2

Runs `run_campaign` on episodes 0..N-1 of campaign seed 0 (laikago, default FallConfig, no standing episodes) with
traces off, then on, then off and on again (alternating, so slow drifts of a shared machine's load hit both alike).
CPU time (this process + its reaped workers: immune to other load) and wall time, each minus a short run of the same
configuration (`--warmup` episodes: process start, imports, settling, compaction) to get the steady state per episode.
Then the trace bytes per episode (compacted zstd Parquet shards, and the IPC logs before compaction) and the
extrapolation to 100,000 episodes. Also checks the rows are identical with and without traces.
Core only: never imports rclpy.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from wam_ros.train.campaign import CampaignSpec, run_campaign
from wam_ros.train.campaign.traces import shard_paths


def cpu_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(out: Path, n: int, workers: int, traces: bool) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), cpu_seconds()
    s = run_campaign(CampaignSpec(out=out, episodes=n, workers=workers, traces=traces), progress=False)
    assert s.complete and s.ran == n
    return time.perf_counter() - t0, cpu_seconds() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=600)
    ap.add_argument("--warmup", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="off/on pairs")
    args = ap.parse_args()
    n, n0 = args.episodes, args.warmup
    tmp = Path(tempfile.mkdtemp(prefix="falls_traces_"))
    wall = {False: [], True: []}
    cpu = {False: [], True: []}
    try:
        for r in range(args.rounds):
            for traces in (False, True):
                ws, cs = timed(tmp / f"short{r}{traces}", n0, args.workers, traces)
                wf, cf = timed(tmp / f"full{r}{traces}", n, args.workers, traces)
                wall[traces].append((wf - ws) / (n - n0))
                cpu[traces].append((cf - cs) / (n - n0))
                print(
                    f"round {r + 1}, traces {'on ' if traces else 'off'}: {n} episodes in {wf:.1f} s wall, "
                    f"{cf:.1f} s CPU; steady state {1e3 * wall[traces][-1]:.1f} ms wall, "
                    f"{1e3 * cpu[traces][-1]:.1f} ms CPU per episode",
                    flush=True,
                )
        on = tmp / f"full{args.rounds - 1}True"
        off = tmp / f"full{args.rounds - 1}False"
        a, b = (pq.read_table(d / "results.parquet").to_pylist() for d in (on, off))
        same = len(a) == len(b) and all(
            x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
            for ra, rb in zip(a, b, strict=True)
            for x, y in zip(ra.values(), rb.values(), strict=True)
        )  # NaN (no fall) == NaN
        shard_bytes = sum(p.stat().st_size for p in shard_paths(on))
        rows = sum(pq.ParquetFile(p).metadata.num_rows for p in shard_paths(on))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    c_off, c_on = sum(cpu[False]) / args.rounds, sum(cpu[True]) / args.rounds
    w_off, w_on = sum(wall[False]) / args.rounds, sum(wall[True]) / args.rounds
    per_ep = shard_bytes / n
    print(
        f"\nrows identical with and without traces: {same}; cpus {os.cpu_count()}, load {os.getloadavg()[0]:.2f}"
    )
    print("| | traces off | traces on | extra |")
    print("|---|---|---|---|")
    print(
        f"| CPU per episode, steady state | {1e3 * c_off:.1f} ms | {1e3 * c_on:.1f} ms | {c_on / c_off - 1:+.1%} |"
    )
    print(
        f"| wall per episode, steady state ({args.workers} workers) | {1e3 * w_off:.2f} ms | {1e3 * w_on:.2f} ms "
        f"| {w_on / w_off - 1:+.1%} |"
    )
    print(f"| trace samples per episode | | {rows / n:.1f} (100 Hz) | |")
    print(
        f"| trace bytes per episode (zstd Parquet) | | {per_ep:,.0f} B ({per_ep / (rows / n):.0f} B/sample) | |"
    )
    print(f"| 100,000 episodes | | {per_ep * 1e5 / 1e9:.2f} GB | |")


if __name__ == "__main__":
    main()
