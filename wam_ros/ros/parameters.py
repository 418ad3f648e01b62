"""Node parameters declared from dataclasses: one set of defaults per node, with descriptions and types.

Each node has a frozen dataclass (e.g. `WamNodeParams`) whose fields are its ROS parameters; a field's default is the
parameter's default and `param("description")` documents it:

    @dataclass(frozen=True)
    class SimNodeParams:
        control_hz: float = param(10.0, "control rate (Hz)")
        robot: str = param("panda", "robot profile name or path")

    params = declare_params(node, SimNodeParams)     # declares every field, returns a SimNodeParams

`config/<node>.yaml` may only set parameters the dataclass declares (tests/test_node_params.py checks every file), so
a YAML, a launch argument and the code cannot disagree on a name; the values in those files are the deployment's
choices, the defaults live here. A float parameter also accepts an integer (`control_hz:=30` from a launch argument)
and a clear error names any other wrong type.

Names shared across nodes (one name per concept): `robot` (robot profile), `control_hz` (control rate), `controller`
(ros2_control controller namespace), `instruction`.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node

P = TypeVar("P")


def param(default: Any, description: str, *, read_only: bool = False) -> Any:
    """A dataclass field that is a ROS parameter: its default and its description."""
    return dataclasses.field(default=default, metadata={"description": description, "read_only": read_only})


def describe(params_class: type) -> dict[str, tuple[Any, str]]:
    """{name: (default, description)} of a node's parameters dataclass."""
    return {f.name: (f.default, f.metadata.get("description", "")) for f in dataclasses.fields(params_class)}


def declare_params(node: Node, params_class: type[P]) -> P:
    """Declare every field of `params_class` on `node` (overrides from the command line, YAML and launch apply) and
    return the values as an instance of it. Raises ValueError naming a parameter of the wrong type."""
    hints = typing.get_type_hints(params_class)
    values = {}
    for f in dataclasses.fields(params_class):
        values[f.name] = _declare(node, f.name, f.default, hints[f.name], f.metadata)
    return params_class(**values)


def _declare(node: Node, name: str, default: Any, kind: Any, meta: dict) -> Any:
    description = meta.get("description", "")
    read_only = bool(meta.get("read_only", False))
    if kind is float:
        desc = ParameterDescriptor(description=description, dynamic_typing=True, read_only=read_only)
        value = node.declare_parameter(name, float(default), desc).value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"parameter {name!r} must be a number, got {value!r}")
        return float(value)
    desc = ParameterDescriptor(description=description, read_only=read_only)
    value = node.declare_parameter(name, default, desc).value
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"parameter {name!r} must be an integer, got {value!r}")
    if kind is bool and not isinstance(value, bool):
        raise ValueError(f"parameter {name!r} must be true or false, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise ValueError(f"parameter {name!r} must be a string, got {value!r}")
    return value


def declare(node: Node, name: str, default: Any, description: str = "") -> Any:
    """Declare one parameter with a typed default and return its value (ints are accepted for floats).

    Kept for nodes not yet moved to a parameters dataclass; new code uses `declare_params`."""
    return _declare(node, name, default, type(default), {"description": description})
