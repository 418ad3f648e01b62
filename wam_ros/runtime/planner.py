"""Imagine before acting (issue 16): best-of-N planning with the imagining WAM, at control rate, without torch.

    backend = open_plan_backend("models/panda_tabletop")           # wam_ros.runtime.plan_backends (onnxruntime)
    planner = BestOfN(backend, PlannerConfig(candidates=16), limits=SafetyLimits.from_profile(profile), dt=0.1)
    runner = ChunkPolicy(policy, replan=4, instruction="push the cube onto the red pad", planner=planner)
    action = runner.select_action({"image": rgb, "joint_pos": q})   # each decision: propose, imagine, score, choose

One decision:
1. **Propose** (one network call, batch 1): the M chunks of the mixture action head and their probabilities, and the
   context tokens of the observation. Candidate 0 is always the most probable mode (what the policy alone would do);
   the other modes follow, and the rest of the N candidates are drawn from the modes by their probabilities with a
   smooth perturbation (a random per-joint offset that grows linearly along the chunk to `noise` rad at its end).
2. **Reject** every candidate that leaves the limits: a target outside the position limits (by more than
   TARGET_TOLERANCE; targets within it are clipped onto the limit, as the safety filter would), a step larger than
   the velocity limit allows, or an imagined end position outside the limits.
3. **Imagine and score** (one network call, batch N): the imagination of each chunk to the horizon and the progress
   critic on the imagined state: success probability, steps to go, distance to the goal.
4. **Choose** the best score (`ranking`, `choose`); another candidate replaces the policy's own chunk only when it
   scores at least `margin` higher (a trust region: the critic's small differences are mostly its own noise).
   `score`: "goal" = minus the imagined distance to the goal; "success" = probability of success; "progress" =
   success probability minus the normalised steps to go; "mix" = all three. `proximity` subtracts its value per rad
   of a candidate's distance from the policy's own chunk. A `chooser`
   replaces step 4 (closed-loop evaluation: a random pick, or an oracle that rolls each candidate out in a copy of the
   simulator); a chooser gets the candidates and the scores and returns an index.
If every candidate is rejected, the policy's own chunk is returned (the safety filter clips it downstream) and
`info["fallback"]` says so.

**When to leave the policy** (`trigger`). "always": every decision is a choice as above. "stall" (session 11): the
policy's own chunk is executed unless the robot is stalled, and a stalled decision takes the best-scored candidate
with no margin and no proximity (the policy's own chunk is what stalled). Stalled = the critic's estimate of the
*present* distance to the goal (the imagination at h = 0: one more row of the imagine call) has moved less than
`stall_span` over the last `stall_window` decisions, at least `stall_after` decisions into the episode. Push fails by
stalling: the cube stops short of the pad while the fingertip hovers beside it, and the policy's chunk repeats that
(docs/planning.md, "Leave the policy only when it stalls").

Core module: numpy only (the backend may be torch or onnxruntime); never imports rclpy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from wam_ros.runtime import preprocess
from wam_ros.runtime.chunk_policy import ChunkPolicy, Plan
from wam_ros.runtime.safety import SafetyLimits

SCORES = ("success", "progress", "goal", "mix")
TRIGGERS = ("always", "stall")
# How far (rad, or m for a prismatic joint) a candidate's target may lie outside a position limit and still count as
# inside it; the planner clips such targets onto the limit, as the safety filter would. The network's chunks touch the
# limits of joints that rest on them: the Panda's fingers, fully open or closed, come out 1e-5..3e-5 m past them.
# Without this, the planner rejected the policy's own chunk in 27 % of push decisions for that and executed another
# candidate instead (session 10: benchmarks/RESULTS.md).
TARGET_TOLERANCE = 1e-3

Chooser = Callable[[np.ndarray, dict[str, np.ndarray]], int]


@dataclass
class PlannerConfig:
    """candidates: N chunks per decision (>= 1; 1 = the policy alone). noise: rad at the chunk's end of the
    perturbed candidates' offsets. score: how the critic's outputs rank candidates (SCORES). margin: how much higher
    another candidate must score to replace the policy's own (candidate 0). horizon: imagination
    horizon in actions (None: the whole chunk). The defaults (score "goal", margin 0.05, proximity 2) were chosen in
    session 10 on the validation seeds and on 1,138 push decisions with every candidate rolled out in the simulator
    (benchmarks/planner_choice.py, docs/planning.md "Choosing the defaults"); "success" with no margin, the default
    before, picked a chunk ending > 5 mm farther from the goal than the policy's own in 42 % of them.
    proximity: subtracted from each candidate's score per rad of its root-mean-square distance from the policy's own
    chunk (`deviation`): the farther from what the policy proposes, the less the critic's ranking is trusted.
    seed: the perturbations' generator. want_frame: also imagine the
    chosen chunk's next frame (the surprise monitor and wam/predicted_image compare the camera with it; the policy's
    own next frame where the export has no frame graph), one extra call per decision.
    trigger: "always" (every decision chooses) or "stall" (the policy's own chunk unless stalled; module docstring).
    stall_span (m), stall_window, stall_after (decisions): the stall test of trigger "stall"; the defaults were
    chosen at replan 4 (a decision every 0.4 s at 10 Hz) on push scenes of seeds 6,000,000+ (benchmarks/RESULTS.md,
    "Session 11 — issue 16")."""

    candidates: int = 16
    noise: float = 0.05
    score: str = "goal"
    horizon: int | None = None
    seed: int = 0
    want_frame: bool = False
    margin: float = 0.05
    proximity: float = 2.0
    trigger: str = "stall"
    stall_span: float = 0.01
    stall_window: int = 2
    stall_after: int = 4

    def __post_init__(self) -> None:
        if not isinstance(self.candidates, int) or self.candidates < 1:
            raise ValueError(f"candidates must be an int >= 1, got {self.candidates!r}")
        if not (np.isfinite(self.noise) and self.noise >= 0):
            raise ValueError(f"noise must be a finite number >= 0 (rad), got {self.noise!r}")
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {self.score!r}")
        if not (np.isfinite(self.margin) and self.margin >= 0):
            raise ValueError(f"margin must be a finite number >= 0, got {self.margin!r}")
        if not (np.isfinite(self.proximity) and self.proximity >= 0):
            raise ValueError(f"proximity must be a finite number >= 0, got {self.proximity!r}")
        if self.horizon is not None and (not isinstance(self.horizon, int) or self.horizon < 1):
            raise ValueError(f"horizon must be None or an int >= 1, got {self.horizon!r}")
        if self.trigger not in TRIGGERS:
            raise ValueError(f"trigger must be one of {TRIGGERS}, got {self.trigger!r}")
        if not (np.isfinite(self.stall_span) and self.stall_span > 0):
            raise ValueError(f"stall_span must be a finite number > 0 (m), got {self.stall_span!r}")
        for name in ("stall_window", "stall_after"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1 (decisions), got {value!r}")
        if self.stall_after < self.stall_window:
            raise ValueError(
                f"stall_after ({self.stall_after}) must be >= stall_window ({self.stall_window}): the test needs "
                "stall_window + 1 estimates"
            )


def score_of(critic: np.ndarray, kind: str) -> np.ndarray:
    """Rank values (B,) (higher is better) from critic outputs (B, 3) (success logit, steps/50, goal/0.1 m)."""
    p = 1.0 / (1.0 + np.exp(-critic[:, 0].astype(np.float64)))
    steps, goal = critic[:, 1].astype(np.float64), critic[:, 2].astype(np.float64)
    if kind == "success":
        return p
    if kind == "progress":
        return p - 0.5 * steps
    if kind == "goal":
        return -goal
    return p - 0.5 * steps - 0.5 * goal


def choose(score: np.ndarray, ok: np.ndarray, margin: float) -> int:
    """The planner's pick: the best-scored feasible candidate, unless candidate 0 (the policy's own) is feasible and
    the best beats it by less than `margin` (a trust region: the critic's small differences are mostly its noise).
    Needs one feasible candidate."""
    best = int(np.argmax(np.where(ok, score, -np.inf)))
    if ok[0] and best != 0 and score[best] - score[0] < margin:
        return 0
    return best


def ranking(critic: np.ndarray, chunks: np.ndarray, cfg: PlannerConfig) -> np.ndarray:
    """(N,) the values the planner ranks candidates by: the critic's `cfg.score` minus `cfg.proximity` per rad of
    each chunk's rms distance from chunk 0."""
    score = score_of(critic, cfg.score)
    if cfg.proximity > 0:  # a trust region in action space: the critic is least sure far from the policy
        score = score - cfg.proximity * deviation(chunks)
    return score


def stalled(estimates: list[float], cfg: PlannerConfig) -> bool:
    """The stall test of trigger "stall" on this episode's present-distance estimates (m), oldest first, one per
    decision: at least `stall_after` decisions before this one, and the last `stall_window` + 1 estimates within
    `stall_span` of each other."""
    if len(estimates) <= cfg.stall_after:
        return False
    recent = estimates[-cfg.stall_window - 1 :]
    return max(recent) - min(recent) < cfg.stall_span


def deviation(chunks: np.ndarray) -> np.ndarray:
    """(N,) root-mean-square distance (rad) of each chunk (N, C, J) from chunk 0 (the policy's own)."""
    return np.sqrt(np.mean(np.sum((chunks - chunks[:1]) ** 2, axis=-1), axis=-1))


class BestOfN:
    """The planner: a callable `planner(runner, joint_pos) -> Plan` for ChunkPolicy (see the module docstring)."""

    def __init__(
        self,
        backend: Any,
        cfg: PlannerConfig | None = None,
        limits: SafetyLimits | None = None,
        dt: float | None = None,
        chooser: Chooser | None = None,
    ) -> None:
        self.backend = backend
        self.cfg = cfg or PlannerConfig()
        self.limits, self.dt = limits, dt
        if limits is not None and not (dt and dt > 0):
            raise ValueError("BestOfN with limits needs the control period dt > 0 (s)")
        self.chooser = chooser
        self.rng = np.random.default_rng(self.cfg.seed)
        # trigger "stall": the critic's present-distance estimate (m) at each decision of this episode; an episode
        # starts when the runner's frame count stops growing (ChunkPolicy.reset: a new episode, instruction or a gap)
        self.estimates: list[float] = []
        self._frames_seen = 0
        self._present = float("nan")  # the last estimate (nan: the critic gave none)

    def reset(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(self.cfg.seed if seed is None else seed)
        self.estimates = []
        self._frames_seen = 0

    # ---- the steps ----------------------------------------------------------------------------------------------
    def candidates(self, proposals: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, C, J) candidate chunks and (N,) the mode each came from; candidate 0 is the most probable mode."""
        M = len(proposals)
        order = np.argsort(-probs, kind="stable")
        n = self.cfg.candidates
        base = list(order[: min(n, M)])
        extra = self.rng.choice(M, size=max(0, n - M), p=probs / probs.sum()) if n > M else []
        modes = np.array(base + list(extra), dtype=np.int64)
        out = proposals[modes].astype(np.float64).copy()
        k = len(base)
        if n > k and self.cfg.noise > 0:
            C, J = out.shape[1:]
            offset = self.rng.normal(0.0, self.cfg.noise, (n - k, 1, J))
            offset[..., J - 1 :] = 0.0  # the gripper (last joint) is not perturbed
            ramp = (np.arange(1, C + 1) / C)[None, :, None]
            out[k:] += offset * ramp
        return out, modes

    def feasible(self, chunks: np.ndarray, q: np.ndarray, q_end: np.ndarray | None = None) -> np.ndarray:
        """(N,) bool: every target inside the position limits (+ TARGET_TOLERANCE), every step within
        velocity_limit * dt (+1 %), and the imagined end position (if given) inside the limits (+ the measurement
        tolerance)."""
        if self.limits is None:
            return np.ones(len(chunks), bool)
        lo, hi = self.limits.position_lower, self.limits.position_upper
        tol = TARGET_TOLERANCE
        ok = np.all((chunks >= lo - tol) & (chunks <= hi + tol), axis=(1, 2))
        path = np.concatenate([np.broadcast_to(q, (len(chunks), 1, len(q))), chunks], axis=1)
        step = np.abs(np.diff(path, axis=1))
        ok &= np.all(step <= self.limits.velocity_limit * self.dt * 1.01 + 1e-9, axis=(1, 2))
        if q_end is not None:
            tol = self.limits.measurement_tolerance + 1e-6
            ok &= np.all((q_end >= lo - tol) & (q_end <= hi + tol), axis=1)
        return ok

    def __call__(self, runner: ChunkPolicy, joint_pos: np.ndarray) -> Plan:
        if runner.frames_seen == 0:
            raise ValueError("no camera frame observed yet: call observe() before planning")
        q = np.asarray(joint_pos, dtype=np.float64)
        tokens = runner.policy.tokens(runner.instruction)
        q32 = q.astype(np.float32)[None]
        proposals, probs, context = self.backend.propose(runner.frames, q32, tokens)
        proposals, probs = np.asarray(proposals[0], np.float64), np.asarray(probs[0], np.float64)
        if not (np.all(np.isfinite(proposals)) and np.all(np.isfinite(probs))):
            raise ValueError("the model proposed non-finite chunks; nothing is commanded")
        raw, modes = self.candidates(proposals, probs)
        # targets a hair outside a limit go onto it (what the safety filter does downstream), so the imagination
        # scores what would be executed; a target beyond TARGET_TOLERANCE makes its candidate infeasible below
        chunks = (
            raw
            if self.limits is None
            else np.clip(raw, self.limits.position_lower, self.limits.position_upper)
        )
        n = len(chunks)
        h = self.backend.horizon_max if self.cfg.horizon is None else self.cfg.horizon
        # trigger "stall": one more row, the policy's own chunk at h=0 (the present state)
        present = self.cfg.trigger == "stall"
        rows = np.concatenate([chunks, chunks[:1]]) if present else chunks
        horizons = np.full(len(rows), h, dtype=np.int64)
        horizons[n:] = 0
        critic, q_end = self.backend.score(
            np.repeat(context, len(rows), 0),
            np.repeat(tokens, len(rows), 0),
            np.repeat(q32, len(rows), 0),
            rows.astype(np.float32),
            horizon=horizons,
        )
        critic, q_end = np.asarray(critic, np.float64), np.asarray(q_end, np.float64)
        stall = None
        if present:
            stall = self._stall_test(runner, critic[n])
            critic, q_end = critic[:n], q_end[:n]
        ok = self.feasible(raw, q, q_end) & np.all(np.isfinite(critic), axis=1)
        cfg = self.cfg
        if stall:  # the policy's own chunk is what stalled: rank by the critic alone
            cfg = replace(cfg, margin=0.0, proximity=0.0)
        score = ranking(critic, chunks, cfg)
        info: dict[str, Any] = {
            "candidates": chunks,
            "modes": modes,
            "probs": probs,
            "critic": critic,
            "score": score,
            "feasible": ok,
            "imagined_end": q_end,
            "fallback": False,
        }
        if stall is not None:
            info["stalled"] = np.asarray(stall)
            info["present_distance"] = np.asarray(self._present)
        if not ok.any():
            best = 0
            info["fallback"] = True
        elif stall is False:
            # not stalled: the policy's own chunk (a chooser, e.g. the oracle, is not asked either)
            best = 0 if ok[0] else choose(score, ok, cfg.margin)
        elif self.chooser is not None:
            masked = {k: v for k, v in info.items() if isinstance(v, np.ndarray)}
            best = int(self.chooser(np.where(ok[:, None, None], chunks, np.nan), masked))
            if not ok[best]:
                raise ValueError(f"the chooser picked candidate {best}, which leaves the limits")
        else:
            best = choose(score, ok, cfg.margin)
        info["chosen"] = best
        chunk = chunks[best]
        frame = None
        if self.cfg.want_frame:  # the chosen chunk's imagined next frame (what the surprise monitor checks)
            if getattr(self.backend, "has_frame_graph", False):
                f = self.backend.imagine_frame(
                    runner.frames, q32, tokens, chunk[None].astype(np.float32), np.ones(1, np.int64)
                )
                frame = preprocess.frame_to_image(np.asarray(f)[0])
            else:  # an export without the frame graph: the policy's own next frame
                _, frame = runner.run_model(q)
        return Plan(chunk=chunk.copy(), action=chunk.copy(), next_frame=frame, info=info)

    def _stall_test(self, runner: ChunkPolicy, present: np.ndarray) -> bool:
        """Record the critic's estimate of the present distance to the goal (`present`: its outputs (3,) on the
        imagined state after 0 actions) and apply `stalled`. A runner whose frame count did not grow since the last
        decision was reset (a new episode, instruction or a gap in the inputs): its estimates start afresh."""
        if runner.frames_seen <= self._frames_seen:  # every decision of an episode comes after a new frame
            self.estimates = []
        self._frames_seen = runner.frames_seen
        scale = float(getattr(self.backend, "planner", {}).get("dist_scale", 0.1))
        value = self._present = float(present[2]) * scale
        if not np.isfinite(value):  # no estimate: the test cannot say stalled
            self.estimates = []
            return False
        self.estimates.append(value)
        return stalled(self.estimates, self.cfg)
