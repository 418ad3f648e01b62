"""The `wam` command: one entry point, one subcommand per job.

    wam --help                 list the subcommands
    wam <command> --help       the options of one subcommand

Each subcommand lives in its own module, imported only when that subcommand runs (so `wam --help` is instant and
never imports torch or rclpy). A module provides `add_arguments(parser)` and `run(args) -> int`; `run` turns the
parsed options into the library's config dataclass (`config_from_args`) and calls the library with it.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
from typing import Any, TypeVar

Config = TypeVar("Config")

# name -> (module, one-line help). Keep this table the single list of subcommands.
COMMANDS: dict[str, tuple[str, str]] = {
    "sim": ("wam_ros.cli.sim", "run a simulated task with the scripted expert (optionally render a GIF)"),
    "collect": (
        "wam_ros.cli.collect",
        "collect expert demonstrations in sim into episodes (parallel, resumable)",
    ),
    "campaign": (
        "wam_ros.cli.campaign",
        "fall campaign: push a legged robot over N times; report results",
    ),
    "train": ("wam_ros.cli.train", "train the WAM on episodes (checkpoints, resume, DDP via torchrun)"),
    "dream": ("wam_ros.cli.dream", "imagination rollout: real vs imagined frames side by side"),
    "critic": (
        "wam_ros.cli.critic",
        "counterfactual data for the planner's critic (sim-labelled candidates) and its refit",
    ),
    "instruct": ("wam_ros.cli.instruct", "what a model understands of an instruction, word by word"),
    "eval": ("wam_ros.cli.eval", "offline + closed-loop evaluation beside baselines"),
    "export": (
        "wam_ros.cli.export",
        "export a checkpoint to ONNX (full + action-only, fp32 + fp16) / TensorRT",
    ),
    "bench": ("wam_ros.cli.bench", "latency of every available backend side by side"),
    "data": ("wam_ros.cli.data", "import rosbag2 (MCAP) demos into episodes; export to LeRobot v3"),
    "bringup": (
        "wam_ros.cli.bringup",
        "start a node graph in one process from config/ (no ros2 launch needed)",
    ),
    "demo": ("wam_ros.cli.demo", "closed-loop sim demo over ROS 2 topics with the shipped model"),
    "robot": ("wam_ros.cli.robot", "robot profiles: config/robots/NAME.yaml from a URDF (robot add)"),
    "doctor": ("wam_ros.cli.doctor", "pre-flight check of a live ROS 2 graph for a model and a robot"),
}


def config_from_args(cls: type[Config], args: argparse.Namespace, **given: Any) -> Config:
    """`cls` (a config dataclass) from parsed options: a field takes the option of its own name where the parser has
    one (else its default); `given` sets the fields whose option has another name or needs converting."""
    named = {
        f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.init and hasattr(args, f.name)
    }
    return cls(**{**named, **given})


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wam",
        description="wam_ros: World Action Model for ROS 2 — sim, data, training, export, runtime, nodes.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `wam <command> --help` for the options of a command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:  # only the chosen command's module is imported
            importlib.import_module(module_name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command is not None and command not in COMMANDS:
        build_parser().print_usage(sys.stderr)
        print(f"wam: unknown command {command!r}; expected one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        parser = build_parser(command)
    except ModuleNotFoundError as exc:
        if exc.name != COMMANDS[command][0]:
            raise
        print(f"wam {command}: not available in this build ({exc.name} is missing)", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("wam: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
