"""`wam collect --backend ray`: the same collection on Ray actors (a local instance, or a cluster).

Each actor (`num_cpus=1`) holds one world (and the DAgger learner) and records the episodes it is given, exactly as a
local worker does (wam_ros.train.collect._record: the episode depends on the collection settings and its index only).
Episodes come back to the driver, which writes them into the output directory, so the directory, its collect.json and
a re-run's resume are the same as with the local backend. `max_restarts` / `max_task_retries` let Ray redo an episode
whose actor died. `ray` is imported only here, and only when this backend runs (as the fall campaign's Ray runner).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from wam_ros.data.episode import Episode
from wam_ros.train.collect import CollectConfig, CollectError, _build, _failure, _record
from wam_ros.train.workers import run_on_actors


class _RayCollectWorker:
    """A Ray actor with one world: records episodes by index and returns them."""

    def __init__(self, cfg_dict: dict) -> None:
        self.cfg = CollectConfig(**cfg_dict)
        self.env, self.learner = _build(self.cfg)

    def run(self, index: int) -> tuple[int, Episode | None, str]:
        try:
            return index, _record(self.cfg, self.env, self.learner, index), ""
        except Exception as exc:  # noqa: BLE001 - reported per episode; the run goes on and exits non-zero
            return index, None, _failure(index, exc)


def _init_ray(ray: Any, cfg: CollectConfig) -> None:
    """Connect to cfg.ray_address, or start a local instance with cfg.workers CPUs."""
    if cfg.ray_address:
        from wam_ros.train.campaign.ray_runner import (
            check_reachable,  # refuses an unreachable address at once
        )

        try:
            check_reachable(cfg.ray_address)
        except RuntimeError as exc:
            raise ValueError(str(exc)) from exc
    try:
        if cfg.ray_address:
            ray.init(address=cfg.ray_address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=cfg.workers, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"connect to the Ray cluster at {cfg.ray_address!r}" if cfg.ray_address else "start Ray"
        raise CollectError(f"cannot {where}: {exc}") from exc


def run_ray(cfg: CollectConfig, todo: list[int], done: Callable[[int, Episode | None, str], None]) -> None:
    """Record the episodes `todo` on `cfg.workers` actors; `done(index, episode or None, error)` for each, in the
    order they finish (the caller writes and counts them)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError as exc:
        raise ValueError(f"--backend ray needs the `ray` package ({exc}); pip install ray") from exc
    started_here = not ray.is_initialized()
    if started_here:
        _init_ray(ray, cfg)
    actor_cls = ray.remote(num_cpus=1, max_restarts=3, max_task_retries=3)(_RayCollectWorker)
    cfg_dict = asdict(cfg)
    actors = [actor_cls.remote(cfg_dict) for _ in range(min(cfg.workers, len(todo)))]
    try:
        try:
            run_on_actors(ray, actors, "run", todo, lambda result: done(*result))
        except ray.exceptions.RayError as exc:  # an actor died more often than Ray restarts it
            raise CollectError(
                f"a Ray worker died ({type(exc).__name__}); the episodes written so far are complete; "
                "re-run the same command to fill in the rest"
            ) from exc
    finally:
        for actor in actors:
            ray.kill(actor)
        if started_here:
            ray.shutdown()
