"""`wam collect --backend ray`: the same collection on Ray actors (a local instance, or a cluster).

Each actor (`num_cpus=1`) holds one world (and the DAgger learner) and records the episodes it is given, exactly as a
local worker does (wam_ros.train.collect._record: the episode depends on the collection settings and its index only).
Episodes come back to the driver, which writes them into the output directory, so the directory, its collect.json and
a re-run's resume are the same as with the local backend. `max_restarts` / `max_task_retries` let Ray redo an episode
whose actor died. `ray` is imported only when this backend runs (wam_ros.train.workers.start_ray, which the fall
campaign's Ray runner uses too).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

from wam_ros.data.episode import Episode
from wam_ros.train.collect import CollectConfig, CollectError, _build, _failure, _record
from wam_ros.train.workers import RayUnavailable, run_on_actors, start_ray


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


def run_ray(cfg: CollectConfig, todo: list[int], done: Callable[[int, Episode | None, str], None]) -> None:
    """Record the episodes `todo` on `cfg.workers` actors; `done(index, episode or None, error)` for each, in the
    order they finish (the caller writes and counts them)."""
    try:  # a missing package or a bad address: ValueError (a usage error), as the other settings
        ray, started_here = start_ray(cfg.ray_address, cfg.workers)
    except RayUnavailable as exc:
        raise CollectError(str(exc)) from exc
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
