"""Closed-loop evaluation of the imagining planner (issue 16), side by side on the same scenes as the policy alone.

    factories = planner_factories(policy, backend, PlannerConfig(candidates=16), replan=4, baselines=True)
    res = closed_loop({"wam": wam_factory(policy, 4), **factories}, "push", seeds)

- `wam_plan`: best-of-N chosen by the progress critic on the imagined futures (the planner as it runs on a robot);
- `wam_plan_oracle`: the same N candidates, chosen by rolling each one out in a copy of the simulator (PyBullet
  saveState/restoreState) and reading the true outcome at the end of the chunk: reached the goal (earlier is better),
  else the true distance to the goal; ties keep the policy's own chunk (candidate 0). The upper bound of choosing
  among these candidates with a one-chunk look-ahead;
- `wam_plan_random`: one of the feasible candidates at random (what choosing buys over proposing).

Every decision of `wam_plan` records the chosen candidate's predicted success probability, so `calibration()` can
score the critic against the episodes' outcomes (Brier score, reliability bins).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from wam_ros.robot import RobotProfile
from wam_ros.runtime.chunk_policy import ChunkPolicy
from wam_ros.runtime.planner import BestOfN, PlannerConfig
from wam_ros.runtime.safety import SafetyLimits


def oracle_chooser(env: Any) -> Callable[[np.ndarray, dict], int]:
    """Pick the candidate whose true roll-out (env.try_chunks) ends best; infeasible candidates arrive as NaN."""

    def choose(chunks: np.ndarray, info: dict) -> int:
        ok = np.flatnonzero(np.all(np.isfinite(chunks), axis=(1, 2)))
        results = env.try_chunks(chunks[ok])
        value = np.array(
            [(10.0 - r["steps"] * 0.01) if r["success"] else -r["goal_distance"] for r in results]
        )
        best = np.flatnonzero(
            value >= value.max() - 1e-6
        )  # ties: the lowest index (candidate 0: the policy's)
        return int(ok[best[0]])

    return choose


def random_chooser(rng: np.random.Generator) -> Callable[[np.ndarray, dict], int]:
    def choose(chunks: np.ndarray, info: dict) -> int:
        ok = np.flatnonzero(np.all(np.isfinite(chunks), axis=(1, 2)))
        return int(rng.choice(ok))

    return choose


class _Recorder:
    """Keeps each decision's predicted success probability of the chosen candidate (for calibration), and counts
    the decisions, the switches away from the policy's own chunk and (trigger "stall") the stalled decisions."""

    def __init__(self) -> None:
        self.episodes: list[list[float]] = []
        self.counts: list[dict[str, int]] = []

    def wrap(self, planner: BestOfN) -> Callable:
        probs: list[float] = []
        counts = {"decisions": 0, "switched": 0, "stalled": 0}
        self.episodes.append(probs)
        self.counts.append(counts)

        def plan(runner: ChunkPolicy, q: np.ndarray):  # noqa: ANN202 - a Plan
            out = planner(runner, q)
            c = out.info["critic"][out.info["chosen"]]
            probs.append(float(1.0 / (1.0 + np.exp(-c[0]))))
            counts["decisions"] += 1
            counts["switched"] += int(out.info["chosen"] != 0)
            counts["stalled"] += int(bool(out.info.get("stalled", False)))
            return out

        return plan

    def totals(self, since: int = 0) -> dict[str, int]:
        """Decisions, switches and stalled decisions summed over the episodes from index `since` on."""
        return {k: sum(c[k] for c in self.counts[since:]) for k in ("decisions", "switched", "stalled")}


def planner_factories(
    policy: Any,
    backend: Any,
    cfg: PlannerConfig,
    replan: int,
    baselines: bool = True,
    robot: str = "panda",
    seed: int = 0,
) -> tuple[dict[str, Callable], _Recorder]:
    """Closed-loop policy factories (wam_ros.train.closed_loop) for the planner and, with `baselines`, its oracle
    and random-pick comparisons; and the recorder of the critic's predictions (for `calibration`)."""
    limits = SafetyLimits.from_profile(RobotProfile.load(robot), list(policy.spec.joint_names))
    dt = 1.0 / float(policy.spec.control_hz)
    recorder = _Recorder()
    rng = np.random.default_rng(seed)
    episode = [0]

    def make(chooser_of: Callable[[Any], Any] | None, record: bool) -> Callable:
        def factory(env: Any) -> ChunkPolicy:
            episode[0] += 1
            planner = BestOfN(
                backend, cfg, limits=limits, dt=dt, chooser=chooser_of(env) if chooser_of else None
            )
            planner.reset(seed * 100_003 + episode[0])
            plan = recorder.wrap(planner) if record else planner
            return ChunkPolicy(policy, replan=replan, instruction=env.instruction, planner=plan)

        return factory

    out = {"wam_plan": make(None, True)}
    if baselines:
        out["wam_plan_oracle"] = make(oracle_chooser, False)
        out["wam_plan_random"] = make(lambda env: random_chooser(rng), False)
    return out, recorder


def calibration(probs: list[list[float]], outcomes: list[bool], bins: int = 10) -> dict[str, Any]:
    """Brier score and reliability bins of per-decision success probabilities against each episode's outcome."""
    p = np.array([x for ps in probs for x in ps], np.float64)
    y = np.array([float(o) for ps, o in zip(probs, outcomes, strict=True) for _ in ps], np.float64)
    if not len(p):
        return {"decisions": 0}
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
    table = []
    for b in range(bins):
        m = which == b
        if m.any():
            table.append(
                {
                    "lo": edges[b],
                    "hi": edges[b + 1],
                    "n": int(m.sum()),
                    "mean_p": p[m].mean(),
                    "rate": y[m].mean(),
                }
            )
    base = y.mean()
    return {
        "decisions": int(len(p)),
        "brier": float(np.mean((p - y) ** 2)),
        "brier_constant": float(np.mean((base - y) ** 2)),  # always predicting the success rate
        "ece": float(sum(t["n"] * abs(t["mean_p"] - t["rate"]) for t in table) / len(p)),
        "bins": table,
    }


def plot_reliability(cal: dict[str, dict[str, Any]], path: Any) -> None:
    """Reliability diagram (predicted vs observed success) per task, beside the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    for task, c in cal.items():
        if not c.get("bins"):
            continue
        x = [b["mean_p"] for b in c["bins"]]
        y = [b["rate"] for b in c["bins"]]
        ax.plot(x, y, "o-", label=f"{task} (Brier {c['brier']:.3f}, n={c['decisions']})")
    ax.set_xlabel("critic's success probability (chosen candidate)")
    ax.set_ylabel("episodes that succeeded")
    ax.set_xlim(0, 1), ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("progress critic reliability (closed loop)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
