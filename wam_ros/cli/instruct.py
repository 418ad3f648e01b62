"""`wam instruct`: what a model understands of an instruction, word by word.

    wam instruct --model models/panda_tabletop "please reach the reds tagret"
    wam instruct --model run/model.pt --json "shove the box onto the blue mat"

Prints every word as known, mapped to a vocabulary word (a typo or an inflection, by the tokenizer's character
fallback) or unknown (the model reads it as <unk>); the task and colour the word lists recognise; and the attention
of the action queries on each word in the last transformer block, computed on a rendered tabletop scene of that
task (--scene-seed; --no-scene: mid-grey frames, the instruction alone). Exit status 0; 2 on a bad model or text.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("text", help="the instruction, quoted")
    p.add_argument("--model", required=True, help="model directory (with model.pt) or .pt checkpoint")
    p.add_argument(
        "--scene-seed", type=int, default=0, help="seed of the tabletop scene the attention is read on"
    )
    p.add_argument("--no-scene", action="store_true", help="attention on mid-grey frames (no simulator)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--threads", type=int, default=1)


def format_report(r: dict) -> str:
    lines = [f"instruction: {r['instruction']!r}"]
    if r.get("scene"):
        lines.append(f"attention read on: {r['scene']['task']} scene seed {r['scene']['seed']}")
    lines.append(f"{'word':<16} {'reads as':<22} attention")
    for w in r["words"]:
        if w["status"] == "known":
            reads = "known"
        elif w["status"] == "mapped":
            reads = f"-> {w['maps_to']}"
        elif w["status"] == "truncated":
            reads = f"(past {r['max_tokens']} words: dropped)"
        else:
            reads = "UNKNOWN (<unk>)"
        att = "" if w["attention"] is None else f"{w['attention']:.3f} " + "#" * round(40 * w["attention"])
        lines.append(f"{w['word']:<16} {reads:<22} {att}")
    hits = {t: ", ".join(ws) or "-" for t, ws in r["task_words"].items()}
    lines.append(
        f"task: {r['task'] or 'not recognised'} (reach words: {hits['reach']}; push words: {hits['push']})"
    )
    colour = r["colour"] or ("several: " + ", ".join(r["colours"]) if r["colours"] else "none")
    lines.append(
        f"colour: {colour}; most attended word: {r['attended_word']}; colour attended: {r['attended_colour']}"
    )
    g = r["attention_groups"]
    lines.append("action-query attention: " + ", ".join(f"{k} {v:.2f}" for k, v in g.items()))
    if r["unknown"]:
        lines.append(f"unknown words (read as <unk>): {', '.join(r['unknown'])}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from wam_ros.cli import config_from_args
    from wam_ros.model.checkpoint import CheckpointError
    from wam_ros.train.phrasings import InstructConfig, instruct

    cfg = config_from_args(InstructConfig, args, scene_seed=None if args.no_scene else args.scene_seed)
    try:
        report = instruct(cfg)
    except (ValueError, FileNotFoundError, CheckpointError) as exc:
        print(f"wam instruct: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
