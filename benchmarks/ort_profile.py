"""Where onnxruntime spends the full graph's time: per operator type and the most expensive nodes (1 thread).

    .venv/bin/python benchmarks/ort_profile.py                    # shipped model, 200 runs
    .venv/bin/python benchmarks/ort_profile.py --model models/panda_tabletop/wam_action.onnx --top 10

Uses onnxruntime's own profiler (SessionOptions.enable_profiling) with the runtime's session settings; the profile
JSON is written to a temporary directory and summarised: microseconds per run for each operator type and the --top
nodes.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    import onnxruntime as ort

    from wam_ros.runtime.backends import session_options

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "models" / "panda_tabletop" / "wam_full.onnx"))
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--top", type=int, default=8)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        so = session_options(1)
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "ort")
        sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        feeds = {
            "frames": rng.integers(0, 256, (1, 2, 3, 64, 64), dtype=np.uint8),
            "joint_pos": rng.random((1, 8), dtype=np.float32),
            "tokens": rng.integers(1, 10, (1, 12)),
        }
        for _ in range(a.runs):
            sess.run(None, feeds)
        events = json.loads(Path(sess.end_profiling()).read_text())
    by_op: collections.Counter = collections.Counter()
    by_node: collections.Counter = collections.Counter()
    op_of = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_op[e["args"]["op_name"]] += e["dur"]
            by_node[e["name"][: -len("_kernel_time")]] += e["dur"]
            op_of[e["name"][: -len("_kernel_time")]] = e["args"]["op_name"]
    total = sum(by_op.values()) / a.runs
    print(f"{a.model}: {len(by_node)} nodes, {total:.0f} us per run in kernels (1 thread, {a.runs} runs)")
    for op, us in by_op.most_common(8):
        print(f"  {op:<22} {us / a.runs:8.1f} us  {100 * us / a.runs / total:5.1f} %")
    print("most expensive nodes:")
    for name, us in by_node.most_common(a.top):
        print(f"  {op_of[name]:<16} {name:<50} {us / a.runs:8.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
