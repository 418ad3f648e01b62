"""The nodes' executor and main loop.

Executor: rclpy's EventsExecutor by default (`WAM_ROS_EXECUTOR=events`), the SingleThreadedExecutor with
`WAM_ROS_EXECUTOR=single`. The EventsExecutor dispatches a callback for about a quarter of the CPU time (measured in
benchmarks/RESULTS.md, "ROS 2 nodes"); it is still `rclpy.experimental`, and in rclpy 9.1.2 (Kilted wheels) its
blocking `spin()` / `spin_once()` without a timeout never dispatch anything and spin a core, so every loop here calls
`spin_once(timeout_sec=...)`, which works (timers, subscriptions, services, parameters, SIGINT/SIGTERM)."""

from __future__ import annotations

import os
import sys

from rclpy.context import Context
from rclpy.executors import Executor
from rclpy.node import Node

EXECUTOR_ENV = "WAM_ROS_EXECUTOR"
EXECUTORS = ("events", "single")


def executor_kind(kind: str | None = None) -> str:
    """`kind`, else $WAM_ROS_EXECUTOR, else "events"; raises ValueError naming anything else."""
    kind = kind or os.environ.get(EXECUTOR_ENV, "") or "events"
    if kind not in EXECUTORS:
        raise ValueError(f"executor must be one of {list(EXECUTORS)} (${EXECUTOR_ENV}), got {kind!r}")
    return kind


def make_executor(context: Context | None = None, kind: str | None = None) -> Executor:
    """The nodes' executor (see the module docstring). Spin it only with `spin_once(timeout_sec=...)`."""
    if executor_kind(kind) == "events":
        from rclpy.experimental import EventsExecutor

        return EventsExecutor(context=context)
    from rclpy.executors import SingleThreadedExecutor

    return SingleThreadedExecutor(context=context)


def freeze_startup_objects() -> None:
    """Collect once, then move every object alive now (the model, torch / onnxruntime modules, the nodes) to the
    garbage collector's permanent generation. In a process holding a wam_node, a full collection took 139 ms
    (benchmarks/node_step.py), traversing the start-up objects that never die; after the freeze, microseconds. The
    per-message garbage of the control loop is still collected as usual. Call it once the nodes are built."""
    import gc

    gc.collect()
    gc.freeze()


def spin_node(node_class: type[Node], args: list[str] | None = None) -> None:
    """The body of every node's `main()`: init, spin one node until Ctrl-C / shutdown, clean up."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    rclpy.init(args=args)
    node = executor = None
    try:
        try:
            node = node_class()
        except (
            ValueError,
            FileNotFoundError,
        ) as exc:  # bad parameters, a missing or damaged model: say it in one line
            print(f"{node_class.__name__}: cannot start: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        executor = make_executor()
        executor.add_node(node)
        freeze_startup_objects()
        while rclpy.ok():
            executor.spin_once(
                timeout_sec=1.0
            )  # returns at each callback; the timeout only bounds a shutdown check
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # a shutdown signal is the normal way to stop a node
    finally:
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
