"""The pretrained instruction encoder at run time: text_encoder.onnx + tokenizer.json on onnxruntime + tokenizers.

    enc = OnnxTextEncoder("models/my_model", max_tokens=16)   # a folder holding TEXT_ENCODER_FILES
    emb = enc.encode("reach the red target")                  # float32 (L, E), padding rows zero; cached per string
    tok = open_instruction_encoder(config, model_dir)         # the word Tokenizer, or the model's text encoder
    attach_text_encoder(model, "runs/wam/model.pt")           # model.tokenizer = that encoder (train, eval, export)

A model trained with `instruction_encoder: hf:<name>` or `onnx:<dir>` (WamConfig) takes the encoder's per-token
embedding where a words model takes token ids; `wam export` writes the encoder into the model folder as
text_encoder.onnx (input_ids, attention_mask int64 (B, L) [, token_type_ids] -> last hidden state float32 (B, L, E))
and tokenizer.json (fixed length L), hashed in its manifest. OnnxTextEncoder runs them with no torch and no
transformers, on the CPU (once per distinct instruction; an instruction's embedding is then a cache hit), behind
the same interface as the words Tokenizer and wam_ros.model.text_encoder.HFTextEncoder.

`open_instruction_encoder` picks, for a model config: the word Tokenizer ("words"); the folder's own
text_encoder.onnx + tokenizer.json when they are there (checked against the manifest first); else (local_only=False,
a bare checkpoint) the config's source: "onnx:<dir>" here, "hf:<name>" through transformers (torch). Every failure is
a TextEncoderError (a ValueError) or an IntegrityError naming the file, never a download and never another encoder.

Core module: never imports rclpy; torch and transformers only for an "hf:" source.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from wam_ros.fileio import sha256_file
from wam_ros.model.config import WORDS, parse_instruction_encoder
from wam_ros.model.text_encoder import CACHE_SIZE, CachedTextEncoder, TextEncoderError, UnattachedEncoder
from wam_ros.model.tokenizer import Tokenizer
from wam_ros.runtime.backends import open_session
from wam_ros.runtime.model_dir import (
    CHECKPOINT,
    TEXT_ENCODER,
    TEXT_ENCODER_FILES,
    TEXT_TOKENIZER,
    verify_file,
)

ENCODER_META = (
    "wam.text_encoder"  # ONNX metadata of an exported encoder: source, max_tokens, text_dim, tokenizer hash
)
ENCODER_INPUTS = ("input_ids", "attention_mask")  # required; "token_type_ids" is optional (fed zeros)
_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


class OnnxTextEncoder(CachedTextEncoder):
    """text_encoder.onnx + tokenizer.json of `folder` on onnxruntime (CPU) + tokenizers (see the module docstring)."""

    kind = "onnx"

    def __init__(
        self, folder: str | Path, max_tokens: int, cache_size: int = CACHE_SIZE, threads: int = 1
    ) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        folder = Path(folder)
        model_path, tok_path = folder / TEXT_ENCODER, folder / TEXT_TOKENIZER
        missing = [p.name for p in (model_path, tok_path) if not p.is_file()]
        if missing:
            raise TextEncoderError(
                f"text encoder folder {folder} lacks {missing}: expected {list(TEXT_ENCODER_FILES)} (written by "
                "`wam export` for a model with a pretrained instruction encoder)"
            )
        try:
            tokenizer = HFTokenizer.from_file(str(tok_path))
        except Exception as exc:  # tokenizers raises its own Exception for unreadable JSON
            raise TextEncoderError(f"{tok_path} is not a readable tokenizers file (damaged?): {exc}") from exc
        try:
            sess = open_session(model_path, threads, ["CPUExecutionProvider"])
        except ValueError as exc:
            raise TextEncoderError(str(exc)) from exc
        inputs = {i.name: i.type for i in sess.get_inputs()}
        extra = set(inputs) - {*ENCODER_INPUTS, "token_type_ids"}
        out = sess.get_outputs()[0]
        if (
            not set(ENCODER_INPUTS) <= set(inputs)
            or extra
            or any(t not in _INT_TYPES for t in inputs.values())
        ):
            raise TextEncoderError(
                f"{model_path} is not a text encoder: expected integer inputs {list(ENCODER_INPUTS)} (and optionally "
                f"token_type_ids), got {inputs}"
            )
        if len(out.shape) != 3 or not isinstance(out.shape[-1], int) or out.shape[-1] < 1:
            raise TextEncoderError(
                f"{model_path}: its first output {out.name!r} must be the hidden states (B, L, E) with a fixed E, "
                f"got shape {out.shape}"
            )
        meta = sess.get_modelmeta().custom_metadata_map.get(ENCODER_META)
        if meta is not None:
            try:
                want = json.loads(meta).get("tokenizer_sha256")
            except (json.JSONDecodeError, AttributeError) as exc:
                raise TextEncoderError(f"{model_path}: metadata {ENCODER_META} is not a JSON object") from exc
            if want and sha256_file(tok_path) != want:
                raise TextEncoderError(
                    f"{tok_path} is not the tokenizer {model_path.name} was exported with (sha256 differs): the "
                    "encoder would read other token ids; re-export the model with `wam export`"
                )
        self.folder = folder
        self._sess, self._inputs, self._output = sess, inputs, out.name
        super().__init__(tokenizer, max_tokens, int(out.shape[-1]), f"onnx:{folder}", cache_size)

    def _reopen(self, state: dict[str, Any]) -> None:
        OnnxTextEncoder.__init__(
            self, state["source"].removeprefix("onnx:"), state["max_tokens"], state["cache_size"]
        )

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        feeds = {k: v.astype(_INT_TYPES[self._inputs[k]], copy=False) for k, v in feeds.items()}
        return self._sess.run([self._output], feeds)[0]


def _folder_of(near: str | Path | None) -> Path | None:
    if near is None:
        return None
    near = Path(near)
    return near if near.is_dir() else near.parent


def open_instruction_encoder(
    config: dict[str, Any], near: str | Path | None = None, *, local_only: bool = False, threads: int = 1
) -> Tokenizer | CachedTextEncoder:
    """The instruction encoder of a model config (WamConfig fields): see the module docstring. `near`: the model
    folder or a file in it (its own text_encoder.onnx + tokenizer.json win); local_only: refuse to fall back to the
    config's source (the onnxruntime / TensorRT path, which must not need torch or transformers)."""
    spec = str(config.get("instruction_encoder", WORDS))
    kind, arg = parse_instruction_encoder(spec)
    if kind == WORDS:
        return Tokenizer(config["vocab"], config["max_tokens"])
    max_tokens, text_dim = int(config["max_tokens"]), int(config.get("text_dim", 0))
    folder = _folder_of(near)
    if folder is not None and any((folder / n).exists() for n in TEXT_ENCODER_FILES):
        for name in TEXT_ENCODER_FILES:
            if (folder / name).is_file():
                verify_file(folder / name)  # IntegrityError naming the file when it differs from the manifest
        enc: CachedTextEncoder = OnnxTextEncoder(folder, max_tokens, threads=threads)
    elif local_only:
        where = folder if folder is not None else "the model folder"
        raise TextEncoderError(
            f"{where} has no {TEXT_ENCODER} + {TEXT_TOKENIZER}: this model reads instructions through the "
            f"pretrained encoder {spec!r}, which `wam export` writes beside the graphs (re-export with `wam export "
            f"{Path(str(where)) / CHECKPOINT} --out {where}`)"
        )
    elif kind == "onnx":
        enc = OnnxTextEncoder(arg, max_tokens, threads=threads)
    else:
        from wam_ros.model.text_encoder import HFTextEncoder

        enc = HFTextEncoder(arg, max_tokens)
    if text_dim and enc.dim != text_dim:
        raise TextEncoderError(
            f"{enc!r} gives {enc.dim}-dim embeddings, but the model was trained on {text_dim} (text_dim): another "
            f"encoder than {spec!r}"
        )
    return enc


def attach_text_encoder(model: Any, near: str | Path | None = None) -> Any:
    """Open the pretrained encoder of `model` (a WorldActionModel whose cfg.instruction_encoder is "hf:..." or
    "onnx:...") into model.tokenizer, preferring the encoder files beside `near` (its checkpoint or folder). A words
    model, or one already attached, is returned unchanged."""
    if model.cfg.uses_text_encoder and isinstance(model.tokenizer, UnattachedEncoder):
        model.tokenizer = open_instruction_encoder(model.cfg.to_dict(), near)
    return model
