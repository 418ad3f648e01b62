"""Robot profiles from a URDF: the movable joints in chain order, their limits, a gripper mapping and the camera block,
written as config/robots/<name>.yaml in the schema of wam_ros.robot.RobotProfile (docs/robots.md).

    cfg = UrdfProfileConfig(urdf="xarm/xarm6_with_gripper.urdf", name="xarm6")   # a path, or one in pybullet_data
    profile, notes = profile_from_urdf(cfg)        # RobotProfile + what was assumed (continuous joints, ...)
    path = write_profile(profile, notes, profile_path(cfg))     # or `wam robot add --urdf ... --name ...`

How the URDF becomes a profile:
- Only the top-level <joint> elements count (a <transmission> or <gazebo> block naming a joint is not a joint).
  fixed joints are skipped; mimic joints (<mimic joint=...>) follow another joint and are not model joints;
  floating and planar joints (a mobile base) are refused.
- The arm is the chain of movable joints from the root link down to the first link below which the movable joints
  branch (a hand with two fingers) or to the end of the tree (an arm without a gripper), in chain order.
- The gripper (gripper="auto") is whatever moves below that branch: two prismatic fingers (mimic or not) become one
  width joint `<name>_gripper` = finger A + finger B, read with joint_mapping {sum: [A, B]} (a Panda); one actuated
  joint that the others mimic is the gripper joint itself (an xArm gripper's drive_joint). Anything else is an
  error asking for gripper="A" / "A,B" / "none".
- Limits come from each joint's <limit lower upper velocity>. A continuous joint has no position limits: it gets
  +-continuous_range (2 pi by default) and a note. A revolute or prismatic joint without <limit>, lower or upper is
  an error (the URDF spec requires them). A missing or non-positive velocity is an error unless default_velocity is
  given (then it is used and noted). margin shrinks every revolute range at both ends (rad): a Panda's datasheet
  limits are its URDF limits less 0.0698 rad (4 degrees).
- home: "zero" (every joint at 0 clipped into its limits; a width gripper open), "mid" (mid-range) or J numbers.
- The tool (for the simulator, its experts and jogging): ee_link is the link where the gripper branches (the hand),
  else the child link of the last arm joint, or the link named; ee_offset (default 0, 0, 0) the fingertip point in
  that link's frame, which the URDF cannot tell (noted); wrist_link = ee_link. The gripper's open/closed values: a
  width is open at its upper limit; a single gripper joint is assumed open at its lower limit (noted).

Parsed with the standard library (xml.etree.ElementTree on expat >= 2.4, which refuses entity-expansion bombs and
never fetches external entities). Core module: imports only wam_ros.robot and wam_ros.fileio, never rclpy.
"""

from __future__ import annotations

import math
import re
import textwrap
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from wam_ros.fileio import atomic_write_text, sha256_file
from wam_ros.robot import RobotProfile, config_dir

MOVABLE = ("revolute", "continuous", "prismatic")
KNOWN_TYPES = (*MOVABLE, "fixed", "floating", "planar")
ENCODINGS = ("rgb8", "bgr8", "mono8")  # what wam_node reads (wam_ros.ros.conversions.CHANNELS)
NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
MAX_URDF_BYTES = 20 * 2**20  # URDFs are kilobytes (meshes live in other files); refuse anything absurd
FAST_JOINT = 2 * math.pi  # rad/s above which a velocity limit is noted as unusually high for an arm


class UrdfError(ValueError):
    """A URDF that cannot become a robot profile; the message names the file, the joint and what to fix."""


@dataclass(frozen=True)
class UrdfJoint:
    """One top-level <joint> of a URDF. lower/upper/velocity are None where the URDF gives none."""

    name: str
    type: str
    parent: str
    child: str
    lower: float | None = None
    upper: float | None = None
    velocity: float | None = None
    has_limit: bool = False
    mimic: str | None = None
    mimic_multiplier: float = 1.0  # a mimic joint's position = multiplier * the mimicked joint's + offset
    mimic_offset: float = 0.0

    @property
    def movable(self) -> bool:
        return self.type in MOVABLE


@dataclass(frozen=True)
class Urdf:
    """The joint tree of a URDF: joints in document order, the root link."""

    path: Path
    name: str
    joints: tuple[UrdfJoint, ...]
    root: str

    def joint(self, name: str) -> UrdfJoint:
        for j in self.joints:
            if j.name == name:
                return j
        raise UrdfError(f"{self.path}: no joint named {name!r}; joints: {[j.name for j in self.joints]}")

    def children(self, link: str) -> list[UrdfJoint]:
        return [j for j in self.joints if j.parent == link]

    def subtree(self, link: str) -> list[UrdfJoint]:
        """Every joint below `link`, depth first in document order."""
        out: list[UrdfJoint] = []
        for j in self.children(link):
            out.append(j)
            out.extend(self.subtree(j.child))
        return out


def _number(joint: str, attr: str, text: str | None, where: Path) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise UrdfError(f"{where}: joint {joint!r}: {attr}={text!r} is not a number") from None
    if not math.isfinite(value):
        raise UrdfError(f"{where}: joint {joint!r}: {attr}={text!r} is not finite")
    return value


def _mimic_number(joint: str, mimic: ET.Element | None, attr: str, default: float, where: Path) -> float:
    value = None if mimic is None else _number(joint, f"mimic {attr}", mimic.get(attr), where)
    return default if value is None else value


def resolve_urdf(urdf: str | Path) -> Path:
    """`urdf` as given if it is a file, else the same path inside pybullet_data (e.g. "kuka_iiwa/model.urdf")."""
    path = Path(urdf).expanduser()
    if path.is_file():
        return path.resolve()
    data = _pybullet_data()
    if data is not None and not path.is_absolute() and (data / path).is_file():
        return (data / path).resolve()
    hint = f" (nor in pybullet_data, {data})" if data is not None and not path.is_absolute() else ""
    raise UrdfError(f"URDF not found: {urdf}{hint}")


def _pybullet_data() -> Path | None:
    try:
        import pybullet_data
    except ImportError:
        return None
    return Path(pybullet_data.getDataPath()).resolve()


def parse_urdf(urdf: str | Path) -> Urdf:
    """The joint tree of a URDF file; UrdfError for a file that is not a well-formed URDF joint tree."""
    path = resolve_urdf(urdf)
    size = path.stat().st_size
    if size > MAX_URDF_BYTES:
        raise UrdfError(f"{path} is {size / 2**20:.0f} MiB: not a URDF (limit {MAX_URDF_BYTES >> 20} MiB)")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise UrdfError(f"{path} is not well-formed XML: {exc}") from None
    if root.tag != "robot":
        raise UrdfError(f"{path}: the root element is <{root.tag}>, expected <robot> (is this a URDF?)")
    joints: list[UrdfJoint] = []
    for i, el in enumerate(root.findall("joint")):  # direct children only: not <transmission><joint>
        name, jtype = el.get("name"), el.get("type")
        parent, child = el.find("parent"), el.find("child")
        if not name:
            raise UrdfError(f"{path}: <joint> number {i + 1} has no name")
        if jtype not in KNOWN_TYPES:
            raise UrdfError(f"{path}: joint {name!r} has type {jtype!r}; expected one of {list(KNOWN_TYPES)}")
        if parent is None or child is None or not parent.get("link") or not child.get("link"):
            raise UrdfError(f"{path}: joint {name!r} needs <parent link=...> and <child link=...>")
        limit, mimic = el.find("limit"), el.find("mimic")
        if mimic is not None and not mimic.get("joint"):
            raise UrdfError(f"{path}: joint {name!r} has a <mimic> without joint=")
        lim = {} if limit is None else limit.attrib
        joints.append(
            UrdfJoint(
                name=name,
                type=jtype,
                parent=parent.get("link"),
                child=child.get("link"),
                lower=_number(name, "lower", lim.get("lower"), path),
                upper=_number(name, "upper", lim.get("upper"), path),
                velocity=_number(name, "velocity", lim.get("velocity"), path),
                has_limit=limit is not None,
                mimic=None if mimic is None else mimic.get("joint"),
                mimic_multiplier=_mimic_number(name, mimic, "multiplier", 1.0, path),
                mimic_offset=_mimic_number(name, mimic, "offset", 0.0, path),
            )
        )
    if not joints:
        raise UrdfError(f"{path}: the URDF has no <joint> elements (a single link is not an arm)")
    names = [j.name for j in joints]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UrdfError(f"{path}: duplicate joint names {dup}")
    children = [j.child for j in joints]
    twice = sorted({c for c in children if children.count(c) > 1})
    if twice:
        raise UrdfError(f"{path}: link(s) {twice} are the child of more than one joint (not a tree)")
    roots = sorted({j.parent for j in joints} - set(children))
    if len(roots) != 1:
        raise UrdfError(
            f"{path}: expected one root link (a parent that is no joint's child), found {roots or 'none (a cycle)'}"
        )
    for j in joints:
        if j.mimic is not None and j.mimic not in names:
            raise UrdfError(f"{path}: joint {j.name!r} mimics {j.mimic!r}, which is not a joint of this URDF")
        if j.type in ("floating", "planar"):
            raise UrdfError(
                f"{path}: joint {j.name!r} is {j.type} (a mobile or free base): a profile describes a fixed-base "
                "arm; remove it or make it fixed"
            )
    return Urdf(path=path, name=root.get("name", ""), joints=tuple(joints), root=roots[0])


@dataclass(frozen=True)
class UrdfProfileConfig:
    """Options of `profile_from_urdf` (`wam robot add`).

    Args:
        urdf: the URDF file, or a path inside pybullet_data.
        name: profile name: config/robots/<name>.yaml (letters, digits, _ and -).
        gripper: "auto" (see the module docstring) | "none" | "JOINT" (that joint is the gripper) | "A,B" (two
            prismatic fingers -> one width joint A + B).
        gripper_name: name of a width joint ("" -> "<name>_gripper").
        joints: the arm joints, in order, instead of the chain found in the URDF (empty: found).
        camera / camera_width / camera_height / encoding: the camera block (what the model's camera is).
        home: "zero" | "mid" | comma-separated numbers, one per model joint.
        margin: shrink every revolute joint's range by this much at both ends (rad).
        continuous_range: a continuous joint gets [-continuous_range, +continuous_range] (rad).
        default_velocity: used (and noted) for joints whose <limit> has no positive velocity; None: an error.
        measurement_tolerance: the profile's tolerance for measured positions outside the limits (rad or m).
        ee_link: the tool link ("" -> the hand, or the last arm link). ee_offset: the fingertip point in ee_link's
            frame (m).
    """

    urdf: str
    name: str
    gripper: str = "auto"
    gripper_name: str = ""
    joints: tuple[str, ...] = ()
    camera: str = "front"
    camera_width: int = 64
    camera_height: int = 64
    encoding: str = "rgb8"
    home: str = "zero"
    margin: float = 0.0
    continuous_range: float = 2 * math.pi
    default_velocity: float | None = None
    measurement_tolerance: float = 0.05
    ee_link: str = ""
    ee_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name or ""):
            raise ValueError(f"profile name must be letters, digits, _ or - (a file name), got {self.name!r}")
        if self.gripper_name and not NAME_RE.match(self.gripper_name):
            raise ValueError(f"gripper_name must be letters, digits, _ or -, got {self.gripper_name!r}")
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {list(ENCODINGS)}, got {self.encoding!r}")
        if not self.camera or not isinstance(self.camera, str):
            raise ValueError(f"camera name must be a non-empty string, got {self.camera!r}")
        for key in ("camera_width", "camera_height"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ValueError(f"{key} must be a positive int, got {getattr(self, key)!r}")
        for key in ("margin", "measurement_tolerance"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{key} must be a finite number >= 0, got {value!r}")
        if not (math.isfinite(self.continuous_range) and self.continuous_range > 0):
            raise ValueError(f"continuous_range must be a finite number > 0, got {self.continuous_range!r}")
        if len(self.ee_offset) != 3 or not all(math.isfinite(v) for v in self.ee_offset):
            raise ValueError(f"ee_offset must be 3 finite numbers (m), got {self.ee_offset!r}")
        if self.default_velocity is not None and not (
            math.isfinite(self.default_velocity) and self.default_velocity > 0
        ):
            raise ValueError(f"default_velocity must be a finite number > 0, got {self.default_velocity!r}")


@dataclass
class _Joint:
    """A model joint being built: its limits and how it is read from /joint_states."""

    name: str
    lower: float
    upper: float
    velocity: float
    kind: str  # "revolute" | "continuous" | "prismatic" | "width"
    mapping: dict | None = None


def _tidy(x: float) -> float:
    """Float noise off (2.9671 - 0.0698 = 2.8973000000000004 -> 2.8973); 12 digits keep every URDF value."""
    return float(f"{x:.12g}")


def _arm_chain(urdf: Urdf) -> tuple[list[UrdfJoint], str | None]:
    """The movable, non-mimic joints from the root down to the first branch of movable joints, and the link where
    the tree branches (None when it does not)."""
    chain, link = [], urdf.root
    while True:
        moving = [
            j for j in urdf.children(link) if j.movable or any(s.movable for s in urdf.subtree(j.child))
        ]
        if len(moving) != 1:
            return chain, (link if len(moving) > 1 else None)
        joint = moving[0]
        if joint.movable and joint.mimic is None:
            chain.append(joint)
        link = joint.child


def _limits(joint: UrdfJoint, cfg: UrdfProfileConfig, urdf: Urdf, notes: list[str]) -> _Joint:
    where = f"{urdf.path}: joint {joint.name!r} ({joint.type})"
    velocity = joint.velocity
    if velocity is None or velocity <= 0:
        what = (
            "has no <limit>"
            if not joint.has_limit
            else f"has no positive velocity= in its <limit> ({velocity})"
        )
        if cfg.default_velocity is None:
            raise UrdfError(
                f"{where} {what}: the safety filter needs a velocity limit for every joint; add "
                "velocity= to the URDF or pass default_velocity (--default-velocity V)"
            )
        velocity = cfg.default_velocity
        notes.append(f"{joint.name}: {what}; velocity limit set to --default-velocity {velocity:g}")
    if joint.type == "continuous":
        lo, hi = -cfg.continuous_range, cfg.continuous_range
        notes.append(
            f"{joint.name}: continuous (no position limits in the URDF); limits assumed "
            f"[{lo:.4f}, {hi:.4f}] rad (--continuous-range): an encoder reporting unwrapped angles beyond "
            "them is refused as a measurement"
        )
    else:
        if not joint.has_limit:
            raise UrdfError(
                f"{where} has no <limit>: the URDF spec requires <limit lower= upper= velocity= effort=/> for "
                "revolute and prismatic joints"
            )
        missing = [a for a in ("lower", "upper") if getattr(joint, a) is None]
        if missing:
            raise UrdfError(f"{where}: its <limit> has no {' or '.join(missing)}= (position range unknown)")
        lo, hi = float(joint.lower), float(joint.upper)
        if cfg.margin and joint.type == "revolute":
            lo, hi = lo + cfg.margin, hi - cfg.margin
        if not lo < hi:
            extra = (
                f" after the margin of {cfg.margin:g} rad" if cfg.margin and joint.type == "revolute" else ""
            )
            raise UrdfError(f"{where}: lower {lo:g} is not below upper {hi:g}{extra}")
    return _Joint(joint.name, _tidy(lo), _tidy(hi), _tidy(velocity), joint.type)


def _width(a: UrdfJoint, b: UrdfJoint, name: str, cfg: UrdfProfileConfig, urdf: Urdf, notes: list) -> _Joint:
    """Two prismatic fingers -> one width joint read as A + B."""
    fingers = [_limits(j, cfg, urdf, notes) for j in (a, b)]
    for j, f in zip((a, b), fingers, strict=True):
        if j.type != "prismatic":
            raise UrdfError(
                f"{urdf.path}: gripper finger {j.name!r} is {j.type}; a width needs prismatic fingers"
            )
        if f.lower < 0:
            raise UrdfError(
                f"{urdf.path}: finger {j.name!r} ranges [{f.lower:g}, {f.upper:g}]: a width = {a.name} + {b.name} "
                f"needs both fingers to open in the positive direction; use gripper={a.name!r} (one joint) instead"
            )
    notes.append(
        f"{name}: gripper opening width = {a.name} + {b.name} (joint_mapping sum); velocity limit is the slower "
        "finger's (conservative: both fingers together open at up to twice that)"
    )
    return _Joint(
        name,
        _tidy(fingers[0].lower + fingers[1].lower),
        _tidy(fingers[0].upper + fingers[1].upper),
        min(fingers[0].velocity, fingers[1].velocity),
        "width",
        {"sum": [a.name, b.name]},
    )


def _gripper(
    urdf: Urdf, branch: str | None, arm: list[str], cfg: UrdfProfileConfig, notes: list
) -> list[_Joint]:
    width_name = cfg.gripper_name or f"{cfg.name}_gripper"
    if cfg.gripper == "none":
        if branch is not None:
            left = [j.name for j in urdf.subtree(branch) if j.movable]
            notes.append(f"gripper=none: movable joints below {branch!r} left out: {left}")
        return []
    if cfg.gripper != "auto":
        names = [n.strip() for n in cfg.gripper.split(",") if n.strip()]
        if len(names) not in (1, 2):
            raise UrdfError(f"gripper must be auto, none, JOINT or A,B; got {cfg.gripper!r}")
        joints = [urdf.joint(n) for n in names]
        for j in joints:
            if not j.movable:
                raise UrdfError(f"{urdf.path}: gripper joint {j.name!r} is {j.type}, not movable")
            if j.name in arm:
                raise UrdfError(
                    f"{urdf.path}: gripper joint {j.name!r} is also an arm joint; pass joints= without it"
                )
        if len(joints) == 2:
            return [_width(joints[0], joints[1], width_name, cfg, urdf, notes)]
        if joints[0].mimic is not None:
            raise UrdfError(
                f"{urdf.path}: gripper joint {joints[0].name!r} mimics {joints[0].mimic!r}; name that one"
            )
        return [_limits(joints[0], cfg, urdf, notes)]
    if branch is None:
        return []
    below = [j for j in urdf.subtree(branch) if j.movable and j.name not in arm]
    actuated = [j for j in below if j.mimic is None]
    if len(below) == 2 and all(j.type == "prismatic" for j in below):
        return [_width(below[0], below[1], width_name, cfg, urdf, notes)]
    if len(actuated) == 1:
        mimics = [j.name for j in below if j.mimic is not None]
        if mimics:
            notes.append(f"{actuated[0].name}: the gripper joint; {mimics} mimic it (not model joints)")
        return [_limits(actuated[0], cfg, urdf, notes)]
    raise UrdfError(
        f"{urdf.path}: the joints below link {branch!r} ({[j.name for j in below]}, {len(actuated)} not mimic) are "
        "not a gripper this tool can map by itself: pass gripper='A,B' (two prismatic fingers -> width), "
        "gripper='JOINT', or gripper='none'"
    )


def _home(cfg: UrdfProfileConfig, joints: list[_Joint]) -> list[float]:
    lo = np.array([j.lower for j in joints])
    hi = np.array([j.upper for j in joints])
    if cfg.home == "mid":
        home = (lo + hi) / 2
    elif cfg.home == "zero":
        home = np.clip(np.zeros(len(joints)), lo, hi)
        for i, j in enumerate(joints):
            if j.kind == "width":
                home[i] = j.upper  # a parallel gripper's home is open
    else:
        try:
            home = np.array([float(v) for v in cfg.home.split(",")])
        except ValueError:
            raise UrdfError(
                f"home must be zero, mid or {len(joints)} comma-separated numbers, got {cfg.home!r}"
            ) from None
        if len(home) != len(joints) or not np.all(np.isfinite(home)):
            raise UrdfError(f"home needs {len(joints)} finite numbers (one per joint), got {cfg.home!r}")
        outside = [j.name for j, h in zip(joints, home, strict=True) if not j.lower <= h <= j.upper]
        if outside:
            raise UrdfError(f"home puts {outside} outside their limits")
    return [_tidy(float(h)) for h in home]


def _urdf_field(path: Path) -> str:
    """The profile's `urdf`: relative to pybullet_data when the file lies inside it (as panda.yaml), else absolute."""
    data = _pybullet_data()
    if data is not None and path.is_relative_to(data):
        return str(path.relative_to(data))
    return str(path)


def _tool(urdf: Urdf, cfg: UrdfProfileConfig, branch: str | None, arm: list[UrdfJoint], notes: list) -> str:
    """The ee_link: the one named, else the hand (where the gripper branches), else the last arm joint's child."""
    links = {urdf.root} | {j.child for j in urdf.joints}
    if cfg.ee_link:
        if cfg.ee_link not in links:
            raise UrdfError(f"{urdf.path}: ee_link {cfg.ee_link!r} is not a link; links: {sorted(links)}")
        return cfg.ee_link
    link = branch if branch is not None else arm[-1].child
    where = "where the gripper branches" if branch is not None else "the last arm joint's child"
    if not any(cfg.ee_offset):
        notes.append(
            f"ee_link {link!r} ({where}) with ee_offset 0: the fingertip point is that link's origin; give the "
            "tool centre point with --ee-link / --ee-offset"
        )
    return link


def _gripper_ends(gripper: list[_Joint], notes: list) -> dict:
    if not gripper:
        return {}
    g = gripper[0]
    if g.kind == "width":
        return {"joint": g.name, "open": g.upper, "closed": g.lower}
    notes.append(
        f"{g.name}: assumed open at its lower limit ({g.lower:g}) and closed at its upper ({g.upper:g})"
    )
    return {"joint": g.name, "open": g.lower, "closed": g.upper}


def profile_from_urdf(cfg: UrdfProfileConfig) -> tuple[RobotProfile, list[str]]:
    """The robot profile `cfg` describes, and notes on everything assumed (see the module docstring)."""
    urdf = parse_urdf(cfg.urdf)
    notes: list[str] = []
    if not any(j.movable for j in urdf.joints):
        raise UrdfError(
            f"{urdf.path}: no movable joints (revolute, continuous, prismatic): nothing to command"
        )
    chain, branch = _arm_chain(urdf)
    if cfg.joints:
        arm_joints = [urdf.joint(n) for n in cfg.joints]
        for j in arm_joints:
            if not j.movable:
                raise UrdfError(f"{urdf.path}: joint {j.name!r} is {j.type}, not movable")
            if j.mimic is not None:
                raise UrdfError(
                    f"{urdf.path}: joint {j.name!r} mimics {j.mimic!r}: not a separate model joint"
                )
    else:
        arm_joints = chain
        named = {n.strip() for n in cfg.gripper.split(",")} if cfg.gripper not in ("auto", "none") else set()
        arm_joints = [j for j in chain if j.name not in named]
    if not arm_joints:
        raise UrdfError(
            f"{urdf.path}: no arm joints found: the movable joints branch at {branch!r} right below the root "
            f"{urdf.root!r} (several arms?); pass joints= (--joints A,B,...) to choose them"
        )
    arm = [_limits(j, cfg, urdf, notes) for j in arm_joints]
    gripper = _gripper(urdf, branch, [j.name for j in arm_joints], cfg, notes)
    joints = arm + gripper
    names = [j.name for j in joints]
    if len(set(names)) != len(names):
        raise UrdfError(f"model joint names collide: {names} (choose another gripper_name)")
    used = set(names) | {s for j in joints if j.mapping for s in j.mapping["sum"]}
    left = [j.name for j in urdf.joints if j.movable and j.mimic is None and j.name not in used]
    if left:
        notes.append(f"movable joints not in the profile: {left}")
    fast = [j.name for j in joints if j.kind in ("revolute", "continuous") and j.velocity > FAST_JOINT]
    if fast:
        notes.append(
            f"velocity limits above {FAST_JOINT:.2f} rad/s for {fast} "
            f"({sorted({j.velocity for j in joints if j.name in fast})} rad/s in the URDF): unusually high for an "
            "arm; check them against the robot's datasheet"
        )
    if cfg.margin:
        notes.append(f"revolute ranges shrunk by --margin {cfg.margin:g} rad at both ends")
    ee_link = _tool(urdf, cfg, branch, arm_joints, notes)
    profile = RobotProfile(
        name=cfg.name,
        urdf=_urdf_field(urdf.path),
        joint_names=names,
        position_lower=[j.lower for j in joints],
        position_upper=[j.upper for j in joints],
        velocity_limit=[j.velocity for j in joints],
        home=_home(cfg, joints),
        camera={
            "name": cfg.camera,
            "width": cfg.camera_width,
            "height": cfg.camera_height,
            "encoding": cfg.encoding,
        },
        joint_mapping={j.name: j.mapping for j in joints if j.mapping},
        measurement_tolerance=cfg.measurement_tolerance,
        ee_link=ee_link,
        ee_offset=[_tidy(float(v)) for v in cfg.ee_offset],
        wrist_link=ee_link,
        gripper=_gripper_ends(gripper, notes),
    )
    return profile, notes


def profile_path(name: str, out_dir: str | Path | None = None) -> Path:
    """Where profile `name` is written: <out_dir>/<name>.yaml, by default config/robots/<name>.yaml."""
    if not NAME_RE.match(name or ""):
        raise ValueError(f"profile name must be letters, digits, _ or - (a file name), got {name!r}")
    return Path(out_dir if out_dir is not None else config_dir() / "robots") / f"{name}.yaml"


def _flow(value: object) -> str:
    """One value in YAML flow style (lists on one line, wrapped past 100 characters), no document-end marker."""
    text = yaml.safe_dump(value, default_flow_style=True, width=100, sort_keys=False)
    return text.removesuffix("\n...\n").strip()


def profile_yaml(profile: RobotProfile, notes: list[str] = (), source: str = "") -> str:
    """The profile as YAML in the layout of config/robots/panda.yaml, with a header of the notes."""
    urdf = resolve_urdf(profile.urdf) if profile.urdf else None
    lines = [
        f"# Robot profile {profile.name!r}, written by `{source or 'wam robot add'}` from",
        f"# {profile.urdf}" + (f" (sha256 {sha256_file(urdf)[:16]})." if urdf else "."),
        "# Schema and review checklist: docs/robots.md. Units: rad, rad/s, m, m/s.",
    ]
    if notes:
        lines.append("# Assumed (check before a real robot):")
        for note in notes:
            lines += textwrap.wrap(note, 116, initial_indent="#  - ", subsequent_indent="#    ")
    body = {
        "name": profile.name,
        "urdf": profile.urdf,
        "joint_names": profile.joint_names,
        "position_lower": profile.position_lower,
        "position_upper": profile.position_upper,
        "velocity_limit": profile.velocity_limit,
    }
    lines += [f"{k}: {_flow(v)}" for k, v in body.items()]
    lines.append(
        "# How a model joint is read from /joint_states when its own name is not there (docs/robots.md)."
    )
    if profile.joint_mapping:
        lines.append("joint_mapping:")
        lines += [f"  {k}: {_flow(v)}" for k, v in profile.joint_mapping.items()]
    else:
        lines.append("joint_mapping: {}")
    lines.append("# A measured position further than this outside [lower, upper] is refused as a fault.")
    lines.append(f"measurement_tolerance: {_flow(profile.measurement_tolerance)}")
    lines.append(f"home: {_flow(profile.home)}")
    lines.append("camera:")
    lines += [f"  {k}: {_flow(v)}" for k, v in profile.camera.items()]
    lines.append(
        "# The tool (sim, scripted experts, jogging): fingertip point = ee_link's origin + ee_offset (m, in its frame)."
    )
    for key in ("ee_link", "ee_offset", "wrist_link", "gripper"):
        lines.append(f"{key}: {_flow(getattr(profile, key))}")
    return "\n".join(lines) + "\n"


def write_profile(
    profile: RobotProfile, notes: list[str], path: str | Path, source: str = "", overwrite: bool = False
) -> Path:
    """Write `profile` to `path` (atomically) and check that it loads back as the same profile. FileExistsError
    when `path` exists and not `overwrite`."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite (--force) to replace it")
    text = profile_yaml(profile, notes, source)
    if yaml.safe_load(text) != profile.to_dict():  # what is written is what was built, key for key
        raise RuntimeError(f"profile {profile.name!r} does not survive a YAML round trip: {text}")
    atomic_write_text(path, text)
    RobotProfile.load(path)
    return path
