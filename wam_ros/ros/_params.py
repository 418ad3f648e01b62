"""Typed parameter declaration for the nodes: every parameter has a typed default; a float parameter also accepts an
integer (`control_hz:=30` from a launch argument) and a clear error names any other wrong type."""

from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node


def declare(node: Node, name: str, default: Any, description: str = "") -> Any:
    """Declare `name` with a typed default and return its value (ints are accepted for floats)."""
    if isinstance(default, float):
        desc = ParameterDescriptor(description=description, dynamic_typing=True)
        value = node.declare_parameter(name, default, desc).value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"parameter {name!r} must be a number, got {value!r}")
        return float(value)
    value = node.declare_parameter(name, default, ParameterDescriptor(description=description)).value
    return value


def spin_node(node_class: type[Node], args: list[str] | None = None) -> None:
    """The body of every node's `main()`: init, spin one node until Ctrl-C / shutdown, clean up."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    rclpy.init(args=args)
    node = None
    try:
        node = node_class()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # a shutdown signal is the normal way to stop a node
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
