"""Push diagnostics behind the session-2 model card: re-planning and chunk ensembling on the validation scenes, and
how the scripted push expert copes with DART noise.

    .venv/bin/python benchmarks/push_diagnostics.py replan --replan 4            # WAM, push, validation seeds
    .venv/bin/python benchmarks/push_diagnostics.py ensemble --m 0.5             # ACT-style temporal ensembling
    .venv/bin/python benchmarks/push_diagnostics.py expert-noise --sigma 0 0.01 0.02 0.03
    .venv/bin/python benchmarks/push_diagnostics.py expert-noise --sigma 0.02 --expert-from 60a21ab   # the old expert
    .venv/bin/python benchmarks/push_diagnostics.py expert-noise --sigma 0 0.02 --episodes 30 --backoff-gap 0.05
    .venv/bin/python benchmarks/push_diagnostics.py trace --model runs/wam3/model.pt --seeds 2000006 2000008

Validation scenes are seeds 2,000,000+ (never the closed-loop test seeds 1,000,000+). `replan` runs the same
ChunkPolicy as `wam eval` (torch backend, 1 thread). `ensemble` predicts every step and executes the exponentially
weighted average (weights exp(-m * i), oldest chunk first, as in ACT) of every live chunk's action for that step.
`expert-noise` records push episodes with `record_episode(noise=sigma)` on seeds 5000+ and counts successes, mean
steps and the steps the expert spends in its "lift" phase; --expert-from REV loads wam_ros/sim/experts.py as it was
at git revision REV; --backoff-gap G sets the expert's approach point G m behind the cube's back face (0.03 in the
shipped expert). `trace` runs the WAM on the given scenes and prints, every 6 steps, the scripted expert's phase for
that state, the cube-pad distance and the fingertip's position relative to the cube (along the pushing line,
across it, height): where and how a failure stalls.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import types
from collections import deque
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def closed_loop(model: str, seeds: range, replan: int, m: float | None) -> list[tuple[int, bool, int]]:
    from wam_ros.runtime.chunk_policy import ChunkPolicy
    from wam_ros.runtime.policy import load_policy
    from wam_ros.sim.tabletop import TabletopEnv

    policy = load_policy(model, "torch", 1)
    env = TabletopEnv(task="push")
    out = []
    try:
        for seed in seeds:
            obs, _ = env.reset(seed=seed)
            if m is None:
                act = ChunkPolicy(policy, replan=replan, instruction=env.instruction)
            else:
                act = _Ensemble(policy, env.instruction, m)
            done = term = False
            while not done:
                obs, _, term, trunc, _ = env.step(act(obs))
                done = term or trunc
            out.append((seed, bool(term), env.steps))
            print(seed, "OK" if term else "FAIL", env.steps, flush=True)
    finally:
        env.close()
    return out


class _Ensemble:
    def __init__(self, policy, instruction: str, m: float) -> None:
        self.policy, self.instruction, self.m = policy, instruction, m
        self.frames: deque = deque(maxlen=policy.spec.k_frames)
        self.chunks: list[tuple[int, np.ndarray]] = []
        self.t = 0

    def __call__(self, obs: dict) -> np.ndarray:
        self.frames.extend([obs["image"]] * (self.frames.maxlen if not self.frames else 1))
        chunk = self.policy.predict(
            {"images": list(self.frames), "joint_pos": obs["joint_pos"], "instruction": self.instruction}
        )["action"]
        self.chunks = [(t0, c) for t0, c in [*self.chunks, (self.t, chunk)] if self.t - t0 < len(c)]
        acts = np.array([c[self.t - t0] for t0, c in self.chunks])
        w = np.exp(-self.m * np.arange(len(acts)))
        self.t += 1
        return (acts * w[:, None]).sum(0) / w.sum()


def trace(model: str, seeds: list[int], replan: int) -> None:
    from wam_ros.runtime.chunk_policy import ChunkPolicy
    from wam_ros.runtime.policy import load_policy
    from wam_ros.sim.experts import make_expert
    from wam_ros.sim.tabletop import TabletopEnv

    policy = load_policy(model, "torch", 1)
    env = TabletopEnv(task="push")
    try:
        for seed in seeds:
            obs, _ = env.reset(seed=seed)
            expert, act = make_expert(env), ChunkPolicy(policy, replan=replan, instruction=env.instruction)
            done = term = False
            rows = []
            while not done:
                expert(obs)  # only for its phase label of this state
                scene = env.scene
                cube = env.object_positions()["cube"][:2]
                d = np.asarray(scene.objects[scene.goal]["position"][:2]) - cube
                u = d / np.linalg.norm(d)
                tip = env.fingertip_position()
                rel = tip[:2] - cube
                rows.append(
                    (
                        env.steps,
                        expert.phase,
                        float(np.linalg.norm(d)),
                        float(rel @ u),
                        float(rel @ np.array([-u[1], u[0]])),
                        float(tip[2]),
                    )
                )
                obs, _, term, trunc, _ = env.step(act(obs))
                done = term or trunc
            print(f"seed {seed}: {'OK' if term else 'FAIL'} in {env.steps} steps ({env.instruction})")
            print("    step  expert phase  cube-pad m  tip along m  tip across m  tip height m")
            for r in rows[::6]:
                print(f"    {r[0]:4d}  {r[1]:<12s}  {r[2]:10.3f}  {r[3]:11.3f}  {r[4]:12.3f}  {r[5]:12.3f}")
    finally:
        env.close()


def expert_noise(
    sigmas: list[float], n: int, expert_from: str | None, backoff_gap: float | None = None
) -> None:
    from wam_ros.sim import experts
    from wam_ros.sim.tabletop import TabletopEnv
    from wam_ros.train.rollout import record_episode

    if expert_from:
        src = subprocess.run(
            ["git", "show", f"{expert_from}:wam_ros/sim/experts.py"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        experts = types.ModuleType("experts_at_" + expert_from)
        exec(compile(src, f"experts.py@{expert_from}", "exec"), experts.__dict__)  # noqa: S102 - our own file
    if backoff_gap is not None:
        from wam_ros.sim import _tasks

        experts.PushExpert.BACKOFF = _tasks.CUBE_HALF + backoff_gap
    env = TabletopEnv(task="push")
    try:
        for sigma in sigmas:
            ok, steps, lifts = 0, [], 0
            for i in range(n):
                holder: dict = {}

                def policy(obs: dict, holder=holder) -> np.ndarray:
                    nonlocal lifts
                    holder.setdefault("e", experts.make_expert(env))
                    action = holder["e"](obs)
                    lifts += holder["e"].phase == "lift"
                    return action

                ep = record_episode(env, policy, seed=5000 + i, noise=sigma)
                ok += ep.meta["success"]
                steps.append(ep.meta["steps"])
            gap = "" if backoff_gap is None else f" backoff gap {backoff_gap} m"
            print(
                f"expert {expert_from or 'HEAD'}{gap} sigma={sigma}: success {ok}/{n}, mean steps {np.mean(steps):.1f}, "
                f"lift steps {lifts}",
                flush=True,
            )
    finally:
        env.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["replan", "ensemble", "expert-noise", "trace"])
    ap.add_argument("--model", default=str(ROOT / "models" / "panda_tabletop"))
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--seed-start", type=int, default=2_000_000)
    ap.add_argument("--replan", type=int, default=4)
    ap.add_argument("--m", type=float, default=0.1, help="ensemble: weight decay per chunk age")
    ap.add_argument("--sigma", type=float, nargs="+", default=[0.0, 0.01, 0.02, 0.03])
    ap.add_argument(
        "--expert-from", default=None, help="expert-noise: git revision of wam_ros/sim/experts.py"
    )
    ap.add_argument(
        "--backoff-gap",
        type=float,
        default=None,
        help="expert-noise: approach point behind the cube face (m)",
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[], help="trace: scene seeds")
    a = ap.parse_args()
    if a.what == "expert-noise":
        expert_noise(a.sigma, a.episodes, a.expert_from, a.backoff_gap)
        return 0
    if a.what == "trace":
        trace(a.model, a.seeds, a.replan)
        return 0
    seeds = range(a.seed_start, a.seed_start + a.episodes)
    res = closed_loop(a.model, seeds, a.replan, a.m if a.what == "ensemble" else None)
    label = f"replan {a.replan}" if a.what == "replan" else f"ensemble m={a.m}"
    print(
        f"push, {label}, seeds {seeds.start}..{seeds.stop - 1}: success {sum(r[1] for r in res)}/{len(res)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
