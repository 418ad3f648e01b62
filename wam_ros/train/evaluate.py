"""Offline and closed-loop evaluation of the joint WAM, always beside its baselines in the same run: `wam eval`.

    res = evaluate(EvalConfig(model="models/panda_tabletop", data=["data/reach_eval"], episodes=50))
    write_results(res, "runs/eval")                        # results.json + results.md
    wam eval --model models/panda_tabletop --ablation runs/ablation/model.pt \
        --data data/reach_eval data/push_eval --train-data data/reach data/push \
        --tasks reach push --episodes 50 --out runs/eval           # wam_ros/cli/eval.py

Offline (held-out episodes, --data): next-frame PSNR/SSIM at horizon 1 and at imagination horizon --horizon (the
model fed its own frames) vs copy-last-frame; action error (mean |target - expert target| over the chunk, raw units)
vs the action-only ablation (same network, frame-loss weight 0). Closed loop (--episodes per task, seeds from
--seed-start, refused if any appears in --train-data): success rate and mean steps of the WAM (through
wam_ros.runtime.load_policy), the scripted expert and a random policy on the same scenes. Writes results.json and
results.md into --out.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wam_ros.data.episode import list_episodes
from wam_ros.data.windows import WindowArrays
from wam_ros.model import WorldActionModel, load_checkpoint
from wam_ros.model.batch import ACTION_MASK, ACTIONS, FRAMES, JOINT_POS
from wam_ros.runtime.text_encoder import attach_text_encoder
from wam_ros.train.batches import load_episodes
from wam_ros.train.closed_loop import closed_loop, expert_factory, random_factory, wam_factory
from wam_ros.train.metrics import imagine, psnr, ssim

log = logging.getLogger("wam.eval")


@dataclass
class EvalConfig:
    """One evaluation run (validated).

    model: model directory or .pt checkpoint. ablation: the action-only checkpoint (same network, frame weight 0).
    data: held-out episode directories for the offline metrics (none: no offline part).
    train_data: the training episode directories; a closed-loop seed found in them is refused.
    tasks / episodes / seed_start: closed loop on seeds seed_start .. seed_start+episodes-1 of each task (0: none).
    replan: actions executed per predicted chunk. horizon: imagination horizon of the frame metrics.
    max_windows: held-out windows for the frame metrics. backend: runtime backend of the closed loop.
    ablation_closed_loop: also run the ablation in closed loop. threads: torch threads. seed: window sampling.
    out: where `write_results` puts results.json and results.md.
    robot: the robot profile the closed loop simulates; None: the one the model was trained for (its config). A
        profile whose joint names are not the model's is refused.
    """

    model: str
    ablation: str | None = None
    data: list[str] = field(default_factory=list)
    train_data: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=lambda: ["reach", "push"])
    episodes: int = 50
    seed_start: int = 1_000_000
    replan: int = 4
    horizon: int = 8
    max_windows: int = 512
    backend: str = "torch"
    ablation_closed_loop: bool = False
    threads: int = 2
    seed: int = 0
    out: str = "runs/eval"
    planner: str | None = None  # "best_of_n": also run the imagining planner (closed_loop.<task>.wam_plan)
    candidates: int = 16
    planner_score: str = "goal"
    planner_noise: float = 0.05
    planner_margin: float = 0.05
    planner_proximity: float = 2.0
    planner_trigger: str = "stall"
    plan_backend: str = "torch"
    # beside the planner: the oracle pick and a random pick of the same candidates
    plan_baselines: bool = True
    # every planner decision's candidates also rolled out in a copy of the simulator: closed_loop.<task>.critic_ranking
    rank_check: bool = False
    phrasings: str | None = (
        None  # YAML of templates per task ({colour} slot): closed_loop.<task>.phrasings (issue 17)
    )
    robot: str | None = None

    def __post_init__(self) -> None:
        for name in ("episodes", "replan", "horizon", "max_windows", "threads"):
            low = 0 if name == "episodes" else 1
            if getattr(self, name) < low:
                raise ValueError(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(self, name)}")
        if self.planner not in (None, "none", "best_of_n"):
            raise ValueError(f"--planner must be best_of_n (or none), got {self.planner!r}")
        if self.planner == "none":
            self.planner = None
        if self.candidates < 1:
            raise ValueError(f"--candidates must be >= 1, got {self.candidates}")


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else float("nan")


def _frame_scores(out: dict[str, list], pred: torch.Tensor, real: torch.Tensor, last: torch.Tensor) -> None:
    """Append PSNR/SSIM at h1 and hN of `pred` and of copy-last-frame against `real` (B, h, 3, H, W) to `out`."""
    for tag, j in (("h1", 0), ("hN", -1)):
        out.setdefault(f"psnr_{tag}", []).append(psnr(pred[:, j], real[:, j]))
        out.setdefault(f"ssim_{tag}", []).append(ssim(pred[:, j], real[:, j]))
        out.setdefault(f"copy_psnr_{tag}", []).append(psnr(last, real[:, j]))
        out.setdefault(f"copy_ssim_{tag}", []).append(ssim(last, real[:, j]))


def _per_task(out: dict[str, list], data: Any, idx: np.ndarray, horizon: int) -> dict[str, Any]:
    """Means over all windows `idx` and per task of the per-window metric lists in `out`."""
    arr = {k: torch.cat(v).numpy() for k, v in out.items()}
    tasks = np.array([data.tasks[e] for e in data.episode[idx]])
    res: dict[str, Any] = {
        "windows": int(len(idx)),
        "horizon": horizon,
        "all": {k: _mean(v) for k, v in arr.items()},
    }
    for task in sorted(set(tasks)):
        res[task] = {k: _mean(v[tasks == task]) for k, v in arr.items()}
    return res


@torch.no_grad()
def frame_metrics(
    model: WorldActionModel,
    data: WindowArrays,
    tokens: np.ndarray,
    horizon: int,
    max_windows: int,
    seed: int,
    batch: int = 64,
) -> dict[str, Any]:
    """Per-window PSNR/SSIM of the model (h=1, h=horizon with real / imagined proprio) and of copy-last-frame."""
    ok = np.flatnonzero(data.current + horizon <= data.last)
    if not len(ok):
        raise ValueError(f"no held-out window has {horizon} future frames (episodes too short for --horizon)")
    idx = np.sort(np.random.default_rng(seed).permutation(ok)[:max_windows])
    out: dict[str, list] = {}
    steps = np.arange(1, horizon + 1)
    for s in range(0, len(idx), batch):
        i = idx[s : s + batch]
        cur = data.current[i]
        frames = torch.from_numpy(data.frames[data.past[i]])
        tok = torch.from_numpy(tokens[data.episode[i]])
        joints = torch.from_numpy(data.joint_pos[cur[:, None] + steps - 1])  # (B, h, J): joints at t .. t+h-1
        real = torch.from_numpy(data.frames[cur[:, None] + steps]).float() / 255.0  # (B, h, 3, H, W)
        last = torch.from_numpy(data.frames[cur]).float() / 255.0
        pred = imagine(model, frames, tok, joints, horizon, "real")
        pred_im = imagine(model, frames, tok, joints, horizon, "imagined")
        _frame_scores(out, pred, real, last)
        out.setdefault("psnr_hN_imagined_proprio", []).append(psnr(pred_im[:, -1], real[:, -1]))
    return _per_task(out, data, idx, horizon)


@torch.no_grad()
def action_error(
    model: WorldActionModel, data: WindowArrays, tokens: np.ndarray, idx: np.ndarray, batch: int = 256
) -> dict[str, Any]:
    """Mean absolute error of the absolute targets vs the expert's, over the valid chunk steps (raw units)."""
    per_window, first = [], []
    for s in range(0, len(idx), batch):
        i = idx[s : s + batch]
        b = data.batch(i)
        pred = model.forward_action(b[FRAMES], b[JOINT_POS], torch.from_numpy(tokens[data.episode[i]]))
        err = (pred - b[ACTIONS]).abs().mean(-1)  # (B, N)
        m = b[ACTION_MASK].float()
        per_window.append((err * m).sum(1) / m.sum(1))
        first.append(err[:, 0])
    pw, fi = torch.cat(per_window).numpy(), torch.cat(first).numpy()
    tasks = np.array([data.tasks[e] for e in data.episode[idx]])
    res: dict[str, Any] = {"all": {"mae_chunk": _mean(pw), "mae_first": _mean(fi)}}
    for task in sorted(set(tasks)):
        res[task] = {"mae_chunk": _mean(pw[tasks == task]), "mae_first": _mean(fi[tasks == task])}
    return res


@torch.no_grad()
def imagination_metrics(
    model: WorldActionModel, episodes: list, max_windows: int, seed: int, batch: int = 32
) -> dict[str, Any]:
    """Action-conditioned imagination on held-out episodes (issue 16): the frames imagined after 1..N of the
    actions really executed, against the real frames, beside copy-last-frame; PSNR/SSIM at h=1 and h=N."""
    from wam_ros.data.world_windows import WorldWindows

    cfg = model.cfg
    data = WorldWindows(
        WindowArrays(episodes, cfg.k_frames, cfg.chunk, cfg.image_size, model.tokenizer), episodes
    )
    N = cfg.chunk
    ok = np.flatnonzero(data.current + N <= data.last)
    idx = np.sort(np.random.default_rng(seed).permutation(ok)[:max_windows])
    out: dict[str, list] = {}
    steps = np.arange(1, N + 1)
    for s in range(0, len(idx), batch):
        i = idx[s : s + batch]
        cur = data.current[i]
        frames = torch.from_numpy(data.frames[data.past[i]])
        tok = torch.from_numpy(data.tokens[data.episode[i]])
        q = torch.from_numpy(data.joint_pos[cur])
        chunk = torch.from_numpy(data.executed[data.future[i]])
        pred = model.imagine_frames(frames, q, tok, chunk)  # (B, N, 3, H, W)
        real = torch.from_numpy(data.frames[cur[:, None] + steps]).float() / 255.0
        last = torch.from_numpy(data.frames[cur]).float() / 255.0
        _frame_scores(out, pred, real, last)
    return _per_task(out, data, idx, N)


def offline(
    model: WorldActionModel,
    ablation: WorldActionModel | None,
    data_dirs: list[str],
    horizon: int,
    max_windows: int,
    seed: int,
) -> dict[str, Any]:
    cfg = model.cfg
    if len(cfg.cameras) > 1:
        raise ValueError(
            f"the offline metrics (--data) roll the model forward on its own frames, but a model with cameras "
            f"{cfg.cameras} predicts only {cfg.cameras[0]!r}: evaluate it in closed loop (--episodes), or "
            "imagine from a real start with `wam dream`"
        )
    episodes = load_episodes(data_dirs)
    data = WindowArrays(episodes, cfg.k_frames, cfg.chunk, cfg.image_size, model.tokenizer)
    tokens = data.tokens
    idx = np.sort(np.random.default_rng(seed).permutation(len(data))[: 4 * max_windows])
    res = {
        "episodes": len(episodes),
        "frames": frame_metrics(model, data, tokens, horizon, max_windows, seed),
        "action": {"wam": action_error(model, data, tokens, idx)},
        "action_windows": int(len(idx)),
    }
    if cfg.imagine:
        res["imagination"] = imagination_metrics(model, episodes, max_windows, seed)
    if ablation is not None:
        a = ablation.cfg
        if (a.k_frames, a.chunk, a.image_size) != (cfg.k_frames, cfg.chunk, cfg.image_size):
            raise ValueError("the ablation must share k_frames, chunk and image_size with the model")
        abl_tokens = ablation.tokenizer.encode_batch([ep.instruction for ep in episodes])
        res["action"]["action_only"] = action_error(ablation, data, abl_tokens, idx)
    return res


def training_seeds(dirs: list[str]) -> set[int]:
    """The scene seeds of every episode under `dirs` (reads only each file's meta)."""
    seeds: set[int] = set()
    for d in dirs:
        for path in list_episodes(d):
            with np.load(path, allow_pickle=False) as z:
                seeds.add(int(json.loads(str(z["meta"])).get("seed", -1)))
    return seeds


def _frame_table(title: str, metrics: dict[str, Any], imagined_proprio: bool) -> list[str]:
    """A markdown table of PSNR/SSIM at h1 and hN beside copy-last-frame, one row per subset (all, per task)."""
    h = metrics["horizon"]
    extra = f"| WAM PSNR h{h} (imagined proprio) " if imagined_proprio else ""
    lines = [
        f"## {title}",
        "",
        f"| subset | WAM PSNR h1 | copy-last PSNR h1 | WAM SSIM h1 | copy-last SSIM h1 | WAM PSNR h{h} {extra}"
        f"| copy-last PSNR h{h} | WAM SSIM h{h} | copy-last SSIM h{h} |",
        "|---" * (10 if imagined_proprio else 9) + "|",
    ]
    for sub in [k for k in metrics if isinstance(metrics[k], dict)]:
        m = metrics[sub]
        own = f"{m['psnr_hN_imagined_proprio']:.2f} | " if imagined_proprio else ""
        lines.append(
            f"| {sub} | {m['psnr_h1']:.2f} | {m['copy_psnr_h1']:.2f} | {m['ssim_h1']:.3f} | "
            f"{m['copy_ssim_h1']:.3f} | {m['psnr_hN']:.2f} | {own}"
            f"{m['copy_psnr_hN']:.2f} | {m['ssim_hN']:.3f} | {m['copy_ssim_hN']:.3f} |"
        )
    return lines


def render_markdown(res: dict[str, Any]) -> str:
    lines = [f"# wam eval: {res['model']}", ""]
    off = res.get("offline")
    if off:
        im = off.get("imagination")
        if im:  # issue 16's figure: the frames imagined after the executed actions, one pass per window
            title = (
                f"Imagination: frames imagined after the executed actions ({im['windows']} held-out windows)"
            )
            lines += _frame_table(title, im, imagined_proprio=False) + [""]
        f = off["frames"]
        title = f"Next-frame prediction rolled forward on its own frames ({f['windows']} held-out windows, "
        lines += _frame_table(title + f"{off['episodes']} episodes)", f, imagined_proprio=True)
        lines += [
            "",
            f"## Action error (mean abs. error of absolute joint targets, {off['action_windows']} windows)",
            "",
            "| subset | model | chunk MAE | first-action MAE |",
            "|---|---|---|---|",
        ]
        for name, a in off["action"].items():
            for sub, m in a.items():
                lines.append(f"| {sub} | {name} | {m['mae_chunk']:.4f} | {m['mae_first']:.4f} |")
        lines.append("")
    cl = res.get("closed_loop")
    if cl:
        lines += [
            f"## Closed loop (unseen seeds from {res['seed_start']}, replan every {res['replan']} steps, "
            f"backend {res['backend']})",
            "",
            "| task | policy | success | rate | mean steps | mean steps (successes) |",
            "|---|---|---|---|---|---|",
        ]
        for task, pols in cl.items():
            for name, r in pols.items():
                if not isinstance(r, dict) or "success_rate" not in r:  # phrasings, planner_decisions
                    continue
                ms = r["mean_steps_success"]
                lines.append(
                    f"| {task} | {name} | {r['successes']}/{r['episodes']} | {r['success_rate']:.0%} | "
                    f"{r['mean_steps']:.1f} | {'-' if math.isnan(ms) else f'{ms:.1f}'} |"
                )
        for task, pols in cl.items():
            d = pols.get("planner_decisions")
            if d and d.get("decisions"):
                lines.append(
                    f"Planner decisions on {task}: {d['decisions']}; switched away from the policy's own chunk in "
                    f"{d['switched']}, stalled (trigger stall) in {d['stalled']}."
                )
            rk = pols.get("critic_ranking")
            for which in ("all", "stalled") if rk else ():
                k = rk[which]
                if k.get("decisions"):
                    sp = "-" if k["spearman"] is None else f"{k['spearman']:.2f}"
                    own = "-" if k["dist_own_mm"] is None else f"{k['dist_own_mm']:.1f}"
                    lines.append(
                        f"Critic ranking on {task}, {which} decisions ({k['decisions']}, true roll-outs): its top "
                        f"candidate is a true best in {k['top1_rate']:.0%} (a random pick: "
                        f"{k['random_top1_rate']:.0%}); goal distance after the chunk {k['dist_top_mm']:.1f} mm "
                        f"(random {k['dist_random_mm']:.1f}, best {k['dist_best_mm']:.1f}, the policy's own "
                        f"{own}); Spearman {sp}."
                    )
        lines.append("")
    lines.append(f"Wall time: {res['wall_s']:.0f} s.")
    return "\n".join(lines) + "\n"


def sim_robot(robot: str | None, model_cfg: Any) -> str:
    """The profile the closed loop simulates: `robot`, else the model's own; ValueError when its joints are not the
    model's (the model's actions would drive other joints)."""
    from wam_ros.robot import RobotProfile

    name = robot or str(model_cfg.robot)
    profile = RobotProfile.load(name)
    if list(profile.joint_names) != list(model_cfg.joint_names):
        raise ValueError(
            f"robot {profile.name!r} has joints {profile.joint_names}, the model was trained for robot "
            f"{model_cfg.robot!r} with {list(model_cfg.joint_names)}: pass --robot {model_cfg.robot}"
        )
    return name


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Run the offline part (with `data`) and the closed loop (with `episodes` > 0); returns the results dict."""
    t0 = time.monotonic()
    torch.set_num_threads(cfg.threads)
    model = attach_text_encoder(load_checkpoint(cfg.model, require_fitted=True), cfg.model)
    ablation = (
        attach_text_encoder(load_checkpoint(cfg.ablation, require_fitted=True), cfg.ablation)
        if cfg.ablation
        else None
    )
    res: dict[str, Any] = {
        "model": str(cfg.model),
        "ablation": cfg.ablation,
        "seed_start": cfg.seed_start,
        "replan": cfg.replan,
        "backend": cfg.backend,
    }
    if cfg.data:
        res["offline"] = offline(model, ablation, cfg.data, cfg.horizon, cfg.max_windows, cfg.seed)
    if cfg.episodes > 0:
        robot = sim_robot(cfg.robot, model.cfg)
        res["robot"] = robot
        seeds = list(range(cfg.seed_start, cfg.seed_start + cfg.episodes))
        if cfg.train_data:
            clash = sorted(training_seeds(cfg.train_data) & set(seeds))
            if clash:
                raise ValueError(
                    f"evaluation seeds {clash[:5]} also appear in the training data; pick --seed-start"
                )
        from wam_ros.runtime import load_policy
        from wam_ros.train.phrasings import load_phrasings, phrasing_closed_loop

        templates = load_phrasings(cfg.phrasings) if cfg.phrasings else {}
        policy = load_policy(cfg.model, backend=cfg.backend, threads=cfg.threads)
        factories = {"wam": wam_factory(policy, cfg.replan)}
        if cfg.ablation and cfg.ablation_closed_loop:
            factories["action_only"] = wam_factory(
                load_policy(cfg.ablation, backend="torch", threads=cfg.threads), cfg.replan
            )
        recorder = None
        if cfg.planner:
            from wam_ros.runtime.plan_backends import open_plan_backend
            from wam_ros.runtime.planner import PlannerConfig
            from wam_ros.train.planning_eval import planner_factories

            pcfg = PlannerConfig(
                candidates=cfg.candidates,
                noise=cfg.planner_noise,
                score=cfg.planner_score,
                margin=cfg.planner_margin,
                proximity=cfg.planner_proximity,
                trigger=cfg.planner_trigger,
            )
            backend = open_plan_backend(cfg.model, backend=cfg.plan_backend, threads=cfg.threads)
            plan_f, recorder = planner_factories(
                policy,
                backend,
                pcfg,
                cfg.replan,
                cfg.plan_baselines,
                model.cfg.robot,
                cfg.seed,
                rank_check=cfg.rank_check,
            )
            factories.update(plan_f)
            res["planner"] = {**vars(pcfg), "backend": backend.name}
        factories["expert"] = expert_factory()
        factories["random"] = random_factory(cfg.seed)
        res["closed_loop"] = {}
        calib = {}
        for task in cfg.tasks:
            log.info("closed loop: %s, %d seeds, policies %s", task, len(seeds), list(factories))
            n_before = len(recorder.episodes) if recorder else 0
            ranks_before = len(recorder.ranks.rows) if recorder else 0
            res["closed_loop"][task] = closed_loop(
                factories,
                task,
                seeds,
                image_size=model.cfg.image_size,
                control_hz=int(round(model.cfg.control_hz)),
                progress=True,
                robot=robot,
                wrist_camera=len(model.cfg.cameras) > 1,
            )
            if task in templates:
                res["closed_loop"][task]["phrasings"] = phrasing_closed_loop(
                    policy,
                    task,
                    templates[task],
                    seeds,
                    cfg.replan,
                    image_size=model.cfg.image_size,
                    control_hz=int(round(model.cfg.control_hz)),
                    progress=True,
                    robot=robot,
                )
            if recorder is not None:
                from wam_ros.train.planning_eval import calibration

                outcomes = [o["success"] for o in res["closed_loop"][task]["wam_plan"]["outcomes"]]
                calib[task] = calibration(recorder.episodes[n_before:], outcomes)
                r = res["closed_loop"][task]
                r["planner_gain"] = r["wam_plan"]["success_rate"] - r["wam"]["success_rate"]
                r["planner_decisions"] = recorder.totals(n_before)
                if cfg.rank_check:
                    from wam_ros.train.planning_eval import ranking_summary

                    r["critic_ranking"] = ranking_summary(recorder.ranks.rows[ranks_before:])
                if "wam_plan_oracle" in r:
                    r["planner_gap_to_oracle"] = (
                        r["wam_plan_oracle"]["success_rate"] - r["wam_plan"]["success_rate"]
                    )
        if calib:
            res["critic_calibration"] = calib
    res["wall_s"] = time.monotonic() - t0
    return res


def write_results(res: dict[str, Any], out: str | Path) -> tuple[Path, Path]:
    """results.json and results.md (render_markdown) into `out` (created)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=2))
    if res.get("critic_calibration"):
        from wam_ros.train.planning_eval import plot_reliability

        plot_reliability(res["critic_calibration"], out / "reliability.png")
    (out / "results.md").write_text(render_markdown(res))
    return out / "results.json", out / "results.md"
