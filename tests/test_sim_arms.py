"""Other arms in the tabletop sim (issue 19 item 2), on real PyBullet: the xArm6 of config/robots/xarm6.yaml and a KUKA
iiwa profile written by `wam robot add` during the test. The sim reads everything from the profile (URDF, joints,
tool link, gripper, home); no code knows either robot. Damaged profiles get a clear error naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from wam_ros.cli import main as wam
from wam_ros.data.episode import episode_path, list_episodes, read_episode, write_episode
from wam_ros.robot import RobotProfile
from wam_ros.sim._tasks import REACH_SUCCESS_M
from wam_ros.sim.experts import make_expert
from wam_ros.sim.tabletop import TabletopEnv
from wam_ros.train.batches import load_episodes
from wam_ros.train.rollout import record_episode

XARM6 = RobotProfile.load("xarm6")
XARM6_JOINTS = ["joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "drive_joint"]


@pytest.fixture(scope="module")
def xarm_reach():
    env = TabletopEnv(task="reach", robot="xarm6", image_size=32)
    yield env
    env.close()


def test_xarm6_env_resets_and_steps_with_the_profiles_joints(xarm_reach):
    env = xarm_reach
    assert env.profile.joint_names == XARM6_JOINTS
    obs, info = env.reset(seed=3)
    assert obs["joint_pos"].shape == obs["joint_vel"].shape == (7,) and env.action_space.shape == (7,)
    assert env.observation_space.contains(obs)
    start = np.asarray(info["scene"]["start_q"])
    assert start[6] == XARM6.gripper["open"]  # reach starts with the gripper open (drive_joint 0 rad)
    np.testing.assert_allclose(obs["joint_pos"], start, atol=1e-5)  # read back by name through the profile
    assert np.all(np.abs(start[:6] - XARM6.home[:6]) <= 0.15 + 1e-9)  # home +- the start jitter
    # the tool point is 172 mm along the gripper base's z axis (ee_offset), pointing down at home: above the table
    assert 0.2 < env.fingertip_position()[2] < 0.6
    target = obs["joint_pos"].astype(np.float64) + [0.1, 0.1, -0.1, 0.0, 0.1, 0.0, 0.4]
    for _ in range(5):
        obs, _, _, _, info = env.step(target)
    np.testing.assert_allclose(info["applied_action"], target, atol=1e-6)
    np.testing.assert_allclose(obs["joint_pos"], target, atol=0.03)  # the arm and the gripper follow
    with pytest.raises(ValueError, match=r"7 absolute joint targets \(6 arm \+ gripper drive_joint"):
        env.step(np.zeros(8))


def test_xarm6_mimic_joints_follow_the_gripper():
    """PyBullet does not enforce <mimic>: the sim drives the five knuckle joints from drive_joint (URDF multiplier)."""
    import pybullet as p

    env = TabletopEnv(task="push", robot="xarm6", render=False)
    try:
        obs, _ = env.reset(seed=1)
        assert obs["joint_pos"][6] == pytest.approx(XARM6.gripper["closed"], abs=1e-6)  # push: closed
        names = {
            p.getJointInfo(env.robot_id, i, physicsClientId=env.client)[1].decode(): i
            for i in range(p.getNumJoints(env.robot_id, physicsClientId=env.client))
        }
        for _ in range(4):
            env.step(np.concatenate([obs["joint_pos"][:6], [0.3]]))
        for knuckle in ("left_finger_joint", "right_outer_knuckle_joint", "right_inner_knuckle_joint"):
            q = p.getJointState(env.robot_id, names[knuckle], physicsClientId=env.client)[0]
            assert q == pytest.approx(0.3, abs=0.02), knuckle
    finally:
        env.close()


@pytest.mark.parametrize("task, seeds", [("reach", [0]), ("push", [2])])
def test_xarm6_expert_solves_seeded_scenes(task, seeds):
    env = TabletopEnv(task=task, robot="xarm6", image_size=32)
    try:
        for seed in seeds:
            for k in range(env.n_instructions):
                expert = make_expert(env)
                ep = record_episode(env, expert, seed=seed, instruction=k)
                assert ep.success, f"xarm6 {task} expert failed seed {seed} instruction {k}"
                if task == "reach":  # the geometric test really holds: fingertip point at the named target
                    goal = np.asarray(ep.meta["scene"]["objects"][ep.meta["scene"]["goal"]]["position"])
                    assert np.linalg.norm(env.fingertip_position() - goal) < REACH_SUCCESS_M
                assert np.abs(np.diff(ep.actions[:, :6], axis=0)).max() <= expert.joint_step + 1e-6
                assert np.all(ep.actions[:, 6] == XARM6.gripper["open" if task == "reach" else "closed"])
                assert ep.meta["robot"]["name"] == "xarm6" and ep.meta["robot"]["joint_names"] == XARM6_JOINTS
    finally:
        env.close()


def test_a_kuka_profile_from_wam_robot_add_needs_no_code(tmp_path):
    """A third arm, without a gripper: `wam robot add` with a home pose and a tool offset gives a profile the sim
    builds and the expert reaches with; the committed kuka_iiwa.yaml (home straight up, tool at the flange) builds
    too."""
    out = tmp_path / "robots"
    cmd = ["robot", "add", "--urdf", "kuka_iiwa/model.urdf", "--name", "iiwa", "--out", str(out)]
    assert wam([*cmd, "--home", "0,0.6,0,-1.4,0,1.1,0", "--ee-offset", "0,0,0.05"]) == 0
    env = TabletopEnv(task="reach", robot=str(out / "iiwa.yaml"), image_size=32)
    try:
        assert env.profile.gripper == {} and env.profile.arm_indices == list(range(7))
        for seed in (0, 1):
            ep = record_episode(env, make_expert(env), seed=seed)
            assert ep.success and ep.joint_pos.shape[1] == 7
    finally:
        env.close()
    TabletopEnv(task="push", robot="kuka_iiwa", render=False).close()


def collect_args(robot: str, out: Path, episodes: int = 2) -> list[str]:
    return ["collect", "--task", "reach", "--robot", robot, "--episodes", str(episodes), "--workers", "1"] + [
        "--quiet",
        "--image-size",
        "32",
        "--out",
        str(out),
    ]


@pytest.fixture(scope="module")
def xarm_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("collect") / "xarm"
    assert wam(collect_args("xarm6", out)) == 0
    return out


def test_wam_collect_robot_xarm6_writes_xarm6_episodes(xarm_data, tmp_path):
    eps = [read_episode(p) for p in list_episodes(xarm_data)]
    assert len(eps) == 2 and all(ep.success for ep in eps)
    for ep in eps:
        assert ep.meta["robot"]["joint_names"] == XARM6_JOINTS and ep.actions.shape[1] == 7
        assert ep.meta["robot"]["ee_offset"] == [0.0, 0.0, 0.172]
    assert json.loads((xarm_data / "collect.json").read_text())["robot"] == "xarm6"
    # resuming into the same directory with another robot is refused (the episodes would mix robots)
    assert wam(collect_args("panda", xarm_data, episodes=3)) == 2
    assert wam(collect_args("no_such_robot", tmp_path / "x")) == 2
    assert len(list_episodes(xarm_data)) == 2


def test_training_refuses_episodes_of_two_robots(xarm_data, tmp_path):
    """A Panda column is not an xArm joint: load_episodes refuses the mix, naming both joint lists."""
    env = TabletopEnv(task="reach", image_size=32, render=False)
    try:
        write_episode(episode_path(tmp_path / "panda", 0), record_episode(env, make_expert(env), seed=0))
    finally:
        env.close()
    assert len(load_episodes([xarm_data])) == 2
    with pytest.raises(ValueError, match="panda_joint1.*train one robot's episodes at a time"):
        load_episodes([xarm_data, tmp_path / "panda"])


def test_eval_refuses_a_robot_whose_joints_are_not_the_models():
    from wam_ros.model.config import WamConfig
    from wam_ros.train.evaluate import sim_robot

    panda = WamConfig.preset("tiny")
    assert sim_robot(None, panda) == "panda"
    with pytest.raises(ValueError, match="pass --robot panda"):
        sim_robot("xarm6", panda)
    xarm = WamConfig.preset("tiny", num_joints=7, joint_names=XARM6_JOINTS, robot="xarm6")
    assert sim_robot(None, xarm) == "xarm6"


def _profile(tmp_path: Path, **changes: object) -> Path:
    data = {**XARM6.to_dict(), **changes}
    path = tmp_path / "arm.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    "changes, match",
    [
        (
            {"gripper": {"joint": "finger", "open": 0.0, "closed": 0.85}},
            "gripper.joint 'finger' is not one of",
        ),
        (
            {"gripper": {"joint": "drive_joint", "open": 0.0, "closed": 2.0}},
            r"gripper.closed must be .*\[0, 0.85\]",
        ),
        ({"gripper": {"joint": "drive_joint", "open": 0.0}}, "exactly the keys joint, open, closed"),
        ({"gripper": {"joint": "drive_joint", "open": 0.5, "closed": 0.5}}, "are equal"),
        ({"ee_offset": [0.0, 0.17]}, "ee_offset must be 3 finite numbers"),
        ({"ee_offset": [0.0, float("nan"), 0.1]}, "ee_offset must be 3 finite numbers"),
        ({"ee_link": 7}, "ee_link must be a link name"),
    ],
)
def test_bad_tool_fields_are_refused_naming_the_key(tmp_path, changes, match):
    with pytest.raises(ValueError, match=match):
        RobotProfile.load(_profile(tmp_path, **changes))


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"ee_link": ""}, "has no ee_link"),
        ({"ee_link": "tool0"}, "ee_link 'tool0' is not a link of the URDF"),
        ({"wrist_link": "camera_link"}, "wrist_link 'camera_link' is not a link"),
        (
            {"joint_names": [*XARM6_JOINTS[:5], "wrist", "drive_joint"]},
            "model joint 'wrist' is not a URDF joint",
        ),
        ({"urdf": ""}, "names no urdf"),
    ],
)
def test_profiles_the_sim_cannot_build_are_refused(tmp_path, changes, match):
    with pytest.raises(ValueError, match=match):
        TabletopEnv(task="reach", robot=str(_profile(tmp_path, **changes)), render=False)


def test_a_damaged_urdf_is_refused(tmp_path):
    broken = tmp_path / "broken.urdf"
    broken.write_bytes(b"\x00\x01 not a urdf")
    with pytest.raises(ValueError, match="broken.urdf"):
        TabletopEnv(task="reach", robot=str(_profile(tmp_path, urdf=str(broken))), render=False)


def test_wam_sim_robot_option(tmp_path):
    assert (
        wam(
            [
                "sim",
                "--robot",
                "xarm6",
                "--image-size",
                "32",
                "--episode",
                str(tmp_path / "episode_000000.npz"),
            ]
        )
        == 0
    )
    assert read_episode(tmp_path / "episode_000000.npz").meta["robot"]["name"] == "xarm6"
    assert wam(["sim", "--robot", "no_such_robot"]) == 2
