"""ament_python setup for wam_ros.

Works both in a colcon workspace (`colcon build`, then `ros2 run wam_ros <node>`) and with plain pip
(`pip install -e .`, what `make demo` / `make test` do).
"""

from glob import glob
from pathlib import Path

from setuptools import Extension, find_packages, setup

PACKAGE = "wam_ros"

# Every ROS node is a console script `wam_ros.ros.<node>:main` (one node per file).
NODES = ["wam_node", "sim_node", "teleop_node", "recorder_node", "legged_sim_node", "fall_guard_node"]


def tree(src: str) -> list[tuple[str, list[str]]]:
    """data_files entries that install `src/` recursively under share/<pkg>/src/."""
    out: dict[str, list[str]] = {}
    for path in sorted(Path(src).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            out.setdefault(f"share/{PACKAGE}/{path.parent}", []).append(str(path))
    return sorted(out.items())


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["tests", "tests.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        *tree("config"),
        *tree("models"),
    ],
    # The camera resize's C kernels (docs/resize.md). Optional: without a C compiler the install goes on and
    # wam_ros.data.images computes the same pixels with numpy and cv2. -ffp-contract=off: no fused multiply-adds,
    # which would round differently from OpenCV; -fno-math-errno: lrintf as one instruction.
    ext_modules=[
        Extension(
            f"{PACKAGE}.data._area",
            [f"{PACKAGE}/data/_area.c"],
            extra_compile_args=["-O3", "-ffp-contract=off", "-fno-math-errno"],
            libraries=["m"],
            optional=True,
        )
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="wam_ros developers",
    maintainer_email="wam_ros@example.com",
    description="World Action Model for ROS 2 (sim, teleop, training, ONNX/TensorRT export, safe nodes)",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "wam = wam_ros.cli:main",
            *[f"{node} = {PACKAGE}.ros.{node}:main" for node in NODES],
        ],
    },
)
