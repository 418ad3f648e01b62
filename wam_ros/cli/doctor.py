"""`wam doctor`: check a live ROS 2 graph for a model and a robot profile before anything moves.

    wam doctor --model models/panda_tabletop --robot panda                       # the topics wam_node would use
    wam doctor --model M --robot xarm6 --camera-topic /cam/color/image_raw --controller xarm6_traj_controller
    wam doctor --model M --robot panda --timeout 5 --json                        # machine-readable

Listens for --timeout seconds like wam_node (same QoS, same parsers, same thresholds) and prints one line per check
(OK / WARN / FAIL / SKIP, the measured value, what to fix): the model and the profile, the camera (topic, type,
encoding, rate against the model's control rate, stamps), joint_states (topic, rate, stamps, every model joint mapped
through the profile, positions inside the limits), the camera/joint_states stamp skew, and the controller's command
topic (a subscriber of the right type). Nothing is published. Exit status 0 when nothing FAILs (warnings are printed),
1 listing what to fix, 2 on bad arguments. Checks: wam_ros/ros/doctor.py; guide: docs/robots.md.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # defaults (None here) are wam_node's, from DoctorConfig / WamNodeParams: one source of truth
    parser.add_argument(
        "--model", required=True, help="model directory, .pt or .onnx (wam_node's model_path)"
    )
    parser.add_argument(
        "--robot", help="robot profile name or .yaml path (default: wam_node's: the model's own)"
    )
    parser.add_argument("--backend", help="backend wam_node will use (default: wam_node's, onnxruntime)")
    parser.add_argument(
        "--camera-topic", help="wam_node's camera topic after remapping (default camera/image_raw)"
    )
    parser.add_argument(
        "--camera-topics",
        help="a several-camera model's other cameras, as wam_node's camera_topics (\"wrist=/hand/image_raw\"; "
        "default: the robot profile's `cameras` topics)",
    )
    parser.add_argument("--joint-states-topic", help="wam_node's joint_states topic (default joint_states)")
    parser.add_argument(
        "--controller", help="controller namespace of the command topic (default arm_controller)"
    )
    parser.add_argument("--command-type", help="trajectory | forward (default trajectory)")
    parser.add_argument("--namespace", help="wam_node's namespace (relative topics resolve in it)")
    parser.add_argument(
        "--timeout", type=float, help="seconds to measure, once the inputs are found (default 3)"
    )
    parser.add_argument(
        "--discovery", type=float, help="seconds to wait at most for the inputs' publishers (default 5)"
    )
    parser.add_argument("--max-skew", type=float, help="wam_node's max_skew_s (default 0.25)")
    parser.add_argument("--input-timeout", type=float, help="wam_node's input_timeout_s (default 0.3)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")


OPTIONS = {  # argparse dest -> DoctorConfig field
    "robot": "robot",
    "backend": "backend",
    "camera_topic": "camera_topic",
    "camera_topics": "camera_topics",
    "joint_states_topic": "joint_states_topic",
    "controller": "controller",
    "command_type": "command_type",
    "namespace": "namespace",
    "timeout": "timeout_s",
    "discovery": "discovery_s",
    "max_skew": "max_skew_s",
    "input_timeout": "input_timeout_s",
}


def run(args: argparse.Namespace) -> int:
    from wam_ros.ros.doctor import DoctorConfig, run_doctor

    given = {field: getattr(args, dest) for dest, field in OPTIONS.items() if getattr(args, dest) is not None}
    try:
        cfg = DoctorConfig(model=args.model, **given)
        report = run_doctor(cfg)
    except ValueError as exc:  # bad options (names included): nothing was measured
        print(f"wam doctor: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(report.to_json())
    else:
        print(
            f"wam doctor: model {cfg.model}, robot {cfg.robot or '(the model)'}, measured {cfg.timeout_s:g} s"
        )
        print(report.table())
    return 0 if report.ok else 1
