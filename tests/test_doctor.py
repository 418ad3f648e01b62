"""`wam doctor` (wam_ros/ros/doctor.py): the pure checks on recorded streams, then over real DDS against sim_node (the
PyBullet robot: everything OK, and a FAIL naming the controller when nothing subscribes to its topic) and against a
deliberately misconfigured graph published from this test (wrong encoding, a joint missing, zero stamps, too slow,
a position far outside the limits, no controller): `wam doctor` exits 1 naming each problem."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter
from ros_fixtures import SpinThread
from sensor_msgs.msg import Image, JointState

from wam_ros.robot import RobotProfile
from wam_ros.ros import conversions as conv
from wam_ros.ros.doctor import (
    Check,
    DoctorConfig,
    DoctorReport,
    Stream,
    check_controller,
    check_encoding,
    check_limits,
    check_mapping,
    check_rate,
    check_skew,
    check_stamps,
    check_topic,
    joint_columns,
    run_doctor,
)
from wam_ros.ros.executor import make_executor

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "panda_tabletop"
PANDA = RobotProfile.load("panda")
TRAJ = "trajectory_msgs/msg/JointTrajectory"


# ---- pure checks -------------------------------------------------------------------------------------------------
def ticks(hz: float, n: int, start: float = 100.0) -> list[float]:
    return [start + i / hz for i in range(n)]


def test_rate_against_the_models_control_rate():
    assert check_rate("camera", ticks(10, 30), 10.0, 0.3).level == "OK"
    assert check_rate("camera", ticks(9.5, 30), 10.0, 0.3).level == "OK"  # timer jitter
    slow = check_rate("camera", ticks(6, 30), 10.0, 0.3)
    assert slow.level == "WARN" and "6.0 Hz" in slow.value
    stale = check_rate("camera", ticks(2, 8), 10.0, 0.3)
    assert stale.level == "FAIL" and "STALE" in stale.fix
    gap = ticks(10, 20) + ticks(10, 20, start=102.5)  # one 0.6 s gap at an overall ~15 Hz
    assert check_rate("joint_states", gap, 10.0, 0.3).level == "WARN"
    assert check_rate("camera", [1.0], 10.0, 0.3).level == "FAIL"
    assert check_rate("camera", [], 10.0, 0.3).level == "SKIP"


def test_stamps_zero_and_backwards():
    assert check_stamps("camera", [1.0, 1.1, 1.2]).level == "OK"
    zero = check_stamps("camera", [0.0, 0.0, 0.0])
    assert zero.level == "FAIL" and "3/3 zero" in zero.value
    back = check_stamps("joint_states", [1.0, 1.2, 1.1, 1.3])
    assert back.level == "FAIL" and "1/3" in back.value and "out-of-order" in back.fix


def test_skew_pairs_each_frame_with_the_latest_joint_states():
    joints = Stream(received=ticks(10, 20), stamps=ticks(10, 20, start=5000.0))
    same = Stream(received=[r + 0.01 for r in ticks(10, 20)], stamps=ticks(10, 20, start=5000.0))
    assert check_skew(same, joints, 0.25).level == "OK"
    other_clock = Stream(received=same.received, stamps=ticks(10, 20, start=1.7e9))  # wall vs sim time
    bad = check_skew(other_clock, joints, 0.25)
    assert bad.level == "FAIL" and "use_sim_time" in bad.fix
    one_late = Stream(received=same.received, stamps=[*same.stamps[:-1], same.stamps[-1] - 1.0])
    assert check_skew(one_late, joints, 0.25).level == "WARN"
    zero = Stream(received=same.received, stamps=[0.0] * 20)
    assert check_skew(zero, joints, 0.25).level == "SKIP"


def test_mapping_through_the_profile():
    real_panda = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1", "panda_finger_joint2"]
    ok = check_mapping(PANDA, PANDA.joint_names, real_panda)
    assert ok.level == "OK" and "panda_gripper = panda_finger_joint1+panda_finger_joint2" in ok.value
    assert check_mapping(PANDA, PANDA.joint_names, PANDA.joint_names).level == "OK"  # our sim's names
    missing = check_mapping(PANDA, PANDA.joint_names, [n for n in real_panda if n != "panda_joint3"])
    assert missing.level == "FAIL" and "panda_joint3" in missing.value and "joint_mapping" in missing.fix
    assert check_mapping(PANDA, PANDA.joint_names, None).level == "SKIP"


def test_limits_with_tolerance_and_partial_mapping():
    names = list(PANDA.joint_names)
    home = list(PANDA.home)
    assert check_limits(PANDA, joint_columns(PANDA, names, [(names, home)]), 0.1).level == "OK"
    edge = home.copy()
    edge[0] = PANDA.position_upper[0] + 0.01  # within the 0.05 tolerance
    assert check_limits(PANDA, joint_columns(PANDA, names, [(names, edge)]), 0.1).level == "WARN"
    far = home.copy()
    far[3] = 3.0  # panda_joint4's upper limit is -0.0698: a unit or offset mistake
    without_j1 = [(names[1:], far[1:])]  # panda_joint1 missing: the others are still checked
    bad = check_limits(PANDA, joint_columns(PANDA, names, without_j1), 0.1)
    assert bad.level == "FAIL" and "panda_joint4 = 3" in bad.value
    nan = home.copy()
    nan[5] = float("nan")
    assert check_limits(PANDA, joint_columns(PANDA, names, [(names, nan)]), 0.1).level == "FAIL"
    assert check_limits(PANDA, {}, 0.1).level == "SKIP"
    wide = home.copy()
    wide[-1] = (
        PANDA.position_upper[-1] + 0.03
    )  # within measurement_tolerance 0.05, beyond one step (0.2 m/s x 0.1 s)
    capped = check_limits(PANDA, joint_columns(PANDA, names, [(names, wide)]), 0.1)
    assert (
        capped.level == "FAIL" and "panda_gripper" in capped.value and "0.02" in capped.fix
    )  # as wam_node does


def test_topic_encoding_and_controller_checks():
    assert (
        check_topic("camera", "/c", [("/cam", "sensor_msgs/msg/Image")], "sensor_msgs/msg/Image", []).level
        == "OK"
    )
    compressed = check_topic(
        "camera", "/c", [("/cam", "sensor_msgs/msg/CompressedImage")], "sensor_msgs/msg/Image", []
    )
    assert compressed.level == "FAIL" and "republish" in compressed.fix
    absent = check_topic("camera", "/c", [], "sensor_msgs/msg/Image", ["/realsense/color/image_raw"])
    assert absent.level == "FAIL" and "/realsense/color/image_raw" in absent.fix
    bad = check_encoding({}, {}, {"image encoding 'yuv422' not supported; expected ...": 4})
    assert bad.level == "FAIL" and "yuv422" in bad.value and "4/4" in bad.value
    assert check_encoding({"bgr8": 3}, {(640, 480): 3}, {}).value == "bgr8 640x480"
    assert check_controller("/arm/joint_trajectory", TRAJ, [], []).level == "FAIL"
    wrong = check_controller("/arm/joint_trajectory", TRAJ, [("/ctl", "std_msgs/msg/Float64MultiArray")], [])
    assert wrong.level == "FAIL" and "command_type" in wrong.fix
    two = check_controller("/arm/joint_trajectory", TRAJ, [("/ctl", TRAJ)], [("/teleop", TRAJ)])
    assert two.level == "WARN" and "/teleop" in two.value


def test_report_table_and_exit_logic():
    report = DoctorReport(
        [Check("model", "OK", "8 joints"), Check("camera rate", "WARN", "6 Hz", "raise it")]
    )
    assert report.ok and "ready for wam_node (1 warning(s))" in report.table()
    report.checks.append(Check("controller", "FAIL", "no subscriber", "start the controller"))
    assert not report.ok and "1. controller: start the controller" in report.table()
    with pytest.raises(ValueError, match="level"):
        Check("x", "BAD", "")
    with pytest.raises(ValueError, match="command_type"):
        DoctorConfig(model="m", command_type="effort")
    with pytest.raises(ValueError, match="timeout_s"):
        DoctorConfig(model="m", timeout_s=0.0)
    with pytest.raises(ValueError, match="invalid topic"):  # refused before listening, no traceback
        run_doctor(DoctorConfig(model=str(MODEL), camera_topic="bad topic", timeout_s=0.1, discovery_s=0.1))


# ---- over real DDS -----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def spinning(make_nodes) -> Iterator[list[Node]]:
    """Nodes made by make_nodes(context) on their own Context, spun in a thread (the graph under test)."""
    ctx = Context()
    rclpy.init(context=ctx)
    nodes = make_nodes(ctx)
    executor = make_executor(ctx)
    for node in nodes:
        executor.add_node(node)
    spinner = SpinThread(executor, ctx)
    try:
        yield nodes
    finally:
        spinner.join()
        executor.shutdown()
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=ctx)
    assert spinner.error is None, spinner.error


def levels(report: DoctorReport) -> dict[str, str]:
    return {c.name: c.level for c in report.checks}


def test_sim_node_passes_and_a_missing_controller_fails():
    """sim_node publishes what wam_node needs and subscribes like ros2_control: every check OK (the rates may WARN
    only on a loaded machine). Asked for another controller, the doctor fails on that alone."""
    from wam_ros.ros.sim_node import SimNode

    def graph(ctx: Context) -> list[Node]:
        return [SimNode(context=ctx, parameter_overrides=[Parameter("control_hz", value=20.0)])]

    with spinning(graph):
        report = run_doctor(DoctorConfig(model=str(MODEL), robot="panda", timeout_s=2.5))
        other = run_doctor(
            DoctorConfig(model=str(MODEL), robot="panda", timeout_s=1.5, controller="xarm_controller")
        )
    got = levels(report)
    print(report.table())
    assert report.ok, report.table()
    rates = {"camera rate", "joint_states rate"}
    assert {n: lv for n, lv in got.items() if n not in rates and lv != "OK"} == {}, report.table()
    assert {got[n] for n in rates} <= {"OK", "WARN"}
    assert "/sim" in next(c.value for c in report.checks if c.name == "controller")
    assert not other.ok
    failed = [c for c in other.checks if c.level == "FAIL"]
    assert [c.name for c in failed] == ["controller"] and "/xarm_controller/joint_trajectory" in failed[
        0
    ].value


class Misconfigured(Node):
    """A robot graph with every mistake the doctor must name: camera yuv422 at 2 Hz with zero stamps; joint_states at
    10 Hz without panda_joint3 and with panda_joint1 at 10 rad; nothing subscribes to the controller's topic."""

    def __init__(self, **kwargs) -> None:
        super().__init__("misconfigured_robot", **kwargs)
        self.image_pub = self.create_publisher(Image, "camera/image_raw", 10)
        self.joint_pub = self.create_publisher(JointState, "joint_states", 10)
        self.create_timer(0.5, self.on_camera)
        self.create_timer(0.1, self.on_joints)
        self.names = [n for n in PANDA.joint_names if n != "panda_joint3"]
        self.q = np.asarray(
            [10.0 if n == "panda_joint1" else PANDA.home[PANDA.joint_names.index(n)] for n in self.names]
        )

    def on_camera(self) -> None:
        msg = Image(height=48, width=64, encoding="yuv422", step=128)  # header.stamp left at zero
        msg.data = bytes(48 * 128)
        self.image_pub.publish(msg)

    def on_joints(self) -> None:
        stamp = self.get_clock().now().to_msg()
        self.joint_pub.publish(conv.joint_state(self.names, self.q, np.zeros(len(self.names)), stamp))


def test_misconfigured_graph_exits_nonzero_naming_each_problem():
    cmd = [
        sys.executable,
        "-m",
        "wam_ros.cli",
        "doctor",
        "--model",
        str(MODEL),
        "--robot",
        "panda",
        "--timeout",
        "3",
    ]
    with spinning(lambda ctx: [Misconfigured(context=ctx)]):
        proc = subprocess.run(
            [*cmd, "--json"], capture_output=True, text=True, timeout=60, env=dict(os.environ)
        )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert not report["ok"]
    expected = {
        "camera encoding": "yuv422",
        "camera rate": "Hz",
        "camera stamps": "zero stamps",
        "joint mapping": "panda_joint3",
        "joint limits": "panda_joint1 = 10",
        "controller": "no subscriber on /arm_controller/joint_trajectory",
    }
    for name, text in expected.items():
        assert checks[name]["level"] == "FAIL" and text in checks[name]["value"], checks[name]
        assert checks[name]["fix"], name
    for name in ("model", "profile", "camera topic", "joint_states topic", "joint_states stamps"):
        assert checks[name]["level"] == "OK", checks[name]
    assert checks["stamp skew"]["level"] == "SKIP"  # camera stamps are zero: nothing to pair
