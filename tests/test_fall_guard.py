"""fall_guard_node over real DDS with the shipped forecaster: the campaign's robot (legged_sim_node, its own process)
is pushed over; the alarm comes before the fall; standing raises none; with protect:=true the protective posture goes
out on the controller topic; bad messages are refused with a diagnostic, never a crash.

Run: .venv/bin/pytest tests/test_fall_guard.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Bool, Float32, Float64MultiArray
from std_srvs.srv import Trigger

from wam_ros.ros.executor import make_executor
from wam_ros.ros.fall_guard_node import FallGuardNode
from wam_ros.runtime.fall_forecaster import load_protective_pose

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "fall_forecaster_laikago"


class Probe(Node):
    """What a user of the guard sees: risk, /diagnostics, the sim's fall flag, the controller commands."""

    def __init__(self, **kwargs) -> None:
        super().__init__("fall_guard_probe", **kwargs)
        self.risk: list[tuple[float, float]] = []
        self.diags: list[tuple[float, int, str]] = []
        self.fallen_at: float | None = None
        self.commands: list[list[float]] = []
        self.create_subscription(
            Float32, "fall_guard/risk", lambda m: self.risk.append((time.monotonic(), m.data)), 50
        )
        self.create_subscription(DiagnosticArray, "/diagnostics", self.on_diag, 50)
        latched = QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
        self.create_subscription(Bool, "legged_sim/fallen", self.on_fallen, latched)
        self.create_subscription(
            Float64MultiArray, "leg_controller/commands", lambda m: self.commands.append(list(m.data)), 50
        )
        self.push = self.create_client(Trigger, "legged_sim/push")
        self.reset = self.create_client(Trigger, "legged_sim/reset")
        self.imu_pub = self.create_publisher(Imu, "imu", qos_profile_sensor_data)
        self.joint_pub = self.create_publisher(JointState, "joint_states", qos_profile_sensor_data)

    def on_diag(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            if st.name.startswith("fall_guard"):
                self.diags.append(
                    (time.monotonic(), st.level[0] if isinstance(st.level, bytes) else st.level, st.message)
                )

    def on_fallen(self, msg: Bool) -> None:
        if msg.data and self.fallen_at is None:
            self.fallen_at = time.monotonic()

    def warns(self) -> list[tuple[float, int, str]]:
        return [d for d in self.diags if d[1] == DiagnosticStatus.WARN[0]]


def spin_until(ex, done, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and not done():
        ex.spin_once(timeout_sec=0.01)
    return done()


def call(ex, client, timeout=10.0) -> Trigger.Response:
    assert client.wait_for_service(timeout_sec=timeout), f"{client.srv_name} not available"
    fut = client.call_async(Trigger.Request())
    assert spin_until(ex, fut.done, timeout)
    return fut.result()


@pytest.fixture
def guarded(request):
    """legged_sim_node in its own process + fall_guard_node and a probe in this one, over DDS."""
    protect = getattr(request, "param", False)
    # not a pipe: nobody reads it, and a full pipe would stall the robot; closed in the finally below
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wam_ros.ros.legged_sim_node",
            "--ros-args",
            "-p",
            "push_force:=400.0",
            "-p",
            "push_duration_s:=0.25",
        ],
        env=dict(os.environ),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ctx = Context()
    rclpy.init(context=ctx)
    guard = probe = ex = None
    try:  # everything after the Popen: a node that fails to start must not leave the robot process running
        guard = FallGuardNode(
            context=ctx,
            parameter_overrides=[
                Parameter("model_path", value=str(MODEL)),
                Parameter("protect", value=protect),
            ],
        )
        probe = Probe(context=ctx)
        ex = make_executor(ctx)
        ex.add_node(guard)
        ex.add_node(probe)
        yield guard, probe, ex, sim
    finally:
        if ex is not None:
            ex.shutdown()
        for node in (guard, probe):
            if node is not None:
                node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        sim.terminate()
        try:
            sim.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait(timeout=10)
        log.close()


def test_a_toppling_push_raises_the_alarm_before_the_fall_and_standing_raises_none(guarded):
    guard, probe, ex, sim = guarded
    assert spin_until(ex, lambda: guard.stats["samples"] >= 300, 60), (
        f"no samples: {guard.stats}"
    )  # 3 s standing
    threshold = guard.fc.rule.threshold
    assert guard.stats["alarms"] == 0 and not probe.warns(), probe.warns()
    assert probe.risk and max(r for _, r in probe.risk) < threshold
    assert any(level == DiagnosticStatus.OK[0] for _, level, _ in probe.diags)
    pushed_at = time.monotonic()
    assert call(ex, probe.push).success
    assert spin_until(ex, lambda: probe.fallen_at is not None, 10), (
        "the 100 N s push did not topple the robot"
    )
    spin_until(ex, lambda: False, 0.3)  # let the last messages arrive
    warns = probe.warns()
    assert warns, f"no alarm: risk max {max(r for _, r in probe.risk):.3f} vs threshold {threshold:.3f}"
    first_alarm = min(t for t, _, _ in warns)
    assert pushed_at < first_alarm < probe.fallen_at, (first_alarm - pushed_at, probe.fallen_at - pushed_at)
    assert "fall predicted" in warns[0][2]
    assert not probe.commands  # protect is off


@pytest.mark.parametrize("guarded", [True], indirect=True)
def test_protect_sends_the_protective_posture(guarded):
    guard, probe, ex, sim = guarded
    pose = load_protective_pose(MODEL)
    assert pose is not None, "the shipped model has no protective_pose.json"
    assert spin_until(ex, lambda: guard.stats["samples"] >= 100, 60)
    assert not probe.commands
    assert call(ex, probe.push).success
    assert spin_until(ex, lambda: len(probe.commands) >= 5, 10), guard.stats
    assert np.allclose(probe.commands[0], pose.targets)
    # the robot stands again, the guard is reset: no alarm, so no protective command any more
    assert call(ex, probe.reset).success
    assert call(ex, probe.create_client(Trigger, "fall_guard/reset")).success
    spin_until(ex, lambda: False, 1.0)
    n = len(probe.commands)
    spin_until(ex, lambda: False, 0.5)
    assert len(probe.commands) == n and not guard.protecting


def test_bad_messages_are_refused_with_a_diagnostic(guarded):
    guard, probe, ex, sim = guarded
    sim.terminate()  # only this test's own messages now
    sim.wait(timeout=10)
    js = JointState(name=guard.joints, position=[0.0] * 12, velocity=[0.0] * 12)  # no efforts
    probe.joint_pub.publish(js)
    imu = Imu()
    imu.orientation.w = float("nan")
    probe.imu_pub.publish(imu)
    assert spin_until(ex, lambda: guard.stats["refused"] >= 2, 10), guard.stats
    spin_until(ex, lambda: False, 0.2)
    errors = [m for _, level, m in probe.diags if level == DiagnosticStatus.ERROR[0]]
    assert any("effort" in m for m in errors) and any("non-finite" in m for m in errors), errors
    assert guard.stats["samples"] == 0 or guard.stats["refused"] >= 2  # nothing forecast from refused inputs


def test_bringup_fall_guard_demo_runs_the_graph_in_one_process():
    from wam_ros.ros.bringup import Bringup

    with Bringup("fall_guard_demo", {"model": str(MODEL), "push_force": "350.0"}) as b:
        assert set(b.nodes) == {"legged_sim", "fall_guard"}
        guard, sim = b.nodes["fall_guard"], b.nodes["legged_sim"]
        assert sim.params.push_force == 350.0 and not guard.params.protect
        assert b.spin_until(lambda: guard.stats["samples"] >= 50, 20), guard.stats
        assert guard.stats["alarms"] == 0 and guard.risk < guard.fc.rule.threshold
