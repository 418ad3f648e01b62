"""The tokenizer's fallback for unseen words (wam_ros.model.tokenizer.nearest_word): typos and inflections of known
words land on them, colours never turn into other colours, unrelated words stay unknown; it needs nothing but the
vocabulary list a checkpoint already stores."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wam_ros.model.config import WamConfig
from wam_ros.model.tokenizer import COLOUR_NAMES, Tokenizer, nearest_word, one_edit, trigram_similarity

VOCAB = WamConfig.preset("tiny").vocab + ["pad"]  # the base vocabulary + the push template's pad


@pytest.mark.parametrize(
    ("word", "known"),
    [
        ("reds", "red"),
        ("tagret", "target"),
        ("bluee", "blue"),
        ("greeen", "green"),
        ("yelow", "yellow"),
        ("reahc", "reach"),
        ("reaching", "reach"),
        ("pushed", "push"),
        ("cubes", "cube"),
        ("pads", "pad"),
        ("targte", "target"),
        ("banana", None),  # unrelated
        ("zorblax", None),
        ("rad", None),  # three letters never map: "rad" is not "red" (nor "bed", "rod")
        ("teh", None),
        ("pink", None),  # a colour the vocabulary lacks stays unknown, never another colour
        ("grey", None),
        ("bred", None),  # a colour only from a word with its first letter
        ("lbue", None),
    ],
)
def test_nearest_word(word, known):
    assert nearest_word(word, VOCAB) == known
    tok = Tokenizer(VOCAB, 12)
    assert tok.explain(f"reach the {word}") == [("reach", "reach"), ("the", "the"), (word, known)]
    assert tok.unknown_words(f"reach the {word}") == ([] if known else [word])
    assert tok.encode(word)[0] == (tok.vocab.index(known) if known else 1)


def test_similarity_measures():
    assert trigram_similarity("target", "target") == 1.0
    assert trigram_similarity("bluee", "blue") == pytest.approx(3 / 6)  # <bl blu lue | ue> uee ee>
    assert trigram_similarity("tagret", "target") == pytest.approx(
        2 / 10
    )  # why one swap is accepted on its own
    assert one_edit("tagret", "target") and one_edit("red", "reds") and one_edit("blue", "blu")
    assert not one_edit("tagert", "target") and not one_edit("red", "red") and not one_edit("ab", "abcd")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=10))
def test_never_one_colour_for_another_and_deterministic(word):
    known = nearest_word(word, VOCAB)
    assert known == nearest_word(word, list(VOCAB))
    if word in COLOUR_NAMES:
        assert known in (word, None)
    if known in COLOUR_NAMES and known != word:
        assert word[0] == known[0] and word not in COLOUR_NAMES


def test_exact_words_unchanged_and_the_tokenizer_pickles():
    tok = Tokenizer(VOCAB, 6)
    assert list(tok.encode("Reach the RED target!")) == [
        VOCAB.index(w) for w in ("reach", "the", "red", "target")
    ] + [0, 0]
    back = pickle.loads(pickle.dumps(tok))  # DataLoader workers receive a copy
    assert back.vocab == tok.vocab and np.array_equal(
        back.encode("reach the reds tagret"), tok.encode("reach the reds tagret")
    )
    assert tok.lookup("tagret") == "target" and tok._nearest.cache_info().currsize >= 1


def _osa(a: str, b: str) -> int:
    """Optimal-string-alignment distance, the textbook dynamic programme (reference for one_edit)."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


def _reference(word: str, vocab: list[str]) -> str | None:
    """The rule of the module docstring, written plainly (every candidate, full edit distance)."""
    if word in vocab:
        return word
    if len(word) < 4 or word in COLOUR_NAMES:
        return None
    best = None
    for order, known in enumerate(vocab):
        if len(known) < 3 or known.startswith("<") or abs(len(known) - len(word)) > 3:
            continue
        edit = _osa(word, known) == 1
        inflected = word.startswith(known) and word[len(known) :] in ("s", "es", "ed", "d", "ing", "er")
        sim = trigram_similarity(word, known)
        if known in COLOUR_NAMES:
            ok = word[0] == known[0] and (edit or inflected)
        else:
            ok = edit or inflected or sim >= 0.5
        if ok:
            key = (0 if edit or inflected else 1, -sim, order)
            best = min(best, (key, known)) if best else (key, known)
    return best[1] if best else None


@st.composite
def near_words(draw):
    """Vocabulary words with one random edit or suffix (most land near a word), or random letters."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    w = draw(st.sampled_from(VOCAB[2:]))
    kind = draw(st.integers(0, 5))
    i = draw(st.integers(0, len(w)))
    c = draw(st.sampled_from(letters))
    if kind == 0:
        return w[:i] + c + w[i:]
    if kind == 1:
        return w[:i] + w[i + 1 :] or c
    if kind == 2 and len(w) >= 2:
        i = min(i, len(w) - 2)
        return w[:i] + w[i + 1] + w[i] + w[i + 2 :]
    if kind == 3:
        return w[:i] + c + w[i + 1 :]
    if kind == 4:
        return w + draw(st.sampled_from(["s", "es", "ed", "ing", "er", "ly"]))
    return draw(st.text(alphabet=letters, min_size=1, max_size=9))


@settings(max_examples=500, deadline=None)
@given(near_words())
def test_nearest_word_matches_the_plain_rule(word):
    assert one_edit(word, "target") == (_osa(word, "target") == 1)
    assert nearest_word(word, VOCAB) == _reference(word, VOCAB)
