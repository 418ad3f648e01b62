"""recorder_node over real DDS: SIGKILL mid-episode leaves a bag readable up to the last flushed chunk (independent
`mcap` reader), `wam data repair-bag` completes it for rosbags; an unwritable path and a full disk give a clear error
and lose nothing recorded before."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from mcap.exceptions import McapError
from mcap.reader import NonSeekingReader, make_reader
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_fixtures import ros_context_fixture  # noqa: F401
from rosbags.rosbag2 import Reader
from sensor_msgs.msg import Image, JointState

from wam_ros.data.rosbag import deserialize
from wam_ros.ros.recorder_node import RecorderNode

ROOT = Path(__file__).resolve().parent.parent
TOPICS = ["/camera/image_raw", "/joint_states"]
TYPES = ["sensor_msgs/msg/Image", "sensor_msgs/msg/JointState"]


class Source(Node):
    """Publishes numbered images and joint states (the number is in header.stamp.sec) at a fixed rate."""

    def __init__(self, context: Context, size: tuple[int, int] = (240, 320)) -> None:
        super().__init__("source", context=context)
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.img_pub = self.create_publisher(Image, "/camera/image_raw", qos)
        self.js_pub = self.create_publisher(JointState, "/joint_states", qos)
        self.h, self.w = size
        self.sent = 0

    def publish_one(self) -> None:
        i = self.sent
        img = Image()
        img.header.stamp.sec = i
        img.height, img.width, img.encoding, img.step = self.h, self.w, "rgb8", 3 * self.w
        img.data = np.full(self.h * self.w * 3, i % 251, np.uint8).tobytes()
        js = JointState()
        js.header.stamp.sec = i
        js.name, js.position = ["j"], [float(i)]
        self.img_pub.publish(img)
        self.js_pub.publish(js)
        self.sent += 1

    def matched(self) -> bool:
        return self.img_pub.get_subscription_count() > 0 and self.js_pub.get_subscription_count() > 0


def spin(ex, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ex.spin_once(timeout_sec=0.01)


def test_sigkill_mid_episode_keeps_every_flushed_message(ros_context, tmp_path: Path):
    ctx, ex = ros_context
    params = tmp_path / "recorder.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "recorder": {
                    "ros__parameters": {
                        "output_dir": str(tmp_path / "bags"),
                        "topics": TOPICS,
                        "types": TYPES,
                        "auto_start": True,
                        "flush_period_s": 0.25,
                        "task": "killed",
                        "operator": "pytest",
                    }
                }
            }
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "wam_ros.ros.recorder_node", "--ros-args", "--params-file", str(params)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    bag = tmp_path / "bags" / "episode_0000"
    src = Source(ctx)
    ex.add_node(src)
    try:
        end = time.monotonic() + 20
        while not (src.matched() and (bag / "metadata.yaml").is_file()) and time.monotonic() < end:
            spin(ex, 0.05)
        assert src.matched() and (bag / "metadata.yaml").is_file(), "recorder did not start"
        spin(ex, 0.5)  # let the reliable subscriptions settle (volatile durability: nothing is replayed)
        for _ in range(60):  # 2 s at 30 Hz
            src.publish_one()
            spin(ex, 1 / 30)
        spin(ex, 0.6)  # more than flush_period_s: everything received is flushed once another message arrives
        src.publish_one()  # this one triggers the flush of the ones before and may itself be lost
        spin(ex, 0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        ex.remove_node(src)
        src.destroy_node()
    assert proc.returncode == -signal.SIGKILL

    mcap_file = bag / "episode_0000_0.mcap"
    status = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]["custom_data"]
    assert status["wam.status"] == "recording" and status["wam.task"] == "killed"
    with open(mcap_file, "rb") as f, pytest.raises(McapError):  # no footer: indexed readers refuse the file
        list(make_reader(f).iter_messages())

    # the independent streaming reader gets every message up to the last flushed chunk, in order, without gaps
    seen: dict[str, list[int]] = {t: [] for t in TOPICS}
    with open(mcap_file, "rb") as f:
        try:
            for schema, channel, message in NonSeekingReader(f).iter_messages(log_time_order=False):
                seen[channel.topic].append(deserialize(message.data, schema.name).header.stamp.sec)
        except Exception:  # noqa: BLE001 - the truncated open chunk at the end of a killed file
            pass
    for topic, numbers in seen.items():
        assert numbers == list(range(len(numbers))), f"{topic}: gap or disorder in {numbers}"
        assert len(numbers) >= 60, f"{topic}: only {len(numbers)} of the 61 sent were flushed before the kill"

    # repair-bag rewrites it into a bag rosbags reads completely; the crashed original is kept
    out = subprocess.run(
        [sys.executable, "-m", "wam_ros.cli", "data", "repair-bag", str(bag)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert (bag / "episode_0000_0.mcap.crashed").is_file()
    with Reader(bag) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert counts == {t: len(n) for t, n in seen.items()}
        assert sum(1 for _ in reader.messages()) == sum(counts.values())


def _recorder(ctx: Context, out: Path, **params) -> RecorderNode:
    overrides = [
        Parameter("output_dir", value=str(out)),
        Parameter("topics", value=TOPICS),
        Parameter("types", value=TYPES),
        Parameter("flush_period_s", value=0.1),
    ]
    overrides += [Parameter(k, value=v) for k, v in params.items()]
    return RecorderNode(context=ctx, parameter_overrides=overrides)


def test_unwritable_output_dir_is_a_clear_error(ros_context, tmp_path: Path):
    ctx, _ = ros_context
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    rec = _recorder(ctx, blocker / "bags")
    try:
        ok, msg = rec.start_episode()
        assert not ok and "cannot" in msg and str(blocker) in msg, msg
        assert not rec.recording
        assert rec.stop_episode(True) == (False, f"not recording (last error: {msg})")
    finally:
        rec.destroy_node()


@pytest.fixture
def tiny_tmpfs(tmp_path: Path):
    """A 2 MiB tmpfs (a disk that really fills up). Needs mount rights (root in the CI container)."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill up here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_stops_the_episode_and_loses_nothing_earlier(ros_context, tiny_tmpfs: Path):
    ctx, ex = ros_context
    rec = _recorder(ctx, tiny_tmpfs / "bags")
    src = Source(ctx, size=(64, 64))  # 12 KiB images: ~170 fill the disk
    ex.add_node(rec)
    ex.add_node(src)
    try:
        end = time.monotonic() + 10
        while not src.matched() and time.monotonic() < end:
            spin(ex, 0.05)
        spin(ex, 0.3)
        assert rec.start_episode()[0]
        for _ in range(20):
            src.publish_one()
            spin(ex, 0.01)
        spin(ex, 0.3)
        ok, msg = rec.stop_episode(True)
        assert ok, msg
        first = tiny_tmpfs / "bags" / "episode_0000"

        assert rec.start_episode()[0]
        for _ in range(400):  # far more than fits
            src.publish_one()
            spin(ex, 0.005)
            if not rec.recording:
                break
        assert not rec.recording, "the recorder kept recording on a full disk"
        assert "no space left" in rec.last_error and "repair-bag" in rec.last_error, rec.last_error
        ok, msg = rec.stop_episode(True)
        assert not ok and "no space left" in msg
        ok, msg = rec.start_episode()  # the disk is still full: a new episode is refused clearly
        assert not ok and ("no space left" in msg or "cannot" in msg), msg
    finally:
        for node in (rec, src):
            ex.remove_node(node)
            node.destroy_node()

    # the earlier episode is intact
    with Reader(first) as reader:
        assert {c.topic: c.msgcount for c in reader.connections} == {t: 20 for t in TOPICS}
    # the interrupted one is readable up to its last flushed chunk
    second = tiny_tmpfs / "bags" / "episode_0001" / "episode_0001_0.mcap"
    numbers = []
    with open(second, "rb") as f:
        try:
            for schema, _, message in NonSeekingReader(f).iter_messages(log_time_order=False):
                if schema.name == "sensor_msgs/msg/JointState":
                    numbers.append(deserialize(message.data, schema.name).header.stamp.sec)
        except Exception:  # noqa: BLE001 - the chunk the disk could not take
            pass
    assert len(numbers) >= 20 and numbers == list(range(numbers[0], numbers[0] + len(numbers)))


def test_episode_keys_start_stop_and_discard(ros_context, tmp_path: Path):
    from wam_ros.teleop.keyboard import keyboard

    ctx, ex = ros_context
    rec = _recorder(ctx, tmp_path / "bags", task="stack the cubes", operator="keys")
    src = Source(ctx, size=(8, 8))
    ex.add_node(rec)
    ex.add_node(src)
    try:
        end = time.monotonic() + 10
        while not src.matched() and time.monotonic() < end:
            spin(ex, 0.05)
        spin(ex, 0.3)
        for key in ("r", "x", "r", "n"):  # start, discard, start, stop-failure; 5 messages after each key
            keyboard.dispatch(key)
            for _ in range(5):
                src.publish_one()
                spin(ex, 0.02)
            spin(ex, 0.2)
    finally:
        for node in (rec, src):
            ex.remove_node(node)
            node.destroy_node()
    bags = sorted(p.name for p in (tmp_path / "bags").iterdir())
    assert bags == ["episode_0000"]  # the discarded one is gone, its number reused
    with Reader(tmp_path / "bags" / "episode_0000") as reader:
        assert {c.topic: c.msgcount for c in reader.connections} == {
            t: 5 for t in TOPICS
        }  # only while recording
    custom = yaml.safe_load((tmp_path / "bags" / "episode_0000" / "metadata.yaml").read_text())[
        "rosbag2_bagfile_information"
    ]["custom_data"]
    assert custom["wam.success"] == "false" and custom["wam.task"] == "stack the cubes"
    assert custom["wam.operator"] == "keys" and custom["wam.status"] == "complete"


# ------------------------------------------------------------ repair-bag: paths in metadata.yaml stay in the bag


def _crashed_bag(path: Path, n: int = 30, close: bool = False) -> Path:
    """A recorder bag killed mid-episode (flushed, never finished: no footer, status `recording`)."""
    from wam_ros.data.rosbag import BagWriter, serialize

    w = BagWriter(
        path, {"/joint_states": "sensor_msgs/msg/JointState"}, {"wam.task": path.name}, chunk_size=1024
    )
    w.open()
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    JS, Header, Time = (
        ts.types[t]
        for t in ("sensor_msgs/msg/JointState", "std_msgs/msg/Header", "builtin_interfaces/msg/Time")
    )
    for i in range(n):
        msg = JS(
            header=Header(stamp=Time(sec=i, nanosec=0), frame_id=""),
            name=[path.name],
            position=np.array([i]),
            velocity=np.zeros(0),
            effort=np.zeros(0),
        )
        w.write("/joint_states", serialize(msg, "sensor_msgs/msg/JointState"), (i + 1) * 10**8)
    if close:
        w.close()
    else:
        w.flush()
        w.abort()
    return path


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under root (links as their target text): bytes and mtime, to show nothing was touched."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p)] = (os.readlink(p).encode(), 0)
        elif p.is_file():
            out[str(p)] = (p.read_bytes(), p.stat().st_mtime_ns)
    return out


def _set_meta(bag: Path, **changes) -> None:
    path = bag / "metadata.yaml"
    meta = yaml.safe_load(path.read_text())
    meta["rosbag2_bagfile_information"].update(changes)
    path.write_text(yaml.safe_dump(meta))


def _wam(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wam_ros.cli", "data", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("attack", ["dotdot", "absolute", "files_path", "symlink_file", "symlink_metadata"])
def test_repair_bag_never_touches_or_reads_files_outside_the_bag(tmp_path: Path, attack: str):
    outside = tmp_path / "outside"
    victim = _crashed_bag(outside / "victim")  # a crashed bag outside: exactly what repair would rename
    victim_file = victim / "victim_0.mcap"
    bag = _crashed_bag(tmp_path / "bags" / "evil")
    if attack == "dotdot":
        _set_meta(bag, relative_file_paths=["../../outside/victim/victim_0.mcap"])
    elif attack == "absolute":
        _set_meta(bag, relative_file_paths=[str(victim_file)])
    elif attack == "files_path":
        _set_meta(bag, files=[{"path": "../../outside/victim/victim_0.mcap", "message_count": 30}])
    elif attack == "symlink_file":
        (bag / "evil_0.mcap").unlink()
        (bag / "evil_0.mcap").symlink_to(victim_file)
    else:
        (bag / "metadata.yaml").unlink()
        (bag / "metadata.yaml").symlink_to(victim / "metadata.yaml")
    good = _crashed_bag(tmp_path / "bags" / "good")
    before_outside, before_bag = _snapshot(outside), _snapshot(bag)

    out = _wam("repair-bag", str(tmp_path / "bags"))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "outside the bag directory" in out.stderr and "refusing to read or rename it" in out.stderr, (
        out.stderr
    )
    assert _snapshot(outside) == before_outside  # not renamed, not rewritten, nothing added
    assert _snapshot(bag) == before_bag  # the refused bag is left exactly as it was
    assert (good / "good_0.mcap.crashed").is_file()  # the genuine bag beside it is still repaired
    with Reader(good) as reader:
        assert reader.message_count == 30

    # reading is refused too: `info` and `import-bag` never show the outside bag's messages
    info = _wam("info", str(bag))
    assert info.returncode == 1 and "outside the bag directory" in info.stderr and "victim" not in info.stdout


def test_repair_bag_refuses_malformed_file_lists(tmp_path: Path):
    bag = _crashed_bag(tmp_path / "bags" / "b")
    before = _snapshot(tmp_path)
    for bad, says in (
        ({"relative_file_paths": [7]}, "is not a file name"),
        ({"relative_file_paths": "b_0.mcap"}, "must be lists"),
        ({"relative_file_paths": ["sub/../../b_0.mcap"]}, "points outside"),
    ):
        _set_meta(bag, **bad)
        before = _snapshot(tmp_path)
        out = _wam("repair-bag", str(bag))
        assert out.returncode == 1 and says in out.stderr, (bad, out.stderr)
        assert _snapshot(tmp_path) == before
    _set_meta(bag, relative_file_paths=["b_0.mcap"], files=[{"path": "b_0.mcap"}])  # a correct list repairs
    out = _wam("repair-bag", str(bag))
    assert out.returncode == 0, out.stderr
    with Reader(bag) as reader:
        assert reader.message_count == 30
