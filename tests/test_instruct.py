"""`wam instruct` (wam_ros.cli.instruct, wam_ros.train.phrasings.explain_instruction) on a tiny model trained for a
few steps: every word known / mapped / unknown, the recognised task and colour, and the action queries' attention on
each word in the last block, which must be the attention the block really used (its output is rebuilt from it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from wam_ros.cli import main as wam_main
from wam_ros.model import load_checkpoint
from wam_ros.train.phrasings import explain_instruction, word_attention
from wam_ros.train.synthetic import write_synthetic_episodes
from wam_ros.train.train import TrainConfig, train

torch.set_num_threads(1)


def train_tiny(root: Path) -> Path:
    """A tiny WAM trained for a few steps on synthetic reach and push episodes (both templates in its vocabulary)."""
    write_synthetic_episodes(root / "reach", n=4, steps=10, seed=0)
    write_synthetic_episodes(root / "push", n=2, steps=10, seed=1, task="push")
    return train(
        TrainConfig(
            data=[str(root / "reach"), str(root / "push")],
            out=str(root / "run"),
            preset="tiny",
            steps=12,
            batch_size=16,
            warmup=2,
            threads=1,
            val_frac=0.0,
        )
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("instruct"))


def test_attention_is_the_one_the_last_block_used(tiny):
    """Rebuild the last block's output rows of the action queries from the recomputed attention: equal to the
    block's real output (captured by a forward hook), so the weights shown are the ones the model used."""
    model = load_checkpoint(tiny)
    cfg = model.cfg
    rng = np.random.default_rng(0)
    frames = torch.from_numpy(
        rng.integers(0, 256, (1, cfg.k_frames, 3, cfg.image_size, cfg.image_size), np.uint8)
    )
    q = model.joint_mean[None].clone()
    tokens = torch.from_numpy(model.tokenizer.encode("reach the red target")[None])
    block, seen = model.blocks[-1], {}

    def grab_in(_m, args) -> None:  # a pre-hook returning something would replace the block's arguments
        seen.setdefault("x", args[0])

    def grab_out(_m, _args, out) -> None:
        seen.setdefault("out", out)

    h1, h2 = block.register_forward_pre_hook(grab_in), block.register_forward_hook(grab_out)
    att = word_attention(model, frames, q, tokens)  # its own hook runs beside these
    h1.remove(), h2.remove()
    x, out = seen["x"], seen["out"]
    N, L, S, D = cfg.chunk, cfg.max_tokens, x.shape[1], x.shape[2]
    assert att["words"].shape == (L,) and np.all(att["words"][4:] == 0)  # padding slots get nothing
    assert sum(att["groups"].values()) == pytest.approx(1.0, abs=1e-5)
    # rebuild: every key's weight per head and query (recomputed the same way), then the block's rows
    with torch.no_grad():
        hh = block.ln1(x)
        qq, kk, vv = block.qkv(hh).chunk(3, dim=-1)
        nh, hs = block.n_heads, D // block.n_heads
        qq = qq[:, S - N :].reshape(1, N, nh, hs).transpose(1, 2)
        kk, vv = (t.reshape(1, S, nh, hs).transpose(1, 2) for t in (kk, vv))
        pad = torch.zeros(S)
        pad[S - N - L : S - N] = (tokens[0] == 0).float() * -1e4
        w = torch.softmax(qq @ kk.transpose(-1, -2) * block.scale + pad, dim=-1)  # (1, nh, N, S)
        np.testing.assert_allclose(w.mean(dim=(0, 1, 2))[S - N - L : S - N].numpy(), att["words"], atol=1e-6)
        y = (w @ vv).transpose(1, 2).reshape(1, N, D)
        rows = x[:, S - N :] + block.proj(y)
        rows = rows + block.mlp(block.ln2(rows))
    torch.testing.assert_close(rows, out[:, -N:], atol=1e-5, rtol=1e-5)


def test_explain_names_known_mapped_and_unknown_words(tiny):
    model = load_checkpoint(tiny)
    r = explain_instruction(model, "Please reach the reds tagret zorblax!")
    status = {w["word"]: (w["status"], w["maps_to"]) for w in r["words"]}
    assert status == {
        "please": ("unknown", None),  # trained without the augmentation lexicon
        "reach": ("known", "reach"),
        "the": ("known", "the"),
        "reds": ("mapped", "red"),
        "tagret": ("mapped", "target"),
        "zorblax": ("unknown", None),
    }
    assert r["unknown"] == ["please", "zorblax"] and r["task"] == "reach" and r["colour"] == "red"
    assert r["attended_colour"] == "red" and r["attended_word"] in status
    assert all(0.0 <= w["attention"] <= 1.0 for w in r["words"])
    push = explain_instruction(model, "shove the cube onto the blue pad")
    assert (
        push["task"] == "push" and push["colour"] == "blue" and push["unknown"] == ["shove", "pad"]
    )  # pad: not in this vocabulary
    none = explain_instruction(model, "wave at the camera")
    assert none["task"] is None and none["colour"] is None
    long = explain_instruction(
        model, "reach " + "the " * 20 + "red target"
    )  # past max_tokens: shown, not used
    assert long["words"][-1]["status"] == "truncated" and long["words"][-1]["attention"] is None
    with pytest.raises(ValueError, match="non-empty"):
        explain_instruction(model, "  ")


def test_cli_text_and_json(tiny, capsys):
    assert wam_main(["instruct", "--model", str(tiny), "reach the bluee tagret qwzx"]) == 0
    text = capsys.readouterr().out
    assert "-> blue" in text and "-> target" in text and "UNKNOWN" in text and "task: reach" in text
    assert "attention read on: reach scene seed" in text  # a rendered tabletop scene
    assert (
        wam_main(["instruct", "--model", str(tiny), "--json", "--no-scene", "push the cube onto the red pad"])
        == 0
    )
    r = json.loads(capsys.readouterr().out)
    assert r["task"] == "push" and r["colour"] == "red" and r["scene"] is None
    assert [w["word"] for w in r["words"]] == ["push", "the", "cube", "onto", "the", "red", "pad"]
    assert {w["status"] for w in r["words"]} == {
        "known",
        "unknown",
    }  # the synthetic data never says cube/onto/pad


def test_cli_bad_input(tiny, tmp_path, capsys):
    assert wam_main(["instruct", "--model", str(tmp_path / "missing.pt"), "reach the red target"]) == 2
    assert "wam instruct:" in capsys.readouterr().err
    damaged = tmp_path / "model.pt"
    damaged.write_bytes(b"not a checkpoint")
    assert wam_main(["instruct", "--model", str(damaged), "reach the red target"]) == 2
    assert wam_main(["instruct", "--model", str(tiny), "   "]) == 2
    assert "non-empty" in capsys.readouterr().err
