"""`wam bench`: latency of every backend that works here, side by side in one process, same threads, same inputs.

    wam bench models/panda_tabletop --threads 2 --iters 500
    wam bench runs/reach/ckpt.pt --export-to /tmp/bench_model     # a bare checkpoint: exported first

Rows: torch eager (full graph), onnxruntime full graph, onnxruntime action-only graph (+ fp16 and TensorRT rows when
the files exist and the machine can run them). Calls are interleaved round-robin (one call of each backend per
round) so load from other processes hits every row alike; p50/p99 in ms and ratios to torch eager / to the full
graph are printed. `--block B --pause-ms P` runs B calls of a backend back to back per turn and sleeps P ms (untimed)
before the next backend's turn: torch's OpenMP workers spin-wait for milliseconds after each torch call (libgomp's
default spin count), and one call after the other they take the core onnxruntime's second thread needs, which
measures contention between two runtimes that never share a process on a robot. "graph" times one backend call on preprocessed batch-1 inputs; "predict" times the whole
`policy.predict()` (resize from the camera size + stacking + tokenising + output conversion) as a control loop calls
it: each call brings one new camera frame (from a pool of 16 distinct arrays, larger than predict()'s resize cache)
and the previous K-1, so each call resizes exactly one camera frame. A row's graph call and its predict() call are
timed side by side in the same rounds (issue 21: the ratio predict / graph p50 is read from one run, not from two
phases minutes apart), and every other round runs the calls in reverse order, so no call always follows the same one
(torch's spinning threads, for one, slow whatever runs right after a torch call).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def interleaved_latency(
    fns: dict[str, Callable[[], Any]],
    iters: int,
    warmup: int = 20,
    clock: Callable[[], float | np.ndarray] = time.perf_counter,
    block: int = 1,
    pause: float = 0.0,
    turn_warmup: int = 0,
    alternate: bool = False,
) -> dict[str, np.ndarray]:
    """Call each fn `iters` times, round-robin, after `warmup` rounds; per-call seconds for each name.

    clock: time.perf_counter (wall latency) or time.thread_time (CPU time of the calling thread: with 1 thread
    every backend computes on the caller, so this is the compute cost, robust to load from other processes); or a
    function returning an array of n readings (e.g. wall and process CPU time), then a name's times are (iters, n).
    block: calls of one fn back to back per turn (the last turn may be shorter); pause: seconds slept, untimed,
    before each turn, so threads another backend left spinning have gone to sleep; turn_warmup: untimed calls at
    the start of each turn (the first call after an idle pause runs on cold caches and a vCPU that was halted: on
    the project VM it is ~1.5-2.5 ms slower, which is the paced latency ros_latency.py measures, not the backend's);
    alternate: every other round (turn of `block` calls) takes the fns in reverse order, so no fn always runs right
    after the same other one.
    """
    if block < 1 or pause < 0:
        raise ValueError(f"block must be >= 1 and pause >= 0, got {block}, {pause}")
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: np.empty((iters, *np.shape(clock()))) for name in fns}
    order = list(fns.items())
    for r, start in enumerate(range(0, iters, block)):
        for name, fn in order[::-1] if alternate and r % 2 else order:
            if pause:
                time.sleep(pause)
            for _ in range(turn_warmup):
                fn()
            for i in range(start, min(start + block, iters)):
                t0 = clock()
                fn()
                times[name][i] = clock() - t0
    return times


def summarize(times: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    return {
        name: {
            "p50_ms": float(np.percentile(t, 50) * 1e3),
            "p99_ms": float(np.percentile(t, 99) * 1e3),
            "mean_ms": float(t.mean() * 1e3),
        }
        for name, t in times.items()
    }


def load_rows(model_dir: Path, threads: int, include_fp16: bool = True) -> dict[str, Any]:
    """name -> Policy for every backend/graph that loads here (torch eager first: the reference row)."""
    from wam_ros.runtime.backends import tensorrt_unavailable_reason
    from wam_ros.runtime.model_dir import engine_name, onnx_name
    from wam_ros.runtime.policy import load_policy

    rows: dict[str, Any] = {"torch eager (full)": load_policy(model_dir, "torch", threads, "full")}
    rows["onnxruntime full"] = load_policy(model_dir, "onnxruntime", threads, "full")
    rows["onnxruntime action-only"] = load_policy(model_dir, "onnxruntime", threads, "action")
    if include_fp16 and (model_dir / onnx_name("full", "fp16")).is_file():
        rows["onnxruntime full fp16"] = load_policy(
            model_dir, "onnxruntime", threads, "full", precision="fp16"
        )
    if tensorrt_unavailable_reason() is None:
        for graph in ("full", "action"):
            if (model_dir / engine_name(graph)).is_file():
                rows[f"tensorrt fp16 {graph}"] = load_policy(model_dir, "tensorrt", threads, graph)
    return rows


class _Stream:
    """predict() as a control loop calls it: each call one NEW camera frame (a distinct array, as a driver delivers
    it) plus the K-1 frames of the previous calls, oldest first. So every call resizes one camera frame."""

    def __init__(self, policy: Any, camera: tuple[int, int], k: int, seed: int, pool: int = 16) -> None:
        rng = np.random.default_rng(seed + 1)
        self.policy, self.k, self.i = policy, k, 0
        self.pool = [rng.integers(0, 256, (*camera, 3), dtype=np.uint8) for _ in range(pool)]
        self.window: list[np.ndarray] = []
        self.joint_pos = np.zeros(policy.spec.num_joints)

    def __call__(self) -> Any:
        self.window = [*self.window[-(self.k - 1) :], self.pool[self.i % len(self.pool)]]
        self.i += 1
        return self.policy.predict(
            {"images": self.window, "joint_pos": self.joint_pos, "instruction": "reach the red target"}
        )


def run_benchmark(
    model_dir: Path,
    threads: int = 2,
    iters: int = 300,
    warmup: int = 30,
    camera: tuple[int, int] = (480, 640),
    include_fp16: bool = True,
    seed: int = 0,
    cpu_time: bool = False,
    block: int = 1,
    pause: float = 0.0,
    turn_warmup: int = 0,
) -> dict[str, Any]:
    """Measure every row; returns {"rows": {name: {...}}, "settings": {...}}.

    cpu_time: measure CPU time of the calling thread instead of wall time (use with threads=1).
    block, pause, turn_warmup: see `interleaved_latency` (1, 0, 0: one call per backend per round).
    """
    import torch

    torch.set_num_threads(threads)
    rows = load_rows(model_dir, threads, include_fp16)
    ref = rows["torch eager (full)"]
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (*camera, 3), dtype=np.uint8) for _ in range(ref.spec.k_frames)]
    obs = {
        "images": images,
        "joint_pos": np.zeros(ref.spec.num_joints),
        "instruction": "reach the red target",
    }
    frames, joint_pos, tokens = ref.prepare(obs)
    fns: dict[str, Callable[[], Any]] = {}
    for name, p in rows.items():  # a row's graph call and predict() call side by side, in the same rounds
        fns[f"{name}/graph"] = lambda p=p: p.backend.run(frames, joint_pos, tokens)
        fns[f"{name}/predict"] = _Stream(p, camera, ref.spec.k_frames, seed)
    clock = time.thread_time if cpu_time else time.perf_counter
    t = summarize(interleaved_latency(fns, iters, warmup, clock, block, pause, turn_warmup, alternate=True))
    graph = {name: t[f"{name}/graph"] for name in rows}
    predict = {name: t[f"{name}/predict"] for name in rows}
    base, full = graph["torch eager (full)"]["p50_ms"], graph["onnxruntime full"]["p50_ms"]
    out = {}
    for name in rows:
        out[name] = {
            "graph": graph[name],
            "predict": predict[name],
            "predict_vs_graph_p50": predict[name]["p50_ms"] / graph[name]["p50_ms"],
            "ratio_vs_torch_p50": graph[name]["p50_ms"] / base,
            "ratio_vs_ort_full_p50": graph[name]["p50_ms"] / full,
            "backend": rows[name].backend_name,
        }
    h, w = ref.spec.image_size
    settings = {
        "model": str(model_dir),
        "threads": threads,
        "iters": iters,
        "batch": 1,
        "camera": list(camera),
        "block": block,
        "pause_ms": pause * 1e3,
        "turn_warmup": turn_warmup,
        "clock": "thread CPU time" if cpu_time else "wall",
        "image_size": [h, w],
        "params": int(sum(p.numel() for p in ref.backend.model.parameters())),
    }
    return {"rows": out, "settings": settings}


def format_table(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [
        f"model {s['model']} ({s['params']:,} params, {s['image_size'][0]}x{s['image_size'][1]}), batch 1, "
        f"{s['threads']} threads, {s['iters']} calls per row interleaved in turns of {s.get('block', 1)} "
        f"(pause {s.get('pause_ms', 0.0):g} ms + {s.get('turn_warmup', 0)} untimed call before each), "
        f"{s['clock']} clock; predict() from "
        f"{s['camera'][1]}x{s['camera'][0]} camera frames",
        f"{'row':<26}{'graph p50':>11}{'p99':>9}{'predict p50':>13}{'p99':>9}{'predict/graph':>15}"
        f"{'vs torch':>10}{'vs ort full':>13}",
    ]
    for name, r in result["rows"].items():
        g, p = r["graph"], r["predict"]
        lines.append(
            f"{name:<26}{g['p50_ms']:>11.3f}{g['p99_ms']:>9.3f}{p['p50_ms']:>13.3f}{p['p99_ms']:>9.3f}"
            f"{r['predict_vs_graph_p50']:>15.2f}{r['ratio_vs_torch_p50']:>10.2f}{r['ratio_vs_ort_full_p50']:>13.2f}"
        )
    return (
        "\n".join(lines)
        + "\n(times in ms; predict/graph: the row's predict() p50 over its graph p50, timed in the same rounds; vs torch, vs ort full: graph p50)"
    )
