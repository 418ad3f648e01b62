"""`wam bench MODEL`: latency of every backend that loads here, side by side (see wam_ros/runtime/bench.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from wam_ros.runtime.bench import format_table, run_benchmark
from wam_ros.runtime.model_dir import onnx_name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", type=Path, help="model directory (model.pt + ONNX files) or a .pt checkpoint"
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="intra-op threads for every backend (default 2)"
    )
    parser.add_argument("--iters", type=int, default=300, help="interleaved rounds (default 300)")
    parser.add_argument(
        "--camera", default="480x640", help="camera frame size HxW fed to predict() (default 480x640)"
    )
    parser.add_argument(
        "--block", type=int, default=1, help="calls of one backend back to back per turn (default 1)"
    )
    parser.add_argument(
        "--pause-ms",
        type=float,
        default=0.0,
        help="untimed sleep before each backend's turn (default 0; 30 lets torch's threads sleep)",
    )
    parser.add_argument(
        "--export-to",
        type=Path,
        default=None,
        help="where to export a bare checkpoint first (default: a temporary directory)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")


def run(args: argparse.Namespace) -> int:
    import tempfile

    try:
        camera = tuple(int(v) for v in args.camera.lower().split("x"))
        if len(camera) != 2 or min(camera) < 1:
            raise ValueError
    except ValueError:
        print(f"wam bench: --camera must be HxW like 480x640, got {args.camera!r}", file=sys.stderr)
        return 2
    model_dir = args.model
    with tempfile.TemporaryDirectory() as tmp:
        if model_dir.is_file() or not (model_dir / onnx_name("full")).is_file():
            from wam_ros.export.onnx_export import export_model

            target = args.export_to or Path(tmp)
            print(f"exporting {model_dir} to {target} first", file=sys.stderr)
            export_model(model_dir, target)
            model_dir = target
        try:
            result = run_benchmark(
                model_dir,
                args.threads,
                args.iters,
                camera=camera,  # type: ignore[arg-type]
                block=args.block,
                pause=args.pause_ms / 1e3,
            )
        except (FileNotFoundError, ValueError) as exc:
            print(f"wam bench: {exc}", file=sys.stderr)
            return 1
    print(format_table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0
