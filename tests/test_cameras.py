"""Several cameras (issue 19 item 3), end to end on real components: a front + wrist model trained on real PyBullet
episodes, exported to ONNX and run by onnxruntime; the runtime refusing a missing camera; the sim's wrist camera
moving with the arm; sim_node publishing every profile camera and wam_node stepping only on fresh frames of both,
over real DDS."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from ros_fixtures import (  # noqa: F401 - the ros_context fixture
    SpinThread,
    ros_context_fixture,
    spin_until,
    wam_node_running,
)

from wam_ros.data.episode import EpisodeError, camera_frames, episode_path, write_episode
from wam_ros.data.windows import WindowArrays
from wam_ros.robot import RobotProfile

CAMERAS = ["front", "wrist"]
PANDA = RobotProfile.load("panda")


@pytest.fixture(scope="module")
def two_cameras(tmp_path_factory) -> tuple[Path, list]:
    """A tiny front + wrist model trained 3 steps on two real PyBullet reach episodes (expert, wrist camera on), and
    exported (fp32). Returns (model directory, episodes)."""
    from wam_ros.export.onnx_export import ExportConfig, export_model
    from wam_ros.sim.experts import make_expert
    from wam_ros.sim.tabletop import TabletopEnv
    from wam_ros.train.rollout import record_episode
    from wam_ros.train.train import TrainConfig, train

    root = tmp_path_factory.mktemp("cams")
    env = TabletopEnv(task="reach", wrist_camera=True)
    try:
        episodes = [record_episode(env, make_expert(env), seed=s) for s in (3, 4)]
    finally:
        env.close()
    for i, ep in enumerate(episodes):
        write_episode(episode_path(root / "data", i), ep)
    cfg = TrainConfig(
        data=[str(root / "data")],
        out=str(root / "run"),
        preset="tiny",
        steps=3,
        batch_size=8,
        val_frac=0.0,
        ckpt_every=3,
        eval_every=3,
        threads=1,
        cameras=tuple(CAMERAS),
    )
    export_model(train(cfg), root / "model", ExportConfig(fp16=False))
    return root / "model", episodes


def _obs(ep, t: int, k: int = 2) -> dict:
    """The runtime's observation at step t of a recorded episode: K frames of each camera."""
    past = np.clip(np.arange(t - k + 1, t + 1), 0, None)
    front, wrist = camera_frames(ep, CAMERAS)
    return {
        "images": {"front": list(front[past]), "wrist": list(wrist[past])},
        "joint_pos": ep.joint_pos[t],
        "instruction": ep.instruction,
    }


def test_recorded_episodes_hold_both_cameras_and_windows_stack_them(two_cameras):
    _, episodes = two_cameras
    ep = episodes[0]
    assert ep.meta["cameras"] == CAMERAS and ep.extra["wrist_frames"].shape == ep.frames.shape
    assert not np.array_equal(ep.extra["wrist_frames"], ep.frames)
    data = WindowArrays(episodes, 2, 8, 64, None, cameras=CAMERAS)
    batch = data.batch(np.array([0, 5]))
    assert tuple(batch["frames"].shape) == (2, 2, 2, 3, 64, 64)  # (B, M, K, 3, H, W)
    np.testing.assert_array_equal(
        batch["frames"][1, 1, -1].numpy(), ep.extra["wrist_frames"][5].transpose(2, 0, 1)
    )
    np.testing.assert_array_equal(
        batch["next_frame"][1].numpy(), ep.frames[6].transpose(2, 0, 1)
    )  # the front
    with pytest.raises(EpisodeError, match="no side_frames array for camera 'side'"):
        WindowArrays(episodes, 2, 8, 64, None, cameras=["front", "side"])


def test_two_camera_graph_has_an_input_per_camera_and_matches_torch(two_cameras):
    from wam_ros.runtime import load_policy

    model_dir, episodes = two_cameras
    sess = ort.InferenceSession(str(model_dir / "wam_full.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["frames", "joint_pos", "tokens", "frames_wrist"]
    onnx_policy = load_policy(model_dir, backend="onnxruntime", threads=1)
    torch_policy = load_policy(model_dir / "model.pt", backend="torch", threads=1)
    assert onnx_policy.spec.cameras == torch_policy.spec.cameras == CAMERAS
    for ep, t in ((episodes[0], 0), (episodes[0], 6), (episodes[1], 3)):
        frames, q, tokens = onnx_policy.prepare(_obs(ep, t))
        assert frames.shape == (1, 2, 2, 3, 64, 64)
        a_ort, f_ort = onnx_policy.run_batch(frames, q, tokens)
        a_pt, f_pt = torch_policy.run_batch(frames, q, tokens)
        assert np.abs(a_ort - a_pt).max() <= 1e-4 and np.abs(f_ort - f_pt).max() <= 1e-4
    # the wrist input is used by the graph: another wrist view, another action
    obs = _obs(episodes[0], 6)
    other = dict(
        obs, images={"front": obs["images"]["front"], "wrist": _obs(episodes[1], 3)["images"]["wrist"]}
    )
    moved = np.abs(onnx_policy.predict(obs)["action"] - onnx_policy.predict(other)["action"]).max()
    assert moved > 1e-6, moved


def test_runtime_refuses_a_missing_camera(two_cameras):
    from wam_ros.runtime import load_policy
    from wam_ros.runtime.chunk_policy import ChunkPolicy
    from wam_ros.runtime.policy import check_batch

    model_dir, episodes = two_cameras
    policy = load_policy(model_dir, backend="onnxruntime", threads=1)
    obs = _obs(episodes[0], 3)
    with pytest.raises(ValueError, match=r"has no frames for \['wrist'\]"):
        policy.predict(dict(obs, images={"front": obs["images"]["front"]}))
    with pytest.raises(ValueError, match="must be a dict"):
        policy.predict(dict(obs, images=obs["images"]["front"]))
    with pytest.raises(ValueError, match=r"frames must be uint8 \(B, 2, 2, 3, 64, 64\)"):
        check_batch(
            policy.spec,
            np.zeros((1, 2, 3, 64, 64), np.uint8),
            np.zeros((1, 8), np.float32),
            policy.tokens("x"),
        )
    runner = ChunkPolicy(policy, replan=2, instruction=obs["instruction"])
    runner.observe(obs["images"]["front"][-1])  # the first camera only
    with pytest.raises(ValueError, match=r"no frame from camera\(s\) \['wrist'\]"):
        runner.plan(obs["joint_pos"])
    with pytest.raises(ValueError, match="obs needs 'images'"):
        runner.select_action({"image": obs["images"]["front"][-1], "joint_pos": obs["joint_pos"]})
    with pytest.raises(ValueError, match="not 'side'"):
        runner.observe(obs["images"]["front"][-1], camera="side")
    runner.observe(obs["images"]["wrist"][-1], camera="wrist")
    assert runner.plan(obs["joint_pos"]).chunk.shape == (8, 8)


def test_sim_wrist_camera_moves_with_the_arm():
    from wam_ros.sim.tabletop import TabletopEnv

    env = TabletopEnv(task="push", wrist_camera=True)
    try:
        obs, _ = env.reset(seed=5)
        hold = env.last_action
        for _ in range(2):  # settle
            obs, *_ = env.step(hold)
        still, *_ = env.step(hold)
        moved_q = hold.copy()
        moved_q[0] += 0.35  # turn the base joint
        moved_q[3] += 0.25
        for _ in range(6):
            moved, *_ = env.step(moved_q)
    finally:
        env.close()

    def change(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())

    held, turned = (
        change(obs["wrist_image"], still["wrist_image"]),
        change(still["wrist_image"], moved["wrist_image"]),
    )
    assert held < 1.0 and turned > 10 * max(held, 0.2), (held, turned)
    # the scene camera is fixed: the arm moves in it, the table and the pads do not, so its frame changes less
    assert change(still["image"], moved["image"]) < turned


def test_profile_cameras_are_validated_and_default_to_one():
    assert [c["name"] for c in PANDA.camera_specs] == CAMERAS
    assert PANDA.camera_specs[1] == {"name": "wrist", "topic": "wrist_camera/image_raw", "mount": "wrist"}
    assert RobotProfile.load("xarm6").camera_specs == [
        {"name": "front", "topic": "camera/image_raw", "mount": "fixed"}
    ]
    base = PANDA.to_dict()
    for cameras, message in (
        ([{"name": "front", "topic": "a"}, {"name": "front", "topic": "b"}], "names a camera twice"),
        ([{"name": "Front Cam", "topic": "a"}], "lower-case identifier"),
        ([{"name": "front", "topic": ""}], "topic must be a topic name"),
        ([{"name": "front", "topic": "a", "mount": "ceiling"}], "mount must be one of"),
        ([{"name": "front"}], "keys name, topic"),
        ([{"name": "wrist", "topic": "a"}], "the first camera is the main one"),
        ("front", "must be a list"),
    ):
        with pytest.raises(ValueError, match=message):
            RobotProfile(**{**base, "cameras": cameras})


def test_wam_node_camera_topics_from_the_profile_or_overridden():
    from wam_ros.ros.wam_node import camera_topics

    assert camera_topics(PANDA, CAMERAS, "") == ["camera/image_raw", "wrist_camera/image_raw"]
    assert camera_topics(PANDA, CAMERAS, " wrist = /hand/image_raw ") == [
        "camera/image_raw",
        "/hand/image_raw",
    ]
    assert camera_topics(RobotProfile.load("xarm6"), ["front"], "") == ["camera/image_raw"]
    with pytest.raises(ValueError, match="does not list"):
        camera_topics(RobotProfile.load("xarm6"), CAMERAS, "")
    with pytest.raises(ValueError, match="name=topic"):
        camera_topics(PANDA, CAMERAS, "wrist")
    with pytest.raises(ValueError, match="the model sees"):
        camera_topics(PANDA, CAMERAS, "side=/x")
    with pytest.raises(ValueError, match="share one topic"):
        camera_topics(PANDA, CAMERAS, "wrist=camera/image_raw")


class Collector(Node):
    """Subscribes to the two camera topics (and, with commands=True, to wam_node's outputs)."""

    def __init__(self, commands: bool = False, **kwargs) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import Image
        from trajectory_msgs.msg import JointTrajectory

        super().__init__("camera_collector", **kwargs)
        self.images: dict[str, list] = {"camera/image_raw": [], "wrist_camera/image_raw": []}
        self.commands: list[tuple[float, int]] = []  # (receipt time, points)
        self.diagnostics: list[tuple[float, int, str]] = []  # (receipt time, level, message)
        if not commands:
            for topic, box in self.images.items():
                self.create_subscription(Image, topic, box.append, 10)
            return
        self.create_subscription(
            JointTrajectory,
            "arm_controller/joint_trajectory",
            lambda m: self.commands.append((time.monotonic(), len(m.points))),
            10,
        )
        self.create_subscription(
            DiagnosticArray,
            "/diagnostics",
            lambda m: self.diagnostics.extend(
                (time.monotonic(), s.level if isinstance(s.level, int) else s.level[0], s.message)
                for s in m.status
            ),
            10,
        )


def test_sim_node_publishes_every_profile_camera(ros_context):
    from wam_ros.ros import conversions as conv
    from wam_ros.ros.sim_node import SimNode

    ctx, ex = ros_context
    sim = SimNode(context=ctx, parameter_overrides=[Parameter("control_hz", value=20.0)])
    sink = Collector(context=ctx)
    ex.add_node(sim), ex.add_node(sink)
    try:
        assert spin_until(ex, lambda: all(len(v) >= 3 for v in sink.images.values()), 20.0), {
            k: len(v) for k, v in sink.images.items()
        }
        front, wrist = sink.images["camera/image_raw"][-1], sink.images["wrist_camera/image_raw"][-1]
        assert (front.header.frame_id, wrist.header.frame_id) == ("camera", "wrist_camera")
        assert conv.image_to_rgb(wrist).shape == (64, 64, 3)
        assert not np.array_equal(conv.image_to_rgb(front), conv.image_to_rgb(wrist))
    finally:
        sim.destroy_node(), sink.destroy_node()
    with pytest.raises(ValueError, match=r"\['side'\] are not cameras of robot profile 'panda'"):
        SimNode(context=ctx, parameter_overrides=[Parameter("cameras", value="front,side")])


def test_wam_node_steps_on_both_cameras_and_holds_when_the_wrist_stops(two_cameras):
    """wam_node with the front + wrist model (onnxruntime) over real DDS: a robot stand-in in its own Context
    publishes joint_states and both cameras at 20 Hz, then stops the wrist camera only."""
    from sensor_msgs.msg import Image, JointState

    from wam_ros.ros import conversions as conv

    model_dir, episodes = two_cameras
    ep = episodes[0]
    hz, timeout = 20.0, 0.3
    ctx = Context()
    rclpy.init(context=ctx)
    robot = Node("camera_robot", context=ctx)
    sink = Collector(commands=True, context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(robot), ex.add_node(sink)
    pubs = {
        "joints": robot.create_publisher(JointState, "joint_states", 10),
        "front": robot.create_publisher(Image, "camera/image_raw", 10),
        "wrist": robot.create_publisher(Image, "wrist_camera/image_raw", 10),
    }
    try:
        with wam_node_running(
            model_dir,
            backend="onnxruntime",
            control_hz=hz,
            input_timeout_s=timeout,
            instruction=ep.instruction,
        ) as (node, spinner):
            assert spin_until(ex, lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), 15.0)

            def stream(seconds: float, wrist: bool) -> None:
                end, k = time.monotonic() + seconds, 0
                while time.monotonic() < end:
                    t = min(k, len(ep) - 1)
                    stamp = robot.get_clock().now().to_msg()
                    pubs["joints"].publish(conv.joint_state(PANDA.joint_names, ep.joint_pos[t], stamp=stamp))
                    pubs["front"].publish(conv.rgb_to_image(ep.frames[t], stamp))
                    if wrist:
                        pubs["wrist"].publish(
                            conv.rgb_to_image(ep.extra["wrist_frames"][t], stamp, "wrist_camera")
                        )
                    k += 1
                    spin_until(ex, lambda: False, 1.0 / hz)

            stream(2.0, wrist=True)
            stop = time.monotonic()
            stream(2.0, wrist=False)
            assert spinner.error is None, spinner.error
            assert node.camera_topic_names == ["camera/image_raw", "wrist_camera/image_raw"]
    finally:
        ex.shutdown()
        robot.destroy_node(), sink.destroy_node()
        rclpy.try_shutdown(context=ctx)
    motion = [t for t, n in sink.commands if n > 1]
    assert len([t for t in motion if t < stop]) >= 10, f"{len(motion)} motion commands with both cameras"
    # after the wrist stops: STALE naming it within the timeout + two periods, one hold, no motion command later
    stale = [(t, msg) for t, level, msg in sink.diagnostics if t > stop and level == 3]
    assert stale and "camera 'wrist'" in stale[0][1], sink.diagnostics[-3:]
    assert stale[0][0] <= stop + timeout + 2.0 / hz + 0.3, stale[0][0] - stop
    assert not [t for t in motion if t > stop + timeout + 2.0 / hz + 0.3]
    assert len([t for t, n in sink.commands if n == 1 and t > stop]) == 1  # the hold, sent once


def test_imagination_of_a_two_camera_model_predicts_the_front_camera(two_cameras):
    import torch

    from wam_ros.data.world_windows import WorldWindows
    from wam_ros.model import WamConfig, WorldActionModel
    from wam_ros.model.losses import wam_loss

    _, episodes = two_cameras
    torch.manual_seed(0)
    model = WorldActionModel(WamConfig.preset("tiny_imagine", cameras=CAMERAS))
    data = WorldWindows(WindowArrays(episodes, 2, 8, 64, model.tokenizer, cameras=CAMERAS), episodes)
    batch = data.batch(np.arange(0, 12, 3))
    losses = wam_loss(model, batch, 0.5)
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"]) and model.cam_emb.grad.abs().sum() > 0
    with torch.no_grad():
        imagined = model.imagine_frames(
            batch["frames"], batch["joint_pos"], batch["tokens"], batch["executed"]
        )
    assert tuple(imagined.shape) == (4, 8, 3, 64, 64)
    # untrained, the decoder is the identity residual: every imagined frame is the last FRONT frame, not the wrist's
    last_front = batch["frames"][:, 0, -1].float() / 255.0
    assert torch.equal(imagined[:, 3], last_front)
    assert not torch.equal(imagined[:, 3], batch["frames"][:, 1, -1].float() / 255.0)


def test_doctor_checks_every_camera_of_the_model(two_cameras):
    """wam doctor with the front + wrist model against sim_node: the wrist camera's checks pass when sim_node
    publishes it, and its topic FAILs when sim_node publishes the front camera only."""
    from wam_ros.ros.doctor import DoctorConfig, run_doctor
    from wam_ros.ros.executor import make_executor
    from wam_ros.ros.sim_node import SimNode

    model_dir, _ = two_cameras
    reports = {}
    for cameras in ("", "front"):
        ctx = Context()
        rclpy.init(context=ctx)
        overrides = [Parameter("control_hz", value=20.0), Parameter("cameras", value=cameras)]
        sim = SimNode(context=ctx, parameter_overrides=overrides)
        ex = make_executor(ctx)
        ex.add_node(sim)
        spinner = SpinThread(ex, ctx)
        try:
            cfg = DoctorConfig(model=str(model_dir), robot="panda", timeout_s=1.5, discovery_s=3.0)
            reports[cameras or "all"] = run_doctor(cfg)
        finally:
            spinner.join()
            ex.shutdown()
            sim.destroy_node()
            rclpy.try_shutdown(context=ctx)
    full = {c.name: c for c in reports["all"].checks}
    assert "cameras ['front', 'wrist']" in full["model"].value
    wrist = {n: c.level for n, c in full.items() if n.startswith("camera 'wrist'")}
    assert set(wrist) == {
        f"camera 'wrist' {k}" for k in ("topic", "messages", "encoding", "rate", "stamps", "stamp skew")
    }
    assert all(level in ("OK", "WARN") for level in wrist.values()), reports[
        "all"
    ].table()  # rate: WARN if loaded
    front_only = {c.name: c for c in reports["front"].checks}
    assert not reports["front"].ok and front_only["camera 'wrist' topic"].level == "FAIL"
    assert "wrist_camera/image_raw" in front_only["camera 'wrist' topic"].value
