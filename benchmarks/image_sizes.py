"""Image-size presets 64 / 96 / 128: training-step cost and onnxruntime inference cost, side by side in one run.

    nice -n 10 .venv/bin/python benchmarks/image_sizes.py                     # 2 threads, all three sizes
    .venv/bin/python benchmarks/image_sizes.py --sizes 64,128 --steps 5 --iters 100 --threads 1

One untrained model per size: the `small` preset of wam_ros/model/config.py with only `image_size` changed (same seed;
the cost does not depend on the weights). Rows, interleaved so background load hits every size alike:
- training step as `wam train` runs it: a batch of 32 windows of synthetic episodes rendered at the size (no resize),
  wam_loss (action + 0.5 x frame), backward, AdamW step. Wall p50 / p99, and the process CPU seconds per step (p50):
  the CPU figure is what the step costs, robust to other processes on a shared machine;
- onnxruntime, batch 1, full graph (action + next frame) and action-only graph: each model exported with
  wam_ros.export.onnx_export.export_model (parity-checked against torch) into a temporary directory, loaded with
  wam_ros.runtime.load_policy as wam_node loads it, timed on preprocessed inputs (turns of 25 calls after a 30 ms
  pause + 1 untimed call, benchmarks/latency.py's scheme), 1 thread as wam_node runs it. Wall p50 / p99 and the
  process CPU time p50.
Also printed: parameters, tokens per frame, the full graph's file size, and every figure's ratio to 64.
Record the output in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def wall_and_cpu() -> np.ndarray:
    """Wall time and this process's CPU time. The CPU time counts every thread of the process (torch's workers,
    onnxruntime's spinning worker), so it is a call's cost; on a machine shared with other jobs it moves far less
    than the wall time."""
    return np.array([time.perf_counter(), time.process_time()])


def timed(
    fns: dict, iters: int, warmup: int, block: int = 1, pause: float = 0.0, turn_warmup: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Round-robin over fns in turns of `block` calls (wam_ros.runtime.bench.interleaved_latency):
    {name: (wall seconds, process CPU seconds) per call}."""
    from wam_ros.runtime.bench import interleaved_latency

    times = interleaved_latency(fns, iters, warmup, wall_and_cpu, block, pause, turn_warmup)
    return {name: (t[:, 0], t[:, 1]) for name, t in times.items()}


def train_step(model, batch):  # noqa: ANN001, ANN201 - a WorldActionModel, its batch -> a callable
    """One AdamW step of `model` on `batch` with the training loss, as a callable for `timed`."""
    import torch

    from wam_ros.model.losses import wam_loss

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        loss = wam_loss(model, batch, 0.5)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def main() -> int:
    import torch

    from wam_ros.data.windows import WindowArrays
    from wam_ros.export.onnx_export import ExportConfig, export_model
    from wam_ros.model import WamConfig, WorldActionModel
    from wam_ros.model.checkpoint import save_checkpoint
    from wam_ros.runtime.model_dir import onnx_name
    from wam_ros.runtime.policy import load_policy
    from wam_ros.train.synthetic import synthetic_episode

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="64,96,128", help="comma list of image sizes (multiples of 8)")
    ap.add_argument(
        "--threads", type=int, default=2, help="torch threads of the training step (wam train's 2 cores)"
    )
    ap.add_argument(
        "--ort-threads", type=int, default=1, help="onnxruntime intra-op threads (wam_node's default 1)"
    )
    ap.add_argument("--steps", type=int, default=12, help="timed training steps per size")
    ap.add_argument("--iters", type=int, default=300, help="timed onnxruntime calls per graph and size")
    ap.add_argument("--batch", type=int, default=32, help="training batch")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    torch.set_num_threads(a.threads)

    models, data, train_steps, info = {}, {}, {}, {}
    for size in sizes:
        torch.manual_seed(0)
        model = WorldActionModel(
            WamConfig.preset(
                {64: "small", 96: "small96", 128: "small128"}.get(size, "small"), image_size=size
            )
        )
        eps = [synthetic_episode(i, steps=16, size=size) for i in range(6)]
        windows = WindowArrays(eps, model.cfg.k_frames, model.cfg.chunk, size, model.tokenizer)
        batch = windows.batch(np.random.default_rng(0).integers(0, len(windows), a.batch))
        step = train_step(model, batch)
        model.train()
        models[size], data[size], train_steps[f"train {size}"] = model, batch, step
        info[size] = {"params": model.num_parameters(), "tokens": (size // 8) ** 2}
    train = timed(train_steps, a.steps, warmup=2)

    calls = {}
    with tempfile.TemporaryDirectory(prefix="wam_image_sizes_") as tmp:
        for size, model in models.items():
            model.eval()
            out = Path(tmp) / f"s{size}"
            ckpt = save_checkpoint(out / "model.pt", model)
            report = export_model(ckpt, out, ExportConfig(fp16=False))
            info[size]["onnx_mb"] = report["files"][onnx_name("full")]["bytes"] / 1e6
            info[size]["parity"] = max(
                v for f in report["files"].values() for v in f["max_abs_diff"].values()
            )
            b = data[size]
            feed = (
                b["frames"][:1].numpy(),
                b["joint_pos"][:1].numpy().astype(np.float32),
                b["tokens"][:1].numpy(),
            )
            for graph in ("full", "action"):
                policy = load_policy(out, backend="onnxruntime", threads=a.ort_threads, graph=graph)
                calls[f"ort {graph} {size}"] = lambda p=policy, f=feed: p.run_batch(*f)
        ort = timed(calls, a.iters, warmup=20, block=25, pause=0.03, turn_warmup=1)

    ms = lambda t, q: np.percentile(t, q) * 1e3  # noqa: E731
    print(
        f"small preset, image_size changed; training: {a.threads} torch threads, batch {a.batch}, {a.steps} steps per "
        f"size (interleaved); onnxruntime: {a.ort_threads} thread(s), batch 1, {a.iters} calls per graph (turns of 25, "
        "30 ms pause + 1 untimed call)"
    )
    print(
        "| size | params | tokens/frame | full .onnx MB | export parity | train step wall p50 / p99 ms | train step "
        "CPU s p50 | ort full wall p50 / p99 ms | ort full CPU p50 ms | ort action wall p50 / p99 ms | ort action "
        "CPU p50 ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for size in sizes:
        (tw, tc), (fw, fc), (aw, ac) = (
            train[f"train {size}"],
            ort[f"ort full {size}"],
            ort[f"ort action {size}"],
        )
        i = info[size]
        print(
            f"| {size} | {i['params']:,} | {i['tokens']} | {i['onnx_mb']:.2f} | {i['parity']:.1e} | "
            f"{ms(tw, 50):.0f} / {ms(tw, 99):.0f} | {np.median(tc):.2f} | {ms(fw, 50):.2f} / {ms(fw, 99):.2f} | "
            f"{ms(fc, 50):.2f} | {ms(aw, 50):.2f} / {ms(aw, 99):.2f} | {ms(ac, 50):.2f} |"
        )
    base = sizes[0]
    print(f"\nratios to {base} (p50): ")
    for size in sizes[1:]:
        r = {
            "train wall": np.median(train[f"train {size}"][0]) / np.median(train[f"train {base}"][0]),
            "train CPU": np.median(train[f"train {size}"][1]) / np.median(train[f"train {base}"][1]),
            "ort full": np.median(ort[f"ort full {size}"][0]) / np.median(ort[f"ort full {base}"][0]),
            "ort action": np.median(ort[f"ort action {size}"][0]) / np.median(ort[f"ort action {base}"][0]),
            "pixels": (size / base) ** 2,
        }
        print(f"  {size}: " + ", ".join(f"{k} {v:.2f}x" for k, v in r.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
