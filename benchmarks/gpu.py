"""GPU measurements in ONE run (issue 20 items 4 and 5): training steps on CUDA vs the CPU, and, where TensorRT
imports, the fp16 engine built by `wam export --tensorrt`, its parity, and batch-1 latency side by side.

    python3 benchmarks/gpu.py --out $OUT                 # writes gpu.json + gpu.md (the block for RESULTS.md)
    python3 benchmarks/gpu.py --out runs/gpu --skip-inference --train-steps 20

(a) Training: `wam train`'s own Trainer.step (the same code `wam train --device cuda --amp ...` runs) on synthetic
    episodes, preset "small": CPU fp32 (all cores) vs CUDA fp32 / bf16 / fp16 (GradScaler), and CUDA bf16 with 4
    DataLoader workers, at each --train-batches size; p50/p99 ms per step (synchronised), samples/s, speed-up vs CPU,
    and the mean loss of the timed steps (the precisions train alike).
(b) Inference (the shipped model, copied to <out>/model so models/ is never touched): when `tensorrt` imports,
    `wam export model.pt --out <out>/model --tensorrt` builds the fp16 engines (full + action-only graphs); then
    every row that works here runs on the same preprocessed inputs (numpy in, numpy out, host<->device copies
    included): torch CPU fp32, torch CUDA fp32, onnxruntime CPU, onnxruntime CUDA EP, onnxruntime TensorRT EP (fp16),
    and the TensorRT engine, at batch 1 and at batch 4 (a planner's candidates), interleaved round-robin (one call
    of each row per round). Parity: max |row - torch CPU fp32| on actions and frames, against the export's
    tolerances (1e-4 fp32 on CPU, 1e-3 fp32 on GPU kernels, 1e-2 fp16). Goal: TensorRT fp16 p50 <= 1 ms at batch 1.
    A row that cannot run here is listed with the reason (e.g. onnxruntime without its CUDA EP), never silently
    replaced by a CPU one.

Exit status: 2 when no CUDA GPU can be used here (checked first: the message says what is missing); 1 when a
TensorRT row (engine or EP) fails its parity tolerance or `wam export --tensorrt` fails (other rows' parity is
reported, e.g. TF32 convolutions in torch CUDA fp32); 0 otherwise. gpu.json is rewritten
after each section, so a run stopped early keeps what it measured.

The lent nvidia-h200 machine has torch (CUDA) and onnx, but onnxruntime there is the CPU package and tensorrt is
absent: carry `onnxruntime-gpu` and `tensorrt` (cu13 builds, matching its CUDA 13 torch) as wheels (see the device
notes) and install them to /tmp/site first, or the inference section measures torch CUDA + onnxruntime CPU only and
says why the other rows are missing. The two onnxruntime packages must not both be importable: put /tmp/site first.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ATOL = {"cpu fp32": 1e-4, "gpu fp32": 1e-3, "fp16": 1e-2}  # max |row - torch CPU fp32| per output
GOAL_MS = 1.0  # TensorRT fp16, batch 1, p50


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def gpu_or_exit() -> Any:
    """torch with a usable CUDA device, or exit 2 with what is missing (before any work)."""
    try:
        import torch
    except ImportError as exc:
        print(f"benchmarks/gpu.py: torch does not import: {exc}", file=sys.stderr)
        sys.exit(2)
    from wam_ros.train.train import cuda_unavailable_reason

    reason = cuda_unavailable_reason()
    if reason is not None:
        print(
            f"benchmarks/gpu.py: no CUDA GPU to measure here: {reason}. Nothing was measured; run it on a "
            "machine with an NVIDIA GPU and a CUDA build of torch.",
            file=sys.stderr,
        )
        sys.exit(2)
    return torch


def environment(torch: Any, cpu_threads: int) -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    dev = torch.cuda.get_device_properties(0) if cuda else None
    env: dict[str, Any] = {
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
        "gpu": torch.cuda.get_device_name(0) if cuda else "no GPU (--dry-run-cpu)",
        "gpu_memory_gib": round(dev.total_memory / 2**30, 1) if dev else 0,
        "compute_capability": f"{dev.major}.{dev.minor}" if dev else "-",
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_threads": cpu_threads,
        "cpu": platform.processor() or platform.machine(),
    }
    try:
        import onnxruntime as ort

        env["onnxruntime"] = ort.__version__
        env["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError as exc:
        env["onnxruntime"] = f"not importable: {exc}"
    try:
        import tensorrt

        env["tensorrt"] = tensorrt.__version__
    except ImportError as exc:
        env["tensorrt"] = f"not importable: {exc}"
    return env


def stats(ms: list[float] | np.ndarray) -> dict[str, float]:
    a = np.asarray(ms, dtype=float)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)), "n": int(a.size)}


# ------------------------------------------------------------------------------------------------------ training
def bench_training(torch: Any, args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    from wam_ros.train.synthetic import write_synthetic_episodes
    from wam_ros.train.train import TrainConfig, Trainer

    data = work / "episodes"
    if not data.exists():
        write_synthetic_episodes(data / "reach", n=24, steps=40, seed=0)
        write_synthetic_episodes(data / "push", n=12, steps=40, seed=1, task="push")
    dirs = [str(data / "reach"), str(data / "push")]
    batches = [int(b) for b in args.train_batches.split(",")]
    plan = [("cpu", "off", 0, batches[0])]
    for b in batches:
        if torch.cuda.is_available():
            plan += [
                ("cuda", "off", 0, b),
                ("cuda", "bf16", 0, b),
                ("cuda", "fp16", 0, b),
                ("cuda", "bf16", 4, b),
            ]
        else:  # --dry-run-cpu: the same code paths on the CPU
            plan += [("cpu", "bf16", 0, b), ("cpu", "off", 2, b)]
    rows = []
    for device, amp, workers, batch in plan:
        name = f"{device} {'fp32' if amp == 'off' else amp}" + (f" workers {workers}" if workers else "")
        threads = args.cpu_threads if device == "cpu" else 2
        cfg = TrainConfig(
            data=dirs,
            out=str(work / "train" / f"{device}_{amp}_{workers}_{batch}"),
            preset=args.preset,
            steps=10**6,
            batch_size=batch,
            warmup=10,
            threads=threads,
            val_frac=0.0,
            device=device,
            amp=amp,
            workers=workers,
        )
        trainer = Trainer(cfg)
        trainer.setup()
        trainer.start()
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        times, losses = [], []
        try:
            for i in range(args.train_warmup + args.train_steps):
                sync()
                t0 = time.perf_counter()
                out = trainer.step(1e-3)
                sync()
                if i >= args.train_warmup:
                    times.append((time.perf_counter() - t0) * 1e3)
                    losses.append(float(out["loss"].detach()))
        finally:
            trainer.stream.close()
        row = {
            "row": name,
            "device": device,
            "amp": amp,
            "workers": workers,
            "batch": batch,
            "threads": threads,
            **stats(times),
            "mean_loss": float(np.mean(losses)),
            "finite": bool(np.isfinite(losses).all()),
            "params": trainer.model.num_parameters(),
        }
        row["samples_per_s"] = batch / row["p50_ms"] * 1e3
        rows.append(row)
        log(f"train {name:<22} batch {batch:>4}: p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms")
        del trainer
        if device == "cuda":
            torch.cuda.empty_cache()
    cpu = {r["batch"]: r["p50_ms"] for r in rows if r["device"] == "cpu"}
    for r in rows:
        r["speedup_vs_cpu_per_sample"] = (cpu[batches[0]] / batches[0]) / (r["p50_ms"] / r["batch"])
    return rows


# ------------------------------------------------------------------------------------------------------ inference
def export_tensorrt(model_dir: Path, max_batch: int) -> dict[str, Any]:
    """`wam export --tensorrt` into model_dir (a copy of the shipped model): ONNX fp32/fp16 + fp16 engines."""
    cmd = [
        sys.executable,
        "-m",
        "wam_ros.cli",
        "export",
        str(model_dir / "model.pt"),
        "--out",
        str(model_dir),
        "--tensorrt",
        "--max-batch",
        str(max_batch),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    result = {
        "command": "wam export <model>/model.pt --out <model> --tensorrt --max-batch " + str(max_batch),
        "returncode": proc.returncode,
        "seconds": round(time.perf_counter() - t0, 1),
        "stdout": proc.stdout[-4000:],
        "stderr": proc.stderr[-4000:],
    }
    log(f"wam export --tensorrt: exit {proc.returncode} in {result['seconds']} s")
    print(proc.stdout + proc.stderr, flush=True)
    return result


def _torch_fn(torch: Any, model: Any, device: str, graph: str, inputs: tuple[np.ndarray, ...]) -> Any:
    def run() -> tuple[np.ndarray, np.ndarray | None]:
        with torch.inference_mode():
            f, q, t = (torch.from_numpy(x).to(device) for x in inputs)
            if graph == "action":
                return model.forward_action(f, q, t).float().cpu().numpy(), None
            action, frame = model(f, q, t)
            return action.float().cpu().numpy(), frame.float().cpu().numpy()

    return run


def _ort_row(path: Path, providers: list[Any], want: str, threads: int) -> Any:
    from wam_ros.runtime.backends import OrtBackend

    backend = OrtBackend(path, threads=threads, providers=providers)
    if backend.providers[0] != want:
        raise RuntimeError(f"onnxruntime did not take {want} for {path.name} (got {backend.providers})")
    return backend


def inference_rows(torch: Any, model_dir: Path, graph: str, args: argparse.Namespace, skipped: dict) -> dict:
    """name -> (kind, backend-like object with .run(frames, joint_pos, tokens)) for one graph."""
    from wam_ros.model import load_checkpoint
    from wam_ros.runtime.model_dir import engine_name, onnx_name

    rows: dict[str, tuple[str, Any]] = {}
    model = load_checkpoint(model_dir / "model.pt")
    torch.set_num_threads(args.cpu_threads)

    class Torch:
        def __init__(self, m: Any, device: str) -> None:
            self.m, self.device = m, device

        def run(self, f: np.ndarray, q: np.ndarray, t: np.ndarray) -> Any:
            return _torch_fn(torch, self.m, self.device, graph, (f, q, t))()

    rows["torch CPU fp32"] = ("cpu fp32", Torch(model, "cpu"))
    if torch.cuda.is_available():
        rows["torch CUDA fp32"] = ("gpu fp32", Torch(copy.deepcopy(model).cuda().eval(), "cuda"))
    else:
        skipped["torch CUDA fp32"] = "no CUDA (--dry-run-cpu)"
    try:
        import onnxruntime as ort
    except ImportError as exc:
        skipped["onnxruntime"] = f"does not import: {exc}"
        return rows
    if hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()  # CUDA/cuDNN from torch or the nvidia wheels (onnxruntime-gpu >= 1.21)
        except Exception as exc:  # noqa: BLE001 - best effort; the CUDA EP row says what failed
            log(f"onnxruntime.preload_dlls: {exc}")
    fp32 = model_dir / onnx_name(graph, "fp32")
    available = ort.get_available_providers()
    attempts: list[tuple[str, str, list[Any], str]] = [
        ("onnxruntime CPU", "cpu fp32", ["CPUExecutionProvider"], "CPUExecutionProvider"),
        ("onnxruntime CUDA EP", "gpu fp32", ["CUDAExecutionProvider"], "CUDAExecutionProvider"),
    ]
    trt_opts = {  # as wam_ros.runtime.backends.candidate_providers sets them, the cache kept out of models/
        "trt_fp16_enable": True,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(model_dir.parent / "trt_ep_cache"),
    }
    attempts.append(
        (
            "onnxruntime TensorRT EP fp16",
            "fp16",
            [("TensorrtExecutionProvider", trt_opts), "CUDAExecutionProvider"],
            "TensorrtExecutionProvider",
        )
    )
    for name, kind, providers, want in attempts:
        if want not in available:
            skipped[name] = f"onnxruntime {ort.__version__} has no {want} (available: {available})"
            continue
        try:
            Path(trt_opts["trt_engine_cache_path"]).mkdir(parents=True, exist_ok=True)
            rows[name] = (kind, _ort_row(fp32, providers, want, threads=args.cpu_threads))
        except Exception as exc:  # noqa: BLE001 - a row that cannot run is reported, not fatal
            skipped[name] = str(exc).strip()[:400]
    engine = model_dir / engine_name(graph)
    if engine.is_file():
        try:
            from wam_ros.runtime.policy import load_policy

            rows["TensorRT engine fp16"] = ("fp16", load_policy(model_dir, "tensorrt", graph=graph).backend)
        except Exception as exc:  # noqa: BLE001
            skipped["TensorRT engine fp16"] = str(exc).strip()[:400]
    elif "TensorRT engine fp16" not in skipped:
        skipped["TensorRT engine fp16"] = f"no engine {engine.name} (see the export section)"
    return rows


def bench_inference(torch: Any, args: argparse.Namespace, work: Path, result: dict) -> int:
    from wam_ros.export.onnx_export import sample_inputs
    from wam_ros.model import load_checkpoint
    from wam_ros.runtime.backends import tensorrt_unavailable_reason
    from wam_ros.runtime.bench import interleaved_latency, summarize

    status = 0
    src = Path(args.model)
    model_dir = work / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    shutil.copytree(
        src, model_dir, ignore=shutil.ignore_patterns("*.gif", "*.png", "*.engine", "*.engine.json")
    )
    batches = [int(b) for b in args.batches.split(",")]
    skipped: dict[str, str] = {}
    reason = tensorrt_unavailable_reason()
    if reason is None:
        result["export"] = export_tensorrt(model_dir, max(batches))
        if result["export"]["returncode"] != 0:
            status = 1
            skipped["TensorRT engine fp16"] = (
                f"wam export --tensorrt failed: {result['export']['stderr'][-400:]}"
            )
    else:
        result["export"] = {"skipped": reason}
        skipped["TensorRT engine fp16"] = f"not built: {reason}"
        log(f"TensorRT: {reason}")
    reference = load_checkpoint(model_dir / "model.pt")
    timings, parity = [], []
    for graph in ("full", "action"):
        rows = inference_rows(torch, model_dir, graph, args, skipped)
        for batch in batches:
            inputs = tuple(x.numpy() for x in sample_inputs(reference, batch, seed=1))
            ref = rows["torch CPU fp32"][1].run(*inputs)
            usable = {}
            for name, (kind, backend) in rows.items():
                try:
                    out = backend.run(*inputs)
                except Exception as exc:  # noqa: BLE001 - e.g. a batch above an engine's profile
                    skipped[f"{name} ({graph}, batch {batch})"] = str(exc).strip()[:300]
                    continue
                usable[name] = backend
                diff = {"action": float(np.abs(out[0] - ref[0]).max())}
                if out[1] is not None and ref[1] is not None:
                    diff["frame"] = float(np.abs(out[1] - ref[1]).max())
                ok = all(v <= ATOL[kind] for v in diff.values())
                parity.append(
                    {
                        "row": name,
                        "graph": graph,
                        "batch": batch,
                        "max_abs_diff": diff,
                        "atol": ATOL[kind],
                        "ok": ok,
                    }
                )
                if not ok:
                    log(f"parity: {name} {graph} batch {batch}: {diff} > {ATOL[kind]}")
                    if "TensorRT" in name:  # the engine's parity is what this run checks; others are reported
                        status = 1
            fns = {name: (lambda b=b, x=inputs: b.run(*x)) for name, b in usable.items()}
            summary = summarize(interleaved_latency(fns, args.iters, args.warmup))
            base = summary.get("torch CUDA fp32", {}).get("p50_ms")
            for name, s in summary.items():
                row = {"row": name, "graph": graph, "batch": batch, **s}
                row["vs_torch_cuda_p50"] = s["p50_ms"] / base if base else None
                timings.append(row)
                log(f"{graph:<6} batch {batch} {name:<30} p50 {s['p50_ms']:.3f} ms  p99 {s['p99_ms']:.3f} ms")
    result["inference"] = timings
    result["parity"] = parity
    result["skipped"] = skipped
    trt = [
        r for r in timings if r["row"] == "TensorRT engine fp16" and r["batch"] == 1 and r["graph"] == "full"
    ]
    result["goal"] = {
        "tensorrt_fp16_p50_ms_full_batch1": trt[0]["p50_ms"] if trt else None,
        "goal_ms": GOAL_MS,
        "met": (trt[0]["p50_ms"] <= GOAL_MS) if trt else None,
    }
    return status


# ------------------------------------------------------------------------------------------------------ report
def markdown(result: dict[str, Any]) -> str:
    env = result["env"]
    lines = [
        f"## GPU: training step and inference backends ({env['gpu']}, {env['date_utc']} UTC)",
        "",
        f"{env['gpu']} ({env['gpu_memory_gib']} GiB, sm {env['compute_capability']}), torch {env['torch']} "
        f"(CUDA {env['torch_cuda']}, cuDNN {env['cudnn']}), onnxruntime {env.get('onnxruntime')}, "
        f"TensorRT {env.get('tensorrt')}, {env['cpu_count']} CPU cores (CPU rows: {env['cpu_threads']} threads), "
        f"Python {env['python']}.",
        "",
        "```",
        result["command"],
        "```",
        "",
    ]
    if result.get("training"):
        lines += [
            "Training step (`wam train`'s Trainer.step: batch gather, host->device copy, forward, loss, backward, "
            f"clip, AdamW; preset {result['args']['preset']}, synchronised), "
            f"{result['args']['train_steps']} timed steps after {result['args']['train_warmup']}:",
            "",
            "| row | batch | p50 ms | p99 ms | samples/s | vs CPU per sample | mean loss |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in result["training"]:
            lines.append(
                f"| {r['row']} | {r['batch']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['samples_per_s']:,.0f} | "
                f"{r['speedup_vs_cpu_per_sample']:.1f}x | {r['mean_loss']:.4f}{'' if r['finite'] else ' (NaN/Inf)'} |"
            )
        lines.append("")
    exp = result.get("export")
    if exp is not None:
        if "skipped" in exp:
            lines += [f"TensorRT engines: not built ({exp['skipped']}).", ""]
        else:
            lines += [f"`{exp['command']}`: exit {exp['returncode']} in {exp['seconds']} s.", ""]
    if result.get("parity"):
        lines += [
            "Parity, max |row - torch CPU fp32| on the same random inputs:",
            "",
            "| row | graph | batch | action | frame | tolerance | ok |",
            "|---|---|---|---|---|---|---|",
        ]
        for p in result["parity"]:
            if p["row"] == "torch CPU fp32":
                continue
            d = p["max_abs_diff"]
            frame = f"{d['frame']:.1e}" if "frame" in d else "-"
            lines.append(
                f"| {p['row']} | {p['graph']} | {p['batch']} | {d['action']:.1e} | {frame} | {p['atol']:g} | "
                f"{'yes' if p['ok'] else '**NO**'} |"
            )
        lines.append("")
    if result.get("inference"):
        lines += [
            f"Latency (numpy in, numpy out, copies included), {result['args']['iters']} calls per row interleaved "
            f"after {result['args']['warmup']} warm-up rounds:",
            "",
            "| row | graph | batch | p50 ms | p99 ms | vs torch CUDA |",
            "|---|---|---|---|---|---|",
        ]
        for r in result["inference"]:
            ratio = f"{r['vs_torch_cuda_p50']:.2f}" if r["vs_torch_cuda_p50"] else "-"
            lines.append(
                f"| {r['row']} | {r['graph']} | {r['batch']} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {ratio} |"
            )
        lines.append("")
        goal = result.get("goal", {})
        if goal.get("met") is None:
            lines.append(f"Goal TensorRT fp16 p50 <= {GOAL_MS:g} ms at batch 1: not measured (no engine).")
        else:
            lines.append(
                f"Goal TensorRT fp16 p50 <= {GOAL_MS:g} ms at batch 1 (full graph): "
                f"{goal['tensorrt_fp16_p50_ms_full_batch1']:.3f} ms, {'met' if goal['met'] else 'NOT met'}."
            )
        lines.append("")
    for name, why in result.get("skipped", {}).items():
        lines.append(f"- not measured: {name}: {why}")
    return "\n".join(lines).rstrip() + "\n"


def save(result: dict[str, Any], out: Path) -> None:
    (out / "gpu.json").write_text(json.dumps(result, indent=1))
    (out / "gpu.md").write_text(markdown(result))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/gpu_bench", help="where gpu.json and gpu.md go")
    p.add_argument(
        "--work", default=None, help="scratch folder (episodes, runs, model copy); default a temp dir"
    )
    p.add_argument(
        "--model", default=str(ROOT / "models" / "panda_tabletop"), help="model folder to export/time"
    )
    p.add_argument("--preset", default="small", choices=["tiny", "small"], help="training preset")
    p.add_argument("--train-batches", default="64,512", help="training batch sizes (CPU row: the first)")
    p.add_argument("--train-steps", type=int, default=40, help="timed training steps per row")
    p.add_argument(
        "--train-warmup", type=int, default=10, help="untimed steps first (cuDNN autotune, allocator)"
    )
    p.add_argument(
        "--cpu-threads", type=int, default=os.cpu_count() or 1, help="torch/onnxruntime CPU threads"
    )
    p.add_argument("--batches", default="1,4", help="inference batch sizes (largest = TensorRT profile max)")
    p.add_argument("--iters", type=int, default=300, help="timed calls per inference row")
    p.add_argument("--warmup", type=int, default=50, help="untimed rounds per inference block")
    p.add_argument("--skip-training", action="store_true")
    p.add_argument("--skip-inference", action="store_true")
    p.add_argument(
        "--dry-run-cpu",
        action="store_true",
        help="check this script's plumbing on a machine without a GPU (CPU rows only; nothing to record)",
    )
    args = p.parse_args(argv)
    if args.dry_run_cpu:
        import torch
    else:
        torch = gpu_or_exit()  # exit 2 here without a GPU: nothing else has run
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="wam_gpu_"))
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "command": "python3 benchmarks/gpu.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "args": vars(args),
        "env": environment(torch, args.cpu_threads),
    }
    log(json.dumps(result["env"]))
    save(result, out)
    status = 0
    if not args.skip_training:
        result["training"] = bench_training(torch, args, work)
        save(result, out)
    if not args.skip_inference:
        status = bench_inference(torch, args, work, result)
        save(result, out)
    print(markdown(result), flush=True)
    log(f"wrote {out / 'gpu.json'} and {out / 'gpu.md'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
