"""What the frame decoder costs: "deconv" (full-resolution stage) vs "shuffle" (sub-pixel conv at H/2), side by side.

    .venv/bin/python benchmarks/decoder_cost.py                  # small preset, 2 threads
    .venv/bin/python benchmarks/decoder_cost.py --steps 20 --iters 500

Two models of the `small` preset that differ only in `frame_decoder` (random weights, the same seed: the cost does
not depend on the values). Rows, interleaved in turns (benchmarks/latency.py's scheme):
- a training step as `wam train` runs it (batch 32, forward + backward of action loss + 0.5 x frame MSE, AdamW step);
- one onnxruntime call of each exported graph at batch 1: full (actions + frame) and action-only.
Prints p50/p99 and the shuffle/deconv ratios. Record the output in benchmarks/RESULTS.md (issues 5 and 6).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    import onnxruntime as ort
    import torch

    from wam_ros.export.onnx_export import sample_inputs, to_onnx
    from wam_ros.model import WamConfig, WorldActionModel
    from wam_ros.runtime.backends import session_options
    from wam_ros.runtime.bench import interleaved_latency

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30, help="timed training steps per decoder")
    ap.add_argument("--iters", type=int, default=1000, help="timed onnxruntime calls per graph")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    models = {}
    for kind in ("deconv", "shuffle"):
        torch.manual_seed(0)
        models[kind] = WorldActionModel(WamConfig.preset("small", frame_decoder=kind))

    # -- training step
    batch = sample_inputs(models["deconv"], 32)
    target_frame = torch.rand(32, 3, 64, 64)
    target_delta = torch.randn(32, models["deconv"].cfg.chunk, models["deconv"].cfg.num_joints)

    def train_step(model, opt):
        def step():
            delta, frame = model.forward_train(*batch)
            loss = (
                torch.nn.functional.smooth_l1_loss(delta, target_delta)
                + 0.5 * (frame - target_frame).square().mean()
            )
            opt.zero_grad()
            loss.backward()
            opt.step()

        return step

    steps = {}
    for kind, model in models.items():
        model.train()
        steps[f"train step, {kind}"] = train_step(model, torch.optim.AdamW(model.parameters(), 1e-4))
    train = interleaved_latency(steps, a.steps, warmup=3, block=5)

    # -- onnxruntime, batch 1
    calls = {}
    for kind, model in models.items():
        model.eval()
        feed_t = sample_inputs(model, 1)
        for graph in ("full", "action"):
            sess = ort.InferenceSession(
                to_onnx(model, graph).SerializeToString(),
                sess_options=session_options(a.threads),
                providers=["CPUExecutionProvider"],
            )
            feed = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), feed_t, strict=True)}
            calls[f"onnxruntime {graph}, {kind}"] = lambda s=sess, f=feed: s.run(None, f)
    ort_t = interleaved_latency(calls, a.iters, warmup=20, block=25, pause=0.03, turn_warmup=1)

    print(
        f"small preset, {a.threads} threads; training: batch 32, {a.steps} steps per decoder; onnxruntime: batch 1, "
        f"{a.iters} calls per graph, turns of 25 after a 30 ms pause + 1 untimed call"
    )
    print(f"{'row':34s} {'p50 ms':>8s} {'p99 ms':>8s}")
    rows = {**train, **ort_t}
    for name, t in rows.items():
        print(f"{name:34s} {np.percentile(t, 50) * 1e3:8.2f} {np.percentile(t, 99) * 1e3:8.2f}")
    for what in ("train step", "onnxruntime full", "onnxruntime action"):
        r = np.median(rows[f"{what}, shuffle"]) / np.median(rows[f"{what}, deconv"])
        print(f"{what}: shuffle / deconv p50 = {r:.2f}")
    for kind in ("deconv", "shuffle"):
        r = np.median(rows[f"onnxruntime action, {kind}"]) / np.median(rows[f"onnxruntime full, {kind}"])
        print(f"{kind}: action-only / full p50 = {r:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
