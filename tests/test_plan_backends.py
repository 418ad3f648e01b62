"""The planner's backends (wam_ros.runtime.plan_backends): torch and onnxruntime agree on real PyBullet observations
(propose, score and imagine_frame), files are verified before loading, a directory exported before the frame graph
still opens (has_frame_graph False), and a model that cannot plan or a bad input is refused with a clear error.

Run: .venv/bin/pytest tests/test_plan_backends.py
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from test_export import make_checkpoint
from test_integrity import _flip_inside_weights
from test_planner_export import make_imagine_checkpoint

from wam_ros.export.onnx_export import ExportConfig, export_model
from wam_ros.model import WamConfig, WorldActionModel
from wam_ros.runtime import load_policy
from wam_ros.runtime.model_dir import (
    CHECKPOINT,
    IntegrityError,
    add_to_manifest,
    planner_onnx_name,
    read_manifest,
    write_manifest,
)
from wam_ros.runtime.plan_backends import (
    NotImaginingError,
    OrtPlanBackend,
    PlanBackend,
    TorchPlanBackend,
    open_plan_backend,
)
from wam_ros.sim.tabletop import TabletopEnv

CANDIDATES = 16


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("plan_backends")
    export_model(make_imagine_checkpoint(root / "ckpt.pt", seed=7), root / "model")
    return root / "model"


@pytest.fixture(scope="module")
def observation(exported):
    """(frames (1,K,3,H,W), joint_pos (1,J), tokens (1,L)) from a real PyBullet push scene, prepared by the policy
    runtime exactly as a robot's camera frames and joint states are."""
    env = TabletopEnv(task="push", image_size=64)
    try:
        obs, _ = env.reset(seed=11)
        first = obs["image"]
        obs, *_ = env.step(obs["joint_pos"] + np.array([0.05, 0.03, 0, -0.04, 0, 0.02, 0, 0], np.float32))
        instruction = env.instruction
    finally:
        env.close()
    policy = load_policy(exported, backend="onnxruntime")
    return policy.prepare(
        {"images": [first, obs["image"]], "joint_pos": obs["joint_pos"], "instruction": instruction}
    )


def _candidates(proposals: np.ndarray, n: int = CANDIDATES, seed: int = 0) -> np.ndarray:
    """n chunks from the M modes with smooth perturbations (what a best-of-N planner draws)."""
    rng = np.random.default_rng(seed)
    M, N, J = proposals.shape[1:]
    out = proposals[0, np.arange(n) % M].astype(np.float64)
    out += rng.normal(0, 0.05, (n, 1, J)) * (np.arange(1, N + 1) / N)[None, :, None]
    return out.astype(np.float32)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.abs(a - b) / np.maximum(1.0, np.abs(b))).max())


@pytest.mark.parametrize("precision,atol", [("fp32", 1e-4), ("fp16", 1e-2)])
def test_onnxruntime_matches_torch_on_a_sim_observation(exported, observation, precision, atol):
    frames, q, tokens = observation
    ort_be = open_plan_backend(exported, "onnxruntime", precision)
    torch_be = open_plan_backend(exported, "torch")
    assert (ort_be.name, ort_be.precision, torch_be.name, torch_be.precision) == (
        "onnxruntime",
        precision,
        "torch",
        "fp32",
    )
    got, want = ort_be.propose(frames, q, tokens), torch_be.propose(frames, q, tokens)
    M, N, J = torch_be.modes, torch_be.horizon_max, torch_be.spec.num_joints
    S, d = torch_be.planner["context_tokens"], torch_be.planner["d_model"]
    assert [a.shape for a in got] == [(1, M, N, J), (1, M), (1, S, d)]
    assert all(a.dtype == np.float32 for a in got)
    assert np.abs(got[0] - want[0]).max() <= atol and np.abs(got[1] - want[1]).max() <= atol
    assert _rel(got[2], want[2]) <= atol
    chunks = _candidates(want[0])
    for batch in (1, CANDIDATES):
        c = chunks[:batch]
        tiled = [np.repeat(a, batch, 0) for a in (want[2], tokens, q)]
        crit, joints = ort_be.score(*tiled, c)
        ref_crit, ref_joints = torch_be.score(*tiled, c)
        assert crit.shape == (batch, 3) and joints.shape == (batch, J)
        assert crit.dtype == joints.dtype == np.float32
        assert _rel(crit, ref_crit) <= atol and np.abs(joints - ref_joints).max() <= atol
        # batch-1 context/tokens/joints are shared by every chunk: the same numbers as the caller's tiling
        shared = ort_be.score(want[2], tokens, q, c)
        assert np.abs(shared[0] - crit).max() <= 1e-6 and np.abs(shared[1] - joints).max() <= 1e-6
    # chained, as a planner runs it: onnxruntime's own context, a shorter horizon too
    for h in (N, 3):
        crit, joints = ort_be.score(got[2], tokens, q, chunks, horizon=h)
        ref_crit, ref_joints = torch_be.score(want[2], tokens, q, chunks, horizon=h)
        assert _rel(crit, ref_crit) <= atol and np.abs(joints - ref_joints).max() <= atol
    assert np.ptp(ref_crit[:, 0]) > 1e-3, "candidates must be told apart by the critic"
    # a horizon per row (the planner's candidates at N plus its own chunk at 0): each row as if scored alone
    rows = np.array([N, 3, 0, N][: len(chunks)] + [N] * max(0, len(chunks) - 4), np.int64)
    for be, ctx in ((ort_be, got[2]), (torch_be, want[2])):
        mixed, mixed_joints = be.score(ctx, tokens, q, chunks, horizon=rows)
        for i, h in enumerate(rows):
            alone, alone_joints = be.score(ctx, tokens, q, chunks[i : i + 1], horizon=int(h))
            assert np.abs(mixed[i] - alone[0]).max() <= 1e-4 * (1 + np.abs(alone).max())
            assert np.abs(mixed_joints[i] - alone_joints[0]).max() <= 1e-4


@pytest.mark.parametrize("precision,atol", [("fp32", 1e-4), ("fp16", 1e-2)])
def test_imagine_frame_onnxruntime_matches_torch_on_a_sim_observation(exported, observation, precision, atol):
    """The chosen chunk's picture from the frame graph against the checkpoint's imagine_frame, at batch 1 (what the
    planner asks) and 4, horizons 0, 1 and N; pixels in [0, 1] within the policy's next_frame bar."""
    frames, q, tokens = observation
    ort_be = open_plan_backend(exported, "onnxruntime", precision)
    torch_be = open_plan_backend(exported, "torch")
    assert ort_be.has_frame_graph and torch_be.has_frame_graph
    proposals, _, _ = torch_be.propose(frames, q, tokens)
    chunks = _candidates(proposals, n=4, seed=3)
    N, (H, W) = torch_be.horizon_max, torch_be.spec.image_size
    pictures = {}
    for batch in (1, 4):
        obs = [np.repeat(a, batch, 0) for a in (frames, q, tokens)]
        for h in (0, 1, N):
            hz = np.full(batch, h, np.int64)
            got = ort_be.imagine_frame(*obs, chunks[:batch], hz)
            want = torch_be.imagine_frame(*obs, chunks[:batch], hz)
            assert got.shape == want.shape == (batch, 3, H, W) and got.dtype == want.dtype == np.float32
            assert got.min() >= 0.0 and got.max() <= 1.0
            assert np.abs(got - want).max() <= atol, (precision, batch, h)
            # an int horizon means that horizon for every row
            assert np.array_equal(ort_be.imagine_frame(*obs, chunks[:batch], h), got)
            pictures[batch, h] = want
    # different chunks and horizons are imagined apart (torch's pictures: float noise is ~1e-6; this small random model
    # moves pixels by ~5e-4 between modes); at h=0 nothing is executed yet, so every chunk draws the same picture
    assert np.abs(pictures[4, N][0] - pictures[4, N][1:]).max() > 1e-4
    assert np.abs(pictures[1, 0] - pictures[1, N]).max() > 1e-3
    assert np.abs(pictures[4, 0][0] - pictures[4, 0][1:]).max() <= 1e-5


def test_an_export_from_before_the_frame_graph_still_opens(exported, tmp_path):
    """A directory as `wam export` wrote it before the frame graph existed (propose + imagine, manifest without the
    frame files): it opens, plans, and says it has no frame graph; imagine_frame names the missing file."""
    d = shutil.copytree(exported, tmp_path / "old")
    for precision in ("fp32", "fp16"):
        (d / planner_onnx_name("frame", precision)).unlink()
    write_manifest(
        d
    )  # the manifest the old export wrote: every weight file present, none of the frame graphs
    assert not any("frame" in name for name in read_manifest(d))
    frames = np.zeros((1, 2, 3, 64, 64), np.uint8)
    q, tokens = np.zeros((1, 8), np.float32), np.zeros((1, 12), np.int64)
    for precision in ("fp32", "fp16"):
        be = open_plan_backend(d, "auto", precision)
        assert isinstance(be, OrtPlanBackend) and be.precision == precision and be.has_frame_graph is False
        proposals, _, context = be.propose(frames, q, tokens)
        critic, _ = be.score(context, tokens, q, proposals[0])
        assert critic.shape == (be.modes, 3)
        with pytest.raises(
            FileNotFoundError, match=rf"no {planner_onnx_name('frame', precision)}.*wam export"
        ):
            be.imagine_frame(frames, q, tokens, proposals[:, 0], 1)
    # only the fp16 frame graph missing: fp32 has it, fp16 not
    d2 = shutil.copytree(exported, tmp_path / "half")
    (d2 / planner_onnx_name("frame", "fp16")).unlink()
    assert open_plan_backend(d2, precision="fp32").has_frame_graph
    assert not open_plan_backend(d2, precision="fp16").has_frame_graph
    # and the torch backend always draws it
    assert open_plan_backend(d, "torch").has_frame_graph


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_damaged_frame_graph_is_refused(exported, tmp_path, precision):
    """Damaged, the frame graph stops the whole planner from opening (never a silent backend without it)."""
    d = shutil.copytree(exported, tmp_path / "m")
    _flip_inside_weights(d / planner_onnx_name("frame", precision))
    for backend in ("auto", "onnxruntime"):
        with pytest.raises(IntegrityError, match=rf"{planner_onnx_name('frame', precision)} does not match"):
            open_plan_backend(d, backend, precision)
    other = "fp16" if precision == "fp32" else "fp32"
    assert open_plan_backend(d, precision=other).has_frame_graph  # the intact precision still opens


def test_a_frame_graph_of_another_checkpoint_is_stale(exported, tmp_path):
    """A frame graph copied in from another export (listed in the manifest, so intact) would draw another model's
    picture: refused on onnxruntime, the checkpoint on auto, and OrtPlanBackend refuses the mix directly."""
    other = tmp_path / "other"
    export_model(make_imagine_checkpoint(tmp_path / "other.pt", seed=8), other, ExportConfig(fp16=False))
    d = shutil.copytree(exported, tmp_path / "m")
    shutil.copy(other / planner_onnx_name("frame"), d / planner_onnx_name("frame"))
    add_to_manifest(d, [d / planner_onnx_name("frame")])
    with pytest.raises(ValueError, match=r"wam_plan_frame\.onnx was exported from another checkpoint"):
        open_plan_backend(d, "onnxruntime")
    assert open_plan_backend(d).name == "torch", "auto runs the checkpoint rather than a stale frame graph"
    with pytest.raises(ValueError, match="exported from different checkpoints"):
        OrtPlanBackend(
            d / planner_onnx_name("propose"),
            d / planner_onnx_name("imagine"),
            frame_path=d / planner_onnx_name("frame"),
        )
    with pytest.raises(ValueError, match="expected the planner's 'frame' graph"):
        OrtPlanBackend(
            exported / planner_onnx_name("propose"),
            exported / planner_onnx_name("imagine"),
            frame_path=exported / planner_onnx_name("imagine"),
        )


def test_open_picks_onnxruntime_then_torch_and_satisfies_the_protocol(exported, tmp_path):
    auto = open_plan_backend(exported)
    assert (
        isinstance(auto, OrtPlanBackend)
        and auto.precision == "fp32"
        and "CPUExecutionProvider" in auto.providers
    )
    assert isinstance(open_plan_backend(exported / CHECKPOINT), TorchPlanBackend)
    for be in (auto, open_plan_backend(exported, "torch"), open_plan_backend(exported, precision="fp16")):
        assert isinstance(be, PlanBackend)  # the protocol's attributes and methods
        assert be.critic_outputs == ("success_logit", "steps_to_go", "goal_distance")
        assert be.planner["steps_scale"] == 50.0 and be.planner["dist_scale"] == 0.1
        assert be.config["imagine"] and be.spec.chunk == be.horizon_max == 8
    # the checkpoint alone (no graphs exported yet): auto runs torch; onnxruntime says how to make the graphs
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(exported / CHECKPOINT, bare / CHECKPOINT)
    assert open_plan_backend(bare).name == "torch"
    with pytest.raises(FileNotFoundError, match=r"no planner graphs.*wam export"):
        open_plan_backend(bare, "onnxruntime")
    with pytest.raises(FileNotFoundError, match="no planner graphs"):
        open_plan_backend(bare, precision="fp16")


@pytest.mark.parametrize("backend", ["auto", "onnxruntime"])
def test_a_damaged_planner_graph_is_refused(exported, tmp_path, backend):
    d = shutil.copytree(exported, tmp_path / "m")
    _flip_inside_weights(d / planner_onnx_name("imagine"))
    with pytest.raises(IntegrityError, match=r"wam_plan_imagine\.onnx does not match the sha256.*wam export"):
        open_plan_backend(d, backend)
    # the intact files still open: the fp16 graphs and the checkpoint
    assert open_plan_backend(d, precision="fp16").precision == "fp16"
    assert open_plan_backend(d, "torch").name == "torch"


def test_graphs_of_another_checkpoint_are_stale(exported, tmp_path):
    d = shutil.copytree(exported, tmp_path / "m")
    make_imagine_checkpoint(d / CHECKPOINT, seed=99)  # retrained in place (its own seal verifies)
    with pytest.raises(ValueError, match="exported from another checkpoint"):
        open_plan_backend(d, "onnxruntime")
    assert open_plan_backend(d).name == "torch", "auto runs the new checkpoint rather than old graphs"


def test_a_model_that_does_not_imagine_is_refused(tmp_path):
    plain = tmp_path / "plain"
    export_model(
        make_checkpoint(tmp_path / "plain.pt", seed=3), plain, ExportConfig(graphs=("action",), fp16=False)
    )
    for path, backend in (
        (plain, "auto"),
        (plain, "onnxruntime"),
        (plain, "torch"),
        (plain / CHECKPOINT, "auto"),
    ):
        with pytest.raises(NotImaginingError, match="not an imagining model.*small_imagine"):
            open_plan_backend(path, backend)
    with pytest.raises(NotImaginingError, match="imagine=False"):
        TorchPlanBackend(WorldActionModel(WamConfig.preset("tiny")))
    # a directory with only the policy's graphs (no checkpoint) is read from their metadata
    (plain / CHECKPOINT).unlink()
    with pytest.raises(NotImaginingError):
        open_plan_backend(plain)


def test_bad_arguments_are_clear_errors(exported, tmp_path):
    with pytest.raises(ValueError, match="backend must be one of"):
        open_plan_backend(exported, "tensorrt")
    with pytest.raises(ValueError, match="fp16.*onnxruntime only"):
        open_plan_backend(exported, "torch", "fp16")
    with pytest.raises(ValueError, match="threads"):
        open_plan_backend(exported, threads=0)
    with pytest.raises(ValueError, match="needs two graphs"):
        open_plan_backend(exported / planner_onnx_name("propose"))
    with pytest.raises(FileNotFoundError, match="not found"):
        open_plan_backend(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="holds no model"):
        open_plan_backend(tmp_path)
    with pytest.raises(ValueError, match="do not belong together"):
        OrtPlanBackend(
            exported / planner_onnx_name("propose"), exported / planner_onnx_name("imagine", "fp16")
        )
    with pytest.raises(ValueError, match="expected the planner's 'imagine' graph"):
        OrtPlanBackend(exported / planner_onnx_name("propose"), exported / planner_onnx_name("propose"))


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_bad_inputs_are_refused_with_what_was_expected(exported, observation, backend):
    be = open_plan_backend(exported, backend)
    frames, q, tokens = observation
    _, _, context = be.propose(frames, q, tokens)
    chunks = np.repeat(q[:, None, :], 8, 1).repeat(4, 0)  # (4, N, J): hold still
    bad_propose = [
        ((frames.astype(np.float32), q, tokens), r"frames must be uint8 \(B, 2, 3, 64, 64\)"),
        ((frames[:, :1], q, tokens), r"frames must be uint8"),
        ((frames, q.astype(np.float64), tokens), r"joint_pos must be float32"),
        ((frames, np.repeat(q, 2, 0), tokens), r"joint_pos must be float32 \(1, 8\), got batch 2"),
        ((frames, np.full_like(q, np.nan), tokens), "NaN or Inf"),
        ((frames, q, tokens + 10_000), r"token ids must be in \[0, "),
        (([[1]], q, tokens), "numpy array"),
    ]
    for args, match in bad_propose:
        with pytest.raises(ValueError, match=match):
            be.propose(*args)
    bad_score = [
        ((context, tokens, q, chunks[:, :5]), r"chunks must be float32 \(B, 8, 8\)"),
        ((np.repeat(context, 3, 0), tokens, q, chunks), "context has batch 3: expected 1 .shared. or 4"),
        ((context[:, :10], tokens, q, chunks), r"context must be float32 \(B, 77, 32\)"),
        ((context, tokens, q, chunks * np.inf), "chunks contains NaN or Inf"),
    ]
    for args, match in bad_score:
        with pytest.raises(ValueError, match=match):
            be.score(*args)
    for horizon in (
        9,
        -1,
        True,
        2.5,
        np.full(4, 9, np.int64),
        np.zeros(3, np.int64),
        np.zeros(4, np.int32),
    ):
        with pytest.raises(
            ValueError, match=r"horizon must be an int in 0\.\.8 \(actions\) or an int64 array \(4,\)"
        ):
            be.score(context, tokens, q, chunks, horizon=horizon)
    critic, joints = be.score(context, tokens, q, chunks, horizon=0)  # still fine after all that
    assert np.all(np.isfinite(critic)) and joints.shape == (4, 8)
    chunk = chunks[:1]
    one = np.ones(1, np.int64)
    bad_frame = [
        ((frames, q, tokens, chunk[:, :5], one), r"chunk must be float32 \(1, 8, 8\)"),
        ((frames, q, tokens, chunks, one), r"chunk must be float32 \(1, 8, 8\), got batch 4"),
        ((frames, q, tokens, chunk.astype(np.float64), one), r"chunk must be float32"),
        ((frames, q, tokens, chunk * np.nan, one), "chunk contains NaN or Inf"),
        ((frames.astype(np.float32), q, tokens, chunk, one), r"frames must be uint8"),
        ((frames, q, tokens + 10_000, chunk, one), r"token ids must be in \[0, "),
        ((frames, q, tokens, chunk, np.ones(2, np.int64)), r"horizon must be an int64 array \(B=1,\)"),
        ((frames, q, tokens, chunk, np.ones(1, np.int32)), r"horizon must be .*got int32 \(1,\)"),
        ((frames, q, tokens, chunk, np.full(1, 9, np.int64)), r"in 0\.\.8 .*got values \[9\]"),
        ((frames, q, tokens, chunk, -1), r"in 0\.\.8 .*got -1"),
        ((frames, q, tokens, chunk, True), r"horizon must be"),
        ((frames, q, tokens, chunk, 1.0), r"horizon must be"),
    ]
    for args, match in bad_frame:
        with pytest.raises(ValueError, match=match):
            be.imagine_frame(*args)
    frame = be.imagine_frame(frames, q, tokens, chunk, one)  # what the planner calls
    assert frame.shape == (1, 3, 64, 64) and np.all(np.isfinite(frame))
