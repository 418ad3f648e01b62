"""predict() from a 640x480 camera frame against the bare graph, onnxruntime rows only, as `wam bench` measures them
(issue 21 item 2: predict p50 <= 1.3x the graph's), in a few minutes less: no torch row.

    .venv/bin/python benchmarks/predict_resize.py                        # full + action-only, 2 threads
    .venv/bin/python benchmarks/predict_resize.py --threads 1 --rounds 600 --chunks 6
    .venv/bin/python benchmarks/predict_resize.py --bands               # + predict with the resize in one band

Rows as in `wam bench` (wam_ros.runtime.bench): "graph" is backend.run() on preprocessed batch-1 inputs, the rows
interleaved with each other; "predict" is policy.predict() streaming one new camera frame per call from a pool of 16
(bench._Stream), the predict rows interleaved with each other. Here the two phases alternate in --chunks slices (graph
rounds, then a third as many predict rounds, and again), so load that comes and goes hits both phases alike. With
--bands a second policy of each graph resizes in one band (preprocess.resize(parallel=False)) instead of two row
bands on two threads.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from wam_ros.runtime import preprocess
from wam_ros.runtime.bench import _Stream, interleaved_latency
from wam_ros.runtime.policy import load_policy

ROOT = Path(__file__).resolve().parents[1]


class _OneBand:
    """A predict() stream whose camera resize runs in one band (preprocess.resize with parallel=False)."""

    def __init__(self, stream: _Stream) -> None:
        self.stream = stream

    def __call__(self) -> object:
        resize = preprocess.resize
        preprocess.resize = lambda image, size, parallel=True: resize(image, size, parallel=False)
        try:
            return self.stream()
        finally:
            preprocess.resize = resize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "models" / "panda_tabletop"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=500, help="graph rounds in all (predict: a third as many)")
    ap.add_argument("--chunks", type=int, default=5, help="graph/predict phase pairs the rounds are cut into")
    ap.add_argument("--bands", action="store_true", help="also predict() with the resize in one band")
    a = ap.parse_args()
    policies = {
        name: load_policy(a.model, "onnxruntime", a.threads, graph)
        for name, graph in (("onnxruntime full", "full"), ("onnxruntime action-only", "action"))
    }
    any_policy = next(iter(policies.values()))
    k = any_policy.spec.k_frames
    rng = np.random.default_rng(0)
    obs = {
        "images": [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(k)],
        "joint_pos": np.zeros(any_policy.spec.num_joints),
        "instruction": "reach the red target",
    }
    inputs = any_policy.prepare(obs)
    graph_fns = {name: (lambda p=p: p.backend.run(*inputs)) for name, p in policies.items()}
    predict_fns = {name: _Stream(p, (480, 640), k, 0) for name, p in policies.items()}
    if a.bands:
        for name, graph in (("onnxruntime full", "full"), ("onnxruntime action-only", "action")):
            p = load_policy(a.model, "onnxruntime", a.threads, graph)
            predict_fns[f"{name}, 1 band"] = _OneBand(_Stream(p, (480, 640), k, 0))
    graph_t: dict[str, list[np.ndarray]] = {n: [] for n in graph_fns}
    predict_t: dict[str, list[np.ndarray]] = {n: [] for n in predict_fns}
    per = max(a.rounds // a.chunks, 1)
    for c in range(a.chunks):
        for n, t in interleaved_latency(graph_fns, per, 20 if c == 0 else 3).items():
            graph_t[n].append(t)
        for n, t in interleaved_latency(predict_fns, max(per // 3, 10), 7 if c == 0 else 1).items():
            predict_t[n].append(t)
    print(
        f"{a.model}: {a.threads} threads, 640x480 camera frames, {per * a.chunks} graph / "
        f"{max(per // 3, 10) * a.chunks} predict calls per row in {a.chunks} alternating slices; "
        f"load average {os.getloadavg()[0]:.2f} (ms)"
    )
    pct = lambda t, q: float(np.percentile(np.concatenate(t), q) * 1e3)  # noqa: E731
    for name in predict_fns:
        g = graph_t[name.split(",")[0]]
        p = predict_t[name]
        print(
            f"  {name:<32s} graph p50 {pct(g, 50):6.3f} p99 {pct(g, 99):6.3f}   predict p50 {pct(p, 50):6.3f} "
            f"p99 {pct(p, 99):6.3f}   predict/graph p50 {pct(p, 50) / pct(g, 50):.2f}"
        )


if __name__ == "__main__":
    main()
