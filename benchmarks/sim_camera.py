"""Camera cost per frame (TinyRenderer) beside the cost of one physics-only control step, measured in one run.

    .venv/bin/python benchmarks/sim_camera.py [--frames 60]

For each task and image size: ms of CPU per fixed-camera frame, per wrist-camera frame, and per control step without
camera (24 physics steps at 10 Hz control); the ratio frame / control step says what the camera adds to collection.
CPU time of this process (time.process_time): robust to the other load on a shared machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from wam_ros.sim.tabletop import TabletopEnv


def per_call_ms(fn, n: int) -> float:
    fn()  # warm-up
    start = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - start) / n * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128])
    args = ap.parse_args()
    print(f"{'task':6s} {'size':>5s} {'frame ms':>9s} {'wrist ms':>9s} {'step ms':>8s} {'frame/step':>10s}")
    for task in ("reach", "push"):
        for size in args.sizes:
            env = TabletopEnv(task=task, image_size=size, render=False, max_steps=10**6)
            env.reset(seed=0)
            hold = np.asarray(env.last_action)
            frame = per_call_ms(lambda env=env: env._camera(env.scene.camera), args.frames)
            wrist = per_call_ms(env._wrist, args.frames)
            step = per_call_ms(lambda env=env, hold=hold: env.step(hold), args.frames)
            env.close()
            print(f"{task:6s} {size:5d} {frame:9.2f} {wrist:9.2f} {step:8.2f} {frame / step:10.1f}")


if __name__ == "__main__":
    main()
