"""Export the imagining WAM's planner graphs (issue 16) to ONNX: propose, imagine and frame, fp32 + fp16, checked.

    staged = stage_planner_graphs(model, out_dir, export_cfg, source, report)   # called by onnx_export.export_model

`wam export` calls this for a model built with cfg.imagine (presets small_imagine / tiny_imagine) and writes, beside
the policy's graphs (file names: wam_ros.runtime.model_dir.planner_onnx_name):
    wam_plan_propose.onnx        frames uint8 (B,K,3,H,W), joint_pos float32 (B,J), tokens int64 (B,L)
                                 -> proposals float32 (B,M,N,J) absolute targets of every mode, probs float32 (B,M),
                                    context float32 (B,S,d) (WorldActionModel.context)
    wam_plan_imagine.onnx        context (B,S,d), tokens (B,L), joint_pos (B,J), chunks float32 (B,N,J) absolute targets,
                                 horizon int64 (B,) in 0..N
                                 -> critic float32 (B,3) (success logit, steps to go / 50, goal distance / 0.1 m),
                                    joints float32 (B,J) imagined joint positions at the horizon
                                 (WorldActionModel.imagine_score, with the horizon an input instead of a constant)
    wam_plan_frame.onnx          frames (B,K,3,H,W), joint_pos (B,J), tokens (B,L), chunks float32 (B,N,J) absolute
                                 targets, horizon int64 (B,) in 0..N
                                 -> frame float32 (B,3,H,W) in [0,1], imagined after the first `horizon` actions
                                 (WorldActionModel.imagine_frame: the planner's picture of the chunk it chose)
    wam_plan_*_fp16.onnx         fp16 inside, the same fp32/uint8/int64 interface

The planner runs propose once per decision (batch 1), imagine once on all N candidates (batch N) and, when it wants the
chosen chunk's picture, frame once (batch 1), so every graph has a dynamic batch, checked at batch 1 and 16 (and at
ExportConfig.check_batches). The frame graph runs the trunk again rather than reading the context: the decoder needs
the encoder's skip features, which the context does not carry. The caller tiles the context per
candidate: measured on the small_imagine preset, np.repeat of (1,S,d) -> (16,S,d) costs under 0.1 ms of a 20-30 ms
decision, so a broadcasting graph would win nothing and have two batch dimensions to get wrong.

Parity (onnxruntime CPU vs torch, max over batches 1 and 16 and random horizons 0..N), atol = ExportConfig.atol_fp32
(1e-4) or atol_fp16 (1e-2):
    proposals, joints   |ort - torch| <= atol             joint positions (rad / m): the policy graphs' `action` bar
    frame, frame_h1     |ort - torch| <= atol             pixels in [0, 1]: the policy graph's `next_frame` bar; at
                                                          the sampled horizons (row 0 at N, row 1 at 0) and at h=1
                                                          for every row (frame_h1: what the planner asks for)
    probs               |ort - torch| <= atol             probabilities in [0, 1]
    critic, context     |ort - torch| <= atol * max(1, |torch|)
                        the critic's success logit is unbounded and is read through a sigmoid (at a logit of 8, fp16
                        itself rounds to 4e-3), steps/goal are O(1); the context is an intermediate at the LayerNorm's
                        scale (rows of unit variance times learned gains)
    critic_chained, joints_chained   the imagine graph fed with the propose graph's own context (what the planner runs)
                        against torch end to end, with the rules above.
A graph that fails is not written (ExportError), like the policy's graphs. Core module: never imports rclpy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from wam_ros.export.fp16 import to_fp16
from wam_ros.export.onnx_export import (
    MAX_SINGLE_FILE,
    ExportError,
    normaliser_of,
    sample_inputs,
    trace_onnx,
)
from wam_ros.fileio import fsync_file
from wam_ros.model.modeling import WorldActionModel
from wam_ros.runtime.backends import session_options
from wam_ros.runtime.model_dir import (
    PLANNER_GRAPHS,
    PLANNER_OUTPUTS,
    PRECISIONS,
    TEXT_INPUT,
    PolicySpec,
    build_metadata,
    planner_inputs,
    planner_onnx_name,
    planner_supported,
)
from wam_ros.runtime.plan_backends import planner_constants

PLANNER_BATCHES = (
    1,
    16,
)  # propose runs at batch 1, imagine at batch N (16 candidates in benchmarks/planning.py)
ABSOLUTE = (
    "proposals",
    "probs",
    "joints",
    "frame",
)  # outputs checked with a plain absolute bar; the others relative to 1
# rule per output, written into export.json beside the figures
RULE = {
    name: "|ort - torch| <= atol" if name in ABSOLUTE else "|ort - torch| <= atol * max(1, |torch|)"
    for name in ("proposals", "probs", "context", "critic", "joints", "frame")
}


class ProposeGraph(nn.Module):
    """(frames, joint_pos, tokens) -> (proposals, probs, context): WorldActionModel.context, wrapped for export."""

    def __init__(self, model: WorldActionModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, frames: torch.Tensor, joint_pos: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.model.context(frames, joint_pos, tokens)


class ImagineGraph(nn.Module):
    """(context, tokens, joint_pos, chunks, horizon) -> (critic, joints).

    WorldActionModel.imagine_score with the horizon (B,) a graph input: imagine_score builds it from a Python int,
    which the tracer would freeze into a constant. Same private steps in the same order (the parity check compares
    with imagine_score itself at each horizon, so a change in modeling.py that this misses fails the export)."""

    def __init__(self, model: WorldActionModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        context: torch.Tensor,
        tokens: torch.Tensor,
        joint_pos: torch.Tensor,
        chunks: torch.Tensor,
        horizon: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        z = m._imagine_tokens(context, tokens, m.normalize_delta(chunks, joint_pos), horizon)
        q = joint_pos.to(torch.float32) + m.joint_future_head(z[:, m.grid**2]) * m.delta_std[-1]
        return m._critic(z), q


class FrameGraph(nn.Module):
    """(frames, joint_pos, tokens, chunks, horizon) -> frame: WorldActionModel.imagine_frame, wrapped for export
    (its horizon is already a (B,) tensor, so it traces as an input)."""

    def __init__(self, model: WorldActionModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        frames: torch.Tensor,
        joint_pos: torch.Tensor,
        tokens: torch.Tensor,
        chunks: torch.Tensor,
        horizon: torch.Tensor,
    ) -> torch.Tensor:
        return self.model.imagine_frame(frames, joint_pos, tokens, chunks, horizon)


WRAPPERS = {"propose": ProposeGraph, "imagine": ImagineGraph, "frame": FrameGraph}


def require_imagine(model: WorldActionModel) -> None:
    if not getattr(model.cfg, "imagine", False):  # configs from before issue 16 have no such field
        raise ValueError(
            "the planner graphs need a model built with cfg.imagine (presets small_imagine, tiny_imagine); "
            "this one has no imagination or progress critic"
        )


def sample_plan_inputs(model: WorldActionModel, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Inputs of every planner graph in the model's data range: the policy export's random observations, the torch
    context of each, and candidate chunks = a mode's proposal + a smooth perturbation, with random horizons 0..N (row 0
    at N, row 1 at 0)."""
    c = model.cfg
    frames, joint_pos, tokens = sample_inputs(model, batch, seed)
    g = torch.Generator().manual_seed(seed + 1000 + batch)
    with torch.inference_mode():
        proposals, _, context = model.context(frames, joint_pos, tokens)
    mode = torch.randint(0, c.modes, (batch,), generator=g)
    ramp = torch.arange(1, c.chunk + 1, dtype=torch.float32)[None, :, None] / c.chunk
    chunks = (
        proposals[torch.arange(batch), mode] + 0.05 * torch.randn(batch, 1, c.num_joints, generator=g) * ramp
    )
    horizon = torch.randint(0, c.chunk + 1, (batch,), generator=g)
    horizon[0] = c.chunk  # the planner's default horizon is always among the checked ones
    if batch > 1:
        horizon[1] = 0  # and nothing executed yet (the frame graph's picture of the present)
    return {
        "frames": frames,
        "joint_pos": joint_pos,
        "tokens": tokens,
        TEXT_INPUT: tokens,  # the same input under the name a model with a pretrained text encoder gives it
        "context": context.clone(),
        "chunks": chunks.to(torch.float32),
        "horizon": horizon.to(torch.int64),
    }


def planner_to_onnx(model: WorldActionModel, graph: str, opset: int = 17) -> onnx.ModelProto:
    """Trace one planner graph to an in-memory ONNX model (the same exporter settings as the policy's graphs)."""
    require_imagine(model)
    if graph not in PLANNER_GRAPHS:
        raise ValueError(f"planner graph must be one of {PLANNER_GRAPHS}, got {graph!r}")
    model = model.eval()
    names_in, names_out = planner_inputs(graph, model.cfg.to_dict()), PLANNER_OUTPUTS[graph]
    ex = sample_plan_inputs(model, 2)
    wrapper = WRAPPERS[graph](model).eval()
    return trace_onnx(
        wrapper, tuple(ex[n] for n in names_in), names_in, names_out, f"wam_plan_{graph}", opset
    )


def _err(out: np.ndarray, ref: np.ndarray, name: str) -> tuple[float, float]:
    """(max |out - ref|, the checked error: the same, or relative to max(1, |ref|) per RULE)."""
    diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
    if not np.all(np.isfinite(out)):
        return float("inf"), float("inf")
    scaled = diff if name in ABSOLUTE else diff / np.maximum(1.0, np.abs(ref.astype(np.float64)))
    return float(diff.max()), float(scaled.max())


def planner_parity(
    model: WorldActionModel,
    graphs: dict[str, onnx.ModelProto],
    batches: tuple[int, ...] = PLANNER_BATCHES,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, float]]]:
    """{graph: {"max_abs_diff": {output: float}, "max_err": {output: float}}} for each graph in `graphs` of one
    precision (onnxruntime CPU vs torch; the imagine graph also chained on the propose graph's context, the frame graph
    also at h=1 for every row). `graphs` holds propose and imagine, and frame when it is exported."""
    import onnxruntime as ort

    def session(m: onnx.ModelProto) -> Any:
        return ort.InferenceSession(
            m.SerializeToString(), sess_options=session_options(2), providers=["CPUExecutionProvider"]
        )

    config = model.cfg.to_dict()
    names = {g: planner_inputs(g, config) for g in PLANNER_GRAPHS}
    sp, si = session(graphs["propose"]), session(graphs["imagine"])
    sf = session(graphs["frame"]) if "frame" in graphs else None
    out: dict[str, dict[str, dict[str, float]]] = {g: {"max_abs_diff": {}, "max_err": {}} for g in graphs}

    def record(graph: str, name: str, got: np.ndarray, ref: torch.Tensor, b: int) -> None:
        ref_np = ref.detach().numpy()
        if got.shape != ref_np.shape or got.dtype != np.float32:
            raise ExportError(
                f"planner graph {graph}: {name} is {got.dtype} {got.shape} at batch {b}, torch gives float32 "
                f"{ref_np.shape} (the batch dimension is not dynamic?)"
            )
        raw, checked = _err(got, ref_np, name.removesuffix("_chained").removesuffix("_h1"))
        d = out[graph]
        d["max_abs_diff"][name] = max(d["max_abs_diff"].get(name, 0.0), raw)
        d["max_err"][name] = max(d["max_err"].get(name, 0.0), checked)

    for b in batches:
        x = sample_plan_inputs(model, b, seed)
        feeds = {k: v.numpy() for k, v in x.items()}
        with torch.inference_mode():
            ref_prop = model.context(x["frames"], x["joint_pos"], x["tokens"])
            # imagine_score takes one horizon for the batch: run each row at its own horizon
            rows = [
                model.imagine_score(
                    x["context"][i : i + 1],
                    x["tokens"][i : i + 1],
                    x["joint_pos"][i : i + 1],
                    x["chunks"][i : i + 1],
                    horizon=int(x["horizon"][i]),
                )
                for i in range(b)
            ]
            ref_img = tuple(torch.cat([r[k] for r in rows]) for k in range(2))
        got_prop = sp.run(list(PLANNER_OUTPUTS["propose"]), {k: feeds[k] for k in names["propose"]})
        for name, got, ref in zip(PLANNER_OUTPUTS["propose"], got_prop, ref_prop, strict=True):
            record("propose", name, got, ref, b)
        got_img = si.run(list(PLANNER_OUTPUTS["imagine"]), {k: feeds[k] for k in names["imagine"]})
        for name, got, ref in zip(PLANNER_OUTPUTS["imagine"], got_img, ref_img, strict=True):
            record("imagine", name, got, ref, b)
        chained = si.run(
            list(PLANNER_OUTPUTS["imagine"]),
            {**{k: feeds[k] for k in names["imagine"]}, "context": got_prop[2]},
        )
        for name, got, ref in zip(PLANNER_OUTPUTS["imagine"], chained, ref_img, strict=True):
            record("imagine", f"{name}_chained", got, ref, b)
        if sf is None:
            continue
        feeds_f = {k: feeds[k] for k in names["frame"]}
        ones = torch.ones(b, dtype=torch.int64)
        for suffix, horizon in (("", x["horizon"]), ("_h1", ones)):
            with torch.inference_mode():
                ref_f = model.imagine_frame(x["frames"], x["joint_pos"], x["tokens"], x["chunks"], horizon)
            (got_f,) = sf.run(["frame"], feeds_f | {"horizon": horizon.numpy()})
            record("frame", f"frame{suffix}", got_f, ref_f, b)
    return out


def stage_planner_graphs(
    model: WorldActionModel,
    out_dir: Path,
    cfg: Any,
    source: dict[str, Any],
    report: dict[str, Any],
) -> list[tuple[Path, Path]]:
    """Export, check and write to temporary names (fsynced) every planner graph of `model` (nothing when it does not
    imagine); `cfg` is the policy export's ExportConfig (opset, fp16, tolerances, seed). Returns [(tmp, final)] for
    export_model to rename in with the policy's graphs; adds each file to report["files"]. ExportError on a parity
    failure (the caller removes the temporary files)."""
    if not getattr(model.cfg, "imagine", False):  # configs from before issue 16 have no such field
        return []
    config = model.cfg.to_dict()
    if not planner_supported(config):  # several cameras (issue 19): the planner runs on torch
        report["planner"] = (
            f"no planner graphs: the model sees several cameras {config['cameras']}; the planner runs on the "
            "checkpoint (torch)"
        )
        return []
    extra = getattr(
        model, "extra", None
    )  # the checkpoint's extra: the training data's camera, as the policy graphs
    camera = {"camera": extra["camera"]} if isinstance(extra, dict) and extra.get("camera") else {}
    batches = tuple(sorted({*PLANNER_BATCHES, *cfg.check_batches}))
    fp32 = {g: planner_to_onnx(model, g, cfg.opset) for g in PLANNER_GRAPHS}
    variants = [("fp32", fp32, cfg.atol_fp32)]
    if cfg.fp16 and cfg.plan_fp16:
        variants.append(("fp16", {g: to_fp16(m) for g, m in fp32.items()}, cfg.atol_fp16))
    staged: list[tuple[Path, Path]] = []
    try:
        for precision, graphs, atol in variants:
            err = planner_parity(model, graphs, batches, cfg.seed)
            for graph, m in graphs.items():
                name = planner_onnx_name(graph, precision)
                bad = {k: v for k, v in err[graph]["max_err"].items() if not v <= atol}
                if bad:
                    raise ExportError(
                        f"{name}: onnxruntime differs from torch beyond {atol} ({bad}; rules {RULE}; "
                        f"checked at batch {list(batches)})"
                    )
                spec = PolicySpec.from_config(
                    config, graph=graph, planner=planner_constants(config), **camera
                )
                props = build_metadata(
                    spec, config, normaliser_of(model), graph, precision, source | {"parity": err[graph]}
                )
                onnx.helper.set_model_props(m, props)
                data = m.SerializeToString()
                if len(data) > MAX_SINGLE_FILE:
                    raise ExportError(
                        f"{name} is {len(data) / 2**20:.0f} MiB: too large for a single-file model"
                    )
                tmp = out_dir / f".{name}.tmp-{os.getpid()}"
                tmp.write_bytes(data)
                fsync_file(tmp)
                staged.append((tmp, out_dir / name))
                report["files"][name] = {
                    "graph": graph,
                    "precision": precision,
                    "max_abs_diff": err[graph]["max_abs_diff"],
                    "max_err": err[graph]["max_err"],
                    "rule": RULE,
                    "atol": atol,
                    "batches_checked": list(batches),
                    "opset": cfg.opset,
                    "ir_version": m.ir_version,
                    "bytes": len(data),
                }
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    return staged


def remove_stale_planner_graphs(out_dir: Path, report: dict[str, Any]) -> None:
    """Planner graphs in `out_dir` that this export did not write (left by an earlier export of another checkpoint:
    the model no longer imagines, or no fp16 this time) would run other weights: remove them."""
    written = set(report["files"])
    for graph in PLANNER_GRAPHS:
        for precision in PRECISIONS:
            path = out_dir / planner_onnx_name(graph, precision)
            if path.name not in written and path.exists():
                path.unlink()
                report.setdefault("removed_stale", []).append(path.name)
