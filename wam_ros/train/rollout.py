"""Sim rollouts as episodes: the train layer's bridge between the simulator (plain arrays) and the episode format.

    from wam_ros.sim.experts import make_expert
    from wam_ros.sim.tabletop import TabletopEnv
    env = TabletopEnv(task="reach")
    ep = record_episode(env, make_expert(env), seed=3)            # an Episode, ready for write_episode

Every keyword of wam_ros.sim.tabletop.rollout (instruction, producer, extra_meta, DART noise, a DAgger driver) goes
through unchanged; see its docstring for what each row holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

from wam_ros.data.episode import Episode
from wam_ros.sim.tabletop import TabletopEnv, TabletopRollout, rollout


def to_episode(run: TabletopRollout) -> Episode:
    """The episode of one rollout (validated by Episode itself): a rollout holds the episode's fields, by name."""
    return Episode(**{f.name: getattr(run, f.name) for f in fields(run)})


def record_episode(env: TabletopEnv, policy: Callable[[dict], Any], seed: int, **kwargs: Any) -> Episode:
    """Roll `policy` out in `env` from `reset(seed)` (wam_ros.sim.tabletop.rollout) and return the Episode."""
    return to_episode(rollout(env, policy, seed, **kwargs))
