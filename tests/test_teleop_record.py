"""End to end, over real DDS: a scripted Joy publisher drives the PyBullet robot through `wam bringup teleop_record`
(sim_node + teleop_node + recorder_node in one process) for 3 episodes; the bags read back with rosbags (an
independent reader) with the expected topics, types and counts; `wam data import-bag` turns them into episodes;
a few `wam train` steps run on the result."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from rclpy.node import Node
from rosbags.rosbag2 import Reader
from sensor_msgs.msg import JointState, Joy
from std_srvs.srv import Trigger

from wam_ros.data.bag_import import ImportConfig, import_bags
from wam_ros.data.episode import list_episodes, read_episode
from wam_ros.ros.bringup import Bringup

TOPICS = {
    "/camera/image_raw": "sensor_msgs/msg/Image",
    "/joint_states": "sensor_msgs/msg/JointState",
    "/arm_controller/joint_trajectory": "trajectory_msgs/msg/JointTrajectory",
    "/arm_controller/commands": "std_msgs/msg/Float64MultiArray",
}
DEADMAN = 4  # config/teleop_joy.yaml


class Operator(Node):
    """The scripted operator: a Joy device plus the episode service calls."""

    def __init__(self, context) -> None:
        super().__init__("operator", context=context)
        self.joy = self.create_publisher(Joy, "joy", 10)
        self.q = None
        self.create_subscription(JointState, "joint_states", self.on_js, 10)
        self.clients_ = {
            n: self.create_client(Trigger, f"/recorder/{n}")
            for n in ("start", "stop_success", "stop_failure", "discard")
        }
        self.reset = self.create_client(Trigger, "/sim/reset")

    def on_js(self, msg: JointState) -> None:
        self.q = np.asarray(msg.position)

    def push(self, axes: list[float], deadman: bool) -> None:
        msg = Joy()
        msg.axes = [float(a) for a in axes]
        msg.buttons = [0] * 12
        msg.buttons[DEADMAN] = int(deadman)
        self.joy.publish(msg)


def call(bringup: Bringup, client, timeout: float = 10.0) -> Trigger.Response:
    assert client.wait_for_service(timeout_sec=timeout), f"service {client.srv_name} not available"
    future = client.call_async(Trigger.Request())
    assert bringup.spin_until(future.done, timeout), f"service {client.srv_name} did not answer"
    return future.result()


def drive(bringup: Bringup, op: Operator, axes: list[float], seconds: float, deadman: bool = True) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        op.push(axes, deadman)
        bringup.spin_for(0.03)


@pytest.fixture
def graph(tmp_path: Path):
    bags = tmp_path / "bags"
    b = Bringup(
        "teleop_record",
        {
            "output_dir": str(bags),
            "task": "reach the red target",
            "operator": "pytest",
            "control_hz": "15.0",
            "max_steps": "1000",
        },
    )
    op = Operator(b.context)
    b.add_node(op)
    try:
        yield b, op, bags
    finally:
        b.executor.remove_node(op)
        op.destroy_node()
        b.shutdown()


def test_joy_drives_sim_robot_and_three_episodes_become_training_data(graph, tmp_path: Path):
    bringup, op, bags = graph
    assert bringup.spin_until(lambda: op.q is not None, 15.0), "no joint_states from sim_node"
    teleop = bringup.nodes["teleop"]
    # deadman released: the stick alone moves nothing
    drive(bringup, op, [0.9, 0, 0, 0, 0, 0, 0, 0], 0.5, deadman=False)
    assert teleop.published == 0

    outcomes = [("stop_success", True), ("stop_success", True), ("stop_failure", False)]
    q_start, q_end = [], []
    for e, (stop, success) in enumerate(outcomes):
        if e:
            assert call(bringup, op.reset).success
            bringup.spin_for(0.3)
        r = call(bringup, op.clients_["start"])
        assert r.success, r.message
        bringup.spin_for(0.3)
        q_start.append(op.q.copy())
        sign = 1.0 if e % 2 == 0 else -1.0
        drive(bringup, op, [sign * 0.9, 0, 0, 0, 0, 0, 0, 0], 2.0)  # axis 0 jogs panda_joint1
        drive(bringup, op, [0, 0, 0, 0, 0, 0, 0, 0], 0.3, deadman=False)
        q_end.append(op.q.copy())
        r = call(bringup, op.clients_[stop])
        assert r.success, r.message
        report = json.loads(r.message)
        assert report["success"] is success
        assert report["written"] == report["received"], report  # every received message is in the bag

    # the robot followed the stick: joint 1 moved the commanded way, at most at the speed limit (0.25 x 2.175 rad/s)
    for e in range(3):
        moved = q_end[e][0] - q_start[e][0]
        assert (moved > 0.2) if e % 2 == 0 else (moved < -0.2), (e, moved)
        assert abs(moved) < 0.25 * 2.175 * 2.6
    # a discarded episode leaves nothing behind
    assert call(bringup, op.clients_["start"]).success
    bringup.spin_for(0.3)
    assert call(bringup, op.clients_["discard"]).success
    dirs = sorted(p.name for p in bags.iterdir())
    assert dirs == ["episode_0000", "episode_0001", "episode_0002"], dirs

    # independent reader: rosbags opens each bag (metadata.yaml + indexed MCAP) with the expected topics and types
    for e, name in enumerate(dirs):
        with Reader(bags / name) as reader:
            types = {c.topic: c.msgtype for c in reader.connections}
            counts = {c.topic: c.msgcount for c in reader.connections}
            assert types == TOPICS
            # ~2.6 s at 15 Hz of camera + joint states; teleop commands at 30 Hz while the deadman was held
            assert 20 <= counts["/camera/image_raw"] <= 55, counts
            assert abs(counts["/joint_states"] - counts["/camera/image_raw"]) <= 2, counts
            assert 30 <= counts["/arm_controller/commands"] <= 75, counts
            assert counts["/arm_controller/joint_trajectory"] == 0  # command_interface: forward
            assert sum(1 for _ in reader.messages()) == reader.message_count
        meta = (bags / name / "metadata.yaml").read_text()
        assert "storage_identifier: mcap" in meta and "wam.operator: pytest" in meta
        assert f"wam.success: '{'true' if outcomes[e][1] else 'false'}'" in meta

    # bags -> episodes on a 10 Hz grid
    reports = import_bags(bags, tmp_path / "episodes", ImportConfig(rate_hz=10.0, tolerance_s=0.05))
    assert [bool(r.episode) for r in reports] == [True, True, True], reports
    paths = list_episodes(tmp_path / "episodes")
    assert len(paths) == 3
    for e, path in enumerate(paths):
        ep = read_episode(path)
        assert ep.instruction == "reach the red target" and ep.success is outcomes[e][1]
        assert 20 <= len(ep) <= 30 and ep.frames.shape[1:] == (64, 64, 3)
        assert np.allclose(np.diff(ep.timestamps), 0.1, atol=1e-6)
        assert ep.meta["alignment"]["missing_steps"] == 0
        # actions lead the observed joint 1 in the jog direction while the stick was held
        lead = ep.actions[:10, 0] - ep.joint_pos[:10, 0]
        assert np.all(lead * (1 if e % 2 == 0 else -1) > -1e-3) and abs(lead).max() > 1e-3

    # and the result trains: a few steps of the real training loop (tiny preset)
    from wam_ros.train.train import TrainConfig, train

    ckpt = train(
        TrainConfig(
            data=[str(tmp_path / "episodes")],
            out=str(tmp_path / "run"),
            preset="tiny",
            steps=3,
            batch_size=4,
            warmup=1,
            eval_every=2,
            ckpt_every=3,
            val_frac=0.0,
            threads=1,
        )
    )
    assert Path(ckpt).is_file()
