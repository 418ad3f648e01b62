"""Import rosbag2 (MCAP) demonstrations into the project's episode format, aligned on a fixed rate.

    wam data import-bag bags/teleop --out data/teleop --rate 10 --tolerance 0.05 --image-size 64
    reports = import_bags("bags/teleop", "data/teleop", ImportConfig(rate_hz=10))

Each bag (one episode, as recorder_node writes them; a directory of bags imports them all) becomes one
`episode_<index>.npz`. Alignment, by header timestamps (the bag's log time where a header stamp is zero):
- a grid of times t_k = t_0 + k / rate over the span where both camera frames and joint states exist;
- frame at t_k: the nearest camera frame, if within `tolerance_s`, else the step is **missing** and left out;
- joint positions/velocities at t_k: the nearest joint state must lie within `tolerance_s`; linear interpolation
  between the two bracketing states when they are at most 2 x tolerance apart (else the step is missing);
- action at t_k: the latest command (JointTrajectory last point / Float64MultiArray) received up to t_k + 1/rate,
  mapped by joint name; joints it does not command (and steps before the first command) hold the position at t_k.
The report counts, per episode, `missing_steps`, `duplicated_frames` (grid steps that reuse the previous step's
frame: the camera was slower than the rate or dropped frames) and `dropped_frames` (camera frames in the span that
no step used: the camera was faster than the rate).

Labels. `success` and `instruction` come from the flags (`ImportConfig.success` / `.instruction`, i.e. `--success` /
`--failure` / `--instruction`), else from the recorder's custom data in the bag (`wam.success` true/false,
`wam.instruction` or `wam.task`), else they are *not set*: success is stored as false (so `wam train` leaves the
episode out) and the instruction as "", and the report's `notes` say so. `meta.labels` records where each came from.

Idempotence. A bag is identified by its messages (`BagSummary.sha256`, stored as `meta.source_sha256`): importing a bag
that an episode in out_dir already came from writes nothing and reports `duplicate_of`; when the flags (or the bag's
metadata) now give a different success or instruction, that episode is relabelled in place (atomically) instead.

Crashed bags (no footer) import up to their last complete chunk. Core module: never imports rclpy.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from wam_ros.data.episode import (
    ABSURD,
    LIMIT_TOLERANCE,
    Episode,
    EpisodeError,
    episode_index,
    episode_path,
    list_episodes,
    read_episode,
    read_meta,
    write_episode,
)
from wam_ros.data.images import area_resize
from wam_ros.data.rosbag import BagError, BagSummary, deserialize, find_bags, iter_bag, read_custom_data
from wam_ros.robot import JointReader, RobotProfile

log = logging.getLogger(__name__)

IMAGE_TYPES = {"sensor_msgs/msg/Image"}
COMMAND_TYPES = {"trajectory_msgs/msg/JointTrajectory", "std_msgs/msg/Float64MultiArray"}


@dataclass
class ImportConfig:
    """How bags become episodes.

    Args:
        rate_hz: the fixed rate of the episode grid (the control rate the model will run at).
        tolerance_s: the largest gap between a grid time and the camera frame / joint states used for it.
        image_size: resize frames to (image_size, image_size) with area interpolation; 0 keeps the recorded size.
        camera_topic / joint_topic: the topics holding sensor_msgs/Image and sensor_msgs/JointState.
        command_topics: the controller command topics (JointTrajectory or Float64MultiArray); empty = every topic of
            those types in the bag.
        robot: robot profile name or path (joint order); a bag's `wam.robot_profile` overrides it.
        min_steps: bags that align to fewer steps are skipped (reported, not written).
        instruction: the episodes' instruction; None = the bag's `wam.instruction` / `wam.task`.
        success: the episodes' success; None = the bag's `wam.success` (true/false).
    """

    rate_hz: float = 10.0
    tolerance_s: float = 0.05
    image_size: int = 0
    camera_topic: str = "/camera/image_raw"
    joint_topic: str = "/joint_states"
    command_topics: list[str] = field(default_factory=list)
    robot: str = "panda"
    min_steps: int = 2
    instruction: str | None = None
    success: bool | None = None

    def __post_init__(self) -> None:
        if not self.rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {self.rate_hz}")
        if not self.tolerance_s > 0:
            raise ValueError(f"tolerance_s must be > 0, got {self.tolerance_s}")
        if self.image_size < 0:
            raise ValueError(f"image_size must be >= 0 (0 keeps the recorded size), got {self.image_size}")
        if self.min_steps < 2:
            raise ValueError(f"min_steps must be >= 2 (an episode needs 2 steps), got {self.min_steps}")
        if self.instruction is not None and not self.instruction.strip():
            raise ValueError("instruction must not be empty (leave it unset to take the bag's own)")
        if self.success is not None and not isinstance(self.success, bool):
            raise ValueError(f"success must be True, False or None, got {self.success!r}")


@dataclass
class ImportReport:
    bag: str
    episode: str = ""  # written file, "" when skipped
    steps: int = 0
    camera_frames: int = 0
    joint_states: int = 0
    commands: int = 0
    missing_steps: int = 0
    duplicated_frames: int = 0
    dropped_frames: int = 0
    truncated_bag: bool = False
    refused_joint_states: int = 0  # messages with Inf or absurd (> ABSURD) positions/velocities, not used
    refused_commands: int = 0  # commands with NaN, Inf or absurd targets, not used
    clamped_actions: int = (
        0  # action values beyond the profile's limits (+ LIMIT_TOLERANCE), clamped into them
    )
    skipped: str = ""  # why the bag produced no episode
    source_sha256: str = ""  # the bag's identity (its messages), stored in the episode's meta
    success: bool | None = None
    instruction: str = ""
    success_from: str = ""  # "flag" | "metadata" | "unset" | "stored" (kept from an earlier import)
    instruction_from: str = ""
    duplicate_of: str = ""  # the episode this bag was imported as before
    relabelled: list[str] = field(default_factory=list)  # labels changed on that episode by this import
    notes: list[str] = field(default_factory=list)  # what the operator should know (labels not set, ...)


@dataclass
class Labels:
    success: bool
    instruction: str
    success_from: str  # "flag" | "metadata" | "unset"
    instruction_from: str
    success_raw: str  # the bag's wam.success as recorded ("unknown" when absent)


def resolve_labels(custom: dict[str, str], cfg: ImportConfig, notes: list[str]) -> Labels:
    """Flag > the bag's custom data > not set (success false, instruction ""); appends a note per unset label."""
    raw = custom.get("wam.success", "unknown")
    if cfg.success is not None:
        success, success_from = cfg.success, "flag"
    elif raw.strip().lower() in ("true", "false"):
        success, success_from = raw.strip().lower() == "true", "metadata"
    else:
        success, success_from = False, "unset"
        if raw.strip().lower() not in ("", "unknown"):
            notes.append(f"the bag's wam.success {raw!r} is neither true nor false: ignored")
        notes.append(
            "success not set (no --success/--failure, no wam.success true/false in the bag's metadata): stored "
            "as false, so `wam train` leaves this episode out; import the same bag again with --success (or "
            "--failure) to set it"
        )
    from_bag = (custom.get("wam.instruction") or "").strip() or (custom.get("wam.task") or "").strip()
    if cfg.instruction is not None:
        instruction, instruction_from = cfg.instruction.strip(), "flag"
    elif from_bag:
        instruction, instruction_from = from_bag, "metadata"
    else:
        instruction, instruction_from = "", "unset"
        notes.append(
            "instruction not set (no --instruction, no wam.instruction/wam.task in the bag's metadata): stored "
            "as empty, and `wam train` would train on it with an empty instruction; import the same bag again "
            "with --instruction TEXT to set it"
        )
    return Labels(success, instruction, success_from, instruction_from, raw)


def _stamp(msg, log_time_ns: int) -> float:
    stamp = getattr(getattr(msg, "header", None), "stamp", None)
    if stamp is not None and (stamp.sec or stamp.nanosec):
        return stamp.sec + 1e-9 * stamp.nanosec
    return log_time_ns * 1e-9


def image_rgb(msg) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a rosbags sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8)."""
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
    enc = msg.encoding
    if enc not in channels:
        raise BagError(f"unsupported image encoding {enc!r}; expected one of {sorted(channels)}")
    c = channels[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.asarray(msg.data, dtype=np.uint8)
    if step < w * c or data.size < h * step:
        raise BagError(
            f"image {w}x{h} {enc}: expected step >= {w * c} and {h * step} bytes, got step {step} "
            f"and {data.size} bytes"
        )
    img = data[: h * step].reshape(h, step)[:, : w * c].reshape(h, w, c)
    if enc.startswith("bgr"):
        img = img[..., 2::-1]
    elif c == 4:
        img = img[..., :3]
    elif c == 1:
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img)


def _joint_columns(names: list[str], joint_names: list[str]) -> list[int | None]:
    index = {n: i for i, n in enumerate(names)}
    return [index.get(n) for n in joint_names]


def _vector(names: list[str], values, joint_names: list[str], rules: dict | None = None) -> np.ndarray:
    """Values ordered as joint_names; NaN where a joint is absent. A joint absent under its own name is derived by the
    robot profile's joint_mapping `rules` (wam_ros.robot.JointReader: a Panda's gripper width = finger1 + finger2),
    as wam_node reads the same topic."""
    values = np.asarray(values, dtype=np.float64)
    out = np.full(len(joint_names), np.nan)
    if values.size == 0:
        return out
    for j, col in enumerate(_joint_columns(list(names), joint_names)):
        if col is not None and col < values.size:
            out[j] = values[col]
    index = {n: i for i, n in enumerate(names)}
    for j, joint in enumerate(joint_names):
        if np.isnan(out[j]) and joint in (rules or {}):
            sources, scale, offset = rules[joint]
            cols = [index.get(s) for s in sources]
            if all(c is not None and c < values.size for c in cols):
                out[j] = scale * float(sum(values[c] for c in cols)) + offset
    return out


def _insane(values: np.ndarray) -> bool:
    """Inf or |value| > ABSURD anywhere (NaN, an absent joint, is not judged here)."""
    with np.errstate(invalid="ignore"):
        return bool(np.any(np.isinf(values) | (np.abs(values) > ABSURD)))


def read_streams(
    bag: Path, cfg: ImportConfig, joint_names: list[str], summary: BagSummary, rules: dict | None = None
) -> dict:
    """Decode the camera, joint and command streams of one bag (sorted by time).

    Joint states with Inf or absurd values and commands with NaN, Inf or absurd targets are not used; they are
    counted in `refused` (a corrupt reading must not become a training label, nor be clamped into one).
    """
    cams: list[tuple[float, object]] = []
    joints: list[tuple[float, np.ndarray, np.ndarray]] = []
    cmds: list[tuple[float, np.ndarray]] = []
    refused = {"joint_states": 0, "commands": 0}
    J = len(joint_names)
    for m in iter_bag(bag, summary):
        if m.topic == cfg.camera_topic:
            if m.msgtype not in IMAGE_TYPES:
                raise BagError(
                    f"{bag}: camera topic {m.topic} has type {m.msgtype}, expected sensor_msgs/msg/Image"
                )
            msg = deserialize(m.data, m.msgtype)
            cams.append((_stamp(msg, m.log_time_ns), msg))
        elif m.topic == cfg.joint_topic:
            msg = deserialize(m.data, m.msgtype)
            pos = _vector(msg.name, msg.position, joint_names, rules)
            vel = _vector(msg.name, msg.velocity, joint_names, rules) if len(msg.velocity) else np.zeros(J)
            if _insane(pos) or _insane(vel):
                refused["joint_states"] += 1
                continue
            joints.append((_stamp(msg, m.log_time_ns), pos, np.nan_to_num(vel)))
        elif m.msgtype in COMMAND_TYPES and (not cfg.command_topics or m.topic in cfg.command_topics):
            msg = deserialize(m.data, m.msgtype)
            t = m.log_time_ns * 1e-9
            if m.msgtype == "std_msgs/msg/Float64MultiArray":
                raw = np.asarray(msg.data, dtype=np.float64)[:J]
                target = np.full(J, np.nan)
                target[: raw.size] = raw
            else:
                if not len(msg.points):
                    continue
                t = _stamp(msg, m.log_time_ns)
                raw = np.asarray(msg.points[-1].positions, dtype=np.float64)
                target = _vector(msg.joint_names, raw, joint_names, rules)
            if _insane(raw) or np.any(np.isnan(raw)):
                refused["commands"] += 1
                continue
            cmds.append((t, target))
    cams.sort(key=lambda x: x[0])
    joints.sort(key=lambda x: x[0])
    cmds.sort(key=lambda x: x[0])
    return {"cams": cams, "joints": joints, "cmds": cmds, "refused": refused}


def align(streams: dict, cfg: ImportConfig, report: ImportReport) -> dict | None:
    """Put the streams on the fixed-rate grid. Returns arrays or None (reason in report.skipped)."""
    cams, joints, cmds = streams["cams"], streams["joints"], streams["cmds"]
    report.camera_frames, report.joint_states, report.commands = len(cams), len(joints), len(cmds)
    if not cams or len(joints) < 2:
        report.skipped = (
            f"needs camera frames and >= 2 joint states, got {len(cams)} frames, {len(joints)} states"
        )
        return None
    tc = np.array([c[0] for c in cams])
    tj = np.array([j[0] for j in joints])
    qpos = np.stack([j[1] for j in joints])
    qvel = np.stack([j[2] for j in joints])
    start, end = max(tc[0], tj[0]), min(tc[-1], tj[-1])
    if end <= start:
        report.skipped = "camera and joint streams do not overlap in time"
        return None
    dt = 1.0 / cfg.rate_hz
    grid = start + dt * np.arange(int(np.floor((end - start) / dt + 1e-9)) + 1)
    tcmd = np.array([c[0] for c in cmds]) if cmds else np.zeros(0)
    steps, used = [], set()
    prev_frame = -1
    for t in grid:
        i = int(np.searchsorted(tc, t))
        cand = [k for k in (i - 1, i) if 0 <= k < len(tc)]
        f = min(cand, key=lambda k: abs(tc[k] - t))
        k = int(np.searchsorted(tj, t))
        lo, hi = max(k - 1, 0), min(k, len(tj) - 1)
        near = lo if abs(tj[lo] - t) <= abs(tj[hi] - t) else hi
        if abs(tc[f] - t) > cfg.tolerance_s or abs(tj[near] - t) > cfg.tolerance_s:
            report.missing_steps += 1
            continue
        if hi == lo or tj[hi] - tj[lo] > 2 * cfg.tolerance_s:  # no close bracket: take the nearest state
            lo = hi = near
        w = 0.0 if hi == lo else (t - tj[lo]) / (tj[hi] - tj[lo])
        pos = (1 - w) * qpos[lo] + w * qpos[hi]
        vel = (1 - w) * qvel[lo] + w * qvel[hi]
        if np.any(np.isnan(pos)):
            report.missing_steps += 1
            continue
        action = pos.copy()
        c = int(np.searchsorted(tcmd, t + dt, side="right")) - 1
        if c >= 0:
            target = cmds[c][1]
            action = np.where(np.isnan(target), pos, target)
        if f == prev_frame:
            report.duplicated_frames += 1
        prev_frame = f
        used.add(f)
        steps.append((t, f, pos, vel, action))
    in_span = int(np.sum((tc >= start - cfg.tolerance_s) & (tc <= end + cfg.tolerance_s)))
    report.dropped_frames = max(0, in_span - len(used))
    if len(steps) < cfg.min_steps:
        report.skipped = f"only {len(steps)} aligned steps (min_steps {cfg.min_steps})"
        return None
    frames = []
    for _, f, *_ in steps:
        img = image_rgb(cams[f][1])
        if cfg.image_size and img.shape[:2] != (cfg.image_size, cfg.image_size):
            img = area_resize(img, (cfg.image_size, cfg.image_size))
        frames.append(img)
    t0 = steps[0][0]
    return {
        "frames": np.stack(frames),
        "joint_pos": np.stack([s[2] for s in steps]),
        "joint_vel": np.stack([s[3] for s in steps]),
        "actions": np.stack([s[4] for s in steps]),
        "timestamps": np.array([s[0] - t0 for s in steps]),
    }


def _meta(
    custom: dict[str, str],
    labels: Labels,
    profile: RobotProfile,
    cfg: ImportConfig,
    bag: Path,
    frames: np.ndarray,
    report: ImportReport,
) -> dict:
    return {
        "task": custom.get("wam.task_name", "teleop"),
        "instruction": labels.instruction,
        "success": labels.success,
        "success_label": labels.success_raw,
        "labels": {"success": labels.success_from, "instruction": labels.instruction_from},
        "source_sha256": report.source_sha256,
        "seed": None,
        "robot": profile.to_dict(),
        "camera": {
            "name": str(profile.camera.get("name", "front")),
            "topic": cfg.camera_topic,
            "height": int(frames.shape[1]),
            "width": int(frames.shape[2]),
        },
        "control_hz": cfg.rate_hz,
        "randomisation": {},
        "scene": {},
        "producer": "bag_import",
        "operator": custom.get("wam.operator", ""),
        "source_bag": str(bag),
        "bag_status": custom.get("wam.status", "unknown"),
        "alignment": {
            "tolerance_s": cfg.tolerance_s,
            **{
                k: v
                for k, v in asdict(report).items()
                if k in ("missing_steps", "duplicated_frames", "dropped_frames", "truncated_bag")
            },
        },
    }


def _profile_name(custom: dict[str, str], cfg: ImportConfig) -> str:
    named = custom.get("wam.robot_profile", "")
    if not named:
        return cfg.robot
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", named):  # a bag names a profile of config/robots, never a path
        raise BagError(
            f"the bag's wam.robot_profile {named!r} is not a profile name (letters, digits, _ and -)"
        )
    return named


def _relabel(existing: Path, labels: Labels, cfg: ImportConfig, report: ImportReport) -> None:
    """The bag was imported before as `existing`: write nothing, or only the labels this import sets anew."""
    report.duplicate_of = str(existing)
    stored = read_meta(existing)
    changes = {}
    if labels.success_from != "unset" and stored.get("success") is not labels.success:
        changes["success"] = (labels.success, labels.success_from)
    if labels.instruction_from != "unset" and stored.get("instruction") != labels.instruction:
        changes["instruction"] = (labels.instruction, labels.instruction_from)
    if stored.get("control_hz") != cfg.rate_hz:
        report.notes.append(
            f"{existing.name} was aligned at {stored.get('control_hz')} Hz, this import asked {cfg.rate_hz} Hz: "
            "the existing episode is kept (import into another --out for another rate)"
        )
    stored_from = stored.get("labels") if isinstance(stored.get("labels"), dict) else {}
    for key in ("success", "instruction"):  # what the episode holds now, after this import
        if key in changes:
            continue
        setattr(report, key, stored.get(key))
        if stored_from.get(key) not in (None, "unset"):  # set earlier: this import's "not set" is moot
            setattr(report, f"{key}_from", "stored")
            report.notes = [n for n in report.notes if not n.startswith(f"{key} not set")]
    if not changes:
        report.skipped = (
            f"already imported as {existing.name} (same messages, sha256 {report.source_sha256[:12]})"
        )
        return
    ep = read_episode(existing)
    was = {k: ep.meta.get(k) for k in changes}
    for key, (value, source) in changes.items():
        ep.meta[key] = value
        ep.meta.setdefault("labels", {})[key] = source
    write_episode(existing, ep)  # atomic: the old file stays whole until the new one replaces it
    report.episode, report.steps, report.relabelled = str(existing), len(ep), sorted(changes)
    report.notes.insert(
        0,
        f"already imported as {existing.name}: relabelled "
        + ", ".join(f"{k} {was[k]!r} -> {v!r}" for k, (v, _) in changes.items()),
    )


def import_bag(
    bag: str | Path,
    out_dir: str | Path,
    cfg: ImportConfig,
    index: int,
    imported: dict[str, Path] | None = None,
) -> ImportReport:
    """Import one bag as `episode_<index>.npz` under out_dir.

    `imported` maps the source_sha256 of episodes already in out_dir to their files (see `imported_bags`); a bag
    found there is not written again (see the module docstring). It is updated with the new episode.
    """
    bag = Path(bag)
    imported = {} if imported is None else imported
    report = ImportReport(bag=str(bag))
    # the profile is needed before decoding (joint order); custom data lives in metadata.yaml / the MCAP record
    custom = read_custom_data(bag)
    labels = resolve_labels(custom, cfg, report.notes)
    report.success, report.instruction = labels.success, labels.instruction
    report.success_from, report.instruction_from = labels.success_from, labels.instruction_from
    if imported:  # identity first, without decoding a single image
        pre = BagSummary(bag, {}, {}, {}, False)
        for _ in iter_bag(bag, pre):
            pass
        report.source_sha256 = pre.sha256
        if pre.sha256 in imported:
            _relabel(imported[pre.sha256], labels, cfg, report)
            return report
    profile = RobotProfile.load(_profile_name(custom, cfg))
    summary = BagSummary(bag, {}, {}, {}, False)
    streams = read_streams(
        bag, cfg, profile.joint_names, summary, JointReader(profile, profile.joint_names).rules
    )
    report.truncated_bag = summary.truncated
    report.source_sha256 = summary.sha256
    report.refused_joint_states = streams["refused"]["joint_states"]
    report.refused_commands = streams["refused"]["commands"]
    if report.refused_joint_states or report.refused_commands:
        report.notes.append(
            f"{report.refused_joint_states} joint states (Inf or |value| > {ABSURD:g}) and "
            f"{report.refused_commands} commands (NaN, Inf or |value| > {ABSURD:g}) were corrupt and not used"
        )
    if summary.sha256 in imported:
        _relabel(imported[summary.sha256], labels, cfg, report)
        return report
    arrays = align(streams, cfg, report)
    if arrays is None:
        return report
    lo, hi = np.asarray(profile.position_lower), np.asarray(profile.position_upper)
    tol = LIMIT_TOLERANCE * (hi - lo)
    beyond = np.argwhere((arrays["actions"] < lo - tol) | (arrays["actions"] > hi + tol))
    report.clamped_actions = len(beyond)
    if len(beyond):
        i, j = beyond[0]
        report.notes.append(
            f"{len(beyond)} action values were outside {profile.name}'s position limits by more than "
            f"{LIMIT_TOLERANCE:.0%} of the range and were clamped into them (first: step {i}, "
            f"{profile.joint_names[j]} = {arrays['actions'][i, j]:g})"
        )
    arrays["actions"] = profile.clamp_position(arrays["actions"])  # what the robot's controller would execute
    meta = _meta(custom, labels, profile, cfg, bag, arrays["frames"], report)
    path = write_episode(episode_path(out_dir, index), Episode(**arrays, meta=meta))
    report.episode, report.steps = str(path), int(arrays["frames"].shape[0])
    imported[summary.sha256] = path
    return report


def imported_bags(out_dir: str | Path) -> dict[str, Path]:
    """source_sha256 -> episode file, for the episodes under out_dir that came from bags."""
    out_dir = Path(out_dir)
    index: dict[str, Path] = {}
    for path in list_episodes(out_dir) if out_dir.is_dir() else []:
        try:
            sha = read_meta(path).get("source_sha256")
        except EpisodeError as exc:  # a damaged episode is not ours to judge here; it cannot be a duplicate
            log.warning("cannot read %s: %s", path, exc)
            continue
        if isinstance(sha, str) and sha:
            index.setdefault(sha, path)
    return index


def import_bags(root: str | Path, out_dir: str | Path, cfg: ImportConfig | None = None) -> list[ImportReport]:
    """Import every bag at or under `root`; new episodes are numbered after those already in out_dir.

    A bag imported before (into out_dir) is not imported again: its report names the episode (`duplicate_of`).
    A bag that cannot be read or gives an invalid episode is skipped with the reason; the others still import.
    """
    cfg = cfg or ImportConfig()
    out_dir = Path(out_dir)
    existing = list_episodes(out_dir) if out_dir.is_dir() else []
    index = max((episode_index(p) for p in existing), default=-1) + 1
    imported = imported_bags(out_dir)
    reports = []
    for bag in find_bags(root):
        try:
            report = import_bag(bag, out_dir, cfg, index, imported)
        except (BagError, EpisodeError, FileNotFoundError, ValueError) as exc:
            report = ImportReport(bag=str(bag), skipped=str(exc))
        if report.episode and not report.duplicate_of:
            index += 1
        elif report.skipped and not report.duplicate_of:
            log.warning("bag %s skipped: %s", bag, report.skipped)
        reports.append(report)
    return reports


def reports_json(reports: list[ImportReport]) -> str:
    return json.dumps([asdict(r) for r in reports], indent=2)
