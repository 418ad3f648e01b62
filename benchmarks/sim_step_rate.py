"""Env step rate without camera ÷ a bare pybullet loop doing the same control and readback (goal >= 0.9).

    .venv/bin/python benchmarks/sim_step_rate.py [--steps 400] [--repeats 5] [--task reach]

Both run the same world (table, Panda, task objects) in their own DIRECT client, interleaved repeat by repeat so
machine load hits both alike. One control step = set arm + finger position targets, 240/control_hz physics steps,
read the joint states back. The env also builds its observation dict, clamps the action and runs the success test
(a link-state read); the bare loop does only what is named. Rates are per second of this process's CPU time
(time.process_time), so other load on the machine disturbs them far less than wall time would. Short blocks alternate between the two; the best block of
each (least disturbed by other load on the machine) gives the headline ratio, the medians are printed beside it.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pybullet as p

from wam_ros.sim.tabletop import TabletopEnv

# the Panda's PyBullet joints (franka_panda/panda.urdf), written out: the bare loop does no profile lookups
ARM_JOINTS = list(range(7))  # panda_joint1..7
FINGER_JOINTS = [9, 10]  # panda_finger_joint1/2, each 0..0.04 m
ARM_FORCES = [87.0] * 4 + [12.0] * 3  # the URDF's effort limits, which the env's motors use
FINGER_FORCE = 20.0


def _clock() -> float:
    # CPU time of this process: on a shared 2-core machine wall time mostly measures the neighbours' load
    return time.process_time()


def targets(n: int, home: np.ndarray) -> np.ndarray:
    """A smooth joint-space wiggle around home (the same for both loops)."""
    t = np.arange(n)[:, None]
    q = home[None, :] + 0.2 * np.sin(0.1 * t + np.arange(8)[None, :])
    q[:, 7] = 0.04 + 0.03 * np.sin(0.2 * t[:, 0])
    return q


def env_loop(env: TabletopEnv, qs: np.ndarray) -> float:
    env.reset(seed=0)
    start = _clock()
    for q in qs:
        env.step(q)
    return len(qs) / (_clock() - start)


def bare_loop(client: int, robot: int, substeps: int, qs: np.ndarray) -> float:
    start = _clock()
    for q in qs:
        p.setJointMotorControlArray(
            robot,
            ARM_JOINTS,
            p.POSITION_CONTROL,
            targetPositions=list(q[:7]),
            forces=ARM_FORCES,
            physicsClientId=client,
        )
        p.setJointMotorControlArray(
            robot,
            FINGER_JOINTS,
            p.POSITION_CONTROL,
            targetPositions=[q[7] / 2] * 2,
            forces=[FINGER_FORCE] * 2,
            physicsClientId=client,
        )
        for _ in range(substeps):
            p.stepSimulation(physicsClientId=client)
        states = p.getJointStates(robot, ARM_JOINTS + FINGER_JOINTS, physicsClientId=client)
        np.array([s[0] for s in states]), np.array([s[1] for s in states])
    return len(qs) / (_clock() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="reach")
    ap.add_argument("--steps", type=int, default=100, help="control steps per block")
    ap.add_argument("--repeats", type=int, default=21, help="blocks per loop")
    args = ap.parse_args()

    env = TabletopEnv(task=args.task, render=False, max_steps=10**6)
    bare = TabletopEnv(task=args.task, render=False)  # only used for its world: driven by raw pybullet calls
    bare.reset(seed=0)
    qs = targets(args.steps, np.asarray(env.profile.home))
    env_rates, bare_rates = [], []
    for _ in range(args.repeats):
        bare.reset(seed=0)
        bare_rates.append(bare_loop(bare.client, bare.robot_id, bare.substeps, qs))
        env_rates.append(env_loop(env, qs))
    env.close(), bare.close()
    e, b = max(env_rates), max(bare_rates)
    em, bm = statistics.median(env_rates), statistics.median(bare_rates)
    print(
        f"task={args.task} control_hz={env.control_hz} substeps={env.substeps} blocks={args.repeats} x "
        f"{args.steps} control steps"
    )
    print(
        f"bare pybullet loop : best {b:7.1f}  median {bm:7.1f} control steps/s (best {b * env.substeps:.0f} "
        "physics steps/s)"
    )
    print(f"TabletopEnv.step   : best {e:7.1f}  median {em:7.1f} control steps/s (render=False)")
    print(f"ratio env / bare   : best {e / b:.3f}  median {em / bm:.3f}   (goal >= 0.9)")


if __name__ == "__main__":
    main()
