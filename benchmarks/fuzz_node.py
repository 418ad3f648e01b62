"""Fuzz wam_node over real DDS with an outsider robot: >= 10,000 messages, good and bad; crashes, invariant violations,
commands from invalid input and refusals (issue 15).

    nice .venv/bin/python benchmarks/fuzz_node.py                          # 10,000 messages, shipped model, onnxruntime
    .venv/bin/python benchmarks/fuzz_node.py --messages 2000 --model /tmp/tiny/model.pt --backend torch

wam_node runs in this process (its executor spun in a thread, as in tests/ros_fixtures.py: an exception escaping any
callback is a crash); tests/outsider_robot.py, a Panda driver that imports only rclpy and standard messages, runs in
another process and publishes /joint_states at 100 Hz (panda_joint1..7 + the two finger joints, shuffled, with other
devices' joints) and camera frames at 30 Hz in windows of only valid, mixed (half bad) and only bad messages, plus
instructions (unknown words, 150 and 10,000 characters, empty, blank). tests/fuzz_check.py judges every command and
diagnostic it received against what it sent. Goals: 0 crashes, 0 invariant violations, 0 commands from invalid input.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=10_000, help="messages the outsider robot sends")
    ap.add_argument("--model", default=str(ROOT / "models" / "panda_tabletop"))
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--control-hz", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--max-image-pixels", type=int, default=100_000, help="the node's cap (the huge images exceed it)"
    )
    ap.add_argument("--json", default="", help="also write the report to this JSON file")
    a = ap.parse_args()
    os.environ.setdefault("ROS_DOMAIN_ID", str(200 + os.getpid() % 32))

    from fuzz_check import Rules, analyse
    from ros_fixtures import wam_node_running

    from wam_ros.robot import RobotProfile

    profile = RobotProfile.load("panda")
    out = Path(tempfile.mkdtemp()) / "outsider.json"
    params = dict(backend=a.backend, control_hz=a.control_hz, max_image_pixels=a.max_image_pixels)
    t_start = time.time()
    with wam_node_running(Path(a.model), **params) as (node, spinner):
        proc = subprocess.run(
            [sys.executable, str(ROOT / "tests" / "outsider_robot.py"), "fuzz", "--messages", str(a.messages)]
            + ["--duration", str(a.messages / 50 + 60), "--seed", str(a.seed), "--out", str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        stats = {k: v for k, v in node.stats.items() if isinstance(v, int)}
        alive = spinner.thread.is_alive()
    if not out.exists():
        print(f"the outsider robot wrote nothing (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
        return 2
    result = json.loads(out.read_text())
    report = analyse(result, Rules.for_profile(profile, a.control_hz))
    crashes = int(spinner.error is not None or not alive)
    summary = {
        "command": "nice .venv/bin/python benchmarks/fuzz_node.py " + " ".join(sys.argv[1:]),
        "model": a.model,
        "backend": a.backend,
        "seconds": round(result.get("t_end", time.time()) - result.get("t0", t_start), 1),
        "crashes": crashes,
        "crash": repr(spinner.error) if spinner.error else "",
        "invariant_violations": len(report["violations"]),
        "commands_from_invalid_input": len(report["commands_from_invalid_input"]),
        "node_stats": stats,
        **{k: v for k, v in report.items() if not isinstance(v, list)},
        "examples": {k: v[:5] for k, v in report.items() if isinstance(v, list) and v},
        "missing_reasons": report["missing_reasons"],
        "unknown_not_warned": report["unknown_not_warned"],
        "echo": len(report["echo"]),
    }
    print(json.dumps(summary, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(summary, indent=1))
    bad = crashes or summary["invariant_violations"] or summary["commands_from_invalid_input"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
