"""Export a model's pretrained instruction encoder (issue 17 item 2): text_encoder.onnx + tokenizer.json, checked.

    staged = stage_text_encoder(model, checkpoint, out_dir, export_cfg, report)   # called by onnx_export.export_model

For a model whose cfg.instruction_encoder is "hf:<name or dir>" or "onnx:<dir>", `wam export` writes beside the
policy graphs (names: wam_ros.runtime.model_dir.TEXT_ENCODER_FILES):
    text_encoder.onnx   input_ids, attention_mask int64 (B, L) -> hidden float32 (B, L, E), the encoder's last hidden
                        state (dynamic batch). "hf:": the transformers model traced with the policy graphs' exporter
                        (trace_onnx, the same opset), fp32 only: it runs once per instruction, not per control step.
                        "onnx:": the source folder's graph, copied. Metadata `wam.text_encoder`: source, max_tokens,
                        text_dim and the sha256 of the tokenizer.json it belongs with (checked when it is opened).
    tokenizer.json      the `tokenizers` tokenizer the model trained with, set to the model's fixed length L.
Both are hashed into the folder's manifest. The graphs themselves take the embedding (`text_emb`), so the runtime
(wam_ros.runtime.text_encoder.OnnxTextEncoder) needs neither torch nor transformers.

The source is the config's encoder; if it cannot be opened here (a local directory that is gone) and the checkpoint's
folder already holds an exported encoder (a re-export in place), that one is the source. Parity: the staged files,
opened exactly as the runtime opens them, against the source encoder on PROBES (max |onnx - source| <=
ExportConfig.atol_fp32 * max(1, |source|)); a mismatch is an ExportError and nothing is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from wam_ros.export.onnx_export import MAX_SINGLE_FILE, ExportError, trace_onnx
from wam_ros.fileio import fsync_file
from wam_ros.model.modeling import WorldActionModel
from wam_ros.model.text_encoder import CachedTextEncoder, HFTextEncoder, TextEncoderError
from wam_ros.runtime.model_dir import TEXT_ENCODER, TEXT_ENCODER_FILES, TEXT_TOKENIZER
from wam_ros.runtime.text_encoder import ENCODER_META, OnnxTextEncoder, open_instruction_encoder

log = logging.getLogger("wam.export")

# instructions the exported encoder is checked on: the templates, a paraphrase, punctuation and case, a word the
# vocabulary may lack, the empty string, and one longer than any L (truncation)
PROBES = (
    "reach the red target",
    "push the cube onto the blue pad",
    "Could you please move the piece to the GREEN area, now?",
    "tap the zorblax dot",
    "",
    " ".join(["go to the yellow one and then push the block onto the purple region"] * 4),
)


class _EncoderGraph(nn.Module):
    """(input_ids, attention_mask) -> the last hidden state: a transformers model, wrapped for export."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _source_encoder(model: WorldActionModel, checkpoint: Path) -> CachedTextEncoder:
    """The encoder to export: the config's source, else the encoder already exported beside the checkpoint."""
    cfg = model.cfg.to_dict()
    try:
        return open_instruction_encoder(cfg)  # no folder: the config's own source
    except TextEncoderError as exc:
        folder = checkpoint.parent
        if not all((folder / n).is_file() for n in TEXT_ENCODER_FILES):
            raise ExportError(f"cannot open the model's instruction encoder to export it: {exc}") from exc
        log.warning("%s; exporting the encoder already in %s", exc, folder)
        return open_instruction_encoder(cfg, folder)


def encoder_onnx(source: CachedTextEncoder, opset: int = 17) -> onnx.ModelProto:
    """The source encoder as an in-memory ONNX model (traced from transformers, or the source folder's graph)."""
    if isinstance(source, OnnxTextEncoder):
        return onnx.load(str(source.folder / TEXT_ENCODER))
    if not isinstance(source, HFTextEncoder):
        raise ExportError(f"cannot export the instruction encoder {source!r}")
    ids, mask = source.token_ids(list(PROBES[:2]))  # batch 2: the batch dimension stays dynamic
    example = (torch.from_numpy(ids), torch.from_numpy(mask))
    try:
        return trace_onnx(
            _EncoderGraph(source.model).eval(),
            example,
            ("input_ids", "attention_mask"),
            ("hidden",),
            "wam_text_encoder",
            opset,
        )
    except Exception as exc:  # the exporter raises many types for an architecture it cannot trace
        raise ExportError(f"cannot trace the text encoder {source.source} to ONNX: {exc}") from exc


def stage_text_encoder(
    model: WorldActionModel, checkpoint: Path, out_dir: Path, cfg: Any, report: dict[str, Any]
) -> list[tuple[Path, Path]]:
    """Export, check and write to temporary names (fsynced) the text encoder of `model` (nothing for a words model);
    `cfg` is the policy export's ExportConfig (opset, atol_fp32). Returns [(tmp, final)] for export_model to rename
    in with the graphs; adds both files to report["files"]. ExportError when it cannot be exported or differs."""
    if not model.cfg.uses_text_encoder:
        return []
    source = _source_encoder(model, checkpoint)
    L, E = int(model.cfg.max_tokens), int(model.cfg.text_dim)
    if source.dim != E:
        raise ExportError(f"{source!r} gives {source.dim}-dim embeddings; the model was trained on {E}")
    graph = encoder_onnx(source, cfg.opset)
    tok_bytes = source.tokenizer_json().encode()  # the fixed-length tokenizer the model trained with
    meta = {
        "source": model.cfg.instruction_encoder,
        "max_tokens": L,
        "text_dim": E,
        "tokenizer_sha256": hashlib.sha256(tok_bytes).hexdigest(),
    }
    props = {p.key: p.value for p in graph.metadata_props} | {ENCODER_META: json.dumps(meta)}
    onnx.helper.set_model_props(graph, props)
    data = graph.SerializeToString()
    if len(data) > MAX_SINGLE_FILE:
        raise ExportError(f"{TEXT_ENCODER} is {len(data) / 2**20:.0f} MiB: too large for a single-file model")
    with tempfile.TemporaryDirectory(
        prefix="wam_text_encoder_"
    ) as tmp:  # opened exactly as the runtime opens it
        (Path(tmp) / TEXT_ENCODER).write_bytes(data)
        (Path(tmp) / TEXT_TOKENIZER).write_bytes(tok_bytes)
        exported = OnnxTextEncoder(tmp, L)
        texts = list(PROBES)
        got, ref = exported.encode_batch(texts), source.encode_batch(texts)
        ids_ok = np.array_equal(exported.token_ids(texts)[0], source.token_ids(texts)[0])
    diff = float(np.abs(got.astype(np.float64) - ref).max())
    err = float((np.abs(got.astype(np.float64) - ref) / np.maximum(1.0, np.abs(ref))).max())
    if not ids_ok or not err <= cfg.atol_fp32:
        raise ExportError(
            f"{TEXT_ENCODER}: the exported encoder differs from {model.cfg.instruction_encoder!r} (token ids equal: "
            f"{ids_ok}; max |onnx - source| {diff:.3g}, relative {err:.3g} > {cfg.atol_fp32})"
        )
    staged = []
    try:
        for name, payload in ((TEXT_ENCODER, data), (TEXT_TOKENIZER, tok_bytes)):
            tmp_path = out_dir / f".{name}.tmp-{os.getpid()}"
            tmp_path.write_bytes(payload)
            fsync_file(tmp_path)
            staged.append((tmp_path, out_dir / name))
    except BaseException:
        for tmp_path, _ in staged:
            tmp_path.unlink(missing_ok=True)
        raise
    report["files"][TEXT_ENCODER] = {
        "graph": "text_encoder",
        "source": model.cfg.instruction_encoder,
        "max_tokens": L,
        "text_dim": E,
        "max_abs_diff": diff,
        "max_err": err,
        "rule": "|onnx - source| <= atol * max(1, |source|)",
        "atol": cfg.atol_fp32,
        "probes": len(PROBES),
        "opset": cfg.opset,
        "bytes": len(data),
    }
    report["files"][TEXT_TOKENIZER] = {"graph": "tokenizer", "bytes": len(tok_bytes)}
    return staged


def remove_stale_text_encoder(out_dir: Path, report: dict[str, Any]) -> None:
    """Encoder files in `out_dir` this export did not write (left by an export of another model) would be read as
    this model's: remove them."""
    for name in TEXT_ENCODER_FILES:
        path = out_dir / name
        if name not in report["files"] and path.exists():
            path.unlink()
            report.setdefault("removed_stale", []).append(name)
