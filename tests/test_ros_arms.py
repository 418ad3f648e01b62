"""The xArm6 over real DDS (issue 19 item 2): sim_node with robot xarm6 publishes /joint_states with the xArm6's joint
names; wam_node with an xArm6 model (its robot read from the model, no parameter) reads them through the profile and
commands the same joints, which sim_node executes. A model for another robot is refused, and the shipped xArm6 model
reaches over ROS topics through `wam demo --robot xarm6`'s path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from rclpy.node import Node
from rclpy.parameter import Parameter
from ros_fixtures import (  # noqa: F401 - the ros_context fixture
    make_tiny_checkpoint,
    ros_context_fixture,
    spin_until,
)
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory

from wam_ros.model.checkpoint import save_checkpoint
from wam_ros.model.config import WamConfig
from wam_ros.model.modeling import WorldActionModel
from wam_ros.robot import RobotProfile
from wam_ros.ros.sim_node import SimNode
from wam_ros.ros.wam_node import WamNode

XARM6 = RobotProfile.load("xarm6")
SHIPPED = Path(__file__).resolve().parent.parent / "models" / "xarm6_tabletop"


@pytest.fixture(scope="module")
def xarm_checkpoint(tmp_path_factory) -> Path:
    """An untrained tiny WAM for the xArm6 (7 joints, robot xarm6), its normaliser centred on the xArm6's home."""
    torch.manual_seed(0)
    model = WorldActionModel(
        WamConfig.preset("tiny", num_joints=7, joint_names=list(XARM6.joint_names), robot="xarm6")
    )
    N = model.cfg.chunk
    std = torch.tensor([0.3] * 6 + [0.1])
    steps = torch.arange(1, N + 1, dtype=torch.float32)[:, None]
    model.set_normalizer(torch.tensor(XARM6.home), std, torch.zeros(N, 7), 0.02 * steps * std / 0.3)
    return save_checkpoint(tmp_path_factory.mktemp("xarm_tiny") / "model.pt", model)


class Listener(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("arm_listener", **kwargs)
        self.joint_names: list[list[str]] = []
        self.commands: list[JointTrajectory] = []
        self.create_subscription(
            JointState, "joint_states", lambda m: self.joint_names.append(list(m.name)), 10
        )
        self.create_subscription(JointTrajectory, "arm_controller/joint_trajectory", self.commands.append, 10)


def test_sim_node_and_wam_node_exchange_xarm6_joints_over_dds(ros_context, xarm_checkpoint):
    ctx, ex = ros_context
    sim = SimNode(
        context=ctx,
        parameter_overrides=[Parameter("robot", value="xarm6"), Parameter("control_hz", value=20.0)],
    )
    wam = WamNode(
        context=ctx,
        parameter_overrides=[
            Parameter("model_path", value=str(xarm_checkpoint)),
            Parameter("backend", value="torch"),
            Parameter("threads", value=1),
            Parameter("control_hz", value=20.0),
        ],  # no robot parameter: wam_node reads the profile the model was trained for
    )
    listener = Listener(context=ctx)
    for node in (sim, wam, listener):
        ex.add_node(node)
    try:
        start = sim.env.last_action.copy()
        assert spin_until(ex, lambda: len(listener.commands) >= 5, 20.0), "wam_node sent no commands"
        assert listener.joint_names and all(n == XARM6.joint_names for n in listener.joint_names)
        assert wam.joint_names == XARM6.joint_names
        lo, hi = np.asarray(XARM6.position_lower), np.asarray(XARM6.position_upper)
        for msg in listener.commands:
            assert list(msg.joint_names) == XARM6.joint_names
            pts = np.array([p.positions for p in msg.points])
            assert pts.shape[1] == 7 and np.all(pts >= lo - 1e-9) and np.all(pts <= hi + 1e-9)
        # sim_node took them as its trajectory: the xArm6's targets are wam_node's, no longer the start pose
        assert spin_until(ex, lambda: sim.plan is not None and sim.env.steps > 3, 10.0)
        assert not np.allclose(sim.env.last_action, start)
        assert wam.stats["refused"] == 0
    finally:
        for node in (listener, wam, sim):
            ex.remove_node(node)
            node.destroy_node()


def test_wam_node_refuses_a_profile_without_the_models_joints(ros_context, tmp_path_factory):
    """A Panda model with robot:=xarm6: refused at start-up naming the joints, never run against the wrong arm."""
    ctx, _ = ros_context
    panda = make_tiny_checkpoint(tmp_path_factory)
    params = {"model_path": str(panda), "backend": "torch", "robot": "xarm6"}
    with pytest.raises(ValueError, match="panda_joint1"):
        WamNode(context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])


def test_shipped_xarm6_model_reaches_over_ros_topics():
    from wam_ros.ros.demo import run_demo

    assert SHIPPED.is_dir(), (
        f"the shipped xArm6 model {SHIPPED} is missing (models/xarm6_tabletop/MODEL_CARD.md)"
    )

    s = run_demo(
        str(SHIPPED), "onnxruntime", episodes=5, seed=10_000, out=None, robot="xarm6", timeout_s=15.0
    )
    assert s["successes"] >= 4, (
        f"{s['successes']}/5 closed-loop xArm6 successes over ROS: {s['episode_results']}"
    )
    assert s["refused"] == 0 and s["robot"] == "xarm6"
    with pytest.raises(ValueError, match="pass the --robot the model was trained for"):
        run_demo(str(SHIPPED), "onnxruntime", episodes=1, seed=10_000, out=None, robot="panda", timeout_s=5.0)


def test_robot_graph_defaults_to_the_models_robot():
    """`wam bringup robot model:=models/xarm6_tabletop` with no robot argument: wam_node reads the xarm6 profile."""
    from wam_ros.ros.bringup import Bringup

    with Bringup("robot", {"model": str(SHIPPED), "backend": "onnxruntime"}) as b:
        wam = b.nodes["wam"]
        assert wam.get_parameter("robot").value == "" and wam.joint_names == XARM6.joint_names
        assert wam.safety.limits.position_upper.tolist() == XARM6.position_upper
