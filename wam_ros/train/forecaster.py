"""Train the fall forecaster on a campaign's traces; choose its alarm rule on held-out episodes.

    result = train_forecaster(ForecasterTrainConfig(campaign="runs/falls_train_s0"))
    result.net, result.rule, result.validation            # then wam_ros.export.forecaster_onnx writes the folder
    # or: wam campaign train-forecaster --campaign runs/falls_train_s0 --out models/fall_forecaster_laikago

Episode-level split: a seeded `val_fraction` of the campaign's episodes is held out (wam_ros.train.forecaster_data);
the network trains on windows of the rest (every sample of pushed episodes, every `standing_stride`-th of standing
ones); the checkpoint with the lowest validation loss is kept. The alarm rule (signal, consecutive samples,
threshold) is then chosen on the held-out episodes: for each candidate signal and debounce, the threshold reaching
`target_recall`; among them the one that meets the false-alarm goals with the longest median lead (else the one
closest to the goals). Loss: binary cross-entropy on "fall within 0.5 s" and "within 1 s" + L1 on the time to fall
(seconds, / horizon). Augmentation: Gaussian input noise. Options tried for a longer lead (off by default: they did
not lengthen it, see the model card's "Attempts"): windows weighted (1 + `early_weight`) in the first `early_s` after
their episode's push starts; each training window mirrored left-right with probability 1/2 (`mirror`, robots in
wam_ros.train.forecaster_data.MIRRORS); an auxiliary head predicting privileged simulator quantities (`aux_weight`).
CPU, `threads` intra-op threads.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from wam_ros.model.forecaster import FallForecaster, ForecasterConfig, features
from wam_ros.runtime.fall_forecaster import SIGNALS, AlarmRule
from wam_ros.train.forecaster_data import FallData, load_fall_data, mirror_map
from wam_ros.train.forecaster_eval import BASELINES, alarm_metrics, baseline_scores, public, tune_for_recall

log = logging.getLogger(__name__)

GOAL_FALSE_ALARMS_PER_10MIN = 1.0
GOAL_RECOVERED_ALARM_RATE = 0.05


@dataclass
class ForecasterTrainConfig:
    """Args:
    campaign: campaign directory with traces (`wam campaign falls`).
    window, channels, hidden: the network (ForecasterConfig).
    batch, lr, weight_decay: AdamW on mini-batches of windows.
    noise: Gaussian noise (in feature standard deviations) added to training windows; dropout in the head.
    mirror: mirror half the training windows left-right (robots in forecaster_data.MIRRORS; others: off).
    early_weight, early_s: extra loss weight of windows ending in the first early_s seconds after a push starts.
    aux_weight: weight of the auxiliary loss (0: no auxiliary head): from the hidden layer, predict what the simulator
        knows and the robot does not (friction, mass scale, motor strength, the push force acting now and the
        impulse delivered so far; standardised, squared error). Training only: not in the exported graph.
    max_epochs, max_minutes: stop at whichever comes first; the learning rate warms up, then follows a cosine
        to 5 % over whichever of the two budgets is nearer (so a time-limited run still anneals).
    eval_every: steps between held-out evaluations (the best checkpoint is kept).
    val_fraction: share of episodes held out for model selection and the alarm rule.
    target_recall: recall the alarm threshold is set to on the held-out episodes.
    consecutive: debounce candidates (samples the signal must stay above the threshold).
    standing_stride: keep every k-th window of standing episodes (long, nearly constant).
    max_episodes: use only the first N traced episodes (tests, quick runs).
    """

    campaign: str | Path
    window: int = 50
    channels: int = 32
    hidden: int = 64
    batch: int = 512
    lr: float = 2e-3
    weight_decay: float = 1e-3
    noise: float = 0.05
    mirror: bool = False
    early_weight: float = 0.0
    early_s: float = 0.3
    aux_weight: float = 0.0
    max_epochs: int = 8
    max_minutes: float = 10.0
    val_fraction: float = 0.1
    target_recall: float = 0.98
    consecutive: tuple[int, ...] = (1, 2, 3)
    standing_stride: int = 4
    eval_every: int = 500
    seed: int = 0
    threads: int = 2
    max_episodes: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.val_fraction < 0.5:
            raise ValueError(f"val_fraction must be in (0, 0.5), got {self.val_fraction}")
        if not 0.5 <= self.target_recall <= 1.0:
            raise ValueError(f"target_recall must be in [0.5, 1], got {self.target_recall}")
        if self.max_epochs < 1 or self.max_minutes <= 0:
            raise ValueError(
                f"max_epochs must be >= 1 and max_minutes > 0, got {self.max_epochs}, {self.max_minutes}"
            )
        if self.batch < 8:
            raise ValueError(f"batch must be >= 8, got {self.batch}")
        if self.aux_weight < 0:
            raise ValueError(f"aux_weight must be >= 0, got {self.aux_weight}")
        if self.early_weight < 0 or self.early_s < 0:
            raise ValueError(
                f"early_weight and early_s must be >= 0, got {self.early_weight}, {self.early_s}"
            )


@dataclass
class ForecasterTrainResult:
    net: FallForecaster
    rule: AlarmRule
    joint_names: list[str]
    validation: dict[str, Any]  # the chosen rule's metrics on the held-out episodes
    baselines: dict[str, dict[str, Any]]  # name -> alarm rule fields + its metrics on the training split
    candidates: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    parity_windows: np.ndarray | None = None


def _positions(data: FallData, stride: int) -> np.ndarray:
    keep = ~data.standing[data.ep] | ((np.arange(data.samples) - data.start[data.ep]) % stride == 0)
    return np.flatnonzero(keep)


def _weights(data: FallData, cfg: ForecasterTrainConfig) -> np.ndarray:
    """Per sample: the loss weight of the window ending there (see the module docstring)."""
    e = data.ep
    since = data.t - data.push_start[e]
    early = ~data.standing[e] & (since >= -1e-6) & (since <= cfg.early_s + 1e-6)
    return np.where(early, 1.0 + cfg.early_weight, 1.0).astype(np.float32)


AUX_TARGETS = ("friction", "mass_scale", "motor_strength", "push_force_now", "push_impulse_so_far")


def _aux_targets(data: FallData) -> np.ndarray:
    """(N, 5) per sample, raw (see AUX_TARGETS); all mirror-invariant (magnitudes, episode conditions)."""
    if data.conditions is None:
        raise ValueError(f"{data.source}: no episode conditions for the auxiliary targets")
    now, so_far = data.push_so_far()
    return np.concatenate([data.conditions[data.ep], now[:, None], so_far[:, None]], axis=1).astype(
        np.float32
    )


def _loss(
    net: FallForecaster,
    x: torch.Tensor,
    y05: torch.Tensor,
    y1: torch.Tensor,
    ttf: torch.Tensor,
    w: torch.Tensor,
    aux: torch.Tensor | None = None,
    noise: float = 0.0,
    aux_weight: float = 0.0,
) -> torch.Tensor:
    """Weighted mean over the windows of BCE(0.5 s) + BCE(1 s) + L1(time to fall) / horizon, + aux_weight x the
    auxiliary head's mean squared error on standardised targets."""
    z, a = net.logits_aux(x, noise)
    h = net.cfg.horizon_s
    per = (
        F.binary_cross_entropy_with_logits(z[:, 0], y05, reduction="none")
        + F.binary_cross_entropy_with_logits(z[:, 1], y1, reduction="none")
        + torch.abs(h * torch.sigmoid(z[:, 2]) - ttf) / h
    )
    loss = (per * w).sum() / w.sum()
    if a is not None and aux is not None and aux_weight > 0:
        loss = loss + aux_weight * F.mse_loss(a, aux)
    return loss


@torch.inference_mode()
def predict(net: FallForecaster, data: FallData, chunk: int = 16384) -> dict[str, np.ndarray]:
    """Torch outputs at every sample of `data` (selection and tests; the shipped path is the ONNX runtime)."""
    outs: list[list[np.ndarray]] = [[], [], []]
    for a in range(0, data.samples, chunk):
        pos = np.arange(a, min(a + chunk, data.samples))
        for k, o in enumerate(net(torch.from_numpy(data.windows(pos, net.cfg.window)))):
            outs[k].append(o.numpy())
    return {
        name: np.concatenate(o)
        for name, o in zip(("p_fall_0_5s", "p_fall_1s", "time_to_fall_s"), outs, strict=True)
    }


def choose_rule(
    data: FallData, scores: dict[str, np.ndarray], cfg: ForecasterTrainConfig
) -> tuple[AlarmRule, list[dict]]:
    """The alarm rule on held-out episodes (see the module docstring)."""
    candidates = []
    for signal in SIGNALS:
        for k in cfg.consecutive:
            rule = tune_for_recall(data, scores[signal], cfg.target_recall, k, signal)
            m = public(alarm_metrics(data, scores[signal], rule))
            m["meets_goals"] = bool(
                m["false_alarms_per_10min"] <= GOAL_FALSE_ALARMS_PER_10MIN
                and m["recovered_alarm_rate"] <= GOAL_RECOVERED_ALARM_RATE
            )
            candidates.append(m)
    ok = [c for c in candidates if c["meets_goals"]]
    if ok:
        best = max(ok, key=lambda c: (c["lead_time_median_s"], -c["recovered_alarm_rate"]))
    else:
        best = min(
            candidates,
            key=lambda c: (
                c["false_alarms_per_10min"] / GOAL_FALSE_ALARMS_PER_10MIN
                + c["recovered_alarm_rate"] / GOAL_RECOVERED_ALARM_RATE
            ),
        )
    return AlarmRule(best["threshold"], best["consecutive"], best["signal"]), candidates


def train_forecaster(cfg: ForecasterTrainConfig, progress: bool = True) -> ForecasterTrainResult:
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(max(1, cfg.threads))
    t_load = time.perf_counter()
    data = load_fall_data(cfg.campaign, cfg.max_episodes)
    train, val = data.split(cfg.val_fraction, cfg.seed)
    if not train.fell.any() or not val.fell.any():
        raise ValueError(f"{cfg.campaign}: the training and validation episodes both need falls")
    net_cfg = ForecasterConfig(
        n_joints=len(data.joint_names),
        window=cfg.window,
        rate_hz=data.rate_hz,
        channels=cfg.channels,
        hidden=cfg.hidden,
        n_aux=len(AUX_TARGETS) if cfg.aux_weight > 0 else 0,
    )
    net = FallForecaster(net_cfg)
    pos = _positions(train, cfg.standing_stride)
    rng = np.random.default_rng(cfg.seed)
    sample = rng.choice(pos, size=min(len(pos), 200_000), replace=False)
    with torch.no_grad():
        f = features(torch.from_numpy(train.x[sample])[:, None, :])[:, 0]
    net.set_normalisation(f.mean(0), f.std(0))
    y = [torch.from_numpy(a) for a in (*train.labels(net_cfg.horizon_s), _weights(train, cfg))]
    vy = [torch.from_numpy(a) for a in (*val.labels(net_cfg.horizon_s), _weights(val, cfg))]
    if net_cfg.n_aux:
        aux = _aux_targets(train)
        mu, sd = aux.mean(0), np.maximum(aux.std(0), 1e-6)
        y.append(torch.from_numpy((aux - mu) / sd))
        vy.append(torch.from_numpy((_aux_targets(val) - mu) / sd))
    flip = mirror_map(data.robot, data.joint_names) if cfg.mirror else None
    if cfg.mirror and flip is None:
        log.warning("forecaster: no known left-right mirror for robot %r: training without it", data.robot)
    if flip is not None:
        flip = (torch.from_numpy(flip[0]), torch.from_numpy(flip[1]))
    vcand = _positions(val, cfg.standing_stride)
    vpos = np.sort(rng.choice(vcand, size=min(len(vcand), 50_000), replace=False))
    vx = torch.from_numpy(val.windows(vpos, cfg.window))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(pos) // cfg.batch)
    total = steps_per_epoch * cfg.max_epochs
    every = max(1, min(steps_per_epoch, cfg.eval_every))
    log.info(
        "forecaster: %d training / %d held-out episodes, %d windows per epoch, loaded in %.1f s",
        train.episodes,
        val.episodes,
        len(pos),
        time.perf_counter() - t_load,
    )
    best_loss, best_state, history = math.inf, None, []
    t0 = time.perf_counter()
    budget = cfg.max_minutes * 60
    order = rng.permutation(pos)
    running, n = 0.0, 0
    for step in range(total):
        # progress by steps or by time, whichever is further: the schedule anneals within the time budget too
        frac = max(step / total, (time.perf_counter() - t0) / budget)
        if frac >= 1.0:
            break
        warm = min(1.0, frac / 0.03)
        lr = cfg.lr * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        for group in opt.param_groups:
            group["lr"] = lr
        b = step % steps_per_epoch
        if b == 0 and step:
            order = rng.permutation(pos)
        idx = order[b * cfg.batch : (b + 1) * cfg.batch]
        net.train()
        x = torch.from_numpy(train.windows(idx, cfg.window))
        if flip is not None:
            half = torch.from_numpy(rng.random(len(idx)) < 0.5)
            x[half] = x[half][:, :, flip[0]] * flip[1]
        ti = torch.from_numpy(idx)
        loss = _loss(net, x, *(v[ti] for v in y), noise=cfg.noise, aux_weight=cfg.aux_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running, n = running + float(loss.detach()), n + 1
        if (step + 1) % every == 0 or step == total - 1:
            net.eval()
            with torch.inference_mode():
                vloss = float(
                    sum(
                        _loss(net, vx[a : a + 8192], *(v[torch.from_numpy(vpos[a : a + 8192])] for v in vy))
                        * len(vpos[a : a + 8192])
                        for a in range(0, len(vpos), 8192)
                    )
                    / len(vpos)
                )
            history.append(
                {
                    "step": step + 1,
                    "epoch": (step + 1) / steps_per_epoch,
                    "train_loss": running / max(n, 1),
                    "val_loss": vloss,
                    "lr": lr,
                    "minutes": (time.perf_counter() - t0) / 60,
                }
            )
            if progress:
                print(
                    f"step {step + 1} (epoch {(step + 1) / steps_per_epoch:.2f}): train loss "
                    f"{running / max(n, 1):.4f}, held-out loss {vloss:.4f}, lr {lr:.1e}, "
                    f"{(time.perf_counter() - t0) / 60:.1f} min",
                    flush=True,
                )
            running, n = 0.0, 0
            if vloss < best_loss:
                best_loss = vloss
                best_state = {k: v.clone() for k, v in net.state_dict().items()}
    if best_state is None:  # stopped before the first evaluation
        best_state = {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    net.eval()
    scores = predict(net, val)
    rule, candidates = choose_rule(val, scores, cfg)
    chosen = public(alarm_metrics(val, scores[rule.signal], rule))
    # the baselines: tuned on the training split to the recall the forecaster's rule reached on held-out episodes,
    # with the same debounce (stored with the model, so an evaluation needs only the model and a test campaign)
    base = baseline_scores(train)
    baselines = {}
    for name, score in BASELINES.items():
        b_rule = tune_for_recall(train, base[score], chosen["recall"], rule.consecutive, score)
        baselines[name] = {**asdict(b_rule), "train": public(alarm_metrics(train, base[score], b_rule))}
    # parity windows for the export: real ones, around falls and standing
    picks = rng.choice(val.samples, size=min(64, val.samples), replace=False)
    return ForecasterTrainResult(
        net=net,
        rule=rule,
        joint_names=data.joint_names,
        validation=chosen,
        baselines=baselines,
        candidates=candidates,
        history=history,
        data={
            "campaign": str(cfg.campaign),
            "episodes": data.episodes,
            "train_episodes": train.episodes,
            "heldout_episodes": val.episodes,
            "train_windows_per_epoch": int(len(pos)),
            "samples": data.samples,
            "mirrored": flip is not None,
            "split": f"seeded permutation of episodes (seed {cfg.seed}), {cfg.val_fraction:.0%} held out",
        },
        parity_windows=val.windows(np.sort(picks), cfg.window),
    )
