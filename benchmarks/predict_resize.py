"""predict() with the two-band camera resize against the one-band resize, side by side in one run (issue 21).

    .venv/bin/python benchmarks/predict_resize.py                      # action-only graph, 800 calls per row
    .venv/bin/python benchmarks/predict_resize.py --graph full --calls 500

Two policies of the same model: one resizes each new 640x480 camera frame as two row bands on two threads (the
runtime's default, wam_ros.runtime.preprocess.resize), the other in one band. Rows are interleaved round-robin with
the bare graph, each predict() call streaming one new camera frame (wam_ros.runtime.bench._Stream).
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
    ap.add_argument("--model", default=str(ROOT / "models" / "panda_tabletop"))
    ap.add_argument("--graph", default="action", choices=("action", "full"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calls", type=int, default=800)
    a = ap.parse_args()
    banded = load_policy(a.model, "onnxruntime", a.threads, a.graph)
    one_band = load_policy(a.model, "onnxruntime", a.threads, a.graph)
    k = banded.spec.k_frames
    stream_banded = _Stream(banded, (480, 640), k, 0)
    stream_one = _Stream(one_band, (480, 640), k, 0)
    resize = preprocess.resize

    def one_band_call() -> object:
        preprocess.resize = lambda image, size, parallel=True: resize(image, size, parallel=False)
        try:
            return stream_one()
        finally:
            preprocess.resize = resize

    small = [np.zeros((*banded.spec.image_size, 3), np.uint8)] * k
    obs = {
        "images": small,
        "joint_pos": np.zeros(banded.spec.num_joints),
        "instruction": "reach the red target",
    }
    inputs = banded.prepare(obs)
    rows = {
        "bare graph": lambda: banded.backend.run(*inputs),
        "predict, two bands": stream_banded,
        "predict, one band": one_band_call,
    }
    print(
        f"{a.model} ({a.graph} graph, {a.threads} threads), 640x480 camera frames, {a.calls} calls per row (ms)"
    )
    for name, r in summarize(interleaved_latency(rows, a.calls, 30)).items():
        print(f"  {name:<20s} p50 {r['p50_ms']:.3f}  p99 {r['p99_ms']:.3f}")


if __name__ == "__main__":
    main()
