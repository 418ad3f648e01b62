"""Safety in the command path: limit clamping, input validation timing (watchdog) and stamp ordering.

Pure numpy (core module, never imports rclpy): the ROS node `wam_ros.ros.wam_node` calls these every control cycle,
and they are unit-tested directly (tests/test_safety.py).

    limits = SafetyLimits.from_profile(RobotProfile.load("panda"))
    safe = SafetyFilter(limits, dt=0.1).apply(chunk, q_now)   # (N, J) clamped to position + velocity limits
    status = Watchdog(timeout_s=0.3, max_skew_s=0.2).check(now, camera, joints)   # ok / STALE with a reason
    guard = StampGuard("camera"); guard.accept(stamp)          # raises UnsafeInput on out-of-order stamps

Velocity limits are enforced along the chunk: point k may move at most `velocity_limit * dt` from point k-1, starting
from the measured position, so the commanded trajectory never asks for more than the profile allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import isfinite

import numpy as np


class UnsafeInput(ValueError):
    """An input or command the safety layer refuses; the message says what was expected and what came."""


@dataclass
class SafetyLimits:
    """Per-joint limits in the profile's joint order (rad, rad/s; the Panda gripper in m, m/s)."""

    joint_names: list[str]
    position_lower: np.ndarray
    position_upper: np.ndarray
    velocity_limit: np.ndarray

    def __post_init__(self) -> None:
        self.position_lower = np.asarray(self.position_lower, dtype=np.float64)
        self.position_upper = np.asarray(self.position_upper, dtype=np.float64)
        self.velocity_limit = np.asarray(self.velocity_limit, dtype=np.float64)
        n = len(self.joint_names)
        for key in ("position_lower", "position_upper", "velocity_limit"):
            if getattr(self, key).shape != (n,):
                raise ValueError(f"SafetyLimits.{key} has shape {getattr(self, key).shape}, expected ({n},)")
        if np.any(self.position_lower >= self.position_upper):
            raise ValueError("SafetyLimits: position_lower must be < position_upper for every joint")
        if np.any(~np.isfinite(self.velocity_limit)) or np.any(self.velocity_limit <= 0):
            raise ValueError(
                f"SafetyLimits: velocity_limit must be finite and > 0, got {self.velocity_limit}"
            )

    measurement_tolerance: float = (
        0.0  # a measured position may lie this far outside the limits (then clipped)
    )

    @classmethod
    def from_profile(cls, profile: object, joint_names: list[str] | None = None) -> SafetyLimits:
        """The profile's limits for `joint_names` (default: all of the profile's joints, in its order)."""
        names = list(joint_names or profile.joint_names)
        missing = [n for n in names if n not in profile.joint_names]
        if missing:
            raise ValueError(f"joints {missing} are not in robot profile {profile.name!r}")
        idx = [list(profile.joint_names).index(n) for n in names]
        return cls(
            names,
            np.asarray(profile.position_lower, dtype=np.float64)[idx],
            np.asarray(profile.position_upper, dtype=np.float64)[idx],
            np.asarray(profile.velocity_limit, dtype=np.float64)[idx],
            float(getattr(profile, "measurement_tolerance", 0.0)),
        )

    @property
    def dof(self) -> int:
        return len(self.joint_names)


@dataclass
class SafeCommand:
    points: np.ndarray  # (N, J) float64, inside the limits
    position_clamped: bool  # some target was outside the position limits
    velocity_clamped: bool  # some step asked for more than velocity_limit * dt


class SafetyFilter:
    """Clamp an action chunk to the position limits and the per-step velocity limit, from a valid measurement.

    The invariant, for any input (tests/test_safety.py checks it as a property):
      - every commanded point is inside the position limits;
      - the first point is within `velocity_limit * dt` of the measured position, and each next point within the same
        of the one before;
      - a measured position outside the limits by more than the tolerance (the profile's `measurement_tolerance`,
        at most one step `velocity_limit * dt` per joint), or non-finite, is refused (UnsafeInput), never clamped into
        a target; a hold (`hold_point`) commands the last valid measurement, clipped into the limits.
    """

    def __init__(self, limits: SafetyLimits, dt: float) -> None:
        if not (np.isfinite(dt) and dt > 0):
            raise ValueError(f"SafetyFilter dt must be a finite number > 0 (1/control_hz), got {dt!r}")
        self.limits = limits
        self.dt = float(dt)
        # plain Python floats for apply()'s loop
        self._lo, self._hi = limits.position_lower.tolist(), limits.position_upper.tolist()
        self._max_step = (limits.velocity_limit * self.dt).tolist()
        tol = max(0.0, float(limits.measurement_tolerance))
        self.tolerance = np.minimum(tol, limits.velocity_limit * self.dt)  # clipping moves at most one step

    def check_position(self, q: np.ndarray, what: str = "joint position") -> np.ndarray:
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (self.limits.dof,):
            raise UnsafeInput(f"{what} has shape {q.shape}, expected ({self.limits.dof},)")
        if not np.all(np.isfinite(q)):
            raise UnsafeInput(f"{what} has non-finite values: {q}")
        return q

    def check_measurement(self, q: np.ndarray) -> np.ndarray:
        """A measured position (J,) as float64, or UnsafeInput naming the joint that lies outside its limits by more
        than the tolerance (an encoder fault, a wrong mapping, a unit mix-up: never a target)."""
        q = self.check_position(q, "measured joint position")
        lo, hi = self.limits.position_lower, self.limits.position_upper
        out = (q < lo - self.tolerance) | (q > hi + self.tolerance)
        if np.any(out):
            j = int(np.argmax(out))
            raise UnsafeInput(
                f"measured {self.limits.joint_names[j]} = {q[j]:.6g} is outside its limits "
                f"[{lo[j]:.4g}, {hi[j]:.4g}] by more than the tolerance {self.tolerance[j]:.3g}: "
                "refusing the measurement (sensor fault or wrong joint mapping?)"
            )
        return q

    def hold_point(self, q_valid: np.ndarray) -> np.ndarray:
        """The hold command (1, J) for the last valid measurement: it, clipped into the limits (within one step)."""
        q = self.check_measurement(q_valid)
        return np.clip(q, self.limits.position_lower, self.limits.position_upper)[None]

    def apply(self, chunk: np.ndarray, q_now: np.ndarray) -> SafeCommand:
        """Safe (N, J) targets from a predicted chunk (N, J) or (J,) and the measured position (J,).

        Point k = p_(k-1) + clip(clip(target_k, lower, upper) - p_(k-1), -max_step, max_step), p_(-1) = the measured
        position itself (not clipped: the first point must be within one step of where the joint really is). Each p
        lies between p_(k-1) and the in-limits target; a measurement past a limit by d <= tolerance <= max_step moves
        towards the limits, so p_0 is inside them too (a final clip only guards rounding).
        Written on Python floats: for a chunk of 8 x 8 this is cheaper than a dozen small numpy calls, most of all
        right after an inference has flushed the caches (benchmarks/node_step.py times it in wam_node).
        """
        q_now = self.check_measurement(q_now)
        pts = np.asarray(chunk, dtype=np.float64)
        if pts.ndim == 1:
            pts = pts[None]
        if pts.ndim != 2 or pts.shape[1] != self.limits.dof or pts.shape[0] < 1:
            raise UnsafeInput(f"action chunk has shape {pts.shape}, expected (N >= 1, {self.limits.dof})")
        lo, hi, m = self._lo, self._hi, self._max_step
        prev = q_now.tolist()
        rows = pts.tolist()
        position_clamped = velocity_clamped = False
        for row in rows:
            for j, target in enumerate(row):
                if not isfinite(target):
                    raise UnsafeInput("action chunk has non-finite values (NaN/Inf): refusing to command it")
                c = lo[j] if target < lo[j] else hi[j] if target > hi[j] else target
                if c != target:
                    position_clamped = True
                d = c - prev[j]
                if d > m[j]:
                    c, velocity_clamped = prev[j] + m[j], True
                elif d < -m[j]:
                    c, velocity_clamped = prev[j] - m[j], True
                c = lo[j] if c < lo[j] else hi[j] if c > hi[j] else c  # rounding guard (see the docstring)
                prev[j] = row[j] = c
        return SafeCommand(np.asarray(rows, dtype=np.float64), position_clamped, velocity_clamped)


@dataclass
class Stamped:
    """When an input stream last delivered a valid message: receipt time (local clock) and header stamp (sender)."""

    received: float
    stamp: float


@dataclass
class WatchdogStatus:
    ok: bool
    reason: str = ""


class Watchdog:
    """Inputs are fresh when both streams arrived within `timeout_s` and their stamps are within `max_skew_s`."""

    def __init__(self, timeout_s: float, max_skew_s: float) -> None:
        for name, v in (("timeout_s", timeout_s), ("max_skew_s", max_skew_s)):
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"Watchdog {name} must be a finite number > 0, got {v!r}")
        self.timeout_s = float(timeout_s)
        self.max_skew_s = float(max_skew_s)

    def check(self, now: float, camera: Stamped | None, joints: Stamped | None) -> WatchdogStatus:
        if camera is None or joints is None:
            missing = [n for n, s in (("camera", camera), ("joint_states", joints)) if s is None]
            return WatchdogStatus(False, f"no valid {' or '.join(missing)} received yet")
        for name, s in (("camera", camera), ("joint_states", joints)):
            age = now - s.received
            if age > self.timeout_s:
                return WatchdogStatus(
                    False, f"{name} is {age * 1e3:.0f} ms old (timeout {self.timeout_s * 1e3:.0f} ms)"
                )
        if (
            camera.stamp > 0 and joints.stamp > 0
        ):  # a zero stamp means the sender does not stamp; skip the check
            skew = abs(camera.stamp - joints.stamp)
            if skew > self.max_skew_s:
                return WatchdogStatus(
                    False,
                    f"camera and joint_states stamps are {skew * 1e3:.0f} ms apart "
                    f"(max {self.max_skew_s * 1e3:.0f} ms)",
                )
        return WatchdogStatus(True)


class StampGuard:
    """Refuse a message whose header stamp goes back in time relative to the last accepted one of its stream."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.last: float | None = None

    def accept(self, stamp: float) -> None:
        if not np.isfinite(stamp):
            raise UnsafeInput(f"{self.stream} stamp is not finite: {stamp}")
        if self.last is not None and stamp > 0 and stamp < self.last:
            raise UnsafeInput(
                f"{self.stream} stamp {stamp:.6f} is older than the last accepted {self.last:.6f} "
                f"(out of order)"
            )
        if stamp > 0:
            self.last = stamp

    def reset(self) -> None:
        self.last = None
