"""Node graphs from config/bringup/<name>.yaml: the one description read by `wam bringup` and by launch/*.launch.py.

    graph = load_graph("sim_demo")                                   # validated dict
    specs = node_specs(graph, {"model": "models/x"})                 # [NodeSpec(executable, name, ...)]
    # launch/<name>.launch.py is two lines:
    from wam_ros.ros.launch_util import launch_description
    def generate_launch_description(): return launch_description("sim_demo")

YAML format (docs/interfaces.md "Node modules and bringup graphs"): `arguments` (name -> {default, description}) and
`nodes` (executable, name, optional namespace, parameters [package-relative ros__parameters files], overrides
{param: value}, remappings {from: to}). Values may use `$(arg NAME)` and `$(find-pkg-share wam_ros)`; a value that is
exactly one `$(arg NAME)` is parsed as YAML (so `control_hz:=30` is a number), as ros2 launch does.
This module needs neither rclpy nor launch, except launch_description() which imports launch/launch_ros when called.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wam_ros.robot import config_dir

PACKAGE = "wam_ros"
ARG = re.compile(r"\$\(arg ([A-Za-z_][A-Za-z0-9_]*)\)")
SHARE = "$(find-pkg-share wam_ros)"
NODE_KEYS = {"executable", "name", "namespace", "parameters", "overrides", "remappings"}
GRAPH_KEYS = {"arguments", "nodes", "discovery_range"}
DISCOVERY_ENV = "ROS_AUTOMATIC_DISCOVERY_RANGE"
DISCOVERY_RANGES = ("localhost", "subnet", "off", "system_default")


def discovery_environment(graph: dict, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a graph's processes should get: a graph with `discovery_range: localhost` (the simulation
    graphs) keeps DDS discovery on this host (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST), so a sim on a lab network
    neither hears nor commands a real robot, unless the user asked otherwise (ROS_AUTOMATIC_DISCOVERY_RANGE or the
    older ROS_LOCALHOST_ONLY already set). Returns only the variables to set."""
    environ = dict(os.environ if environ is None else environ)
    wanted = graph.get("discovery_range")
    if (
        not wanted
        or wanted == "system_default"
        or DISCOVERY_ENV in environ
        or "ROS_LOCALHOST_ONLY" in environ
    ):
        return {}
    return {DISCOVERY_ENV: str(wanted).upper()}


def package_root() -> Path:
    """The package's share root: the source tree, or share/wam_ros of a colcon install."""
    return config_dir().parent


def graph_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = config_dir() / "bringup" / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (config_dir() / "bringup").glob("*.yaml"))
        raise FileNotFoundError(
            f"bringup graph {str(name_or_path)!r} not found at {path}; known graphs: {known}"
        )
    return path


def load_graph(name_or_path: str | Path) -> dict:
    """Read and validate a bringup graph; errors name the file, the node and the bad key."""
    path = graph_path(name_or_path)
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list) or not data["nodes"]:
        raise ValueError(f"{path}: expected a mapping with a non-empty 'nodes' list")
    args = data.setdefault("arguments", {}) or {}
    if not isinstance(args, dict) or not all(isinstance(v, dict) for v in args.values()):
        raise ValueError(f"{path}: 'arguments' must map names to {{default, description}}")
    data["arguments"] = args
    unknown = set(data) - GRAPH_KEYS
    if unknown:
        raise ValueError(
            f"{path}: unknown top-level keys {sorted(unknown)}; expected some of {sorted(GRAPH_KEYS)}"
        )
    if data.get("discovery_range", "system_default") not in DISCOVERY_RANGES:
        raise ValueError(
            f"{path}: discovery_range must be one of {list(DISCOVERY_RANGES)}, got {data['discovery_range']!r}"
        )
    for i, node in enumerate(data["nodes"]):
        where = f"{path}: nodes[{i}]"
        if not isinstance(node, dict) or not isinstance(node.get("executable"), str):
            raise ValueError(f"{where}: expected a mapping with an 'executable' string")
        unknown = set(node) - NODE_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; expected some of {sorted(NODE_KEYS)}")
        if not isinstance(node.get("parameters", []), list):
            raise ValueError(f"{where}: 'parameters' must be a list of files")
        for key in ("overrides", "remappings"):
            if not isinstance(node.get(key, {}), dict):
                raise ValueError(f"{where}: {key!r} must be a mapping")
    data["_path"] = str(path)
    return data


def used_arguments(graph: dict) -> set[str]:
    """Every NAME that appears as $(arg NAME) anywhere in the graph's nodes."""
    return set(ARG.findall(yaml.safe_dump(graph["nodes"])))


def resolve_arguments(graph: dict, given: dict[str, str] | None = None) -> dict[str, Any]:
    """Declared defaults updated by `given`; unknown names and missing required arguments are errors."""
    declared = graph["arguments"]
    given = dict(given or {})
    unknown = set(given) - set(declared)
    if unknown:
        raise ValueError(
            f"unknown argument(s) {sorted(unknown)} for {graph['_path']}; declared: {sorted(declared)}"
        )
    out = {k: v.get("default") for k, v in declared.items()}
    out.update(given)
    missing = [k for k, v in out.items() if v is None]
    if missing:
        raise ValueError(
            f"argument(s) {missing} have no default: pass {' '.join(m + ':=VALUE' for m in missing)}"
        )
    return out


def substitute(value: Any, args: dict[str, Any]) -> Any:
    """Replace $(arg NAME) and $(find-pkg-share wam_ros) in strings (recursively in lists and dicts)."""
    if isinstance(value, list):
        return [substitute(v, args) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, args) for k, v in value.items()}
    if not isinstance(value, str):
        return value
    value = value.replace(SHARE, str(package_root()))
    whole = ARG.fullmatch(value)
    if whole:
        name = whole.group(1)
        if name not in args:
            raise ValueError(f"$(arg {name}) is not a declared argument (declared: {sorted(args)})")
        v = args[name]
        if isinstance(
            v, str
        ):  # an argument's value (its default, say) may hold $(find-pkg-share wam_ros) too
            v = v.replace(SHARE, str(package_root()))
        return yaml.safe_load(v) if isinstance(v, str) and v.strip() else v

    def repl(m: re.Match) -> str:
        if m.group(1) not in args:
            raise ValueError(f"$(arg {m.group(1)}) is not a declared argument (declared: {sorted(args)})")
        return str(args[m.group(1)]).replace(SHARE, str(package_root()))

    return ARG.sub(repl, value)


@dataclass
class NodeSpec:
    executable: str
    name: str
    namespace: str = ""
    parameter_files: list[Path] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    remappings: list[tuple[str, str]] = field(default_factory=list)


def node_specs(graph: dict, given: dict[str, str] | None = None) -> list[NodeSpec]:
    """Fully resolved nodes of a graph: arguments substituted, parameter files made absolute and checked."""
    args = resolve_arguments(graph, given)
    root = package_root()
    specs = []
    for node in graph["nodes"]:
        files = []
        for f in substitute(node.get("parameters", []), args):
            path = Path(f) if Path(f).is_absolute() else root / f
            if not path.is_file():
                raise FileNotFoundError(
                    f"{graph['_path']}: node {node.get('name')!r}: parameter file not found: {path}"
                )
            files.append(path)
        remaps = [
            (str(substitute(k, args)), str(substitute(v, args)))
            for k, v in node.get("remappings", {}).items()
        ]
        specs.append(
            NodeSpec(
                node["executable"],
                str(node.get("name", node["executable"])),
                str(node.get("namespace", "")),
                files,
                substitute(node.get("overrides", {}), args),
                remaps,
            )
        )
    return specs


def parse_cli_arguments(items: list[str]) -> dict[str, str]:
    """['model:=x', 'controller:=y'] -> {'model': 'x', 'controller': 'y'} (ros2 launch syntax)."""
    out = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise ValueError(f"launch arguments are NAME:=VALUE, got {item!r}")
        out[name] = value
    return out


def launch_description(
    name: str,
):  # -> launch.LaunchDescription (launch is only importable under ros2 launch)
    """A LaunchDescription for graph `name`: declared arguments + one launch_ros Node per graph node."""
    from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
    from launch_ros.actions import Node

    from launch import LaunchDescription

    graph = load_graph(name)

    def setup(context, *_, **__):
        given = {
            k: context.launch_configurations[k]
            for k in graph["arguments"]
            if k in context.launch_configurations
        }
        return [
            Node(
                package=PACKAGE,
                executable=s.executable,
                name=s.name,
                namespace=s.namespace or None,
                parameters=[*map(str, s.parameter_files), s.overrides],
                remappings=s.remappings,
                output="screen",
            )
            for s in node_specs(graph, given)
        ]

    declared = [
        DeclareLaunchArgument(
            k,
            description=v.get("description", ""),
            **(
                {"default_value": str(v["default"]).replace(SHARE, str(package_root()))}
                if v.get("default") is not None
                else {}
            ),
        )
        for k, v in graph["arguments"].items()
    ]
    env = [SetEnvironmentVariable(k, v) for k, v in discovery_environment(graph).items()]
    return LaunchDescription([*declared, *env, OpaqueFunction(function=setup)])
