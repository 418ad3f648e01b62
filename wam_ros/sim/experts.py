"""Scripted IK experts for the tabletop tasks: they make the demonstrations.

    env = TabletopEnv("reach"); obs, info = env.reset(seed=0)
    expert = make_expert(env)
    obs, r, terminated, truncated, info = env.step(expert(obs))

An expert reads the env's privileged scene (target / cube / pad poses), moves the fingertip along Cartesian waypoints
(at most `cart_step` metres per control step), turns each waypoint into joint targets with pybullet's
calculateInverseKinematics (null-space rest pose = home, the tool's z axis pointing down), and caps the joint change
per step at `joint_step` rad so the motion is smooth. Actions are absolute joint targets (arm + gripper), like the
env's. Any robot profile the env can build works: the IK, the fingertip point and the gripper's open/closed values
come from the profile (wam_ros/sim/_arm.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pybullet as p

from wam_ros.sim import _tasks
from wam_ros.sim.tabletop import TabletopEnv

# the tool link's z axis pointing at the table, its x axis along the world's x (a Panda's fingers along y, as at home)
DOWN = p.getQuaternionFromEuler([np.pi, 0.0, 0.0])

Policy = Callable[[dict], np.ndarray]


class _IKExpert:
    def __init__(self, env: TabletopEnv, cart_step: float, joint_step: float, gripper: str) -> None:
        if cart_step <= 0 or joint_step <= 0:
            raise ValueError(f"cart_step and joint_step must be > 0, got {cart_step}, {joint_step}")
        self.env, self.cart_step, self.joint_step = env, cart_step, joint_step
        profile = env.profile
        self.arm, self.grip = profile.arm_indices, profile.gripper_index
        self.gripper = (
            profile.gripper[gripper] if profile.gripper else None
        )  # "open" | "closed" -> joint value
        self.phase = "start"

    def move_towards(self, goal: np.ndarray, step: float | None = None) -> np.ndarray:
        """Action moving the fingertip at most `step` m towards `goal` (world xyz), joint change capped."""
        env = self.env
        tip = env.fingertip_position()
        delta = np.asarray(goal, dtype=np.float64) - tip
        step = self.cart_step if step is None else step
        norm = float(np.linalg.norm(delta))
        if norm > step:
            delta *= step / norm
        target = env.arm.ik(tip + delta, DOWN)
        prev = env.last_action
        action = prev.copy()
        action[self.arm] = prev[self.arm] + np.clip(
            target - prev[self.arm], -self.joint_step, self.joint_step
        )
        if self.grip is not None:
            action[self.grip] = self.gripper
        return np.clip(action, env.profile.position_lower, env.profile.position_upper)


class ReachExpert(_IKExpert):
    """Straight to the named target's centre, gripper open."""

    def __init__(self, env: TabletopEnv, cart_step: float = 0.025, joint_step: float = 0.15) -> None:
        super().__init__(env, cart_step, joint_step, gripper="open")

    def __call__(self, obs: dict) -> np.ndarray:
        scene = self.env.scene
        goal = np.asarray(scene.objects[scene.goal]["position"]) + [0.0, 0.0, 0.005]
        self.phase = "reach"
        return self.move_towards(goal)


class PushExpert(_IKExpert):
    """Closed gripper: go above the point behind the cube (on the pad-cube line), descend, push towards the pad
    centre. Re-aims every step from the cube's current position; slides back onto the line when it is low behind the
    cube but off it, and lifts and re-approaches if it is anywhere else near the cube."""

    HOVER_Z = 0.085  # above the cube top (0.05) with margin
    PUSH_Z = 0.022  # fingertip height while pushing (cube centre at 0.025)
    BACKOFF = _tasks.CUBE_HALF + 0.03  # approach point: this far behind the cube centre

    def __init__(
        self, env: TabletopEnv, cart_step: float = 0.035, joint_step: float = 0.15, push_step: float = 0.015
    ) -> None:
        super().__init__(env, cart_step, joint_step, gripper="closed")
        self.push_step = push_step

    def __call__(self, obs: dict) -> np.ndarray:
        env, scene = self.env, self.env.scene
        cube = env.object_positions()["cube"][:2]
        pad = np.asarray(scene.objects[scene.goal]["position"][:2])
        d = pad - cube
        u = d / max(float(np.linalg.norm(d)), 1e-6)
        perp = np.array([-u[1], u[0]])
        tip = env.fingertip_position()
        rel = tip[:2] - cube
        along, lateral = float(rel @ u), float(rel @ perp)
        behind = cube - u * self.BACKOFF
        low = tip[2] < self.PUSH_Z + 0.02
        if low and -self.BACKOFF - 0.02 < along < -_tasks.CUBE_HALF + 0.005 and abs(lateral) < 0.02:
            self.phase = (
                "push"  # in contact line: keep the fingertip on the line and advance through the cube
            )
            goal = np.array([*(cube - u * (_tasks.CUBE_HALF + 0.005) + u * 0.03), self.PUSH_Z])
            return self.move_towards(goal, self.push_step)
        if np.linalg.norm(tip[:2] - behind) < 0.015:
            self.phase = "descend"
            return self.move_towards(np.array([*behind, self.PUSH_Z]))
        if low and -self.BACKOFF - 0.04 < along < -_tasks.CUBE_HALF - 0.01 and abs(lateral) < 0.05:
            # low behind the cube but off the line: slide back onto it at pushing height (both ends of the move are
            # behind the cube's face, so it cannot hit it) instead of lifting and re-approaching - a short correction
            # that a learner drifting off the line can imitate
            self.phase = "realign"
            return self.move_towards(np.array([*behind, self.PUSH_Z]))
        if low and np.linalg.norm(rel) < 0.12:
            self.phase = "lift"  # low near the cube but misplaced: go up before moving sideways
            return self.move_towards(np.array([*tip[:2], self.HOVER_Z]))
        self.phase = "approach"
        return self.move_towards(np.array([*behind, self.HOVER_Z]))


EXPERTS = {"reach": ReachExpert, "push": PushExpert}


def make_expert(env: TabletopEnv) -> Policy:
    """The scripted expert for `env.task`; call it with each observation, after `env.reset()`."""
    if env.task not in EXPERTS:
        raise ValueError(f"no scripted expert for task {env.task!r}; expected one of {sorted(EXPERTS)}")
    return EXPERTS[env.task](env)
