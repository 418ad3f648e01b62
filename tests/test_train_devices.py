"""Training devices (tiny preset, synthetic episodes): the default CPU path is the plain fp32 loop, bf16/fp16 autocast
on the CPU, DataLoader workers give the same batches, DDP under torchrun (2 CPU processes, gloo) writes from rank 0
only and is deterministic, and --device cuda on a machine without CUDA is a clear exit 2 (no silent CPU fallback)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import _cfg, _weights, synth_dirs, torchrun  # test_train's tiny training config, data, DDP

from wam_ros.model.losses import wam_loss
from wam_ros.train.batches import BatchStream
from wam_ros.train.plots import read_metrics
from wam_ros.train.train import (
    DeviceUnavailable,
    TrainConfig,
    Trainer,
    lr_at,
    resolve_device,
    train,
)

torch.set_num_threads(1)
NO_CUDA = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> list[str]:
    return synth_dirs(tmp_path_factory.mktemp("synth_dev"), n=8, steps=10)


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_default_path_is_the_plain_fp32_loop(synth, tmp_path):
    """With the defaults (cpu, amp off, 0 workers) Trainer.step is exactly the loop it was before devices existed:
    draw from the rank's generator, gather, fp32 loss, backward, clip, AdamW step."""
    cfg = _cfg(synth, tmp_path / "t", batch_size=8)
    assert (cfg.device, cfg.amp, cfg.workers) == ("cpu", "off", 0)
    a, b = Trainer(cfg), Trainer(_cfg(synth, tmp_path / "p", batch_size=8))
    for t in (a, b):
        t.setup()
        t.start()
    assert a.device == torch.device("cpu") and a.scaler is None and a.stream._it is None
    for k in range(4):
        lr = lr_at(k, cfg)
        a.step(lr)
        for group in b.opt.param_groups:
            group["lr"] = lr
        idx = b.rng.choice(b.train_idx, size=8, replace=len(b.train_idx) < 8)
        losses = wam_loss(b.model, b.data.batch(idx), cfg.frame_weight)
        b.opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(b.model.parameters(), 1.0)
        b.opt.step()
    assert _same_weights(a.model.state_dict(), b.model.state_dict())
    assert a.stream.rng_state() == b.rng.bit_generator.state
    a.stream.close()


def test_bf16_autocast_on_cpu_trains_with_finite_losses(synth, tmp_path):
    trainer = Trainer(_cfg(synth, tmp_path / "probe", amp="bf16"))
    trainer.setup()
    trainer.start()
    seen = []
    hook = trainer.model.action_head.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    losses = trainer.step(1e-3)
    hook.remove()
    trainer.stream.close()
    assert seen == [torch.bfloat16]  # the forward really ran under bf16 autocast
    assert losses["loss"].dtype == torch.float32 and math.isfinite(float(losses["loss"].detach()))

    path = train(_cfg(synth, tmp_path / "bf16", amp="bf16", steps=6, eval_every=3, ckpt_every=3))
    rows = read_metrics(tmp_path / "bf16" / "metrics.csv")
    values = [r[k] for r in rows for k in ("loss", "action", "frame", "val_action", "val_frame") if k in r]
    assert len(values) >= 5 and all(math.isfinite(v) for v in values), rows
    w = _weights(path)
    assert all(torch.isfinite(v).all() for v in w.values() if v.is_floating_point())
    assert all(v.dtype != torch.bfloat16 for v in w.values())  # autocast never changes the stored weights
    fp32 = _weights(train(_cfg(synth, tmp_path / "fp32", steps=6, eval_every=3, ckpt_every=3)))
    assert not torch.equal(w["action_head.weight"], fp32["action_head.weight"])  # bf16 numbers differ
    state = torch.load(tmp_path / "bf16" / "train_state.pt", weights_only=True)
    assert state["amp"] == "bf16" and "scaler" not in state  # bf16 needs no loss scaling


def test_fp16_grad_scaler_state_resumes_exactly(synth, tmp_path):
    straight = train(_cfg(synth, tmp_path / "a", amp="fp16", steps=4, ckpt_every=2, eval_every=2))
    train(_cfg(synth, tmp_path / "b", amp="fp16", steps=2, ckpt_every=2, eval_every=2))
    resumed = train(_cfg(synth, tmp_path / "b", amp="fp16", steps=4, ckpt_every=2, eval_every=2, resume=True))
    state = torch.load(tmp_path / "a" / "train_state.pt", weights_only=True)
    assert state["amp"] == "fp16" and state["scaler"]["scale"] > 0  # the GradScaler's state is saved
    assert _same_weights(_weights(straight), _weights(resumed))
    assert all(torch.isfinite(v).all() for v in _weights(straight).values() if v.is_floating_point())


def test_workers_give_the_same_batches_and_the_same_run(synth, tmp_path):
    episodes_cfg = Trainer(_cfg(synth, tmp_path / "x"))
    episodes_cfg.setup()
    data, pool = episodes_cfg.data, episodes_cfg.train_idx
    inline = BatchStream(data, pool, 8, np.random.default_rng(7))
    pooled = BatchStream(data, pool, 8, np.random.default_rng(7), workers=2, prefetch=3)
    try:
        for _ in range(7):
            x, y = inline.next(), pooled.next()
            assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
            # the workers have drawn ahead, but the state a resume restores is the one after this batch
            assert pooled.rng_state() == inline.rng_state()
        assert pooled.rng.bit_generator.state != inline.rng.bit_generator.state  # it really drew ahead
    finally:
        pooled.close()
    plain = train(_cfg(synth, tmp_path / "w0", steps=8, ckpt_every=4, eval_every=4))
    train(_cfg(synth, tmp_path / "w2", steps=4, ckpt_every=4, eval_every=4, workers=2))
    resumed = train(_cfg(synth, tmp_path / "w2", steps=8, ckpt_every=4, eval_every=4, workers=2, resume=True))
    assert _same_weights(_weights(plain), _weights(resumed))


@pytest.mark.skipif(not NO_CUDA, reason="checks the refusal on a machine without CUDA")
def test_device_cuda_without_a_gpu_is_a_clear_exit_2(synth, tmp_path):
    with pytest.raises(DeviceUnavailable, match="--device cuda: .*(no CUDA support|cannot use a GPU)"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")  # auto says so and trains on the CPU
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "wam_ros.cli",
            "train",
            "--data",
            *synth,
            "--out",
            str(out),
            "--device",
            "cuda",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr
    assert "wam train: --device cuda:" in err and "--device cpu" in err, err
    if torch.version.cuda is None:
        assert f"this torch build ({torch.__version__}) has no CUDA support" in err, err
    assert "Traceback" not in err and not out.exists()  # refused before any work: no CPU fallback, no run dir


def test_bad_device_options_are_clear_errors(synth, tmp_path):
    with pytest.raises(ValueError, match=r"device must be one of \('cpu', 'cuda', 'auto'\), got 'gpu'"):
        _cfg(synth, tmp_path, device="gpu")
    with pytest.raises(ValueError, match=r"amp must be one of \('off', 'bf16', 'fp16'\), got 'fp8'"):
        _cfg(synth, tmp_path, amp="fp8")
    with pytest.raises(ValueError, match="workers must be >= 0, got -1"):
        _cfg(synth, tmp_path, workers=-1)
    assert TrainConfig(data=["x"], out="x").device == "cpu"  # the CPU stays the default


AUDIT = textwrap.dedent(
    """
    # Runs `wam train` under an audit hook that records every write, rename, removal and mkdir under the run dir.
    import os, sys
    out, log = os.path.realpath(sys.argv[1]), sys.argv[2]
    events = []
    WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def under(path):
        if not isinstance(path, (str, bytes, os.PathLike)):
            return False  # a file descriptor
        path = os.path.realpath(os.fsdecode(path))
        return path == out or path.startswith(out + os.sep)

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & WRITE)
            paths = [path] if writing else []
        elif event in ("os.rename", "os.replace", "os.link", "os.symlink"):
            paths = list(args[:2])
        elif event in ("os.remove", "os.mkdir", "os.rmdir", "os.truncate", "os.chmod", "shutil.rmtree"):
            paths = [args[0]]
        else:
            return
        events.extend(f"{event} {os.fsdecode(p)}" for p in paths if under(p))

    sys.addaudithook(hook)
    from wam_ros.cli.train import main

    rc = main(sys.argv[3:])
    with open(f"{log}.rank{os.environ['RANK']}", "w") as f:
        f.write("\\n".join(events))
    sys.exit(rc)
    """
)


def _torchrun(script: Path, out: Path, synth: list[str]) -> list[list[str]]:
    """2 CPU processes (gloo) training the tiny preset; returns each rank's writes under `out`."""
    root = str(Path(__file__).resolve().parent.parent)
    log = out.parent / f"{out.name}.writes"
    cmd = [str(script), str(out), str(log), "--data", *synth, "--out", str(out), "--preset", "tiny"]
    cmd += ["--steps", "4", "--batch-size", "8", "--threads", "1", "--ckpt-every", "2", "--eval-every", "2"]
    torchrun(
        [*cmd, "--val-frac", "0.2", "--seed", "5"],
        PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
    )
    return [Path(f"{log}.rank{r}").read_text().split("\n") for r in (0, 1)]


def test_ddp_two_cpu_processes_rank0_writes_and_is_deterministic(synth, tmp_path):
    script = tmp_path / "audited_train.py"
    script.write_text(AUDIT)
    writes_a = _torchrun(script, tmp_path / "a", synth)
    _torchrun(script, tmp_path / "b", synth)
    rank0, rank1 = writes_a
    assert rank1 == [""], f"rank 1 wrote under the run dir: {rank1}"
    for name in ("model.pt", "train_state.pt", "metrics.csv", "train_args.json", "manifest.json"):
        assert any(e.endswith(f"/{name}") for e in rank0), (name, rank0)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "loss_curves.png",
        "manifest.json",
        "metrics.csv",
        "model.pt",
        "train_args.json",
        "train_state.pt",
    ]  # nothing per rank, no temporary file left
    args = json.loads((tmp_path / "a" / "train_args.json").read_text())
    assert args["world_size"] == 2 and args["device_used"] == "cpu"
    wa, wb = _weights(tmp_path / "a" / "model.pt"), _weights(tmp_path / "b" / "model.pt")
    assert _same_weights(wa, wb)  # the same seed gives the same weights bit for bit under DDP too
    state = torch.load(tmp_path / "a" / "train_state.pt", weights_only=True)
    assert len(state["rng"]) == 2 and state["rng"][0] != state["rng"][1]  # each rank its own stream and shard
