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

With `rank_check` (`wam eval --rank-check`), every decision of `wam_plan` also rolls each feasible candidate out in a
copy of the simulator (the oracle's one-chunk look-ahead, `env.try_chunks`) and `ranking_summary()` compares the critic's ranking with the true one: how often its top candidate is a true best
against a random pick's chance, the goal distance its top candidate leaves against a random candidate's and the best,
and the rank correlation. Measured at every decision, and apart at the stalled ones (where the planner chooses).
The roll-outs perturb the simulator in its last digits (TabletopEnv.try_chunks), so the episodes of a rank-checked
`wam_plan` row drift from those of a plain run: read the planner's success rate from a run without the check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from wam_ros.robot import RobotProfile
from wam_ros.runtime.chunk_policy import ChunkPolicy
from wam_ros.runtime.planner import BestOfN, PlannerConfig, score_of
from wam_ros.runtime.safety import SafetyLimits


def true_values(results: list[dict[str, Any]]) -> np.ndarray:
    """The oracle's value of each rolled-out chunk (env.try_chunks): reached the goal (earlier is better) above any
    miss, and a miss by minus its true distance to the goal (m) at the chunk's end."""
    return np.array([(10.0 - r["steps"] * 0.01) if r["success"] else -r["goal_distance"] for r in results])


def oracle_chooser(env: Any) -> Callable[[np.ndarray, dict], int]:
    """Pick the candidate whose true roll-out (env.try_chunks) ends best; infeasible candidates arrive as NaN."""

    def choose(chunks: np.ndarray, info: dict) -> int:
        ok = np.flatnonzero(np.all(np.isfinite(chunks), axis=(1, 2)))
        value = true_values(env.try_chunks(chunks[ok]))
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


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 of `x`, ties sharing their mean rank (for Spearman's correlation)."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=float)
    for v in np.unique(x):
        tie = x == v
        ranks[tie] = ranks[tie].mean()
    return ranks


def rank_row(
    score: np.ndarray, results: list[dict[str, Any]], stalled: bool, own: bool = True
) -> dict[str, Any]:
    """One decision of the rank check: `score` (n,) the critic's ranking of the feasible candidates (higher is better),
    `results` their true roll-outs (env.try_chunks); `own`: the first of them is the policy's own chunk."""
    v = true_values(results)
    dist = np.array([r["goal_distance"] for r in results], dtype=float)
    succ = np.array([bool(r["success"]) for r in results], dtype=float)
    top = int(np.argmax(score))
    best = v >= v.max() - 1e-9
    row = {
        "stalled": bool(stalled),
        "n": len(v),
        "top_is_best": bool(best[top]),
        "random_is_best": float(best.mean()),  # a random candidate's chance of being a true best
        "dist_top": float(dist[top]),
        "dist_mean": float(dist.mean()),
        "dist_best": float(dist.min()),
        "dist_own": float(dist[0]) if own else None,
        "success_top": float(succ[top]),
        "success_mean": float(succ.mean()),
        "success_any": float(succ.max()),
        "spearman": None,
    }
    if np.ptp(v) > 1e-9 and np.ptp(score) > 0:
        rs, rv = _ranks(np.asarray(score, float)), _ranks(v)
        row["spearman"] = float(np.corrcoef(rs, rv)[0, 1])
    return row


def ranking_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The rank check's figures over every decision (`all`) and over the stalled ones (`stalled`): decisions,
    `top1_rate` (the critic's top candidate is a true best) beside `random_top1_rate` (a random pick's chance), the
    goal distances at the chunk's end in mm (`dist_*_mm`: the critic's top, a random candidate on average, the
    true best, the policy's own), success within the chunk (`success_*`) and the mean Spearman correlation between
    the critic's score and the true value (`spearman`, over the decisions whose candidates differ)."""

    def summarise(rs: list[dict[str, Any]]) -> dict[str, Any]:
        if not rs:
            return {"decisions": 0}
        m = lambda k: float(np.mean([r[k] for r in rs]))  # noqa: E731
        sp = [r["spearman"] for r in rs if r["spearman"] is not None]
        own = [r["dist_own"] for r in rs if r["dist_own"] is not None]
        return {
            "decisions": len(rs),
            "candidates_mean": m("n"),
            "top1_rate": m("top_is_best"),
            "random_top1_rate": m("random_is_best"),
            "dist_top_mm": 1000 * m("dist_top"),
            "dist_random_mm": 1000 * m("dist_mean"),
            "dist_best_mm": 1000 * m("dist_best"),
            "dist_own_mm": 1000 * float(np.mean(own)) if own else None,
            "success_top": m("success_top"),
            "success_random": m("success_mean"),
            "success_best": m("success_any"),
            "spearman": float(np.mean(sp)) if sp else None,
            "spearman_decisions": len(sp),
        }

    return {"all": summarise(rows), "stalled": summarise([r for r in rows if r["stalled"]])}


class _RankCheck:
    """Wraps the planner of one episode: after each decision, every feasible candidate is rolled out from the current
    state (env.try_chunks, which restores the state, though not every bit of the solver's: see the module doc)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def wrap(self, plan: Callable, env: Any, score_kind: str) -> Callable:
        def checked(runner: ChunkPolicy, q: np.ndarray):  # noqa: ANN202 - a Plan
            out = plan(runner, q)
            info = out.info
            ok = np.flatnonzero(info["feasible"])
            if len(ok) >= 2 and not info["fallback"]:
                score = score_of(info["critic"][ok], score_kind)
                results = env.try_chunks(info["candidates"][ok])
                stalled = bool(info.get("stalled", True))  # trigger "always": every decision chooses
                self.rows.append(rank_row(score, results, stalled, own=bool(ok[0] == 0)))
            return out

        return checked


class _Recorder:
    """Keeps each decision's predicted success probability of the chosen candidate (for calibration), and counts
    the decisions, the switches away from the policy's own chunk and (trigger "stall") the stalled decisions."""

    def __init__(self) -> None:
        self.episodes: list[list[float]] = []
        self.counts: list[dict[str, int]] = []
        self.ranks = _RankCheck()

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
    rank_check: bool = False,
) -> tuple[dict[str, Callable], _Recorder]:
    """Closed-loop policy factories (wam_ros.train.closed_loop) for the planner and, with `baselines`, its oracle
    and random-pick comparisons; and the recorder of the critic's predictions (for `calibration`; with `rank_check`
    its `ranks.rows` hold the rank check of every planner decision, for `ranking_summary`)."""
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
            if record and rank_check:
                plan = recorder.ranks.wrap(plan, env, cfg.score)
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
