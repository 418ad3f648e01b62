"""Training (tiny preset, synthetic episodes): loss goes down, seeded determinism, exact resume, DDP, bad input."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from wam_ros.data.windows import WindowArrays
from wam_ros.model import WorldActionModel, load_checkpoint
from wam_ros.model.checkpoint import NORMALIZER_KEYS
from wam_ros.runtime.model_dir import read_manifest, verify_file
from wam_ros.train.batches import load_episodes
from wam_ros.train.plots import read_metrics
from wam_ros.train.synthetic import write_synthetic_episodes
from wam_ros.train.train import TrainConfig, train, validate

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> list[str]:
    return synth_dirs(tmp_path_factory.mktemp("synth"), n=12, steps=12)


def synth_dirs(root: Path, n: int, steps: int) -> list[str]:
    """Synthetic episodes of `steps` steps: n reach (seed 0) and n/2 push (seed 1); the two directories."""
    write_synthetic_episodes(root / "reach", n=n, steps=steps, seed=0)
    write_synthetic_episodes(root / "push", n=n // 2, steps=steps, seed=1, task="push")
    return [str(root / "reach"), str(root / "push")]


def _cfg(data, out, **kw) -> TrainConfig:
    base = dict(
        data=data,
        out=str(out),
        preset="tiny",
        steps=10,
        batch_size=16,
        warmup=100,
        threads=1,
        ckpt_every=5,
        eval_every=5,
        val_frac=0.2,
        seed=3,
    )
    return TrainConfig(**{**base, **kw})


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).state_dict()


def test_a_few_steps_reduce_the_loss_and_write_artifacts(synth, tmp_path):
    path = train(_cfg(synth, tmp_path, steps=80, warmup=5, lr=2e-3, eval_every=40, ckpt_every=40))
    trained = load_checkpoint(path, require_fitted=True)
    torch.manual_seed(3)  # the run's seed: the very initial weights of the run
    initial = WorldActionModel(trained.cfg)
    for name in NORMALIZER_KEYS:
        getattr(initial, name).copy_(getattr(trained, name))
    data = WindowArrays(load_episodes(synth), 2, 8, 64, trained.tokenizer)
    every = np.arange(len(data))
    before, after = validate(initial, data, every, 0.5), validate(trained, data, every, 0.5)
    assert after["val_action"] < 0.5 * before["val_action"], (before, after)
    assert after["val_frame"] < before["val_frame"], (before, after)  # beats the initial copy-last-frame head
    rows = read_metrics(tmp_path / "metrics.csv")
    assert len([r for r in rows if "val_action" in r]) == 2 and len([r for r in rows if "loss" in r]) >= 4
    for name in (
        "model.pt",
        "manifest.json",
        "train_state.pt",
        "metrics.csv",
        "loss_curves.png",
        "train_args.json",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    assert verify_file(path)  # the model folder's manifest records the final model.pt
    assert list(read_manifest(tmp_path)) == ["model.pt"]
    assert trained.extra["step"] == 80 and trained.extra["frame_weight"] == 0.5
    assert "red" in trained.cfg.vocab and trained.cfg.joint_names[-1] == "panda_gripper"


def test_same_seed_same_weights_and_resume_is_exact(synth, tmp_path):
    a = train(_cfg(synth, tmp_path / "a"))
    b = train(_cfg(synth, tmp_path / "b"))
    train(_cfg(synth, tmp_path / "c", steps=5))
    c = train(_cfg(synth, tmp_path / "c", steps=10, resume=True))
    wa, wb, wc = _weights(a), _weights(b), _weights(c)
    assert verify_file(c)  # the resumed run's saves re-record model.pt in the manifest
    for key in wa:
        assert torch.equal(wa[key], wb[key]), f"same seed, different {key}"
        assert torch.equal(wa[key], wc[key]), f"resumed run differs in {key}"
    d = train(_cfg(synth, tmp_path / "d", seed=4))
    assert not torch.equal(_weights(d)["action_head.weight"], wa["action_head.weight"])


def test_frame_weight_zero_is_the_action_only_ablation(synth, tmp_path):
    path = train(_cfg(synth, tmp_path, frame_weight=0.0))
    init = load_checkpoint(path).frame_out.weight
    assert torch.count_nonzero(init) == 0  # the frame decoder never received a gradient
    rows = [r for r in read_metrics(tmp_path / "metrics.csv") if "frame" in r]
    assert all(r["frame"] == 0 for r in rows)


def torchrun(args: list[str], **env: str) -> None:
    """`torchrun --nproc_per_node 2 ARGS`: two CPU processes (gloo, one thread each) on a free rendezvous port, with
    `env` added to the environment; fails the test unless it exits 0 within 120 s (and never leaves a rank behind)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", **env}
    with socket.socket() as sock:  # a free port for the rendezvous (torchrun's --master_port 0 hangs here)
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port]
    proc = subprocess.Popen(
        cmd + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # never leave the two workers behind
        _, err = proc.communicate()
        pytest.fail(f"torchrun did not finish in 120 s: {err[-3000:]}")
    assert proc.returncode == 0, err[-3000:]


def test_ddp_two_cpu_processes_gloo(synth, tmp_path):
    cmd = ["-m", "wam_ros.cli.train", "--data", *synth, "--out", str(tmp_path), "--preset", "tiny"]
    schedule = ["--steps", "6", "--batch-size", "16", "--ckpt-every", "3", "--eval-every", "3"]
    torchrun([*cmd, *schedule, "--threads", "1"])
    args = json.loads((tmp_path / "train_args.json").read_text())
    assert args["world_size"] == 2
    model = load_checkpoint(tmp_path / "model.pt", require_fitted=True)
    assert model.extra["world_size"] == 2 and model.extra["step"] == 6
    state = torch.load(tmp_path / "train_state.pt", weights_only=True)
    assert len(state["rng"]) == 2 and state["rng"][0] != state["rng"][1]  # each rank sampled its own stream


def test_bad_inputs_are_clear_errors(synth, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no episode_.*files under"):
        train(_cfg([str(empty)], tmp_path / "o"))
    with pytest.raises(FileNotFoundError, match="episode directory not found"):
        train(_cfg([str(tmp_path / "nope")], tmp_path / "o"))
    with pytest.raises(ValueError, match="frame_weight must be >= 0, got -1"):
        _cfg(synth, tmp_path, frame_weight=-1)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        _cfg(synth, tmp_path, batch_size=0)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "wam_ros.cli",
            "train",
            "--data",
            str(empty),
            "--out",
            str(tmp_path / "o"),
            "--preset",
            "tiny",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "wam train: no episode_" in out.stderr
