"""The planner's backends (wam_ros.runtime.plan_backends): torch and onnxruntime agree on real PyBullet observations,
files are verified before loading, and a model that cannot plan or a bad input is refused with a clear error.

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
from wam_ros.runtime.model_dir import CHECKPOINT, IntegrityError, planner_onnx_name
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
    for horizon in (9, -1, True, 2.5):
        with pytest.raises(ValueError, match=r"horizon must be an int in 0\.\.8"):
            be.score(context, tokens, q, chunks, horizon=horizon)
    critic, joints = be.score(context, tokens, q, chunks, horizon=0)  # still fine after all that
    assert np.all(np.isfinite(critic)) and joints.shape == (4, 8)
