"""`wam eval` end to end with a tiny model: offline metrics beside copy-last and the ablation, and a short closed loop
in the real PyBullet tabletop through the runtime API, beside the expert and a random policy."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from wam_ros.cli import eval as eval_cli
from wam_ros.train.synthetic import write_synthetic_episodes
from wam_ros.train.train import TrainConfig, train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    write_synthetic_episodes(root / "train", n=8, steps=12, seed=1)
    write_synthetic_episodes(root / "heldout", n=3, steps=12, seed=2)
    common = dict(
        data=[str(root / "train")], preset="tiny", steps=12, batch_size=16, warmup=2, threads=1, val_frac=0.0
    )
    joint = train(TrainConfig(out=str(root / "joint"), **common))
    ablation = train(TrainConfig(out=str(root / "ablation"), frame_weight=0.0, **common))
    return root, joint, ablation


def _args(**kw) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    eval_cli.add_arguments(parser)
    ns = parser.parse_args(["--model", "x"])
    for k, v in kw.items():
        setattr(ns, k, v)
    return ns


def test_offline_and_closed_loop_side_by_side(runs, tmp_path):
    root, joint, ablation = runs
    args = _args(
        model=str(joint),
        ablation=str(ablation),
        data=[str(root / "heldout")],
        tasks=["reach"],
        episodes=2,
        horizon=4,
        max_windows=16,
        threads=1,
        out=str(tmp_path),
        seed_start=7,
        train_data=[str(root / "train")],
    )
    assert eval_cli.run(args) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    frames = res["offline"]["frames"]["all"]
    for key in ("psnr_h1", "copy_psnr_h1", "psnr_hN", "copy_psnr_hN", "ssim_h1", "copy_ssim_hN"):
        assert np.isfinite(frames[key]), key
    assert set(res["offline"]["action"]) == {"wam", "action_only"}
    cl = res["closed_loop"]["reach"]
    assert set(cl) == {"wam", "expert", "random"}
    assert cl["expert"]["successes"] == 2  # the scripted expert solves these scenes
    for r in cl.values():
        assert r["episodes"] == 2 and [o["seed"] for o in r["outcomes"]] == [7, 8]
    md = (tmp_path / "results.md").read_text()
    assert "copy-last PSNR h1" in md and "| reach | expert | 2/2 | 100% |" in md


def test_eval_refuses_seeds_seen_in_training(runs, tmp_path):
    root, joint, _ = runs
    seen = json.loads(str(np.load(sorted((root / "train").glob("episode_*.npz"))[0])["meta"]))["seed"]
    args = _args(
        model=str(joint), episodes=1, seed_start=seen, train_data=[str(root / "train")], out=str(tmp_path)
    )
    assert eval_cli.run(args) == 2
    assert not (tmp_path / "results.json").exists()


def test_eval_bad_inputs_are_clear_errors(runs, tmp_path, capsys):
    root, joint, _ = runs
    assert eval_cli.run(_args(model=str(tmp_path / "missing.pt"), episodes=0, out=str(tmp_path))) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert (
        eval_cli.run(
            _args(model=str(joint), data=[str(root / "heldout")], horizon=40, episodes=0, out=str(tmp_path))
        )
        == 2
    )
    assert "no held-out window has 40 future frames" in capsys.readouterr().err
    assert eval_cli.run(_args(model=str(joint), replan=0, out=str(tmp_path))) == 2
    assert "--replan must be >= 1, got 0" in capsys.readouterr().err


def test_eval_config_is_the_library_interface(runs, tmp_path):
    from wam_ros.train.evaluate import EvalConfig, evaluate, write_results

    with pytest.raises(ValueError, match="--max-windows must be >= 1, got 0"):
        EvalConfig(model="m", max_windows=0)
    root, joint, _ = runs
    res = evaluate(
        EvalConfig(model=str(joint), data=[str(root / "heldout")], episodes=0, max_windows=8, threads=1)
    )
    assert "closed_loop" not in res and res["offline"]["frames"]["windows"] == 8
    json_path, md_path = write_results(res, tmp_path / "r")
    assert json.loads(json_path.read_text())["model"] == str(joint) and "PSNR" in md_path.read_text()
