"""The SafetyFilter invariant as a property (hypothesis), for any chunk, measured position, dt and profile.

The invariant (wam_ros.runtime.safety.SafetyFilter's docstring, issue 15 item 2):
  - every commanded point is inside the position limits;
  - the first point is within `velocity_limit * dt` of the measured position, each next within the same of the one
    before;
  - a measurement outside the limits by more than the tolerance (min(profile tolerance, one step) per joint), or
    non-finite, is refused (UnsafeInput), never clamped into a target;
  - hold_point(q) = clip(q) (within one step of q).

The oracle below is written from that statement, not from the filter's code. Profiles: the shipped Panda's, and
synthetic ones drawn by hypothesis (any limits, velocity limits and tolerance).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from wam_ros.robot import RobotProfile
from wam_ros.runtime.safety import SafetyFilter, SafetyLimits, UnsafeInput

PANDA = SafetyLimits.from_profile(RobotProfile.load("panda"))
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ABSURD = [1e300, -1e300, 1e30, -1e30, 1e6, float("nan"), float("inf"), -float("inf"), 1.7976931348623157e308]


@st.composite
def synthetic_limits(draw: st.DrawFn) -> SafetyLimits:
    dof = draw(st.integers(1, 9))
    lower = np.asarray(draw(st.lists(st.floats(-50, 50), min_size=dof, max_size=dof)))
    width = np.asarray(draw(st.lists(st.floats(1e-3, 20), min_size=dof, max_size=dof)))
    vel = np.asarray(draw(st.lists(st.floats(1e-3, 50), min_size=dof, max_size=dof)))
    tol = draw(st.sampled_from([0.0, 1e-3, 0.05, 0.5, 5.0]))
    upper = lower + width
    assume(np.all(lower < upper))
    return SafetyLimits([f"j{i}" for i in range(dof)], lower, upper, vel, tol)


LIMITS = st.one_of(st.just(PANDA), synthetic_limits())
DT = st.one_of(st.sampled_from([1 / 30, 0.1, 0.05]), st.floats(1e-4, 2.0))


def tolerance(limits: SafetyLimits, dt: float) -> np.ndarray:
    """Per joint: how far outside the limits a measurement may lie (the profile's tolerance, at most one step)."""
    return np.minimum(max(0.0, limits.measurement_tolerance), limits.velocity_limit * dt)


KINDS = ("inside", "inside", "within_tolerance", "far", "absurd")


@st.composite
def measurement(
    draw: st.DrawFn, limits: SafetyLimits, dt: float, kinds: tuple[str, ...] = KINDS
) -> tuple[np.ndarray, str]:
    """A measured position and its class: inside, within_tolerance (outside by less than the tolerance), far (outside
    by more), absurd (1e300, NaN, inf...)."""
    lo, hi, tol = limits.position_lower, limits.position_upper, tolerance(limits, dt)
    q = np.asarray([draw(st.floats(a, b)) for a, b in zip(lo, hi, strict=True)])
    kind = draw(st.sampled_from(kinds))
    if kind == "inside":
        return q, kind
    j = draw(st.integers(0, limits.dof - 1))
    side = draw(st.sampled_from([-1.0, 1.0]))
    edge = hi[j] if side > 0 else lo[j]
    if kind == "within_tolerance":
        q[j] = edge + side * draw(st.floats(0.0, 0.999)) * tol[j]
    elif kind == "far":
        q[j] = edge + side * (tol[j] + draw(st.floats(1e-6, 1e6)) * max(tol[j], 1e-3))
    else:
        q[j] = draw(st.sampled_from(ABSURD))
    return q, kind


def chunk_values(limits: SafetyLimits) -> st.SearchStrategy[float]:
    span = float(np.max(np.abs(np.concatenate([limits.position_lower, limits.position_upper])))) + 1.0
    return st.one_of(
        st.floats(-span, span),  # mostly plausible targets, some outside the limits
        st.floats(allow_nan=False, allow_infinity=False),  # anything finite, up to 1.8e308
        st.sampled_from(ABSURD),
    )


@st.composite
def chunk(draw: st.DrawFn, limits: SafetyLimits) -> np.ndarray:
    n = draw(st.integers(1, 12))
    values = draw(st.lists(chunk_values(limits), min_size=n * limits.dof, max_size=n * limits.dof))
    return np.asarray(values, dtype=np.float64).reshape(n, limits.dof)


def expect_refusal(limits: SafetyLimits, dt: float, q: np.ndarray) -> bool:
    """The oracle: refuse a non-finite measurement, or one outside the limits by more than the tolerance."""
    if not np.all(np.isfinite(q)):
        return True
    tol = tolerance(limits, dt)
    return bool(np.any(q < limits.position_lower - tol) or np.any(q > limits.position_upper + tol))


def assert_inside(points: np.ndarray, limits: SafetyLimits) -> None:
    assert np.all(np.isfinite(points))
    assert np.all(points >= limits.position_lower), (points, limits.position_lower)
    assert np.all(points <= limits.position_upper), (points, limits.position_upper)


def step_bound(limits: SafetyLimits, dt: float) -> np.ndarray:
    """One velocity step, with a float rounding allowance (a few ulps of the positions involved)."""
    scale = np.maximum(np.abs(limits.position_lower), np.abs(limits.position_upper)) + 1.0
    return limits.velocity_limit * dt + 1e-12 * scale


@st.composite
def case(draw: st.DrawFn) -> tuple[SafetyLimits, float, np.ndarray, str, np.ndarray]:
    limits = draw(LIMITS)
    dt = draw(DT)
    q, kind = draw(measurement(limits, dt))
    return limits, dt, q, kind, draw(chunk(limits))


@SETTINGS
@given(case())
def test_apply_keeps_the_invariant_or_refuses(c):
    limits, dt, q, kind, pts = c
    f = SafetyFilter(limits, dt)
    if expect_refusal(limits, dt, q):
        assert kind in ("far", "absurd")
        with pytest.raises(
            UnsafeInput, match=r"non-finite|outside its limits \[.*\] by more than the tolerance"
        ):
            f.apply(pts, q)
        return
    assert kind in (
        "inside",
        "within_tolerance",
        "far",
    )  # "far" by less than 1e-3 past a 0 tolerance: rounding
    if not np.all(np.isfinite(pts)):
        with pytest.raises(UnsafeInput, match="non-finite"):
            f.apply(pts, q)
        return
    out = f.apply(pts, q).points
    assert out.shape == pts.shape
    assert_inside(out, limits)
    bound = step_bound(limits, dt)
    assert np.all(np.abs(np.diff(out, axis=0)) <= bound), "consecutive points more than one step apart"
    # The first point is within one step of the measurement itself, also for a measurement within the tolerance past
    # a limit (the filter starts from the measurement, not from its clipped value: the bug this property found).
    assert np.all(np.abs(out[0] - q) <= bound), (kind, out[0], q)


@SETTINGS
@given(st.data())
def test_a_chunk_that_is_already_safe_passes_unchanged(data):
    limits, dt = data.draw(LIMITS), data.draw(DT)
    q, _ = data.draw(measurement(limits, dt, ("inside",)))
    # a path that stays inside the limits and moves at most 0.9 of a step per point from q
    rng = np.random.default_rng(abs(hash(q.tobytes())) % 2**32)
    path, prev = [], q.copy()
    for _ in range(6):
        prev = np.clip(
            prev + rng.uniform(-0.9, 0.9, q.shape) * limits.velocity_limit * dt,
            limits.position_lower,
            limits.position_upper,
        )
        path.append(prev)
    res = SafetyFilter(limits, dt).apply(np.asarray(path), q)
    np.testing.assert_array_equal(res.points, np.asarray(path))
    assert not res.position_clamped and not res.velocity_clamped


@SETTINGS
@given(st.data())
def test_hold_point_is_the_clipped_valid_measurement_or_a_refusal(data):
    limits, dt = data.draw(LIMITS), data.draw(DT)
    q, kind = data.draw(measurement(limits, dt))
    f = SafetyFilter(limits, dt)
    if expect_refusal(limits, dt, q):
        with pytest.raises(UnsafeInput):
            f.hold_point(q)
        with pytest.raises(UnsafeInput):
            f.check_measurement(q)
        return
    hold = f.hold_point(q)
    assert hold.shape == (1, limits.dof)
    assert_inside(hold, limits)
    np.testing.assert_array_equal(hold[0], np.clip(q, limits.position_lower, limits.position_upper))
    assert np.all(np.abs(hold[0] - q) <= tolerance(limits, dt) + 1e-12)  # never more than one step away
    assert np.all(np.abs(hold[0] - q) <= step_bound(limits, dt))


@SETTINGS
@given(st.data())
def test_a_refused_measurement_names_the_joint(data):
    limits, dt = data.draw(LIMITS), data.draw(DT)
    q, _ = data.draw(measurement(limits, dt, ("far",)))
    if not expect_refusal(limits, dt, q):  # "far" by less than the rounding of edge + tolerance
        return
    j = int(np.argmax(q != np.clip(q, limits.position_lower, limits.position_upper)))
    with pytest.raises(UnsafeInput, match=rf"measured {limits.joint_names[j]} = .* is outside its limits"):
        SafetyFilter(limits, dt).check_measurement(q)


@settings(max_examples=100, deadline=None)
@given(LIMITS, DT, st.sampled_from([(0, 8), (3, 0), (2, 3, 8), (8,), (0,)]))
def test_wrong_shapes_are_refused(limits, dt, shape):
    f = SafetyFilter(limits, dt)
    q = (limits.position_lower + limits.position_upper) / 2
    bad = np.zeros(shape) if shape != (8,) or limits.dof != 8 else np.zeros((0, 8))
    with pytest.raises(UnsafeInput, match="shape"):
        f.apply(bad, q)
    with pytest.raises(UnsafeInput, match="shape"):
        f.apply(np.tile(q, (2, 1)), np.append(q, 0.0))


def test_first_point_within_one_step_of_a_measurement_just_outside_the_limits():
    f = SafetyFilter(PANDA, 0.1)
    q = (PANDA.position_lower + PANDA.position_upper) / 2
    q[0] = PANDA.position_upper[0] + 0.049  # within the 0.05 tolerance: a valid measurement
    assert not expect_refusal(PANDA, 0.1, q)
    target = q.copy()
    target[0] = PANDA.position_lower[0]  # the model asks to go the other way, far
    out = f.apply(np.tile(target, (4, 1)), q).points
    assert_inside(out, PANDA)
    assert abs(out[0, 0] - q[0]) <= PANDA.velocity_limit[0] * 0.1 + 1e-9, (
        f"first point {out[0, 0]:.4f} is {abs(out[0, 0] - q[0]):.4f} rad from the measured {q[0]:.4f}; "
        f"one step is {PANDA.velocity_limit[0] * 0.1:.4f}"
    )
