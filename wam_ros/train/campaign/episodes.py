"""One fall episode -> one results row (+ the project's episode format for recorded episodes).

The sim (wam_ros.sim.falls) returns plain results and arrays; this is where they become the campaign's row
(`COLUMNS`) and, for episodes chosen with `--record`, an `Episode` (wam_ros.data.episode).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from wam_ros.data.episode import Episode
from wam_ros.sim.falls import EpisodeParams, FallRecording, FallResult, FallSim, FallTrace, sample_params
from wam_ros.train.campaign.spec import COLUMNS


def fall_episode(sim: FallSim, params: EpisodeParams, result: FallResult, rec: FallRecording) -> Episode:
    """A recorded fall episode in the project's episode format (task "fall", instruction "stand")."""
    n = len(rec.t)
    return Episode(
        frames=rec.frames,
        joint_pos=rec.joint_pos,
        joint_vel=rec.joint_vel,
        actions=np.tile(np.asarray(sim.spec.standing_pose, dtype=np.float32), (n, 1)),
        timestamps=rec.t,
        meta={
            "task": "fall",
            "instruction": "stand",
            "success": bool(not result.fell),
            "seed": params.seed,
            "index": params.index,
            "robot": sim.profile,
            "camera": sim.camera_meta(),
            "control_hz": sim.cfg.record_hz,
            "randomisation": asdict(params),
            "scene": {"slope_deg": params.slope_deg, "friction": params.friction},
            "outcome": asdict(result),
            "fall_config": sim.cfg.to_dict(),
            "producer": "wam_ros.sim.falls",
        },
        extra={"base_pos": rec.base_pos, "base_orn": rec.base_orn},
    )


def run_episode_row(
    sim: FallSim, seed: int, index: int, record: bool, trace: bool = False
) -> tuple[dict[str, Any], Episode | None, FallTrace | None]:
    """Run episode `index` and return (row, episode or None, trace or None). The row has exactly the COLUMNS."""
    params = sample_params(seed, index, sim.cfg)
    out = sim.run_full(params, record=record, trace=trace)
    result = out.result
    episode = fall_episode(sim, params, result, out.recording) if record else None
    row = {**asdict(params), "push_impulse": params.push_impulse, **asdict(result), "recorded": record}
    return {k: row[k] for k in COLUMNS}, episode, out.trace
