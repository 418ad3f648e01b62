"""One camera vs two (front + wrist, issue 19 item 3): training-step cost and onnxruntime inference cost, side by side.

    nice -n 10 .venv/bin/python benchmarks/camera_cost.py                     # small preset, batch 64, 1 torch thread
    .venv/bin/python benchmarks/camera_cost.py --preset tiny --steps 5 --iters 100

Two untrained models of one preset (same seed; the cost does not depend on the weights): cameras ["front"] and
["front", "wrist"]. The two-camera model runs both cameras through the shared conv encoder and gives the transformer
(H/8)^2 more image tokens (64 at 64x64: 149 tokens instead of 85 with the small preset). Rows, interleaved so
background load hits both alike:
- training step as `wam train` runs it (the two runs of benchmarks/RESULTS.md "Session 7 — issue 19, cameras"): a
  batch of windows of synthetic episodes (the wrist frames are the front frames mirrored: the cost does not depend on
  the pixels), wam_loss (action + 0.5 x frame), backward, AdamW step. Wall p50 / p99 and process CPU seconds p50;
- onnxruntime, batch 1, full graph and action-only graph, exported with wam_ros.export.onnx_export.export_model
  (parity-checked) and loaded with wam_ros.runtime.load_policy as wam_node loads them, 1 thread, turns of 25 calls
  after a 30 ms pause + 1 untimed call (benchmarks/latency.py's scheme). Wall p50 / p99 and process CPU p50.
Record the output in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from image_sizes import timed, train_step  # noqa: E402 - the same interleaved timing and training step


def main() -> int:
    import torch

    from wam_ros.data.episode import Episode
    from wam_ros.data.windows import WindowArrays
    from wam_ros.export.onnx_export import ExportConfig, export_model
    from wam_ros.model import WamConfig, WorldActionModel
    from wam_ros.model.checkpoint import save_checkpoint
    from wam_ros.runtime.policy import load_policy
    from wam_ros.train.synthetic import synthetic_episode

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads of the training step (the runs used 1)"
    )
    ap.add_argument("--ort-threads", type=int, default=1, help="onnxruntime intra-op threads (wam_node's 1)")
    ap.add_argument("--steps", type=int, default=12, help="timed training steps per model")
    ap.add_argument("--iters", type=int, default=300, help="timed onnxruntime calls per graph and model")
    ap.add_argument("--batch", type=int, default=64, help="training batch (the runs used 64)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    def episode(i: int) -> Episode:
        ep = synthetic_episode(i, steps=16)
        ep.extra["wrist_frames"] = np.ascontiguousarray(ep.frames[:, ::-1])
        return ep

    eps = [episode(i) for i in range(6)]
    setups = {"1 camera": ["front"], "2 cameras": ["front", "wrist"]}
    models, batches, steps, info = {}, {}, {}, {}
    for name, cams in setups.items():
        torch.manual_seed(0)
        model = WorldActionModel(WamConfig.preset(a.preset, cameras=cams))
        c = model.cfg
        windows = WindowArrays(eps, c.k_frames, c.chunk, c.image_size, model.tokenizer, cameras=cams)
        batch = windows.batch(np.random.default_rng(0).integers(0, len(windows), a.batch))
        step = train_step(model, batch)
        model.train()
        models[name], batches[name], steps[name] = model, batch, step
        grid = (c.image_size // 8) ** 2
        info[name] = {
            "params": model.num_parameters(),
            "tokens": len(cams) * grid + 1 + c.max_tokens + c.chunk,
        }
    train = timed(steps, a.steps, warmup=2)

    calls = {}
    with tempfile.TemporaryDirectory(prefix="wam_cameras_") as tmp:
        for i, (name, model) in enumerate(models.items()):
            model.eval()
            out = Path(tmp) / f"m{i}"
            report = export_model(save_checkpoint(out / "model.pt", model), out, ExportConfig(fp16=False))
            info[name]["parity"] = max(
                v for f in report["files"].values() for v in f["max_abs_diff"].values()
            )
            b = batches[name]
            feed = (b["frames"][:1].numpy(), b["joint_pos"][:1].numpy(), b["tokens"][:1].numpy())
            for graph in ("full", "action"):
                policy = load_policy(out, backend="onnxruntime", threads=a.ort_threads, graph=graph)
                calls[f"{graph} {name}"] = lambda p=policy, f=feed: p.run_batch(*f)
        ort = timed(calls, a.iters, warmup=20, block=25, pause=0.03, turn_warmup=1)

    ms = lambda t, q: np.percentile(t, q) * 1e3  # noqa: E731
    print(
        f"{a.preset} preset, 64x64; training: {a.threads} torch thread(s), batch {a.batch}, {a.steps} steps per model "
        f"(interleaved); onnxruntime: {a.ort_threads} thread(s), batch 1, {a.iters} calls per graph (turns of 25)"
    )
    print(
        "| cameras | params | tokens | export parity | train step wall p50 / p99 ms | train step CPU s p50 | "
        "ort full wall p50 / p99 ms | ort full CPU p50 ms | ort action wall p50 / p99 ms | ort action CPU p50 ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in setups:
        (tw, tc), (fw, fc), (aw, ac) = train[name], ort[f"full {name}"], ort[f"action {name}"]
        i = info[name]
        print(
            f"| {name} | {i['params']:,} | {i['tokens']} | {i['parity']:.1e} | {ms(tw, 50):.0f} / {ms(tw, 99):.0f} | "
            f"{np.median(tc):.2f} | {ms(fw, 50):.2f} / {ms(fw, 99):.2f} | {ms(fc, 50):.2f} | "
            f"{ms(aw, 50):.2f} / {ms(aw, 99):.2f} | {ms(ac, 50):.2f} |"
        )
    one, two = "1 camera", "2 cameras"
    r = {
        "train wall": np.median(train[two][0]) / np.median(train[one][0]),
        "train CPU": np.median(train[two][1]) / np.median(train[one][1]),
        "ort full": np.median(ort[f"full {two}"][0]) / np.median(ort[f"full {one}"][0]),
        "ort action": np.median(ort[f"action {two}"][0]) / np.median(ort[f"action {one}"][0]),
    }
    print("\n2 cameras / 1 camera (p50): " + ", ".join(f"{k} {v:.2f}x" for k, v in r.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
