"""The Ray backend: one actor per worker (`num_cpus=1`, its own PyBullet world) running blocks of episodes.

Actors return rows (and recorded episodes and traces) to the driver, which writes them to its own row and trace logs,
so a row is written exactly once; `max_restarts` / `max_task_retries` let Ray redo a block whose actor died. `ray` is
imported only when this backend runs (wam_ros.train.workers.start_ray, shared with `wam collect --backend ray`).
"""

from __future__ import annotations

import os
import uuid
from collections import deque
from typing import Any

from wam_ros.data.episode import episode_path, write_episode
from wam_ros.sim.falls import FallConfig, FallSim
from wam_ros.train.campaign.episodes import run_episode_row
from wam_ros.train.campaign.local import Progress
from wam_ros.train.campaign.spec import CampaignError, CampaignSpec, RecordSelection
from wam_ros.train.campaign.storage import RowLog
from wam_ros.train.campaign.traces import log_schema, new_trace_log
from wam_ros.train.workers import RayUnavailable, start_ray


class _RayFallWorker:
    """A Ray actor holding one PyBullet world; runs blocks of episodes and returns their rows (+ recorded episodes)."""

    def __init__(self, seed: int, fall: dict, record: str, traces: bool) -> None:
        self.seed, self.traces = seed, traces
        self.selection = RecordSelection(record)
        self.sim = FallSim(FallConfig(**fall))

    def joint_names(self) -> list[str]:
        return list(self.sim.profile["joint_names"])

    def run_block(self, indices: list[int]) -> list[tuple[dict[str, Any], Any, Any]]:
        return [run_episode_row(self.sim, self.seed, i, i in self.selection, self.traces) for i in indices]


def run_ray(spec: CampaignSpec, pending: list[int], on_row: Progress) -> int:
    """Run `pending` episodes on `spec.workers` Ray actors; returns 0 (Ray itself restarts dead actors)."""
    try:
        ray, started_here = start_ray(spec.ray_address, spec.workers)
    except (ValueError, RayUnavailable) as exc:
        raise CampaignError(str(exc)) from exc
    actor_cls = ray.remote(num_cpus=1, max_restarts=3, max_task_retries=3)(_RayFallWorker)
    fall = spec.fall.to_dict()
    actors = [actor_cls.remote(spec.seed, fall, spec.record, spec.traces) for _ in range(spec.workers)]
    blocks = deque(pending[i : i + spec.block] for i in range(0, len(pending), spec.block))
    rows = RowLog(spec.out / "logs" / f"rows-ray-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl")
    trace_log = None
    if spec.traces:
        names = ray.get(actors[0].joint_names.remote())  # the traces' schema names the robot's joints
        schema = log_schema(names, spec.fall.trace_hz, spec.fall.robot)
        trace_log = new_trace_log(spec.out, schema, f"ray-{os.getpid()}")
    in_flight: dict[Any, Any] = {}
    try:
        for actor in actors:
            for _ in range(2):  # two blocks in flight per actor: no idle gap between blocks
                if blocks:
                    in_flight[actor.run_block.remote(blocks.popleft())] = actor
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            actor = in_flight.pop(ready[0])
            for row, episode, trace in ray.get(ready[0]):
                if episode is not None:
                    write_episode(episode_path(spec.out / "episodes", row["index"]), episode)
                if trace_log is not None:
                    trace_log.append(row["index"], trace)  # before the row: a row always has its trace
                rows.append(row)
                on_row(row["index"], row["fell"])
            if blocks:
                in_flight[actor.run_block.remote(blocks.popleft())] = actor
    finally:
        rows.close()
        if trace_log is not None:
            trace_log.close()
        for actor in actors:
            ray.kill(actor)
        if started_here:
            ray.shutdown()
    return 0
