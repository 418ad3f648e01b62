"""`wam eval`: offline and closed-loop evaluation of the joint WAM, always beside its baselines in the same run.

    wam eval --model models/panda_tabletop --ablation runs/ablation/model.pt \
        --data data/reach_eval data/push_eval --train-data data/reach data/push \
        --tasks reach push --episodes 50 --out runs/eval

The options are the fields of wam_ros.train.evaluate.EvalConfig (what each measures is in that module's docstring).
Writes results.json and results.md into --out and prints the Markdown. Exit status 0, or 2 on bad arguments or data.
"""

from __future__ import annotations

import argparse
import logging
import sys

from wam_ros.cli import config_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model directory or .pt checkpoint")
    p.add_argument("--ablation", default=None, help="action-only checkpoint (same network, frame weight 0)")
    p.add_argument(
        "--data", nargs="*", default=[], help="held-out episode directories for the offline metrics"
    )
    p.add_argument(
        "--train-data", nargs="*", default=[], help="training episode dirs: eval seeds must not occur"
    )
    p.add_argument("--tasks", nargs="+", default=["reach", "push"])
    p.add_argument(
        "--robot",
        default=None,
        help="robot profile the closed loop simulates (default: the one the model was trained for)",
    )
    p.add_argument("--episodes", type=int, default=50, help="closed-loop episodes per task (0: offline only)")
    p.add_argument("--seed-start", type=int, default=1_000_000, help="first closed-loop scene seed")
    p.add_argument("--replan", type=int, default=4, help="actions executed per predicted chunk")
    p.add_argument("--horizon", type=int, default=8, help="imagination horizon for the frame metrics")
    p.add_argument("--max-windows", type=int, default=512, help="held-out windows for the frame metrics")
    p.add_argument("--backend", default="torch", help="runtime backend for the closed loop")
    p.add_argument("--ablation-closed-loop", action="store_true", help="also run the ablation in closed loop")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/eval", help="directory for results.json + results.md")
    p.add_argument(
        "--planner",
        default=None,
        choices=["best_of_n", "none"],
        help="also run the imagining planner (closed_loop.<task>.wam_plan; needs a model trained with imagination)",
    )
    p.add_argument(
        "--phrasings",
        default=None,
        help="YAML of instruction templates per task with a {colour} slot; every scene is also run with each template "
        "(closed_loop.<task>.phrasings.<template>.success_rate)",
    )
    p.add_argument("--candidates", type=int, default=16, help="planner: candidate chunks per decision (N)")
    p.add_argument(
        "--planner-score",
        default="goal",
        choices=["success", "progress", "goal", "mix"],
        help="planner: how the critic ranks imagined futures (docs/planning.md)",
    )
    p.add_argument(
        "--planner-noise", type=float, default=0.05, help="planner: perturbation (rad at chunk end)"
    )
    p.add_argument(
        "--planner-margin",
        type=float,
        default=0.05,
        help="planner: another candidate replaces the policy's own chunk only when it scores this much higher "
        "(default 0.05: a trust region around the policy's own chunk)",
    )
    p.add_argument(
        "--planner-proximity",
        type=float,
        default=2.0,
        help="planner: score penalty per rad of a candidate's rms distance from the policy's own chunk",
    )
    p.add_argument(
        "--planner-trigger",
        default="stall",
        choices=["always", "stall"],
        help="planner: choose at every decision (always) or leave the policy's own chunk only when the critic sees "
        "the robot stalled (stall; docs/planning.md)",
    )
    p.add_argument("--plan-backend", default="torch", help="planner graphs: torch | onnxruntime")
    p.add_argument(
        "--no-plan-baselines",
        dest="plan_baselines",
        action="store_false",
        help="planner: skip the oracle and random-pick comparisons",
    )
    p.add_argument(
        "--rank-check",
        action="store_true",
        help="planner: at each of its decisions also roll every feasible candidate out in a copy of the simulator "
        "and score the critic's ranking against the true outcomes (closed_loop.<task>.critic_ranking); the roll-outs "
        "perturb the simulator in its last digits, so take the planner's success rate from a run without it",
    )


def run(args: argparse.Namespace) -> int:
    from wam_ros.train.evaluate import EvalConfig, evaluate, render_markdown, write_results

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = config_from_args(EvalConfig, args)
        res = evaluate(cfg)
    except (ValueError, FileNotFoundError) as exc:
        print(f"wam eval: {exc}", file=sys.stderr)
        return 2
    json_path, md_path = write_results(res, cfg.out)
    print(render_markdown(res))
    print(f"wrote {json_path} and {md_path}")
    return 0
