"""Synthetic episodes for tests and benchmarks: a square "arm" moves to the instructed coloured target.

    paths = write_synthetic_episodes("/tmp/synth", n=8, steps=12, seed=0)

Not a simulator: it only gives the trainer data whose actions depend on the image and the instruction, and whose next
frame depends on the motion, without PyBullet. Real data comes from `wam collect`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wam_ros.data.episode import Episode, episode_path, write_episode
from wam_ros.robot import RobotProfile

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 80, 230)}


def _render(size: int, arm: np.ndarray, targets: dict[str, np.ndarray]) -> np.ndarray:
    img = np.full((size, size, 3), 200, np.uint8)
    for name, xy in targets.items():
        x, y = (xy * (size - 6)).astype(int)
        img[y : y + 6, x : x + 6] = COLOURS[name]
    x, y = (np.clip(arm, 0, 1) * (size - 8)).astype(int)
    img[y : y + 8, x : x + 8] = (30, 30, 30)
    return img


def synthetic_episode(seed: int, steps: int = 12, size: int = 64, task: str = "reach") -> Episode:
    rng = np.random.default_rng(seed)
    profile = RobotProfile.load("panda")
    targets = {name: rng.uniform(0.1, 0.9, 2) for name in COLOURS}
    goal = str(rng.choice(list(COLOURS)))
    q0 = np.asarray(profile.home, np.float32) + rng.normal(0, 0.05, profile.dof).astype(np.float32)
    q0[:2] = rng.uniform(0.1, 0.9, 2)
    q0 = np.clip(q0, profile.position_lower, profile.position_upper).astype(np.float32)  # valid episodes only
    qs = [q0]
    for _ in range(steps - 1):  # move 30% of the way to the goal each step
        q = qs[-1].copy()
        q[:2] += 0.3 * (targets[goal] - q[:2])
        qs.append(q)
    joint_pos = np.stack(qs).astype(np.float32)
    actions = np.concatenate([joint_pos[1:], joint_pos[-1:]])
    frames = np.stack([_render(size, q[:2], targets) for q in joint_pos])
    meta = {
        "task": task,
        "instruction": f"{task} the {goal} target",
        "success": True,
        "seed": seed,
        "robot": profile.to_dict(),
        "control_hz": 10.0,
        "camera": {"name": "synthetic"},
        "producer": "wam_ros.train.synthetic",
    }
    return Episode(
        frames=frames,
        joint_pos=joint_pos,
        joint_vel=np.zeros_like(joint_pos),
        actions=actions,
        timestamps=np.arange(steps) / 10.0,
        meta=meta,
    )


def write_synthetic_episodes(
    out_dir: str | Path, n: int, steps: int = 12, seed: int = 0, size: int = 64, task: str = "reach"
) -> list[Path]:
    return [
        write_episode(episode_path(out_dir, i), synthetic_episode(seed * 100003 + i, steps, size, task))
        for i in range(n)
    ]
