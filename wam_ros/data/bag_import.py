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

Crashed bags (no footer) import up to their last complete chunk. Core module: never imports rclpy.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from wam_ros.data.episode import Episode, episode_index, episode_path, list_episodes, write_episode
from wam_ros.data.rosbag import BagError, BagSummary, deserialize, find_bags, iter_bag
from wam_ros.robot import RobotProfile

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
    """

    rate_hz: float = 10.0
    tolerance_s: float = 0.05
    image_size: int = 0
    camera_topic: str = "/camera/image_raw"
    joint_topic: str = "/joint_states"
    command_topics: list[str] = field(default_factory=list)
    robot: str = "panda"
    min_steps: int = 2

    def __post_init__(self) -> None:
        if not self.rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {self.rate_hz}")
        if not self.tolerance_s > 0:
            raise ValueError(f"tolerance_s must be > 0, got {self.tolerance_s}")
        if self.image_size < 0:
            raise ValueError(f"image_size must be >= 0 (0 keeps the recorded size), got {self.image_size}")
        if self.min_steps < 2:
            raise ValueError(f"min_steps must be >= 2 (an episode needs 2 steps), got {self.min_steps}")


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
    skipped: str = ""  # why the bag produced no episode


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
        raise BagError(f"image {w}x{h} {enc}: expected step >= {w * c} and {h * step} bytes, got step {step} "
                       f"and {data.size} bytes")
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


def _gripper_from_fingers(names: list[str], values: np.ndarray, gripper: str) -> float | None:
    """Panda: the profile's `panda_gripper` width is the sum of the two finger joints when only those are sent."""
    fingers = [i for i, n in enumerate(names) if "finger_joint" in n]
    if gripper.endswith("gripper") and len(fingers) == 2 and len(values) > max(fingers):
        return float(values[fingers[0]] + values[fingers[1]])
    return None


def _vector(names: list[str], values, joint_names: list[str]) -> np.ndarray:
    """Values ordered as joint_names; NaN where a joint is absent."""
    values = np.asarray(values, dtype=np.float64)
    out = np.full(len(joint_names), np.nan)
    if values.size == 0:
        return out
    for j, col in enumerate(_joint_columns(list(names), joint_names)):
        if col is not None and col < values.size:
            out[j] = values[col]
    if np.isnan(out[-1]):
        g = _gripper_from_fingers(list(names), values, joint_names[-1])
        if g is not None:
            out[-1] = g
    return out


def read_streams(bag: Path, cfg: ImportConfig, joint_names: list[str], summary: BagSummary) -> dict:
    """Decode the camera, joint and command streams of one bag (sorted by time)."""
    cams: list[tuple[float, object]] = []
    joints: list[tuple[float, np.ndarray, np.ndarray]] = []
    cmds: list[tuple[float, np.ndarray]] = []
    J = len(joint_names)
    for m in iter_bag(bag, summary):
        if m.topic == cfg.camera_topic:
            if m.msgtype not in IMAGE_TYPES:
                raise BagError(f"{bag}: camera topic {m.topic} has type {m.msgtype}, expected sensor_msgs/msg/Image")
            msg = deserialize(m.data, m.msgtype)
            cams.append((_stamp(msg, m.log_time_ns), msg))
        elif m.topic == cfg.joint_topic:
            msg = deserialize(m.data, m.msgtype)
            pos = _vector(msg.name, msg.position, joint_names)
            vel = _vector(msg.name, msg.velocity, joint_names) if len(msg.velocity) else np.zeros(J)
            joints.append((_stamp(msg, m.log_time_ns), pos, np.nan_to_num(vel)))
        elif m.msgtype in COMMAND_TYPES and (not cfg.command_topics or m.topic in cfg.command_topics):
            msg = deserialize(m.data, m.msgtype)
            t = m.log_time_ns * 1e-9
            if m.msgtype == "std_msgs/msg/Float64MultiArray":
                data = np.asarray(msg.data, dtype=np.float64)
                target = np.full(J, np.nan)
                target[: min(J, data.size)] = data[:J]
            else:
                if not len(msg.points):
                    continue
                t = _stamp(msg, m.log_time_ns)
                target = _vector(msg.joint_names, msg.points[-1].positions, joint_names)
            cmds.append((t, target))
    cams.sort(key=lambda x: x[0])
    joints.sort(key=lambda x: x[0])
    cmds.sort(key=lambda x: x[0])
    return {"cams": cams, "joints": joints, "cmds": cmds}


def align(streams: dict, cfg: ImportConfig, report: ImportReport) -> dict | None:
    """Put the streams on the fixed-rate grid. Returns arrays or None (reason in report.skipped)."""
    cams, joints, cmds = streams["cams"], streams["joints"], streams["cmds"]
    report.camera_frames, report.joint_states, report.commands = len(cams), len(joints), len(cmds)
    if not cams or len(joints) < 2:
        report.skipped = f"needs camera frames and >= 2 joint states, got {len(cams)} frames, {len(joints)} states"
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
            img = cv2.resize(img, (cfg.image_size, cfg.image_size), interpolation=cv2.INTER_AREA)
        frames.append(img)
    t0 = steps[0][0]
    return {"frames": np.stack(frames), "joint_pos": np.stack([s[2] for s in steps]),
            "joint_vel": np.stack([s[3] for s in steps]), "actions": np.stack([s[4] for s in steps]),
            "timestamps": np.array([s[0] - t0 for s in steps])}


def _meta(custom: dict[str, str], profile: RobotProfile, cfg: ImportConfig, bag: Path, frames: np.ndarray,
          report: ImportReport) -> dict:
    success = custom.get("wam.success", "unknown")
    task = custom.get("wam.task", "") or custom.get("wam.instruction", "")
    return {
        "task": custom.get("wam.task_name", "teleop"),
        "instruction": custom.get("wam.instruction", task),
        "success": success == "true",
        "success_label": success,
        "seed": None,
        "robot": profile.to_dict(),
        "camera": {"name": str(profile.camera.get("name", "front")), "topic": cfg.camera_topic,
                   "height": int(frames.shape[1]), "width": int(frames.shape[2])},
        "control_hz": cfg.rate_hz,
        "randomisation": {},
        "scene": {},
        "producer": "bag_import",
        "operator": custom.get("wam.operator", ""),
        "source_bag": str(bag),
        "bag_status": custom.get("wam.status", "unknown"),
        "alignment": {"tolerance_s": cfg.tolerance_s, **{k: v for k, v in asdict(report).items()
                                                            if k in ("missing_steps", "duplicated_frames",
                                                                     "dropped_frames", "truncated_bag")}},
    }


def import_bag(bag: str | Path, out_dir: str | Path, cfg: ImportConfig, index: int) -> ImportReport:
    """Import one bag as `episode_<index>.npz` under out_dir."""
    bag = Path(bag)
    report = ImportReport(bag=str(bag))
    summary = BagSummary(bag, {}, {}, {}, False)
    # the profile is needed before decoding (joint order); custom data lives in metadata.yaml / the MCAP record
    from wam_ros.data.rosbag import read_custom_data

    custom = read_custom_data(bag)
    profile = RobotProfile.load(custom.get("wam.robot_profile") or cfg.robot)
    streams = read_streams(bag, cfg, profile.joint_names, summary)
    report.truncated_bag = summary.truncated
    arrays = align(streams, cfg, report)
    if arrays is None:
        return report
    arrays["actions"] = profile.clamp_position(arrays["actions"])
    meta = _meta(custom, profile, cfg, bag, arrays["frames"], report)
    path = write_episode(episode_path(out_dir, index), Episode(**arrays, meta=meta))
    report.episode, report.steps = str(path), int(arrays["frames"].shape[0])
    return report


def import_bags(root: str | Path, out_dir: str | Path, cfg: ImportConfig | None = None) -> list[ImportReport]:
    """Import every bag at or under `root`; new episodes are numbered after those already in out_dir."""
    cfg = cfg or ImportConfig()
    out_dir = Path(out_dir)
    existing = list_episodes(out_dir) if out_dir.is_dir() else []
    index = max((episode_index(p) for p in existing), default=-1) + 1
    reports = []
    for bag in find_bags(root):
        try:
            report = import_bag(bag, out_dir, cfg, index)
        except BagError as exc:
            report = ImportReport(bag=str(bag), skipped=str(exc))
        if report.episode:
            index += 1
        else:
            log.warning("bag %s skipped: %s", bag, report.skipped)
        reports.append(report)
    return reports


def reports_json(reports: list[ImportReport]) -> str:
    return json.dumps([asdict(r) for r in reports], indent=2)
