"""Latency of the WAM at batch 1: torch eager vs onnxruntime full graph vs onnxruntime action-only graph, one run.

    .venv/bin/python benchmarks/latency.py                                  # shipped model if present, else small preset
    .venv/bin/python benchmarks/latency.py --model models/panda_tabletop --threads 2 --iters 1000
    .venv/bin/python benchmarks/latency.py --preset small                   # random weights, exported to a temp dir

All rows run in one process with the same thread count and the same inputs, interleaved in turns of --block calls
(default 25) with an untimed --pause-ms (default 30) and one untimed call before each turn, so machine load hits every
row alike while no row runs in the wake of another: after a torch call its OpenMP workers spin-wait for milliseconds
(libgomp's default) on the core onnxruntime's second thread needs. The untimed call absorbs the cold start after the
pause (this is back-to-back latency; the paced latency a 30 Hz node sees is in ros_latency.py's bare predict()).
`--block 1 --pause-ms 0 --turn-warmup 0` is the old call-by-call interleaving. Prints p50/p99 (ms) per row, the ratios, and the goals:
    onnxruntime full <= 0.5x torch eager, action-only <= 0.7x full, full p99 <= 5 ms (64x64, 2 threads) on the CPU;
    TensorRT fp16 p50 <= 1 ms on a GPU (rows appear only where an engine + GPU exist).
Record the output in benchmarks/RESULTS.md ("Export and runtime latency (issue 6)").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wam_ros.runtime.bench import format_table, run_benchmark  # noqa: E402

SHIPPED = ROOT / "models" / "panda_tabletop"


def _model_dir(args: argparse.Namespace, tmp: Path) -> tuple[Path, str]:
    import torch

    from wam_ros.export.onnx_export import export_model
    from wam_ros.model import WamConfig, WorldActionModel, save_checkpoint

    if args.model is None and args.preset is None and (SHIPPED / "model.pt").is_file():
        args.model = SHIPPED
    if args.model is not None:
        if not (args.model / "wam_full.onnx").is_file():
            export_model(args.model, tmp)
            return tmp, f"{args.model} (exported to a temp dir)"
        return args.model, str(args.model)
    torch.manual_seed(0)
    preset = args.preset or "small"
    save_checkpoint(tmp / "model.pt", WorldActionModel(WamConfig.preset(preset)))
    export_model(tmp / "model.pt", tmp)
    return tmp, f"preset {preset!r} with random weights (no shipped model yet)"


def check_goals(result: dict) -> list[str]:
    rows = result["rows"]
    full, action = rows["onnxruntime full"], rows["onnxruntime action-only"]
    lines = [
        f"goal onnxruntime full <= 0.5x torch eager (p50): {full['ratio_vs_torch_p50']:.2f}x "
        f"{'MET' if full['ratio_vs_torch_p50'] <= 0.5 else 'NOT MET'}",
        f"goal action-only <= 0.7x full (p50): {action['ratio_vs_ort_full_p50']:.2f}x "
        f"{'MET' if action['ratio_vs_ort_full_p50'] <= 0.7 else 'NOT MET'}",
        f"goal full graph p99 <= 5 ms: {full['graph']['p99_ms']:.2f} ms "
        f"{'MET' if full['graph']['p99_ms'] <= 5 else 'NOT MET'}",
    ]
    for name, r in rows.items():
        if name.startswith("tensorrt"):
            lines.append(
                f"goal {name} p50 <= 1 ms: {r['graph']['p50_ms']:.3f} ms "
                f"{'MET' if r['graph']['p50_ms'] <= 1 else 'NOT MET'}"
            )
    if not any(n.startswith("tensorrt") for n in rows):
        lines.append("TensorRT: not measured (no GPU / no tensorrt / no engine on this machine)")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model", type=Path, default=None, help="model directory or .pt (default: the shipped model)"
    )
    ap.add_argument(
        "--preset", choices=("tiny", "small"), default=None, help="random-weight model of this preset"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--camera", default="480x640", help="camera frame HxW fed to predict()")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    ap.add_argument("--block", type=int, default=25, help="calls of one row back to back per turn")
    ap.add_argument("--pause-ms", type=float, default=30.0, help="untimed sleep before each turn")
    ap.add_argument("--turn-warmup", type=int, default=1, help="untimed calls at the start of each turn")
    args = ap.parse_args()
    camera = tuple(int(v) for v in args.camera.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, what = _model_dir(args, Path(tmp))
        result = run_benchmark(
            model_dir,
            args.threads,
            args.iters,
            warmup=50,
            camera=camera,  # type: ignore[arg-type]
            block=args.block,
            pause=args.pause_ms / 1e3,
            turn_warmup=args.turn_warmup,
        )
        # load-robust companion: 1 thread, CPU time of the calling thread (= compute cost, whatever else runs)
        cpu = run_benchmark(
            model_dir,
            1,
            args.iters,
            warmup=50,
            camera=camera,
            cpu_time=True,  # type: ignore[arg-type]
            block=args.block,
            pause=args.pause_ms / 1e3,
            turn_warmup=args.turn_warmup,
        )
    for r in (result, cpu):
        r["settings"]["model"] = what
    result["settings"]["load_average"] = list(os.getloadavg())
    result["cpu_time_1_thread"] = cpu
    print(format_table(result))
    print()
    print(format_table(cpu))
    print(
        f"machine load average (1/5/15 min) at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())} "
        f"on {os.cpu_count()} cores"
    )
    print("\n".join(check_goals(result)))
    full_cpu = cpu["rows"]["onnxruntime full"]
    print(
        f"compute-cost ratios (1 thread, CPU time): onnxruntime full {full_cpu['ratio_vs_torch_p50']:.2f}x torch, "
        f"action-only {cpu['rows']['onnxruntime action-only']['ratio_vs_ort_full_p50']:.2f}x full"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
