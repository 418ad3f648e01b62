"""Robot profiles from URDFs (wam_ros.robot_urdf, `wam robot add`): standard URDFs from pybullet_data that our code did
not write, read back and compared with PyBullet's own parser and with config/robots/panda.yaml; damaged URDFs get a
clear UrdfError naming what to fix."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pybullet as p
import pybullet_data
import pytest
import yaml

from wam_ros.cli import main as wam
from wam_ros.robot import JointReader, RobotProfile, config_dir
from wam_ros.robot_urdf import (
    ENCODINGS,
    UrdfError,
    UrdfProfileConfig,
    parse_urdf,
    profile_from_urdf,
    write_profile,
)
from wam_ros.runtime.safety import SafetyFilter, SafetyLimits, UnsafeInput

DATA = Path(pybullet_data.getDataPath())
PANDA_DATASHEET_MARGIN = (
    0.0698  # rad: config/robots/panda.yaml (Franka's limits) = pybullet's panda.urdf less 4 deg
)


def pybullet_joints(urdf: str) -> dict[str, dict]:
    """Every joint as PyBullet's own URDF parser reads it: {name: type, lower, upper, velocity}."""
    client = p.connect(p.DIRECT)
    try:
        body = p.loadURDF(str(DATA / urdf), useFixedBase=True, physicsClientId=client)
        out = {}
        for i in range(p.getNumJoints(body, physicsClientId=client)):
            info = p.getJointInfo(body, i, physicsClientId=client)
            out[info[1].decode()] = {
                "type": info[2],
                "lower": info[8],
                "upper": info[9],
                "velocity": info[11],
            }
        return out
    finally:
        p.disconnect(client)


def check_against_pybullet(profile: RobotProfile, urdf: str) -> None:
    """Every model joint that is a URDF joint has PyBullet's limits (revolute/prismatic) and velocity."""
    ref = pybullet_joints(urdf)
    for i, name in enumerate(profile.joint_names):
        if name not in ref:
            continue  # a width joint (mapped from two fingers)
        assert ref[name]["type"] in (p.JOINT_REVOLUTE, p.JOINT_PRISMATIC), name
        assert profile.position_lower[i] == pytest.approx(ref[name]["lower"], abs=1e-9), name
        assert profile.position_upper[i] == pytest.approx(ref[name]["upper"], abs=1e-9), name
        assert profile.velocity_limit[i] == pytest.approx(ref[name]["velocity"], abs=1e-9), name


# ---- standard URDFs ------------------------------------------------------------------------------------------------
def test_panda_urdf_gives_the_panda_profile():
    """pybullet's panda.urdf -> the joints, joint mapping and velocity limits of config/robots/panda.yaml; its position
    limits are the URDF's, which are panda.yaml's (Franka's datasheet) widened by 0.0698 rad: with --margin 0.0698
    they are panda.yaml's to 1e-9."""
    shipped = RobotProfile.load("panda")
    profile, notes = profile_from_urdf(UrdfProfileConfig(urdf="franka_panda/panda.urdf", name="panda"))
    assert profile.joint_names == shipped.joint_names
    assert (
        profile.joint_mapping
        == shipped.joint_mapping
        == {"panda_gripper": {"sum": ["panda_finger_joint1", "panda_finger_joint2"]}}
    )
    assert profile.velocity_limit == shipped.velocity_limit
    assert profile.urdf == shipped.urdf == "franka_panda/panda.urdf"
    check_against_pybullet(profile, "franka_panda/panda.urdf")
    np.testing.assert_allclose(
        np.asarray(profile.position_lower[:7]) + PANDA_DATASHEET_MARGIN, shipped.position_lower[:7], atol=1e-9
    )
    assert any("panda_finger_joint1 + panda_finger_joint2" in n for n in notes)

    margin, _ = profile_from_urdf(
        UrdfProfileConfig(urdf="franka_panda/panda.urdf", name="panda", margin=PANDA_DATASHEET_MARGIN)
    )
    for key in ("position_lower", "position_upper", "velocity_limit"):
        np.testing.assert_allclose(getattr(margin, key), getattr(shipped, key), atol=1e-9, err_msg=key)
    assert margin.camera == shipped.camera and margin.measurement_tolerance == shipped.measurement_tolerance
    # the gripper: the width of the two fingers, read from a real Panda's /joint_states (both finger joints)
    reader = JointReader(margin, margin.joint_names)
    names = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1", "panda_finger_joint2"]
    q = reader.read(names, [0.1, 0.2, 0.3, -1.0, 0.0, 1.0, 0.5, 0.03, 0.025])
    assert q[-1] == pytest.approx(0.055) and q[:7].tolist() == [0.1, 0.2, 0.3, -1.0, 0.0, 1.0, 0.5]
    assert margin.home[-1] == 0.08  # a width gripper's home is open
    assert all(
        lo <= h <= hi
        for lo, h, hi in zip(margin.position_lower, margin.home, margin.position_upper, strict=True)
    )


def test_xarm6_with_gripper_mimic_joints_and_transmissions():
    """xArm6: six arm joints; the gripper is drive_joint, which five joints mimic (not model joints); the joint names
    inside <transmission> blocks are not read as joints."""
    profile, notes = profile_from_urdf(UrdfProfileConfig(urdf="xarm/xarm6_with_gripper.urdf", name="xarm6"))
    assert profile.joint_names == [f"joint{i}" for i in range(1, 7)] + ["drive_joint"]
    assert profile.joint_mapping == {}
    check_against_pybullet(profile, "xarm/xarm6_with_gripper.urdf")
    assert profile.position_lower[0] == pytest.approx(
        -2 * math.pi, abs=1e-10
    )  # the URDF's own +-6.28318530718
    assert profile.position_upper[2] == 0.19198 and profile.velocity_limit == [3.14] * 6 + [2.0]
    assert any("mimic it" in n and "left_finger_joint" in n for n in notes)
    assert profile.home == [0.0] * 7
    # the tool: the hand where the gripper branches, the drive joint open at 0 (noted: the URDF cannot say)
    assert profile.ee_link == profile.wrist_link == "xarm_gripper_base_link"
    assert profile.gripper == {"joint": "drive_joint", "open": 0.0, "closed": 0.85}
    assert any("assumed open at its lower limit" in n for n in notes)
    parsed = parse_urdf(
        "xarm/xarm6_with_gripper.urdf"
    )  # the same joints, in the same order, as PyBullet's parser
    assert [j.name for j in parsed.joints] == list(pybullet_joints("xarm/xarm6_with_gripper.urdf"))


def test_kuka_iiwa_has_no_gripper_and_its_velocity_is_flagged():
    profile, notes = profile_from_urdf(UrdfProfileConfig(urdf="kuka_iiwa/model.urdf", name="kuka_iiwa"))
    assert profile.joint_names == [f"lbr_iiwa_joint_{i}" for i in range(1, 8)]
    check_against_pybullet(profile, "kuka_iiwa/model.urdf")
    assert profile.velocity_limit == [10.0] * 7
    assert any("unusually high" in n for n in notes)  # pybullet_data's 10 rad/s is no real iiwa's


# config/robots/xarm6.yaml: the home pose the tabletop sim starts from (the tool above the table, pointing down) and
# the xArm gripper's tool centre point, 172 mm along the flange's z axis (UFactory's TCP offset for its gripper)
XARM6_FLAGS = ["--home", "0,-0.3,-1.1,0,1.4,0,0", "--ee-offset", "0,0,0.172"]


@pytest.mark.parametrize(
    ("name", "urdf", "flags"),
    [("xarm6", "xarm/xarm6_with_gripper.urdf", XARM6_FLAGS), ("kuka_iiwa", "kuka_iiwa/model.urdf", [])],
)
def test_committed_profiles_are_the_tools_output(name, urdf, flags, tmp_path):
    """config/robots/xarm6.yaml and kuka_iiwa.yaml are exactly what `wam robot add` writes (kept in sync), and the
    stack reads them: the safety filter refuses a measurement far outside their limits."""
    path = config_dir() / "robots" / f"{name}.yaml"
    assert wam(["robot", "add", "--urdf", urdf, "--name", name, *flags, "--out", str(tmp_path)]) == 0
    assert path.read_text() == (tmp_path / f"{name}.yaml").read_text()
    profile = RobotProfile.load(tmp_path / f"{name}.yaml")
    loaded = RobotProfile.load(name)
    assert loaded == profile
    safety = SafetyFilter(SafetyLimits.from_profile(loaded), 0.1)
    safety.check_measurement(np.asarray(loaded.home))
    far = np.asarray(loaded.home)
    far[1] = loaded.position_upper[1] + 0.5
    with pytest.raises(UnsafeInput, match=loaded.joint_names[1]):
        safety.check_measurement(far)


def test_encodings_are_what_the_node_reads():
    from wam_ros.ros.conversions import CHANNELS

    assert set(ENCODINGS) == set(CHANNELS)


# ---- hand-written URDFs: joint kinds -----------------------------------------------------------------------------
def urdf_text(joints: str, name: str = "arm") -> str:
    return f'<?xml version="1.0"?>\n<robot name="{name}">\n<link name="base"/>\n{joints}\n</robot>\n'


def joint(name, jtype, parent, child, limit='lower="-1" upper="1" velocity="2"', extra=""):
    lim = f"<limit {limit} effort='10'/>" if limit is not None else ""
    return (
        f'<link name="{child}"/><joint name="{name}" type="{jtype}"><parent link="{parent}"/>'
        f'<child link="{child}"/>{lim}{extra}</joint>'
    )


def write(tmp_path: Path, text: str, name: str = "robot.urdf") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_continuous_fixed_and_two_finger_gripper(tmp_path):
    """Fixed joints are skipped, a continuous joint gets +-2 pi (and a note), two prismatic fingers become one width."""
    text = urdf_text(
        joint("base_fixed", "fixed", "base", "l0", None)
        + joint("shoulder", "revolute", "l0", "l1", 'lower="-1.5" upper="1.5" velocity="1.0"')
        + joint("wrist", "continuous", "l1", "l2", 'velocity="3.0"')
        + joint("flange", "fixed", "l2", "hand", None)
        + joint("left", "prismatic", "hand", "fl", 'lower="0" upper="0.03" velocity="0.1"')
        + joint("right", "prismatic", "hand", "fr", 'lower="0" upper="0.03" velocity="0.15"')
    )
    profile, notes = profile_from_urdf(UrdfProfileConfig(urdf=str(write(tmp_path, text)), name="toy"))
    assert profile.joint_names == ["shoulder", "wrist", "toy_gripper"]
    assert profile.position_lower == [-1.5, pytest.approx(-2 * math.pi), 0.0]
    assert profile.position_upper == [1.5, pytest.approx(2 * math.pi), 0.06]
    assert profile.velocity_limit == [1.0, 3.0, 0.1]
    assert profile.joint_mapping == {"toy_gripper": {"sum": ["left", "right"]}}
    assert any("wrist: continuous" in n for n in notes)
    narrow, notes = profile_from_urdf(
        UrdfProfileConfig(urdf=str(write(tmp_path, text)), name="toy", continuous_range=math.pi, home="mid")
    )
    assert narrow.position_upper[1] == pytest.approx(math.pi) and narrow.home == [0.0, 0.0, 0.03]
    bare, _ = profile_from_urdf(
        UrdfProfileConfig(urdf=str(write(tmp_path, text)), name="toy", gripper="none")
    )
    assert bare.joint_names == ["shoulder", "wrist"]
    one, _ = profile_from_urdf(UrdfProfileConfig(urdf=str(write(tmp_path, text)), name="toy", gripper="left"))
    assert one.joint_names == ["shoulder", "wrist", "left"] and one.position_upper[-1] == 0.03
    chosen, _ = profile_from_urdf(
        UrdfProfileConfig(urdf=str(write(tmp_path, text)), name="toy", joints=("wrist", "shoulder"))
    )
    assert chosen.joint_names == ["wrist", "shoulder", "toy_gripper"]  # --joints: the user's order


def test_written_profile_round_trips_and_is_not_overwritten(tmp_path):
    text = urdf_text(joint("a", "revolute", "base", "l1") + joint("b", "revolute", "l1", "l2"))
    profile, notes = profile_from_urdf(UrdfProfileConfig(urdf=str(write(tmp_path, text)), name="two"))
    out = write_profile(profile, notes, tmp_path / "robots" / "two.yaml")
    assert RobotProfile.load(out) == profile
    assert yaml.safe_load(out.read_text())["urdf"] == str((tmp_path / "robot.urdf").resolve())
    with pytest.raises(FileExistsError):
        write_profile(profile, notes, out)
    assert not list(out.parent.glob(".*tmp*"))  # atomic write left no temporary file


# ---- damaged URDFs -----------------------------------------------------------------------------------------------
def one_elbow(limit: str | None) -> str:
    """A URDF whose only joint is the revolute 'elbow' with these <limit> attributes (None: no <limit>)."""
    return urdf_text(joint("elbow", "revolute", "base", "l1", limit))


DAMAGED = {
    "not_xml": ("robot name='x'> <joint", "not well-formed XML"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00garbage", "not well-formed XML"),
    "empty": ("", "not well-formed XML"),
    "not_a_robot": ("<sdf version='1.6'><model name='m'/></sdf>", "root element is <sdf>"),
    "no_joints": (urdf_text(""), "no <joint> elements"),
    "only_fixed": (urdf_text(joint("f", "fixed", "base", "l1", None)), "no movable joints"),
    "missing_limit": (
        urdf_text(joint("a", "revolute", "base", "l1") + joint("elbow", "revolute", "l1", "l2", None)),
        "'elbow' (revolute) has no <limit>",
    ),
    "missing_velocity": (one_elbow('lower="-1" upper="1"'), "'elbow' (revolute) has no positive velocity"),
    "missing_lower": (one_elbow('upper="1" velocity="1"'), "has no lower="),
    "nan_limit": (one_elbow('lower="nan" upper="1" velocity="1"'), "not finite"),
    "word_limit": (one_elbow('lower="-x" upper="1" velocity="1"'), "not a number"),
    "inverted": (one_elbow('lower="1" upper="-1" velocity="1"'), "not below"),
    "bad_type": (urdf_text(joint("elbow", "hinge", "base", "l1")), "type 'hinge'"),
    "floating": (urdf_text(joint("free", "floating", "base", "l1", None)), "floating"),
    "duplicate": (
        urdf_text(joint("a", "revolute", "base", "l1") + joint("a", "revolute", "l1", "l2")),
        "duplicate",
    ),
    "two_parents": (
        urdf_text(joint("a", "revolute", "base", "l1") + joint("b", "revolute", "base", "l1")),
        "more than one joint",
    ),
    "no_parent": (
        urdf_text(
            '<joint name="a" type="revolute"><child link="l1"/><limit lower="-1" upper="1" velocity="1"/></joint>'
        ),
        "needs <parent",
    ),
    "mimic_nothing": (
        urdf_text(joint("a", "revolute", "base", "l1", extra='<mimic joint="ghost"/>')),
        "mimics 'ghost'",
    ),
    "cycle": (
        '<robot name="c"><link name="a"/><link name="b"/>'
        '<joint name="j1" type="revolute"><parent link="a"/><child link="b"/><limit lower="-1" upper="1" velocity="1"/>'
        '</joint><joint name="j2" type="revolute"><parent link="b"/><child link="a"/>'
        '<limit lower="-1" upper="1" velocity="1"/></joint></robot>',
        "one root link",
    ),
    "entity_bomb": (
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">'
        + "".join(
            f'<!ENTITY {c} "{("&" + p + ";") * 10}">' for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        )
        + ']><robot name="&i;"/>',
        "not well-formed XML",
    ),
}


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_damaged_urdf_is_a_clear_error(tmp_path, case):
    content, message = DAMAGED[case]
    path = tmp_path / f"{case}.urdf"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(UrdfError, match=message.replace("(", r"\(").replace(")", r"\)")):
        profile_from_urdf(UrdfProfileConfig(urdf=str(path), name="broken"))


def test_missing_velocity_with_a_default_is_used_and_noted(tmp_path):
    text = one_elbow('lower="-1" upper="1" velocity="0"')
    profile, notes = profile_from_urdf(
        UrdfProfileConfig(urdf=str(write(tmp_path, text)), name="slow", default_velocity=0.5)
    )
    assert profile.velocity_limit == [0.5] and any("--default-velocity 0.5" in n for n in notes)


def test_bad_options_are_clear_errors(tmp_path):
    path = str(write(tmp_path, urdf_text(joint("a", "revolute", "base", "l1"))))
    with pytest.raises(UrdfError, match="URDF not found"):
        profile_from_urdf(UrdfProfileConfig(urdf=str(tmp_path / "nope.urdf"), name="x"))
    with pytest.raises(ValueError, match="profile name"):
        UrdfProfileConfig(urdf=path, name="../etc/passwd")
    with pytest.raises(ValueError, match="encoding"):
        UrdfProfileConfig(urdf=path, name="x", encoding="yuv422")
    with pytest.raises(UrdfError, match="outside their limits"):
        profile_from_urdf(UrdfProfileConfig(urdf=path, name="x", home="3.0"))
    with pytest.raises(UrdfError, match="1 finite numbers"):
        profile_from_urdf(UrdfProfileConfig(urdf=path, name="x", home="0,0"))
    with pytest.raises(UrdfError, match="after the margin"):
        profile_from_urdf(UrdfProfileConfig(urdf=path, name="x", margin=1.0))
    with pytest.raises(UrdfError, match="no joint named 'ghost'"):
        profile_from_urdf(UrdfProfileConfig(urdf="franka_panda/panda.urdf", name="x", gripper="ghost"))
    with pytest.raises(UrdfError, match="mimics"):
        profile_from_urdf(
            UrdfProfileConfig(urdf="franka_panda/panda.urdf", name="x", joints=("panda_finger_joint2",))
        )


# ---- the command ---------------------------------------------------------------------------------------------------
def test_wam_robot_add_writes_refuses_and_explains(tmp_path, capsys):
    args = ["robot", "add", "--urdf", "franka_panda/panda.urdf", "--name", "panda", "--out", str(tmp_path)]
    assert wam([*args, "--margin", "0.0698"]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "panda_finger_joint1 + panda_finger_joint2" in out
    written = RobotProfile.load(tmp_path / "panda.yaml")
    assert written.position_upper == RobotProfile.load("panda").position_upper
    assert "--margin 0.0698" in (tmp_path / "panda.yaml").read_text().splitlines()[0]
    assert wam(args) == 1  # exists
    assert "exists; pass --force" in capsys.readouterr().err
    assert wam([*args, "--force"]) == 0
    bad = write(tmp_path, one_elbow(None), "bad.urdf")
    assert wam(["robot", "add", "--urdf", str(bad), "--name", "bad", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "'elbow' (revolute) has no <limit>" in err and not (tmp_path / "bad.yaml").exists()
    assert wam(["robot", "add", "--urdf", "kuka_iiwa/model.urdf", "--name", "k", "--dry-run"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["joint_names"][0] == "lbr_iiwa_joint_1"
    assert not (config_dir() / "robots" / "k.yaml").exists()
    assert wam(["robot", "show", "xarm6"]) == 0 and "drive_joint" in capsys.readouterr().out
