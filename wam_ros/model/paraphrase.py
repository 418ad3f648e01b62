"""Instruction augmentation: paraphrases of the tabletop's two instruction templates, for training.

    rng = np.random.default_rng(0)
    augment_instruction("reach the red target", rng)              # e.g. "Could you move to the red marker now?"
    augment_instruction("push the cube onto the blue pad", rng)   # e.g. "the blue zone: shift the block onto it"
    vocab = extend_vocab(vocab, lexicon())                         # every word the generator can emit

With probability p an instruction is rewritten, keeping its colour word and its meaning: a verb of its task
(AUG_VERBS), object and goal nouns (AUG_NOUNS), a word order (ORDERS), then, each on its own draw, filler words
(FILLERS_BEFORE / FILLERS_AFTER / ADVERBS), a case change, punctuation, one typo (a swap, drop or duplicate of one
character, never in the colour word), the dropout of one word (never the colour word) and the insertion of a made-up
word (letters, never a word the lexicon knows or one close to a colour). The model then keys on the colour and the
task words and learns to ignore the rest. An instruction of neither template (no colour word, or another task) gets
only the second half (fillers, case, punctuation, typo, dropout, made-up word).

Training wiring (wam_ros/train/train.py):
    vocab=extend_vocab(base.vocab, sorted({e.instruction for e in episodes}) + lexicon())      # _model_config
    WindowArrays(..., tokenizer, augment=functools.partial(augment_instruction, max_words=mcfg.max_tokens))
    validate(): data.batch(idx, augment=False) keeps validation on the recorded instructions

The colour word is always kept, and within the first `max_words` words (the model's max_tokens: a longer
instruction is truncated by the tokenizer). Deterministic for a given generator state. The held-out phrasing set
(config/phrasings/heldout.yaml) uses none of these verbs and nouns: that is how generalisation is measured.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from wam_ros.model.tokenizer import COLOUR_NAMES, nearest_word, words

COLOURS = tuple(sorted(COLOUR_NAMES))  # a colour word is any of these; never changed, dropped or misspelled

# verb phrases per task: (verb, preposition to a goal, "" when the verb takes the goal directly)
AUG_VERBS: dict[str, list[tuple[str, str]]] = {
    "reach": [
        ("reach", ""),
        ("touch", ""),
        ("reach", "for"),
        ("go", "to"),
        ("move", "to"),
        ("get", "to"),
        ("head", "to"),
        ("point", "at"),
        ("move your hand", "to"),
        ("bring the gripper", "to"),
    ],
    "push": [
        ("push", ""),
        ("move", ""),
        ("shift", ""),
        ("bring", ""),
        ("get", ""),
        ("put", ""),
        ("carry", ""),
        ("take", ""),
    ],
}
AUG_NOUNS: dict[str, list[str]] = {
    "reach_goal": ["target", "goal", "marker", "ball", "sphere", "point", "object", "location"],
    "push_object": ["cube", "block", "object", "piece"],
    "push_goal": ["pad", "zone", "area", "region", "goal", "target", "marker", "plate"],
}
PUSH_PREPOSITIONS = ["onto", "to", "into", "on", "over to", "on top of"]
# word orders; {v} verb, {p} its preposition ("" allowed), {c} colour, {n} goal noun, {o} object noun, {q} push prep
ORDERS: dict[str, list[str]] = {
    "reach": [
        "{v} {p} the {c} {n}",
        "{v} {p} the {c} {n}",  # the plain order twice as often
        "the {c} {n}: {v} {p} it",
        "to the {c} {n}, {v}",
        "{v} {p} the {n} that is {c}",
        "{c} {n}, {v} {p} it",
    ],
    "push": [
        "{v} the {o} {q} the {c} {n}",
        "{v} the {o} {q} the {c} {n}",
        "the {c} {n}: {v} the {o} {q} it",
        "{q} the {c} {n}, {v} the {o}",
        "{v} the {o} so it is on the {c} {n}",
        "{v} the {o} {q} the {n} that is {c}",
    ],
}
FILLERS_BEFORE = [
    "please",
    "now",
    "could you",
    "can you",
    "kindly",
    "ok",
    "okay",
    "hey robot",
    "robot",
    "then",
]
FILLERS_AFTER = ["please", "now", "thanks", "thank you", "for me", "right away", "again"]
ADVERBS = ["carefully", "slowly", "quickly", "gently", "just"]
PUNCTUATION = [".", "!", "?", "..."]

# probability of each perturbation of a rewritten instruction
P_FILLER, P_ADVERB, P_CASE, P_PUNCT, P_TYPO, P_DROP, P_MADE_UP = 0.4, 0.2, 0.3, 0.3, 0.2, 0.15, 0.2
_CONSONANTS, _VOWELS = "bcdfghjklmnpqrstvwxz", "aeiou"


def lexicon() -> list[str]:
    """Every word the generator can emit (sorted, lower case) beside the instruction's own colour word, made-up
    words and typos aside: add these to a model's vocabulary before training with augmentation."""
    return list(_lexicon())


@lru_cache(maxsize=1)
def _lexicon() -> tuple[str, ...]:
    parts: list[str] = FILLERS_BEFORE + FILLERS_AFTER + ADVERBS + PUSH_PREPOSITIONS
    for verbs in AUG_VERBS.values():
        parts += [f"{v} {p}" for v, p in verbs]
    for nouns in AUG_NOUNS.values():
        parts += nouns
    for orders in ORDERS.values():
        parts += [o.format(v="", p="", c="", n="", o="", q="") for o in orders]
    return tuple(sorted({w for part in parts for w in words(part)}))


def task_of(text: str) -> tuple[str | None, str | None]:
    """(task "reach" | "push" | None, colour word | None) of an instruction, from its words."""
    ws = words(text)
    colour = next((w for w in ws if w in COLOUR_NAMES), None)
    if "push" in ws or "cube" in ws or "pad" in ws:
        return "push", colour
    if "reach" in ws or "target" in ws:
        return "reach", colour
    return None, colour


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _rephrase(task: str, colour: str, rng: np.random.Generator) -> str:
    v, p = _pick(rng, AUG_VERBS[task])
    order = _pick(rng, ORDERS[task])
    if task == "reach":
        text = order.format(v=v, p=p, c=colour, n=_pick(rng, AUG_NOUNS["reach_goal"]))
    else:
        obj, goal = _pick(rng, AUG_NOUNS["push_object"]), _pick(rng, AUG_NOUNS["push_goal"])
        text = order.format(v=v, c=colour, n=goal, o=obj, q=_pick(rng, PUSH_PREPOSITIONS))
    return " ".join(text.split()).replace(" ,", ",").replace(" :", ":")


def _made_up(rng: np.random.Generator, known: tuple[str, ...]) -> str:
    """A pronounceable made-up word that is no lexicon word and maps to none (nor to a colour)."""
    while True:
        n = int(rng.integers(3, 8))
        w = "".join(_pick(rng, _VOWELS if i % 2 else _CONSONANTS) for i in range(n))
        if nearest_word(w, known) is None:
            return w


def _typo(word: str, rng: np.random.Generator) -> str:
    i = int(rng.integers(len(word)))
    kind = int(rng.integers(3))
    if kind == 0 and len(word) >= 2:  # swap with the next character
        i = min(i, len(word) - 2)
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 1 and len(word) >= 3:  # drop one character
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]  # duplicate one character


def _case(text: str, rng: np.random.Generator) -> str:
    kind = int(rng.integers(3))
    return text.upper() if kind == 0 else text.title() if kind == 1 else text[:1].upper() + text[1:]


def augment_instruction(text: str, rng: np.random.Generator, p: float = 0.8, max_words: int = 12) -> str:
    """A paraphrase of `text` with probability p, else `text` unchanged (see the module docstring).

    Keeps every colour word of `text`; the result has at most `max_words` words whenever the rewrite alone fits."""
    if not isinstance(text, str):
        raise ValueError(f"instruction must be a str, got {type(text).__name__}")
    if rng.random() >= p:
        return text
    task, colour = task_of(text)
    colours = [w for w in words(text) if w in COLOUR_NAMES]
    base = (
        _rephrase(task, colour, rng)
        if task is not None and colour is not None and len(colours) == 1
        else text
    )
    toks = base.split()
    known = _lexicon() + COLOURS

    def room() -> bool:
        return len(words(" ".join(toks))) < max_words

    def colourless(i: int) -> bool:
        return not any(w in COLOUR_NAMES for w in words(toks[i]))

    if rng.random() < P_ADVERB and room():
        toks.insert(0 if rng.random() < 0.5 else len(toks), _pick(rng, ADVERBS))
    if rng.random() < P_FILLER and room():
        if rng.random() < 0.5:
            toks.insert(0, _pick(rng, FILLERS_BEFORE) + ("," if rng.random() < 0.3 else ""))
        else:
            toks.append(_pick(rng, FILLERS_AFTER))
    if rng.random() < P_MADE_UP and room():
        toks.insert(int(rng.integers(len(toks) + 1)), _made_up(rng, known))
    if rng.random() < P_DROP and len(toks) > 2:
        options = [i for i in range(len(toks)) if colourless(i)]
        if options:
            del toks[_pick(rng, options)]
    if rng.random() < P_TYPO:
        options = [i for i in range(len(toks)) if colourless(i) and len(toks[i]) >= 3 and toks[i].isalpha()]
        if options:
            i = _pick(rng, options)
            typo = _typo(toks[i], rng)
            if all(nearest_word(w, COLOURS) is None for w in words(typo)):  # never reads as a colour
                toks[i] = typo
    out = " ".join(toks)
    if rng.random() < P_CASE:
        out = _case(out, rng)
    if rng.random() < P_PUNCT:
        out = out.rstrip(".!?,:") + _pick(rng, PUNCTUATION)
    kept = words(out)[:max_words]
    if not out.strip() or any(c not in kept for c in colours):  # never lose a colour (e.g. past max_words)
        return base if all(c in words(base)[:max_words] for c in colours) else text
    return out
