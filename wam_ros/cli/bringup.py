"""`wam bringup <graph>`: start a node graph from config/bringup/<graph>.yaml in one process (no ros2 launch needed).

    wam bringup sim_demo                          # sim_node + wam_node with the shipped model
    wam bringup robot model:=models/panda_tabletop controller:=arm_controller --duration 60

Arguments NAME:=VALUE as for ros2 launch; the graph runs in wam_ros.ros.bringup.Bringup. Exit status 0 after
--duration or Ctrl-C, 2 on an unknown graph, argument or parameter.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("graph", help="graph name in config/bringup/ (sim_demo, robot, ...) or a YAML path")
    parser.add_argument(
        "arguments", nargs="*", metavar="NAME:=VALUE", help="launch arguments, as for ros2 launch"
    )
    parser.add_argument("--duration", type=float, default=0.0, help="seconds to run (0 = until Ctrl-C)")
    parser.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID for this graph (0-232)")


def run(args: argparse.Namespace) -> int:
    from rclpy.executors import ExternalShutdownException

    from wam_ros.ros.bringup import Bringup
    from wam_ros.ros.launch_util import parse_cli_arguments

    try:
        given = parse_cli_arguments(args.arguments)
        bringup = Bringup(args.graph, given, args.domain_id)
    except (ValueError, FileNotFoundError) as exc:
        print(f"wam bringup: {exc}")
        return 2
    names = ", ".join(f"{s.name} ({s.executable})" for s in bringup.specs)
    print(f"wam bringup {args.graph}: running {names}; Ctrl-C to stop")
    try:
        bringup.spin_until_shutdown(args.duration)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # Ctrl-C / SIGTERM: the normal way to stop
    finally:
        bringup.shutdown()
    return 0
