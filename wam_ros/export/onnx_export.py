"""Export a WAM checkpoint to ONNX: full joint graph + action-only graph, fp32 + fp16, checked against torch.

    report = export_model("runs/reach/ckpt.pt", "models/panda_tabletop")   # or `wam export CKPT --out DIR`

Writes into the output directory (layout in docs/export.md):
    model.pt               the checkpoint (copied unless it is already there) -> the torch backend
    wam_full.onnx          inputs frames uint8 (B,K,3,H,W), joint_pos float32 (B,J), tokens int64 (B,L)
                           outputs action float32 (B,N,J), next_frame float32 (B,3,H,W)
    wam_action.onnx        same inputs, output action only (no frame decoder)
    wam_full_fp16.onnx     fp16 weights/activations, fp32 inputs/outputs (also the TensorRT build source)
    wam_action_fp16.onnx
    wam_plan_*.onnx        the planner's propose + imagine graphs, when the model imagines (export/planner_onnx.py)
    text_encoder.onnx      a model with a pretrained instruction encoder (cfg.instruction_encoder "hf:..." / "onnx:..."):
    tokenizer.json         the frozen encoder and its tokenizer (export/text_encoder_onnx.py); the policy and planner
                           graphs of such a model take its embedding `text_emb` float32 (B,L,E) instead of `tokens`
    export.json            parity figures, sizes, opset/IR, source checkpoint sha256
A model with several cameras (cfg.cameras, issue 19): the policy graphs take the first camera as `frames` and each
other camera as one more input `frames_<camera>` uint8 (B,K,3,H,W) after `tokens`; no planner graphs (the planner
runs on the checkpoint).
    manifest.json          sha256 + size of every weight file, verified by the runtime before loading

Every graph: dynamic batch (checked at batch 1 and 4), one file (no external .data), an IR version onnxruntime reads,
the wam.* metadata of wam_ros/runtime/model_dir.py (config, normaliser, joint names, image size, camera encoding).
Parity: max |torch - onnxruntime| <= 1e-4 (fp32) / 1e-2 (fp16), on actions and frames separately; a graph that fails
is not written (ExportError). Files are written to temporary names and renamed only when every check passed.

Core module: torch + onnx + onnxruntime, never imports rclpy.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from wam_ros.export.fp16 import to_fp16
from wam_ros.fileio import atomic_path, fsync_dir, fsync_file, sha256_file
from wam_ros.model.checkpoint import load_checkpoint
from wam_ros.model.modeling import WorldActionModel
from wam_ros.runtime.backends import session_options
from wam_ros.runtime.model_dir import (
    CHECKPOINT,
    EXPORT_REPORT,
    PolicySpec,
    build_metadata,
    engine_name,
    onnx_name,
    output_names,
    policy_inputs,
    sidecar_path,
    write_manifest,
)

MAX_IR_VERSION = (
    10  # onnxruntime 1.31 reads <= 11 (onnx 1.23 writes 14); TensorRT 10's parser is happy with 10
)
MAX_SINGLE_FILE = 1 << 30  # protobuf's 2 GiB limit, with margin: bigger models would need external data


class ExportError(RuntimeError):
    """The exported graph does not match the torch model (or could not be exported)."""


@dataclass
class ExportConfig:
    """Options of `export_model`.

    Args:
        opset: ONNX opset of the graphs (17: LayerNormalization native, TensorRT 8.6+ / 10 / 11 parse it).
        graphs: which graphs to write ("full", "action").
        fp16: also write the fp16 variants.
        plan_fp16: with fp16, also the planner graphs' fp16 variants (an imagining model). They are slower than fp32
            on a CPU, and their parity can miss the fp16 bar where the policy graphs' does not (docs/export.md).
        check_batches: batch sizes the parity check runs at (proves the batch dimension is dynamic).
        atol_fp32 / atol_fp16: parity tolerances (max abs difference, per output).
        seed: seed of the random parity inputs.
    """

    opset: int = 17
    graphs: tuple[str, ...] = ("full", "action")
    fp16: bool = True
    plan_fp16: bool = True
    check_batches: tuple[int, ...] = (1, 4)
    atol_fp32: float = 1e-4
    atol_fp16: float = 1e-2
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 13 <= self.opset <= 21:
            raise ValueError(f"ExportConfig.opset must be in 13..21, got {self.opset}")
        bad = [g for g in self.graphs if g not in ("full", "action")]
        if bad or not self.graphs:
            raise ValueError(
                f"ExportConfig.graphs must be a non-empty subset of ('full', 'action'), got {self.graphs}"
            )
        if not self.check_batches or min(self.check_batches) < 1:
            raise ValueError(
                f"ExportConfig.check_batches must be positive batch sizes, got {self.check_batches}"
            )
        if not (self.atol_fp32 > 0 and self.atol_fp16 > 0):
            raise ValueError(f"parity tolerances must be > 0, got {self.atol_fp32}, {self.atol_fp16}")


def _cameras(frames: torch.Tensor, cameras: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The model's frames input from the graph's camera inputs: `frames` (B,K,3,H,W) alone, or stacked with the
    other cameras' into (B,M,K,3,H,W)."""
    return torch.stack([frames, *cameras], dim=1) if cameras else frames


class FullGraph(nn.Module):
    """(frames, joint_pos, tokens[, frames_<camera>...]) -> (action, next_frame): the training model untouched,
    wrapped for export."""

    def __init__(self, model: WorldActionModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, frames: torch.Tensor, joint_pos: torch.Tensor, tokens: torch.Tensor, *cameras: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(_cameras(frames, cameras), joint_pos, tokens)


class ActionGraph(FullGraph):
    """(frames, joint_pos, tokens[, frames_<camera>...]) -> action (the frame decoder is not in the graph)."""

    def forward(  # type: ignore[override]
        self, frames: torch.Tensor, joint_pos: torch.Tensor, tokens: torch.Tensor, *cameras: torch.Tensor
    ) -> torch.Tensor:
        return self.model.forward_action(_cameras(frames, cameras), joint_pos, tokens)


def graph_args(inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The model's inputs (frames, joint_pos, tokens) in the policy graphs' input order: a (B,M,K,3,H,W) frames
    tensor of several cameras becomes `frames` (camera 0), then joint_pos, tokens, then one input per other camera."""
    frames, joint_pos, tokens = inputs
    if frames.ndim == 5:
        return inputs
    cams = [frames[:, m].contiguous() for m in range(frames.shape[1])]
    return (cams[0], joint_pos, tokens, *cams[1:])


def sample_inputs(model: WorldActionModel, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random raw inputs in the model's data range: uint8 frames ((B, M, K, 3, H, W) for M > 1 cameras), joints
    around the normaliser mean, real words (or, with a pretrained text encoder, a random embedding float32 (B, L, E)
    with zero padding rows after n tokens)."""
    cfg = model.cfg
    g = torch.Generator().manual_seed(seed + batch)
    cams = (len(cfg.cameras),) if len(cfg.cameras) > 1 else ()
    frames = torch.randint(
        0,
        256,
        (batch, *cams, cfg.k_frames, 3, cfg.image_size, cfg.image_size),
        generator=g,
        dtype=torch.uint8,
    )
    joint_pos = model.joint_mean + model.joint_std * torch.randn(batch, cfg.num_joints, generator=g)
    n_words = torch.randint(1, cfg.max_tokens + 1, (batch,), generator=g)
    real = torch.arange(cfg.max_tokens)[None] < n_words[:, None]  # pad after n words
    if cfg.uses_text_encoder:
        emb = torch.randn(batch, cfg.max_tokens, cfg.text_dim, generator=g) * real[..., None]
        return frames, joint_pos.to(torch.float32), emb.to(torch.float32)
    tokens = torch.randint(2, len(cfg.vocab), (batch, cfg.max_tokens), generator=g)
    tokens = tokens * real
    return frames, joint_pos.to(torch.float32), tokens.to(torch.int64)


def _ir_version(model: onnx.ModelProto) -> int:
    opsets = [onnx.helper.make_opsetid(o.domain, o.version) for o in model.opset_import]
    return min(onnx.helper.find_min_ir_version_for(opsets, ignore_unknown=True), MAX_IR_VERSION)


def trace_onnx(
    wrapper: nn.Module,
    example: tuple[torch.Tensor, ...],
    input_names: tuple[str, ...] | list[str],
    output_names: tuple[str, ...] | list[str],
    graph_name: str,
    opset: int = 17,
) -> onnx.ModelProto:
    """Trace `wrapper` on `example` to an in-memory ONNX model: the legacy TorchScript exporter (fast,
    constant-folded), every input and output batch-dynamic, IR version set to the lowest the opset needs. Pass an
    example of batch 2, not 1: a batch-1 example lets the exporter specialise the batch dimension to 1."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation + tracer warnings
        torch.onnx.export(
            wrapper,
            example,
            buf,
            dynamo=False,
            opset_version=opset,
            do_constant_folding=True,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes={name: {0: "batch"} for name in (*input_names, *output_names)},
        )
    m = onnx.load_from_string(buf.getvalue())
    m.ir_version = _ir_version(m)
    m.producer_name, m.producer_version = "wam_ros", "1"
    m.graph.name = graph_name
    return m


def to_onnx(model: WorldActionModel, graph: str, opset: int = 17) -> onnx.ModelProto:
    """Trace one graph to an in-memory ONNX model (legacy TorchScript exporter: fast, constant-folded, opset 17)."""
    wrapper = (FullGraph if graph == "full" else ActionGraph)(model).eval()
    names = policy_inputs(model.cfg.to_dict())
    example = graph_args(sample_inputs(model, 2))
    return trace_onnx(wrapper, example, names, output_names(graph), f"wam_{graph}", opset)


def parity(
    model: WorldActionModel, onnx_model: onnx.ModelProto, graph: str, batches: tuple[int, ...], seed: int = 0
) -> dict[str, float]:
    """max |torch - onnxruntime| per output over the given batch sizes (onnxruntime CPU, the reference EP)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(
        onnx_model.SerializeToString(), sess_options=session_options(2), providers=["CPUExecutionProvider"]
    )
    worst = {"action": 0.0} if graph == "action" else {"action": 0.0, "next_frame": 0.0}
    for b in batches:
        inputs = sample_inputs(model, b, seed)
        with torch.inference_mode():
            ref = model(*inputs) if graph == "full" else (model.forward_action(*inputs),)
        names = policy_inputs(model.cfg.to_dict())
        feeds = {k: v.numpy() for k, v in zip(names, graph_args(inputs), strict=True)}
        outs = sess.run(list(worst), feeds)
        for name, r, o in zip(worst, ref, outs, strict=True):
            if o.shape != tuple(r.shape):
                raise ExportError(
                    f"{graph} graph: {name} has shape {o.shape} at batch {b}, torch gives "
                    f"{tuple(r.shape)} (the batch dimension is not dynamic)"
                )
            worst[name] = max(worst[name], float(np.abs(o.astype(np.float64) - r.double().numpy()).max()))
    return worst


def normaliser_of(model: WorldActionModel) -> dict[str, Any]:
    return {k: getattr(model, k).tolist() for k in ("joint_mean", "joint_std", "delta_mean", "delta_std")} | {
        "fitted": model.normalizer_fitted
    }


def export_model(
    checkpoint: str | Path, out_dir: str | Path, cfg: ExportConfig | None = None
) -> dict[str, Any]:
    """Export every graph of `checkpoint` into `out_dir` (see the module docstring). Returns the export report."""
    cfg = cfg or ExportConfig()
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    model = load_checkpoint(checkpoint)
    if checkpoint.is_dir():
        checkpoint = checkpoint / CHECKPOINT
    out_dir.mkdir(parents=True, exist_ok=True)
    config = model.cfg.to_dict()
    camera = (
        getattr(model, "extra", {}).get("camera") if isinstance(getattr(model, "extra", None), dict) else None
    )
    source = {
        "checkpoint": str(checkpoint),
        "sha256": sha256_file(checkpoint),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
    }
    report: dict[str, Any] = {"source": source, "config": asdict(cfg), "files": {}}
    staged: list[tuple[Path, Path]] = []
    try:
        for graph in cfg.graphs:
            fp32 = to_onnx(model, graph, cfg.opset)
            variants = [("fp32", fp32, cfg.atol_fp32)]
            if cfg.fp16:
                variants.append(("fp16", to_fp16(fp32), cfg.atol_fp16))
            for precision, m, atol in variants:
                name = onnx_name(graph, precision)
                err = parity(model, m, graph, tuple(cfg.check_batches), cfg.seed)
                bad = {k: v for k, v in err.items() if not v <= atol}
                if bad:
                    raise ExportError(
                        f"{name}: max |torch - onnxruntime| {bad} exceeds {atol} "
                        f"(checked at batch {list(cfg.check_batches)})"
                    )
                spec = PolicySpec.from_config(config, graph=graph, **({"camera": camera} if camera else {}))
                info = {
                    "graph": graph,
                    "precision": precision,
                    "max_abs_diff": err,
                    "atol": atol,
                    "batches_checked": list(cfg.check_batches),
                    "opset": cfg.opset,
                    "ir_version": m.ir_version,
                }
                props = build_metadata(
                    spec, config, normaliser_of(model), graph, precision, source | {"parity": err}
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
                report["files"][name] = info | {"bytes": len(data)}
        # -- the planner's graphs of an imagining model (issue 16): wam_ros/export/planner_onnx.py
        from wam_ros.export.planner_onnx import remove_stale_planner_graphs, stage_planner_graphs

        staged += stage_planner_graphs(model, out_dir, cfg, source, report)
        # -- a pretrained instruction encoder (issue 17): text_encoder.onnx + tokenizer.json, checked against its source
        from wam_ros.export.text_encoder_onnx import remove_stale_text_encoder, stage_text_encoder

        staged += stage_text_encoder(model, checkpoint, out_dir, cfg, report)
        # --
        for tmp, final in staged:  # every graph passed its check: all are renamed in, then the folder synced
            os.replace(tmp, final)
        fsync_dir(out_dir)
        for graph in cfg.graphs:  # an engine built from the previous export would run the old weights
            engine = out_dir / engine_name(graph)
            for stale in (engine, sidecar_path(engine)):
                if stale.exists():
                    stale.unlink()
                    report.setdefault("removed_stale", []).append(stale.name)
        remove_stale_planner_graphs(out_dir, report)  # issue 16: planner graphs this export did not write
        remove_stale_text_encoder(out_dir, report)  # an encoder left by an export of another (words) model
    finally:
        for tmp, _ in staged:
            if tmp.exists():
                tmp.unlink()
    ckpt_dst = out_dir / CHECKPOINT
    if not (ckpt_dst.exists() and ckpt_dst.resolve() == checkpoint.resolve()):
        with atomic_path(ckpt_dst) as tmp:
            shutil.copyfile(checkpoint, tmp)
    (out_dir / EXPORT_REPORT).write_text(json.dumps(report, indent=1))
    write_manifest(out_dir)
    return report
