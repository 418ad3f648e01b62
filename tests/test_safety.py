"""Safety filter, watchdog, stamp guard and surprise monitor (pure numpy core, no ROS)."""

from __future__ import annotations

import numpy as np
import pytest

from wam_ros.robot import RobotProfile
from wam_ros.runtime.safety import SafetyFilter, SafetyLimits, Stamped, StampGuard, UnsafeInput, Watchdog
from wam_ros.runtime.surprise import SurpriseMonitor

PROFILE = RobotProfile.load("panda")
LIMITS = SafetyLimits.from_profile(PROFILE)
HOME = np.asarray(PROFILE.home)


def test_chunk_inside_limits_passes_unchanged():
    chunk = np.stack([HOME + 0.01 * k for k in range(1, 5)])
    chunk[:, -1] = 0.04
    home = HOME.copy()
    home[-1] = 0.04
    out = SafetyFilter(LIMITS, dt=0.1).apply(chunk, home)
    assert not out.position_clamped and not out.velocity_clamped
    np.testing.assert_array_equal(out.points, chunk)


def test_positions_clamped_to_profile_limits():
    chunk = np.tile(HOME, (3, 1))
    chunk[:, 0] = 10.0
    chunk[:, 3] = 1.0  # joint4 upper is -0.0698
    out = SafetyFilter(LIMITS, dt=100.0).apply(chunk, HOME)  # huge dt: only position limits bite
    assert out.position_clamped
    assert np.all(out.points <= LIMITS.position_upper) and np.all(out.points >= LIMITS.position_lower)
    assert out.points[0, 0] == pytest.approx(PROFILE.position_upper[0])


@pytest.mark.parametrize("dt", [0.1, 1 / 30])
def test_velocity_limited_along_the_chunk_from_measured_position(dt):
    rng = np.random.default_rng(0)
    chunk = HOME + rng.uniform(-2, 2, size=(8, LIMITS.dof))
    out = SafetyFilter(LIMITS, dt=dt).apply(chunk, HOME)
    assert out.velocity_clamped
    steps = np.diff(np.vstack([HOME, out.points]), axis=0)
    assert np.all(np.abs(steps) <= LIMITS.velocity_limit * dt + 1e-12)
    assert np.all(out.points <= LIMITS.position_upper) and np.all(out.points >= LIMITS.position_lower)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_chunk_or_position_refused(bad):
    f = SafetyFilter(LIMITS, dt=0.1)
    chunk = np.tile(HOME, (4, 1))
    chunk[2, 1] = bad
    with pytest.raises(UnsafeInput, match="non-finite"):
        f.apply(chunk, HOME)
    q = HOME.copy()
    q[0] = bad
    with pytest.raises(UnsafeInput, match="non-finite"):
        f.apply(np.tile(HOME, (4, 1)), q)


def test_wrong_shapes_refused_with_expected_shape():
    f = SafetyFilter(LIMITS, dt=0.1)
    with pytest.raises(UnsafeInput, match=r"expected \(N >= 1, 8\)"):
        f.apply(np.zeros((4, 7)), HOME)
    with pytest.raises(UnsafeInput, match=r"expected \(8,\)"):
        f.apply(np.tile(HOME, (4, 1)), HOME[:7])


def test_bad_configuration_names_the_value():
    with pytest.raises(ValueError, match="dt"):
        SafetyFilter(LIMITS, dt=0.0)
    with pytest.raises(ValueError, match="velocity_limit"):
        SafetyLimits(["a"], [0.0], [1.0], [-1.0])
    with pytest.raises(ValueError, match="timeout_s"):
        Watchdog(timeout_s=float("nan"), max_skew_s=0.1)


def test_watchdog_fresh_stale_and_skew():
    wd = Watchdog(timeout_s=0.3, max_skew_s=0.1)
    assert "no valid camera" in wd.check(10.0, None, Stamped(10.0, 5.0)).reason
    assert wd.check(10.0, Stamped(9.9, 5.0), Stamped(9.95, 5.05)).ok
    st = wd.check(10.0, Stamped(9.5, 5.0), Stamped(9.95, 5.0))
    assert not st.ok and "camera is 500 ms old" in st.reason
    st = wd.check(10.0, Stamped(9.9, 5.0), Stamped(9.9, 5.3))
    assert not st.ok and "300 ms apart" in st.reason
    assert wd.check(10.0, Stamped(9.9, 0.0), Stamped(9.9, 5.3)).ok  # unstamped sender: skew not checkable


def test_stamp_guard_refuses_out_of_order():
    g = StampGuard("camera")
    g.accept(1.0)
    g.accept(1.0)  # equal is fine (same stamp resent)
    g.accept(2.0)
    with pytest.raises(UnsafeInput, match="out of order"):
        g.accept(1.5)
    g.accept(0.0)  # unstamped is accepted and does not move the guard
    g.accept(2.5)


def test_surprise_zero_for_a_correct_prediction_and_large_for_a_change():
    m = SurpriseMonitor(threshold=0.01)
    assert m.observe(np.zeros((64, 64, 3), np.uint8)) is None  # nothing predicted yet
    frame = np.full((64, 64, 3), 100, np.uint8)
    m.expect(frame)
    assert m.observe(np.full((128, 128, 3), 100, np.uint8)) == pytest.approx(0.0)  # resized to the prediction
    assert not m.exceeded
    m.expect(frame)
    value = m.observe(np.full((64, 64, 3), 200, np.uint8))
    assert value == pytest.approx((100 / 255) ** 2, rel=1e-5)
    assert m.exceeded
    with pytest.raises(ValueError, match="uint8"):
        m.expect(np.zeros((64, 64, 3), np.float32))


def test_vectorised_fast_path_matches_the_sequential_clamp():
    """Chunks whose every step is within the velocity limit take the vectorised path; the result must be what the
    step-by-step clamp gives (up to float rounding), and chunks that need clamping still get clamped."""

    prof = RobotProfile.load("panda")
    limits = SafetyLimits.from_profile(prof)
    f = SafetyFilter(limits, 1 / 30)
    lo, hi = np.asarray(limits.position_lower), np.asarray(limits.position_upper)
    max_step = np.asarray(limits.velocity_limit) / 30

    def sequential(chunk, q):
        prev, out = np.clip(q, lo, hi), []
        for row in np.clip(chunk, lo, hi):
            prev = np.clip(prev + np.clip(row - prev, -max_step, max_step), lo, hi)
            out.append(prev)
        return np.asarray(out)

    rng = np.random.default_rng(0)
    q = np.clip(np.asarray(prof.home, dtype=float), lo + 0.05, hi - 0.05)
    for scale in (0.3, 0.9, 3.0):  # within the limit, close to it, far beyond it
        chunk = q + np.cumsum(rng.uniform(-1, 1, (8, len(q))) * max_step * scale, axis=0)
        res = f.apply(chunk, q)
        np.testing.assert_allclose(res.points, sequential(chunk, q), atol=1e-12)
        assert res.velocity_clamped == (scale > 1)
        assert np.all(np.abs(np.diff(res.points, axis=0, prepend=q[None])) <= max_step + 1e-12)
