"""Counterfactual critic data (issue 16): what each of the planner's candidate chunks really does, from the simulator.

    wam critic collect --model runs/wam6/model.pt --task push --episodes 150 --seed-start 3000000 --out data/critic_push
    wam critic finetune --model runs/wam6/model.pt --data data/critic_push data/critic_reach --out runs/wam6_critic

The critic trained on demonstrations learns from the chunks that were executed: the expert's, its noisy (DART)
versions and the learner's (DAgger). The planner asks it about chunks nobody executed, and there it ranks poorly
(see docs/planning.md). Here the learner drives the tabletop; at every decision the planner's own N candidates are
rolled out in a copy of the simulator (TabletopEnv.try_chunks) and each one's true outcome is recorded: the distance
to the goal at the chunk's end and whether the goal was reached. The episode then follows the oracle's pick or the
policy's own chunk (half and half), so the states are the ones a planner visits.

`finetune` computes each candidate's imagined state once (the network is frozen) and refits only the critic head:
its goal-distance output learns the counterfactual outcome, while its success and steps-to-go outputs are held to
what they were (distillation), so their meaning does not change. Seconds of CPU.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from wam_ros.data.windows import WindowArrays
from wam_ros.data.world_windows import WorldWindows
from wam_ros.fileio import atomic_path
from wam_ros.model import WorldActionModel, load_checkpoint, save_checkpoint
from wam_ros.model.batch import EXECUTED, FRAMES, HORIZON, JOINT_POS, TOKENS
from wam_ros.model.losses import imagined_errors
from wam_ros.model.modeling import DIST_SCALE
from wam_ros.robot import RobotProfile
from wam_ros.runtime.chunk_policy import ChunkPolicy
from wam_ros.runtime.planner import BestOfN, PlannerConfig
from wam_ros.runtime.safety import SafetyLimits
from wam_ros.runtime.text_encoder import attach_text_encoder
from wam_ros.train.batches import load_episodes
from wam_ros.train.evaluate import imagination_metrics
from wam_ros.train.train import split_episodes

log = logging.getLogger("wam.critic")


@dataclass
class CriticDataConfig:
    model: str
    task: str = "push"
    episodes: int = 100
    seed_start: int = 3_000_000
    candidates: int = 16
    noise: float = 0.05
    replan: int = 4
    follow_oracle: float = 0.5
    threads: int = 1
    out: str = "data/critic"

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.candidates < 2 or self.replan < 1:
            raise ValueError("need episodes >= 1, candidates >= 2, replan >= 1")
        if not 0.0 <= self.follow_oracle <= 1.0:
            raise ValueError(f"follow_oracle must be in [0, 1], got {self.follow_oracle}")


class _Labeller:
    """The planner's chooser during collection: labels every candidate by rolling it out (env.try_chunks), records
    the decision, and follows the oracle's pick with probability `follow` (else the policy's own chunk)."""

    def __init__(self, env: Any, rng: np.random.Generator, follow: float) -> None:
        self.env, self.rng, self.follow = env, rng, follow
        self.runner: ChunkPolicy | None = None
        self.q: np.ndarray | None = None
        self.records: dict[str, list] = {
            k: [] for k in ("frames", "joint_pos", "candidates", "goal", "reached", "ok")
        }

    def wrap(self, planner: BestOfN):  # noqa: ANN201 - a planner callable
        def plan(runner: ChunkPolicy, q: np.ndarray):  # noqa: ANN202 - a Plan
            self.q = np.asarray(q, np.float32)
            return planner(runner, q)

        return plan

    def choose(self, chunks: np.ndarray, info: dict) -> int:
        ok = np.all(np.isfinite(chunks), axis=(1, 2))
        res = self.env.try_chunks(info["candidates"])
        goal = np.array([r["goal_distance"] for r in res], np.float32)
        reached = np.array([r["success"] for r in res], bool)
        r = self.records
        r["frames"].append(self.runner.frames[0].copy())
        r["joint_pos"].append(self.q)
        r["candidates"].append(info["candidates"].astype(np.float32))
        r["goal"].append(goal)
        r["reached"].append(reached)
        r["ok"].append(ok)
        value = np.where(ok, np.where(reached, 10.0, -goal), -np.inf)
        if self.rng.random() < self.follow:
            return int(np.flatnonzero(value >= value.max() - 1e-6)[0])
        return 0 if ok[0] else int(np.flatnonzero(ok)[0])


def collect(cfg: CriticDataConfig) -> Path:
    """Roll the learner out with the planner's candidates labelled by the simulator; writes one .npz per episode."""
    from wam_ros.runtime import load_policy
    from wam_ros.runtime.plan_backends import open_plan_backend
    from wam_ros.sim.tabletop import TabletopEnv

    torch.set_num_threads(cfg.threads)
    policy = load_policy(cfg.model, backend="torch", threads=cfg.threads)
    backend = open_plan_backend(cfg.model, backend="torch", threads=cfg.threads)
    limits = SafetyLimits.from_profile(
        RobotProfile.load(policy.config["robot"]), list(policy.spec.joint_names)
    )
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    env = TabletopEnv(task=cfg.task, image_size=policy.spec.image_size[0], robot=policy.config["robot"])
    rng = np.random.default_rng(cfg.seed_start)
    try:
        for e in range(cfg.episodes):
            seed = cfg.seed_start + e
            path = out / f"critic_{seed}.npz"
            if path.exists():
                continue
            obs, _ = env.reset(seed=seed)
            labeller = _Labeller(env, rng, cfg.follow_oracle)
            planner = BestOfN(
                backend,
                PlannerConfig(candidates=cfg.candidates, noise=cfg.noise, seed=seed, trigger="always"),
                limits=limits,
                dt=1.0 / float(policy.spec.control_hz),
                chooser=labeller.choose,
            )
            runner = ChunkPolicy(
                policy, replan=cfg.replan, instruction=env.instruction, planner=labeller.wrap(planner)
            )
            labeller.runner = runner
            terminated = truncated = False
            while not (terminated or truncated):
                obs, _, terminated, truncated, _ = env.step(runner.select_action(obs))
            records = labeller.records
            if not records["frames"]:
                continue
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.savez_compressed(
                    f,
                    **{k: np.stack(v) for k, v in records.items()},
                    instruction=np.array(env.instruction),
                    task=np.array(cfg.task),
                    success=np.array(bool(terminated)),
                )
            log.info("seed %d: %d decisions, success %s", seed, len(records["frames"]), terminated)
    finally:
        env.close()
    (out / "critic_data.json").write_text(json.dumps(vars(cfg), indent=2))
    return out


@torch.no_grad()
def imagined_features(model: WorldActionModel, files: list[Path]) -> dict[str, torch.Tensor]:
    """Per candidate: the critic head's input (the imagined state at h=N), its current outputs, and the labels."""
    feats, old, goal, reached, ok, per = [], [], [], [], [], set()
    P = model.grid**2
    for path in files:
        with np.load(path) as z:
            frames = torch.from_numpy(z["frames"])  # (D, K, 3, H, W)
            q = torch.from_numpy(z["joint_pos"])  # (D, J)
            chunks = torch.from_numpy(z["candidates"])  # (D, N, C, J)
            tokens = torch.from_numpy(model.tokenizer.encode(str(z["instruction"]))[None])
            D, Nc = chunks.shape[:2]
            per.add(int(Nc))
            x, _, _ = model._trunk(frames, q, tokens.expand(D, *tokens.shape[1:]))
            xr = x.repeat_interleave(Nc, 0)
            qr = q.repeat_interleave(Nc, 0)
            flat = chunks.reshape(D * Nc, *chunks.shape[2:])
            h = torch.full((D * Nc,), model.cfg.chunk, dtype=torch.int64)
            zt = model._imagine_tokens(
                xr, tokens.expand(D * Nc, *tokens.shape[1:]), model.normalize_delta(flat, qr), h
            )
            f = torch.cat([zt[:, :P].mean(1), zt[:, P]], dim=-1)
            feats.append(f)
            old.append(model.critic_head(f))
            goal.append(torch.from_numpy(z["goal"]).reshape(-1))
            reached.append(torch.from_numpy(z["reached"]).reshape(-1))
            ok.append(torch.from_numpy(z["ok"]).reshape(-1))
    return {
        "features": torch.cat(feats),
        "old": torch.cat(old),
        "goal": torch.cat(goal),
        "reached": torch.cat(reached),
        "ok": torch.cat(ok),
        "candidates": _one(per),
    }


def _one(per: set[int]) -> int:
    if len(per) != 1:
        raise ValueError(f"critic data files disagree on the candidates per decision: {sorted(per)}")
    return per.pop()


def finetune(
    model_path: str,
    data: list[str],
    out: str,
    steps: int = 3000,
    seed: int = 0,
    val_frac: float = 0.1,
    end_to_end: bool = False,
    rank_weight: float = 1.0,
    anchor: list[str] | None = None,
    anchor_weight: float = 1.0,
    anchor_batch: int = 16,
    lr: float = 3e-4,
    threads: int = 0,
) -> dict[str, Any]:
    """Refit the critic head on counterfactual outcomes (module docstring); writes <out>/model.pt and returns the
    held-out ranking figures before and after (by episode file).

    end_to_end: train the imagination itself with the critic (IMAGINATION_MODULES; the trunk, the proposals and the
    frame decoder are frozen) on a per-decision ranking loss + the distance regression, so the imagined states of a
    decision's candidates come apart where their outcomes do. `steps` are then batches of 24 decisions.

    anchor (with end_to_end): the model's own demonstration folders. Every step also takes `anchor_batch` of their
    windows and adds the errors of the frames and joints imagined after the executed actions (as wam train
    measures them), relative to their values before finetuning and weighted `anchor_weight`, so the imagination
    keeps its pictures while it learns to tell candidates apart. The episodes wam train held out (the
    same split: val 5 %, seed 0) are not trained on here; the report gives the imagination's PSNR/SSIM on them
    before and after, beside copy-last-frame.

    threads: torch threads while it runs (0 keeps the process's setting)."""
    kept = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        return _finetune(
            model_path,
            data,
            out,
            steps,
            seed,
            val_frac,
            end_to_end,
            rank_weight,
            anchor,
            anchor_weight,
            anchor_batch,
            lr,
        )
    finally:
        torch.set_num_threads(kept)


def _finetune(
    model_path: str,
    data: list[str],
    out: str,
    steps: int,
    seed: int,
    val_frac: float,
    end_to_end: bool,
    rank_weight: float,
    anchor: list[str] | None,
    anchor_weight: float,
    anchor_batch: int,
    lr: float,
) -> dict[str, Any]:
    t0 = time.monotonic()
    torch.manual_seed(seed)
    model = attach_text_encoder(load_checkpoint(model_path, require_fitted=True), model_path)
    files = sorted(p for d in data for p in Path(d).glob("critic_*.npz"))
    if not files:
        raise ValueError(f"no critic_*.npz files under {data}")
    if end_to_end and not model.cfg.imagine:
        raise ValueError(f"{model_path} has no imagination to finetune (cfg.imagine is false)")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(files))
    n_val = int(len(files) * val_frac)
    val_files = [files[i] for i in order[:n_val]]
    train_files = [files[i] for i in order[n_val:]]
    if not val_files:  # too few episodes to hold any out: the figures are then on the training episodes
        log.warning(
            "only %d episode file(s): the ranking figures are measured on the training data", len(files)
        )
        val_files = train_files
    if anchor and not end_to_end:
        raise ValueError("anchor windows keep the imagination's frames: they go with --end-to-end only")
    frames: dict[str, Any] = {}
    if end_to_end:
        tr, va = _decisions(model, train_files), _decisions(model, val_files)
        n = int(tr["goal"].numel())
        before = _ranking_of(va["old"][..., 2] * DIST_SCALE, va["goal"])
        windows = held_out = None
        if anchor:
            windows, held_out = _anchor_windows(model, anchor)
            frames["before"] = _frame_quality(model, held_out)
        _finetune_imagination(
            model,
            tr,
            steps,
            rng,
            rank_weight,
            windows=windows,
            anchor_weight=anchor_weight,
            anchor_batch=anchor_batch,
            lr=lr,
        )
        with torch.no_grad():
            after = _ranking_of(_score_candidates(model, va)[..., 2] * DIST_SCALE, va["goal"])
        if anchor:
            frames["after"] = _frame_quality(model, held_out)
    else:
        tr, va = imagined_features(model, train_files), imagined_features(model, val_files)
        head = model.critic_head
        opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-4)
        target = tr["goal"] / DIST_SCALE
        n = len(target)
        before = _ranking(head, va)
        head.train()
        for _ in range(steps):
            idx = torch.from_numpy(rng.integers(0, n, 256))
            out_ = head(tr["features"][idx])
            loss = F.smooth_l1_loss(out_[:, 2], target[idx]) + F.mse_loss(out_[:, :2], tr["old"][idx, :2])
            opt.zero_grad()
            loss.backward()
            opt.step()
        head.eval()
        after = _ranking(head, va)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {
        "mode": "imagination+critic" if end_to_end else "critic head",
        "train_files": len(train_files),
        "val_files": len(val_files),
        "train_candidates": int(n),
        "steps": steps,
        "lr": lr,
        "before": before,
        "after": after,
    }
    if frames:
        report.update(anchor=list(anchor or []), anchor_weight=anchor_weight, imagination=frames)
    report["seconds"] = round(time.monotonic() - t0, 1)
    report["threads"] = torch.get_num_threads()
    save_checkpoint(out_dir / "model.pt", model, extra={"critic_finetune": report})
    (out_dir / "critic_finetune.json").write_text(json.dumps(report, indent=2))
    return report


@torch.no_grad()
def _ranking(head: torch.nn.Module, d: dict[str, Any]) -> dict[str, float]:
    """Held-out ranking of the critic head on precomputed features (see `_ranking_of`)."""
    n = d["candidates"]
    pred = head(d["features"])[:, 2] * DIST_SCALE
    return _ranking_of(pred.reshape(-1, n), d["goal"].reshape(-1, n))


def _ranking_of(pred: torch.Tensor, goal: torch.Tensor) -> dict[str, float]:
    """Per decision (rows), predicted vs true goal distances (m) of its candidates (column 0: the policy's own):
    the mean absolute error, how often the critic's best candidate (lowest predicted distance) is the true best
    (within 5 mm), its mean gain over the policy's own chunk (m, positive: better) and the oracle's gain (the bound)."""
    rows = torch.arange(len(goal))
    pick = pred.argmin(1)
    true_best = goal.min(1).values
    return {
        "goal_mae_m": float((pred - goal).abs().mean()),
        "best_pick_rate": float((goal[rows, pick] <= true_best + 0.005).float().mean()),
        "mean_gain_vs_policy_m": float((goal[:, 0] - goal[rows, pick]).mean()),
        "oracle_gain_vs_policy_m": float((goal[:, 0] - true_best).mean()),
    }


# what `finetune(..., end_to_end=True)` trains: the imagination (action tokens, horizon embedding, its transformer)
# and the critic head; the trunk, the proposals and the frame decoder stay as they were
IMAGINATION_MODULES = ("act_emb", "act_pos", "horizon_emb", "imag_blocks", "imag_ln", "critic_head")


def _decisions(model: WorldActionModel, files: list[Path]) -> dict[str, Any]:
    """Per decision: the frozen trunk's context tokens, joints, instruction input, candidates, true goal distances
    (0 where the candidate reached the goal) and the critic's outputs before finetuning."""
    xs, qs, toks, chunks, goals, per = [], [], [], [], [], set()
    with torch.no_grad():
        for path in files:
            with np.load(path) as z:
                frames = torch.from_numpy(z["frames"])
                q = torch.from_numpy(z["joint_pos"]).to(torch.float32)
                tok = torch.from_numpy(model.tokenizer.encode(str(z["instruction"]))[None])
                tok = tok.expand(len(frames), *tok.shape[1:])
                xs.append(model._trunk(frames, q, tok)[0])
                qs.append(q)
                toks.append(tok)
                chunks.append(torch.from_numpy(z["candidates"]).to(torch.float32))
                per.add(int(z["candidates"].shape[1]))
                g = torch.from_numpy(z["goal"]).to(torch.float32)
                goals.append(torch.where(torch.from_numpy(z["reached"]).bool(), torch.zeros_like(g), g))
        d = {
            "x": torch.cat(xs),
            "q": torch.cat(qs),
            "tokens": torch.cat(toks),
            "chunks": torch.cat(chunks),
            "goal": torch.cat(goals),
            "candidates": _one(per),
        }
        d["old"] = _score_candidates(model, d)
    return d


def _score_candidates(
    model: WorldActionModel, d: dict[str, Any], idx: torch.Tensor | None = None
) -> torch.Tensor:
    """Critic outputs (D, N, 3) of every candidate of the decisions `idx` (all by default), imagined to h = chunk."""
    x, q, tok, chunks = (d[k] if idx is None else d[k][idx] for k in ("x", "q", "tokens", "chunks"))
    D, N = chunks.shape[:2]
    h = torch.full((D * N,), model.cfg.chunk, dtype=torch.int64)
    z = model._imagine_tokens(
        x.repeat_interleave(N, 0),
        tok.repeat_interleave(N, 0),
        model.normalize_delta(chunks.reshape(D * N, *chunks.shape[2:]), q.repeat_interleave(N, 0)),
        h,
    )
    return model._critic(z).reshape(D, N, -1)


ANCHOR_VAL_FRAC, ANCHOR_SPLIT_SEED = 0.05, 0  # wam train's defaults: the same episodes stay held out


def _anchor_windows(model: WorldActionModel, dirs: list[str]) -> tuple[WorldWindows, list]:
    """The demonstration windows of the training episodes (wam train's split) and the held-out episodes."""
    episodes = load_episodes(dirs)
    cfg = model.cfg
    train_ep, val_ep = split_episodes(len(episodes), ANCHOR_VAL_FRAC, ANCHOR_SPLIT_SEED)
    kept = [episodes[i] for i in train_ep]
    base = WindowArrays(kept, cfg.k_frames, cfg.chunk, cfg.image_size, model.tokenizer, cameras=cfg.cameras)
    return WorldWindows(base, kept), [episodes[i] for i in val_ep]


def _frame_quality(model: WorldActionModel, episodes: list, windows: int = 256) -> dict[str, float]:
    """PSNR/SSIM of the frames imagined after the executed actions at h=1 and h=N, beside copy-last-frame."""
    res = imagination_metrics(model, episodes, windows, seed=0)
    return {"windows": res["windows"], **{k: round(v, 4) for k, v in res["all"].items()}}


def _anchor_errors(
    model: WorldActionModel, windows: WorldWindows, idx: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Imagined-frame MSE and imagined-joint error on the demonstration windows `idx` (losses.imagined_errors)."""
    b = windows.batch(idx)
    out = model.forward_world(b[FRAMES], b[JOINT_POS], b[TOKENS], b[EXECUTED], b[HORIZON])
    return imagined_errors(model, b, out)


def _finetune_imagination(
    model: WorldActionModel,
    tr: dict[str, Any],
    steps: int,
    rng: np.random.Generator,
    rank_weight: float,
    batch: int = 24,
    temperature: float = 0.005,
    windows: WorldWindows | None = None,
    anchor_weight: float = 1.0,
    anchor_batch: int = 16,
    lr: float = 3e-4,
) -> None:
    """Train the imagination + critic on counterfactual outcomes: per decision, a listwise ranking loss (the
    critic's softmax over its candidates by predicted distance against the true one's, `temperature` metres) plus
    the goal-distance regression, with the success and steps-to-go outputs held to what they were. With `windows`,
    each step adds `anchor_weight` x the imagined frame's and joints' errors on `anchor_batch` demonstration windows,
    each relative to its value before finetuning (so 1.0 means "as good as before", and doubling the frame error
    costs as much as a ranking loss of 1 nat)."""
    params = [p for n, p in model.named_parameters() if n.split(".")[0] in IMAGINATION_MODULES]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    tau = temperature / DIST_SCALE
    if windows is not None:  # the anchor's errors before finetuning: its loss is measured relative to them
        with torch.no_grad():
            probe = np.random.default_rng(0).integers(0, len(windows), (8, anchor_batch))
            ref = torch.stack([torch.stack(_anchor_errors(model, windows, i)) for i in probe]).mean(0)
        ref = ref.clamp_min(1e-8)
        log.info("anchor: imagined frame MSE %.5f, joints %.5f before finetuning", *ref.tolist())
    model.eval()  # the frozen parts stay in inference mode (the trunk's batch norm statistics do not move)
    for name, module in model.named_children():
        if name in IMAGINATION_MODULES:
            module.train()
    for _ in range(steps):
        idx = torch.from_numpy(rng.integers(0, len(tr["goal"]), batch))
        out = _score_candidates(model, tr, idx)
        pred, target = out[..., 2], tr["goal"][idx] / DIST_SCALE
        rank = -(torch.softmax(-target / tau, 1) * torch.log_softmax(-pred / tau, 1)).sum(1).mean()
        loss = (
            F.smooth_l1_loss(pred, target)
            + rank_weight * rank
            + F.mse_loss(out[..., :2], tr["old"][idx][..., :2])
        )
        if windows is not None:
            frame, joints = _anchor_errors(model, windows, rng.integers(0, len(windows), anchor_batch))
            loss = loss + anchor_weight * 0.5 * (frame / ref[0] + joints / ref[1])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
