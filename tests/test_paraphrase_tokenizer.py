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
