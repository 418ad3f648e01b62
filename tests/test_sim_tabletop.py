"""TabletopEnv on real PyBullet: spaces, determinism by seed, instructions, randomisation bounds, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from wam_ros.sim._tasks import COLOURS, RANDOMISATION_BOUNDS
from wam_ros.sim.experts import make_expert
from wam_ros.sim.tabletop import TabletopEnv
from wam_ros.train.rollout import record_episode


@pytest.fixture(scope="module")
def reach_env():
    env = TabletopEnv(task="reach")
    yield env
    env.close()


@pytest.fixture(scope="module")
def push_env():
    env = TabletopEnv(task="push")
    yield env
    env.close()


def test_passes_gymnasium_env_checker():
    from gymnasium.utils.env_checker import check_env

    for task in ("reach", "push"):
        env = TabletopEnv(task=task, image_size=32)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter(
                    "ignore"
                )  # advice about non-normalised Box spaces: absolute joint targets
                check_env(env, skip_render_check=True)
        finally:
            env.close()


def _same(a, b) -> bool:
    return all(
        np.array_equal(getattr(a, k), getattr(b, k)) for k in ("frames", "joint_pos", "joint_vel", "actions")
    )


def test_observation_has_only_camera_and_joints(reach_env):
    obs, info = reach_env.reset(seed=1)
    assert set(obs) == {"image", "joint_pos", "joint_vel"}
    assert obs["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8
    assert obs["joint_pos"].shape == (8,) and obs["joint_pos"].dtype == np.float32
    assert reach_env.observation_space.contains(obs)
    assert obs["image"].std() > 5, "the camera frame should show a scene, not a flat colour"
    # privileged scene lives in info, not in the observation
    assert {"task", "instruction", "scene", "randomisation"} <= set(info)
    assert info["scene"]["goal"] in info["scene"]["objects"]
    assert abs(obs["joint_pos"][7] - 0.08) < 1e-3  # gripper width (both fingers) starts open for reach


@pytest.mark.parametrize("task", ["reach", "push"])
def test_same_seed_same_episode_different_seed_different(task, reach_env, push_env):
    env = reach_env if task == "reach" else push_env
    other = TabletopEnv(task=task)
    try:
        a = record_episode(env, make_expert(env), seed=5)
        record_episode(env, make_expert(env), seed=9)  # another episode in between must not leak state
        b = record_episode(env, make_expert(env), seed=5)
        c = record_episode(other, make_expert(other), seed=5)  # a fresh env (fresh physics client)
    finally:
        other.close()
    assert _same(a, b) and _same(a, c)
    assert a.meta["scene"] == c.meta["scene"] and a.instruction == c.instruction
    d_obs, _ = env.reset(seed=6)
    assert not np.array_equal(d_obs["image"], a.frames[0])


def test_instruction_option_keeps_the_scene_and_names_the_goal(reach_env):
    scenes, instructions = [], []
    for k in range(reach_env.n_instructions):
        _, info = reach_env.reset(seed=11, options={"instruction": k})
        scene = info["scene"]
        scenes.append(scene["objects"])
        instructions.append(info["instruction"])
        goal_colour = scene["objects"][scene["goal"]]["colour"]
        assert info["instruction"] == f"reach the {goal_colour} target"
        assert goal_colour in COLOURS
    assert all(s == scenes[0] for s in scenes), "the instruction choice must not change the scene"
    assert len(set(instructions)) == reach_env.n_instructions
    colours = [o["colour"] for o in scenes[0].values()]
    assert len(set(colours)) == len(colours), "targets must have distinct colours"


def test_push_instruction_names_a_pad(push_env):
    _, info = push_env.reset(seed=2, options={"instruction": 1})
    pad = info["scene"]["objects"][info["scene"]["goal"]]
    assert info["scene"]["goal"] == "pad_1"
    assert info["instruction"] == f"push the cube onto the {pad['colour']} pad"
    assert "cube" in push_env.object_positions()


def test_randomisation_is_bounded_and_recorded(reach_env, push_env):
    b = RANDOMISATION_BOUNDS
    for seed in range(8):
        for env in (reach_env, push_env):
            _, info = env.reset(seed=seed)
            r = info["randomisation"]
            assert r["enabled"] and r["bounds"] == b
            assert np.all(np.abs(r["start_jitter"]) <= b["start_jitter_rad"])
            assert b["table_friction"][0] <= r["table_friction"] <= b["table_friction"][1]
            assert b["light_ambient"][0] <= r["light"]["ambient"] <= b["light_ambient"][1]
            assert b["camera_fov_deg"][0] <= r["camera"]["fov"] <= b["camera_fov_deg"][1]
            for obj in info["scene"]["objects"].values():
                if obj["colour"] in COLOURS:
                    assert np.all(
                        np.abs(np.subtract(obj["rgb"], COLOURS[obj["colour"]])) <= b["colour_jitter"] + 1e-9
                    )
                if env.task == "reach":
                    x, y, _ = obj["position"]
                    assert b["reach_target_x"][0] <= x <= b["reach_target_x"][1]
                    assert b["reach_target_y"][0] <= y <= b["reach_target_y"][1]
            if env.task == "push":
                assert b["push_cube_mass_kg"][0] <= r["cube_mass"] <= b["push_cube_mass_kg"][1]


def test_randomize_false_uses_nominal_values():
    env = TabletopEnv(task="reach", randomize=False, image_size=32)
    try:
        _, a = env.reset(seed=1)
        _, b = env.reset(seed=2)
    finally:
        env.close()
    assert a["randomisation"]["camera"] == b["randomisation"]["camera"]
    assert a["randomisation"]["start_jitter"] == [0.0] * 7
    assert a["scene"]["objects"] != b["scene"]["objects"]  # placement still follows the seed


def test_actions_are_clamped_and_bad_actions_refused(reach_env):
    obs, _ = reach_env.reset(seed=0)
    wild = np.full(8, 10.0)
    _, _, _, _, info = reach_env.step(wild)
    assert np.allclose(info["applied_action"], reach_env.profile.position_upper)
    with pytest.raises(ValueError, match="8 absolute joint targets"):
        reach_env.step(np.zeros(7))
    with pytest.raises(ValueError, match="NaN"):
        reach_env.step(np.full(8, np.nan))


def test_holding_still_never_succeeds_and_truncates():
    env = TabletopEnv(task="reach", max_steps=3, image_size=32)
    try:
        obs, _ = env.reset(seed=4)
        hold = obs["joint_pos"].copy()
        flags = [env.step(hold)[2:4] for _ in range(3)]
    finally:
        env.close()
    assert flags == [(False, False), (False, False), (False, True)]


def test_wrist_camera_and_no_render():
    env = TabletopEnv(task="push", image_size=32, wrist_camera=True)
    try:
        obs, _ = env.reset(seed=0)
        assert obs["wrist_image"].shape == (32, 32, 3) and obs["wrist_image"].std() > 1
        assert not np.array_equal(obs["wrist_image"], obs["image"])
    finally:
        env.close()
    env = TabletopEnv(task="reach", render=False)
    try:
        obs, _ = env.reset(seed=0)
        assert not obs["image"].any()
    finally:
        env.close()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"task": "stack"}, "unknown task 'stack'"),
        ({"image_size": 8}, "image_size"),
        ({"control_hz": 7}, "control_hz"),
        ({"max_steps": 0}, "max_steps"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TabletopEnv(**kwargs)


def test_bad_reset_and_step_before_reset():
    env = TabletopEnv(task="reach", image_size=32)
    try:
        with pytest.raises(RuntimeError, match="reset"):
            env.step(np.zeros(8))
        with pytest.raises(ValueError, match="instruction"):
            env.reset(seed=0, options={"instruction": 3})
        with pytest.raises(ValueError, match="unknown reset options"):
            env.reset(seed=0, options={"target": 1})
        with pytest.raises(ValueError, match="seed"):
            env.reset(seed=-1)
    finally:
        env.close()


def test_rollout_is_plain_arrays_and_the_train_layer_writes_the_episode(reach_env, tmp_path):
    from wam_ros.data.episode import episode_path, read_episode, write_episode
    from wam_ros.sim.tabletop import TabletopRollout, rollout
    from wam_ros.train.rollout import to_episode

    run = rollout(reach_env, make_expert(reach_env), seed=5, instruction=1)
    assert isinstance(run, TabletopRollout) and run.success
    for name in ("frames", "joint_pos", "joint_vel", "actions", "timestamps"):
        assert type(getattr(run, name)) is np.ndarray, name
    T = len(run.frames)
    assert run.frames.shape == (T, 64, 64, 3) and run.actions.shape == run.joint_pos.shape == (T, 8)
    back = read_episode(write_episode(episode_path(tmp_path, 0), to_episode(run)))
    assert np.array_equal(back.frames, run.frames) and np.array_equal(back.actions, run.actions)
    assert back.instruction == run.meta["instruction"] and back.meta["instruction_index"] == 1
