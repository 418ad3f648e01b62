"""Diagnostics behind the fall forecaster's model card, "What bounds the lead" (issue 18, session 7): on campaign
seed 0 only (the episode split of `wam campaign train-forecaster`: 10 % held out, seed 0), never the test seed.

    .venv/bin/python benchmarks/forecaster_diagnostics.py curve --model models/fall_forecaster_laikago
    .venv/bin/python benchmarks/forecaster_diagnostics.py timing --model models/fall_forecaster_laikago
    .venv/bin/python benchmarks/forecaster_diagnostics.py rules --model models/fall_forecaster_laikago
    .venv/bin/python benchmarks/forecaster_diagnostics.py probe --inputs friction,mass,motor
    .venv/bin/python benchmarks/forecaster_diagnostics.py probe --inputs friction,mass,motor,force,duration
    .venv/bin/python benchmarks/forecaster_diagnostics.py probe --label eventual
    .venv/bin/python benchmarks/forecaster_diagnostics.py ensemble --model A B C

- `curve`: the lead at matched recall. For each recall target, the forecaster's threshold on the held-out episodes
  (`tune_for_recall`) and its metrics; the tilt-rate baseline tuned on the training split to the recall reached
  (as `train_forecaster` stores it) and its lead there; the ratio. `--consecutive K` for a debounced rule (the
  baseline gets the same debounce).
- `timing`: per held-out fall, the first alarm of the forecaster (its stored rule) and of the tilt-rate baseline
  (its stored threshold) after the push starts, against the push's force: when each one fires.
- `rules`: other alarm rules on the forecaster's outputs (time to fall below a bound; p_fall_1s or p_fall_0_5s; a
  lower p_fall_1s threshold while the predicted time to fall is long), the grid's best by ratio at 97.5-99 % recall.
- `probe`: trains the same network (wam_ros.model.forecaster, same loss, schedule and input noise as
  `train_forecaster`, 2 epochs) with *privileged* simulator quantities fed into its MLP head beside the convolutions'
  features: friction, mass (scale), motor (strength), force (the push's force, known from the episode's start),
  duration (the push's duration: the one quantity nothing observable predicts). If knowing a quantity does not
  lengthen the lead at matched recall, estimating it better from the readings cannot either. `--label eventual`
  trains the 1 s head on "falls at any later time" instead (no privileged input). Prints the `curve` of the result.
- `ensemble`: the `curve` of the mean logit of several trained forecasters (torch checkpoints).

Forecaster scores come from the torch checkpoint (`fall_forecaster.pt`; the ONNX graph agrees to 1e-4).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wam_ros.model.forecaster import FallForecaster, ForecasterConfig, features, load_forecaster
from wam_ros.runtime.fall_forecaster import AlarmRule
from wam_ros.train.forecaster_data import FallData, load_fall_data
from wam_ros.train.forecaster_eval import _segments, alarm_metrics, baseline_scores, public, tune_for_recall

TARGETS = (0.97, 0.975, 0.98, 0.985, 0.99)
PRIVILEGED = ("friction", "mass", "motor", "force", "duration")


class Split:
    """Seed 0's training / held-out episodes (train_forecaster's split) and the baseline's scores on both."""

    def __init__(self, campaign: str) -> None:
        t0 = time.perf_counter()
        self.data = load_fall_data(campaign)
        self.train, self.val = self.data.split(0.1, 0)
        self.base_train = baseline_scores(self.train)["tilt_rate"]
        self.base_val = baseline_scores(self.val)["tilt_rate"]
        self._lead: dict[tuple[float, int], float] = {}
        print(
            f"{campaign}: {self.train.episodes} training / {self.val.episodes} held-out episodes "
            f"({int(self.val.fell.sum())} falls), loaded in {time.perf_counter() - t0:.1f} s",
            flush=True,
        )

    def baseline_lead(self, recall: float, consecutive: int = 1) -> float:
        """The tilt-rate baseline's median lead on the training split, tuned there to `recall`."""
        key = (round(recall, 6), consecutive)
        if key not in self._lead:
            rule = tune_for_recall(self.train, self.base_train, recall, consecutive, "tilt_rate")
            self._lead[key] = alarm_metrics(self.train, self.base_train, rule)["lead_time_median_s"]
        return self._lead[key]


def curve(split: Split, score: np.ndarray, name: str, consecutive: int = 1) -> list[dict]:
    rows = []
    for target in TARGETS:
        rule = tune_for_recall(split.val, score, target, consecutive, name)
        m = public(alarm_metrics(split.val, score, rule))
        base = split.baseline_lead(m["recall"], consecutive)
        m |= {"target": target, "baseline_lead_s": base, "ratio": m["lead_time_median_s"] / base}
        rows.append(m)
        print(
            f"  {name} recall target {target}: threshold {m['threshold']:.4f}, recall {m['recall']:.4f}, "
            f"recovered alarms {m['recovered_alarm_rate']:.4f}, false alarms/10 min "
            f"{m['false_alarms_per_10min']:.2f}, lead {m['lead_time_median_s']:.4f} s | tilt rate "
            f"{base:.4f} s | ratio {m['ratio']:.3f}",
            flush=True,
        )
    return rows


@torch.inference_mode()
def logits(net: nn.Module, data: FallData, window: int, extra: np.ndarray | None = None) -> np.ndarray:
    """(N, 3) logits at every sample of `data`."""
    out = []
    for a in range(0, data.samples, 16384):
        pos = np.arange(a, min(a + 16384, data.samples))
        x = torch.from_numpy(data.windows(pos, window))
        z = net(x, torch.from_numpy(extra[pos])) if extra is not None else net.logits(x)
        out.append(z.numpy())
    return np.concatenate(out)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def model_logits(split: Split, model: str) -> np.ndarray:
    path = Path(model)
    net, _ = load_forecaster(path / "fall_forecaster.pt" if path.is_dir() else path)
    return logits(net, split.val, net.cfg.window)


def first_alarm(data: FallData, score: np.ndarray, threshold: float) -> np.ndarray:
    """Per episode: the time of the first sample in [push start, fall) with score >= threshold (inf: none)."""
    watch, _ = _segments(data)
    on = watch & (score >= threshold)
    first = np.full(data.episodes, np.inf)
    np.minimum.at(first, data.ep[on], data.t[on])
    return first


def cmd_curve(args: argparse.Namespace, split: Split) -> None:
    for model in args.model:
        z = model_logits(split, model)
        print(model)
        curve(split, sigmoid(z[:, 1]), "p_fall_1s", args.consecutive)


def cmd_ensemble(args: argparse.Namespace, split: Split) -> None:
    z = np.mean([model_logits(split, m)[:, 1] for m in args.model], axis=0)
    print("mean logit of", " + ".join(args.model))
    curve(split, sigmoid(z), "ensemble p_fall_1s")


def cmd_timing(args: argparse.Namespace, split: Split) -> None:
    import json

    spec = json.loads((Path(args.model[0]) / "fall_forecaster.json").read_text())
    val = split.val
    p1 = sigmoid(model_logits(split, args.model[0])[:, 1])
    fm = first_alarm(val, p1, spec["alarm"]["threshold"])
    fb = first_alarm(val, split.base_val, spec["baselines"]["tilt_rate"]["threshold"])
    k = val.fell & ~val.standing & np.isfinite(fm) & np.isfinite(fb)
    dur = (val.push_end - val.push_start)[k]
    force = val.push_impulse[k] / dur
    fall = (val.fall_time - val.push_start)[k]
    dm, db = (fm - val.push_start)[k], (fb - val.push_start)[k]
    pct = (10, 25, 50, 75, 90)
    print(f"{int(k.sum())} held-out falls alarmed by both; percentiles {pct}, seconds after the push starts:")
    print(f"  forecaster first alarm {np.percentile(dm, pct).round(3)}")
    print(f"  tilt-rate first alarm  {np.percentile(db, pct).round(3)}")
    print(f"  fall                   {np.percentile(fall, pct).round(3)}")
    print(
        f"  forecaster alarm before the push ends: {np.mean(dm < dur):.3f}; baseline: {np.mean(db < dur):.3f}"
    )
    print(
        f"  impulse delivered at the forecaster's alarm (N s) {np.percentile(force * np.minimum(dm, dur), pct).round(1)}"
    )
    falls = val.push_impulse[val.fell & ~val.standing]
    rec = val.push_impulse[~val.fell & ~val.standing]
    print(f"  push impulse of falls, 1st/5th percentile: {np.percentile(falls, [1, 5]).round(1)} N s")
    print(f"  push impulse of non-falls, 95th/99th percentile: {np.percentile(rec, [95, 99]).round(1)} N s")
    print("  by push force: n, forecaster / baseline first alarm (median, s after push start), fall, leads")
    for lo, hi in ((0, 150), (150, 200), (200, 250), (250, 300), (300, 350), (350, 401)):
        s = (force >= lo) & (force < hi)
        print(
            f"    {lo}-{hi} N: {int(s.sum())}, {np.median(dm[s]):.3f} / {np.median(db[s]):.3f}, fall "
            f"{np.median(fall[s]):.3f}, lead {np.median(fall[s] - dm[s]):.3f} / {np.median(fall[s] - db[s]):.3f}"
        )


def cmd_rules(args: argparse.Namespace, split: Split) -> None:
    z = model_logits(split, args.model[0])
    p05, p1, ttf = sigmoid(z[:, 0]), sigmoid(z[:, 1]), 2.0 * sigmoid(z[:, 2])
    val = split.val
    rows = []

    def add(name: str, on: np.ndarray) -> None:
        m = public(alarm_metrics(val, on.astype(np.float64), AlarmRule(0.5, 1, "rule")))
        m["ratio"] = math.nan  # the baseline reaches no recall above 0.995 on the training split
        if 0.5 <= m["recall"] <= 0.995:
            m["ratio"] = m["lead_time_median_s"] / split.baseline_lead(m["recall"])
        rows.append((name, m))

    for c in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2):
        add(f"time_to_fall_s <= {c}", ttf <= c)
    for a in (0.95, 0.96, 0.97, 0.975, 0.98, 0.985, 0.99, 0.995):
        for b in (0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99):
            add(f"p_fall_1s >= {a} or p_fall_0_5s >= {b}", (p1 >= a) | (p05 >= b))
        for c in (0.1, 0.2, 0.3, 0.4, 0.5):
            for lo in (0.9, 0.93, 0.95, 0.97):
                if lo < a:
                    add(
                        f"p_fall_1s >= {a} or (p_fall_1s >= {lo} and ttf >= {c} s)",
                        (p1 >= a) | ((p1 >= lo) & (ttf >= c)),
                    )
    ok = [
        r
        for r in rows
        if 0.975 <= r[1]["recall"] <= 0.99
        and r[1]["recovered_alarm_rate"] <= 0.05
        and r[1]["false_alarms_per_10min"] <= 1.0
    ]
    ok.sort(key=lambda r: -r[1]["ratio"])
    print(
        f"{len(rows)} rules, {len(ok)} with recall 0.975-0.99 and the false-alarm goals; the best 10 by ratio:"
    )
    ttf_only = [r for r in rows if r[0].startswith("time_to_fall")]
    for name, m in ok[:10] + [("(all recalls) " + n, m) for n, m in ttf_only]:
        print(
            f"  {name}: recall {m['recall']:.4f}, recovered {m['recovered_alarm_rate']:.4f}, lead "
            f"{m['lead_time_median_s']:.4f} s, ratio {m['ratio']:.3f}"
        )


class Probe(nn.Module):
    """The forecaster's network with `k` privileged values per window concatenated to the head's input."""

    def __init__(self, cfg: ForecasterConfig, k: int) -> None:
        super().__init__()
        self.net = FallForecaster(cfg)
        first = self.net.head[0]
        if k:
            self.net.head[0] = nn.Linear(first.in_features + k, first.out_features)
        self.k = k

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None, noise: float = 0.0) -> torch.Tensor:
        h = self.net._trunk(x, noise)
        if self.k:
            h = torch.cat([h, extra], dim=1)
        return self.net.head(h)


def privileged(data: FallData, names: list[str]) -> np.ndarray:
    """(N, k) per sample: the episode's privileged quantities (see the module docstring), scaled to ~[0, 1]."""
    e = data.ep
    dur = np.where(data.standing, 0.0, data.push_end - data.push_start)
    force = np.where(data.standing, 0.0, data.push_impulse / np.maximum(dur, 1e-6))
    per_episode = {
        "friction": data.conditions[:, 0],
        "mass": data.conditions[:, 1],
        "motor": data.conditions[:, 2],
        "force": force / 400.0,
        "duration": dur / 0.25,
    }
    return np.stack([per_episode[n][e] for n in names], axis=1).astype(np.float32)


def probe_labels(data: FallData, label: str) -> list[torch.Tensor]:
    y05, y1, ttf = data.labels(2.0)
    if label == "eventual":
        e = data.ep
        y1 = (data.fell[e] & (data.t >= data.push_start[e] - 1e-6)).astype(np.float32)
    return [torch.from_numpy(v) for v in (y05, y1, ttf)]


def probe_loss(z: torch.Tensor, y05: torch.Tensor, y1: torch.Tensor, ttf: torch.Tensor) -> torch.Tensor:
    """train_forecaster's loss (unweighted): BCE(0.5 s) + BCE(1 s) + L1(time to fall) / horizon."""
    return (
        F.binary_cross_entropy_with_logits(z[:, 0], y05)
        + F.binary_cross_entropy_with_logits(z[:, 1], y1)
        + torch.mean(torch.abs(2.0 * torch.sigmoid(z[:, 2]) - ttf)) / 2.0
    )


def cmd_probe(args: argparse.Namespace, split: Split) -> None:
    names = [n for n in args.inputs.split(",") if n]
    bad = [n for n in names if n not in PRIVILEGED]
    if bad:
        raise SystemExit(f"unknown privileged inputs {bad}; known: {list(PRIVILEGED)}")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    train, val = split.train, split.val
    cfg = ForecasterConfig(n_joints=len(train.joint_names), window=50)
    net = Probe(cfg, len(names))
    rng = np.random.default_rng(args.seed)
    keep = ~train.standing[train.ep] | ((np.arange(train.samples) - train.start[train.ep]) % 4 == 0)
    pos = np.flatnonzero(keep)
    with torch.no_grad():
        f = features(
            torch.from_numpy(train.x[rng.choice(pos, min(len(pos), 200_000), replace=False)])[:, None]
        )
    net.net.set_normalisation(f[:, 0].mean(0), f[:, 0].std(0))
    y, vy = probe_labels(train, args.label), probe_labels(val, args.label)
    extra = torch.from_numpy(privileged(train, names)) if names else None
    vextra = privileged(val, names) if names else None
    vkeep = ~val.standing[val.ep] | ((np.arange(val.samples) - val.start[val.ep]) % 4 == 0)
    vpos = np.sort(rng.choice(np.flatnonzero(vkeep), size=50_000, replace=False))
    vx = torch.from_numpy(val.windows(vpos, cfg.window))
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-3)
    per_epoch = len(pos) // 512
    total = int(per_epoch * args.epochs)
    best, best_state, t0 = math.inf, None, time.perf_counter()
    order = rng.permutation(pos)
    print(f"probe: privileged {names or 'none'}, label {args.label}, {total} steps", flush=True)
    for step in range(total):
        frac = step / total
        for group in opt.param_groups:
            group["lr"] = 2e-3 * min(1.0, frac / 0.03) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        b = step % per_epoch
        if b == 0 and step:
            order = rng.permutation(pos)
        idx = torch.from_numpy(order[b * 512 : (b + 1) * 512])
        net.train()
        z = net(
            torch.from_numpy(train.windows(idx.numpy(), cfg.window)),
            None if extra is None else extra[idx],
            0.05,
        )
        loss = probe_loss(z, *(v[idx] for v in y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 500 == 0 or step == total - 1:
            net.eval()
            with torch.inference_mode():
                vloss = 0.0
                for a in range(0, len(vpos), 8192):
                    i = vpos[a : a + 8192]
                    e = None if vextra is None else torch.from_numpy(vextra[i])
                    vloss += float(probe_loss(net(vx[a : a + 8192], e), *(v[i] for v in vy))) * len(i)
                vloss /= len(vpos)
            print(
                f"  step {step + 1} (epoch {(step + 1) / per_epoch:.2f}): held-out loss {vloss:.4f}, "
                f"{(time.perf_counter() - t0) / 60:.1f} min",
                flush=True,
            )
            if vloss < best:
                best, best_state = vloss, {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    net.eval()
    z = logits(net, val, cfg.window, vextra if vextra is not None else np.zeros((val.samples, 0), np.float32))
    print(f"best held-out loss {best:.4f}")
    curve(split, sigmoid(z[:, 1]), "p_fall_1s" if args.label == "1s" else "p_fall_eventual")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("curve", "timing", "rules", "probe", "ensemble"))
    ap.add_argument("--campaign", default="runs/falls_train_s0", help="the training campaign (seed 0)")
    ap.add_argument("--model", nargs="+", default=["models/fall_forecaster_laikago"])
    ap.add_argument("--consecutive", type=int, default=1)
    ap.add_argument("--inputs", default="", help=f"probe: comma list of {PRIVILEGED}")
    ap.add_argument("--label", choices=("1s", "eventual"), default="1s")
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    split = Split(args.campaign)
    {
        "curve": cmd_curve,
        "timing": cmd_timing,
        "rules": cmd_rules,
        "probe": cmd_probe,
        "ensemble": cmd_ensemble,
    }[args.command](args, split)


if __name__ == "__main__":
    main()
