"""Message <-> numpy conversions for the ROS nodes (sensor_msgs/Image, JointState, JointTrajectory, stamps).

Fast paths (measured; docs/environment.md): build an Image with `msg.data = arr.tobytes()` and read one with
`np.frombuffer(msg.data, np.uint8)` (zero copy); never assign an ndarray to `msg.data` (element by element).
Every reader validates the message and raises `MessageError` saying what was expected and what came.

    rgb = image_to_rgb(msg, max_pixels=4_000_000)     # (H, W, 3) uint8 RGB from rgb8 / bgr8 / mono8
    msg = rgb_to_image(rgb, stamp, frame_id="camera") # rgb8 Image
    q = joint_positions(msg, ["panda_joint1", ...])   # matched by name, any order, extra joints ignored
"""

from __future__ import annotations

import array
import functools
import math
import struct

import numpy as np
from builtin_interfaces.msg import Duration, Time
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from wam_ros.robot import JointReader

CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1}


class MessageError(ValueError):
    """A message the node refuses (malformed, wrong encoding, NaN, missing joints...)."""


def stamp_to_sec(stamp: Time) -> float:
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


def _sec_nanosec(t: float) -> tuple[int, int]:
    sec = math.floor(t)
    return sec, min(round((t - sec) * 1e9), 999_999_999)


def sec_to_stamp(t: float) -> Time:
    sec, nanosec = _sec_nanosec(t)
    return Time(sec=sec, nanosec=nanosec)


def sec_to_duration(t: float) -> Duration:
    sec, nanosec = _sec_nanosec(t)
    return Duration(sec=sec, nanosec=nanosec)


def image_to_rgb(msg: Image, max_pixels: int = 4_000_000) -> np.ndarray:
    """(H, W, 3) uint8 RGB view/copy of an rgb8, bgr8 or mono8 Image; raises MessageError on anything else."""
    enc = msg.encoding
    if enc not in CHANNELS:
        raise MessageError(f"image encoding {enc!r} not supported; expected one of {sorted(CHANNELS)}")
    h, w, c = int(msg.height), int(msg.width), CHANNELS[enc]
    if h <= 0 or w <= 0:
        raise MessageError(f"image size {w}x{h}: expected width and height > 0")
    if h * w > max_pixels:
        raise MessageError(f"image size {w}x{h} = {h * w} pixels exceeds max_image_pixels={max_pixels}")
    step = int(msg.step)
    if step < w * c:
        raise MessageError(f"image step {step} < width*channels = {w * c} for {enc}")
    n = len(msg.data)
    if n != step * h:
        raise MessageError(f"image data has {n} bytes, expected step*height = {step}*{h} = {step * h}")
    buf = np.frombuffer(msg.data, np.uint8)
    img = buf.reshape(h, step)[:, : w * c].reshape(h, w, c)
    if enc == "bgr8":
        return img[:, :, ::-1]
    if enc == "mono8":
        return np.repeat(img, 3, axis=2)
    return img


@functools.cache
def _typestore() -> object:
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def image_from_cdr(data: bytes) -> object:
    """A serialized sensor_msgs/Image (what a raw subscription delivers) as an Image-like object for
    `image_to_rgb` (.header.stamp.sec/.nanosec, .height, .width, .encoding, .step, .data as a numpy view of `data`).

    rosbags' CDR deserializer (ROS 2 Kilted definitions) instead of rclpy's: no Python message object is built and the
    pixels are not copied (timed against rclpy's by benchmarks/node_step.py). Raises MessageError if the bytes are not
    a well-formed Image."""
    try:
        return _typestore().deserialize_cdr(data, "sensor_msgs/msg/Image")
    except Exception as exc:  # noqa: BLE001 - any parse failure of foreign bytes is a malformed message
        raise MessageError(
            f"malformed serialized Image ({len(data)} bytes): {type(exc).__name__}: {exc}"
        ) from exc


def warm_image_parser() -> None:
    """Build the typestore and its Image deserializer now, not on the first camera frame.

    rosbags builds both lazily: the first `image_from_cdr` took 150-210 ms (benchmarks/ros_latency.py, frame 0,
    "callback -> predict() starts"), so the first command after start-up came that late. A node that parses raw
    frames calls this while it starts."""
    from rclpy.serialization import serialize_message

    frame = image_from_cdr(serialize_message(rgb_to_image(np.zeros((2, 2, 3), np.uint8))))
    image_to_rgb(frame)


def rgb_to_image(
    rgb: np.ndarray, stamp: Time | None = None, frame_id: str = "camera", encoding: str = "rgb8"
) -> Image:
    """An Image from an (H, W, 3) uint8 RGB array (encoding rgb8 or bgr8) or (H, W) / (H, W, 1) for mono8."""
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8:
        raise ValueError(f"rgb_to_image expects uint8, got {arr.dtype}")
    if encoding == "mono8":
        arr = arr.reshape(arr.shape[0], arr.shape[1], 1) if arr.ndim == 2 else arr
    elif encoding == "bgr8":
        arr = arr[:, :, ::-1]
    if arr.ndim != 3 or arr.shape[2] != CHANNELS.get(encoding, -1):
        raise ValueError(f"rgb_to_image: array shape {arr.shape} does not fit encoding {encoding!r}")
    msg = Image()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.step = int(arr.shape[1] * arr.shape[2])
    msg.data = np.ascontiguousarray(
        arr
    ).tobytes()  # bytes: the fast path (an ndarray is copied element by element)
    return msg


def joint_positions(msg: JointState, joints: list[str] | JointReader) -> np.ndarray:
    """float64 (J,) positions in model joint order; extra joints ignored; raises MessageError if any is missing/bad.

    `joints`: the model's joint names (matched by name), or a JointReader built from the robot profile, which also
    derives joints the robot does not publish under the model's name (a Panda's gripper width from its two fingers)."""
    reader = joints if isinstance(joints, JointReader) else _name_reader(tuple(joints))
    try:
        return reader.read(msg.name, msg.position)
    except ValueError as exc:
        raise MessageError(str(exc)) from exc


@functools.lru_cache(maxsize=32)
def _name_reader(names: tuple[str, ...]) -> JointReader:
    return JointReader(_BareProfile(), list(names))


class _BareProfile:
    name, joint_mapping = "(by name)", {}


def joint_state(
    joint_names: list[str],
    position: np.ndarray,
    velocity: np.ndarray | None = None,
    stamp: Time | None = None,
) -> JointState:
    msg = JointState()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.name = list(joint_names)
    msg.position = [float(v) for v in position]
    if velocity is not None:
        msg.velocity = [float(v) for v in velocity]
    return msg


def trajectory(
    joint_names: list[str], points: np.ndarray, dt: float, stamp: Time | None = None
) -> JointTrajectory:
    """JointTrajectory with point k at time_from_start (k+1)*dt (the chunk's k-th target is reached then)."""
    msg = JointTrajectory()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.joint_names = list(joint_names)
    # array.array('d') is rclpy's fast path for float64[] fields (a list is type- and range-checked element by
    # element); setting time_from_start's fields in place skips building a Duration per point
    rows = np.ascontiguousarray(points, dtype=np.float64)
    out = []
    for k, row in enumerate(rows):
        point = JointTrajectoryPoint()
        point.positions = array.array("d", row.tobytes())
        point.time_from_start.sec, point.time_from_start.nanosec = _sec_nanosec((k + 1) * dt)
        out.append(point)
    msg.points = out
    return msg


class TrajectoryWriter:
    """`trajectory()` for one joint list and period: as a reused message, or straight to the serialized bytes that
    `publish()` accepts too (`Publisher.publish(bytes)` sends them as they are).

    Creating the JointTrajectoryPoints is most of `trajectory()`'s cost (~0.1 ms for a chunk of 8 on the project
    machine) and converting them to C in `publish()` another ~0.2 ms. `serialized()` skips both: per point count it
    serializes one template message with rclpy's own serializer, finds where the stamp and each point's positions
    sit in those bytes (by marker values), and then only copies the new stamp and positions into a copy of them.
    `__call__` reuses one message per point count; rclpy's `publish()` serializes it before returning, so publish
    (or copy) each returned message before calling again.
    """

    _STAMP_MARK = (0x1234567, 0x7654321)

    def __init__(self, joint_names: list[str], dt: float) -> None:
        self.joint_names, self.dt = list(joint_names), float(dt)
        self._messages: dict[int, JointTrajectory] = {}
        self._templates: dict[int, tuple[bytes, int, list[int]]] = {}

    def _rows(self, points: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(points, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != len(self.joint_names) or len(rows) < 1:
            raise ValueError(f"points have shape {rows.shape}, expected (N >= 1, {len(self.joint_names)})")
        return rows

    def _template(self, n: int) -> tuple[bytes, int, list[int]]:
        from rclpy.serialization import serialize_message

        marks = (np.arange(n)[:, None] + 1) * 1000.0 + np.arange(len(self.joint_names))[None] + 0.123456789
        data = serialize_message(
            trajectory(
                self.joint_names, marks, self.dt, Time(sec=self._STAMP_MARK[0], nanosec=self._STAMP_MARK[1])
            )
        )
        needles = [struct.pack("<iI", *self._STAMP_MARK)] + [row.astype("<f8").tobytes() for row in marks]
        offsets = []
        for needle in needles:
            at = data.find(needle)
            if at < 0 or data.find(needle, at + 1) >= 0:
                raise RuntimeError(
                    "cannot locate the stamp / positions in rclpy's serialization of a "
                    "JointTrajectory (unexpected CDR layout)"
                )
            offsets.append(at)
        return data, offsets[0], offsets[1:]

    def serialized(self, points: np.ndarray, stamp: Time | None = None) -> bytes:
        """The bytes `serialize_message(trajectory(joint_names, points, dt, stamp))` gives (tested equal)."""
        rows = self._rows(points)
        if len(rows) not in self._templates:
            self._templates[len(rows)] = self._template(len(rows))
        data, stamp_at, rows_at = self._templates[len(rows)]
        buf = bytearray(data)
        struct.pack_into("<iI", buf, stamp_at, *((stamp.sec, stamp.nanosec) if stamp is not None else (0, 0)))
        width = 8 * rows.shape[1]
        raw = rows.astype("<f8", copy=False).tobytes()
        for k, at in enumerate(rows_at):
            buf[at : at + width] = raw[k * width : (k + 1) * width]
        return bytes(buf)

    def __call__(self, points: np.ndarray, stamp: Time | None = None) -> JointTrajectory:
        rows = self._rows(points)
        msg = self._messages.get(len(rows))
        if msg is None:
            msg = self._messages[len(rows)] = trajectory(self.joint_names, rows, self.dt)
        else:
            for point, row in zip(msg.points, rows, strict=True):
                point.positions = array.array("d", row.tobytes())
        msg.header.stamp = stamp if stamp is not None else Time()
        return msg


def trajectory_points(msg: JointTrajectory, joint_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(times (P,), positions (P, J)) of a JointTrajectory in `joint_names` order; raises MessageError if bad."""
    index = {n: i for i, n in enumerate(msg.joint_names)}
    missing = [n for n in joint_names if n not in index]
    if missing:
        raise MessageError(f"trajectory is missing joints {missing} (got {list(msg.joint_names)})")
    if not msg.points:
        raise MessageError("trajectory has no points")
    cols = [index[n] for n in joint_names]
    times, rows = [], []
    for k, p in enumerate(msg.points):
        if len(p.positions) != len(msg.joint_names):
            raise MessageError(
                f"trajectory point {k} has {len(p.positions)} positions, expected {len(msg.joint_names)}"
            )
        rows.append(np.asarray(p.positions, dtype=np.float64)[cols])
        times.append(p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec)
    q = np.stack(rows)
    if not np.all(np.isfinite(q)):
        raise MessageError("trajectory has non-finite positions")
    return np.asarray(times), q


def float_array(values: np.ndarray) -> Float64MultiArray:
    msg = Float64MultiArray()
    msg.data = array.array("d", np.ascontiguousarray(values, dtype=np.float64).ravel().tobytes())
    return msg


def float_array_values(msg: Float64MultiArray, n: int) -> np.ndarray:
    q = np.asarray(msg.data, dtype=np.float64)
    if q.shape != (n,):
        raise MessageError(f"command has {q.size} values, expected {n}")
    if not np.all(np.isfinite(q)):
        raise MessageError("command has non-finite values")
    return q
