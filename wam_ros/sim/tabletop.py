"""Tabletop tasks for a robot arm in PyBullet (the Franka Panda by default), as a Gymnasium environment with a camera.

    env = TabletopEnv(task="reach", image_size=64)       # or task="push"; robot="xarm6" for another profile
    obs, info = env.reset(seed=3)                         # same seed -> same scene, instruction and frames
    obs, reward, terminated, truncated, info = env.step(action)   # action: (J,) absolute joint targets

    run = rollout(env, make_expert(env), seed=3)         # a whole episode as plain arrays (TabletopRollout)

Run `wam sim --task reach --seed 0 --gif out.gif` to watch the scripted expert (wam_ros/cli/sim.py). The sim knows no
file format: the train layer turns a rollout into an episode (wam_ros.train.rollout.record_episode).

The robot is whatever the robot profile (config/robots/<robot>.yaml) names, with no code per robot: its URDF, its
joints, the tool link (`ee_link` + `ee_offset`: the fingertip point), the wrist camera's link, the gripper's joint and
open/closed values and the home pose (wam_ros/sim/_arm.py maps it onto PyBullet). The Panda: panda_joint1..7 + the
gripper opening width in metres (sum of both fingers); the xArm6: joint1..6 + drive_joint (0 rad open).

Observation: {"image": uint8 (H, W, 3) RGB from a fixed third-person camera, "joint_pos": float32 (J,),
"joint_vel": float32 (J,)} (+ "<wrist>_image" with `wrist_camera=True`: the camera on the profile's wrist_link,
looking along the tool, named by the profile's camera with mount "wrist", "wrist" when it lists none), the J joints
of the profile in its order.
Targets and object poses are NOT in the observation: they are in reset()'s `info["scene"]` and in `env.scene`
(privileged, for experts and evaluation) and in the episode metadata. step()'s info: task, instruction, success, step,
applied_action.

Action: absolute joint position targets (arm + gripper), clamped to the profile's limits, applied with position
control (the URDF's effort limits) for `240 / control_hz` physics steps (240 Hz physics). The clamped action is
`info["applied_action"]`.

Tasks (geometry and randomisation in wam_ros/sim/_tasks.py):
    reach  3 coloured targets on the table; "reach the red target"; success: fingertip within 5 cm of that target.
    push   1 cube, 2 coloured pads; "push the cube onto the blue pad"; success: cube centre inside that pad.
Every scene has `n_instructions` instructions (one per target / pad); `reset(seed, options={"instruction": k})` picks
one, otherwise the seed does. Pure pybullet + numpy: never imports rclpy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import gymnasium as gym
import numpy as np
import pybullet as p
import pybullet_data

from wam_ros.robot import RobotProfile
from wam_ros.sim import _tasks
from wam_ros.sim._arm import ArmRig
from wam_ros.sim._tasks import Scene

PHYSICS_HZ = 240
TASKS = tuple(_tasks.TASKS)


class TabletopEnv(gym.Env):
    """Tabletop task (reach / push) for the profile's arm, with a camera. See the module docstring for spaces and
    tasks."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        task: str = "reach",
        image_size: int = 64,
        control_hz: int = 10,
        max_steps: int | None = None,
        randomize: bool = True,
        wrist_camera: bool = False,
        render: bool = True,
        robot: str = "panda",
    ) -> None:
        if task not in _tasks.TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {sorted(_tasks.TASKS)}")
        if not isinstance(image_size, int) or not 16 <= image_size <= 512:
            raise ValueError(f"image_size must be an int in 16..512, got {image_size!r}")
        if not isinstance(control_hz, int) or control_hz <= 0 or PHYSICS_HZ % control_hz:
            raise ValueError(f"control_hz must be a positive divisor of {PHYSICS_HZ}, got {control_hz!r}")
        if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
            raise ValueError(f"max_steps must be a positive int or None, got {max_steps!r}")
        self.task = task
        self.spec_task = _tasks.TASKS[task]
        self.image_size, self.control_hz = image_size, control_hz
        self.substeps = PHYSICS_HZ // control_hz
        self.max_steps = max_steps if max_steps is not None else self.spec_task.max_steps(control_hz)
        self.randomize, self.wrist_camera, self.render_images = randomize, wrist_camera, render
        self.profile = RobotProfile.load(robot)
        if not self.profile.urdf:
            raise ValueError(
                f"robot profile {self.profile.name!r} names no urdf: the simulator has no body to load"
            )
        self.n_instructions = self.spec_task.n_instructions
        # the wrist camera's name: obs f"{wrist_name}_image", episode array f"{wrist_name}_frames"
        mounted = [c["name"] for c in self.profile.camera_specs if c["mount"] == "wrist"]
        self.wrist_name = mounted[0] if mounted else "wrist"
        self._lo = np.asarray(self.profile.position_lower)
        self._hi = np.asarray(self.profile.position_upper)

        n = image_size
        spaces = {
            "image": gym.spaces.Box(0, 255, (n, n, 3), np.uint8),
            # measured positions may overshoot the commanded limits a little
            "joint_pos": gym.spaces.Box(
                (self._lo - 0.1).astype(np.float32), (self._hi + 0.1).astype(np.float32), dtype=np.float32
            ),
            "joint_vel": gym.spaces.Box(-100.0, 100.0, (self.profile.dof,), np.float32),
        }
        if wrist_camera:
            spaces[f"{self.wrist_name}_image"] = gym.spaces.Box(0, 255, (n, n, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(
            self._lo.astype(np.float32), self._hi.astype(np.float32), dtype=np.float32
        )

        self.client = p.connect(p.DIRECT)  # one physics client per env: envs never share state
        try:
            self._build_world()
        except Exception:  # a profile the sim cannot build: no physics client left behind
            self.close()
            raise
        self.scene: Scene | None = None
        self.instruction = ""
        self.steps = 0
        self._action = np.asarray(self.profile.home, dtype=np.float64)

    # ----------------------------------------------------------------------------------------------- world
    def _build_world(self) -> None:
        c = self.client
        p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=c)
        p.setGravity(0, 0, -9.81, physicsClientId=c)
        p.setTimeStep(1.0 / PHYSICS_HZ, physicsClientId=c)
        # the table top: one flat box (a handful of triangles: cheap to render, unlike plane.urdf's mesh)
        col = p.createCollisionShape(p.GEOM_BOX, halfExtents=[1.0, 1.0, 0.01], physicsClientId=c)
        vis = p.createVisualShape(
            p.GEOM_BOX, halfExtents=[1.0, 1.0, 0.01], rgbaColor=[0.6, 0.5, 0.4, 1], physicsClientId=c
        )
        self.table_id = p.createMultiBody(0, col, vis, basePosition=[0, 0, -0.01], physicsClientId=c)
        # no self-collision (as in pybullet's own Panda examples): the closed fingers would rest in contact
        try:
            self.robot_id = p.loadURDF(self.profile.urdf, useFixedBase=True, physicsClientId=c)
        except p.error as exc:
            raise ValueError(
                f"robot profile {self.profile.name!r}: PyBullet cannot load {self.profile.urdf}: {exc}"
            ) from None
        self.arm = ArmRig(self.profile, self.robot_id, c)
        self.bodies = self.spec_task.build(c)  # task objects, placed at reset
        self._initial_state = p.saveState(physicsClientId=c)

    # ----------------------------------------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0
        ):
            raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
        options = dict(options or {})
        unknown = set(options) - {"instruction"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; expected only 'instruction'")
        super().reset(seed=None if seed is None else int(seed))
        if seed is None:
            seed = int(self.np_random.integers(0, 2**31 - 1))
        rng = np.random.default_rng(int(seed))
        choice = options.get("instruction")
        if choice is not None and (
            not isinstance(choice, int | np.integer) or not 0 <= choice < self.n_instructions
        ):
            raise ValueError(
                f"options['instruction'] must be an int in 0..{self.n_instructions - 1}, got {choice!r}"
            )
        c = self.client
        p.restoreState(self._initial_state, physicsClientId=c)
        self.scene = self.spec_task.sample(
            rng, self.randomize, None if choice is None else int(choice), self.profile
        )
        self.spec_task.place(c, self.bodies, self.scene)
        self._set_lighting_and_friction(self.scene)
        q0 = np.asarray(self.scene.start_q, dtype=np.float64)
        self.arm.reset(q0)
        self._action = q0.astype(np.float32).astype(np.float64)
        self._apply(self._action)
        self.instruction = self.scene.instruction
        self.steps = 0
        self.seed_value = int(seed)
        return self._observe(), self._info(success=False, full=True)

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        if self.scene is None:
            raise RuntimeError("call reset() before step()")
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (self.profile.dof,):
            grip = f" + gripper {self.profile.gripper['joint']}" if self.profile.gripper else ""
            raise ValueError(
                f"action must be {self.profile.dof} absolute joint targets ({len(self.profile.arm_indices)} arm"
                f"{grip}, robot {self.profile.name!r}), got shape {a.shape}"
            )
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action contains NaN or Inf: {a}")
        # rounded to float32, the episode format's dtype: the recorded action is exactly the applied one
        self._action = np.clip(a, self._lo, self._hi).astype(np.float32).astype(np.float64)
        self._apply(self._action)
        for _ in range(self.substeps):
            p.stepSimulation(physicsClientId=self.client)
        self.steps += 1
        success = self.is_success()
        truncated = not success and self.steps >= self.max_steps
        return self._observe(), float(success), success, truncated, self._info(success)

    def render(self) -> np.ndarray:
        return self._camera(self.scene.camera if self.scene else _tasks.DEFAULT_CAMERA)

    def close(self) -> None:
        if getattr(self, "client", None) is not None and p.isConnected(self.client):
            p.disconnect(self.client)
        self.client = None

    # ----------------------------------------------------------------------------------------------- privileged
    def fingertip_position(self) -> np.ndarray:
        """World position of the fingertip point (the profile's ee_link origin + ee_offset)."""
        return self.arm.fingertip()

    def object_positions(self) -> dict[str, np.ndarray]:
        return {
            name: np.asarray(p.getBasePositionAndOrientation(b, physicsClientId=self.client)[0])
            for name, b in self.bodies.items()
            if self.spec_task.dynamic(name)
        }

    def goal_distance(self) -> float:
        """Privileged task progress (m): reach, fingertip to the named target; push, the cube's centre to the named
        pad's, in the table plane. Recorded per row as extra["goal_distance"]; no model input reads it."""
        goal = self.spec_task.goal_position(self, self.scene)
        if self.task == "push":
            return float(np.linalg.norm(self.object_positions()["cube"][:2] - goal[:2]))
        return float(np.linalg.norm(self.fingertip_position() - goal))

    def try_chunks(self, chunks: np.ndarray) -> list[dict[str, float | bool]]:
        """Roll each candidate chunk (n, C, J) out from the current state and come back (the planner's oracle,
        issue 16): PyBullet saves the state once, executes a chunk (no rendering), records the outcome and restores.
        Per chunk: `success` (reached during the chunk), `goal_distance` at its end (m), `steps` executed. The env
        (state, step count, last action) reads exactly as before the call, but the steps that follow are not always
        bit-identical to a run without it: PyBullet's restoreState does not bring back everything its solver carries
        from step to step (a resting cube came out 2e-8 m off one step after a call, push seed 1,000,000), and a push
        episode's closed loop amplifies that (benchmarks/RESULTS.md, "Session 14")."""
        c = self.client
        saved = p.saveState(physicsClientId=c)
        steps, action = self.steps, self._action.copy()
        out = []
        try:
            for chunk in np.asarray(chunks, dtype=np.float64):
                p.restoreState(saved, physicsClientId=c)
                success, k = False, 0
                for a in chunk:
                    if not np.all(np.isfinite(a)):
                        break
                    self._apply(np.clip(a, self._lo, self._hi))
                    for _ in range(self.substeps):
                        p.stepSimulation(physicsClientId=c)
                    k += 1
                    if self.is_success():
                        success = True
                        break
                out.append({"success": success, "goal_distance": self.goal_distance(), "steps": k})
        finally:
            p.restoreState(saved, physicsClientId=c)
            p.removeState(saved, physicsClientId=c)
            self.steps, self._action = steps, action
            self._apply(self._action)
        return out

    def is_success(self) -> bool:
        return self.spec_task.success(self, self.scene)

    def retarget(self, index: int) -> str:
        """Change the goal mid-episode to goal object `index` (reach: target_<index>, push: pad_<index>), as a user
        naming another colour would; nothing moves. Returns the new instruction (the task's template with that
        object's colour); success is judged against the new goal from the next step on."""
        if self.scene is None:
            raise RuntimeError("call reset() before retarget()")
        if (
            isinstance(index, bool)
            or not isinstance(index, int | np.integer)
            or not 0 <= index < self.n_instructions
        ):
            raise ValueError(f"goal index must be an int in 0..{self.n_instructions - 1}, got {index!r}")
        goal = f"{self.scene.goal.rsplit('_', 1)[0]}_{int(index)}"
        old, new = self.scene.objects[self.scene.goal]["colour"], self.scene.objects[goal]["colour"]
        instruction = self.scene.instruction.replace(f" {old} ", f" {new} ")
        self.scene = replace(self.scene, goal=goal, instruction_index=int(index), instruction=instruction)
        self.instruction = instruction
        return instruction

    @property
    def last_action(self) -> np.ndarray:
        return self._action.copy()

    # ----------------------------------------------------------------------------------------------- internals
    def _apply(self, q: np.ndarray) -> None:
        self.arm.apply(q)

    def joint_state(self) -> tuple[np.ndarray, np.ndarray]:
        """Measured (positions, velocities), float32 (J,) in the profile's joint order."""
        pos, vel = self.arm.read()
        return pos.astype(np.float32), vel.astype(np.float32)

    def _observe(self) -> dict:
        pos, vel = self.joint_state()
        n = self.image_size
        obs = {
            "image": self._camera(self.scene.camera) if self.render_images else np.zeros((n, n, 3), np.uint8),
            "joint_pos": pos,
            "joint_vel": vel,
        }
        if self.wrist_camera:
            obs[f"{self.wrist_name}_image"] = (
                self._wrist() if self.render_images else np.zeros((n, n, 3), np.uint8)
            )
        return obs

    @property
    def camera_names(self) -> list[str]:
        """The cameras this env renders, the main one ("image") first, then the wrist camera when enabled."""
        main = self.profile.camera_specs[0]["name"]
        return [main, self.wrist_name] if self.wrist_camera else [main]

    def _info(self, success: bool, full: bool = False) -> dict:
        """Fresh dict per call. The scene and its randomisation (privileged) come with reset(); during an episode
        they are `env.scene` (building them each step would cost ~5% of a camera-free step)."""
        info = {
            "task": self.task,
            "instruction": self.instruction,
            "success": bool(success),
            "step": self.steps,
            "applied_action": self._action.copy(),
        }
        if full:
            scene = self.scene.to_dict()
            info.update(scene=scene, randomisation=scene["randomisation"])
        return info

    def _set_lighting_and_friction(self, scene: Scene) -> None:
        c = self.client
        p.changeDynamics(
            self.table_id, -1, lateralFriction=scene.randomisation["table_friction"], physicsClientId=c
        )
        p.changeVisualShape(
            self.table_id, -1, rgbaColor=[*scene.randomisation["table_rgb"], 1.0], physicsClientId=c
        )

    def _camera(self, cam: dict) -> np.ndarray:
        n = self.image_size
        view = p.computeViewMatrix(cam["eye"], cam["target"], cam.get("up", [0, 0, 1]))
        proj = p.computeProjectionMatrixFOV(cam["fov"], 1.0, 0.05, 5.0)
        light = self.scene.randomisation["light"] if self.scene else _tasks.DEFAULT_LIGHT
        _, _, rgba, _, _ = p.getCameraImage(
            n,
            n,
            view,
            proj,
            renderer=p.ER_TINY_RENDERER,
            shadow=0,
            lightDirection=light["direction"],
            lightColor=light["color"],
            lightAmbientCoeff=light["ambient"],
            lightDiffuseCoeff=light["diffuse"],
            lightSpecularCoeff=0.1,
            physicsClientId=self.client,
        )
        return np.asarray(rgba, dtype=np.uint8).reshape(n, n, 4)[:, :, :3].copy()

    def wrist_image(self) -> np.ndarray:
        """The wrist camera's view of the current state, uint8 (H, W, 3) RGB, rendered now (whatever `wrist_camera`
        says: sim_node renders it only while someone subscribes to it)."""
        return self._wrist()

    def _wrist(self) -> np.ndarray:
        pos, orn = self.arm.link_pose(self.arm.wrist_link)
        rot = np.asarray(p.getMatrixFromQuaternion(orn)).reshape(3, 3)
        eye = np.asarray(pos) + rot @ np.array(
            [0.05, 0.0, 0.02]
        )  # beside the hand, looking along the fingers
        target = eye + rot @ np.array([0.0, 0.0, 0.3])
        up = rot @ np.array([1.0, 0.0, 0.0])
        return self._camera({"eye": eye.tolist(), "target": target.tolist(), "up": up.tolist(), "fov": 70.0})


@dataclass
class TabletopRollout:
    """One rolled-out episode as plain arrays, row t = step t (the fields of the episode format, which the train layer
    writes: wam_ros.train.rollout.record_episode). `meta` holds the episode metadata (docs/episode_format.md),
    `extra` the optional arrays (`<wrist>_frames`, e.g. `wrist_frames`; `executed_actions`)."""

    frames: np.ndarray  # uint8 (T, H, W, 3)
    joint_pos: np.ndarray  # float32 (T, J)
    joint_vel: np.ndarray  # float32 (T, J)
    actions: np.ndarray  # float64 (T, J): the labels (float32-exact)
    timestamps: np.ndarray  # float64 (T,) seconds from the reset
    meta: dict[str, Any]
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return bool(self.meta["success"])


def rollout(
    env: TabletopEnv,
    policy: Callable[[dict], Any],
    seed: int,
    instruction: int | None = None,
    producer: str = "wam_ros.sim",
    extra_meta: dict | None = None,
    noise: float = 0.0,
    noise_seed: int | None = None,
    driver: Callable[[dict], Any] | None = None,
) -> TabletopRollout:
    """Roll `policy` out in `env` from `reset(seed)` until success or the step limit; return the arrays and metadata.

    Row t holds the observation at step t and the action the env applied after it (clamped to the limits). The last
    row is the final observation; its action repeats the last applied target (a hold, never stepped; meta
    "final_action": "hold"). `instruction` picks the scene's instruction index (None: the seed picks).

    noise > 0 records with DART-style noise injection (Laskey et al. 2017): the env executes the policy's action plus
    Gaussian noise of std `noise` rad on each arm joint (not the gripper), while the row's action is the policy's clean action (clamped
    like the env clamps), i.e. the label of what the expert does from the perturbed state it is really in. The
    executed targets are kept in extra["executed_actions"]. A learner trained on such data has seen, and learned to
    correct, the small drifts its own errors cause in closed loop — the covariate shift that plain behaviour cloning
    never shows it.

    driver: records DAgger-style (Ross et al. 2011): `driver(obs)` (e.g. the learner) decides what the env executes,
    while `policy` (the expert) labels every visited state — the learner's own mistakes, each with the expert's
    correction. The executed targets are kept in extra["executed_actions"]; noise, if any, is added on top.
    """
    if noise < 0 or not np.isfinite(noise):
        raise ValueError(f"noise must be a finite std >= 0 (rad), got {noise!r}")
    rng = np.random.default_rng(seed if noise_seed is None else noise_seed)
    obs, info = env.reset(seed=seed, options=None if instruction is None else {"instruction": instruction})
    frames, joint_pos, joint_vel, actions, executed, wrist = [], [], [], [], [], []
    goal_dist, tip = [], []  # privileged progress, per row (the critic's dense target; never a model input)
    terminated = truncated = False
    relabel = noise > 0 or driver is not None  # the executed targets differ from the labels
    arm = env.profile.arm_indices
    while not (terminated or truncated):
        action = np.asarray(policy(obs), dtype=np.float64)
        frames.append(obs["image"]), joint_pos.append(obs["joint_pos"]), joint_vel.append(obs["joint_vel"])
        goal_dist.append(env.goal_distance()), tip.append(env.fingertip_position())
        if env.wrist_camera:
            wrist.append(obs[f"{env.wrist_name}_image"])
        run = action.copy() if driver is None else np.array(driver(obs), dtype=np.float64)
        if noise > 0:
            run[arm] += rng.normal(0.0, noise, len(arm))
        obs, _, terminated, truncated, info = env.step(run)
        executed.append(info["applied_action"])
        if relabel:  # the clean label, clamped and rounded as the env does with what it applies
            label = np.clip(action, env.profile.position_lower, env.profile.position_upper)
            actions.append(label.astype(np.float32).astype(np.float64))
        else:
            actions.append(info["applied_action"])
    frames.append(obs["image"]), joint_pos.append(obs["joint_pos"]), joint_vel.append(obs["joint_vel"])
    goal_dist.append(env.goal_distance()), tip.append(env.fingertip_position())
    actions.append(env.last_action)
    executed.append(env.last_action)
    if env.wrist_camera:
        wrist.append(obs[f"{env.wrist_name}_image"])
    n = env.image_size
    camera = {**env.profile.camera, "width": n, "height": n, "pose": env.scene.camera, "renderer": "tiny"}
    meta = {
        "task": env.task,
        "instruction": env.instruction,
        "success": bool(terminated),
        "seed": int(seed),
        "instruction_index": env.scene.instruction_index,
        "robot": env.profile.to_dict(),
        "camera": camera,
        "control_hz": env.control_hz,
        "physics_hz": PHYSICS_HZ,
        "randomisation": env.scene.randomisation,
        "scene": env.scene.to_dict(),
        "producer": producer,
        "steps": env.steps,
        "max_steps": env.max_steps,
        "final_action": "hold",
        "wrist_camera": env.wrist_camera,
        "cameras": env.camera_names,
        "action_noise_std": float(noise),
    }
    meta.update(extra_meta or {})
    return TabletopRollout(
        frames=np.stack(frames),
        joint_pos=np.stack(joint_pos),
        joint_vel=np.stack(joint_vel),
        actions=np.stack(actions),
        timestamps=np.arange(len(frames)) / env.control_hz,
        meta=meta,
        extra={
            **({f"{env.wrist_name}_frames": np.stack(wrist)} if env.wrist_camera else {}),
            **({"executed_actions": np.stack(executed)} if relabel else {}),
            "goal_distance": np.asarray(goal_dist, dtype=np.float32),
            "fingertip": np.asarray(tip, dtype=np.float32),
        },
    )
