"""Where predict()'s time goes beyond the graph's (issue 21 item 2), every part timed side by side in one loop.

    .venv/bin/python benchmarks/predict_cost.py                          # action-only graph, 2 threads
    .venv/bin/python benchmarks/predict_cost.py --graph full --rounds 1000

Rows (one onnxruntime policy, interleaved round-robin, every other round in reverse order):
- "graph (bound)": the bound graph call alone on inputs already written (what predict() runs after preparing);
- "predict 64x64": predict() from frames already at the model's size (no resize): graph + Python preparation;
- "resize 640x480": the camera resize alone (wam_ros.runtime.preprocess.resize) of a fresh frame;
- "predict 640x480": predict() as `wam bench` times it (bench._Stream: one new camera frame per call);
- "copy 640x480": a fresh camera frame copied into a preallocated array (np.copyto), nothing else: the floor of
  reading the frame once (session 14; before, "read 640x480" summed it with numpy, whose uint8 -> uint64 loop is
  compute-bound and overstated that floor about 4x: 0.34 against 0.08 ms on the AVX-512 EPYC host).
Fresh frames come from a pool of 16 distinct arrays (14.7 MB at 640x480), so each is cold in the caches, as a frame
a camera driver has just written is.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from wam_ros.runtime import preprocess
from wam_ros.runtime.bench import _Stream, interleaved_latency, summarize
from wam_ros.runtime.policy import load_policy

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "panda_tabletop")
    ap.add_argument("--graph", choices=("action", "full"), default="action")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=600)
    a = ap.parse_args()

    policy = load_policy(a.model, "onnxruntime", a.threads, a.graph)
    size = policy.spec.image_size
    camera = _Stream(policy, (480, 640), policy.spec.k_frames, 0)
    small = _Stream(policy, size, policy.spec.k_frames, 0)
    camera()
    bound = policy._bound()
    if bound is None:
        raise SystemExit("this onnxruntime session has no bound inputs (not the CPU provider?)")
    pool = camera.pool
    turn = [0]

    def fresh() -> np.ndarray:
        turn[0] += 1
        return pool[turn[0] % len(pool)]

    dst = np.empty_like(pool[0])
    fns = {
        "graph (bound)": bound.run,
        "predict 64x64": small,
        "resize 640x480": lambda: preprocess.resize(fresh(), size),
        "predict 640x480": camera,
        "copy 640x480": lambda: np.copyto(dst, fresh()),
    }
    t = summarize(interleaved_latency(fns, a.rounds, 30, alternate=True))
    graph = t["graph (bound)"]["p50_ms"]
    print(f"{policy!r}, {a.threads} threads, {a.rounds} interleaved rounds")
    print(f"{'row':<18}{'p50':>8}{'p99':>8}{'p50 / graph':>13}")
    for name, v in t.items():
        print(f"{name:<18}{v['p50_ms']:>8.3f}{v['p99_ms']:>8.3f}{v['p50_ms'] / graph:>13.2f}")
    print("(ms)")


if __name__ == "__main__":
    main()
