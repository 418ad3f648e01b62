"""Model integrity: every weight file is hashed when written and checked before it is loaded (issue 15, item 3).

Damage is made the way a bad disk, a partial copy or a bad download makes it: bytes flipped inside the weights of a
real exported model. Loading must fail with an error naming the file and the command that rebuilds it, and
`backend="auto"` must never fall back to a file that failed the check.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from test_export import make_checkpoint

from wam_ros.export.onnx_export import export_model
from wam_ros.model.checkpoint import CHECKPOINT_FILE, CheckpointError, load_checkpoint
from wam_ros.runtime import load_policy
from wam_ros.runtime.model_dir import (
    CHECKPOINT,
    MANIFEST,
    IntegrityError,
    onnx_name,
    read_manifest,
    verify_file,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("integrity")
    export_model(make_checkpoint(root / "ckpt.pt", seed=5), root / "model")
    return root / "model"


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _flip_inside_weights(path: Path, n: int = 64, seed: int = 0) -> None:
    """Flip `n` bytes in the largest weight tensor's data (found by its bytes, so the file still parses)."""
    data = bytearray(path.read_bytes())
    if path.suffix == ".onnx":
        model = onnx.load(str(path))
        init = max(model.graph.initializer, key=lambda t: len(t.raw_data))
        blob = init.raw_data
    else:
        state = torch.load(path, weights_only=True)["state_dict"]
        tensor = max(state.values(), key=lambda t: t.numel())
        blob = tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes()
    start = bytes(data).find(blob)
    assert start >= 0, "weight bytes not found in the file"
    rng = np.random.default_rng(seed)
    for off in rng.choice(len(blob), size=n, replace=False):
        data[start + int(off)] ^= 0xFF
    path.write_bytes(bytes(data))


def test_constants_agree_and_export_writes_a_manifest(exported):
    assert CHECKPOINT == CHECKPOINT_FILE
    files = read_manifest(exported)
    assert set(files) == {CHECKPOINT} | {
        onnx_name(g, p) for g in ("full", "action") for p in ("fp32", "fp16")
    }
    assert all(verify_file(exported / name) for name in files)


def test_shipped_model_verifies():
    shipped = ROOT / "models" / "panda_tabletop"
    files = read_manifest(shipped)
    assert files is not None and CHECKPOINT in files
    assert all(verify_file(shipped / name) for name in files)


@pytest.mark.parametrize("backend", ["onnxruntime", "auto"])
def test_flipped_bytes_in_an_onnx_graph_are_refused(exported, tmp_path, backend):
    d = _copy(exported, tmp_path / "m")
    _flip_inside_weights(d / onnx_name("full"))
    onnx.checker.check_model(str(d / onnx_name("full")))  # still a well-formed graph: only the hash can tell
    with pytest.raises(IntegrityError, match=r"wam_full\.onnx does not match the sha256.*wam export"):
        load_policy(d, backend=backend)
    # the other graphs are intact and still load
    assert load_policy(d, backend="onnxruntime", graph="action").graph == "action"


def test_auto_never_prefers_a_damaged_checkpoint_over_an_intact_onnx(exported, tmp_path):
    d = _copy(exported, tmp_path / "m")
    _flip_inside_weights(d / CHECKPOINT)
    assert load_policy(d, backend="auto").backend_name.startswith(
        "onnxruntime"
    )  # the intact graph, not torch
    with pytest.raises(IntegrityError, match=r"model\.pt does not match"):
        load_policy(d, backend="torch")
    assert load_policy(d, backend="onnxruntime").backend_name.startswith("onnxruntime")
    # with the graphs gone, auto refuses instead of falling back to the damaged checkpoint
    for name in read_manifest(d):
        if name != CHECKPOINT:
            (d / name).unlink()
    with pytest.raises(IntegrityError, match=r"model\.pt does not match"):
        load_policy(d, backend="auto")


def test_a_bare_checkpoint_carries_its_own_seal(exported, tmp_path):
    bare = tmp_path / "bare.pt"
    shutil.copyfile(exported / CHECKPOINT, bare)
    load_checkpoint(bare)
    _flip_inside_weights(bare)
    with pytest.raises(CheckpointError, match="do not match the sha256 recorded"):
        load_checkpoint(bare)
    with pytest.raises(CheckpointError, match="damaged"):
        load_policy(bare)


def test_a_retrained_checkpoint_is_not_called_damaged(exported, tmp_path):
    """A checkpoint replaced by `wam train` is self-consistent: it loads (the ONNX beside it is then stale)."""
    d = _copy(exported, tmp_path / "m")
    make_checkpoint(d / CHECKPOINT, seed=99)
    assert load_policy(d, backend="torch").backend_name == "torch"
    assert load_policy(d).backend_name == "torch"  # stale graphs are not run


def test_a_damaged_manifest_is_a_clear_error(exported, tmp_path):
    d = _copy(exported, tmp_path / "m")
    (d / MANIFEST).write_text("{not json")
    with pytest.raises(IntegrityError, match=r"manifest\.json is damaged.*wam export"):
        load_policy(d)


def test_wam_node_refuses_a_damaged_model_in_one_line(exported, tmp_path):
    """The node process itself: exit status 2 and one line naming the file, not a traceback."""
    import os
    import subprocess
    import sys

    d = _copy(exported, tmp_path / "m")
    _flip_inside_weights(d / onnx_name("full"))
    proc = subprocess.run(
        [sys.executable, "-m", "wam_ros.ros.wam_node", "--ros-args", "-p", f"model_path:={d}"],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert (
        "WamNode: cannot start:" in proc.stderr and "wam_full.onnx does not match the sha256" in proc.stderr
    )
    assert "Traceback" not in proc.stderr
