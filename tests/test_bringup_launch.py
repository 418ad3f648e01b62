"""Bringup graphs (config/bringup/*.yaml) and the launch files that read them: every executable, parameter file,
parameter and argument they name exists; `wam bringup` composes the same graph in one process."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rclpy
import yaml
from ros_fixtures import make_tiny_checkpoint
from std_srvs.srv import Trigger

from wam_ros.ros.bringup import Bringup
from wam_ros.ros.launch_util import load_graph, node_specs, parse_cli_arguments, substitute, used_arguments

ROOT = Path(__file__).resolve().parent.parent
GRAPHS = sorted((ROOT / "config" / "bringup").glob("*.yaml"))
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))
DECLARE = re.compile(r"""declare(?:_parameter)?\(\s*(?:self,\s*)?["']([A-Za-z_][A-Za-z0-9_.]*)["']""")
DECLARE_PREFIX = re.compile(
    r"""declare(?:_parameter)?\(\s*(?:self,\s*)?f["']([A-Za-z0-9_.]*)\{"""
)  # f"joy_{name}"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory)


def setup_nodes() -> list[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    assign = next(
        n for n in ast.walk(tree) if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "NODES"
    )
    return ast.literal_eval(assign.value)


def test_there_are_graphs_and_launch_files():
    assert {"sim_demo", "robot"} <= {g.stem for g in GRAPHS}
    assert {"sim_demo.launch.py", "robot.launch.py"} <= {f.name for f in LAUNCH_FILES}


@pytest.mark.parametrize("launch_file", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_reads_its_graph(launch_file):
    tree = ast.parse(launch_file.read_text())
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in funcs
    calls = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "launch_description"
    ]
    assert calls, f"{launch_file.name} does not call wam_ros.ros.launch_util.launch_description()"
    name = ast.literal_eval(calls[0].args[0])
    assert name == launch_file.name.removesuffix(".launch.py")
    assert (ROOT / "config" / "bringup" / f"{name}.yaml").is_file()
    assert ast.get_docstring(tree)


@pytest.mark.parametrize("graph_file", GRAPHS, ids=lambda p: p.stem)
def test_graph_names_only_things_that_exist(graph_file):
    graph = load_graph(graph_file)
    declared_args = set(graph["arguments"])
    assert used_arguments(graph) <= declared_args, "a $(arg X) is not declared"
    assert declared_args <= used_arguments(graph), "a declared argument is never used"
    for spec in node_specs(graph):  # defaults resolve; parameter files exist (checked inside)
        assert spec.executable in setup_nodes(), f"{spec.executable} is not a console script in setup.py"
        src = (ROOT / "wam_ros" / "ros" / f"{spec.executable}.py").read_text()
        assert "NODE_CLASS = " in src and "def main(" in src
        declared, prefixes = set(DECLARE.findall(src)), tuple(DECLARE_PREFIX.findall(src))
        declared |= _dataclass_params(spec.executable)
        for path in spec.parameter_files:
            assert path.is_file()
            for section in yaml.safe_load(path.read_text()).values():
                unknown = {
                    k for k in section["ros__parameters"] if k not in declared and not k.startswith(prefixes)
                }
                assert not unknown, (
                    f"{path.name} sets parameters {unknown} that {spec.executable} does not declare"
                )
        assert set(spec.overrides) <= declared, f"overrides {set(spec.overrides) - declared} not declared"


def _dataclass_params(executable: str) -> set[str]:
    """Parameters a node declares from its parameters dataclass (wam_ros.ros.parameters), by the AST: a frozen
    dataclass whose fields are `name: type = param(...)`."""
    tree = ast.parse((ROOT / "wam_ros" / "ros" / f"{executable}.py").read_text())
    return {
        node.target.id
        for cls in ast.walk(tree)
        if isinstance(cls, ast.ClassDef)
        for node in cls.body
        if isinstance(node, ast.AnnAssign)
        and isinstance(node.value, ast.Call)
        and getattr(node.value.func, "id", "") == "param"
    }


def test_substitution_types_and_errors():
    args = {"hz": "30", "flag": "true", "name": "reach the red target", "path": "/a/b"}
    assert substitute("$(arg hz)", args) == 30 and substitute("$(arg flag)", args) is True
    assert substitute("$(arg name)", args) == "reach the red target"
    assert substitute("$(arg path)/model.pt", args) == "/a/b/model.pt"
    assert substitute("$(find-pkg-share wam_ros)/models", args) == str(ROOT / "models")
    # an argument whose (default) value names the package share resolves too: every graph's default model exists
    share = {"m": "$(find-pkg-share wam_ros)/models/panda_tabletop"}
    assert substitute("$(arg m)", share) == str(ROOT / "models" / "panda_tabletop")
    assert substitute("x=$(arg m)", share) == f"x={ROOT / 'models' / 'panda_tabletop'}"
    for graph in ("sim_demo", "robot", "fall_guard_demo"):
        for spec in node_specs(load_graph(graph)):
            if "model_path" in spec.overrides:
                assert Path(spec.overrides["model_path"]).exists(), (graph, spec.overrides["model_path"])
    with pytest.raises(ValueError, match=r"\$\(arg nope\) is not a declared argument"):
        substitute("x/$(arg nope)", args)
    with pytest.raises(ValueError, match="NAME:=VALUE"):
        parse_cli_arguments(["model=x"])
    with pytest.raises(ValueError, match="unknown argument"):
        node_specs(load_graph("sim_demo"), {"bogus": "1"})
    with pytest.raises(FileNotFoundError, match="known graphs"):
        load_graph("no_such_graph")


def test_bad_graph_files_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes:\n  - executable: wam_node\n    params: [x]\n")
    with pytest.raises(ValueError, match=r"unknown keys \['params'\]"):
        load_graph(bad)
    bad.write_text("nodes:\n  - executable: wam_node\n    parameters: [config/nope.yaml]\n")
    with pytest.raises(FileNotFoundError, match="parameter file not found"):
        node_specs(load_graph(bad))


def test_bringup_sim_demo_closes_the_loop_with_a_real_model(tiny_checkpoint):
    with Bringup("sim_demo", {"model": str(tiny_checkpoint), "backend": "torch", "seed": "10003"}) as b:
        assert set(b.nodes) == {"sim", "wam"}
        sim, wam = b.nodes["sim"], b.nodes["wam"]
        start = sim.target.copy()
        assert b.spin_until(lambda: wam.stats["commands"] >= 10 and sim.env.steps >= 10, 20.0)
        assert sim.plan is not None  # the sim is executing wam_node's trajectories
        assert not np.allclose(sim.target, start)
        assert sim.seed == 10003 and wam.control_hz == 10.0
        assert wam.instruction == sim.env.instruction  # the sim announced the task over wam/instruction
        # a new episode over ROS: sim/reset (next seed) and wam/reset (policy history) services
        client = rclpy.create_node("reset_client", context=b.context)
        b.add_node(client)
        for name in ("sim/reset", "wam/reset"):
            fut = client.create_client(Trigger, name).call_async(Trigger.Request())
            assert b.spin_until(fut.done, 10.0), f"{name} did not answer"
            assert fut.result().success, fut.result().message
        assert sim.episode == 1 and wam.runner.frames_seen <= 1


def test_bringup_robot_graph_applies_arguments_and_remappings(tiny_checkpoint):
    args = {
        "model": str(tiny_checkpoint),
        "backend": "torch",
        "controller": "my_ctrl",
        "command_type": "forward",
        "camera_topic": "/cam/front/image",
        "instruction": "reach the blue target",
    }
    with Bringup("robot", args) as b:
        wam = b.nodes["wam"]
        topics = {s.topic_name for s in wam.subscriptions}
        assert {"/cam/front/image", "/joint_states"} <= topics
        # on a real robot the instruction comes from the parameter only (nothing else on the graph retasks the arm)
        assert "/wam/instruction" not in topics and wam.params.unknown_words == "hold"
        assert wam.cmd_pub.topic_name == "/my_ctrl/commands"
        assert wam.instruction == "reach the blue target" and wam.surprise_hold is True
        assert wam.publish_prediction is True
        assert b.environment == {}  # a robot graph keeps the system's discovery range
    more = {"instruction_topic": "true", "unknown_words": "warn", "publish_predicted_image": "false"}
    with Bringup("robot", {**args, **more}) as b:
        assert "/wam/instruction" in {s.topic_name for s in b.nodes["wam"].subscriptions}
        assert b.nodes["wam"].publish_prediction is False


def test_sim_graphs_keep_discovery_on_this_host_unless_asked_otherwise():
    from wam_ros.ros.launch_util import discovery_environment, load_graph

    for name in ("sim_demo", "teleop_record", "fall_guard_demo"):
        graph = load_graph(name)
        assert discovery_environment(graph, {}) == {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
        assert discovery_environment(graph, {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}) == {}
        assert discovery_environment(graph, {"ROS_LOCALHOST_ONLY": "0"}) == {}
    assert discovery_environment(load_graph("robot"), {}) == {}


def test_bringup_refuses_undeclared_parameters(tmp_path, tiny_checkpoint):
    graph = tmp_path / "typo.yaml"
    graph.write_text(
        yaml.safe_dump(
            {
                "nodes": [
                    {
                        "executable": "wam_node",
                        "name": "wam",
                        "parameters": [str(ROOT / "config" / "wam_node.yaml")],
                        "overrides": {
                            "model_path": str(tiny_checkpoint),
                            "backend": "torch",
                            "contol_hz": 5.0,
                        },
                    }
                ]
            }
        )
    )
    with pytest.raises(ValueError, match=r"does not declare parameter\(s\) \['contol_hz'\]"):
        Bringup(str(graph))


def test_wam_bringup_cli_reports_bad_arguments():
    out = subprocess.run(
        [sys.executable, "-m", "wam_ros.cli", "bringup", "sim_demo", "bogus:=1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "unknown argument(s) ['bogus']" in out.stdout


def test_wam_demo_without_a_model_is_a_clear_error(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "wam_ros.cli", "demo", "--model", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "model not found" in out.stdout and "nope" in out.stdout
