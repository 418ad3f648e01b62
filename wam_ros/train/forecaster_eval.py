"""Alarm metrics of a fall forecaster and of the threshold baselines, per episode, on campaign traces.

    scores = forecaster_scores(data, fc)                        # {"p_fall_1s": (N,), "p_fall_0_5s": (N,)} per sample
    scores |= baseline_scores(data)                             # {"tilt_deg": ..., "tilt_rate": ...}
    rule = tune_for_recall(data, scores["p_fall_1s"], recall=0.98, consecutive=2)
    m = alarm_metrics(data, scores["p_fall_1s"], rule)           # recall, false alarms / 10 min, lead times, ...

Definitions (docs/falls_dataset.md, "Forecaster metrics"):
- an alarm is on at a sample when the score has been >= threshold for the rule's last `consecutive` samples;
- recall: falls with an alarm at some sample in [push start, fall time) (a standing episode that falls: [0, fall));
- lead time: fall time - the first such sample's time;
- false alarms: alarm onsets while the robot stands unpushed: in standing episodes (whole, unless it fell) and before
  the push of pushed episodes; per 10 minutes of that standing time;
- recovered_alarm_rate: pushed episodes that did not fall but had an alarm at or after the push start;
- auroc: per sample, the score against "a fall within 1 s" (the label of wam_ros.train.forecaster_data), rank-based.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wam_ros.runtime.fall_forecaster import AlarmRule, FallForecasterRuntime, debounced
from wam_ros.train.campaign.spec import read_campaign_config
from wam_ros.train.forecaster_data import FallData, load_fall_data

BASELINES = {"tilt": "tilt_deg", "tilt_rate": "tilt_rate"}  # baseline name -> score


def forecaster_scores(data: FallData, fc: FallForecasterRuntime, chunk: int = 65536) -> dict[str, np.ndarray]:
    """The forecaster's outputs at every sample (windows ending there), through the shipped ONNX graph."""
    p05, p1, ttf = [], [], []
    for a in range(0, data.samples, chunk):
        pos = np.arange(a, min(a + chunk, data.samples))
        out = fc.predict(data.windows(pos, fc.window))
        p05.append(out[0])
        p1.append(out[1])
        ttf.append(out[2])
    cat = lambda v: np.concatenate(v) if v else np.zeros(0, np.float32)  # noqa: E731
    return {"p_fall_0_5s": cat(p05), "p_fall_1s": cat(p1), "time_to_fall_s": cat(ttf)}


def baseline_scores(data: FallData) -> dict[str, np.ndarray]:
    """Per sample: tilt from vertical (deg) from the IMU orientation, and the roll/pitch rate |w_xy| (rad/s)."""
    qx, qy = data.x[:, 0].astype(np.float64), data.x[:, 1].astype(np.float64)
    tilt = np.degrees(np.arccos(np.clip(1 - 2 * (qx * qx + qy * qy), -1.0, 1.0)))
    rate = np.hypot(data.x[:, 4], data.x[:, 5])
    return {"tilt_deg": tilt, "tilt_rate": rate}


def _segments(data: FallData) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: in the episode's forecast window [alarm start, fall); in standing time."""
    e = data.ep
    begin = np.where(data.standing[e], 0.0, data.push_start[e])
    forecast = data.fell[e] & (data.t >= begin - 1e-6) & (data.t < data.fall_time[e])
    after_push = ~data.standing[e] & ~data.fell[e] & (data.t >= data.push_start[e] - 1e-6)
    standing = np.where(data.standing[e], ~data.fell[e], data.t < data.push_start[e] - 1e-6)
    return forecast | after_push, standing


def _episode_max(values: np.ndarray, mask: np.ndarray, data: FallData) -> np.ndarray:
    """Per episode: max of `values` over its samples in `mask` (-inf when none)."""
    out = np.full(data.episodes, -np.inf)
    np.maximum.at(out, data.ep[mask], values[mask])
    return out


def tune_for_recall(
    data: FallData, score: np.ndarray, recall: float, consecutive: int = 1, signal: str = "score"
) -> AlarmRule:
    """The highest threshold whose recall on `data` is >= `recall` (fewest alarms for that recall)."""
    d = debounced(score, data.start, consecutive)
    watch, _ = _segments(data)
    best = _episode_max(d, watch, data)[data.fell]
    if not len(best):
        raise ValueError(f"{data.source}: no falls to tune a threshold on")
    best = np.sort(best)[::-1]
    k = min(len(best) - 1, max(0, math.ceil(recall * len(best)) - 1))
    return AlarmRule(threshold=float(best[k]), consecutive=consecutive, signal=signal)


def alarm_metrics(data: FallData, score: np.ndarray, rule: AlarmRule) -> dict[str, Any]:
    """The alarm metrics of one rule over one campaign's episodes (see the module docstring)."""
    d = debounced(score, data.start, rule.consecutive)
    on = d >= rule.threshold
    watch, standing = _segments(data)
    e = data.ep
    alarmed = np.zeros(data.episodes, dtype=bool)
    np.logical_or.at(alarmed, e[watch & on], True)
    first_t = np.full(data.episodes, np.inf)
    np.minimum.at(first_t, e[watch & on], data.t[watch & on])
    falls = data.fell
    hit = falls & alarmed
    lead = data.fall_time[hit] - first_t[hit]
    recovered = ~data.standing & ~data.fell
    # alarm onsets in standing time: on now, and off (or not standing, or another episode) one sample before
    prev_on = np.r_[False, on[:-1] & standing[:-1]]
    prev_on[data.start] = False
    onsets = int(np.sum(on & standing & ~prev_on))
    standing_s = float(np.sum(standing)) / data.rate_hz
    n_falls = int(falls.sum())
    return {
        "threshold": rule.threshold,
        "consecutive": rule.consecutive,
        "signal": rule.signal,
        "falls": n_falls,
        "recall": float(alarmed[falls].mean()) if n_falls else math.nan,
        "false_alarms": onsets,
        "standing_minutes": standing_s / 60,
        "false_alarms_per_10min": onsets / standing_s * 600 if standing_s > 0 else math.nan,
        "recovered_episodes": int(recovered.sum()),
        "recovered_alarm_rate": float(alarmed[recovered].mean()) if recovered.any() else math.nan,
        "lead_time_median_s": float(np.median(lead)) if len(lead) else math.nan,
        "lead_time_p10_s": float(np.percentile(lead, 10)) if len(lead) else math.nan,
        "lead_time_p90_s": float(np.percentile(lead, 90)) if len(lead) else math.nan,
        "_lead": lead,
        "_lead_index": data.index[hit],
        "_lead_impulse": data.push_impulse[hit],
    }


def auroc(score: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half); NaN without both classes."""
    label = np.asarray(label).astype(bool)
    n_pos, n_neg = int(label.sum()), int((~label).sum())
    if not n_pos or not n_neg:
        return math.nan
    order = np.argsort(score, kind="mergesort")
    s = np.asarray(score)[order]
    ranks = np.empty(len(s))
    # average ranks of ties
    _, first, counts = np.unique(s, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[label].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(score: np.ndarray, label: np.ndarray, points: int = 200) -> tuple[list[float], list[float]]:
    """(false-positive rates, true-positive rates) at `points` score quantiles, for a plot."""
    label = np.asarray(label).astype(bool)
    qs = np.unique(np.quantile(score, np.linspace(0, 1, points)))[::-1]
    n_pos, n_neg = max(1, int(label.sum())), max(1, int((~label).sum()))
    tpr = [float(np.sum(score[label] >= q) / n_pos) for q in qs]
    fpr = [float(np.sum(score[~label] >= q) / n_neg) for q in qs]
    return [0.0, *fpr, 1.0], [0.0, *tpr, 1.0]


def public(m: dict[str, Any]) -> dict[str, Any]:
    """The metrics without the per-episode arrays (keys starting with '_')."""
    return {k: v for k, v in m.items() if not k.startswith("_")}


@dataclass
class ForecasterEvalConfig:
    """Args:
    model: forecaster folder (fall_forecaster.json + .onnx; its baselines' thresholds are stored in the .json).
    campaign: campaign directory with traces, of another seed than the training campaign.
    threads: onnxruntime intra-op threads.
    max_episodes: evaluate only the first N traced episodes.
    """

    model: str | Path
    campaign: str | Path
    threads: int = 2
    max_episodes: int | None = None


def evaluate_forecaster(cfg: ForecasterEvalConfig) -> dict[str, Any]:
    """The forecaster and its baselines on one campaign, in one run (see the module docstring for the keys).

    Returns the report: the forecaster's keys at the top, `baselines.<name>` with the same keys, `goals`, and
    `curves` (ROC points, per-fall lead times and push impulses) for `wam campaign report`."""
    fc = FallForecasterRuntime.load(cfg.model, threads=cfg.threads)
    stored = fc.spec.get("baselines")
    if not stored:
        raise ValueError(f"{cfg.model}: no baseline thresholds in its fall_forecaster.json (retrain it)")
    data = load_fall_data(cfg.campaign, cfg.max_episodes)
    if data.joint_names != fc.joint_names:
        raise ValueError(
            f"{cfg.campaign}: joints {data.joint_names} differ from the model's {fc.joint_names}"
        )
    if abs(data.rate_hz - fc.rate_hz) > 1e-6:
        raise ValueError(f"{cfg.campaign}: traces at {data.rate_hz} Hz, the model runs at {fc.rate_hz} Hz")
    train_seed = fc.spec.get("train_seed")
    seed = _campaign_seed(cfg.campaign)
    t0 = time.perf_counter()
    scores = forecaster_scores(data, fc)
    score_s = time.perf_counter() - t0
    scores |= baseline_scores(data)
    y05, y1, _ = data.labels()
    report: dict[str, Any] = {
        "model": str(cfg.model),
        "campaign": str(cfg.campaign),
        "campaign_seed": seed,
        "train_campaign_seed": train_seed,
        "episodes": data.episodes,
        "pushed_episodes": int((~data.standing).sum()),
        "standing_episodes": int(data.standing.sum()),
        "samples": data.samples,
    }
    m = alarm_metrics(data, scores[fc.rule.signal], fc.rule)
    report |= {"auroc": auroc(scores["p_fall_1s"], y1), "auroc_0_5s": auroc(scores["p_fall_0_5s"], y05)}
    report |= public(m)
    report["seconds_per_window"] = score_s / max(1, data.samples)
    curves: dict[str, Any] = {
        "forecaster": {
            "roc": roc_curve(scores["p_fall_1s"], y1),
            "lead": m["_lead"].tolist(),
            "impulse": m["_lead_impulse"].tolist(),
        }
    }
    report["baselines"] = {}
    for name, spec in stored.items():
        rule = AlarmRule(spec["threshold"], spec["consecutive"], spec["signal"])
        bm = alarm_metrics(data, scores[rule.signal], rule)
        report["baselines"][name] = {"auroc": auroc(scores[rule.signal], y1), **public(bm)}
        curves[name] = {
            "roc": roc_curve(scores[rule.signal], y1),
            "lead": bm["_lead"].tolist(),
            "impulse": bm["_lead_impulse"].tolist(),
        }
    best = max((b["lead_time_median_s"] for b in report["baselines"].values()), default=math.nan)
    report["lead_vs_best_baseline"] = report["lead_time_median_s"] / best if best and best > 0 else math.nan
    report["goals"] = {
        "recall>=0.97": report["recall"] >= 0.97,
        "false_alarms_per_10min<=1": report["false_alarms_per_10min"] <= 1.0,
        "recovered_alarm_rate<=0.05": report["recovered_alarm_rate"] <= 0.05,
        "lead_time_median_s>=0.3": report["lead_time_median_s"] >= 0.3,
        "lead>=2x_best_baseline": report["lead_vs_best_baseline"] >= 2.0,
    }
    report["curves"] = curves
    return report


def _campaign_seed(campaign: str | Path) -> int | None:
    try:
        return int(read_campaign_config(campaign)["seed"])
    except (FileNotFoundError, KeyError, ValueError):
        return None
