"""The planner graphs (issue 16): `wam export` of an imagining model writes propose, imagine and frame, fp32 + fp16,
checked against torch with real onnxruntime (batch 1 and 16; the frame graph at batch 1 and 4 and horizons 0, 1, N),
with the wam.* metadata and manifest entries.

Run: .venv/bin/pytest tests/test_planner_export.py
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

from wam_ros.export.onnx_export import ExportConfig, ExportError, export_model
from wam_ros.export.planner_onnx import sample_plan_inputs, stage_planner_graphs
from wam_ros.fileio import sha256_file
from wam_ros.model import WamConfig, WorldActionModel, load_checkpoint, save_checkpoint
from wam_ros.runtime.model_dir import (
    PLANNER_GRAPHS,
    PLANNER_INPUTS,
    PLANNER_OUTPUTS,
    PolicySpec,
    onnx_name,
    planner_onnx_name,
    read_manifest,
    read_metadata,
)

PLANNER_FILES = [planner_onnx_name(g, p) for g in ("propose", "imagine", "frame") for p in ("fp32", "fp16")]
PANDA_HOME = [0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785, 0.04]  # the Panda's ready pose (rad; gripper m)


def make_imagine_checkpoint(path: Path, seed: int = 0, preset: str = "tiny_imagine", **overrides) -> Path:
    """A tiny imagining model with a plausible Panda normaliser and weights moved off their initialisation, so the
    modes, their probabilities and the critic all differ between inputs."""
    torch.manual_seed(seed)
    model = WorldActionModel(WamConfig.preset(preset, **overrides))
    J, N = model.cfg.num_joints, model.cfg.chunk
    std = torch.tensor([0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.01])
    steps = torch.arange(1, N + 1, dtype=torch.float32)[:, None]
    model.set_normalizer(torch.tensor(PANDA_HOME), std, torch.zeros(N, J), 0.02 * steps * std / 0.3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return save_checkpoint(path, model, extra={"camera": {"name": "front", "encoding": "rgb8"}})


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("plan_export")
    out = root / "model"
    export_model(make_imagine_checkpoint(root / "ckpt" / "model.pt"), out)
    return out


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _graph_of(name: str) -> str:
    return next(g for g in ("propose", "imagine", "frame") if f"_{g}" in name)


def test_export_writes_the_planner_graphs_with_named_io_and_dynamic_batch(exported):
    for name in PLANNER_FILES:
        assert (exported / name).is_file(), name
        m = onnx.load(str(exported / name))
        onnx.checker.check_model(m)
        assert m.ir_version <= 10, f"{name}: IR {m.ir_version} too new for onnxruntime"
        graph = _graph_of(name)
        assert tuple(i.name for i in m.graph.input) == PLANNER_INPUTS[graph]
        assert tuple(o.name for o in m.graph.output) == PLANNER_OUTPUTS[graph]
        types = {v.name: v.type.tensor_type.elem_type for v in [*m.graph.input, *m.graph.output]}
        assert all(types[o] == onnx.TensorProto.FLOAT for o in PLANNER_OUTPUTS[graph]), (
            "fp32 outputs in fp16 too"
        )
        if graph in ("propose", "frame"):
            assert types["frames"] == onnx.TensorProto.UINT8 and types["tokens"] == onnx.TensorProto.INT64
        if graph == "frame":
            assert types["horizon"] == onnx.TensorProto.INT64 and types["chunks"] == onnx.TensorProto.FLOAT
        if graph == "imagine":
            assert types["horizon"] == types["tokens"] == onnx.TensorProto.INT64
            assert types["context"] == types["chunks"] == onnx.TensorProto.FLOAT
        for vi in [*m.graph.input, *m.graph.output]:
            assert vi.type.tensor_type.shape.dim[0].dim_param == "batch", (
                f"{name}:{vi.name} batch dim is fixed"
            )
    # the policy's graphs are all still there, under their own names
    for graph in ("full", "action"):
        assert (exported / onnx_name(graph)).is_file() and (exported / onnx_name(graph, "fp16")).is_file()
    # fp16 is really fp16 inside: no float32 initializer left and a smaller file
    m16 = onnx.load(str(exported / planner_onnx_name("imagine", "fp16")))
    assert all(i.data_type != onnx.TensorProto.FLOAT for i in m16.graph.initializer)
    for graph in ("propose", "imagine", "frame"):
        small, big = (exported / planner_onnx_name(graph, p) for p in ("fp16", "fp32"))
        assert small.stat().st_size < 0.8 * big.stat().st_size


def test_metadata_and_manifest(exported):
    model = load_checkpoint(exported / "model.pt")
    files = read_manifest(exported)
    for name in PLANNER_FILES:
        spec, meta = read_metadata(exported / name)
        graph = _graph_of(name)
        assert meta["graph"] == spec.graph == graph
        assert meta["precision"] == ("fp16" if "fp16" in name else "fp32")
        assert meta["config"]["imagine"] is True and meta["config"]["vocab"] == model.cfg.vocab
        assert spec.joint_names == model.cfg.joint_names and spec.extra["camera"]["name"] == "front"
        planner = spec.extra["planner"]
        assert planner["modes"] == model.cfg.modes == 3 and planner["horizon_max"] == model.cfg.chunk
        assert planner["context_tokens"] == model.grid**2 + 1 + model.cfg.max_tokens
        assert planner["critic_outputs"] == ["success_logit", "steps_to_go", "goal_distance"]
        assert meta["source"]["sha256"] == sha256_file(exported / "model.pt")
        also = {"imagine": ("critic_chained", "joints_chained"), "frame": ("frame_h1",)}.get(graph, ())
        assert set(meta["source"]["parity"]["max_err"]) == set(PLANNER_OUTPUTS[graph] + also)
        # the manifest records each file's real hash and size
        assert files[name] == {
            "sha256": sha256_file(exported / name),
            "bytes": (exported / name).stat().st_size,
        }
    report = json.loads((exported / "export.json").read_text())
    for name in PLANNER_FILES:
        entry = report["files"][name]
        assert {1, 16} <= set(entry["batches_checked"])
        assert all(v <= entry["atol"] for v in entry["max_err"].values())
        assert entry["atol"] == (1e-2 if "fp16" in name else 1e-4)


def test_a_planner_spec_is_never_mistaken_for_a_policy_graph(exported):
    from wam_ros.runtime import load_policy

    with pytest.raises(ValueError, match="is the 'propose' graph, but graph='full'"):
        load_policy(exported / planner_onnx_name("propose"), graph="full")
    with pytest.raises(ValueError, match="is not a WAM graph"):
        load_policy(exported / planner_onnx_name("imagine"))
    with pytest.raises(ValueError, match="PolicySpec.graph"):
        PolicySpec.from_config(load_checkpoint(exported / "model.pt").cfg.to_dict(), graph="dream")
    with pytest.raises(ValueError, match="planner graph must be one of"):
        planner_onnx_name("full")
    with pytest.raises(ValueError, match="graph must be one of"):
        onnx_name("propose")


# per-output rules of wam_ros/export/planner_onnx.py: joint positions and probabilities absolute, the critic (an
# unbounded logit + O(1) units) and the context (LayerNorm scale) relative to max(1, |torch|)
def _checked(name: str, got: np.ndarray, ref: np.ndarray) -> float:
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    if name in ("critic", "context"):
        diff = diff / np.maximum(1.0, np.abs(ref))
    return float(diff.max())


@pytest.mark.parametrize("batch", [1, 16])
@pytest.mark.parametrize("precision,atol", [("fp32", 1e-4), ("fp16", 1e-2)])
def test_parity_torch_vs_onnxruntime(exported, batch, precision, atol):
    model = load_checkpoint(exported / "model.pt")
    x = sample_plan_inputs(model, batch, seed=321)  # other inputs than the export-time check
    feeds = {k: v.numpy() for k, v in x.items()}
    sp = _session(exported / planner_onnx_name("propose", precision))
    si = _session(exported / planner_onnx_name("imagine", precision))
    prop = sp.run(None, {k: feeds[k] for k in PLANNER_INPUTS["propose"]})
    with torch.inference_mode():
        ref = [t.numpy() for t in model.context(x["frames"], x["joint_pos"], x["tokens"])]
    M, N, J = model.cfg.modes, model.cfg.chunk, model.cfg.num_joints
    assert [p.shape for p in prop] == [(batch, M, N, J), (batch, M), ref[2].shape]
    for name, got, r in zip(PLANNER_OUTPUTS["propose"], prop, ref, strict=True):
        assert _checked(name, got, r) <= atol, (precision, batch, name)
    assert np.allclose(prop[1].sum(1), 1.0, atol=1e-3) and np.ptp(prop[0], axis=1).max() > 1e-3, (
        "modes differ"
    )
    for h in (0, 1, N // 2, N):  # the horizon is an input, not a constant frozen at export
        hz = np.full(batch, h, np.int64)
        for ctx in (feeds["context"], prop[2]):  # torch's context, and the chained one the planner runs
            got = si.run(
                None, {**{k: feeds[k] for k in PLANNER_INPUTS["imagine"]}, "context": ctx, "horizon": hz}
            )
            with torch.inference_mode():
                want = model.imagine_score(x["context"], x["tokens"], x["joint_pos"], x["chunks"], horizon=h)
            assert [g.shape for g in got] == [(batch, 3), (batch, J)]
            for name, g, w in zip(PLANNER_OUTPUTS["imagine"], got, want, strict=True):
                assert _checked(name, g, w.numpy()) <= atol, (precision, batch, h, name)
    # the horizon changes what is imagined (the check above would pass for a graph that ignored it otherwise)
    far = si.run(None, {k: feeds[k] for k in PLANNER_INPUTS["imagine"]} | {"horizon": np.full(batch, N)})
    near = si.run(
        None, {k: feeds[k] for k in PLANNER_INPUTS["imagine"]} | {"horizon": np.zeros(batch, np.int64)}
    )
    assert np.abs(far[0] - near[0]).max() > 1e-4


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("precision,atol", [("fp32", 1e-4), ("fp16", 1e-2)])
def test_frame_graph_parity_at_horizons_0_1_n(exported, batch, precision, atol):
    """The frame graph against WorldActionModel.imagine_frame, pixel for pixel (the policy's next_frame bar: max
    |ort - torch| <= atol on [0, 1])."""
    model = load_checkpoint(exported / "model.pt")
    x = sample_plan_inputs(model, batch, seed=654)  # other inputs than the export-time check
    feeds = {k: x[k].numpy() for k in PLANNER_INPUTS["frame"] if k != "horizon"}
    sess = _session(exported / planner_onnx_name("frame", precision))
    N, S = model.cfg.chunk, model.cfg.image_size
    frames = {}
    mixed = np.arange(batch, dtype=np.int64) % (N + 1)  # one horizon per row, 0, 1, 2, ...
    for key, hz in [(h, np.full(batch, h, np.int64)) for h in (0, 1, N)] + [("mixed", mixed)]:
        (got,) = sess.run(None, feeds | {"horizon": hz})
        with torch.inference_mode():
            want = model.imagine_frame(
                x["frames"], x["joint_pos"], x["tokens"], x["chunks"], torch.from_numpy(hz)
            ).numpy()
        assert got.shape == (batch, 3, S, S) and got.dtype == np.float32
        assert got.min() >= 0.0 and got.max() <= 1.0
        err = float(np.abs(got.astype(np.float64) - want).max())
        assert err <= atol, (precision, batch, key, err)
        frames[key] = got
    # the horizon is an input, not a constant frozen at export: each one imagines another picture
    assert np.abs(frames[0] - frames[N]).max() > 1e-3 and np.abs(frames[0] - frames[1]).max() > 1e-3
    # rows do not mix: in the mixed batch, row 0 is at horizon 0 and row 1 at 1, as in the uniform batches
    for i in range(min(batch, 2)):
        assert np.abs(frames["mixed"][i] - frames[i][i]).max() <= 1e-3


def test_frame_graph_at_h1_of_the_policy_chunk_is_the_policy_next_frame(exported):
    """Two graphs exported separately meet: the policy's full graph imagines its own chunk at h=1 (forward of an
    imagining model); the frame graph fed that chunk at h=1 must draw the same picture."""
    model = load_checkpoint(exported / "model.pt")
    x = sample_plan_inputs(model, 3, seed=77)
    obs = {k: x[k].numpy() for k in ("frames", "joint_pos", "tokens")}
    action, next_frame = _session(exported / onnx_name("full")).run(None, obs)
    (frame,) = _session(exported / planner_onnx_name("frame")).run(
        None, obs | {"chunks": action, "horizon": np.ones(3, np.int64)}
    )
    assert np.abs(frame - next_frame).max() <= 1e-4


def test_parity_failure_writes_no_graph(tmp_path):
    """The planner graphs are checked after the policy's (which pass here): nothing is left behind."""
    model = load_checkpoint(make_imagine_checkpoint(tmp_path / "model.pt", seed=1))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(
        ExportError, match=r"wam_plan_propose_fp16\.onnx: onnxruntime differs from torch beyond 1e-09"
    ):
        stage_planner_graphs(model, out, ExportConfig(atol_fp16=1e-9), {}, {"files": {}})
    assert not list(out.iterdir()), "a failed check leaves no file, not even the fp32 graphs that passed"


def test_a_model_that_does_not_imagine_gets_no_planner_graphs_and_loses_stale_ones(tmp_path):
    from test_export import make_checkpoint

    out = tmp_path / "out"
    export_model(make_imagine_checkpoint(tmp_path / "imagine.pt", seed=2), out, ExportConfig(fp16=False))
    assert (out / planner_onnx_name("propose")).is_file()
    report = export_model(make_checkpoint(tmp_path / "plain.pt", seed=2), out, ExportConfig(fp16=False))
    assert sorted(report["removed_stale"]) == sorted(planner_onnx_name(g) for g in PLANNER_GRAPHS)
    assert len(report["removed_stale"]) == 3, "propose, imagine and frame"
    assert not list(out.glob("wam_plan_*")) and not any(n.startswith("wam_plan_") for n in read_manifest(out))


def test_a_single_mode_imagining_model_exports(tmp_path):
    """modes=1: the propose graph's probabilities are a constant 1 of the dynamic batch, not of the traced one."""
    out = tmp_path / "out"
    ckpt = make_imagine_checkpoint(tmp_path / "m1.pt", seed=3, modes=1)
    export_model(ckpt, out, ExportConfig(graphs=("action",), fp16=False))
    model = load_checkpoint(ckpt)
    x = sample_plan_inputs(model, 5, seed=9)
    probs = _session(out / planner_onnx_name("propose")).run(
        ["probs"], {k: x[k].numpy() for k in PLANNER_INPUTS["propose"]}
    )[0]
    assert probs.shape == (5, 1) and np.all(probs == 1.0)


def test_wam_export_cli_writes_the_planner_graphs(tmp_path):
    ckpt = make_imagine_checkpoint(tmp_path / "ckpt.pt", seed=4)
    out = tmp_path / "m"
    run = subprocess.run(
        [sys.executable, "-m", "wam_ros.cli", "export", str(ckpt), "--out", str(out), "--graphs", "action"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    for name in PLANNER_FILES:
        assert (out / name).is_file() and name in run.stdout, name
        assert name in read_manifest(out)
    assert "critic_chained" in run.stdout


def test_no_plan_fp16_keeps_the_policy_fp16_graphs_and_drops_the_planner_ones(tmp_path):
    """`wam export --no-plan-fp16`: the policy graphs in fp32 and fp16, the planner graphs in fp32 only; fp16 planner
    graphs of an earlier export are removed (they would run other weights), and the manifest lists what is there."""
    out = tmp_path / "out"
    ckpt = make_imagine_checkpoint(tmp_path / "m.pt", seed=4)
    export_model(ckpt, out, ExportConfig(graphs=("action",)))
    assert (out / planner_onnx_name("propose", "fp16")).is_file()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "wam_ros.cli",
            "export",
            str(ckpt),
            "--out",
            str(out),
            "--graphs",
            "action",
            "--no-plan-fp16",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    names = set(read_manifest(out))
    assert {onnx_name("action"), onnx_name("action", "fp16")} <= names
    assert {planner_onnx_name(g) for g in PLANNER_GRAPHS} <= names
    assert not list(out.glob("wam_plan_*_fp16.onnx"))
    assert not any(n.startswith("wam_plan_") and "fp16" in n for n in names)
