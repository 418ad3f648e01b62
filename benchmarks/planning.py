"""One best-of-N planning decision through onnxruntime beside one policy predict(), interleaved in one run (issue 16).

    nice -n 10 .venv/bin/python benchmarks/planning.py --model models/panda_tabletop          # an exported imagining model
    nice -n 10 .venv/bin/python benchmarks/planning.py --model runs/imagine/ckpt.pt           # exported to a temp dir first
    nice -n 10 .venv/bin/python benchmarks/planning.py --preset tiny_imagine --iters 200      # random weights: checks the run
    ... --json results.json        # (or --json - : JSON on stdout instead of the table)

Rows (all on onnxruntime, CPU, --threads intra-op threads each, the same model directory):
- "plan fp32" / "plan fp16": one decision at N=--candidates chunks and the full horizon H=N_chunk (8): the propose
  graph once at batch 1 (wam_plan_propose[_fp16].onnx: the M modes, their probabilities, the context), N candidates
  drawn from the modes (the most probable first, the rest by probability with a smooth perturbation: the planner's
  recipe), the context/tokens/joints repeated N + 1 times (np.repeat), the imagine graph once at batch N + 1 (imagine +
  critic: the N candidates at h=N and the policy's own chunk at h=0, the present-distance estimate that the default
  trigger "stall" tests, session 11), and the argmax of the success probability. Through wam_ros.runtime.plan_backends.open_plan_backend, as the node
  loads it; no safety limits (their check is a few numpy comparisons).
- "plan fp32 always" / "plan fp16 always": the same decision without the h=0 row (trigger "always"), side by side:
  the stall test's cost.
- "propose fp32" / "score fp32" (and fp16): the two graph calls of a decision alone, where the time goes.
- "frame fp32" / "frame fp16" (only when the directory has wam_plan_frame[_fp16].onnx; --no-frame leaves them out):
  imagine_frame at batch 1 and h=1 on one candidate, the chosen chunk's picture the planner draws after a decision
  (for the surprise monitor); not part of "plan".
- "predict": wam_ros.runtime.load_policy(model, "onnxruntime", graph="full").predict() on a 64x64 stream (each call
  one new camera frame of the model's size plus the previous K-1; wam_ros.runtime.bench's stream), the policy alone.
Calls are interleaved round-robin and paced: each call after an untimed --pause-ms sleep (default 20 ms), as a node calls
at 10 Hz, so every row meets the same background load and none runs in another's wake; --warmup rounds are not timed.
Why paced: a decision runs two onnxruntime sessions one after the other, and back to back (decision after decision
with no gap) each session's workers are still winding down their spin-wait when the other session starts: measured
on tiny_imagine, 2 threads, a loaded 2-core VM: propose + score 10 ms back to back vs 2.9 ms with a 5 ms gap (= the
two calls timed alone). A node never plans back to back. --block/--turn-warmup give latency.py's scheme instead. Wall p50 / p90 / p99 / max and process-CPU p50 per row, and the ratio plan / predict
(p50 and p99). Goal (issue 16, item 6): plan fp32 p50 <= 25 ms at N=16 on 2 threads. Record in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOAL_P50_MS = 25.0
INSTRUCTION = "push the cube to the red target"  # words of the base vocabulary: known to every model


def wall_and_cpu() -> np.ndarray:
    """Wall time and this process's CPU time (every thread: onnxruntime's workers included)."""
    return np.array([time.perf_counter(), time.process_time()])


def _model_dir(args: argparse.Namespace, tmp: Path) -> tuple[Path, str]:
    """An exported directory with the planner graphs: the given one, or an export of a checkpoint / random preset."""
    from wam_ros.export.onnx_export import ExportConfig, export_model
    from wam_ros.runtime.model_dir import CHECKPOINT, planner_onnx_name

    if args.model is not None:
        path = args.model
        if path.is_dir() and all(
            (path / planner_onnx_name(g, p)).is_file()
            for g in ("propose", "imagine")
            for p in args.precisions
        ):
            return path, str(path)
        ckpt = path if path.is_file() else path / CHECKPOINT
        # only the precisions timed: the shipped weights' fp16 planner graphs miss the fp16 parity bar
        export_model(ckpt, tmp, ExportConfig(plan_fp16="fp16" in args.precisions))
        return tmp, f"{ckpt} (exported to a temp dir)"
    import torch

    from wam_ros.model import WamConfig, WorldActionModel, save_checkpoint

    torch.manual_seed(0)
    model = WorldActionModel(WamConfig.preset(args.preset))
    save_checkpoint(tmp / "src.pt", model)
    export_model(tmp / "src.pt", tmp)
    return tmp, f"preset {args.preset!r} with random weights"


class Decision:
    """One planning decision on a PlanBackend (see the module docstring); keeps its last choice."""

    def __init__(
        self,
        backend: Any,
        frames: np.ndarray,
        q: np.ndarray,
        tokens: np.ndarray,
        n: int,
        present: bool = True,
    ) -> None:
        self.be, self.frames, self.q, self.tokens, self.n = backend, frames, q, tokens, n
        self.present = present  # the stall test's row (trigger "stall", the default); False: trigger "always"
        self.rng = np.random.default_rng(0)
        self.chosen = -1

    def candidates(self, proposals: np.ndarray, probs: np.ndarray) -> np.ndarray:
        M, N, J = proposals.shape
        order = np.argsort(-probs, kind="stable")
        k = min(self.n, M)
        modes = np.concatenate([order[:k], self.rng.choice(M, size=self.n - k, p=probs / probs.sum())])
        out = proposals[modes].copy()
        offset = self.rng.normal(0.0, 0.05, (self.n - k, 1, J)).astype(np.float32)
        offset[..., J - 1 :] = 0.0  # the gripper is not perturbed
        out[k:] += offset * (np.arange(1, N + 1, dtype=np.float32) / N)[None, :, None]
        return out

    def __call__(self) -> int:
        proposals, probs, context = self.be.propose(self.frames, self.q, self.tokens)
        chunks = self.candidates(proposals[0], probs[0].astype(np.float64))
        rows = np.concatenate([chunks, chunks[:1]]) if self.present else chunks  # + own chunk at h=0
        n = len(rows)
        horizons = np.full(n, self.be.horizon_max, np.int64)
        horizons[len(chunks) :] = 0
        critic, _ = self.be.score(
            np.repeat(context, n, 0),
            np.repeat(self.tokens, n, 0),
            np.repeat(self.q, n, 0),
            rows,
            horizon=horizons,
        )
        self.chosen = int(
            np.argmax(critic[: len(chunks), 0])
        )  # the success logit: the same order as its probability
        return self.chosen


def run(args: argparse.Namespace) -> dict[str, Any]:
    from wam_ros.runtime.bench import _Stream, interleaved_latency
    from wam_ros.runtime.plan_backends import open_plan_backend
    from wam_ros.runtime.policy import load_policy

    with tempfile.TemporaryDirectory(prefix="wam_planning_") as tmp:
        model_dir, what = _model_dir(args, Path(tmp))
        policy = load_policy(model_dir, backend="onnxruntime", threads=args.threads, graph="full")
        spec = policy.spec
        H, W = spec.image_size
        rng = np.random.default_rng(args.seed)
        images = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(spec.k_frames)]
        q = np.zeros(spec.num_joints)
        frames, q32, tokens = policy.prepare({"images": images, "joint_pos": q, "instruction": INSTRUCTION})
        fns: dict[str, Any] = {}
        backends = {}
        for precision in args.precisions:
            be = open_plan_backend(model_dir, "onnxruntime", precision, args.threads)
            backends[precision] = be
            decision = Decision(be, frames, q32, tokens, args.candidates)
            _, _, context = be.propose(frames, q32, tokens)
            chunks = decision.candidates(*(a[0] for a in be.propose(frames, q32, tokens)[:2]))
            rows = np.concatenate([chunks, chunks[:1]])  # as a decision scores them (N + 1 rows)
            hz = np.full(len(rows), be.horizon_max, np.int64)
            hz[-1] = 0
            tiled = [np.repeat(a, len(rows), 0) for a in (context, tokens, q32)]
            fns[f"plan {precision}"] = decision
            fns[f"plan {precision} always"] = Decision(
                be, frames, q32, tokens, args.candidates, present=False
            )
            fns[f"propose {precision}"] = lambda be=be: be.propose(frames, q32, tokens)
            fns[f"score {precision}"] = lambda be=be, t=tiled, c=rows, h=hz: be.score(*t, c, horizon=h)
            if args.frame and be.has_frame_graph:
                one = np.ones(1, np.int64)
                fns[f"frame {precision}"] = lambda be=be, c=chunks[:1], h=one: be.imagine_frame(
                    frames, q32, tokens, c, h
                )
        fns["predict"] = _Stream(policy, (H, W), spec.k_frames, args.seed)
        times = interleaved_latency(
            fns, args.iters, args.warmup, wall_and_cpu, args.block, args.pause_ms / 1e3, args.turn_warmup
        )
    rows = {}
    for name, t in times.items():
        wall, cpu = t[:, 0] * 1e3, t[:, 1] * 1e3
        rows[name] = {
            "p50_ms": float(np.percentile(wall, 50)),
            "p90_ms": float(np.percentile(wall, 90)),
            "p99_ms": float(np.percentile(wall, 99)),
            "max_ms": float(wall.max()),
            "cpu_p50_ms": float(np.percentile(cpu, 50)),
        }
    for precision in args.precisions:
        r = rows[f"plan {precision}"]
        r["ratio_to_predict_p50"] = r["p50_ms"] / rows["predict"]["p50_ms"]
        r["ratio_to_predict_p99"] = r["p99_ms"] / rows["predict"]["p99_ms"]
    be = next(iter(backends.values()))
    settings = {
        "model": what,
        "candidates": args.candidates,
        "horizon": be.horizon_max,
        "frame_graph": be.has_frame_graph,
        "modes": be.modes,
        "image_size": [H, W],
        "threads": args.threads,
        "iters": args.iters,
        "warmup_rounds": args.warmup,
        "block": args.block,
        "pause_ms": args.pause_ms,
        "turn_warmup": args.turn_warmup,
        "providers": be.providers,
        "goal_plan_fp32_p50_ms": GOAL_P50_MS,
    }
    return {"settings": settings, "rows": rows}


def format_table(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [
        f"model {s['model']}: M={s['modes']} modes, N={s['candidates']} candidates, H={s['horizon']}, "
        f"{s['image_size'][0]}x{s['image_size'][1]}, onnxruntime {s['threads']} threads ({s['providers'][0]}); "
        f"{s['iters']} calls per row interleaved in turns of {s['block']} ({s['pause_ms']:g} ms pause + "
        f"{s['turn_warmup']} untimed call before each), {s['warmup_rounds']} warm-up rounds not timed",
        f"{'row':<14}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}{'CPU p50':>10}{'plan/predict p50':>18}{'p99':>7}",
    ]
    for name, r in result["rows"].items():
        ratio = (
            f"{r['ratio_to_predict_p50']:>18.2f}{r['ratio_to_predict_p99']:>7.2f}"
            if "ratio_to_predict_p50" in r
            else ""
        )
        lines.append(
            f"{name:<14}{r['p50_ms']:>9.2f}{r['p90_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['max_ms']:>9.2f}"
            f"{r['cpu_p50_ms']:>10.2f}{ratio}"
        )
    plan = result["rows"].get("plan fp32")
    if plan is not None:
        met = "MET" if plan["p50_ms"] <= s["goal_plan_fp32_p50_ms"] else "NOT MET"
        lines.append(
            f"goal plan fp32 p50 <= {s['goal_plan_fp32_p50_ms']:g} ms: {plan['p50_ms']:.2f} ms {met}"
        )
    return "\n".join(lines) + "\n(wall ms; CPU = process CPU time per call, every onnxruntime thread counted)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--model", type=Path, help="model directory (wam export) or a checkpoint of an imagining model"
    )
    src.add_argument(
        "--preset", help="an imagining WamConfig preset with random weights (small_imagine, tiny_imagine)"
    )
    ap.add_argument("--candidates", type=int, default=16, help="N chunks per decision (default 16)")
    ap.add_argument(
        "--threads", type=int, default=2, help="onnxruntime intra-op threads per session (default 2)"
    )
    ap.add_argument("--precisions", default="fp32,fp16", help="planner graphs to time (default fp32,fp16)")
    ap.add_argument("--iters", type=int, default=300, help="timed calls per row (default 300)")
    ap.add_argument("--warmup", type=int, default=20, help="untimed rounds first (default 20)")
    ap.add_argument("--block", type=int, default=1, help="calls of one row per turn (default 1)")
    ap.add_argument(
        "--pause-ms", type=float, default=20.0, help="untimed pause before each turn (default 20)"
    )
    ap.add_argument(
        "--turn-warmup", type=int, default=0, help="untimed calls at the start of a turn (default 0)"
    )
    ap.add_argument(
        "--no-frame",
        dest="frame",
        action="store_false",
        help="leave out the imagine_frame rows (timed by default when the frame graph is there)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--json", nargs="?", const="-", help="write the figures as JSON to this file ('-': stdout)"
    )
    args = ap.parse_args()
    args.precisions = tuple(p.strip() for p in args.precisions.split(",") if p.strip())
    if not args.precisions or not set(args.precisions) <= {"fp32", "fp16"}:
        ap.error(f"--precisions must be a comma list of fp32, fp16, got {args.precisions}")
    if args.candidates < 1 or args.iters < 1 or args.threads < 1:
        ap.error("--candidates, --iters and --threads must be >= 1")
    result = run(args)
    result["settings"]["command"] = " ".join(sys.argv)
    if args.json == "-":
        print(json.dumps(result, indent=1))
    else:
        print(format_table(result))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
