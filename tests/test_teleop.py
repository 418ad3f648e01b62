"""Teleop core (speed limits, joint-limit clamping, deadman, Cartesian IK jog, Joy/key mappings) and teleop_node's
safety behaviour over real DDS (no motion without the deadman or with stale joint states)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter
from ros_fixtures import ros_context_fixture  # noqa: F401 - the ros_context fixture
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from wam_ros.robot import RobotProfile
from wam_ros.teleop.jog import CARTESIAN, JogCommand, JogConfig, Jogger, JoyMapping, KeyJog
from wam_ros.teleop.keyboard import KeyReader

PROFILE = RobotProfile.load("panda")
J = PROFILE.dof
VMAX = np.array(PROFILE.velocity_limit)


def cmd(joint=None, twist=None, gripper=0.0, enabled=True) -> JogCommand:
    return JogCommand(
        enabled=enabled,
        joint_vel=np.zeros(J) if joint is None else np.asarray(joint, float),
        twist=np.zeros(6) if twist is None else np.asarray(twist, float),
        gripper=gripper,
    )


def test_joint_jog_speed_limit_clamping_and_deadman():
    jog = Jogger(PROFILE, JogConfig(joint_speed=0.5))
    assert jog.step(cmd(np.ones(J)), 0.1) is None  # not synced: no target
    jog.sync(PROFILE.home)
    assert jog.step(cmd(np.ones(J), enabled=False), 0.1) is None  # deadman released
    q0 = jog.q.copy()
    q = jog.step(cmd([1, -0.5, 0, 0, 0, 0, 0, 0]), 0.1)
    assert np.allclose(q - q0, [0.5 * 2.175 * 0.1, -0.25 * 2.175 * 0.1, 0, 0, 0, 0, 0, 0])
    q = jog.step(cmd([5.0] + [0] * 7), 0.1)  # out-of-range stick is clipped to full speed
    assert np.isclose(q[0] - q0[0], 2 * 0.5 * 2.175 * 0.1)
    for _ in range(200):  # jog into the limits: clamped, never beyond
        q = jog.step(cmd(np.ones(J)), 0.1)
    assert np.allclose(q, np.minimum(PROFILE.position_upper, q)) and np.isclose(
        q[0], PROFILE.position_upper[0]
    )
    assert np.isclose(q[3], PROFILE.position_upper[3])
    jog.sync(np.array(PROFILE.position_lower) - 1.0)  # a measured state outside the limits is clamped
    assert np.allclose(jog.q, PROFILE.position_lower)
    with pytest.raises(ValueError, match="8 finite values"):
        jog.sync([0.0, np.nan])
    with pytest.raises(ValueError, match="joint_speed must be in"):
        JogConfig(joint_speed=1.5)


def test_cartesian_jog_moves_the_end_effector_along_the_axis_within_limits():
    jog = Jogger(PROFILE, JogConfig(linear_speed=0.1, joint_speed=0.25), mode=CARTESIAN)
    jog.sync(PROFILE.home)
    p0, o0 = jog.kinematics.forward(jog.q)
    prev = jog.q.copy()
    for _ in range(20):  # 1 s of +z then check
        q = jog.step(cmd(twist=[0, 0, 1, 0, 0, 0]), 0.05)
        assert np.all(np.abs(q - prev) <= VMAX * 0.25 * 0.05 + 1e-9)  # speed limit per joint
        prev = q
    p1, o1 = jog.kinematics.forward(q)
    assert np.isclose(p1[2] - p0[2], 0.1, atol=0.01) and np.linalg.norm(p1[:2] - p0[:2]) < 0.01
    assert abs(abs(float(np.dot(o0, o1))) - 1) < 1e-3  # orientation held
    assert np.isclose(q[7], PROFILE.home[7])  # gripper untouched by Cartesian jog
    q = jog.step(cmd(twist=[0, 0, 0, 0, 0, 0], gripper=-1.0), 0.1)  # close the gripper at gripper_speed
    assert np.isclose(q[7], PROFILE.home[7] - 0.05 * 0.1)
    jog.close()


def test_jog_reads_the_tool_and_gripper_from_any_profile():
    """Not only the Panda: the xArm6's end-effector link and its gripper joint (open at its LOWER value) come from
    its profile; a profile without an ee_link refuses Cartesian jog with a clear error, joint jog still works."""
    import dataclasses

    xarm = RobotProfile.load("xarm6")
    jog = Jogger(xarm, JogConfig(linear_speed=0.1), mode=CARTESIAN)
    g = xarm.gripper_index
    assert g is not None and jog.gripper == g and xarm.joint_names[g] == xarm.gripper["joint"]
    home = np.asarray(xarm.home, dtype=np.float64)
    home[g] = 0.5 * (xarm.gripper["open"] + xarm.gripper["closed"])
    jog.sync(home)
    p0, _ = jog.kinematics.forward(jog.q)
    for _ in range(10):
        q = jog.step(cmd(twist=[0, 0, 1, 0, 0, 0]), 0.05)
    p1, _ = jog.kinematics.forward(q)
    assert p1[2] - p0[2] > 0.02 and np.linalg.norm(p1[:2] - p0[:2]) < 0.01
    opened = jog.step(cmd(twist=[0, 0, 0, 0, 0, 0], gripper=1.0), 0.1)
    toward_open = np.sign(xarm.gripper["open"] - xarm.gripper["closed"])
    assert (opened[g] - q[g]) * toward_open > 0  # +1 opens, whichever way the joint runs
    jog.close()

    bare = dataclasses.replace(xarm, ee_link="", wrist_link="")
    jog = Jogger(bare, mode=CARTESIAN)
    jog.sync(home)
    with pytest.raises(ValueError, match="ee_link"):
        jog.step(cmd(twist=[0, 0, 1, 0, 0, 0]), 0.05)
    jog.close()


def test_joy_mapping_deadband_mode_edge_and_validation():
    m = JoyMapping(
        deadman_button=4,
        mode_button=7,
        joint_axes=[0, 1, -1, -1, -1, -1, 9],
        joint_scale=[1, -1, 1, 1, 1, 1, 1],
    )
    buttons = [0] * 8
    c = m.command([0.05, 0.55, 0, 0], buttons, J)  # axis 0 inside the deadband; axis 9 does not exist
    assert not c.enabled and c.joint_vel[0] == 0 and np.isclose(c.joint_vel[1], -0.5) and c.joint_vel[6] == 0
    buttons[4] = buttons[7] = 1
    c = m.command([1.0, 0, 0, 0], buttons, J)
    assert c.enabled and c.toggle_mode and c.joint_vel[0] == 1.0
    assert not m.command([1.0, 0, 0, 0], buttons, J).toggle_mode  # held: toggles once, on the press
    with pytest.raises(ValueError, match="deadman_button must be a button index"):
        JoyMapping(deadman_button=-1)
    with pytest.raises(ValueError, match="cartesian_axes and cartesian_scale need 6 entries"):
        JoyMapping(cartesian_axes=[0, 1])
    with pytest.raises(ValueError, match="unknown Joy mapping key"):
        JoyMapping.from_dict({"deadman": 3})


def test_keys_and_shared_key_reader():
    keys = KeyJog(J)
    assert keys.command("3") is None and keys.selected == 2
    assert keys.command("+").joint_vel[2] == 1.0 and keys.command("-").joint_vel[2] == -1.0
    assert keys.command("u").twist[2] == 1.0 and keys.command("b").gripper == -1.0
    assert keys.command("m").toggle_mode and keys.command("?") is None
    reader = KeyReader()
    got: list[tuple[str, str]] = []
    unsub = reader.subscribe(lambda k: got.append(("a", k)))
    reader.subscribe(lambda k: got.append(("b", k)))
    reader.dispatch("r")
    unsub()
    reader.dispatch("y")
    assert got == [("a", "r"), ("b", "r"), ("b", "y")]
    assert reader.start() is False  # pytest's stdin is not a terminal: no reader thread


def test_teleop_node_moves_only_with_deadman_and_fresh_joint_states(ros_context):
    from wam_ros.ros.teleop_node import TeleopNode

    ctx, ex = ros_context
    node = TeleopNode(
        context=ctx,
        parameter_overrides=[
            Parameter("command_interface", value="both"),
            Parameter("keyboard", value=False),
        ],
    )
    io = Node("io", context=ctx)
    forward, traj = [], []
    io.create_subscription(
        Float64MultiArray, "/arm_controller/commands", lambda m: forward.append(list(m.data)), 10
    )
    io.create_subscription(JointTrajectory, "/arm_controller/joint_trajectory", traj.append, 10)
    js_pub = io.create_publisher(JointState, "/joint_states", 10)
    joy_pub = io.create_publisher(Joy, "/joy", 10)
    ex.add_node(node)
    ex.add_node(io)

    def run(seconds: float, deadman: bool, states: bool) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if states:
                js_pub.publish(
                    JointState(name=PROFILE.joint_names, position=[float(v) for v in PROFILE.home])
                )
            buttons = [0] * 8
            buttons[4] = int(deadman)
            joy_pub.publish(Joy(axes=[1.0, 0, 0, 0, 0, 0, 0, 0], buttons=buttons))
            ex.spin_once(timeout_sec=0.02)

    try:
        run(1.0, deadman=False, states=True)
        assert forward == [] and traj == []  # stick pushed, deadman released: nothing
        run(1.0, deadman=True, states=True)
        assert len(forward) >= 10 and len(traj) >= 10
        q = np.array(forward)
        assert q[0][0] > PROFILE.home[0] and np.all(np.diff(q[:, 0]) > 0)  # joint 1 moves up ...
        assert np.all(np.diff(q[:, 0]) <= 0.25 * 2.175 / 30 + 1e-9)  # ... at most at the speed limit
        assert list(traj[-1].joint_names) == PROFILE.joint_names
        n = len(forward)
        run(1.0, deadman=True, states=False)  # joint states go stale: stops within state_timeout_s
        assert len(forward) - n <= 0.5 * 30 + 3
        n = len(forward)
        run(0.5, deadman=True, states=False)
        assert len(forward) == n
    finally:
        for nd in (node, io):
            ex.remove_node(nd)
            nd.destroy_node()
