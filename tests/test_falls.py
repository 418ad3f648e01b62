"""The fall episode (wam_ros/sim/falls.py; its episode format: wam_ros/train/campaign/episodes.py) on real PyBullet: parameters, upright-relative fall detection, determinism.

Run: .venv/bin/pytest tests/test_falls.py
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from wam_ros.data.episode import episode_path, read_episode, write_episode
from wam_ros.sim.falls import (
    FallConfig,
    FallSim,
    Randomization,
    is_fallen,
    rotation,
    sample_params,
    tilt_deg,
    upright_axis,
)
from wam_ros.sim.imu import align_z_to, quat_conj, quat_mul, rotate_inv, tilt_from_orientation_deg
from wam_ros.train.campaign.episodes import fall_episode
from wam_ros.train.campaign.traces import trace_matrix
from wam_ros.train.protect import reading_vector


@pytest.fixture(scope="module")
def laikago() -> FallSim:
    sim = FallSim(FallConfig(robot="laikago"))
    yield sim
    sim.close()


def same(a, b) -> bool:
    """Dataclass equality where NaN == NaN (time_to_fall is NaN when the robot did not fall)."""
    ta, tb = dataclasses.astuple(a), dataclasses.astuple(b)
    return all(
        (x == y) or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
        for x, y in zip(ta, tb, strict=True)
    )


def test_params_are_a_pure_function_of_seed_and_index():
    cfg = FallConfig()
    forward = [sample_params(3, i, cfg) for i in range(50)]
    backward = [sample_params(3, i, cfg) for i in reversed(range(50))][::-1]
    assert forward == backward
    assert sample_params(3, 7, FallConfig()) == forward[7]  # a fresh config object: same values
    assert sample_params(4, 7, cfg) != forward[7]  # another campaign seed: other conditions
    assert len({p.push_force for p in forward}) == 50  # every episode differs
    r = cfg.randomization
    for p in forward:
        assert r.push_force[0] <= p.push_force <= r.push_force[1]
        assert r.friction[0] <= p.friction <= r.friction[1]
        assert r.slope_deg[0] <= p.slope_deg <= r.slope_deg[1]
        assert r.motor_strength[0] <= p.motor_strength <= r.motor_strength[1]
        assert 0 <= p.push_yaw < 2 * math.pi
    # the values themselves are pinned: a change in the draw order would silently change every campaign
    assert (forward[0].push_force, forward[0].friction) == (34.259666857449744, 0.7832410385126671)
    with pytest.raises(ValueError, match="index"):
        sample_params(0, -1, cfg)


def test_tilt_is_relative_to_the_upright_pose():
    stand = (0.0, 0.5**0.5, 0.5**0.5, 0.0)  # laikago's Y-up URDF as loaded
    up = upright_axis(stand)
    assert np.allclose(up, [0, 1, 0], atol=1e-9)
    assert tilt_deg(stand, up) == pytest.approx(0.0, abs=1e-6)
    assert tilt_deg(stand, (0.0, 0.0, 1.0)) == pytest.approx(
        90.0, abs=1e-6
    )  # the naive local-Z test says "fallen"
    for angle in (10.0, 45.0, 120.0):  # roll the standing robot about the world X axis by `angle`
        half = math.radians(angle) / 2
        roll = np.array([math.sin(half), 0, 0, math.cos(half)])
        q = _qmul(roll, np.array(stand))
        assert tilt_deg(q, up) == pytest.approx(angle, abs=1e-6)
        assert np.allclose(rotation(q) @ up, rotation(roll) @ [0, 0, 1])


def _qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ]
    )


def test_laikago_stands_upright_in_its_own_frame(laikago):
    assert np.allclose(laikago.up_local, [0, 1, 0], atol=0.01)  # Y-up URDF: base-local Y is up
    assert 0.4 < laikago.standing_height < 0.55
    assert tilt_deg(laikago.standing_orientation, laikago.up_local) < 0.5


@pytest.mark.parametrize("robot", ["laikago", "a1"])
def test_no_fall_without_a_push_under_randomised_conditions(robot, laikago):
    sim = laikago if robot == "laikago" else FallSim(FallConfig(robot=robot))
    try:
        r = sim.cfg.randomization
        extremes = [  # (slope, friction, mass, strength) corners of the ranges + random draws
            (r.slope_deg[1], r.friction[0], r.mass_scale[1], r.motor_strength[0]),
            (0.0, r.friction[1], r.mass_scale[0], r.motor_strength[1]),
        ]
        params = [sample_params(11, i, sim.cfg) for i in range(4)]
        params += [
            dataclasses.replace(params[0], slope_deg=s, friction=f, mass_scale=m, motor_strength=k)
            for s, f, m, k in extremes
        ]
        for p in params:
            res = sim.run(dataclasses.replace(p, push_force=0.0))
            assert not res.fell, (p, res)
            assert res.recovered and res.outcome == "recovered", (p, res)
            assert math.isnan(res.time_to_fall)
            assert res.max_tilt_deg < 10
    finally:
        if sim is not laikago:
            sim.close()


def test_falls_under_a_large_push(laikago):
    base = sample_params(0, 0, laikago.cfg)
    push = dataclasses.replace(
        base,
        push_force=400.0,
        push_duration=0.25,
        slope_deg=0.0,
        friction=1.0,
        mass_scale=1.0,
        motor_strength=1.0,
        push_start=0.3,
    )
    res = laikago.run(push)
    assert res.fell and res.outcome == "fell" and not res.recovered
    assert 0 < res.time_to_fall < 1.2
    assert res.fall_time == pytest.approx(push.push_start + res.time_to_fall, abs=1 / 240)
    assert res.max_tilt_deg > laikago.cfg.fall_tilt_deg or res.min_height < 0.55 * laikago.standing_height
    assert is_fallen(res.final_height, res.final_tilt_deg, laikago.standing_height, laikago.cfg)
    weak = laikago.run(dataclasses.replace(push, push_force=20.0))  # the same push, 20x weaker: stays up
    assert not weak.fell
    assert not is_fallen(weak.final_height, weak.final_tilt_deg, laikago.standing_height, laikago.cfg)


def test_episode_outcome_does_not_depend_on_what_ran_before(laikago):
    cfg = laikago.cfg
    params = [sample_params(5, i, cfg) for i in range(8)]
    first = [laikago.run(p) for p in params]
    again = [laikago.run(p) for p in reversed(params)][::-1]  # after other episodes, in another order
    with FallSim(cfg) as fresh:
        alone = fresh.run(params[6])
    assert all(same(a, b) for a, b in zip(first, again, strict=True))
    assert same(first[6], alone)
    assert {r.outcome for r in first} >= {"fell"}  # the sample is not all one outcome
    assert not all(r.fell for r in first)


def test_recorded_episode_is_in_the_project_format_and_changes_nothing(laikago, tmp_path):
    p = sample_params(5, 3, laikago.cfg)
    plain = laikago.run(p)
    res, rec = laikago.run(p, record=True)
    ep = fall_episode(laikago, p, res, rec)  # the train layer builds the episode format from the sim's arrays
    assert same(plain, res)  # rendering and readback do not perturb the physics
    path = write_episode(episode_path(tmp_path, 3), ep)
    back = read_episode(path)
    t = len(back)
    every = laikago.cfg.sim_hz // laikago.cfg.record_hz
    assert t == math.ceil(res.steps / every) + 1  # one sample every `every` steps + the final state
    assert back.frames.shape == (t, 64, 64, 3) and back.frames.dtype == np.uint8
    assert back.frames.std() > 5  # a real image, not a blank
    assert back.joint_pos.shape == (t, 12) and len(back.meta["robot"]["joint_names"]) == 12
    assert back.meta["task"] == "fall" and back.meta["success"] == (not res.fell)
    assert back.meta["outcome"]["outcome"] == res.outcome
    assert back.meta["randomisation"]["index"] == 3
    assert back.extra["base_pos"].shape == (t, 3)
    assert np.all(np.diff(back.timestamps) > 0)


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="robot.*'spot'"):
        FallConfig(robot="spot")
    with pytest.raises(ValueError, match="record_hz"):
        FallConfig(record_hz=7)
    with pytest.raises(ValueError, match="friction"):
        Randomization(friction=(0.0, 1.0))
    with pytest.raises(ValueError, match="push_force"):
        Randomization(push_force=(10.0, 5.0))
    with pytest.raises(ValueError, match="slope_deg"):
        Randomization(slope_deg=(0.0, 60.0))


def test_trace_changes_nothing_and_reads_like_an_imu(laikago):
    """Traces are read-only, and what they hold is what a base IMU and joint encoders would report."""
    base = sample_params(5, 3, laikago.cfg)
    plain = laikago.run(base)
    traced = laikago.run_full(base, trace=True)
    assert same(plain, traced.result) and traced.recording is None
    tr = traced.trace
    assert len(tr) == 1 + (plain.steps * 100) // 240 and tr.joint_effort.shape == (len(tr), 12)
    assert tr.t.dtype == np.float32 and np.allclose(np.diff(tr.t), 0.01)

    still = dataclasses.replace(
        base, push_force=0.0, slope_deg=0.0, standing=True, friction=1.0, mass_scale=1.0, motor_strength=1.0
    )
    flat = laikago.run_full(still).trace
    assert np.allclose(
        flat.linear_acceleration[-50:], [0, 0, 9.81], atol=0.05
    )  # gravity, as an accelerometer
    assert np.abs(flat.angular_velocity[-50:]).max() < 0.01
    assert tilt_from_orientation_deg(flat.orientation[-1]) < 0.5
    # the motors hold the body: their torques are not zero (a standing robot is loaded)
    assert np.abs(flat.joint_effort[-1]).max() > 1.0

    slope = laikago.run_full(dataclasses.replace(still, slope_deg=8.0, slope_yaw=1.0)).trace
    # on a slope the IMU (relative to gravity) reads the slope; the fall detector's tilt (to the ground) does not
    assert abs(tilt_from_orientation_deg(slope.orientation[-1]) - 8.0) < 1.5
    assert slope.tilt_deg[-1] < 1.5
    assert np.linalg.norm(slope.linear_acceleration[-1]) == pytest.approx(9.81, abs=0.05)

    shove = dataclasses.replace(still, standing=False, push_force=300.0, push_start=0.3, push_duration=0.1)
    pushed = laikago.run_full(shove).trace
    during = (pushed.t > 0.32) & (pushed.t < 0.39)
    horizontal = np.linalg.norm(pushed.linear_acceleration[during, :2], axis=1)
    assert horizontal.max() > 3.0  # the push shows in the accelerometer (it is not recorded itself)
    assert np.abs(flat.linear_acceleration[-50:, :2]).max() < 0.2


def test_standing_episodes_are_unpushed_draws_of_the_same_conditions(laikago):
    mixed = FallConfig(standing_fraction=0.3, standing_s=2.0)
    a = [sample_params(2, i, FallConfig()) for i in range(200)]
    b = [sample_params(2, i, mixed) for i in range(200)]
    standing = [p for p in b if p.standing]
    assert 40 <= len(standing) <= 80 and all(p.push_force == 0.0 for p in standing)
    for pa_, pb in zip(a, b, strict=True):  # the other draws are the same: one draw order, appended
        assert (pa_.slope_deg, pa_.friction, pa_.motor_strength) == (
            pb.slope_deg,
            pb.friction,
            pb.motor_strength,
        )
        assert pb.standing or pa_.push_force == pb.push_force
    with FallSim(mixed) as sim:
        out = sim.run_full(standing[0], trace=True)
    assert out.result.sim_time == pytest.approx(2.0) and out.result.recovered  # never stops early
    assert len(out.trace) == 201
    with pytest.raises(ValueError, match="standing_fraction"):
        FallConfig(standing_fraction=1.5)
    with pytest.raises(ValueError, match="trace_hz"):
        FallConfig(trace_hz=500)


def test_imu_maths_agrees_with_the_rotation_matrix():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(20, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    v = rng.normal(size=(20, 3))
    for qi, vi, got in zip(q, v, rotate_inv(q, v), strict=True):
        assert np.allclose(got, rotation(qi).T @ vi)
    for d in ([0, 0, 1], [0, 0, -1], [1, 2, 3], [0.1, 0, 1]):
        d = np.asarray(d, float) / np.linalg.norm(d)
        assert np.allclose(rotation(align_z_to(d)) @ [0, 0, 1], d)
    assert np.allclose(quat_mul(q, quat_conj(q)), [0, 0, 0, 1])


def test_stepping_reproduces_the_episode_and_its_trace(laikago):
    """FallSim.begin/step/read (closed loop, legged_sim_node) is the same episode as run_full, bit for bit."""
    for i in (1, 3):  # a fall and a recovery under seed 0
        p = sample_params(0, i, laikago.cfg)
        full = laikago.run_full(p, trace=True)
        laikago.begin(p)
        rows, tick = [], 0
        while laikago.step_count < full.result.steps:
            if laikago.step_count == tick * 240 // 100:
                rows.append(reading_vector(laikago.read()))
                tick += 1
            laikago.step()
            assert laikago.fallen() == (full.result.fell and laikago.step_count == full.result.steps)
        want = trace_matrix(full.trace)[: len(rows), 1:-2]  # columns: t | the readings | tilt_deg, height
        assert np.array_equal(np.asarray(rows, dtype=np.float32), want)
    laikago.begin(sample_params(0, 1, laikago.cfg))
    before = laikago.body_contact()
    assert before[0] == 0.0  # standing: only feet and lower legs touch the ground
    laikago.push_now(400.0, 0.0, 0.25)
    laikago.step(240 * 2)
    assert laikago.fallen() and laikago.body_contact()[0] > 0  # pushed over: the body lies on the ground
    with pytest.raises(ValueError, match="targets"):
        laikago.set_targets([0.0] * 3)
