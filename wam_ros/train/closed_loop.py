"""Closed-loop evaluation in the PyBullet tabletop: the WAM (through the runtime API), the scripted expert and a random
policy, on the same seeded scenes, side by side.

    res = closed_loop(policies={"wam": make_wam_policy(policy, replan=4), ...}, task="reach", seeds=range(10**6, ...))

A policy factory is called once per episode with the env (after reset) and returns `obs -> action (J,)`, J the
robot profile's joints (`robot`: the Panda by default; any profile the tabletop sim can build).
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
    if instruction is None:
        return lambda env: ChunkPolicy(policy, replan=replan, instruction=env.instruction)
    return lambda env: ChunkPolicy(policy, replan=replan, instruction=instruction(env.instruction))


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
) -> dict[str, dict[str, Any]]:
    """Per policy: success rate, mean steps (all episodes and successful ones), per-seed outcomes.

    progress: a tqdm bar per policy (episodes done, successes so far) on stderr. robot: the profile the sim builds."""
    from tqdm import tqdm

    from wam_ros.sim.tabletop import TabletopEnv

    seeds = [int(s) for s in seeds]
    env = TabletopEnv(task=task, image_size=image_size, control_hz=control_hz, robot=robot)
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
