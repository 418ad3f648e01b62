"""`wam export`: checkpoint -> ONNX (full + action-only, fp32 + fp16, parity-checked) and optionally TensorRT engines.

    wam export runs/reach/ckpt.pt --out models/panda_reach/
    wam export models/panda_tabletop/model.pt --out models/panda_tabletop --tensorrt     # GPU machine only

Prints one line per written file with its size and max |torch - onnxruntime|. Exit code 0 on success, 1 when the
checkpoint is bad or parity fails (nothing is written then), 2 when --tensorrt is asked for on a machine that cannot
build engines (checked before any work, so the message comes at once).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint", type=Path, help="model checkpoint (.pt) or a directory holding model.pt"
    )
    parser.add_argument("--out", type=Path, required=True, help="output model directory (created if missing)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument(
        "--graphs", default="full,action", help="comma list of graphs: full, action (default both)"
    )
    parser.add_argument("--no-fp16", action="store_true", help="skip the fp16 variants")
    parser.add_argument(
        "--no-plan-fp16",
        action="store_true",
        help="skip only the planner graphs' fp16 variants (slower than fp32 on a CPU; docs/export.md)",
    )
    parser.add_argument(
        "--tensorrt",
        action="store_true",
        help="also build fp16 TensorRT engines (needs an NVIDIA GPU + the tensorrt package)",
    )
    parser.add_argument(
        "--max-batch", type=int, default=4, help="largest batch of the TensorRT profile (default 4)"
    )


def run(args: argparse.Namespace) -> int:
    from wam_ros.export.tensorrt import tensorrt_unavailable_reason

    if args.tensorrt:
        reason = tensorrt_unavailable_reason()
        if reason:
            print(f"wam export --tensorrt: cannot build TensorRT engines here: {reason}", file=sys.stderr)
            return 2
    from wam_ros.export.onnx_export import ExportConfig, ExportError, export_model
    from wam_ros.model.checkpoint import CheckpointError

    graphs = tuple(g.strip() for g in args.graphs.split(",") if g.strip())
    try:
        cfg = ExportConfig(
            opset=args.opset,
            graphs=graphs,
            fp16=not args.no_fp16 or args.tensorrt,
            plan_fp16=not args.no_plan_fp16,
        )
        report = export_model(args.checkpoint, args.out, cfg)
    except (CheckpointError, ExportError, ValueError, FileNotFoundError) as exc:
        print(f"wam export: {exc}", file=sys.stderr)
        return 1
    for name, info in report["files"].items():
        diffs = ", ".join(f"{k} {v:.2e}" for k, v in info["max_abs_diff"].items())
        print(
            f"{args.out / name}  {info['bytes'] / 1e6:.2f} MB  max|torch-ort| {diffs} (<= {info['atol']:g}, "
            f"batches {info['batches_checked']})"
        )
    if args.tensorrt:
        from wam_ros.export.tensorrt import build_engine
        from wam_ros.runtime.model_dir import engine_name, onnx_name

        for graph in graphs:
            engine = build_engine(
                args.out / onnx_name(graph, "fp16"), args.out / engine_name(graph), max_batch=args.max_batch
            )
            print(f"{engine}  {engine.stat().st_size / 1e6:.2f} MB  TensorRT fp16 engine")
    return 0
