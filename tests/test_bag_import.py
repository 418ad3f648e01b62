"""Bag import: alignment of camera / joints / commands onto a fixed rate, with the dropped / duplicated / missing
report, image encodings, crashed bags, and clear errors for bad input. Bags are written with the project's MCAP
writer from CDR made by rosbags' serializer (no ROS needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.typesys import Stores, get_typestore

from wam_ros.data.bag_import import ImportConfig, import_bags
from wam_ros.data.episode import list_episodes, read_episode
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
    write_bag(tmp_path / "more" / "episode_0002", seconds=1.5)  # a new bag is appended after them
    [new] = import_bags(tmp_path / "more", tmp_path / "eps", cfg)
    assert Path(new.episode).name == "episode_000002.npz"
    # the same bag again: nothing written, the report names the episode it became
    [again] = import_bags(tmp_path / "bags" / "episode_0000", tmp_path / "eps", cfg)
    assert not again.episode and Path(again.duplicate_of).name == "episode_000000.npz"
    assert again.skipped.startswith("already imported as episode_000000.npz")
    assert len(list_episodes(tmp_path / "eps")) == 3


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
    out = cli_import(tmp_path / "bags", tmp_path / "eps", "--camera-topic", "/nope")
    assert out.returncode == 1 and "needs camera frames" in out.stdout + out.stderr
    out = cli_import(tmp_path / "missing", tmp_path / "eps")
    assert out.returncode == 1 and "bag path not found" in out.stderr


# ------------------------------------------------------------------- foreign bags: written by rosbags, not by us

PANDA_JOINTS = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1", "panda_finger_joint2"]


def foreign_bag(path: Path, seconds: float = 2.0, custom: dict[str, str] | None = None) -> Path:
    """A bag as a standard Panda setup records it with `rosbags` (its own MCAP writer and metadata.yaml): a 15 Hz
    rgb8 camera and 50 Hz /joint_states with franka_ros2's names (two finger joints, no `panda_gripper`)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    Image, JointState = TS.types["sensor_msgs/msg/Image"], TS.types["sensor_msgs/msg/JointState"]
    events = []
    for k in range(int(seconds * 15)):
        t = k / 15
        px = np.full((24, 32, 3), (k * 7) % 256, np.uint8)
        msg = Image(
            header=_header(T0 + t),
            height=24,
            width=32,
            encoding="rgb8",
            is_bigendian=0,
            step=96,
            data=px.ravel(),
        )
        events.append((t, "/camera/image_raw", msg, "sensor_msgs/msg/Image"))
    for k in range(int(seconds * 50)):
        t = k / 50
        q = np.array([0.3 * t, -0.4, 0.0, -2.4, 0.0, 2.0, 0.785, 0.02, 0.02])
        msg = JointState(
            header=_header(T0 + t), name=PANDA_JOINTS, position=q, velocity=np.zeros(9), effort=np.zeros(9)
        )
        events.append((t, "/joint_states", msg, "sensor_msgs/msg/JointState"))
    events.sort(key=lambda e: e[0])
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {
            "/camera/image_raw": writer.add_connection(
                "/camera/image_raw", "sensor_msgs/msg/Image", typestore=TS
            ),
            "/joint_states": writer.add_connection(
                "/joint_states", "sensor_msgs/msg/JointState", typestore=TS
            ),
        }
        for t, topic, msg, msgtype in events:
            writer.write(conns[topic], int((T0 + t) * 1e9), bytes(TS.serialize_cdr(msg, msgtype)))
        for key, value in (custom or {}).items():
            writer.set_custom_data(key, value)
    return path


def cli_import(bags: Path, out: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wam_ros.cli", "data", "import-bag", str(bags), "--out", str(out), *flags],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_foreign_bag_reaches_training_only_with_its_labels_set(tmp_path: Path):
    from wam_ros.train.batches import load_episodes

    foreign_bag(tmp_path / "bags" / "franka_demo")
    out = cli_import(tmp_path / "bags", tmp_path / "eps")
    assert out.returncode == 0, out.stderr
    [r] = json.loads(out.stdout)
    assert r["success"] is False and r["success_from"] == "unset" and r["instruction_from"] == "unset"
    assert "success not set" in out.stderr and "`wam train` leaves this episode out" in out.stderr
    assert "instruction not set" in out.stderr and "--instruction" in out.stderr
    ep = read_episode(r["episode"])
    assert (
        ep.success is False
        and ep.instruction == ""
        and ep.meta["labels"] == {"success": "unset", "instruction": "unset"}
    )
    assert np.allclose(ep.joint_pos[:, 7], 0.04)  # gripper width from the two finger joints
    with pytest.raises(ValueError, match="no successful episodes"):
        load_episodes([tmp_path / "eps"])

    # the operator sets the labels: the same bag is relabelled in place, not imported twice
    out = cli_import(tmp_path / "bags", tmp_path / "eps", "--success", "--instruction", "stack the red cube")
    assert out.returncode == 0, out.stderr
    [r] = json.loads(out.stdout)
    assert r["duplicate_of"] == r["episode"] and r["relabelled"] == ["instruction", "success"]
    assert "relabelled" in out.stderr and "not set" not in out.stderr
    [ep] = load_episodes([tmp_path / "eps"])
    assert ep.success is True and ep.instruction == "stack the red cube" and len(ep) == r["steps"] == 20
    assert ep.meta["labels"] == {"success": "flag", "instruction": "flag"}
    assert len(list_episodes(tmp_path / "eps")) == 1

    # once more without flags: nothing changes, nothing is claimed unset
    out = cli_import(tmp_path / "bags", tmp_path / "eps")
    [r] = json.loads(out.stdout)
    assert out.returncode == 0 and r["skipped"].startswith("already imported as episode_000000.npz")
    assert r["success"] is True and r["success_from"] == "stored" and "not set" not in out.stderr
    assert read_episode(tmp_path / "eps" / "episode_000000.npz").instruction == "stack the red cube"


def test_labels_from_the_recorders_metadata_and_flags_override_them(tmp_path: Path):
    custom = {"wam.instruction": "open the drawer", "wam.success": "true", "wam.robot_profile": "panda"}
    foreign_bag(tmp_path / "a" / "with_meta", custom=custom)
    [r] = import_bags(tmp_path / "a", tmp_path / "eps")
    assert (r.success, r.success_from, r.instruction, r.instruction_from) == (
        True,
        "metadata",
        "open the drawer",
        "metadata",
    )
    assert r.notes == []
    ep = read_episode(r.episode)
    assert (
        ep.success is True
        and ep.instruction == "open the drawer"
        and ep.meta["source_sha256"] == r.source_sha256
    )

    foreign_bag(tmp_path / "b" / "with_meta", custom=custom)  # another bag, same labels
    [r] = import_bags(tmp_path / "b", tmp_path / "eps2", ImportConfig(success=False, instruction="close it"))
    assert (r.success, r.success_from, r.instruction, r.instruction_from) == (
        False,
        "flag",
        "close it",
        "flag",
    )

    foreign_bag(tmp_path / "c" / "odd", custom={"wam.success": "maybe", "wam.task": "wipe the table"})
    [r] = import_bags(tmp_path / "c", tmp_path / "eps3")
    assert r.success is False and r.success_from == "unset" and r.instruction == "wipe the table"
    assert any("'maybe' is neither true nor false" in n for n in r.notes)

    with pytest.raises(ValueError, match="instruction must not be empty"):
        ImportConfig(instruction="  ")


def test_reimport_is_idempotent_across_copies_and_repair(tmp_path: Path):
    bag = tmp_path / "bags" / "episode_0000"
    write_bag(bag, close=False)  # a crashed recording
    cfg = ImportConfig(rate_hz=10, tolerance_s=0.02)
    [first] = import_bags(tmp_path / "bags", tmp_path / "eps", cfg)
    assert first.episode and first.truncated_bag and len(first.source_sha256) == 64
    repair_bag(bag)  # rewrites the MCAP file: same messages, so the same bag
    import shutil

    shutil.copytree(bag, tmp_path / "bags" / "copy_of_episode_0000")
    write_bag(tmp_path / "bags" / "zz_new", seconds=1.0)
    reports = import_bags(tmp_path / "bags", tmp_path / "eps", cfg)
    by_name = {Path(r.bag).name: r for r in reports}
    for name in ("episode_0000", "copy_of_episode_0000"):
        assert by_name[name].duplicate_of == first.episode and not by_name[name].episode, by_name[name]
    assert Path(by_name["zz_new"].episode).name == "episode_000001.npz"
    assert len(list_episodes(tmp_path / "eps")) == 2
    # a different rate is noted, and the existing episode kept
    [r] = import_bags(bag, tmp_path / "eps", ImportConfig(rate_hz=5, tolerance_s=0.1))
    assert r.duplicate_of == first.episode and any("aligned at 10" in n for n in r.notes)


def test_hostile_bag_metadata_is_refused_per_bag(tmp_path: Path):
    foreign_bag(tmp_path / "bags" / "a_path_profile", custom={"wam.robot_profile": "../../../etc/passwd"})
    bad = foreign_bag(tmp_path / "bags" / "b_list_custom")
    meta = yaml.safe_load((bad / "metadata.yaml").read_text())
    meta["rosbag2_bagfile_information"]["custom_data"] = ["not", "a", "map"]
    (bad / "metadata.yaml").write_text(yaml.safe_dump(meta))
    foreign_bag(tmp_path / "bags" / "c_fine", custom={"wam.success": "true", "wam.instruction": "x"})
    reports = import_bags(tmp_path / "bags", tmp_path / "eps")
    assert "is not a profile name" in reports[0].skipped and not reports[0].episode
    assert "custom_data must be a map" in reports[1].skipped and not reports[1].episode
    assert Path(reports[2].episode).name == "episode_000000.npz"


def test_corrupt_readings_and_commands_are_not_used_and_out_of_limit_ones_are_reported(tmp_path: Path):
    """Inf / 1e30 joint states and NaN / Inf / 1e30 commands never reach the episode (they are counted and left out);
    a sane command beyond the limits is clamped as the controller would, and reported."""
    bag = tmp_path / "bags" / "b"
    w = BagWriter(
        bag, dict(TOPICS), {"wam.success": "true", "wam.instruction": "reach"}, chunk_size=64 * 1024
    )
    w.open()
    events = [(k / 30, "/camera/image_raw", image(T0 + k / 30, k)) for k in range(60)]
    events += [(k / 100, "/joint_states", joints(T0 + k / 100, q_at(k / 100))) for k in range(200)]
    for k in range(60):
        t = k / 30 + 0.001
        q = q_at(t)
        if k % 10 == 3:  # corrupt readings between the good ones
            bad = q.copy()
            bad[[2, 4, 6][k % 3]] = [np.inf, 1e30, -np.inf][k % 3]
            events.append((t + 0.0005, "/joint_states", joints(T0 + t + 0.0005, bad)))
        target = q.copy()
        if k % 10 == 5:
            target[1] = [np.nan, np.inf, 1e30, -1e30, np.nan, np.inf][k // 10]
        if 36 <= k < 46:
            target[0] = 3.5  # beyond panda_joint1's 2.8973 + 5 %, sane otherwise
        events.append((t, "/arm_controller/commands", command(target)))
    for t, topic, data in sorted(events, key=lambda e: e[0]):
        w.write(topic, data, int((T0 + t) * 1e9))
    w.close()
    [r] = import_bags(tmp_path / "bags", tmp_path / "eps", ImportConfig(rate_hz=10, tolerance_s=0.02))
    assert r.episode, r.skipped
    assert (r.refused_joint_states, r.refused_commands) == (6, 6)
    assert r.clamped_actions >= 1 and any("clamped into them" in n for n in r.notes)
    assert any("were corrupt and not used" in n for n in r.notes)
    ep = read_episode(r.episode)
    assert np.all(np.abs(ep.joint_pos) < 10) and np.all(np.abs(ep.actions) < 10)
    assert np.allclose(ep.joint_pos[:, 2], q_at(0)[2])  # the Inf / 1e30 readings never interpolated in
    assert np.isclose(ep.actions.max(), 2.8973, atol=1e-4)  # the 3.5 command, clamped
