"""Export: ONNX graphs (full + action, fp32 + fp16) from a real tiny checkpoint, checked with real onnxruntime.

Run: .venv/bin/pytest tests/test_export.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from wam_ros.export.fp16 import to_fp16
from wam_ros.export.onnx_export import ExportConfig, ExportError, export_model, sample_inputs
from wam_ros.export.tensorrt import TensorRTUnavailable, build_engine, tensorrt_unavailable_reason
from wam_ros.model import WamConfig, WorldActionModel, load_checkpoint, save_checkpoint
from wam_ros.runtime.backends import cuda_device_count
from wam_ros.runtime.model_dir import REQUIRED, read_metadata

FILES = ("wam_full.onnx", "wam_action.onnx", "wam_full_fp16.onnx", "wam_action_fp16.onnx")


def make_checkpoint(path: Path, seed: int = 0) -> Path:
    """A tiny model with a fitted (non-trivial) normaliser and non-zero frame head, so every output is exercised."""
    torch.manual_seed(seed)
    model = WorldActionModel(WamConfig.preset("tiny"))
    J, N = model.cfg.num_joints, model.cfg.chunk
    model.set_normalizer(
        torch.linspace(-1, 1, J), torch.full((J,), 0.3), torch.randn(N, J) * 0.01, torch.full((N, J), 0.05)
    )
    with torch.no_grad():
        model.frame_out.weight.normal_(0, 0.05)
    return save_checkpoint(path, model, extra={"camera": {"name": "front", "encoding": "rgb8"}})


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export")
    ckpt = make_checkpoint(root / "ckpt" / "model.pt")
    out = root / "model"
    export_model(ckpt, out)
    return out


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_export_writes_single_file_graphs_with_named_io_and_readable_ir(exported):
    assert sorted(p.name for p in exported.iterdir()) == sorted(
        [*FILES, "model.pt", "export.json", "manifest.json"]
    )
    assert not list(exported.glob("*.data")), "small models must not use external data"
    for name in FILES:
        m = onnx.load(str(exported / name))
        onnx.checker.check_model(m)
        assert m.ir_version <= 10, f"{name}: IR {m.ir_version} too new for onnxruntime"
        assert [i.name for i in m.graph.input] == ["frames", "joint_pos", "tokens"]
        outs = [o.name for o in m.graph.output]
        assert outs == (["action", "next_frame"] if "full" in name else ["action"])
        types = {i.name: i.type.tensor_type.elem_type for i in [*m.graph.input, *m.graph.output]}
        assert types["frames"] == onnx.TensorProto.UINT8 and types["tokens"] == onnx.TensorProto.INT64
        assert types["joint_pos"] == types["action"] == onnx.TensorProto.FLOAT  # fp16 graphs keep fp32 I/O
        for vi in [*m.graph.input, *m.graph.output]:
            assert vi.type.tensor_type.shape.dim[0].dim_param == "batch", (
                f"{name}:{vi.name} batch dim is fixed"
            )


def test_metadata_carries_everything_needed(exported):
    cfg = load_checkpoint(exported / "model.pt").cfg
    for name in FILES:
        props = {p.key: p.value for p in onnx.load(str(exported / name)).metadata_props}
        assert set(REQUIRED) <= set(props)
        spec, meta = read_metadata(exported / name)
        assert spec.joint_names == cfg.joint_names and spec.image_size == (cfg.image_size, cfg.image_size)
        assert (spec.k_frames, spec.chunk, spec.control_hz) == (cfg.k_frames, cfg.chunk, cfg.control_hz)
        assert spec.camera_encoding == "rgb8" and spec.extra["camera"]["name"] == "front"
        assert meta["config"]["vocab"] == cfg.vocab
        assert meta["precision"] == ("fp16" if "fp16" in name else "fp32")
        assert meta["graph"] == spec.graph == ("full" if "full" in name else "action")
        assert np.allclose(meta["normaliser"]["joint_std"], 0.3)
        assert meta["source"]["sha256"] and "parity" in meta["source"]


@pytest.mark.parametrize("batch", [1, 4])
def test_parity_torch_vs_onnxruntime_per_output(exported, batch):
    model = load_checkpoint(exported / "model.pt")
    inputs = sample_inputs(model, batch, seed=123)  # other inputs than the export-time check
    feeds = dict(zip(("frames", "joint_pos", "tokens"), (t.numpy() for t in inputs), strict=True))
    with torch.inference_mode():
        ref_action, ref_frame = (t.numpy() for t in model(*inputs))
    for name, atol in (
        ("wam_full.onnx", 1e-4),
        ("wam_full_fp16.onnx", 1e-2),
        ("wam_action.onnx", 1e-4),
        ("wam_action_fp16.onnx", 1e-2),
    ):
        outs = _session(exported / name).run(None, feeds)
        assert outs[0].shape == ref_action.shape and outs[0].dtype == np.float32
        assert np.abs(outs[0] - ref_action).max() <= atol, name
        if "full" in name:
            assert outs[1].shape == ref_frame.shape
            assert np.abs(outs[1] - ref_frame).max() <= atol, name
    # fp16 is really fp16 inside (not a renamed fp32 copy): weights differ from fp32 and are smaller
    assert (exported / "wam_full_fp16.onnx").stat().st_size < 0.8 * (
        exported / "wam_full.onnx"
    ).stat().st_size
    report = json.loads((exported / "export.json").read_text())
    assert report["files"]["wam_full.onnx"]["batches_checked"] == [1, 4]


def test_fp16_conversion_keeps_io_and_halves_weights(exported):
    m32 = onnx.load(str(exported / "wam_full.onnx"))
    m16 = to_fp16(m32)
    assert all(i.data_type != onnx.TensorProto.FLOAT for i in m16.graph.initializer)
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in m16.graph.initializer)
    assert [(i.name, i.type.tensor_type.elem_type) for i in m16.graph.input] == [
        (i.name, i.type.tensor_type.elem_type) for i in m32.graph.input
    ]
    assert [o.type.tensor_type.elem_type for o in m16.graph.output] == [onnx.TensorProto.FLOAT] * 2


def test_reexport_removes_stale_engines(tmp_path):
    ckpt = make_checkpoint(tmp_path / "model.pt", seed=4)
    out = tmp_path / "out"
    out.mkdir()
    for name in ("wam_action_fp16.engine", "wam_action_fp16.engine.json", "wam_full_fp16.engine"):
        (out / name).write_bytes(b"old engine")
    report = export_model(ckpt, out, ExportConfig(graphs=("action",), fp16=False))
    assert sorted(report["removed_stale"]) == ["wam_action_fp16.engine", "wam_action_fp16.engine.json"]
    assert (out / "wam_full_fp16.engine").exists(), "graphs not re-exported keep their engines"


def test_parity_failure_writes_nothing(tmp_path):
    ckpt = make_checkpoint(tmp_path / "model.pt", seed=1)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=r"exceeds 1e-12"):
        export_model(ckpt, out, ExportConfig(atol_fp32=1e-12, graphs=("action",), fp16=False))
    assert not list(out.glob("*.onnx")) and not list(out.glob(".*tmp*"))


def test_export_config_validation_names_bad_value():
    with pytest.raises(ValueError, match="opset"):
        ExportConfig(opset=7)
    with pytest.raises(ValueError, match="graphs"):
        ExportConfig(graphs=("frame",))


def test_wam_export_cli_and_bad_checkpoints(tmp_path):
    ckpt = make_checkpoint(tmp_path / "ckpt.pt", seed=2)
    run = [sys.executable, "-m", "wam_ros.cli", "export"]
    ok = subprocess.run(
        [*run, str(ckpt), "--out", str(tmp_path / "m"), "--graphs", "action", "--no-fp16"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert "wam_action.onnx" in ok.stdout and "max|torch-ort|" in ok.stdout
    assert sorted(p.name for p in (tmp_path / "m").glob("*.onnx")) == ["wam_action.onnx"]
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    bad = subprocess.run(
        [*run, str(truncated), "--out", str(tmp_path / "bad")], capture_output=True, text=True
    )
    assert bad.returncode == 1 and "corrupt" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad").exists() or not list((tmp_path / "bad").glob("*.onnx"))


def test_tensorrt_needs_a_gpu_clear_error(exported, tmp_path):
    reason = tensorrt_unavailable_reason()
    if cuda_device_count() == 0:
        assert reason is not None and "NVIDIA GPU" in reason
        with pytest.raises(TensorRTUnavailable, match="NVIDIA GPU"):
            build_engine(exported / "wam_full_fp16.onnx", tmp_path / "x.engine")
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "wam_ros.cli",
                "export",
                str(exported / "model.pt"),
                "--out",
                str(tmp_path / "trt"),
                "--tensorrt",
            ],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 2 and "cannot build TensorRT engines here" in out.stderr
        assert "Traceback" not in out.stderr and not (tmp_path / "trt").exists()
    else:  # on a GPU machine the only acceptable reason is a missing tensorrt package
        assert reason is None or "tensorrt" in reason
    # a graph without wam_ros metadata is refused before any GPU work, on every machine
    bare = onnx.load(str(exported / "wam_action.onnx"))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(ValueError, match="no wam_ros metadata"):
        build_engine(tmp_path / "bare.onnx", tmp_path / "bare.engine")
