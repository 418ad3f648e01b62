"""Imagination (`wam dream`) and the frame metrics it reports, on a tiny model trained for a few steps."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from PIL import Image

from wam_ros.train.metrics import imagine, psnr, ssim
from wam_ros.train.synthetic import write_synthetic_episodes
from wam_ros.train.train import TrainConfig, train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("dream")
    eps = write_synthetic_episodes(root / "reach", n=6, steps=12, seed=5)
    path = train(
        TrainConfig(
            data=[str(root / "reach")],
            out=str(root / "run"),
            preset="tiny",
            steps=15,
            batch_size=16,
            warmup=2,
            threads=1,
            val_frac=0.0,
        )
    )
    return path, eps


def test_psnr_and_ssim_known_values():
    a = torch.full((2, 3, 32, 32), 0.5)
    b = a + 0.1
    torch.testing.assert_close(psnr(a, b), torch.full((2,), 20.0), atol=1e-3, rtol=0)
    torch.testing.assert_close(ssim(a, a), torch.ones(2))
    noisy = (a + 0.2 * torch.randn_like(a)).clamp(0, 1)
    assert (ssim(a, noisy) < 0.5).all() and (psnr(a, noisy) < psnr(a, b)).all()


def test_imagine_feeds_back_its_own_frames(trained):
    from wam_ros.model import load_checkpoint

    model = load_checkpoint(trained[0])
    frames = torch.randint(0, 256, (2, 2, 3, 64, 64), dtype=torch.uint8)
    tokens = torch.as_tensor(model.tokenizer.encode_batch(["reach the red target"] * 2))
    joints = torch.zeros(2, 4, 8)
    seq = imagine(model, frames, tokens, joints, 4)
    assert seq.shape == (2, 4, 3, 64, 64) and seq.min() >= 0 and seq.max() <= 1
    with torch.no_grad():  # step 2 must equal one forward on [real frame t, imagined frame t+1]
        _, second = model(torch.cat([frames[:, 1:].float(), seq[:, :1] * 255], 1), joints[:, 1], tokens)
    torch.testing.assert_close(seq[:, 1], second)
    with pytest.raises(ValueError, match="proprio must be one of"):
        imagine(model, frames, tokens, joints, 2, proprio="dreamt")


def test_wam_dream_cli_writes_gif_and_png(trained, tmp_path):
    path, eps = trained
    out = tmp_path / "dream.gif"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "wam_ros.cli",
            "dream",
            "--model",
            str(path),
            "--episode",
            str(eps[0]),
            "--start",
            "1",
            "--steps",
            "6",
            "--out",
            str(out),
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert (
        "psnr_model" in res.stdout
        and len([ln for ln in res.stdout.splitlines() if ln.strip()[:1].isdigit()]) == 6
    )
    gif = Image.open(out)
    assert gif.n_frames == 6 and gif.size == ((64 * 2 + 2) * 4, 64 * 4)
    assert Image.open(str(out) + ".png").size == (64 * 6 * 2, 64 * 2 * 2)
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "wam_ros.cli",
            "dream",
            "--model",
            str(path),
            "--episode",
            str(eps[0]),
            "--start",
            "50",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "--start must be in 0..10" in bad.stderr
    corrupt = tmp_path / "bad.pt"
    corrupt.write_bytes(b"\x00" * 100)
    bad = subprocess.run(
        [sys.executable, "-m", "wam_ros.cli", "dream", "--model", str(corrupt), "--episode", str(eps[0])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "corrupt" in bad.stderr
