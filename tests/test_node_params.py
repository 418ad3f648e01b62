"""Node parameters have one set of defaults and one name per concept: every node declares exactly the fields of its
parameters dataclass (wam_ros.ros.parameters), every key of config/*.yaml and every bringup override names one of
them with a value of the field's type, and no node declares a parameter by hand."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import typing
from pathlib import Path

import pytest
import yaml
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.parameter import Parameter
from ros_fixtures import make_tiny_checkpoint, ros_context_fixture  # noqa: F401 - the ros_context fixture

from wam_ros.ros.launch_util import load_graph, node_specs

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config"


def setup_nodes() -> list[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    assign = next(
        n for n in ast.walk(tree) if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "NODES"
    )
    return ast.literal_eval(assign.value)


# every node executable (setup.py NODES) -> its parameters dataclass, by name: sim_node -> SimNodeParams
PARAMS = {exe: "".join(w.capitalize() for w in exe.split("_")) + "Params" for exe in setup_nodes()}
GRAPHS = sorted((CONFIG / "bringup").glob("*.yaml"))
# names that mean one concept on every node (wam_ros.ros.parameters); the old spellings must not come back
RETIRED = {"robot_profile": "robot", "rate_hz": "control_hz"}


def params_class(executable: str) -> type:
    return getattr(importlib.import_module(f"wam_ros.ros.{executable}"), PARAMS[executable])


def fields(executable: str) -> dict[str, tuple[type, object]]:
    cls = params_class(executable)
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f.default) for f in dataclasses.fields(cls)}


def value_fits(kind: object, value: object) -> bool:
    """A YAML / launch value the field's declared ROS type accepts (ints for floats, as declare_params does)."""
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)
    if typing.get_origin(kind) is tuple:
        (item, _) = typing.get_args(kind)
        if not isinstance(value, list | tuple) or not value:
            return False
        if item is float:  # a ROS double array takes floats only (write 1.0, not 1)
            return all(isinstance(v, float) for v in value)
        return all(value_fits(item, v) for v in value)
    raise AssertionError(f"parameter type {kind} is not one declare_params handles")


def config_files() -> dict[Path, set[str]]:
    """Each config/*.yaml -> the executables that load it (its own name, or the graphs that list it)."""
    owners: dict[Path, set[str]] = {p: set() for p in CONFIG.glob("*.yaml")}
    for p in owners:
        if p.stem in PARAMS:
            owners[p].add(p.stem)
    for graph in GRAPHS:
        for spec in node_specs(load_graph(graph)):
            for path in spec.parameter_files:
                owners.setdefault(Path(path).resolve(), set()).add(spec.executable)
    return {p.resolve(): o for p, o in owners.items()}


def test_every_node_has_a_parameters_dataclass_with_descriptions():
    for exe in PARAMS:
        cls = params_class(exe)
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, exe
        for f in dataclasses.fields(cls):
            assert f.metadata.get("description"), f"{exe}.{f.name} has no description"
            assert f.name not in RETIRED, (
                f"{exe} still calls {f.name!r} what is {RETIRED[f.name]!r} elsewhere"
            )
        instance = cls()  # every default is valid for the node's own check
        if hasattr(instance, "check") and exe != "wam_node":
            instance.check()


def test_shared_concepts_have_one_name_and_type_across_nodes():
    seen: dict[str, set[type]] = {}
    for exe in PARAMS:
        for name, (kind, _) in fields(exe).items():
            seen.setdefault(name, set()).add(kind)
    for name in ("robot", "control_hz", "controller"):
        assert len(seen.get(name, ())) == 1, f"{name!r} is typed {seen.get(name)} across nodes"
    assert {"robot", "control_hz"} <= set(fields("teleop_node")) & set(fields("wam_node"))
    assert "robot" in fields("recorder_node") and "robot" in fields("sim_node")


def test_no_node_declares_a_parameter_by_hand():
    for exe in PARAMS:
        tree = ast.parse((ROOT / "wam_ros" / "ros" / f"{exe}.py").read_text())
        calls = {
            getattr(n.func, "attr", getattr(n.func, "id", ""))
            for n in ast.walk(tree)
            if isinstance(n, ast.Call)
        }
        assert "declare_params" in calls, f"{exe} does not use declare_params"
        assert not calls & {"declare", "declare_parameter", "declare_parameters"}, f"{exe} declares by hand"


@pytest.mark.parametrize("path", sorted(config_files()), ids=lambda p: p.name)
def test_config_keys_are_declared_with_the_right_type(path):
    owners = config_files()[path]
    assert owners, f"{path.name} is loaded by no node (not <node>.yaml and in no bringup graph)"
    doc = yaml.safe_load(path.read_text())
    for section, body in doc.items():
        params = (body or {}).get("ros__parameters")
        assert isinstance(params, dict), f"{path.name}: {section} has no ros__parameters"
        for exe in owners:
            declared = fields(exe)
            for key, value in params.items():
                assert key in declared, f"{path.name}: {key!r} is not a parameter of {exe} ({PARAMS[exe]})"
                assert value_fits(declared[key][0], value), (
                    f"{path.name}: {key}={value!r} does not fit {exe}'s {declared[key][0]}"
                )


@pytest.mark.parametrize("graph_file", GRAPHS, ids=lambda p: p.stem)
def test_bringup_overrides_name_declared_parameters(graph_file):
    for spec in node_specs(load_graph(graph_file)):  # launch-argument defaults substituted
        declared = fields(spec.executable)
        for key, value in spec.overrides.items():
            assert key in declared, (
                f"{graph_file.name}: override {key!r} is not a parameter of {spec.executable}"
            )
            assert value_fits(declared[key][0], value), f"{graph_file.name}: {key}={value!r}"


def test_the_checker_itself_refuses_a_retired_name_and_a_wrong_type():
    declared = fields("teleop_node")
    assert "rate_hz" not in declared and "robot_profile" not in declared
    assert value_fits(declared["control_hz"][0], 30) and not value_fits(declared["control_hz"][0], "30")
    assert not value_fits(
        declared["joy_joint_scale"][0], [1, 1]
    )  # ints in a double array: rclpy refuses them
    assert value_fits(declared["joy_joint_axes"][0], [0, 1, -1]) and not value_fits(bool, 1)


@pytest.mark.parametrize("exe", ["sim_node", "recorder_node", "teleop_node"])
def test_a_running_node_declares_exactly_its_dataclass(exe, ros_context, tmp_path):
    ctx, _ = ros_context
    module = importlib.import_module(f"wam_ros.ros.{exe}")
    overrides = {"recorder_node": {"output_dir": str(tmp_path)}, "teleop_node": {"keyboard": False}}.get(
        exe, {}
    )
    node = module.NODE_CLASS(
        context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()]
    )
    try:
        names = set(node._parameters) - {"use_sim_time", "start_type_description_service"}
        assert names == set(fields(exe))
        defaults = params_class(exe)()
        for name in names - set(overrides):
            got = node.get_parameter(name).value
            want = getattr(defaults, name)
            assert (list(got) if isinstance(want, tuple) else got) == (
                list(want) if isinstance(want, tuple) else want
            ), name
        assert node.params == dataclasses.replace(defaults, **overrides)
    finally:
        node.destroy_node()


def test_a_wrong_type_is_a_clear_error(ros_context):
    from wam_ros.ros.recorder_node import RecorderNode
    from wam_ros.ros.sim_node import SimNode
    from wam_ros.ros.teleop_node import TeleopNode

    ctx, _ = ros_context
    with pytest.raises(InvalidParameterTypeException, match="image_size"):  # rclpy's own check
        SimNode(context=ctx, parameter_overrides=[Parameter("image_size", value=64.5)])
    with pytest.raises(ValueError, match="camera_encoding must be one of"):
        SimNode(context=ctx, parameter_overrides=[Parameter("camera_encoding", value="yuv")])
    with pytest.raises(ValueError, match="control_hz must be > 0"):
        TeleopNode(context=ctx, parameter_overrides=[Parameter("control_hz", value=0.0)])
    with pytest.raises(ValueError, match="'topics' \\(1\\) and 'types' \\(2\\)"):
        RecorderNode(context=ctx, parameter_overrides=[Parameter("topics", value=["/joint_states"])])


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory)


def test_wam_node_declares_exactly_its_dataclass(tiny_checkpoint):
    from ros_fixtures import wam_node_running

    with wam_node_running(tiny_checkpoint) as (node, _):
        names = set(node._parameters) - {"use_sim_time", "start_type_description_service"}
        assert names == set(fields("wam_node"))
