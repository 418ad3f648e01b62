"""Phrasing robustness (issue 17): closed-loop success with the training template against each held-out phrasing,
on the same unseen scenes, and a colour changed mid-episode (retarget).

    .venv/bin/python benchmarks/paraphrase.py --model models/panda_tabletop                   # 50 seeds per task
    .venv/bin/python benchmarks/paraphrase.py --model run/model.pt --seeds 10 --json runs/paraphrase.json

Per task: the template phrasing ("reach the {colour} target" / "push the cube onto the {colour} pad") and every
template of --phrasings (default config/phrasings/heldout.yaml: verbs and nouns the augmentation never uses), seeds
--seed-start .. +--seeds (default 1,000,000+, never training seeds). The ratio column is a phrasing's success over the
template's (goal: >= 0.90 on both tasks). Retarget: reach, the instruction switches to another target's colour after
--switch-step steps through ChunkPolicy.set_instruction (what wam_node does on /wam/instruction); success = the arm
reaches the NEW target (goal: >= 9/10). Prints a table; --json writes everything (per-seed outcomes included).

    .venv/bin/python benchmarks/paraphrase.py --batch-cost       # training cost: a batch of 64 windows, augmented or not

--batch-cost times WindowArrays.batch on 40 random 40-step episodes (64x64) with the cached template tokens and with
augment_instruction (p50 / p99 over 500 batches; no model needed).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from wam_ros.fileio import atomic_write_text
from wam_ros.runtime import load_policy
from wam_ros.train.phrasings import load_phrasings, phrasing_closed_loop, retarget_closed_loop

TEMPLATES = {"reach": "reach the {colour} target", "push": "push the cube onto the {colour} pad"}


def run(a: argparse.Namespace) -> dict:
    policy = load_policy(a.model, backend=a.backend, threads=a.threads)
    size, hz = int(policy.spec.image_size[0]), int(round(policy.spec.control_hz))
    phrasings = load_phrasings(a.phrasings)
    seeds = list(range(a.seed_start, a.seed_start + a.seeds))
    out: dict = {
        "model": str(a.model),
        "phrasings": str(a.phrasings),
        "seed_start": a.seed_start,
        "seeds": a.seeds,
        "replan": a.replan,
        "backend": policy.backend_name,
        "tasks": {},
    }
    t0 = time.monotonic()
    for task in a.tasks:
        templates = [TEMPLATES[task]] + [t for t in phrasings.get(task, []) if t != TEMPLATES[task]]
        res = phrasing_closed_loop(policy, task, templates, seeds, a.replan, size, hz, progress=a.progress)
        base = res[TEMPLATES[task]]["success_rate"]
        rows = {
            t: {**r, "ratio_to_template": (r["success_rate"] / base) if base > 0 else None}
            for t, r in res.items()
        }
        held = [r["success_rate"] for t, r in rows.items() if t != TEMPLATES[task]]
        out["tasks"][task] = {
            "template": TEMPLATES[task],
            "template_success_rate": base,
            "heldout_mean_success_rate": sum(held) / len(held) if held else None,
            "heldout_min_success_rate": min(held) if held else None,
            "phrasings": rows,
        }
    if a.retarget > 0:
        out["retarget"] = retarget_closed_loop(
            policy, range(a.seed_start, a.seed_start + a.retarget), a.replan, a.switch_step, size, hz
        )
    out["wall_s"] = time.monotonic() - t0
    return out


def batch_cost(batches: int = 500, size: int = 64) -> None:
    """p50 / p99 ms of WindowArrays.batch(64 windows) with the cached tokens and with augment_instruction."""
    import numpy as np

    from wam_ros.data.windows import WindowArrays
    from wam_ros.model.config import WamConfig
    from wam_ros.model.paraphrase import augment_instruction, lexicon
    from wam_ros.model.tokenizer import Tokenizer, extend_vocab
    from wam_ros.train.synthetic import synthetic_episode

    colours = ["red", "green", "blue", "yellow"]
    episodes = []
    for s in range(40):
        ep = synthetic_episode(s, steps=40, task="push" if s % 2 else "reach")
        ep.meta["instruction"] = TEMPLATES[ep.task].format(colour=colours[s % 4])  # the tabletop's templates
        episodes.append(ep)
    texts = [t.format(colour=c) for t in TEMPLATES.values() for c in colours] + lexicon()
    tok = Tokenizer(extend_vocab(WamConfig.preset("tiny").vocab, texts), 12)
    rng = np.random.default_rng(0)
    print(f"WindowArrays.batch, {size} windows of 40 episodes (64x64, K=2, N=8), {batches} batches (ms)")
    for name, aug in (("cached template tokens", None), ("augment_instruction", augment_instruction)):
        data = WindowArrays(episodes, 2, 8, 64, tok, augment=aug)
        times = []
        for _ in range(batches + 20):
            idx = rng.choice(len(data), size, replace=False)
            t = time.perf_counter()
            data.batch(idx)
            times.append(time.perf_counter() - t)
        ms = np.asarray(times[20:]) * 1e3
        print(f"  {name:<24} p50 {np.percentile(ms, 50):.2f}  p99 {np.percentile(ms, 99):.2f}")


def table(res: dict) -> str:
    lines = [f"model {res['model']}; seeds {res['seed_start']}..+{res['seeds']}; replan {res['replan']}"]
    for task, r in res["tasks"].items():
        lines.append(f"\n{task}: {'phrasing':<52} success   ratio to template")
        for t, row in r["phrasings"].items():
            ratio = "-" if row["ratio_to_template"] is None else f"{row['ratio_to_template']:.2f}"
            mark = " (template)" if t == r["template"] else ""
            lines.append(
                f"  {t + mark:<58} {row['successes']:>3}/{row['episodes']:<3} {100 * row['success_rate']:5.1f} %  {ratio}"
            )
        if r["heldout_mean_success_rate"] is not None:
            lines.append(
                f"  held-out mean {100 * r['heldout_mean_success_rate']:.1f} %, min "
                f"{100 * r['heldout_min_success_rate']:.1f} % (template {100 * r['template_success_rate']:.1f} %)"
            )
    if "retarget" in res:
        rt = res["retarget"]
        lines.append(
            f"\nretarget (reach, colour switched after {rt['switch_step']} steps): "
            f"{rt['successes']}/{rt['episodes']} reached the new target"
        )
    lines.append(f"wall {res['wall_s']:.1f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model directory or .pt checkpoint (required unless --batch-cost)")
    ap.add_argument(
        "--batch-cost", action="store_true", help="only time augmented training batches (no model)"
    )
    ap.add_argument("--phrasings", default=str(Path(__file__).parents[1] / "config/phrasings/heldout.yaml"))
    ap.add_argument("--tasks", nargs="+", default=["reach", "push"], choices=sorted(TEMPLATES))
    ap.add_argument("--seeds", type=int, default=50, help="scenes per task and phrasing")
    ap.add_argument("--seed-start", type=int, default=1_000_000)
    ap.add_argument("--retarget", type=int, default=10, help="retarget episodes (0: skip)")
    ap.add_argument("--switch-step", type=int, default=5)
    ap.add_argument("--replan", type=int, default=4)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--progress", action="store_true", help="a progress bar per phrasing on stderr")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)
    if a.batch_cost:
        batch_cost()
        return 0
    if not a.model:
        ap.error("--model is required (or --batch-cost)")
    res = run(a)
    print(table(res))
    if a.json:
        atomic_write_text(a.json, json.dumps(res, indent=2))
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
