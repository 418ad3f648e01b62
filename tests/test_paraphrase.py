"""Instruction augmentation (wam_ros.model.paraphrase) and its training hook (WindowArrays(augment=...)).

Properties over generated seeds and instructions (hypothesis): the colour word is always kept within the first
max_tokens words, the output is a non-empty str the model's tokenizer encodes, and the same seed gives the same text.
The hook: same window indices -> same tokens, in DataLoader worker processes as in the main process; without augment
the batches are exactly the cached ones."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_episode import make_episode

from wam_ros.data.windows import TOKENS, WindowArrays
from wam_ros.model.config import WamConfig
from wam_ros.model.paraphrase import (
    AUG_NOUNS,
    AUG_VERBS,
    FILLERS_AFTER,
    FILLERS_BEFORE,
    augment_instruction,
    lexicon,
    task_of,
)
from wam_ros.model.tokenizer import COLOUR_NAMES, Tokenizer, extend_vocab, words
from wam_ros.sim._tasks import COLOURS
from wam_ros.train.batches import BatchStream

SIM_COLOURS = sorted(COLOURS)
TEMPLATES = ["reach the {} target", "push the cube onto the {} pad"]


def tokenizer(max_tokens: int = 12) -> Tokenizer:
    base = WamConfig.preset("tiny").vocab
    return Tokenizer(
        extend_vocab(base, [t.format(c) for t in TEMPLATES for c in SIM_COLOURS] + lexicon()), max_tokens
    )


def test_the_sim_colours_and_templates_are_the_ones_the_generator_knows():
    assert set(SIM_COLOURS) <= COLOUR_NAMES
    assert task_of("reach the red target") == ("reach", "red")
    assert task_of("Push the cube onto the YELLOW pad.") == ("push", "yellow")
    assert task_of("wave hello") == (None, None)


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    template=st.sampled_from(TEMPLATES),
    colour=st.sampled_from(SIM_COLOURS),
    p=st.floats(0.0, 1.0),
)
def test_colour_kept_tokenizable_and_deterministic(seed, template, colour, p):
    text = template.format(colour)
    tok = tokenizer()
    out = augment_instruction(text, np.random.default_rng(seed), p=p)
    assert isinstance(out, str) and out.strip()
    kept = words(out)[: tok.max_tokens]
    assert colour in kept and not (set(kept) & COLOUR_NAMES - {colour})  # never another colour
    ids = tok.encode(out)
    assert ids.dtype == np.int64 and ids.shape == (12,) and tok.vocab.index(colour) in ids
    assert [w for w, known in tok.explain(out) if known in COLOUR_NAMES] == [
        colour
    ]  # no word reads as a colour
    assert augment_instruction(text, np.random.default_rng(seed), p=p) == out


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), text=st.text(max_size=60))
def test_any_text_gives_a_str_and_keeps_its_colour_words(seed, text):
    out = augment_instruction(text, np.random.default_rng(seed), p=1.0)
    assert isinstance(out, str)
    for c in set(words(text)) & COLOUR_NAMES:
        assert c in words(out)
    tokenizer().encode(out)


def test_rewrites_cover_every_kind_of_variant():
    rng = np.random.default_rng(0)
    outs = [augment_instruction(t.format("green"), rng, p=1.0) for _ in range(400) for t in TEMPLATES]
    seen = {w for o in outs for w in words(o)}
    lex = set(lexicon())
    assert {v.split()[0] for task in AUG_VERBS.values() for v, _ in task} <= seen  # every verb
    assert {n for nouns in AUG_NOUNS.values() for n in nouns} <= seen  # every noun
    assert {words(f)[0] for f in FILLERS_BEFORE + FILLERS_AFTER} <= seen
    assert any(o.isupper() for o in outs) and any(o[-1] in ".!?" for o in outs)
    assert any(o.startswith("the green") or o.startswith("green") for o in outs)  # word order
    assert seen - lex - {"green"}  # typos and made-up words exist ...
    tok = tokenizer()
    assert any(tok.unknown_words(o) for o in outs)  # ... and some read as unknown
    assert sum(o in (t.format("green") for t in TEMPLATES) for o in outs) < 0.1 * len(outs)
    # p is the rewrite probability
    rng = np.random.default_rng(1)
    same = sum(
        augment_instruction("reach the red target", rng, p=0.25) == "reach the red target"
        for _ in range(2000)
    )
    assert 0.7 < same / 2000 < 0.8


def test_short_max_words_keeps_the_colour_first():
    rng = np.random.default_rng(3)
    for _ in range(300):
        out = augment_instruction("push the cube onto the blue pad", rng, p=1.0, max_words=7)
        assert "blue" in words(out)[:7]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="must be a str"):
        augment_instruction(None, np.random.default_rng(0))


def _episodes():
    return [
        make_episode(
            T=6,
            seed=s,
            instruction=TEMPLATES[s % 2].format(SIM_COLOURS[s % 4]),
            task=["reach", "push"][s % 2],
        )
        for s in range(5)
    ]


def test_without_augment_the_batches_are_the_cached_ones():
    eps, tok = _episodes(), tokenizer()
    plain = WindowArrays(eps, 2, 3, 8, tok)
    assert plain.augment is None
    b = plain.batch(np.arange(len(plain)))
    assert torch.equal(
        b[TOKENS], torch.from_numpy(tok.encode_batch([eps[e].instruction for e in plain.episode]))
    )


def test_augment_hook_is_deterministic_per_batch_and_changes_only_tokens():
    eps, tok = _episodes(), tokenizer()
    plain = WindowArrays(eps, 2, 3, 8, tok)
    aug = WindowArrays(eps, 2, 3, 8, tok, augment=functools.partial(augment_instruction, p=1.0))
    idx = np.random.default_rng(0).permutation(len(aug))[:16]
    a, b, c = aug.batch(idx), aug.batch(idx.copy()), plain.batch(idx)
    assert all(torch.equal(a[k], b[k]) for k in a)  # same indices, same tokens
    assert all(torch.equal(a[k], c[k]) for k in a if k != TOKENS)
    assert not torch.equal(a[TOKENS], c[TOKENS])
    assert all(torch.equal(aug.batch(idx, augment=False)[k], c[k]) for k in c)  # validation: the templates
    for row, e in zip(a[TOKENS].numpy(), aug.episode[idx], strict=True):  # each window keeps its own colour
        colour = task_of(eps[e].instruction)[1]
        assert tok.vocab.index(colour) in row
    other = aug.batch(idx[::-1].copy())  # other indices (the same set in another order): other draws
    assert not torch.equal(other[TOKENS], a[TOKENS].flip(0))
    with pytest.raises(ValueError, match="callable"):
        WindowArrays(eps, 2, 3, 8, tok, augment="yes")
    bad = WindowArrays(eps, 2, 3, 8, tok, augment=lambda text, rng: 3)
    with pytest.raises(ValueError, match="must return a str"):
        bad.batch(idx)
    assert TOKENS not in WindowArrays(eps, 2, 3, 8, None, augment=augment_instruction).batch(
        idx
    )  # no tokenizer


def test_worker_processes_give_the_same_augmented_batches():
    data = WindowArrays(_episodes(), 2, 3, 8, tokenizer(), augment=augment_instruction)
    pool = np.arange(len(data))
    inline = BatchStream(data, pool, 6, np.random.default_rng(5))
    pooled = BatchStream(data, pool, 6, np.random.default_rng(5), workers=2, prefetch=2)
    try:
        for _ in range(5):
            x, y = inline.next(), pooled.next()
            assert all(torch.equal(x[k], y[k]) for k in x)
    finally:
        pooled.close()
