"""`wam robot`: robot profiles (config/robots/<name>.yaml, docs/robots.md).

    wam robot add --urdf kuka_iiwa/model.urdf --name kuka_iiwa           # a path, or one inside pybullet_data
    wam robot add --urdf my_arm.urdf --name my_arm --gripper left_finger,right_finger --camera wrist
    wam robot add --urdf franka_panda/panda.urdf --name panda2 --margin 0.0698 --dry-run
    wam robot show xarm6                                                  # the profile as the stack reads it

`add` prints the joints, their limits and every assumption it made (continuous joints, the gripper mapping, ...),
which are also written as comments at the top of the file. Exit status 0 on success, 1 when the URDF cannot become a
profile (the message names the joint and what to fix) or the profile exists (--force replaces it), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from pathlib import Path

from wam_ros.cli import config_from_args

DEFAULTS = {
    "gripper": "auto",
    "gripper_name": "",
    "joints": "",
    "camera": "front",
    "camera_size": "64x64",
    "encoding": "rgb8",
    "home": "zero",
    "margin": 0.0,
    "continuous_range": 2 * math.pi,
    "default_velocity": None,
    "tolerance": 0.05,
    "ee_link": "",
    "ee_offset": "0,0,0",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="robot_command", metavar="<action>", required=True)
    p = sub.add_parser("add", help="write config/robots/NAME.yaml from a URDF")
    p.add_argument(
        "--urdf", required=True, help="URDF file, or a path inside pybullet_data (xarm/xarm6.urdf)"
    )
    p.add_argument("--name", required=True, help="profile name: config/robots/NAME.yaml")
    p.add_argument(
        "--gripper",
        default=DEFAULTS["gripper"],
        help="auto (what moves below the hand: two prismatic fingers -> one width joint, or the one joint the "
        "others mimic) | none | JOINT | A,B (two prismatic fingers -> width A + B). Default auto",
    )
    p.add_argument("--gripper-name", default="", help="name of a width joint (default NAME_gripper)")
    p.add_argument(
        "--joints", default="", help="comma list of the arm joints, in order (default: the chain found)"
    )
    p.add_argument("--camera", default=DEFAULTS["camera"], help="camera name (default front)")
    p.add_argument("--camera-size", default=DEFAULTS["camera_size"], help="camera WxH (default 64x64)")
    p.add_argument("--encoding", default=DEFAULTS["encoding"], help="rgb8 | bgr8 | mono8 (default rgb8)")
    p.add_argument(
        "--home",
        default=DEFAULTS["home"],
        help="zero (0 clipped into the limits, grippers open) | mid | J numbers",
    )
    p.add_argument(
        "--margin", type=float, default=0.0, help="shrink every revolute range by this at both ends (rad)"
    )
    p.add_argument(
        "--continuous-range",
        type=float,
        default=DEFAULTS["continuous_range"],
        help="a continuous joint gets +-this (rad; default 2 pi)",
    )
    p.add_argument(
        "--default-velocity",
        type=float,
        default=None,
        help="velocity limit for joints whose <limit> has none (default: such a URDF is an error)",
    )
    p.add_argument(
        "--tolerance", type=float, default=0.05, help="measurement_tolerance (rad or m; default 0.05)"
    )
    p.add_argument(
        "--ee-link",
        default="",
        help="the tool link (default: the hand where the gripper branches, or the last link)",
    )
    p.add_argument(
        "--ee-offset",
        default=DEFAULTS["ee_offset"],
        help="the fingertip point in ee_link's frame, X,Y,Z in m (default 0,0,0)",
    )
    p.add_argument("--out", type=Path, default=None, help="directory to write into (default config/robots)")
    p.add_argument("--force", action="store_true", help="replace an existing profile")
    p.add_argument("--dry-run", action="store_true", help="print the YAML, write nothing")
    p = sub.add_parser("show", help="print a profile as the stack reads it")
    p.add_argument("name", help="profile name in config/robots, or a .yaml path")


def run(args: argparse.Namespace) -> int:
    try:
        return {"add": _add, "show": _show}[args.robot_command](args)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:  # UrdfError is a ValueError
        print(f"wam robot {args.robot_command}: {exc}", file=sys.stderr)
        return 1


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--camera-size must be WxH like 64x64, got {text!r}") from None
    return w, h


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this profile (written into its header)."""
    words = ["wam", "robot", "add", "--urdf", str(args.urdf), "--name", args.name]
    for key, default in DEFAULTS.items():
        value = getattr(args, key)
        if value != default:
            words += [f"--{key.replace('_', '-')}", str(value)]
    return shlex.join(words)


def _add(args: argparse.Namespace) -> int:
    from wam_ros.robot_urdf import (
        UrdfProfileConfig,
        profile_from_urdf,
        profile_path,
        profile_yaml,
        write_profile,
    )

    width, height = _size(args.camera_size)
    joints = tuple(j.strip() for j in args.joints.split(",") if j.strip())
    try:
        offset = tuple(float(v) for v in args.ee_offset.split(","))
    except ValueError:
        raise ValueError(f"--ee-offset must be X,Y,Z in m like 0,0,0.172, got {args.ee_offset!r}") from None
    converted = dict(
        urdf=str(args.urdf), joints=joints, camera_width=width, camera_height=height, ee_offset=offset
    )
    cfg = config_from_args(UrdfProfileConfig, args, measurement_tolerance=args.tolerance, **converted)
    path = profile_path(cfg.name, args.out)
    if path.exists() and not (args.force or args.dry_run):  # before any work: the answer comes at once
        raise FileExistsError(f"{path} exists; pass --force to replace it")
    profile, notes = profile_from_urdf(cfg)
    if args.dry_run:
        print(profile_yaml(profile, notes, _command(args)), end="")
        return 0
    write_profile(profile, notes, path, _command(args), overwrite=args.force)
    print(f"wrote {path}: {profile.dof} joints from {profile.urdf}")
    _print_joints(profile)
    for note in notes:
        print(f"  note: {note}")
    print(
        f"check it against the robot, then: wam doctor --model MODEL --robot {path if args.out else cfg.name}"
    )
    return 0


def _print_joints(profile) -> None:  # noqa: ANN001 - a RobotProfile
    print(f"  {'joint':<28} {'lower':>10} {'upper':>10} {'velocity':>9} {'home':>9}  read from")
    for i, name in enumerate(profile.joint_names):
        rule = profile.joint_mapping.get(name)
        source = " + ".join(rule["sum"]) if rule and "sum" in rule else (rule or {}).get("joint", name)
        print(
            f"  {name:<28} {profile.position_lower[i]:>10.4f} {profile.position_upper[i]:>10.4f} "
            f"{profile.velocity_limit[i]:>9.3f} {profile.home[i]:>9.4f}  {source}"
        )


def _show(args: argparse.Namespace) -> int:
    from wam_ros.robot import RobotProfile

    profile = RobotProfile.load(args.name)
    print(f"{profile.name}: {profile.dof} joints, urdf {profile.urdf or '-'}, camera {profile.camera or '-'}")
    print(f"  measurement_tolerance {profile.measurement_tolerance:g}")
    print(
        f"  tool: ee_link {profile.ee_link or '-'} + offset {profile.ee_offset}, wrist camera on "
        f"{profile.wrist_link or profile.ee_link or '-'}, gripper {profile.gripper or 'none'}"
    )
    _print_joints(profile)
    return 0
