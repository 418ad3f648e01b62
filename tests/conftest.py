"""Shared test fixtures.

Every test process gets its own ROS_DOMAIN_ID (derived from the pid) so parallel runs and leftover processes never
cross-talk over DDS. Tests that need ROS use the `ros_context` fixture from tests/ros_fixtures.py (added by the ROS
issue) or call rclpy.init/try_shutdown themselves.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def python() -> str:
    return sys.executable
