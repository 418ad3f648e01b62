"""What a base-mounted IMU reports, computed from a simulated rigid body's state (vectorised numpy, quaternions xyzw).

    orientation, gyro, accel = imu_readings(base_orn, lin_vel, ang_vel, times, gravity, mount)

- **Frame**: the IMU frame is the base frame turned by the inverse of `mount` (the robot's load rotation), so it
  coincides with the world axes when the robot stands as loaded (x, y horizontal, z up) whatever the URDF's axes.
- **orientation**: of the IMU frame in a gravity-aligned world frame (z against gravity), as an attitude estimator
  reports it; a slope simulated by tilting gravity therefore shows as a tilted robot, as it would on real ground.
- **angular velocity** (rad/s) in the IMU frame.
- **linear acceleration** (m/s^2) in the IMU frame as an accelerometer sees it: specific force = a - g (reads
  +9.81 along z when standing still), a from the base velocity's finite difference between consecutive readings.

Environment-layer maths only: numpy, no PyBullet, no file formats.
"""

from __future__ import annotations

import numpy as np


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b of quaternions (..., 4) xyzw."""
    ax, ay, az, aw = np.moveaxis(np.asarray(a, dtype=np.float64), -1, 0)
    bx, by, bz, bw = np.moveaxis(np.asarray(b, dtype=np.float64), -1, 0)
    return np.stack(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ],
        axis=-1,
    )


def quat_conj(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    return np.concatenate([-q[..., :3], q[..., 3:]], axis=-1)


def rotate_inv(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """R(q)^T v: a world vector (..., 3) expressed in the frame whose orientation is the unit quaternion q (..., 4)."""
    q = np.asarray(q, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    u, w = -q[..., :3], q[..., 3:]  # conjugate rotation
    t = 2.0 * np.cross(u, v)
    return v + w * t + np.cross(u, t)


def gravity_up_in_frame(q: np.ndarray) -> np.ndarray:
    """The 'up' unit vector (world +z) in the frame of orientation q (..., 4): the third row of R(q)."""
    x, y, z, w = np.moveaxis(np.asarray(q, dtype=np.float64), -1, 0)
    return np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], axis=-1)


def tilt_from_orientation_deg(q: np.ndarray) -> np.ndarray:
    """Angle (deg) between the frame's z axis and the vertical, from an IMU orientation (..., 4)."""
    return np.degrees(np.arccos(np.clip(gravity_up_in_frame(q)[..., 2], -1.0, 1.0)))


def align_z_to(direction: np.ndarray) -> np.ndarray:
    """The shortest-arc quaternion that turns +z onto the unit vector `direction` (3,)."""
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    axis = np.cross([0.0, 0.0, 1.0], d)
    s = np.linalg.norm(axis)
    if s < 1e-12:
        return np.array([0.0, 0.0, 0.0, 1.0]) if d[2] > 0 else np.array([1.0, 0.0, 0.0, 0.0])
    angle = np.arctan2(s, d[2])
    return np.concatenate([axis / s * np.sin(angle / 2), [np.cos(angle / 2)]])


def imu_readings(
    base_orn: np.ndarray,
    lin_vel: np.ndarray,
    ang_vel: np.ndarray,
    times: np.ndarray,
    gravity: np.ndarray,
    mount: np.ndarray,
    prev: tuple[np.ndarray, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IMU readings (orientation (T,4), angular velocity (T,3), linear acceleration (T,3)) from base states.

    Args:
        base_orn: (T, 4) base orientations in the simulator's world frame.
        lin_vel, ang_vel: (T, 3) base linear / angular velocity in the world frame.
        times: (T,) the simulated time of each state (s); the acceleration of reading k is the velocity change
            since reading k-1 over the time between them.
        gravity: (3,) the simulator's gravity vector (tilted on a slope).
        mount: (4,) the robot's load rotation (the base orientation of the robot standing as loaded).
        prev: (linear velocity (3,), time) of the reading before the first one; None = at rest before it.
    """
    base_orn = np.asarray(base_orn, dtype=np.float64).reshape(-1, 4)
    lin_vel = np.asarray(lin_vel, dtype=np.float64).reshape(-1, 3)
    ang_vel = np.asarray(ang_vel, dtype=np.float64).reshape(-1, 3)
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    g = np.asarray(gravity, dtype=np.float64)
    q_imu = quat_mul(base_orn, quat_conj(mount))  # R_imu = R_base R_mount^T
    to_level = quat_conj(align_z_to(-g))  # sim world -> gravity-aligned world
    orientation = quat_mul(to_level, q_imu)
    orientation *= np.where(orientation[:, 3:] < 0, -1.0, 1.0)  # one sign convention: w >= 0
    gyro = rotate_inv(q_imu, ang_vel)
    if prev is None:
        v0, t0 = lin_vel[:1], times[:1] - 1.0  # at rest before the first reading: a = 0 there
    else:
        v0, t0 = np.asarray(prev[0], dtype=np.float64).reshape(1, 3), np.array([prev[1]])
    v_prev = np.concatenate([v0, lin_vel[:-1]])
    dt = np.diff(np.concatenate([t0, times]))
    accel = (lin_vel - v_prev) / np.maximum(dt, 1e-9)[:, None]
    specific = rotate_inv(q_imu, accel - g)
    return orientation, gyro, specific
