"""Instruction tokenizer: lower-cased words -> fixed-length int64 ids over the model's own vocabulary.

    tok = Tokenizer(cfg.vocab, cfg.max_tokens)
    ids = tok.encode("Reach the red target")    # np.int64 (L,), 0-padded; unknown words -> 1

No download at run time: the vocabulary is a list of words stored in the model config (and so in the checkpoint).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

from wam_ros.model.config import PAD, UNK

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """The lower-cased alphanumeric words of `text`."""
    return _WORD.findall(text.lower())


def extend_vocab(vocab: Sequence[str], texts: Iterable[str]) -> list[str]:
    """`vocab` plus every new word of `texts`, in first-seen order (existing ids never move)."""
    out = list(vocab)
    seen = set(out)
    for text in texts:
        for w in words(text):
            if w not in seen:
                out.append(w)
                seen.add(w)
    return out


class Tokenizer:
    """Word-level tokenizer with a fixed output length."""

    def __init__(self, vocab: Sequence[str], max_tokens: int) -> None:
        if list(vocab[:2]) != [PAD, UNK]:
            raise ValueError(f"vocab must start with {[PAD, UNK]}, got {list(vocab[:2])}")
        self.vocab = list(vocab)
        self.max_tokens = int(max_tokens)
        self._ids = {w: i for i, w in enumerate(self.vocab)}

    def __len__(self) -> int:
        return len(self.vocab)

    def unknown_words(self, text: str) -> list[str]:
        return [w for w in words(text) if w not in self._ids]

    def encode(self, text: str) -> np.ndarray:
        """Token ids int64 (L,) for one instruction (padded with 0, truncated to L words)."""
        if not isinstance(text, str):
            raise ValueError(f"instruction must be a str, got {type(text).__name__}")
        ids = [self._ids.get(w, 1) for w in words(text)][: self.max_tokens]
        out = np.zeros(self.max_tokens, dtype=np.int64)
        out[: len(ids)] = ids
        return out

    def encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Token ids int64 (B, L)."""
        return (
            np.stack([self.encode(t) for t in texts])
            if len(texts)
            else np.zeros((0, self.max_tokens), np.int64)
        )

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(self.vocab[i] for i in ids if i != 0)
