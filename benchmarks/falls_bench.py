"""Fall campaign speed, measured side by side in one run: bare PyBullet loop vs the campaign machinery, 1 vs 2 workers.

    .venv/bin/python benchmarks/falls_bench.py --episodes 600

Prints, for the same episodes (indices 0..N-1 of campaign seed 0, laikago, default FallConfig):
  bare     a bare pybullet loop: restoreState, set gravity/friction/mass/motors, step with the push, for exactly the
           number of steps the campaign's episode ran (its final base height is checked equal: same episode)
  sim      FallSim.run in this process (adds per-step fall detection and recovery checks)
  camp1    `run_campaign` with 1 worker process (adds process start, world setup, param sampling, row log, pipe,
           progress bar, compaction to Parquet); total wall including start-up; without traces (their cost is
           benchmarks/falls_traces_bench.py's)
  camp2    the same with 2 workers
and the ratios: overhead = camp1 time / bare time (goal <= 1.1), parallel efficiency = camp2 eps/s / (2 x camp1
eps/s) (goal >= 0.9), and the projected wall time of 100,000 episodes at camp2's rate (goal <= 50 min).
Core only: never imports rclpy.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import pybullet as p
import pybullet_data

from wam_ros.sim.falls import ROBOTS, FallConfig, FallSim, sample_params
from wam_ros.train.campaign import CampaignSpec, run_campaign


def bare_loop(cfg: FallConfig, episodes: list[tuple]) -> tuple[list[float], list[float], list[float]]:
    """Raw pybullet, no bookkeeping: (wall s per episode, CPU s per episode, final base heights).

    `episodes`: (params, steps) pairs."""
    spec = ROBOTS[cfg.robot]
    cid = p.connect(p.DIRECT)
    p.setAdditionalSearchPath(pybullet_data.getDataPath())
    p.setTimeStep(1.0 / cfg.sim_hz)
    p.setPhysicsEngineParameter(deterministicOverlappingPairs=1)
    p.setGravity(0, 0, -9.81)
    plane = p.loadURDF("plane.urdf")
    robot = p.loadURDF(spec.urdf, [0, 0, spec.base_height], spec.base_orientation)
    joints, n = list(spec.motor_joints), len(spec.motor_joints)
    base_mass, _, base_inertia = p.getDynamicsInfo(robot, -1)[:3]
    for j, q in zip(joints, spec.standing_pose, strict=True):
        p.resetJointState(robot, j, q)
    p.setJointMotorControlArray(
        robot,
        joints,
        p.POSITION_CONTROL,
        targetPositions=list(spec.standing_pose),
        forces=[spec.max_force] * n,
        positionGains=[spec.position_gain] * n,
        velocityGains=[spec.velocity_gain] * n,
    )
    for _ in range(cfg.sim_hz):
        p.stepSimulation()
    state = p.saveState()
    heights, times, cpus = [], [], []
    for prm, steps in episodes:
        t0, c0 = time.perf_counter(), time.process_time()
        p.restoreState(state)
        s, y = math.radians(prm.slope_deg), prm.slope_yaw
        p.setGravity(9.81 * math.sin(s) * math.cos(y), 9.81 * math.sin(s) * math.sin(y), -9.81 * math.cos(s))
        p.changeDynamics(plane, -1, lateralFriction=prm.friction)
        for link in spec.foot_links:
            p.changeDynamics(robot, link, lateralFriction=prm.friction)
        p.changeDynamics(
            robot,
            -1,
            mass=base_mass * prm.mass_scale,
            localInertiaDiagonal=[v * prm.mass_scale for v in base_inertia],
        )
        p.setJointMotorControlArray(
            robot,
            joints,
            p.POSITION_CONTROL,
            targetPositions=list(spec.standing_pose),
            forces=[spec.max_force * prm.motor_strength] * n,
            positionGains=[spec.position_gain] * n,
            velocityGains=[spec.velocity_gain] * n,
        )
        start = round(prm.push_start * cfg.sim_hz)
        stop = start + max(1, round(prm.push_duration * cfg.sim_hz))
        force = (prm.push_force * math.cos(prm.push_yaw), prm.push_force * math.sin(prm.push_yaw), 0.0)
        for k in range(steps):
            if start <= k < stop:
                p.applyExternalForce(
                    robot, -1, force, p.getBasePositionAndOrientation(robot)[0], p.WORLD_FRAME
                )
            p.stepSimulation()
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        heights.append(p.getBasePositionAndOrientation(robot)[0][2])
    p.disconnect(cid)
    return times, cpus, heights


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (the campaign's workers): immune to other load."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed_campaign(out: Path, n: int, workers: int, cfg: FallConfig) -> tuple[float, float]:
    """(wall s, CPU s) of a whole campaign run of n episodes."""
    t0, c0 = time.perf_counter(), cpu_seconds()
    spec = CampaignSpec(
        out=out, episodes=n, workers=workers, fall=cfg, traces=False
    )  # traces: falls_traces_bench
    summary = run_campaign(spec, progress=False)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    assert summary.ran == n and summary.complete
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=600)
    ap.add_argument(
        "--warmup",
        type=int,
        default=40,
        help="episodes of the short runs whose wall time is subtracted to get the steady-state rate",
    )
    ap.add_argument("--robot", default="laikago", choices=sorted(ROBOTS))
    args = ap.parse_args()
    n, n0, cfg = args.episodes, args.warmup, FallConfig(robot=args.robot)
    if not 0 < n0 < n:
        ap.error(f"--warmup must be in (0, --episodes={n}), got {n0}")
    params = [sample_params(0, i, cfg) for i in range(n)]

    sim = FallSim(cfg)
    t0, c0 = time.perf_counter(), time.process_time()
    results = [sim.run(prm) for prm in params]
    t_sim, cpu_sim = time.perf_counter() - t0, time.process_time() - c0
    sim.close()

    c0 = cpu_seconds()
    times, cpus, heights = bare_loop(cfg, [(prm, r.steps) for prm, r in zip(params, results, strict=True)])
    same = all(h == r.final_height for h, r in zip(heights, results, strict=True))
    t_bare, t_bare_tail = sum(times), sum(times[n0:])
    cpu_bare = cpu_seconds() - c0  # includes its world setup (~1 s of settling), like the campaign's

    tmp = Path(tempfile.mkdtemp(prefix="falls_bench_"))
    try:
        full, short, cpu, cpu_short = {}, {}, {}, {}
        for w in (1, 2):
            short[w], cpu_short[w] = timed_campaign(tmp / f"short{w}", n0, w, cfg)
            full[w], cpu[w] = timed_campaign(tmp / f"full{w}", n, w, cfg)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    steady = {w: (n - n0) / (full[w] - short[w]) for w in (1, 2)}  # episodes/s once the workers are up
    cpu_ep = {w: (cpu[w] - cpu_short[w]) / (n - n0) for w in (1, 2)}  # CPU s per episode, steady state
    cpu_ep_bare = sum(cpus[n0:]) / (n - n0)

    steps = sum(r.steps for r in results)
    falls = sum(r.fell for r in results)
    print(
        f"fall campaign benchmark: {n} episodes, {cfg.robot}, {steps / n:.0f} steps/episode on average "
        f"({steps / n / cfg.sim_hz:.2f} s simulated), fall rate {falls / n:.1%}, cpus {os.cpu_count()}, "
        f"load average at end {os.getloadavg()[0]:.2f}"
    )
    print(f"bare loop reproduces the campaign's episodes bit for bit: {same}")
    print("| run | wall s | episodes/s | steady-state episodes/s | CPU s |")
    print("|---|---|---|---|---|")
    print(
        f"| bare pybullet loop (1 process) | {t_bare:.2f} | {n / t_bare:.2f} | {(n - n0) / t_bare_tail:.2f} "
        f"| {cpu_bare:.2f} |"
    )
    print(f"| FallSim.run (1 process) | {t_sim:.2f} | {n / t_sim:.2f} | | {cpu_sim:.2f} |")
    for w in (1, 2):
        print(
            f"| campaign, {w} worker{'s' if w > 1 else ''} | {full[w]:.2f} | {n / full[w]:.2f} | {steady[w]:.2f} "
            f"| {cpu[w]:.2f} |"
        )
    print(
        f"start-up + shut-down of a campaign run (s): 1 worker {full[1] - (n / steady[1]):.2f}, "
        f"2 workers {full[2] - (n / steady[2]):.2f}"
    )
    print(
        f"overhead campaign(1 worker) / bare loop, steady state = {(n - n0) / steady[1] / t_bare_tail:.3f}, "
        f"whole {n}-episode run incl. start-up = {full[1] / t_bare:.3f} (goal <= 1.1); "
        f"FallSim.run / bare = {t_sim / t_bare:.3f} (CPU time: {cpu_sim / sum(cpus):.3f})"
    )
    print(
        f"CPU-time overhead (immune to other load): campaign 1 worker / bare = {cpu[1] / cpu_bare:.3f}, "
        f"2 workers / bare = {cpu[2] / cpu_bare:.3f}"
    )
    print(
        f"parallel efficiency at 2 workers, steady state = {steady[2] / (2 * steady[1]):.3f}, "
        f"whole run = {full[1] / (2 * full[2]):.3f} (goal >= 0.9)"
    )
    print(
        f"CPU s per episode, steady state: bare {cpu_ep_bare * 1e3:.1f} ms, "
        f"campaign 1 worker {cpu_ep[1] * 1e3:.1f} ms, 2 workers {cpu_ep[2] * 1e3:.1f} ms; "
        f"CPU efficiency 1 -> 2 workers = {cpu_ep[1] / cpu_ep[2]:.3f}, steady-state CPU overhead campaign / bare = "
        f"{cpu_ep[1] / cpu_ep_bare:.3f}"
    )
    print(
        f"projected 100,000 episodes at 2 workers: {100_000 / steady[2] / 60:.1f} min at the measured wall rate; "
        f"{100_000 * cpu_ep[2] / 2 / 60:.1f} min from CPU time if 2 cores are free (goal <= 50)"
    )


if __name__ == "__main__":
    main()
