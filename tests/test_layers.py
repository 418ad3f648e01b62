"""The package's layers import only downwards (docs/architecture.md).

Every `import wam_ros.X` / `from wam_ros.X import ...` anywhere in a module (top level or inside a function) counts:
a lazy import is still a dependency. A module may import its own layer and any layer below it, never one above.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "wam_ros"

# Bottom to top. Packages on one line share a level and may not import each other either (they are siblings).
LAYERS: list[set[str]] = [
    {"fileio", "robot"},  # durable writes and hashes; robot profiles (every robot fact)
    {"robot_urdf"},  # URDF -> robot profile (uses robot and fileio, so one level above them)
    {"model", "sim", "teleop"},  # pure torch networks | environments + experts | input-device maths
    {"data"},  # formats and I/O: episodes, windows, rosbag2/MCAP, LeRobot
    {"runtime"},  # model-folder contract, backends, the chunk-following policy, safety, surprise
    {
        "export",
        "train",
    },  # ONNX/TensorRT export | training, evaluation, rollouts, campaign, forecaster training
    {"ros"},  # nodes, bringup, message conversions
    {"cli"},  # the `wam` command
]
LEVEL = {name: i for i, names in enumerate(LAYERS) for name in names}


def _part(module_path: Path) -> str:
    rel = module_path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imported_parts(tree: ast.AST) -> set[str]:
    parts = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            bits = name.split(".")
            if bits[0] == "wam_ros" and len(bits) > 1 and bits[1] in LEVEL:
                parts.add(bits[1])
    return parts


def _violations() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent == PACKAGE and path.name == "__init__.py":
            continue
        part = _part(path)
        assert part in LEVEL, (
            f"{path.relative_to(PACKAGE.parent)}: part {part!r} is in no layer; add it to LAYERS"
        )
        for imported in _imported_parts(ast.parse(path.read_text(), str(path))):
            if imported == part:
                continue
            if LEVEL[imported] > LEVEL[part]:
                found.append(f"{path.relative_to(PACKAGE.parent)} ({part}) imports upward: {imported}")
            elif LEVEL[imported] == LEVEL[part]:
                found.append(f"{path.relative_to(PACKAGE.parent)} ({part}) imports its sibling: {imported}")
    return found


def test_no_upward_or_sideways_imports():
    assert _violations() == []


def test_detector_sees_a_lazy_upward_import(tmp_path):
    """The check itself can fail: an import inside a function body of a bottom-layer module is found."""
    tree = ast.parse("def f():\n    from wam_ros.ros import wam_node\n    import wam_ros.runtime.policy\n")
    assert _imported_parts(tree) == {"ros", "runtime"}


@pytest.mark.parametrize("part", sorted(LEVEL))
def test_every_layer_exists(part):
    assert (PACKAGE / part).is_dir() or (PACKAGE / f"{part}.py").is_file()
