"""The protective reaction: when the fall forecaster fires, the robot crouches and widens its stance. Found by a small
search on one campaign seed's pushes, measured with and without on held-out pushes of another seed.

    search = search_reaction(ProtectConfig(model="models/fall_forecaster_laikago"))       # grid on seed 0
    report = evaluate_reaction(cfg, search.best)                                           # seed 1, with / without
    # or: wam campaign protect --model models/fall_forecaster_laikago --json runs/protect.json

An episode here is the campaign's episode (same parameters, wam_ros.sim.falls.sample_params) stepped in closed loop
(FallSim.begin/step/read): every trace tick (100 Hz) the robot's readings go through the shipped forecaster
(onnxruntime stream, wam_ros.runtime.fall_forecaster); at the first alarm the motors' targets switch to the protective
posture for the rest of the episode. Episodes run to `horizon_s` after the push start, past a fall, to see the body
hit the ground. Per episode: fell (the campaign's detector), peak contact force of the ground on a non-foot link (N,
0 if none) and the base speed at that first body contact (m/s, 0 if none).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wam_ros.runtime.fall_forecaster import FallForecasterRuntime
from wam_ros.sim.falls import FallConfig, FallSim, RobotSpec, sample_params


@dataclass(frozen=True)
class Reaction:
    """A protective posture relative to the standing pose, per leg (abduction, hip, knee): abduction + `widen`
    (outward on every laikago leg), hip + crouch/2, knee - crouch (a deeper knee bend: the body lowers), position gain
    x `gain_scale`."""

    crouch: float = 0.4
    widen: float = 0.25
    gain_scale: float = 1.0

    def targets(self, spec: RobotSpec) -> tuple[float, ...]:
        delta = np.tile([self.widen, self.crouch / 2, -self.crouch], len(spec.motor_joints) // 3)
        return tuple(float(v) for v in np.asarray(spec.standing_pose) + delta)


@dataclass
class ProtectConfig:
    """Args:
    model: the forecaster folder that triggers the reaction.
    search_seed / search_episodes: campaign seed and number of pushed episodes the grid is scored on.
    eval_seed / eval_episodes: held-out pushes (another seed) for the with / without comparison.
    grid: candidate reactions.
    horizon_s: simulated time after the push start.
    """

    model: str | Path
    search_seed: int = 0
    search_episodes: int = 120
    eval_seed: int = 1
    eval_episodes: int = 400
    horizon_s: float = 2.0
    grid: tuple[Reaction, ...] = tuple(
        Reaction(c, w, g) for c in (0.25, 0.5) for w in (0.0, 0.25, 0.45) for g in (1.0, 2.0)
    )
    fall: FallConfig = field(default_factory=FallConfig)

    def __post_init__(self) -> None:
        if self.search_seed == self.eval_seed:
            raise ValueError(f"the search and the evaluation need different seeds, both are {self.eval_seed}")
        if self.search_episodes < 1 or self.eval_episodes < 1:
            raise ValueError("search_episodes and eval_episodes must be >= 1")
        if not 0.5 <= self.horizon_s <= 10:
            raise ValueError(f"horizon_s must be in [0.5, 10], got {self.horizon_s}")


@dataclass
class EpisodeOutcome:
    index: int
    fell: bool
    fall_time: float
    alarm_time: float  # first alarm (s since the episode start), NaN if none
    peak_force: float  # N on non-foot links
    impact_speed: float  # m/s at the first body contact
    push_impulse: float


def reading_vector(r: dict[str, np.ndarray]) -> np.ndarray:
    """FallSim.read() -> the forecaster's input sample (10 + 3J,) in wam_ros.model.forecaster.input_columns order."""
    return np.concatenate(
        [
            r["orientation"],
            r["angular_velocity"],
            r["linear_acceleration"],
            r["joint_pos"],
            r["joint_vel"],
            r["joint_effort"],
        ]
    ).astype(np.float32)


def run_episode(
    sim: FallSim,
    index: int,
    seed: int,
    fc: FallForecasterRuntime | None,
    reaction: Reaction | None,
    horizon_s: float,
) -> EpisodeOutcome:
    """One pushed episode in closed loop; with `reaction` and `fc`, the reaction starts at the first alarm."""
    params = sample_params(seed, index, sim.cfg)
    sim.begin(params)
    stream = fc.stream() if fc is not None else None
    protective = reaction.targets(sim.spec) if reaction is not None else None
    end = round((params.push_start + horizon_s) * sim.cfg.sim_hz)
    tick, next_tick = 0, 0
    alarm_time = fall_time = math.nan
    peak, impact_speed = 0.0, math.nan
    while sim.step_count < end:
        if sim.step_count == next_tick:
            if stream is not None:
                out = stream.push(reading_vector(sim.read()))
                if out.alarm and math.isnan(alarm_time):
                    alarm_time = sim.time
                    if protective is not None:
                        sim.set_targets(protective, reaction.gain_scale)
            tick += 1
            next_tick = tick * sim.cfg.sim_hz // sim.cfg.trace_hz
        sim.step()
        if math.isnan(fall_time) and sim.fallen():
            fall_time = sim.time
        force, speed = sim.body_contact()
        if force > 0:
            if math.isnan(impact_speed):
                impact_speed = speed
            peak = max(peak, force)
    return EpisodeOutcome(
        index=index,
        fell=not math.isnan(fall_time),
        fall_time=fall_time,
        alarm_time=alarm_time,
        peak_force=peak,
        impact_speed=0.0 if math.isnan(impact_speed) else impact_speed,
        push_impulse=params.push_impulse,
    )


def pushed_indices(seed: int, n: int, cfg: FallConfig) -> list[int]:
    """The first n episode indices of campaign `seed` that are pushed (not standing)."""
    out, i = [], 0
    while len(out) < n:
        if not sample_params(seed, i, cfg).standing:
            out.append(i)
        i += 1
    return out


def summarise(outcomes: list[EpisodeOutcome]) -> dict[str, Any]:
    fell = np.array([o.fell for o in outcomes])
    force = np.array([o.peak_force for o in outcomes])
    speed = np.array([o.impact_speed for o in outcomes])
    alarmed = np.array([not math.isnan(o.alarm_time) for o in outcomes])
    return {
        "episodes": len(outcomes),
        "fall_rate": float(fell.mean()),
        "falls": int(fell.sum()),
        "alarmed": int(alarmed.sum()),
        "peak_force_mean_N": float(force.mean()),
        "peak_force_mean_of_falls_N": float(force[fell].mean()) if fell.any() else 0.0,
        "peak_force_median_of_falls_N": float(np.median(force[fell])) if fell.any() else 0.0,
        "impact_speed_mean_mps": float(speed.mean()),
        "impact_speed_mean_of_falls_mps": float(speed[fell].mean()) if fell.any() else 0.0,
    }


def _run_all(cfg: ProtectConfig, seed: int, indices: list[int], fc, reaction) -> list[EpisodeOutcome]:
    with FallSim(cfg.fall) as sim:
        return [run_episode(sim, i, seed, fc, reaction, cfg.horizon_s) for i in indices]


@dataclass
class SearchResult:
    best: Reaction
    table: list[dict[str, Any]]
    baseline: dict[str, Any]


def search_reaction(cfg: ProtectConfig, threads: int = 1, progress: bool = True) -> SearchResult:
    """Score every reaction of the grid on the search seed's pushes; the best has the fewest falls, then the lowest
    mean peak force."""
    fc = FallForecasterRuntime.load(cfg.model, threads=threads)
    idx = pushed_indices(cfg.search_seed, cfg.search_episodes, cfg.fall)
    base = summarise(_run_all(cfg, cfg.search_seed, idx, None, None))
    table = []
    for reaction in cfg.grid:
        t0 = time.perf_counter()
        s = summarise(_run_all(cfg, cfg.search_seed, idx, fc, reaction))
        table.append({**asdict(reaction), **s})
        if progress:
            print(
                f"reaction {asdict(reaction)}: fall rate {s['fall_rate']:.3f} (without {base['fall_rate']:.3f}), "
                f"mean peak force {s['peak_force_mean_N']:.0f} N ({base['peak_force_mean_N']:.0f}), "
                f"{time.perf_counter() - t0:.0f} s",
                flush=True,
            )
    best = min(table, key=lambda r: (r["fall_rate"], r["peak_force_mean_N"]))
    return SearchResult(Reaction(best["crouch"], best["widen"], best["gain_scale"]), table, base)


def evaluate_reaction(cfg: ProtectConfig, reaction: Reaction, threads: int = 1) -> dict[str, Any]:
    """With and without the reaction on the held-out pushes: fall rate and peak impact, and the relative changes."""
    fc = FallForecasterRuntime.load(cfg.model, threads=threads)
    idx = pushed_indices(cfg.eval_seed, cfg.eval_episodes, cfg.fall)
    without = _run_all(cfg, cfg.eval_seed, idx, fc, None)  # the forecaster runs (alarms counted), no reaction
    with_ = _run_all(cfg, cfg.eval_seed, idx, fc, reaction)
    a, b = summarise(without), summarise(with_)

    def change(key: str) -> float:
        return (b[key] - a[key]) / a[key] if a[key] else math.nan

    return {
        "reaction": asdict(reaction),
        "eval_seed": cfg.eval_seed,
        "horizon_s": cfg.horizon_s,
        "without": a,
        "with": b,
        "fall_rate_change": change("fall_rate"),
        "peak_force_change": change("peak_force_mean_N"),
        "peak_force_of_falls_change": change("peak_force_mean_of_falls_N"),
        "impact_speed_change": change("impact_speed_mean_mps"),
        "goal_met": bool(change("fall_rate") <= -0.25 or change("peak_force_mean_N") <= -0.40),
    }
