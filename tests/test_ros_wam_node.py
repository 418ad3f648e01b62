"""wam_node over real DDS: a separate robot process (wam_ros.ros._robot_probe) publishes camera + joint states and
receives the commands, diagnostics and surprise of a wam_node running a real (tiny, untrained) WAM."""

from __future__ import annotations

import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.parameter import Parameter
from ros_fixtures import commands, diagnostics, make_tiny_checkpoint, run_probe, wam_node_running

from wam_ros.robot import RobotProfile

PROFILE = RobotProfile.load("panda")
LO, HI = np.asarray(PROFILE.position_lower), np.asarray(PROFILE.position_upper)
VMAX = np.asarray(PROFILE.velocity_limit)
OK, WARN, ERROR, STALE = 0, 1, 2, 3


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory)


def assert_inside_limits(points: np.ndarray, hz: float) -> None:
    assert np.all(points >= LO - 1e-9) and np.all(points <= HI + 1e-9), points
    assert np.all(np.abs(np.diff(points, axis=0)) <= VMAX / hz + 1e-9)


def test_stream_then_stop_commands_inside_limits_and_stale_hold(tiny_checkpoint, tmp_path):
    hz, timeout = 20.0, 0.3
    with wam_node_running(tiny_checkpoint, control_hz=hz, input_timeout_s=timeout) as (node, spinner):
        res = run_probe(
            tmp_path,
            "stream",
            "--rate",
            "30",
            "--duration",
            "2.5",
            "--stop",
            "1.0",
            "--instruction",
            "reach the blue target",
        )
    assert spinner.error is None, spinner.error
    stop_t, sent = res["stop_t"], res["sent"]
    cmds = commands(res)
    before = [c for c in cmds if c["t"] <= stop_t + 0.02]
    motion = [
        c for c in before if len(c["points"]) > 1
    ]  # (a loaded machine may stall the robot: holds allowed)
    assert len(motion) >= 20, f"only {len(motion)} commands in 2.5 s at {hz} Hz"
    for c in before:
        assert c["type"] == "trajectory" and c["names"] == PROFILE.joint_names
        pts = np.asarray(c["points"])
        assert_inside_limits(pts, hz)
        np.testing.assert_allclose(c["times"], np.arange(1, len(pts) + 1) / hz, atol=1e-6)
    for c in motion:
        pts = np.asarray(c["points"])
        assert pts.shape == (8, 8)
        q_sent = np.asarray([s["q"] for s in sent if s["t"] <= c["t"]][-1])
        assert np.all(np.abs(pts[0] - q_sent) <= VMAX / hz + 0.05)  # first target within one velocity step
    # surprise_hold is off: the surprise is computed after the command goes out, and still published for each
    # fresh frame that follows a prediction (the untrained model's frame never matches: > 0)
    surprise = [e["value"] for e in res["events"] if e["kind"] == "surprise" and e["t"] <= stop_t]
    assert len(surprise) >= 20 and all(np.isfinite(v) and v > 0 for v in surprise), surprise[:5]
    # the instruction topic changed the instruction (reported in the diagnostics)
    assert any(d["values"].get("instruction") == "reach the blue target" for d in diagnostics(res))
    # stop publishing -> STALE and one hold at the last measured position within timeout + two control periods
    bound = stop_t + timeout + 2.0 / hz
    stale = [d for d in diagnostics(res) if d["t"] > stop_t and d["level"] == STALE]
    assert stale and stale[0]["t"] <= bound, (stale[:1], bound)
    assert "old" in stale[0]["message"]
    after = [c for c in cmds if c["t"] > stop_t + 0.02]
    holds = [c for c in after if len(c["points"]) == 1]
    assert len(holds) == 1, f"expected exactly one hold command after the stop, got {len(holds)}"
    assert after[-1] is holds[0], "a command was published after the hold"
    # motion commands after the stop only while the last inputs were still fresh
    assert all(c["t"] <= stop_t + timeout + 1.0 / hz for c in after[:-1])
    hold = np.asarray(holds[0]["points"])
    assert holds[0]["t"] <= bound
    np.testing.assert_allclose(hold[0], np.clip(sent[-1]["q"], LO, HI), atol=1e-9)


def test_forward_command_controller_output(tiny_checkpoint, tmp_path):
    with wam_node_running(tiny_checkpoint, command_type="forward", controller="fwd", replan_steps=2) as (
        node,
        spinner,
    ):
        res = run_probe(
            tmp_path, "stream", "--rate", "30", "--duration", "1.5", "--stop", "0.2", "--controller", "fwd"
        )
        cycles, predictions = node.stats["cycles"], node.stats["steps"]
    assert spinner.error is None, spinner.error
    assert cycles >= 10 and abs(predictions - cycles / 2) <= 1.5  # one prediction every second control period
    cmds = [c for c in commands(res) if c["t"] <= res["stop_t"]]
    assert len(cmds) >= 8
    for c in cmds:
        q = np.asarray(c["points"][0])
        assert c["type"] == "forward" and q.shape == (8,)
        assert np.all(q >= LO) and np.all(q <= HI)


def test_fuzz_bad_messages_refused_with_error_and_no_command(tiny_checkpoint, tmp_path):
    # "huge" is relative to max_image_pixels: a 4 MB frame over best-effort DDS may be dropped before the node sees it
    with wam_node_running(tiny_checkpoint, max_image_pixels=100_000) as (node, spinner):
        res = run_probe(
            tmp_path, "fuzz", "--rate", "30", "--duration", "2.5", "--then-valid", "1.5", "--huge-side", "400"
        )
        refused = node.stats["refused"]
    assert spinner.error is None, spinner.error  # no callback raised: the node never crashed
    assert len(res["bad_kinds"]) == 8
    during = [c for c in commands(res) if c["t"] <= res["fuzz_end_t"] + 0.2]
    assert during == [], f"{len(during)} commands published from invalid inputs"
    errors = " ".join(d["message"] for d in diagnostics(res) if d["level"] == ERROR)
    for reason in (
        "encoding 'rgba16' not supported",
        "expected width and height > 0",
        "bytes, expected step*height",
        "exceeds max_image_pixels",
        "non-finite positions",
        "missing joints",
        "names but 4 positions",
        "out of order",
    ):
        assert reason in errors, f"no ERROR diagnostic says {reason!r}"
    assert refused >= 40
    # still alive: valid messages afterwards give commands again
    assert len([c for c in commands(res) if c["t"] > res["fuzz_end_t"]]) >= 3


def test_surprise_above_threshold_holds(tiny_checkpoint, tmp_path):
    with wam_node_running(tiny_checkpoint, surprise_hold=True, surprise_threshold=1e-6) as (node, spinner):
        res = run_probe(tmp_path, "stream", "--rate", "30", "--duration", "1.5", "--stop", "0.1")
    assert spinner.error is None, spinner.error
    surprise = [e["value"] for e in res["events"] if e["kind"] == "surprise" and e["t"] <= res["stop_t"]]
    assert surprise and min(surprise) > 1e-6  # random frames vs an untrained model's prediction
    warns = [d for d in diagnostics(res) if d["level"] == WARN]
    assert warns and "surprise" in warns[0]["message"]
    assert len(commands(res)) <= 2  # the first step (nothing predicted yet) and then one hold


def test_bad_parameters_are_clear_errors(tiny_checkpoint):
    from wam_ros.ros.wam_node import WamNode

    ctx = Context()
    rclpy.init(context=ctx)
    try:
        for name, value, message in (
            ("command_type", "bogus", "command_type must be 'trajectory' or 'forward', got 'bogus'"),
            ("planner_proximity", -1.0, "planner_proximity must be >= 0, got -1.0"),
            ("planner_trigger", "sometimes", "planner_trigger must be 'always' or 'stall', got 'sometimes'"),
        ):
            with pytest.raises(ValueError, match=message):
                WamNode(
                    context=ctx,
                    parameter_overrides=[
                        Parameter("model_path", value=str(tiny_checkpoint)),
                        Parameter("backend", value="torch"),
                        Parameter(name, value=value),
                    ],
                )
        node = WamNode(
            context=ctx,
            parameter_overrides=[
                Parameter("model_path", value=str(tiny_checkpoint)),
                Parameter("backend", value="torch"),
                Parameter("control_hz", value=15),
            ],
        )  # int for a float
        assert node.control_hz == 15.0
        result = node.set_parameters([Parameter("instruction", value="  ")])[0]
        assert not result.successful and "non-empty" in result.reason
        assert node.set_parameters([Parameter("instruction", value="reach the green target")])[0].successful
        assert node.instruction == "reach the green target"
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)


def test_planner_imagines_before_acting_over_dds(tmp_path_factory, tmp_path):
    """wam_node with planner:=best_of_n on the exported onnxruntime graphs (no torch in the planning path): it
    chooses among the imagined candidates, every command stays inside the limits, and /diagnostics reports the
    decision."""
    import torch

    from wam_ros.export.onnx_export import ExportConfig, export_model
    from wam_ros.model.checkpoint import save_checkpoint
    from wam_ros.model.config import WamConfig
    from wam_ros.model.modeling import WorldActionModel

    torch.manual_seed(0)
    model = WorldActionModel(WamConfig.preset("tiny_imagine"))
    J, N = model.cfg.num_joints, model.cfg.chunk
    model.set_normalizer(
        torch.from_numpy((LO + HI) / 2).float(), torch.ones(J), torch.zeros(N, J), torch.full((N, J), 0.02)
    )
    folder = tmp_path_factory.mktemp("tiny_imagine")
    save_checkpoint(folder / "model.pt", model)
    export_model(folder / "model.pt", folder, ExportConfig())
    hz = 10.0
    # trigger stall with a span no estimate can leave: stalled from the second decision on (the wiring of the
    # parameters and the diagnostics; the stall test itself: tests/test_imagination.py)
    stall = dict(
        planner_trigger="stall", planner_stall_span=1e3, planner_stall_window=1, planner_stall_after=1
    )
    for trigger, extra in (("always", dict(planner_trigger="always")), ("stall", stall)):
        with wam_node_running(
            folder,
            backend="onnxruntime",
            control_hz=hz,
            planner="best_of_n",
            candidates=6,
            planner_backend="onnxruntime",
            **extra,
        ) as (node, spinner):
            (tmp_path / trigger).mkdir()
            res = run_probe(
                tmp_path / trigger, "stream", "--rate", "30", "--duration", "2.0", "--stop", "1.8"
            )
            plan = node.runner.last_plan
            backend = node.planner.backend.name
        assert spinner.error is None, spinner.error
        assert backend == "onnxruntime"
        assert plan is not None and plan.info["candidates"].shape == (6, N, J)
        assert plan.info["feasible"][plan.info["chosen"]] or plan.info["fallback"]
        cmds = [c for c in commands(res) if c["t"] <= res["stop_t"] and len(c["points"]) > 1]
        assert len(cmds) >= 8, len(cmds)
        for c in cmds:
            assert_inside_limits(np.asarray(c["points"]), hz)
        values = [d["values"] for d in diagnostics(res) if "plan_p_success" in d["values"]]
        assert values and values[-1]["planner"] == "best_of_n x6"
        assert 0.0 <= float(values[-1]["plan_p_success"]) <= 1.0
        if trigger == "always":
            assert "stalled" not in plan.info and "plan_stalled" not in values[-1]
        else:
            assert bool(plan.info["stalled"]) and values[-1]["plan_stalled"] == "True"


WARM_CHECK = """
import sys
import rclpy
from rclpy.context import Context
from rclpy.parameter import Parameter
from wam_ros.ros import conversions as conv
from wam_ros.ros.wam_node import WamNode

built = lambda: conv._typestore.cache_info().currsize == 1 and "sensor_msgs/msg/Image" in conv._typestore().cache
assert conv._typestore.cache_info().currsize == 0, "the typestore was built before the node"
ctx = Context()
rclpy.init(context=ctx)
node = WamNode(context=ctx, parameter_overrides=[Parameter("model_path", value=sys.argv[1]),
                                                 Parameter("backend", value="torch")])
print("warm" if built() else "cold")
node.destroy_node()
rclpy.try_shutdown(context=ctx)
"""


def test_node_builds_the_image_parser_before_the_first_frame(tiny_checkpoint):
    """The raw camera parser (rosbags' typestore + its Image deserializer) is built once, lazily; built on the first
    frame, it held that frame ~0.2 s (benchmarks/ros_latency.py, frame 0). The node builds it while it starts: checked
    in a fresh process, where nothing else has built it."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", WARM_CHECK, str(tiny_checkpoint)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "warm", out.stdout
