"""Closed-loop evaluation in the PyBullet tabletop: the WAM (through the runtime API), the scripted expert and a random
policy, on the same seeded scenes, side by side.

    res = closed_loop(policies={"wam": make_wam_policy(policy, replan=4), ...}, task="reach", seeds=range(10**6, ...))

A policy factory is called once per episode with the env (after reset) and returns `obs -> action (J,)`, J the
robot profile's joints (`robot`: the Panda by default; any profile the tabletop sim can build). A model with several
cameras (issue 19) needs the sim to render them (`wrist_camera=True`: the profile's wrist camera).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from wam_ros.runtime.chunk_policy import ChunkPolicy

PolicyFactory = Callable[[Any], Callable[[dict], np.ndarray]]


def wam_factory(policy: Any, replan: int, instruction: Callable[[str], str] | None = None) -> PolicyFactory:
    """One ChunkPolicy per episode (the same runner as wam_node and DAgger collection).

    instruction: rewrites the scene's instruction before the policy reads it (e.g. a phrasing template,
    wam_ros.train.phrasings); None gives the policy the scene's own instruction."""

    def make(env: Any) -> Callable[[dict], np.ndarray]:
        text = env.instruction if instruction is None else instruction(env.instruction)
        return sim_cameras(ChunkPolicy(policy, replan=replan, instruction=text), env)

    return make


def sim_cameras(runner: ChunkPolicy, env: Any) -> Callable[[dict], np.ndarray]:
    """`runner` as an `obs -> action` of the tabletop env: a model with several cameras gets {"images": {camera:
    frame}} from the env's observation (the main camera is obs["image"], another one obs["<camera>_image"]); one
    camera: the runner itself. ValueError when the env does not render a camera the model sees."""
    cameras = runner.cameras
    if len(cameras) == 1:
        return runner
    keys = {c: "image" if i == 0 else f"{c}_image" for i, c in enumerate(cameras)}
    missing = [c for c, k in keys.items() if k not in env.observation_space.spaces]
    if missing:
        raise ValueError(
            f"the model sees cameras {cameras}, the sim renders {env.camera_names}: no {missing} "
            f"(TabletopEnv(wrist_camera=True) renders the wrist camera {env.wrist_name!r})"
        )

    def act(obs: dict) -> np.ndarray:
        images = {c: obs[k] for c, k in keys.items()}
        return runner.select_action({"images": images, "joint_pos": obs["joint_pos"]})

    return act


def expert_factory() -> PolicyFactory:
    from wam_ros.sim.experts import make_expert

    return make_expert


def random_factory(seed: int, scale: float = 0.2) -> PolicyFactory:
    """Uniform random joint-target steps of at most `scale` rad (the gripper joint: scale/10) around the current
    joints."""
    rng = np.random.default_rng(seed)

    def make(env: Any) -> Callable[[dict], np.ndarray]:
        step = np.full(env.profile.dof, scale)
        if env.profile.gripper:
            step[env.profile.gripper_index] = scale / 10
        return lambda obs: obs["joint_pos"].astype(np.float64) + rng.uniform(-step, step)

    return make


def closed_loop(
    policies: dict[str, PolicyFactory],
    task: str,
    seeds: Iterable[int],
    image_size: int = 64,
    control_hz: int = 10,
    progress: bool = False,
    robot: str = "panda",
    wrist_camera: bool = False,
) -> dict[str, dict[str, Any]]:
    """Per policy: success rate, mean steps (all episodes and successful ones), per-seed outcomes.

    progress: a tqdm bar per policy (episodes done, successes so far) on stderr. robot: the profile the sim builds.
    wrist_camera: the sim also renders the wrist camera (for a model that sees it; costs one render per step)."""
    from tqdm import tqdm

    from wam_ros.sim.tabletop import TabletopEnv

    seeds = [int(s) for s in seeds]
    env = TabletopEnv(
        task=task, image_size=image_size, control_hz=control_hz, robot=robot, wrist_camera=wrist_camera
    )
    results: dict[str, dict[str, Any]] = {}
    try:
        for name, factory in policies.items():
            outcomes = []
            bar = tqdm(seeds, desc=f"{task} {name}", unit="ep", disable=not progress, dynamic_ncols=True)
            for seed in bar:
                obs, info = env.reset(seed=seed)
                act = factory(env)
                terminated = truncated = False
                while not (terminated or truncated):
                    obs, _, terminated, truncated, info = env.step(act(obs))
                outcomes.append(
                    {
                        "seed": seed,
                        "success": bool(terminated),
                        "steps": int(env.steps),
                        "instruction": env.instruction,
                    }
                )
                bar.set_postfix(success=f"{sum(o['success'] for o in outcomes)}/{len(outcomes)}")
            ok = [o for o in outcomes if o["success"]]
            results[name] = {
                "episodes": len(outcomes),
                "successes": len(ok),
                "success_rate": len(ok) / max(1, len(outcomes)),
                "mean_steps": float(np.mean([o["steps"] for o in outcomes])) if outcomes else float("nan"),
                "mean_steps_success": float(np.mean([o["steps"] for o in ok])) if ok else float("nan"),
                "max_steps": int(env.max_steps),
                "outcomes": outcomes,
            }
    finally:
        env.close()
    return results
