"""sim_node over real DDS: the PyBullet robot behind topics executes commands like ros2_control and resets by service.

A small expert node (the scripted IK expert, privileged) closes the loop over the same topics wam_node uses, so the
sim side of the closed loop is checked independently of any trained model."""

from __future__ import annotations

import numpy as np
from rclpy.node import Node
from rclpy.parameter import Parameter
from ros_fixtures import ros_context_fixture, spin_until  # noqa: F401 - the ros_context fixture
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float64MultiArray, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from wam_ros.ros import conversions as conv
from wam_ros.ros.sim_node import SimNode
from wam_ros.sim.experts import make_expert


class ExpertDriver(Node):
    """On each camera frame, send the expert's next target as a one-point trajectory stamped with the frame."""

    def __init__(self, sim: SimNode, forward: bool, **kwargs) -> None:
        super().__init__("expert_driver", **kwargs)
        self.sim, self.forward = sim, forward
        self.expert = make_expert(sim.env)
        self.q: np.ndarray | None = None
        self.images, self.instructions, self.outcomes = 0, [], []
        self.create_subscription(JointState, "joint_states", self.on_joints, 10)
        self.create_subscription(Image, "camera/image_raw", self.on_image, 10)
        self.create_subscription(String, "wam/instruction", lambda m: self.instructions.append(m.data), 10)
        self.create_subscription(Bool, "wam/episode_success", lambda m: self.outcomes.append(m.data), 10)
        self.traj_pub = self.create_publisher(JointTrajectory, "arm_controller/joint_trajectory", 10)
        self.fwd_pub = self.create_publisher(Float64MultiArray, "arm_controller/commands", 10)
        self.reset = self.create_client(Trigger, "sim/reset")

    def on_joints(self, msg: JointState) -> None:
        self.q = conv.joint_positions(msg, self.sim.joint_names)

    def on_image(self, msg: Image) -> None:
        self.images += 1
        assert conv.image_to_rgb(msg).shape == (64, 64, 3)
        if self.q is None or self.sim.done:
            return
        target = np.asarray(
            self.expert({"joint_pos": self.q, "image": conv.image_to_rgb(msg)}), dtype=np.float64
        )
        if self.forward:
            self.fwd_pub.publish(conv.float_array(target))
        else:
            self.traj_pub.publish(
                conv.trajectory(self.sim.joint_names, target[None], self.sim.dt, msg.header.stamp)
            )


def test_expert_over_topics_succeeds_and_reset_service_starts_next_episode(ros_context):
    ctx, ex = ros_context
    sim = SimNode(
        context=ctx,
        parameter_overrides=[Parameter("seed", value=10_000), Parameter("control_hz", value=20.0)],
    )  # int->float ok too
    driver = ExpertDriver(sim, forward=False, context=ctx)
    ex.add_node(sim)
    ex.add_node(driver)
    for episode in range(2):
        if episode == 1:
            driver.forward = True  # second episode through the forward_command_controller topic
            fut = driver.reset.call_async(Trigger.Request())
            assert spin_until(ex, fut.done, 10.0), "sim/reset did not answer"
            assert fut.result().success and "seed 10001" in fut.result().message
            driver.expert = make_expert(sim.env)
        n = len(driver.outcomes)
        assert spin_until(ex, lambda n=n: len(driver.outcomes) > n, 30.0), "episode did not end"
        assert driver.outcomes[-1] is True, f"expert failed over ROS topics: {sim.results[-1]}"
    assert [r["seed"] for r in sim.results] == [10_000, 10_001]
    assert all(r["success"] for r in sim.results)
    assert driver.images > 10 and sim.env.instruction in driver.instructions
    driver.destroy_node()
    sim.destroy_node()


def test_sim_refuses_bad_commands_without_crashing(ros_context):
    ctx, _ = ros_context
    sim = SimNode(context=ctx)
    before = sim.target.copy()
    bad = JointTrajectory(joint_names=sim.joint_names[:3])
    sim.on_trajectory(bad)  # missing joints
    sim.on_trajectory(conv.trajectory(sim.joint_names, np.full((1, 8), np.nan), 0.1))
    sim.on_commands(conv.float_array(np.zeros(5)))
    assert sim.plan is None
    np.testing.assert_array_equal(sim.target, before)
    sim.destroy_node()
