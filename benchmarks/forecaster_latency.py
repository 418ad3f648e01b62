"""Fall forecaster inference latency at batch 1 on onnxruntime CPU (what fall_guard_node does per IMU sample).

    .venv/bin/python benchmarks/forecaster_latency.py models/fall_forecaster_laikago --calls 20000

Times, in one process, `FallForecasterRuntime.predict_one` (one session.run on a (1, 50, 46) window) and
`ForecastStream.push` (ring-buffer update + session.run + alarm rule: the node's whole per-sample work outside rclpy),
on real-looking inputs (a standing robot's readings plus noise), 1 intra-op thread (the node's default), after a
warm-up. Prints p50, p90, p99, max in microseconds. Goal: <= 100 us per step at batch 1.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from wam_ros.runtime.fall_forecaster import FallForecasterRuntime


def percentiles(samples: list[float]) -> str:
    a = np.asarray(samples) * 1e6
    return (
        f"p50 {np.percentile(a, 50):.1f} us, p90 {np.percentile(a, 90):.1f} us, p99 {np.percentile(a, 99):.1f} us, "
        f"max {a.max():.1f} us (n={len(a)})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default="models/fall_forecaster_laikago")
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    fc = FallForecasterRuntime.load(args.model, threads=args.threads)
    rng = np.random.default_rng(0)
    c = len(fc.input_columns)
    base = np.zeros(c, dtype=np.float32)
    base[3], base[9] = 1.0, 9.81
    window = base + 0.01 * rng.standard_normal((fc.window, c)).astype(np.float32)
    samples = base + 0.01 * rng.standard_normal((args.calls, c)).astype(np.float32)
    for _ in range(500):
        fc.predict_one(window)
    one = []
    for _ in range(args.calls):
        t = time.perf_counter()
        fc.predict_one(window)
        one.append(time.perf_counter() - t)
    stream = fc.stream()
    for s in samples[:500]:
        stream.push(s)
    push = []
    for s in samples:
        t = time.perf_counter()
        stream.push(s)
        push.append(time.perf_counter() - t)
    print(
        f"fall forecaster {args.model}: window {fc.window} x {c}, {args.threads} thread(s), "
        f"cpus {os.cpu_count()}, load {os.getloadavg()[0]:.2f}"
    )
    print(f"predict_one (session.run, batch 1): {percentiles(one)}")
    print(f"stream.push (buffer + run + alarm):  {percentiles(push)}")


if __name__ == "__main__":
    main()
