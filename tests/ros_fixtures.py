"""Shared fixtures for the ROS tests: a tiny real WAM checkpoint, wam_node running in-process in its own rclpy
Context (spun in a thread by the nodes' executor, wam_ros.ros.executor.make_executor: EventsExecutor by default), and the stand-in robot process (wam_ros.ros._robot_probe)
talking to it over real DDS. Import with `from ros_fixtures import ...` (tests/ is on sys.path)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import Executor
from rclpy.parameter import Parameter

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MODEL = ROOT / "models" / "panda_tabletop"


def make_tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny WAM saved with the model package: real model, real runtime, just not trained.
    Use from a session fixture: `@pytest.fixture(scope="session") def tiny(tmp_path_factory): return make_...`."""
    import torch

    from wam_ros.model.checkpoint import save_checkpoint
    from wam_ros.model.config import WamConfig
    from wam_ros.model.modeling import WorldActionModel

    torch.manual_seed(0)
    model = WorldActionModel(WamConfig.preset("tiny"))
    return save_checkpoint(tmp_path_factory.mktemp("tiny") / "model.pt", model)


class SpinThread:
    """Spin an executor in a background thread; remember any exception a callback raised."""

    def __init__(self, executor: Executor, context: Context) -> None:
        self.executor, self.context, self.error = executor, context, None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.stop.is_set() and self.context.ok():
                self.executor.spin_once(timeout_sec=0.05)
        except BaseException as exc:  # noqa: BLE001 - reported to the test, which fails on it
            self.error = exc

    def join(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


@pytest.fixture(name="ros_context")
def ros_context_fixture() -> Iterator[tuple[Context, Executor]]:
    """Fixture `ros_context`: a fresh rclpy Context and a SingleThreadedExecutor on it, shut down after the test
    (every node a test makes with `context=ctx` lives on that test's own DDS participant). In a test file:
    `from ros_fixtures import ros_context_fixture  # noqa: F401`, then `def test_x(ros_context): ctx, ex = ...`."""
    from rclpy.executors import SingleThreadedExecutor

    ctx = Context()
    rclpy.init(context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    try:
        yield ctx, executor
    finally:
        executor.shutdown()
        rclpy.try_shutdown(context=ctx)


def spin_until(executor: Executor, done, timeout_s: float, period_s: float = 0.02) -> bool:
    """Spin `executor` until done() is true (True) or timeout_s passes (done()'s last value)."""
    import time

    end = time.monotonic() + timeout_s
    while time.monotonic() < end and not done():
        executor.spin_once(timeout_sec=period_s)
    return done()


@contextlib.contextmanager
def wam_node_running(checkpoint: Path, **params: object) -> Iterator[tuple[object, SpinThread]]:
    """wam_node (torch backend on `checkpoint`) in its own Context, spinning in a thread."""
    from wam_ros.ros.executor import make_executor
    from wam_ros.ros.wam_node import WamNode

    ctx = Context()
    rclpy.init(context=ctx)
    overrides = {"model_path": str(checkpoint), "backend": "torch", "threads": 1, **params}
    node = WamNode(context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    executor = make_executor(ctx)
    executor.add_node(node)
    spinner = SpinThread(executor, ctx)
    try:
        yield node, spinner
    finally:
        spinner.join()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def run_probe(tmp_path: Path, scenario: str, *args: str, timeout: float = 60.0) -> dict:
    """Run the stand-in robot process; return its JSON result (fails the test if it could not match wam_node)."""
    out = tmp_path / f"probe_{scenario}.json"
    proc = subprocess.run(
        [sys.executable, "-m", "wam_ros.ros._robot_probe", scenario, "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
        cwd=ROOT,
    )
    assert out.exists(), f"robot probe wrote no result (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    result = json.loads(out.read_text())
    assert result["matched"], "robot probe never matched wam_node's topics"
    return result


def commands(result: dict) -> list[dict]:
    return [e for e in result["events"] if e["kind"] == "command"]


def diagnostics(result: dict) -> list[dict]:
    return [e for e in result["events"] if e["kind"] == "diag"]
