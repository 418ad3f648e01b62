"""The planner's stall trigger (issue 16, session 11): how push fails, whether the critic sees it, what to do then.

    # 1. let the policy drive, log every decision (true present distance, every candidate rolled out, the critic at h=0)
    .venv/bin/python benchmarks/planner_choice.py --model models/panda_tabletop --task push --episodes 40 \\
        --seed-start 6000000 --replan 4 --horizons 0 --follow-oracle 0 --out runs/stall_0.npz     # and 6000040
    # 2. the stall test's thresholds on those logs: where it fires in failures and in successes
    .venv/bin/python benchmarks/stall_trigger.py detect runs/stall_0.npz runs/stall_1.npz
    # 3. closed loop: the planner with trigger "stall", and what it picks at a stalled decision
    .venv/bin/python benchmarks/stall_trigger.py closed-loop --pick critic --seed-start 6000000 --episodes 40

`detect`: for each setting (span mm, window, start), in how many failed / successful episodes the test fires on the
critic's present-distance estimate, and how many decisions after the cube really stopped (the true distance stays
within 2 mm for the rest of the episode). `closed-loop`: push scenes with wam_ros.runtime.planner.BestOfN at trigger
"stall" (its defaults), picking at stalled decisions by `--pick`: critic (the planner itself), random (a random
feasible candidate), oracle (each candidate rolled out in a copy of the simulator), or policy (never leave the
policy's own chunk: the stall test runs, nothing is switched). Seeds 6,000,000+ are kept apart from the validation
(2,000,000+), test (1,000,000+) and critic-data (3,000,000+) seeds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def detect(logs: list[str]) -> None:
    from wam_ros.model.modeling import DIST_SCALE

    eps = []
    for f in logs:
        d = np.load(f)
        for e in np.unique(d["episode"]):
            m = d["episode"] == e
            eps.append((bool(d["success"][e]), d["now"][m], d["critic_h0"][m, 0, 2] * DIST_SCALE))
    ns = sum(s for s, _, _ in eps)
    print(f"{len(eps)} episodes, {ns} successes")
    now = np.concatenate([n for _, n, _ in eps])
    est = np.concatenate([e for _, _, e in eps])
    print(
        f"present distance: critic vs true, correlation {np.corrcoef(now, est)[0, 1]:.2f}, "
        f"mean abs error {1e3 * np.abs(now - est).mean():.1f} mm"
    )
    for span in (5, 10, 15):
        for win in (2, 3, 4):
            for start in (3, 4, 5):
                fire_s = fire_f = dec_s = 0
                delays = []
                for s, now_e, est_e in eps:
                    fired = [
                        i
                        for i in range(len(est_e))
                        if i >= max(start, win) and np.ptp(est_e[i - win : i + 1]) < span / 1e3
                    ]
                    if s:
                        fire_s += bool(fired)
                        dec_s += len(fired)
                        continue
                    fire_f += bool(fired)
                    onset = next((i for i in range(3, len(now_e)) if np.ptp(now_e[i:]) < 0.002), None)
                    if fired and onset is not None:
                        delays.append(fired[0] - onset)
                delay = f"{np.median(delays):.1f}" if delays else "-"
                print(
                    f"span {span:2d} mm, window {win}, start {start}: fires in {fire_f}/{len(eps) - ns} failures, "
                    f"{fire_s}/{ns} successes ({dec_s} decisions); median first fire - stop {delay} decisions"
                )


def closed_loop(a: argparse.Namespace) -> int:
    import torch

    from wam_ros.robot import RobotProfile
    from wam_ros.runtime import load_policy
    from wam_ros.runtime.chunk_policy import ChunkPolicy
    from wam_ros.runtime.plan_backends import open_plan_backend
    from wam_ros.runtime.planner import BestOfN, PlannerConfig
    from wam_ros.runtime.safety import SafetyLimits
    from wam_ros.sim.tabletop import TabletopEnv
    from wam_ros.train.planning_eval import oracle_chooser, random_chooser

    torch.set_num_threads(1)
    policy = load_policy(a.model, backend="torch", threads=1)
    backend = open_plan_backend(a.model, backend="torch", threads=1)
    robot = policy.config["robot"]
    limits = SafetyLimits.from_profile(RobotProfile.load(robot), list(policy.spec.joint_names))
    env = TabletopEnv(task="push", image_size=policy.spec.image_size[0], robot=robot)
    rng = np.random.default_rng(a.seed_start)
    wins = stalled_eps = 0
    try:
        for e in range(a.episodes):
            seed = a.seed_start + e
            chooser = {
                "critic": None,
                "random": random_chooser(rng),
                "oracle": oracle_chooser(env),
                "policy": lambda chunks, info: 0 if info["feasible"][0] else int(np.argmax(info["feasible"])),
            }[a.pick]
            planner = BestOfN(
                backend,
                PlannerConfig(candidates=a.candidates, seed=seed, trigger="stall"),
                limits=limits,
                dt=1.0 / policy.spec.control_hz,
                chooser=chooser,
            )
            stalls = [0]

            def plan(runner: ChunkPolicy, q: np.ndarray, planner: BestOfN = planner, stalls: list = stalls):  # noqa: ANN202
                out = planner(runner, q)
                stalls[0] += int(bool(out.info.get("stalled", False)))
                return out

            obs, _ = env.reset(seed=seed)
            runner = ChunkPolicy(policy, replan=a.replan, instruction=env.instruction, planner=plan)
            terminated = truncated = False
            while not (terminated or truncated):
                obs, _, terminated, truncated, _ = env.step(runner.select_action(obs))
            wins += bool(terminated)
            stalled_eps += stalls[0] > 0
            print(
                f"seed {seed}: success {terminated}, {env.steps} steps, stalled decisions {stalls[0]}",
                flush=True,
            )
    finally:
        env.close()
    print(
        f"pick {a.pick}, seeds {a.seed_start}..{a.seed_start + a.episodes - 1}: {wins}/{a.episodes} succeeded, "
        f"{stalled_eps} episodes with a stalled decision"
    )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    d = sub.add_parser("detect", help="the stall test's thresholds on decision logs of planner_choice.py")
    d.add_argument("logs", nargs="+")
    c = sub.add_parser("closed-loop", help="push scenes with the planner at trigger stall")
    c.add_argument("--pick", choices=["critic", "random", "oracle", "policy"], default="critic")
    c.add_argument("--model", default=str(ROOT / "models" / "panda_tabletop"))
    c.add_argument("--seed-start", type=int, default=6_000_000)
    c.add_argument("--episodes", type=int, default=40)
    c.add_argument("--replan", type=int, default=4)
    c.add_argument("--candidates", type=int, default=16)
    a = ap.parse_args()
    if a.what == "detect":
        detect(a.logs)
        return 0
    return closed_loop(a)


if __name__ == "__main__":
    sys.exit(main())
