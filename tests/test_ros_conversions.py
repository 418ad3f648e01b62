"""Message <-> numpy conversions: every encoding decodes to the same RGB, padded rows, and clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import Image

from wam_ros.ros import conversions as conv

RGB = np.random.default_rng(0).integers(0, 255, size=(6, 5, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_colour_round_trip(encoding):
    msg = conv.rgb_to_image(RGB, conv.sec_to_stamp(12.25), encoding=encoding)
    assert (msg.height, msg.width, msg.step, msg.encoding) == (6, 5, 15, encoding)
    assert len(msg.data) == 90
    np.testing.assert_array_equal(conv.image_to_rgb(msg), RGB)
    assert conv.stamp_to_sec(msg.header.stamp) == 12.25


def test_mono_and_padded_rows():
    gray = RGB[:, :, 0]
    np.testing.assert_array_equal(
        conv.image_to_rgb(conv.rgb_to_image(gray, encoding="mono8")), np.repeat(gray[:, :, None], 3, axis=2)
    )
    padded = np.zeros((6, 16), np.uint8)  # step 16 > width*3 = 15: one padding byte per row
    padded[:, :15] = RGB.reshape(6, 15)
    msg = Image(height=6, width=5, encoding="rgb8", step=16, data=padded.tobytes())
    np.testing.assert_array_equal(conv.image_to_rgb(msg), RGB)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda m: setattr(m, "encoding", "16UC1"), "encoding '16UC1' not supported"),
        (lambda m: setattr(m, "height", 0), "expected width and height > 0"),
        (lambda m: setattr(m, "step", 4), r"step 4 < width\*channels = 15"),
        (lambda m: setattr(m, "data", bytes(10)), "10 bytes, expected step\\*height"),
    ],
)
def test_malformed_images_refused(mutate, match):
    msg = conv.rgb_to_image(RGB)
    mutate(msg)
    with pytest.raises(conv.MessageError, match=match):
        conv.image_to_rgb(msg)
    with pytest.raises(conv.MessageError, match="exceeds max_image_pixels=10"):
        conv.image_to_rgb(conv.rgb_to_image(RGB), max_pixels=10)


def test_joint_matching_by_name():
    names = ["b", "a", "extra", "c"]
    msg = conv.joint_state(names, np.array([2.0, 1.0, 9.0, 3.0]))
    np.testing.assert_array_equal(conv.joint_positions(msg, ["a", "b", "c"]), [1.0, 2.0, 3.0])
    with pytest.raises(conv.MessageError, match=r"missing joints \['d'\]"):
        conv.joint_positions(msg, ["a", "d"])
    msg.position = [1.0, float("nan"), 0.0, 0.0]
    with pytest.raises(conv.MessageError, match=r"non-finite positions for \['a'\]"):
        conv.joint_positions(msg, ["a", "b"])
    msg.position = [1.0]
    with pytest.raises(conv.MessageError, match="4 names but 1 positions"):
        conv.joint_positions(msg, ["a"])


def test_trajectory_round_trip_and_forward_command():
    pts = np.arange(24, dtype=np.float64).reshape(3, 8) / 10
    names = [f"j{i}" for i in range(8)]
    msg = conv.trajectory(names, pts, 0.1, conv.sec_to_stamp(5.0))
    times, back = conv.trajectory_points(msg, list(reversed(names)))
    np.testing.assert_allclose(times, [0.1, 0.2, 0.3])
    np.testing.assert_array_equal(back, pts[:, ::-1])
    np.testing.assert_array_equal(conv.float_array_values(conv.float_array(pts[0]), 8), pts[0])
    with pytest.raises(conv.MessageError, match="3 values, expected 8"):
        conv.float_array_values(conv.float_array(pts[0, :3]), 8)


def test_trajectory_writer_reuses_one_message_and_serializes_like_a_fresh_one():
    from rclpy.serialization import serialize_message
    from trajectory_msgs.msg import JointTrajectory

    names = [f"j{i}" for i in range(8)]
    writer = conv.TrajectoryWriter(names, 1 / 30)
    rng = np.random.default_rng(0)
    first = None
    for k, n in enumerate((8, 8, 1, 8, 1)):  # chunks and one-point holds, alternating
        pts = rng.uniform(-2, 2, (n, 8))
        stamp = None if k == 2 else conv.sec_to_stamp(100.0 + k / 30)
        msg = writer(pts, stamp)
        # byte for byte what a freshly built message serializes to (what publish() sends)
        assert serialize_message(msg) == serialize_message(conv.trajectory(names, pts, 1 / 30, stamp))
        times, q = conv.trajectory_points(msg, names)
        np.testing.assert_array_equal(q, pts)
        if n == 8:
            first = first or msg
            assert msg is first  # reused, not rebuilt
    # serialized bytes taken before the next call are unaffected by it (publish() serializes at once)
    data = serialize_message(writer(np.zeros((8, 8))))
    writer(np.ones((8, 8)))
    from rclpy.serialization import deserialize_message

    np.testing.assert_array_equal(
        conv.trajectory_points(deserialize_message(data, JointTrajectory), names)[1], 0.0
    )
    with pytest.raises(ValueError, match=r"expected \(N >= 1, 8\)"):
        writer(np.zeros((8, 7)))


def test_trajectory_writer_serialized_bytes_equal_rclpy_serialization():
    from rclpy.serialization import deserialize_message, serialize_message
    from trajectory_msgs.msg import JointTrajectory

    names = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_gripper"]
    writer = conv.TrajectoryWriter(names, 0.1)
    rng = np.random.default_rng(1)
    for k, n in enumerate((8, 1, 8, 3)):
        pts = rng.uniform(-3, 3, (n, 8))
        stamp = None if k == 1 else conv.sec_to_stamp(1.7e9 + k * 0.033)
        data = writer.serialized(pts, stamp)
        assert data == serialize_message(conv.trajectory(names, pts, 0.1, stamp))
        back = deserialize_message(data, JointTrajectory)
        np.testing.assert_array_equal(conv.trajectory_points(back, names)[1], pts)
        assert (back.header.stamp.sec, back.header.stamp.nanosec) == (
            (stamp.sec, stamp.nanosec) if stamp else (0, 0)
        )
    with pytest.raises(ValueError, match="expected"):
        writer.serialized(np.zeros((0, 8)))


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8", "padded"])
def test_serialized_images_parse_like_rclpy_messages(encoding):
    """What wam_node's raw camera subscription gets: the serialized Image, parsed without rclpy's Python message."""
    from rclpy.serialization import serialize_message

    if encoding == "padded":
        padded = np.zeros((6, 16), np.uint8)
        padded[:, :15] = RGB.reshape(6, 15)
        msg = Image(height=6, width=5, encoding="rgb8", step=16, data=padded.tobytes())
        msg.header.stamp, msg.header.frame_id = conv.sec_to_stamp(7.5), "a_longer_frame_id"
    else:
        img = RGB[:, :, 0] if encoding == "mono8" else RGB
        msg = conv.rgb_to_image(img, conv.sec_to_stamp(1.7e9 + 0.25), encoding=encoding)
    parsed = conv.image_from_cdr(serialize_message(msg))
    np.testing.assert_array_equal(conv.image_to_rgb(parsed), conv.image_to_rgb(msg))
    assert conv.stamp_to_sec(parsed.header.stamp) == conv.stamp_to_sec(msg.header.stamp)
    # the same refusals as for a message
    bad = conv.rgb_to_image(RGB, encoding="rgb8")
    bad.encoding = "rgba16"
    with pytest.raises(conv.MessageError, match="'rgba16' not supported"):
        conv.image_to_rgb(conv.image_from_cdr(serialize_message(bad)))
    for junk in (b"", b"\x00\x01\x00\x00\x07", serialize_message(msg)[:30]):
        with pytest.raises(conv.MessageError, match="malformed serialized Image"):
            conv.image_from_cdr(junk)
