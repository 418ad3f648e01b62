"""Pretrained instruction encoders (issue 17 item 2): a frozen text encoder's per-token embedding, cached per string.

    enc = HFTextEncoder("/path/to/bert", max_tokens=16)   # cfg.instruction_encoder "hf:<name or dir>"; local only
    emb = enc.encode("reach the red target")   # float32 (L, E), padding rows all zeros; cached by the exact string
    enc.encode_batch(texts)                    # float32 (B, L, E); each distinct uncached string is encoded once
    enc.explain(text)                          # [(subword token, itself, or None for the encoder's unknown token)]
    enc.unknown_words(text)                    # the words of `text` the encoder reads as its unknown token
    enc.calls, enc.encoded                     # encoder runs (a run encodes a batch of misses) and strings encoded

The interface is the word Tokenizer's (`encode`, `encode_batch`, `explain`, `unknown_words`, `max_tokens`), so the
training windows (wam_ros.data.windows), the runtime Policy and wam_node take either without knowing which: with a
pretrained encoder the model's `tokens` input is this embedding instead of word ids. The encoder runs once per
distinct instruction (an LRU cache keyed by the exact string, CACHE_SIZE entries), never per control step.

Both encoders tokenize with the `tokenizers` library from the same settings (`fixed_length`: truncate to L tokens,
special tokens included, pad to L), so the ONNX twin (wam_ros.runtime.text_encoder.OnnxTextEncoder: onnxruntime +
tokenizers, no torch, no transformers) reads exactly the ids the transformers model read. The embedding is the
encoder's last hidden state per token with the padding rows set to zero: the network finds the padding there
(WorldActionModel.instruction_pad), so one input carries both.

HFTextEncoder loads with `local_files_only=True`: a name that is not in the local Hugging Face cache or a directory
is a TextEncoderError, never a download. It needs a fast tokenizer (tokenizer.json). torch and transformers are
imported only when one is opened.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

CACHE_SIZE = 4096  # distinct instructions kept (x L x E float32 each: 16 x 768 x 4 B = 48 kB for a BERT-base)
ENCODE_BATCH = 64  # cache misses encoded per encoder run


class TextEncoderError(ValueError):
    """A pretrained text encoder cannot be opened or run (missing, damaged, not local, wrong shape)."""


def fixed_length(tokenizer: Any, max_tokens: int, pad_id: int = 0, pad_token: str = "[PAD]") -> Any:
    """A copy of a `tokenizers.Tokenizer` that truncates every text to `max_tokens` tokens (special tokens such as
    [CLS]/[SEP] included; the post-processor re-adds them after truncating) and pads to exactly `max_tokens`."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer.to_str())
    tok.enable_truncation(max_length=int(max_tokens))
    tok.enable_padding(length=int(max_tokens), pad_id=int(pad_id), pad_token=str(pad_token))
    return tok


def unknown_token(tokenizer: Any) -> str | None:
    """The tokenizer model's unknown token (WordPiece/BPE `unk_token`, Unigram `unk_id`), or None when it has none."""
    model = tokenizer.model
    unk = getattr(model, "unk_token", None)
    if unk is None and getattr(model, "unk_id", None) is not None:
        unk = tokenizer.id_to_token(int(model.unk_id))
    return unk


class CachedTextEncoder:
    """The shared part of every pretrained encoder: tokenizing, the per-string cache, explain/unknown_words.
    Subclasses set `kind` and `source` and implement `_run(ids, mask) -> float32 (B, L, E)` and `_reopen`."""

    kind = "?"

    def __init__(
        self, tokenizer: Any, max_tokens: int, dim: int, source: str, cache_size: int = CACHE_SIZE
    ) -> None:
        if not isinstance(max_tokens, int) or max_tokens < 2:
            raise ValueError(f"max_tokens must be an int >= 2 (special tokens count), got {max_tokens!r}")
        self.max_tokens, self.dim, self.source = int(max_tokens), int(dim), source
        self.cache_size = int(cache_size)
        pad = tokenizer.padding or {}
        self._tok = fixed_length(tokenizer, max_tokens, pad.get("pad_id", 0), pad.get("pad_token", "[PAD]"))
        self._plain = type(tokenizer).from_str(tokenizer.to_str())  # the whole text, for unknown_words
        self._plain.no_truncation()
        self._plain.no_padding()
        self.unk = unknown_token(tokenizer)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.calls = 0  # encoder runs
        self.encoded = 0  # strings the encoder itself embedded (cache misses)

    def __len__(self) -> int:  # the Tokenizer's len() is its vocabulary size
        return int(self._tok.get_vocab_size())

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers: reopen from the source, without the cache
        return {"source": self.source, "max_tokens": self.max_tokens, "cache_size": self.cache_size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._reopen(state)

    def _reopen(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def tokenizer_json(self) -> str:
        """The fixed-length tokenizer as a tokenizer.json string (what `wam export` writes beside the encoder)."""
        return self._tok.to_str()

    # ---- ids ----------------------------------------------------------------------------------------------------
    def token_ids(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(input ids int64 (B, L), attention mask int64 (B, L)) as the encoder reads them."""
        for t in texts:
            if not isinstance(t, str):
                raise ValueError(f"instruction must be a str, got {type(t).__name__}")
        enc = self._tok.encode_batch(list(texts))
        ids = np.array([e.ids for e in enc], dtype=np.int64).reshape(len(texts), self.max_tokens)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64).reshape(len(texts), self.max_tokens)
        return ids, mask

    # ---- embeddings ---------------------------------------------------------------------------------------------
    def _embed(self, texts: list[str]) -> np.ndarray:
        """Run the encoder on `texts` (no cache): float32 (B, L, E), padding rows zero."""
        ids, mask = self.token_ids(texts)
        self.calls += 1
        self.encoded += len(texts)
        hidden = np.asarray(self._run(ids, mask), dtype=np.float32)
        if hidden.shape != (len(texts), self.max_tokens, self.dim):
            raise TextEncoderError(
                f"text encoder {self.source} returned shape {hidden.shape}, expected "
                f"({len(texts)}, {self.max_tokens}, {self.dim}) (B, L, E)"
            )
        if not np.all(np.isfinite(hidden)):
            raise TextEncoderError(f"text encoder {self.source} returned NaN or Inf for {texts[:3]!r}")
        return hidden * mask[..., None].astype(np.float32)

    def encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        """float32 (B, L, E): the embedding of each text; strings not in the cache are encoded together, once."""
        texts = list(texts)
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        for s in range(0, len(missing), ENCODE_BATCH):
            part = missing[s : s + ENCODE_BATCH]
            for text, emb in zip(part, self._embed(part), strict=True):
                emb.flags.writeable = False  # shared by every caller: nobody may change a cached embedding
                self._cache[text] = emb
        out = np.zeros((len(texts), self.max_tokens, self.dim), np.float32)
        for i, t in enumerate(texts):
            emb = self._cache.get(t)
            if emb is None:  # evicted within this call (more distinct texts than the cache holds)
                emb = self._embed([t])[0]
            else:
                self._cache.move_to_end(t)
            out[i] = emb
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out

    def encode(self, text: str) -> np.ndarray:
        """float32 (L, E) for one instruction, a copy of the cached one (the encoder runs once per distinct string)."""
        if not isinstance(text, str):
            raise ValueError(f"instruction must be a str, got {type(text).__name__}")
        hit = self._cache.get(text)
        if hit is not None:
            self._cache.move_to_end(text)
            return hit.copy()
        return self.encode_batch([text])[0]

    # ---- what the encoder understood ----------------------------------------------------------------------------
    def explain(self, text: str) -> list[tuple[str, str | None]]:
        """(token, itself) for each token the model reads, in order (special tokens included: row i is instruction
        position i), then the tokens dropped past max_tokens (rows >= L). An unknown token is (the text it stands
        for, None): ("zorblax", None) rather than ("[UNK]", "[UNK]")."""
        enc = self._tok.encode(text)

        def rows_of(e: Any, keep_special: bool) -> list[tuple[str, str | None]]:
            out: list[tuple[str, str | None]] = []
            for t, m, s, (a, b) in zip(
                e.tokens, e.attention_mask, e.special_tokens_mask, e.offsets, strict=True
            ):
                if m and (keep_special or not s):
                    out.append((text[a:b] or t, None) if t == self.unk else (t, t))
            return out

        rows = rows_of(enc, True)
        for over in enc.overflowing:
            rows += rows_of(over, False)
        return rows

    def unknown_words(self, text: str) -> list[str]:
        """The words of `text` (as written) that contain the encoder's unknown token, each once, in order."""
        if self.unk is None:
            return []
        enc = self._plain.encode(text)
        spans: dict[int, list[int]] = {}
        for w, (a, b) in zip(enc.word_ids, enc.offsets, strict=True):
            if w is not None:
                span = spans.setdefault(w, [a, b])
                span[0], span[1] = min(span[0], a), max(span[1], b)
        out: list[str] = []
        for tok, w in zip(enc.tokens, enc.word_ids, strict=True):
            if tok == self.unk and w is not None:
                word = text[spans[w][0] : spans[w][1]]
                if word not in out:
                    out.append(word)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source}, L={self.max_tokens}, E={self.dim})"


class HFTextEncoder(CachedTextEncoder):
    """A transformers model + its fast tokenizer, frozen, on the CPU (cfg.instruction_encoder "hf:<name or dir>").

    name: a local directory (save_pretrained) or a model id already in the local Hugging Face cache; nothing is
    downloaded (local_files_only). The embedding is the model's last hidden state."""

    kind = "hf"

    def __init__(self, name: str, max_tokens: int, cache_size: int = CACHE_SIZE) -> None:
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer
        except ImportError as exc:
            raise TextEncoderError(
                f"instruction_encoder 'hf:{name}' needs transformers (pip install -r requirements.txt): {exc}"
            ) from exc
        where = f"instruction_encoder 'hf:{name}'"
        try:
            tok = AutoTokenizer.from_pretrained(name, local_files_only=True)
            model = AutoModel.from_pretrained(name, local_files_only=True)
        except (
            Exception
        ) as exc:  # transformers raises OSError, ValueError, hub errors, ... for a missing/bad model
            raise TextEncoderError(
                f"{where}: no usable model and tokenizer at this local directory or in the local Hugging Face "
                f"cache (nothing is downloaded: save one with save_pretrained and pass its directory, or fill the "
                f"cache first); transformers said: {str(exc).strip()[:300]}"
            ) from exc
        if not getattr(tok, "is_fast", False):
            raise TextEncoderError(
                f"{where}: needs a fast tokenizer (a tokenizer.json), got {type(tok).__name__}"
            )
        dim = getattr(model.config, "hidden_size", None)
        if not isinstance(dim, int) or dim < 1:
            raise TextEncoderError(f"{where}: the model config has no hidden_size")
        self.name = name
        self.model = model.eval().requires_grad_(False)
        self._torch = torch
        backend = fixed_length(
            tok.backend_tokenizer, max_tokens, tok.pad_token_id or 0, tok.pad_token or "[PAD]"
        )
        super().__init__(backend, max_tokens, dim, f"hf:{name}", cache_size)

    def _reopen(self, state: dict[str, Any]) -> None:
        HFTextEncoder.__init__(
            self, state["source"].removeprefix("hf:"), state["max_tokens"], state["cache_size"]
        )

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            out = self.model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
        return out.last_hidden_state.float().numpy()


class UnattachedEncoder:
    """`model.tokenizer` of a model that reads instructions through a pretrained encoder, until
    wam_ros.runtime.text_encoder.attach_text_encoder(model) opens it: every use says so (a TextEncoderError)."""

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        raise TextEncoderError(
            f"this model reads instructions through the pretrained encoder {self.spec!r}, which is not opened yet: "
            "call wam_ros.runtime.text_encoder.attach_text_encoder(model) first (wam train, eval, dream and export "
            "do)"
        )
