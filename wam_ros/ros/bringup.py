"""Start a node graph from config/bringup/<graph>.yaml in one process (no ros2 launch needed): `wam bringup`.

    with Bringup("sim_demo", {"model": "models/panda_tabletop"}) as b:    # sim_node + wam_node
        b.spin_for(5.0)
    wam bringup robot model:=models/panda_tabletop controller:=arm_controller --duration 60   # wam_ros/cli/bringup.py

The same YAML is what launch/<graph>.launch.py reads (wam_ros.ros.launch_util), so node names, parameter files,
overrides and remappings cannot drift between the two. Nodes are composed in one rclpy Context and spun by one
single-threaded executor: rclpy's EventsExecutor unless WAM_ROS_EXECUTOR=single (wam_ros.ros.executor.make_executor;
the MultiThreadedExecutor has a long latency tail with images, docs/environment.md). Each node
module defines NODE_CLASS; parameter files go in as `--params-file`, remappings and the node name as `-r` rules, and
overrides as parameter_overrides (they win over the files). A parameter a file or override names but the node does
not declare is an error (a typo must not be silently ignored).
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from typing import Any

import rclpy
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter

from wam_ros.ros.executor import executor_kind, freeze_startup_objects, make_executor
from wam_ros.ros.launch_util import NodeSpec, discovery_environment, load_graph, node_specs


def _cli_args(spec: NodeSpec) -> list[str]:
    out = ["--ros-args", "-r", f"__node:={spec.name}"]
    if spec.namespace:
        out += ["-r", f"__ns:={spec.namespace if spec.namespace.startswith('/') else '/' + spec.namespace}"]
    for path in spec.parameter_files:
        out += ["--params-file", str(path)]
    for src, dst in spec.remappings:
        out += ["-r", f"{src}:={dst}"]
    return out


def _file_parameter_names(spec: NodeSpec) -> set[str]:
    import yaml

    names: set[str] = set()
    for path in spec.parameter_files:
        for section in (yaml.safe_load(path.read_text()) or {}).values():
            names |= set((section or {}).get("ros__parameters", {}) or {})
    return names


class Bringup:
    """A node graph running in one process: `with Bringup("sim_demo", {"model": ...}) as b: b.spin_for(5)`."""

    def __init__(
        self,
        graph: str,
        arguments: dict[str, str] | None = None,
        domain_id: int | None = None,
        executor: str | None = None,
    ) -> None:
        self.graph = load_graph(graph)
        self.specs = node_specs(self.graph, arguments)
        kind = executor_kind(executor)  # a bad name fails before any ROS state exists
        self.environment = discovery_environment(
            self.graph
        )  # rcl reads it at init: set around rclpy.init only
        self.context = Context()
        init_kwargs: dict[str, Any] = {"context": self.context, "args": []}  # never parse `wam`'s own argv
        if domain_id is not None:
            init_kwargs["domain_id"] = domain_id
        saved = {k: os.environ.get(k) for k in self.environment}
        os.environ.update(self.environment)
        try:
            rclpy.init(**init_kwargs)
        finally:  # this process's other contexts (tests, a host program) keep their own setting
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.executor = make_executor(self.context, kind)
        self.nodes: dict[str, Node] = {}
        try:
            for spec in self.specs:
                self.nodes[spec.name] = self._start(spec)
        except BaseException:
            self.shutdown()
            raise
        freeze_startup_objects()

    def _start(self, spec: NodeSpec) -> Node:
        module = importlib.import_module(f"wam_ros.ros.{spec.executable}")
        cls = getattr(module, "NODE_CLASS", None)
        if cls is None:
            raise ValueError(f"wam_ros.ros.{spec.executable} defines no NODE_CLASS (docs/interfaces.md)")
        overrides = [Parameter(k, value=v) for k, v in spec.overrides.items()]
        node = cls(context=self.context, cli_args=_cli_args(spec), parameter_overrides=overrides)
        undeclared = sorted(
            n for n in set(spec.overrides) | _file_parameter_names(spec) if not node.has_parameter(n)
        )
        if undeclared:
            node.destroy_node()
            raise ValueError(
                f"node {spec.name!r} ({spec.executable}) does not declare parameter(s) {undeclared} "
                f"named in {self.graph['_path']} or its parameter files"
            )
        self.executor.add_node(node)
        return node

    def spin_once(self, timeout_sec: float = 0.1) -> None:
        self.executor.spin_once(timeout_sec=timeout_sec)

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while self.context.ok() and time.monotonic() < end:
            self.executor.spin_once(timeout_sec=min(0.05, max(0.0, end - time.monotonic())))

    def spin_until(self, done: Callable[[], bool], timeout_s: float) -> bool:
        """Spin until done() is true (returns True) or timeout_s passes (returns False)."""
        end = time.monotonic() + timeout_s
        while self.context.ok() and time.monotonic() < end:
            if done():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return done()

    def spin_until_shutdown(self, duration_s: float = 0.0) -> None:
        """Spin for `duration_s` seconds (0: until the context shuts down). Ctrl-C / SIGTERM propagate."""
        if duration_s > 0:
            self.spin_for(duration_s)
        else:
            while self.context.ok():
                self.spin_once(0.1)

    def add_node(self, node: Node) -> None:
        """Add a helper node (e.g. the demo's driver) created with context=bringup.context."""
        self.executor.add_node(node)

    def shutdown(self) -> None:
        for node in list(self.nodes.values()):
            self.executor.remove_node(node)
            node.destroy_node()
        self.nodes.clear()
        self.executor.shutdown()
        rclpy.try_shutdown(context=self.context)

    def __enter__(self) -> Bringup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
