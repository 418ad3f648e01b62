"""Bag import: alignment of camera / joints / commands onto a fixed rate, with the dropped / duplicated / missing
report, image encodings, crashed bags, and clear errors for bad input. Bags are written with the project's MCAP
writer from CDR made by rosbags' serializer (no ROS needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from wam_ros.data.bag_import import ImportConfig, import_bags
from wam_ros.data.episode import read_episode
from wam_ros.data.rosbag import BagError, BagWriter, find_bags, iter_bag, repair_bag
from wam_ros.robot import RobotProfile

TS = get_typestore(Stores.ROS2_KILTED)
PROFILE = RobotProfile.load("panda")
T0 = 1_700_000_000.0
TOPICS = {
    "/camera/image_raw": "sensor_msgs/msg/Image",
    "/joint_states": "sensor_msgs/msg/JointState",
    "/arm_controller/commands": "std_msgs/msg/Float64MultiArray",
    "/arm_controller/joint_trajectory": "trajectory_msgs/msg/JointTrajectory",
}


def _header(t: float):
    Time, Header = TS.types["builtin_interfaces/msg/Time"], TS.types["std_msgs/msg/Header"]
    sec = int(t)
    return Header(stamp=Time(sec=sec, nanosec=int(round((t - sec) * 1e9))), frame_id="camera")


def image(t: float, value: int, encoding: str = "rgb8", h: int = 48, w: int = 64) -> bytes:
    c = 1 if encoding == "mono8" else 3
    px = np.zeros((h, w, c), np.uint8)
    px[..., 0] = value
    if c == 3:
        px[..., 2] = 255 - value
    msg = TS.types["sensor_msgs/msg/Image"](
        header=_header(t), height=h, width=w, encoding=encoding, is_bigendian=0, step=w * c, data=px.ravel()
    )
    return bytes(TS.serialize_cdr(msg, "sensor_msgs/msg/Image"))


def joints(t: float, q: np.ndarray) -> bytes:
    names = PROFILE.joint_names[:7] + ["panda_finger_joint1", "panda_finger_joint2"]
    pos = np.concatenate([q[:7], [q[7] / 2, q[7] / 2]])
    msg = TS.types["sensor_msgs/msg/JointState"](
        header=_header(t), name=names, position=pos, velocity=np.zeros(9), effort=np.zeros(0)
    )
    return bytes(TS.serialize_cdr(msg, "sensor_msgs/msg/JointState"))


def command(q: np.ndarray) -> bytes:
    Layout = TS.types["std_msgs/msg/MultiArrayLayout"]
    msg = TS.types["std_msgs/msg/Float64MultiArray"](
        layout=Layout(dim=[], data_offset=0), data=np.asarray(q, float)
    )
    return bytes(TS.serialize_cdr(msg, "std_msgs/msg/Float64MultiArray"))


def q_at(t: float) -> np.ndarray:
    """A smooth joint trajectory: joint 1 moves at 0.5 rad/s, the gripper stays at 0.04."""
    q = np.array(PROFILE.home, dtype=np.float64)
    q[0] = 0.5 * t
    q[7] = 0.04
    return q


def write_bag(
    path: Path,
    seconds: float = 3.0,
    cam_hz: float = 30.0,
    joint_hz: float = 100.0,
    cmd_hz: float = 30.0,
    gap: tuple[float, float] | None = None,
    encoding: str = "rgb8",
    success: str = "true",
    close: bool = True,
) -> BagWriter:
    """Messages are written in time order, each with log time = its stamp (like a recorder with synced clocks)."""
    events = []
    for k in range(int(seconds * cam_hz)):
        t = k / cam_hz
        if gap is None or not gap[0] <= t < gap[1]:
            events.append((t, "/camera/image_raw", image(T0 + t, k % 256, encoding)))
    for k in range(int(seconds * joint_hz)):
        t = k / joint_hz
        events.append((t, "/joint_states", joints(T0 + t, q_at(t))))
    for k in range(int(seconds * cmd_hz)):
        t = k / cmd_hz + 0.001
        events.append((t, "/arm_controller/commands", command(q_at(t + 0.2))))  # the target leads by 0.2 s
    events.sort(key=lambda e: e[0])
    w = BagWriter(
        path,
        dict(TOPICS),
        {"wam.task": "reach the red target", "wam.robot_profile": "panda", "wam.operator": "test"},
        chunk_size=64 * 1024,
    )
    w.open()
    for t, topic, data in events:
        w.write(topic, data, int((T0 + t) * 1e9))
    if close:
        w.close({"wam.success": success})
    else:
        w.flush()
    return w


def test_alignment_on_a_fixed_grid_with_interpolation_and_held_commands(tmp_path: Path):
    write_bag(tmp_path / "bags" / "episode_0000")
    [r] = import_bags(tmp_path / "bags", tmp_path / "eps", ImportConfig(rate_hz=10, tolerance_s=0.02))
    assert r.episode and not r.skipped and r.steps == 30
    assert (r.camera_frames, r.joint_states, r.commands) == (90, 300, 90)
    assert (r.missing_steps, r.duplicated_frames) == (0, 0)
    assert r.dropped_frames == 60  # a 30 Hz camera on a 10 Hz grid: 2 of every 3 frames are not used
    ep = read_episode(r.episode)
    assert ep.frames.shape == (30, 48, 64, 3)
    assert np.allclose(ep.timestamps, np.arange(30) / 10)
    assert np.allclose(ep.joint_pos[:, 0], 0.5 * np.arange(30) / 10, atol=1e-6)  # interpolated joint 1
    assert np.allclose(ep.joint_pos[:, 7], 0.04)  # gripper width = sum of the two fingers
    assert [int(f[0, 0, 0]) for f in ep.frames[:4]] == [0, 3, 6, 9]  # the camera frame at each grid time
    assert list(ep.frames[0, 0, 0]) == [0, 0, 255]  # rgb8 kept as RGB
    # action at t: the latest command up to t + 0.1 s; its target leads the state by 0.2 s
    t_cmd = np.floor((np.arange(30) / 10 + 0.1 - 0.001) * 30 + 1e-9) / 30 + 0.001
    assert np.allclose(ep.actions[:, 0], 0.5 * (t_cmd + 0.2), atol=1e-5)
    assert ep.meta["success"] is True and ep.meta["instruction"] == "reach the red target"
    assert ep.meta["operator"] == "test" and ep.meta["control_hz"] == 10
    assert ep.meta["robot"]["joint_names"] == PROFILE.joint_names


def test_missing_and_duplicated_frames_are_reported(tmp_path: Path):
    write_bag(tmp_path / "gap" / "b", gap=(1.0, 1.5))
    [r] = import_bags(tmp_path / "gap", tmp_path / "eps", ImportConfig(rate_hz=10, tolerance_s=0.04))
    # grid times 1.1 .. 1.4 have no frame within 40 ms (1.0 itself is 33 ms from the frame at 0.967)
    assert r.missing_steps == 4 and r.steps == 26
    ts = read_episode(r.episode).timestamps
    assert np.isclose(np.max(np.diff(ts)), 0.5)

    write_bag(tmp_path / "slow" / "b", cam_hz=5.0)
    [r] = import_bags(tmp_path / "slow", tmp_path / "eps2", ImportConfig(rate_hz=10, tolerance_s=0.1))
    assert r.missing_steps == 0 and r.duplicated_frames >= 13 and r.dropped_frames == 0, r


def test_bgr_mono_resize_and_numbering_after_existing_episodes(tmp_path: Path):
    write_bag(tmp_path / "bags" / "episode_0000", encoding="bgr8", seconds=1.0)
    write_bag(tmp_path / "bags" / "episode_0001", encoding="mono8", seconds=1.0, success="false")
    cfg = ImportConfig(rate_hz=10, tolerance_s=0.02, image_size=16)
    reports = import_bags(tmp_path / "bags", tmp_path / "eps", cfg)
    assert [Path(r.episode).name for r in reports] == ["episode_000000.npz", "episode_000001.npz"]
    bgr, mono = (read_episode(r.episode) for r in reports)
    assert bgr.frames.shape[1:] == (16, 16, 3)
    assert list(bgr.frames[1, 0, 0]) == [255 - 3, 0, 3]  # bgr8 -> RGB: the channels swap
    assert mono.frames[1, 0, 0].tolist() == [3, 3, 3] and mono.meta["success"] is False
    again = import_bags(tmp_path / "bags" / "episode_0000", tmp_path / "eps", cfg)
    assert Path(again[0].episode).name == "episode_000002.npz"  # appended, nothing overwritten


def test_crashed_bag_imports_up_to_its_last_flushed_chunk(tmp_path: Path):
    bag = tmp_path / "bags" / "crashed"
    w = write_bag(bag, close=False)  # flushed but never finished: no footer, metadata.yaml says "recording"
    size = w.mcap_path.stat().st_size
    with open(w.mcap_path, "ab") as f:
        f.write(b"\x06" + (10**6).to_bytes(8, "little") + b"partial chunk")  # a torn chunk record at the end
    w.abort()
    assert w.mcap_path.stat().st_size > size
    [r] = import_bags(tmp_path / "bags", tmp_path / "eps", ImportConfig(rate_hz=10, tolerance_s=0.02))
    assert r.truncated_bag and r.episode and r.steps == 30
    s = repair_bag(bag)
    assert s.truncated and s.counts["/camera/image_raw"] == 90
    from rosbags.rosbag2 import Reader

    with Reader(bag) as reader:  # the repaired bag is complete for an indexed reader
        assert reader.message_count == 90 + 300 + 90
    assert sum(1 for _ in iter_bag(bag)) == 90 + 300 + 90


def test_bad_input_is_a_clear_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="bag path not found"):
        find_bags(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="no MCAP bag found"):
        find_bags(tmp_path / "empty")
    with pytest.raises(ValueError, match="tolerance_s must be > 0"):
        ImportConfig(tolerance_s=0)
    garbage = tmp_path / "garbage" / "b"
    garbage.mkdir(parents=True)
    (garbage / "b_0.mcap").write_bytes(b"this is not an mcap file at all" * 10)
    [r] = import_bags(tmp_path / "garbage", tmp_path / "eps")
    assert not r.episode and "corrupt" in r.skipped, r.skipped
    # wrong camera topic: the bag is skipped with the reason, the CLI says so and exits 1
    write_bag(tmp_path / "bags" / "b", seconds=1.0)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "wam_ros.cli",
            "data",
            "import-bag",
            str(tmp_path / "bags"),
            "--out",
            str(tmp_path / "eps"),
            "--camera-topic",
            "/nope",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1 and "needs camera frames" in out.stdout + out.stderr
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "wam_ros.cli",
            "data",
            "import-bag",
            str(tmp_path / "missing"),
            "--out",
            str(tmp_path / "eps"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1 and "bag path not found" in out.stderr
