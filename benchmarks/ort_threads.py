"""onnxruntime full graph alone in its process (no torch row interleaved), by thread count and spinning setting.

    .venv/bin/python benchmarks/ort_threads.py --iters 1000

benchmarks/latency.py interleaves torch eager and onnxruntime in one process, fair for the ratio; but torch's
OpenMP threads spin-wait after each torch call and take the core onnxruntime's second thread needs, which inflates
onnxruntime's tail there. This measures what a process running only onnxruntime (wam_node, say) sees. Rows are
interleaved round-robin: 1 and 2 threads, spinning only inside Run() (the default, WAM_ORT_SPIN=1) and never (0),
and 2 threads with the worker pinned to the second CPU (`session.intra_op_thread_affinities`). `--block N` runs N
calls of a row back to back per turn, after a 30 ms pause and one untimed call (as benchmarks/latency.py does).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    import onnxruntime as ort

    from wam_ros.runtime.backends import session_options
    from wam_ros.runtime.bench import interleaved_latency
    from wam_ros.runtime.policy import load_policy

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "models" / "panda_tabletop"))
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--block", type=int, default=1, help="calls of one row back to back per turn (default 1)")
    a = ap.parse_args()
    rows = {}
    for spin in ("1", "0"):
        os.environ["WAM_ORT_SPIN"] = spin  # read by session_options() when each session is created
        for threads in (1, 2):
            rows[f"threads={threads} spin={'inside Run()' if spin == '1' else 'never'}"] = load_policy(
                a.model, "onnxruntime", threads, "full"
            )
    rng = np.random.default_rng(0)
    obs = {
        "images": [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)] * 2,
        "joint_pos": np.zeros(8),
        "instruction": "reach the red target",
    }
    frames, joint_pos, tokens = next(iter(rows.values())).prepare(obs)
    pinned = load_policy(a.model, "onnxruntime", 2, "full")  # same file, a session with the worker pinned
    so = session_options(2)
    so.add_session_config_entry(
        "session.intra_op_thread_affinities", "2"
    )  # 1-based logical CPU of the worker
    pinned.backend.sess = ort.InferenceSession(
        str(pinned.backend.path), so, providers=["CPUExecutionProvider"]
    )
    rows["threads=2 spin=inside Run() pinned"] = pinned
    pause, warm = (0.03, 1) if a.block > 1 else (0.0, 0)
    times = interleaved_latency(
        {k: (lambda p=p: p.backend.run(frames, joint_pos, tokens)) for k, p in rows.items()},
        a.iters,
        50,
        block=a.block,
        pause=pause,
        turn_warmup=warm,
    )
    print(
        f"onnxruntime full graph alone, {a.model}, batch 1, {a.iters} calls per row in turns of {a.block}, "
        "wall clock"
    )
    for name, t in times.items():
        q = np.percentile(t * 1e3, [50, 90, 95, 99])
        print(f"{name:<36} p50 {q[0]:6.2f}  p90 {q[1]:6.2f}  p95 {q[2]:6.2f}  p99 {q[3]:6.2f} ms")
    print(f"machine load average at the end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
