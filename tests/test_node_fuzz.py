"""wam_node against an outsider robot over real DDS (issue 15, item 2): a separately written Panda driver
(tests/outsider_robot.py: rclpy + standard messages only) streams a standard Panda's /joint_states (finger joints, no
`panda_gripper`), camera frames and instructions, mixed with absurd, malformed and out-of-order ones, and records
every command and diagnostic; tests/fuzz_check.py judges them against what it sent (the safety invariant, no command
from invalid input, refusals with reasons, unknown words named, no long echo). Also: instruction_topic:=false,
unknown_words:=hold, and a backend failing with its own exception type or NaN actions (hold + ERROR, no crash)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fuzz_check import ERROR, WARN, Rules, analyse
from ros_fixtures import make_tiny_checkpoint, wam_node_running

from wam_ros.robot import RobotProfile

ROOT = Path(__file__).resolve().parent.parent
OUTSIDER = ROOT / "tests" / "outsider_robot.py"
PROFILE = RobotProfile.load("panda")
DEFAULT_INSTRUCTION = "reach the red target"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory)


def start_outsider(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / "outsider.json"
    cmd = [sys.executable, str(OUTSIDER), *args, "--out", str(out)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=dict(os.environ), cwd=ROOT)
    return proc, out


def outsider_result(proc: subprocess.Popen, out: Path, timeout: float = 60.0) -> dict:
    _, stderr = proc.communicate(timeout=timeout)
    assert out.exists(), f"the outsider robot wrote nothing (rc {proc.returncode}):\n{stderr[-3000:]}"
    result = json.loads(out.read_text())
    assert result["matched"], "the outsider robot never matched wam_node's topics"
    return result


def run_outsider(tmp_path: Path, *args: str, timeout: float = 60.0) -> dict:
    return outsider_result(*start_outsider(tmp_path, *args), timeout=timeout)


def since(result: dict, t: float) -> float:
    return t - result["t0"]


def test_fuzzing_outsider_robot_gets_only_safe_commands(tiny_checkpoint, tmp_path):
    hz = 10.0
    with wam_node_running(tiny_checkpoint, control_hz=hz, max_image_pixels=100_000) as (node, spinner):
        res = run_outsider(tmp_path, "fuzz", "--duration", "13", "--seed", "0", "--huge-side", "400")
        refused = node.stats["refused"]
    assert spinner.error is None, f"wam_node crashed: {spinner.error!r}"  # no callback raised
    report = analyse(res, Rules.for_profile(PROFILE, hz))
    summary = json.dumps({k: v for k, v in report.items() if not isinstance(v, list)}, indent=1)
    assert report["windows"].get("invalid", 0) >= 1 and report["windows"].get("mixed", 0) >= 1, summary
    assert report["sent_by_kind"]["invalid"] >= 300, summary
    assert report["violations"] == [], report["violations"][:5]
    assert report["commands_from_invalid_input"] == [], report["commands_from_invalid_input"][:5]
    # a standard Panda (finger joints, other devices' joints, any order) is driven: motion, and holds after gaps
    assert not any("panda_gripper" in str(s.get("cls")) for s in res["sent"])
    assert report["motion"] >= 20 and report["holds"] >= 1, summary
    assert report["missing_reasons"] == [], report["missing_reasons"]
    assert refused >= report["sent_by_kind"]["invalid"] // 2  # (best-effort sensors: some may be dropped)
    assert report["unknown_not_warned"] == [], report["unknown_not_warned"]
    assert report["echo"] == [], report["echo"][:3]
    kinds = {s["cls"] for s in res["sent"] if s["stream"] == "instruction"}
    assert kinds >= {"unknown_words", "long_unknown", "too_long", "empty", "blank"}, (
        kinds
    )  # (seed 0's schedule)


def test_instruction_topic_false_ignores_wam_instruction(tiny_checkpoint, tmp_path):
    hz = 10.0
    with wam_node_running(tiny_checkpoint, control_hz=hz, instruction_topic=False) as (node, spinner):
        res = run_outsider(
            tmp_path,
            "stream",
            "--duration",
            "3.2",
            "--stop",
            "2.4",
            "--instruction",
            "0.6=reach the zqvbbw target",
            "--instruction",
            "1.2=" + "push the cube " * 800,
            "--instruction",
            "1.6=",
        )
        instruction, refused = node.instruction, node.stats["refused"]
    assert spinner.error is None, f"wam_node crashed: {spinner.error!r}"
    assert res["instruction_subscribers"] == 0  # nothing subscribes to wam/instruction
    assert instruction == DEFAULT_INSTRUCTION and refused == 0
    diags = res["diagnostics"]
    assert diags and all(d["values"]["instruction"] == DEFAULT_INSTRUCTION for d in diags)
    assert not any("zqvbbw" in d["message"] or "zqvbbw" in d["values"]["unknown_words"] for d in diags)
    report = analyse(res, Rules.for_profile(PROFILE, hz))
    assert report["violations"] == [] and report["commands_from_invalid_input"] == [], report
    # the standard Panda's joint_states drive the node; after the stop, one hold at the last reading, the gripper
    # width read as finger1 + finger2
    assert report["motion"] >= 10, report
    holds = [c for c in res["commands"] if len(c["points"]) == 1]
    assert len(holds) == 1 and since(res, holds[0]["t"]) > 2.4
    last = [s for s in res["sent"] if s["stream"] == "joints"][-1]["q"]
    lo, hi = np.asarray(PROFILE.position_lower), np.asarray(PROFILE.position_upper)
    np.testing.assert_allclose(holds[0]["points"][0], np.clip(last, lo, hi), atol=1e-12)


def test_unknown_words_hold_holds_until_a_known_instruction(tiny_checkpoint, tmp_path):
    hz = 10.0
    with wam_node_running(tiny_checkpoint, control_hz=hz, unknown_words="hold") as (node, spinner):
        res = run_outsider(
            tmp_path,
            "stream",
            "--duration",
            "4.4",
            "--instruction",
            "1.3=reach the zqkkdw target",
            "--instruction",
            f"2.9={DEFAULT_INSTRUCTION}",
        )
    assert spinner.error is None, f"wam_node crashed: {spinner.error!r}"
    t_unknown, t_known = (s["t"] for s in res["sent"] if s["stream"] == "instruction")
    cmds = res["commands"]
    motion = [c for c in cmds if len(c["points"]) > 1]
    assert len([c for c in motion if c["t"] < t_unknown]) >= 5
    # the unknown instruction: one hold, then nothing moves until a known instruction (allow one command in flight)
    between = [c for c in cmds if t_unknown + 0.25 < c["t"] < t_known]
    holds = [c for c in cmds if len(c["points"]) == 1 and t_unknown < c["t"] < t_known]
    assert len(holds) == 1 and all(len(c["points"]) == 1 for c in between), [
        len(c["points"]) for c in between
    ]
    assert len([c for c in motion if c["t"] > t_known + 0.2]) >= 5  # moving again
    warn = [d for d in res["diagnostics"] if d["level"] == WARN and t_unknown <= d["t"] <= t_known]
    assert warn and any("holding: unknown instruction words: zqkkdw" in d["message"] for d in warn), warn[:2]
    assert any("zqkkdw" in r["msg"] for r in res["rosout"]), "no WARN log line names the unknown word"
    assert not any(d["level"] == ERROR for d in res["diagnostics"])
    report = analyse(res, Rules.for_profile(PROFILE, hz))
    assert report["violations"] == [] and report["commands_from_invalid_input"] == [], report


class EngineFailure(RuntimeError):
    """An exception type of a backend's own (as TensorRT or a vendor runtime raises), unknown to wam_ros."""


class FailingBackend:
    """The loaded backend, failing the way a foreign runtime does: its own exception type, or NaN actions."""

    def __init__(self, inner: object, mode: str) -> None:
        self.inner, self.mode = inner, mode

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def run(self, frames, joint_pos, tokens):
        if self.mode == "raise":
            raise EngineFailure("engine execution failed: CUDA error 700 (illegal address)")
        action, next_frame = self.inner.run(frames, joint_pos, tokens)
        return np.full_like(action, np.nan), next_frame


def test_a_backend_failure_holds_with_error_and_never_crashes(tiny_checkpoint, tmp_path):
    hz = 10.0
    with wam_node_running(tiny_checkpoint, control_hz=hz) as (node, spinner):
        inner, marks = node.policy.backend, {}
        proc, out = start_outsider(tmp_path, "stream", "--duration", "7", "--stop", "6.5")
        end = time.time() + 30
        while node.stats["commands"] < 5 and time.time() < end:  # moving first
            time.sleep(0.05)
        for mode in ("raise", "nan", None):  # 1 s of each failure, then the backend works again
            marks[mode] = time.time()
            node.policy.backend = inner if mode is None else FailingBackend(inner, mode)
            time.sleep(1.0)
        res = outsider_result(proc, out)
    assert spinner.error is None, f"wam_node crashed: {spinner.error!r}"
    t_fail, t_ok = marks["raise"], marks[None]
    cmds = res["commands"]
    motion = [c for c in cmds if len(c["points"]) > 1]
    assert len([c for c in motion if c["t"] < t_fail]) >= 3
    holds = [c for c in cmds if t_fail < c["t"] < t_ok and len(c["points"]) == 1]
    assert len(holds) == 1, f"expected exactly one hold while the backend failed, got {len(holds)}"
    assert not [c for c in motion if t_fail + 0.25 < c["t"] < t_ok]  # (one computed before may be in flight)
    assert len([c for c in motion if t_ok + 0.2 < c["t"] < res["t0"] + 6.0]) >= 5  # moving again
    errors = " ".join(d["message"] for d in res["diagnostics"] if d["level"] == ERROR)
    assert "refused: model: EngineFailure: engine execution failed" in errors
    assert "unusable action chunk" in errors
    report = analyse(res, Rules.for_profile(PROFILE, hz))
    assert report["violations"] == [] and report["commands_from_invalid_input"] == [], report


def test_the_outsider_speaks_only_ros_and_standard_messages():
    """The outsider is another team's driver: rclpy, standard message packages and the standard library only."""
    import ast

    allowed = {"rclpy", "sensor_msgs", "std_msgs", "trajectory_msgs", "diagnostic_msgs", "rcl_interfaces"}
    allowed |= set(sys.stdlib_module_names) | {"__future__"}
    tree = ast.parse(OUTSIDER.read_text())
    roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    roots |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert roots <= allowed, sorted(roots - allowed)
