"""`wam demo` (what `make demo` runs): the closed loop over ROS 2 topics in simulation with the shipped model.

    wam demo                                  # 5 seeded episodes, models/panda_tabletop on onnxruntime CPU
    wam demo --episodes 10 --seed 20000 --backend torch --out runs/demo
    wam demo --robot xarm6                    # the xArm6 in the sim, driven by models/xarm6_tabletop

Runs wam_ros.ros.demo.run_demo and prints the success rate, the achieved control rate, inference p50/p99, the node's
ROS overhead and missed cycles; writes demo.gif and summary.json into --out. Exit status 0, or 2 on bad arguments.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--robot",
        default="panda",
        help="robot profile the sim builds (config/robots/NAME.yaml; default panda)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="model directory, .pt or .onnx (default: the shipped models/ROBOT_tabletop)",
    )
    parser.add_argument("--backend", default="onnxruntime", help="auto | torch | onnxruntime | tensorrt")
    parser.add_argument("--episodes", type=int, default=5, help="seeded episodes to run")
    parser.add_argument("--seed", type=int, default=10_000, help="seed of the first episode (then +1 each)")
    parser.add_argument("--out", default="runs/demo", help="folder for demo.gif and summary.json")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds before an unfinished episode fails"
    )
    parser.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (0-232)")
    parser.add_argument(
        "--planner",
        default="none",
        choices=["none", "best_of_n"],
        help="best_of_n: wam_node imagines --candidates chunks per decision and executes the best (an imagining "
        "model; the GIF then shows the chosen chunk's imagined next frame beside the camera)",
    )
    parser.add_argument("--candidates", type=int, default=16, help="planner candidates per decision")


def run(args: argparse.Namespace) -> int:
    if args.episodes < 1:
        print(f"wam demo: --episodes must be >= 1, got {args.episodes}")
        return 2
    from wam_ros.ros.launch_util import package_root

    model = args.model or str(package_root() / "models" / f"{args.robot}_tabletop")
    if not Path(model).exists():
        print(
            f"wam demo: model not found: {model} (the shipped models/{args.robot}_tabletop, or pass --model)"
        )
        return 2
    from wam_ros.ros.demo import run_demo

    try:
        s = run_demo(
            model,
            args.backend,
            args.episodes,
            args.seed,
            Path(args.out),
            args.timeout,
            args.domain_id,
            planner=args.planner,
            candidates=args.candidates,
            robot=args.robot,
        )
    except (ValueError, FileNotFoundError) as exc:  # a robot the model was not trained for, a missing profile
        print(f"wam demo: {exc}")
        return 2
    print(
        f"wam demo: {s['successes']}/{s['episodes']} episodes succeeded (success rate {s['success_rate']:.0%}), "
        f"seeds {s['seeds'][0]}..{s['seeds'][-1]}"
    )
    print(
        f"  control rate   {s['control_hz_achieved']:.2f} Hz achieved (target {s['control_hz_target']:g} Hz), "
        f"missed cycles {s['missed_cycles']}/{s['ticks']}"
    )
    print(
        f"  inference      p50 {s['inference_ms_p50']:.2f} ms   p99 {s['inference_ms_p99']:.2f} ms ({s['backend']})"
    )
    print(
        f"  ROS overhead   p50 {s['ros_overhead_ms_p50']:.2f} ms   p99 {s['ros_overhead_ms_p99']:.2f} ms "
        f"(node step minus predict: conversions, safety filter, publishing)"
    )
    if "gif" in s:
        print(f"  camera | imagined frames: {s['gif']}")
    print(f"  summary: {Path(args.out) / 'summary.json'}")
    return 0
