"""The chunk-following policy (wam_ros.runtime.chunk_policy.ChunkPolicy) on a real exported model, real onnxruntime
and real torch: replanning, history, reset, instruction changes, preprocessing once per frame, and agreement with
Policy.predict() (the API it replaces in closed-loop eval, DAgger and wam_node)."""

from __future__ import annotations

import numpy as np
import pytest
from test_export import make_checkpoint

from wam_ros.export.onnx_export import export_model
from wam_ros.robot import RobotProfile
from wam_ros.runtime import load_policy
from wam_ros.runtime.chunk_policy import ChunkPolicy
from wam_ros.runtime.safety import SafetyFilter, SafetyLimits


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("chunk_policy")
    export_model(make_checkpoint(root / "ckpt.pt", seed=4), root / "model")
    return root / "model"


def _count_calls(policy):
    calls = []
    run = policy.backend.run
    policy.backend.run = lambda f, q, t: calls.append(f.copy()) or run(f, q, t)
    return calls


def _frames(rng, n, size=(64, 64)):
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_replans_every_n_steps_with_k_frames(model_dir, backend):
    policy = load_policy(model_dir, backend=backend, threads=1)
    calls = _count_calls(policy)
    runner = ChunkPolicy(policy, replan=3, instruction="reach the red target")
    obs = {"image": np.zeros((64, 64, 3), np.uint8), "joint_pos": np.zeros(8, np.float32)}
    actions = [runner.select_action(obs) for _ in range(7)]
    assert len(calls) == 3 and calls[0].shape[1] == policy.spec.k_frames
    assert all(a.shape == (8,) and np.isfinite(a).all() for a in actions)


def test_same_actions_as_predict_on_the_same_history(model_dir):
    """ChunkPolicy keeps its own preprocessed history; what it feeds the network equals predict()'s stacking."""
    policy = load_policy(model_dir, backend="onnxruntime", threads=1)
    rng = np.random.default_rng(0)
    frames = _frames(rng, 4, size=(120, 160))  # camera size: resized once on arrival
    q = rng.normal(0, 0.3, 8)
    runner = ChunkPolicy(policy, replan=1, instruction="push the cube onto the green pad")
    k = policy.spec.k_frames
    for i, frame in enumerate(frames):
        runner.observe(frame)
        plan = runner.plan(q)
        history = frames[max(0, i - k + 1) : i + 1]
        want = policy.predict({"images": history, "joint_pos": q, "instruction": runner.instruction})
        np.testing.assert_allclose(plan.action, want["action"], atol=1e-6)
        assert np.array_equal(plan.next_frame, want["next_frame"])


def test_reset_and_instruction_change_start_a_fresh_history(model_dir):
    policy = load_policy(model_dir, backend="onnxruntime", threads=1)
    calls = _count_calls(policy)
    rng = np.random.default_rng(1)
    a, b, c = _frames(rng, 3)
    runner = ChunkPolicy(policy, replan=4, instruction="reach the red target")
    runner.select_action({"image": a, "joint_pos": np.zeros(8)})
    runner.select_action({"image": b, "joint_pos": np.zeros(8)})
    assert runner.steps_left == 2 and len(calls) == 1
    assert runner.set_instruction("reach the red target") is False  # same text: nothing forgotten
    assert runner.set_instruction("reach the blue target") is True
    assert runner.steps_left == 0 and runner.frames_seen == 0
    runner.select_action({"image": c, "joint_pos": np.zeros(8)})
    assert len(calls) == 2 and all(np.array_equal(f, c.transpose(2, 0, 1)) for f in calls[1][0])
    runner.reset()
    assert runner.steps_left == 0 and runner.last_plan is None
    with pytest.raises(ValueError, match="non-empty string"):
        runner.set_instruction("   ")


def test_errors_before_inputs_and_on_bad_joints(model_dir):
    policy = load_policy(model_dir, backend="onnxruntime", threads=1)
    runner = ChunkPolicy(policy, instruction="reach the red target")
    with pytest.raises(ValueError, match="observe"):
        runner.plan(np.zeros(8))
    runner.observe(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="finite"):
        runner.plan(np.full(8, 1e300))  # finite in float64, inf in float32: refused, not run
    with pytest.raises(ValueError, match=r"shape \(8,\)"):
        runner.plan(np.zeros(7))
    with pytest.raises(IndexError):
        runner.next_action()
    with pytest.raises(ValueError, match="replan"):
        ChunkPolicy(policy, replan=0)


def test_safety_filter_shapes_the_queued_chunk(model_dir):
    policy = load_policy(model_dir, backend="onnxruntime", threads=1)
    profile = RobotProfile.load("panda")
    safety = SafetyFilter(SafetyLimits.from_profile(profile, policy.spec.joint_names), dt=0.1)
    runner = ChunkPolicy(policy, replan=8, instruction="reach the red target", safety=safety)
    runner.observe(np.zeros((64, 64, 3), np.uint8))
    q = np.asarray(profile.home)
    plan = runner.plan(q)
    step = np.asarray(profile.velocity_limit) * 0.1
    assert np.all(np.abs(plan.chunk[0] - q) <= step + 1e-12)
    assert np.all(np.abs(np.diff(plan.chunk, axis=0)) <= step + 1e-12)
    assert plan.safe is not None
    np.testing.assert_array_equal(runner.next_action(), plan.chunk[0])


@pytest.mark.parametrize(
    ("encoding", "channels"), [("rgb8", 3), ("bgr8", 3), ("rgba8", 4), ("bgra8", 4), ("mono8", 0)]
)
def test_prepare_image_resizes_before_converting_with_identical_pixels(encoding, channels):
    from wam_ros.runtime import preprocess as pp

    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (480, 640, channels) if channels else (480, 640), dtype=np.uint8)
    want = pp.resize(pp.to_rgb(img, encoding), (64, 64))
    assert np.array_equal(pp.prepare_image(img, encoding, (64, 64)), want)
    with pytest.raises(ValueError, match="rgb8 image must have shape"):
        pp.prepare_image(img[:, :, :2] if channels else img[:, :, None].repeat(2, 2), "rgb8", (64, 64))


def test_predict_resizes_a_stream_frame_once_and_never_reuses_a_refilled_buffer(model_dir):
    policy = load_policy(model_dir, backend="onnxruntime", threads=1)
    rng = np.random.default_rng(5)
    a, b, c = _frames(rng, 3, size=(240, 320))
    obs = {"joint_pos": np.zeros(8), "instruction": "reach the red target"}
    policy.predict({**obs, "images": [a, b]})
    cached = policy._resized(b)
    assert policy._resized(b) is cached  # the same array again: not resized again
    policy.predict({**obs, "images": [b, c]})
    b[:] = rng.integers(0, 256, b.shape, dtype=np.uint8)  # a driver refilling its buffer in place
    assert policy._resized(b) is not cached
    fresh = policy.predict({**obs, "images": [b.copy(), c.copy()]})
    again = policy.predict({**obs, "images": [b, c]})
    np.testing.assert_allclose(again["action"], fresh["action"], atol=1e-6)
    assert np.array_equal(again["next_frame"], fresh["next_frame"])
