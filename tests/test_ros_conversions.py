"""Message <-> numpy conversions: every encoding decodes to the same RGB, padded rows, and clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import Image

from wam_ros.ros import conversions as cv

RGB = np.random.default_rng(0).integers(0, 255, size=(6, 5, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_colour_round_trip(encoding):
    msg = cv.rgb_to_image(RGB, cv.sec_to_stamp(12.25), encoding=encoding)
    assert (msg.height, msg.width, msg.step, msg.encoding) == (6, 5, 15, encoding)
    assert len(msg.data) == 90
    np.testing.assert_array_equal(cv.image_to_rgb(msg), RGB)
    assert cv.stamp_to_sec(msg.header.stamp) == 12.25


def test_mono_and_padded_rows():
    gray = RGB[:, :, 0]
    np.testing.assert_array_equal(cv.image_to_rgb(cv.rgb_to_image(gray, encoding="mono8")), np.repeat(gray[:, :, None],
                                                                                                        3, axis=2))
    padded = np.zeros((6, 16), np.uint8)  # step 16 > width*3 = 15: one padding byte per row
    padded[:, :15] = RGB.reshape(6, 15)
    msg = Image(height=6, width=5, encoding="rgb8", step=16, data=padded.tobytes())
    np.testing.assert_array_equal(cv.image_to_rgb(msg), RGB)


@pytest.mark.parametrize("mutate, match", [
    (lambda m: setattr(m, "encoding", "16UC1"), "encoding '16UC1' not supported"),
    (lambda m: setattr(m, "height", 0), "expected width and height > 0"),
    (lambda m: setattr(m, "step", 4), r"step 4 < width\*channels = 15"),
    (lambda m: setattr(m, "data", bytes(10)), "10 bytes, expected step\\*height"),
])
def test_malformed_images_refused(mutate, match):
    msg = cv.rgb_to_image(RGB)
    mutate(msg)
    with pytest.raises(cv.MessageError, match=match):
        cv.image_to_rgb(msg)
    with pytest.raises(cv.MessageError, match="exceeds max_image_pixels=10"):
        cv.image_to_rgb(cv.rgb_to_image(RGB), max_pixels=10)


def test_joint_matching_by_name():
    names = ["b", "a", "extra", "c"]
    msg = cv.joint_state(names, np.array([2.0, 1.0, 9.0, 3.0]))
    np.testing.assert_array_equal(cv.joint_positions(msg, ["a", "b", "c"]), [1.0, 2.0, 3.0])
    with pytest.raises(cv.MessageError, match=r"missing joints \['d'\]"):
        cv.joint_positions(msg, ["a", "d"])
    msg.position = [1.0, float("nan"), 0.0, 0.0]
    with pytest.raises(cv.MessageError, match=r"non-finite positions for \['a'\]"):
        cv.joint_positions(msg, ["a", "b"])
    msg.position = [1.0]
    with pytest.raises(cv.MessageError, match="4 names but 1 positions"):
        cv.joint_positions(msg, ["a"])


def test_trajectory_round_trip_and_forward_command():
    pts = np.arange(24, dtype=np.float64).reshape(3, 8) / 10
    names = [f"j{i}" for i in range(8)]
    msg = cv.trajectory(names, pts, 0.1, cv.sec_to_stamp(5.0))
    times, back = cv.trajectory_points(msg, list(reversed(names)))
    np.testing.assert_allclose(times, [0.1, 0.2, 0.3])
    np.testing.assert_array_equal(back, pts[:, ::-1])
    np.testing.assert_array_equal(cv.float_array_values(cv.float_array(pts[0]), 8), pts[0])
    with pytest.raises(cv.MessageError, match="3 values, expected 8"):
        cv.float_array_values(cv.float_array(pts[0, :3]), 8)
