"""`wam train`: train the joint WAM on episodes (progress bar, checkpoints, resume, seeded, DDP via torchrun).

    wam train --data data/reach data/push --preset small --out runs/panda --steps 6000
    wam train --data data/reach --preset tiny --out /tmp/r --steps 20 --resume       # continue a run
    wam train --data data/reach --out runs/gpu --device cuda --amp bf16 --workers 4    # one GPU
    wam train --data data/cams_push --cameras front wrist --out runs/cams --steps 3000  # two cameras (issue 19)
    torchrun --nproc_per_node 2 -m wam_ros.cli.train --data data/reach --out runs/ddp   # 2 CPU processes, gloo
    torchrun --nproc_per_node 4 -m wam_ros.cli.train --data data/reach --out runs/ddp --device cuda   # 4 GPUs, nccl

The options are the fields of wam_ros.train.train.TrainConfig; what the run writes is in that module's docstring;
docs/training.md has the GPU and DDP recipes. Exit status 0 on success, 2 on bad arguments or data, and when
--device cuda is asked where CUDA cannot run (the message names what is missing; nothing falls back to the CPU).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from wam_ros.cli import config_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    from wam_ros.model.config import PRESETS
    from wam_ros.train.train import TrainConfig

    d = TrainConfig(data=["x"], out="x")
    p.add_argument("--data", nargs="+", required=True, help="episode directories (e.g. data/reach data/push)")
    p.add_argument("--out", required=True, help="run directory (model.pt, train_state.pt, metrics.csv, PNG)")
    p.add_argument("--preset", default=d.preset, choices=sorted(PRESETS))
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument(
        "--batch-size", type=int, default=d.batch_size, help="global batch (split across DDP ranks)"
    )
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--warmup", type=int, default=d.warmup)
    p.add_argument("--frame-weight", type=float, default=d.frame_weight, help="0 = action-only ablation")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads per process")
    p.add_argument("--ckpt-every", type=int, default=d.ckpt_every)
    p.add_argument("--eval-every", type=int, default=d.eval_every)
    p.add_argument("--val-frac", type=float, default=d.val_frac, help="fraction of episodes held out")
    p.add_argument(
        "--max-minutes", type=float, default=d.max_minutes, help="stop (and save) after this wall time"
    )
    p.add_argument("--resume", action="store_true", help="continue from <out>/train_state.pt")
    p.add_argument(
        "--device",
        default=d.device,
        choices=["cpu", "cuda", "auto"],
        help="cpu (default); cuda (refused with the reason where CUDA cannot run; cuda:LOCAL_RANK under torchrun); "
        "auto: cuda when it works, else cpu",
    )
    p.add_argument(
        "--amp",
        default=d.amp,
        choices=["off", "bf16", "fp16"],
        help="mixed precision: off (fp32, default), bf16 (autocast), fp16 (autocast + GradScaler)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=d.workers,
        help="DataLoader worker processes gathering batches (0: in the training process; pinned memory on cuda)",
    )
    p.add_argument(
        "--init",
        default=None,
        help="warm start from this checkpoint: every weight whose shape fits is copied (new heads start fresh)",
    )
    p.add_argument(
        "--augment-instructions",
        type=float,
        default=0.0,
        metavar="P",
        help="paraphrase each window's instruction with probability P (verbs, nouns, order, fillers, typos, "
        "dropped/unknown words; wam_ros.model.paraphrase); 0: off",
    )
    p.add_argument(
        "--instruction-encoder",
        default=d.instruction_encoder,
        metavar="SPEC",
        help="words (default: the learned vocabulary) | hf:<name or local dir> (a frozen transformers encoder, "
        "local files only) | onnx:<dir> (text_encoder.onnx + tokenizer.json); docs/language.md",
    )
    p.add_argument(
        "--cameras",
        nargs="+",
        default=list(d.cameras),
        metavar="NAME",
        help="the model's cameras (default: one, the episodes' frames), e.g. --cameras front wrist: the first is "
        "the episodes' frames and the one predicted, each other is read from their <name>_frames (docs/model.md)",
    )
    p.add_argument(
        "--max-tokens",
        type=int,
        default=d.max_tokens,
        help="instruction length in tokens (0: the preset's 12 words, or 24 subword tokens with a pretrained encoder)",
    )


def run(args: argparse.Namespace) -> int:
    from wam_ros.train.train import TrainConfig, train

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = config_from_args(TrainConfig, args, cameras=tuple(args.cameras))
        path = train(cfg)
    except (ValueError, FileNotFoundError) as exc:
        print(f"wam train: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"wam train: wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point for `python -m wam_ros.cli.train` (what torchrun launches)."""
    p = argparse.ArgumentParser(prog="wam train")
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
