"""Instruction tokenizer: lower-cased words -> fixed-length int64 ids over the model's own vocabulary.

    tok = Tokenizer(cfg.vocab, cfg.max_tokens)
    ids = tok.encode("Reach the red target")    # np.int64 (L,), 0-padded; unknown words -> 1
    tok.explain("reach the reds tagret")        # [("reach", "reach"), ("the", "the"), ("reds", "red"), ("tagret", "target")]
    tok.unknown_words("reach the zorblax")      # ["zorblax"]: the words that map to nothing

No download at run time: the vocabulary is a list of words stored in the model config (and so in the checkpoint).

Unseen forms of known words (a typo, a plural) land on the known word (`nearest_word`): a word not in the
vocabulary maps to the vocabulary word it is closest to in characters, or to nothing (id 1, unknown):
- words of fewer than MIN_FUZZY_LEN (4) characters never map ("rad" is not "red", "teh" is not "the"): with three
  letters one edit reaches too many words ("red", "bed", "rod");
- a candidate is accepted when its character-trigram Jaccard similarity (with boundary markers "<word>") is at least
  TRIGRAM_THRESHOLD (0.5), or it is one edit away (a substitution, insertion, deletion or swap of two neighbours:
  "tagret" -> "target" shares only 2 of 10 trigrams, yet is one swap away), or the word is the candidate plus an
  inflection ("reaching" -> "reach", "pads" -> "pad");
- colour words are protected: a word that names a colour (COLOUR_NAMES) maps only to itself, and a word maps to a
  colour only when it starts with the colour's first letter and is one edit away or an inflection ("reds" -> "red",
  "bluee" -> "blue"; never "pink" -> a colour, nor "bred" -> "red");
- ties go to the fewest edits, then the highest trigram similarity, then the earlier vocabulary word (deterministic).
Nothing new is stored: this works on the vocabulary list of every existing checkpoint. Lookups are cached per tokenizer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np

from wam_ros.model.config import PAD, UNK

_WORD = re.compile(r"[a-z0-9]+")

MIN_FUZZY_LEN = 4  # shorter unknown words never map to a known one
TRIGRAM_THRESHOLD = 0.5  # character-trigram Jaccard similarity accepted on its own
INFLECTIONS = ("s", "es", "ed", "d", "ing", "er")  # a known word + one of these is that word
# Colour names (whether or not a vocabulary knows them): a colour word is never read as another word.
COLOUR_NAMES = frozenset(
    [
        "red",
        "green",
        "blue",
        "yellow",
        "purple",
        "orange",
        "white",
        "black",
        "cyan",
        "magenta",
        "pink",
        "brown",
        "grey",
        "gray",
        "violet",
        "gold",
        "silver",
        "teal",
        "lime",
        "navy",
        "maroon",
        "beige",
        "turquoise",
    ]
)


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


@lru_cache(maxsize=16384)
def trigrams(word: str) -> frozenset[str]:
    """The character trigrams of "<word>" (with boundary markers)."""
    s = f"<{word}>"
    return frozenset(s[i : i + 3] for i in range(len(s) - 2))


def trigram_similarity(a: str, b: str) -> float:
    """Jaccard similarity of the two words' boundary-marked character trigrams (1.0 for equal words)."""
    ta, tb = trigrams(a), trigrams(b)
    return len(ta & tb) / len(ta | tb)


def one_edit(a: str, b: str) -> bool:
    """Whether a != b are one edit apart: a substitution, an insertion, a deletion or a swap of two neighbours."""
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
        )
    if abs(len(a) - len(b)) != 1:
        return False
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = next((k for k in range(len(short)) if short[k] != long[k]), len(short))
    return short[i:] == long[i + 1 :]


@lru_cache(maxsize=64)
def _candidates(
    vocab: tuple[str, ...],
) -> tuple[frozenset[str], tuple[tuple[int, str, int, frozenset[str], bool], ...]]:
    """(the vocabulary as a set, (order, word, length, trigrams, is a colour) of every word a fallback may reach)."""
    rows = tuple(
        (order, known, len(known), trigrams(known), known in COLOUR_NAMES)
        for order, known in enumerate(vocab)
        if len(known) >= 3 and known not in (PAD, UNK)
    )
    return frozenset(vocab), rows


def nearest_word(word: str, vocab: Sequence[str]) -> str | None:
    """The vocabulary word an unseen `word` stands for, or None (see the module docstring for the rule)."""
    known_set, rows = _candidates(tuple(vocab))
    if word in known_set:
        return word
    n = len(word)
    if n < MIN_FUZZY_LEN or word in COLOUR_NAMES:
        return None
    tw = trigrams(word)
    best: tuple[int, float, int] | None = None
    choice = None
    for order, known, k, tk, colour in rows:
        if not -3 <= k - n <= 3 or (colour and word[0] != known[0]):
            continue
        shared = len(tw & tk)
        sim = shared / (len(tw) + len(tk) - shared)
        # one edit (or an inflection) of a word of >= 3 letters keeps its first or its last letter
        near = word[0] == known[0] or word[-1] == known[-1]
        inflected = near and k < n and word.startswith(known) and word[k:] in INFLECTIONS
        edit = near and -1 <= k - n <= 1 and one_edit(word, known)
        if not (edit or inflected or (not colour and sim >= TRIGRAM_THRESHOLD)):
            continue
        key = (1 if edit or inflected else 9, -sim, order)
        if best is None or key < best:
            best, choice = key, known
    return choice


class Tokenizer:
    """Word-level tokenizer with a fixed output length; unseen forms of known words map to them (nearest_word)."""

    def __init__(self, vocab: Sequence[str], max_tokens: int) -> None:
        if list(vocab[:2]) != [PAD, UNK]:
            raise ValueError(f"vocab must start with {[PAD, UNK]}, got {list(vocab[:2])}")
        self.vocab = list(vocab)
        self.max_tokens = int(max_tokens)
        self._ids = {w: i for i, w in enumerate(self.vocab)}
        vocab_t = tuple(self.vocab)
        self._nearest = lru_cache(maxsize=8192)(lambda w: nearest_word(w, vocab_t))

    def __len__(self) -> int:
        return len(self.vocab)

    def __getstate__(
        self,
    ) -> dict:  # the cache (a closure) is rebuilt, not pickled: DataLoader workers get a copy
        return {"vocab": self.vocab, "max_tokens": self.max_tokens}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["vocab"], state["max_tokens"])

    def lookup(self, word: str) -> str | None:
        """The vocabulary word a lower-cased `word` maps to (itself when known), or None when unknown."""
        return word if word in self._ids else self._nearest(word)

    def explain(self, text: str) -> list[tuple[str, str | None]]:
        """(word, the vocabulary word it maps to or None for unknown) for every word of `text`."""
        return [(w, self.lookup(w)) for w in words(text)]

    def unknown_words(self, text: str) -> list[str]:
        """The words of `text` that map to no vocabulary word."""
        return [w for w, known in self.explain(text) if known is None]

    def encode(self, text: str) -> np.ndarray:
        """Token ids int64 (L,) for one instruction (padded with 0, truncated to L words)."""
        if not isinstance(text, str):
            raise ValueError(f"instruction must be a str, got {type(text).__name__}")
        out = np.zeros(self.max_tokens, dtype=np.int64)
        for i, w in enumerate(words(text)[: self.max_tokens]):
            known = self.lookup(w)
            out[i] = 1 if known is None else self._ids[known]
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
