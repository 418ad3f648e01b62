"""How well does the planner choose? Every candidate of every decision rolled out in the simulator, then the choice
rules compared on the same decisions (issue 16).

    .venv/bin/python benchmarks/planner_choice.py --model models/panda_tabletop --task push --episodes 60 \\
        --seed-start 5000000 --replan 2 --out runs/choice_a.npz        # logs the decisions, then prints the table
    .venv/bin/python benchmarks/planner_choice.py --from runs/choice_a.npz runs/choice_b.npz     # the table only

A closed-loop success rate over 40-50 scenes moves by +-3 episodes from one planner setting to the next, so it cannot
tell two ranking rules apart. Here the learner drives the tabletop with the planner's own candidates (N, the
planner's perturbation); at each decision every candidate is rolled out from the current state in a copy of the
simulator (`TabletopEnv.try_chunks`) and its true distance to the goal at the chunk's end is logged beside the
critic's outputs, the candidate's mode and its feasibility. The episode follows the oracle's pick or the policy's own
chunk, half and half (states a planner visits). Each rule is then applied to the same decisions:

- `gain`: mean true distance of the policy's own chunk (candidate 0) minus the chosen one's (mm; higher is better);
- `better` / `worse`: share of decisions where the choice ends > 5 mm closer / farther than the policy's chunk;
- `reached`: share of chosen chunks that reach the goal; `regret`: mean distance to the best candidate's outcome;
- `switch`: share of decisions where the rule does not keep candidate 0.

Rules: `cand S mM`: the best candidate by score S (wam_ros.runtime.planner.score_of) unless it beats candidate 0 by
less than M; `mode S mM`: the mode whose feasible candidates score best on average (its unperturbed chunk); `oracle`:
the true best; `prox L`: the score minus L per rad of the candidate's rms distance from the policy's chunk (the
planner's `proximity`); `at h=H`: the critic on the state imagined after H actions (logged with `--horizons`). Reach
a goal = distance 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def log_decisions(a: argparse.Namespace) -> dict[str, np.ndarray]:
    import torch

    from wam_ros.robot import RobotProfile
    from wam_ros.runtime import load_policy
    from wam_ros.runtime.chunk_policy import ChunkPolicy
    from wam_ros.runtime.plan_backends import open_plan_backend
    from wam_ros.runtime.planner import BestOfN, PlannerConfig
    from wam_ros.runtime.safety import SafetyLimits
    from wam_ros.sim.tabletop import TabletopEnv

    torch.set_num_threads(1)
    policy = load_policy(a.model, backend="torch", threads=1)
    backend = _AlsoAt(open_plan_backend(a.model, backend="torch", threads=1), a.horizons)
    robot = policy.config["robot"]
    limits = SafetyLimits.from_profile(RobotProfile.load(robot), list(policy.spec.joint_names))
    env = TabletopEnv(task=a.task, image_size=policy.spec.image_size[0], robot=robot)
    rng = np.random.default_rng(a.seed_start)
    keys = ("episode", "step", "now", "critic", "modes", "ok", "goal", "reached", "candidates")
    rec: dict[str, list] = {k: [] for k in keys + tuple(f"critic_h{h}" for h in a.horizons)}
    success = []
    try:
        for e in range(a.episodes):
            seed = a.seed_start + e
            obs, _ = env.reset(seed=seed)

            def choose(chunks: np.ndarray, info: dict, e: int = e) -> int:
                ok = info["feasible"]
                res = env.try_chunks(info["candidates"])
                goal = np.array([r["goal_distance"] for r in res])
                reached = np.array([r["success"] for r in res])
                for k, v in (
                    ("episode", e),
                    ("step", env.steps),
                    ("now", env.goal_distance()),
                    ("critic", info["critic"]),
                    ("modes", info["modes"]),
                    ("ok", ok),
                    ("goal", goal),
                    ("reached", reached),
                    ("candidates", info["candidates"].astype(np.float32)),
                    *((f"critic_h{h}", c) for h, c in backend.extra.items()),
                ):
                    rec[k].append(v)
                if rng.random() < a.follow_oracle:
                    value = np.where(ok, np.where(reached, 10.0, -goal), -np.inf)
                    return int(np.flatnonzero(value >= value.max() - 1e-6)[0])
                return 0 if ok[0] else int(np.flatnonzero(ok)[0])

            cfg = PlannerConfig(candidates=a.candidates, noise=a.noise, seed=seed, trigger="always")
            planner = BestOfN(backend, cfg, limits=limits, dt=1.0 / policy.spec.control_hz, chooser=choose)
            runner = ChunkPolicy(policy, replan=a.replan, instruction=env.instruction, planner=planner)
            terminated = truncated = False
            while not (terminated or truncated):
                obs, _, terminated, truncated, _ = env.step(runner.select_action(obs))
            success.append(bool(terminated))
            print(f"seed {seed}: success {terminated}, {env.steps} steps", flush=True)
    finally:
        env.close()
    out = {k: np.array(v) for k, v in rec.items()} | {"success": np.array(success)}
    np.savez_compressed(a.out, **out)
    return out


class _AlsoAt:
    """A plan backend that also scores every batch at the extra horizons (kept in `extra`, for the log)."""

    def __init__(self, backend: object, horizons: list[int]) -> None:
        self.backend, self.horizons, self.extra = backend, horizons, {}

    def __getattr__(self, name: str) -> object:
        return getattr(self.backend, name)

    def score(self, *args: np.ndarray, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
        out = self.backend.score(*args, **kwargs)
        self.extra = {h: np.asarray(self.backend.score(*args, horizon=h)[0]) for h in self.horizons}
        return out


def pick_candidate(score: np.ndarray, ok: np.ndarray, margin: float) -> np.ndarray:
    s = np.where(ok, score, -np.inf)
    best = np.argmax(s, 1)
    keep = ok[:, 0] & (best != 0) & (s[np.arange(len(s)), best] - s[:, 0] < margin)
    return np.where(keep, 0, best)


def pick_mode(score: np.ndarray, ok: np.ndarray, modes: np.ndarray, margin: float) -> np.ndarray:
    out = np.zeros(len(score), np.int64)
    for i in range(len(score)):
        means = {m: score[i][ok[i] & (modes[i] == m)].mean() for m in np.unique(modes[i][ok[i]])}
        top = max(means, key=lambda m: means[m])
        own = modes[i, 0]
        if own in means and top != own and means[top] - means[own] < margin:
            top = own
        idx = np.flatnonzero(modes[i] == top)
        sub = idx[ok[i, idx]]
        out[i] = idx[0] if ok[i, idx[0]] else sub[np.argmax(score[i, sub])]
    return out


def table(logs: list[dict[str, np.ndarray]]) -> list[dict[str, float | str]]:
    from wam_ros.runtime.planner import SCORES, deviation, score_of

    cat = {k: np.concatenate([d[k] for d in logs]) for k in ("critic", "modes", "ok", "goal", "reached")}
    ok, modes = cat["ok"].astype(bool), cat["modes"]
    true = np.where(cat["reached"], 0.0, cat["goal"])
    n = len(true)
    best = np.where(ok, true, np.inf).min(1)
    rows = []

    def row(name: str, pick: np.ndarray) -> None:
        t = true[np.arange(n), pick]
        d = (t - true[:, 0])[ok[:, 0]] * 1e3
        rows.append(
            {
                "rule": name,
                "gain_mm": float(-d.mean()),
                "better": float(np.mean(d < -5)),
                "worse": float(np.mean(d > 5)),
                "reached": float(cat["reached"][np.arange(n), pick].mean()),
                "regret_mm": float(1e3 * (t - best).mean()),
                "switch": float(np.mean(pick != 0)),
            }
        )

    row("policy (candidate 0)", np.zeros(n, np.int64))
    row("oracle", np.argmin(np.where(ok, true, np.inf), 1))
    for s in SCORES:
        score = np.stack([score_of(c, s) for c in cat["critic"]])
        for m in (0.0, 0.05, 0.1):
            row(f"cand {s} m{m}", pick_candidate(score, ok, m))
        for m in (0.0, 0.05):
            row(f"mode {s} m{m}", pick_mode(score, ok, modes, m))
    if all("candidates" in d for d in logs):  # the proximity penalty needs the chunks
        dev = np.stack([deviation(c) for d in logs for c in d["candidates"]])
        score = np.stack([score_of(c, "goal") for c in cat["critic"]])
        for lam in (1.0, 2.0, 4.0):
            row(f"cand goal m0.05 prox{lam:g}", pick_candidate(score - lam * dev, ok, 0.05))
    for h in sorted(int(k[8:]) for k in logs[0] if k.startswith("critic_h")):
        if all(f"critic_h{h}" in d for d in logs):
            score = np.stack([score_of(c, "goal") for d in logs for c in d[f"critic_h{h}"]])
            row(f"cand goal m0.05 at h={h}", pick_candidate(score, ok, 0.05))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from", dest="logs", nargs="*", default=[], help="decision logs (.npz) to tabulate")
    ap.add_argument("--model", default="models/panda_tabletop")
    ap.add_argument("--task", default="push")
    ap.add_argument("--episodes", type=int, default=60)
    ap.add_argument("--seed-start", type=int, default=5_000_000, help="keep apart from eval seeds")
    ap.add_argument("--replan", type=int, default=2)
    ap.add_argument("--candidates", type=int, default=16)
    ap.add_argument("--noise", type=float, default=0.05)
    ap.add_argument(
        "--horizons", type=int, nargs="*", default=[], help="also log the critic at these horizons"
    )
    ap.add_argument(
        "--follow-oracle",
        type=float,
        default=0.5,
        help="share of decisions that execute the oracle's pick (else the policy's own chunk); 0: the policy drives",
    )
    ap.add_argument("--out", default="runs/planner_choice.npz")
    a = ap.parse_args()
    if a.logs:
        logs = [dict(np.load(f)) for f in a.logs]
    else:
        logs = [log_decisions(a)]
    n = sum(len(d["goal"]) for d in logs)
    eps = sum(len(d["success"]) for d in logs)
    succ = sum(int(d["success"].sum()) for d in logs)
    print(f"{n} decisions of {eps} episodes ({succ} succeeded)")
    print(
        f"{'rule':24s} {'gain mm':>8s} {'better':>7s} {'worse':>7s} {'reached':>8s} {'regret mm':>10s} {'switch':>7s}"
    )
    for r in table(logs):
        print(
            f"{r['rule']:24s} {r['gain_mm']:8.2f} {r['better']:7.3f} {r['worse']:7.3f} {r['reached']:8.3f} "
            f"{r['regret_mm']:10.1f} {r['switch']:7.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
