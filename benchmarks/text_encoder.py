"""What a pretrained instruction encoder costs at run time (issue 17 item 2): once per new instruction, not per step.

    .venv/bin/python benchmarks/text_encoder.py                                  # BERT-mini and BERT-base sizes
    .venv/bin/python benchmarks/text_encoder.py --sizes 256x4 --json runs/text_encoder.json
    .venv/bin/python benchmarks/text_encoder.py --model models/my_bert_model     # an exported folder of yours

Without --model, for each size HIDDENxLAYERS it builds locally (nothing is downloaded) a BERT of that size with
random weights (the cost of a forward pass does not depend on the weights) and a WordPiece vocabulary of the
tabletop words, a tiny WAM that reads it (untrained: only the latency matters), exports both with `wam export`'s
code, and opens the folder with load_policy on onnxruntime, 1 thread, as wam_node does. Then, interleaved:
    new instruction   Policy.tokens(a string it has not seen): tokenizer + text_encoder.onnx (what a message on
                      wam/instruction costs, once)
    cached            Policy.tokens(the same string again): what every control step pays for the instruction
    predict           Policy.predict() with a repeated instruction (the control step itself, for scale)
p50 / p99 / max over --reps calls each. Prints a table; --json writes the figures.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from wam_ros.model.config import BASE_VOCAB

# the word models' own vocabulary plus paraphrase words it lacks
WORDS = [
    *BASE_VOCAB,
    "please",
    "could",
    "you",
    "now",
    "pad",
    "sphere",
    "dot",
    "button",
    "shove",
    "box",
    "mat",
    "tap",
]


def build_bert(out: Path, hidden: int, layers: int) -> None:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    letters = [c for c in "abcdefghijklmnopqrstuvwxyz"]
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *WORDS,
        *letters,
        *[f"##{c}" for c in letters],
        ",",
        "?",
    ]
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        intermediate_size=4 * hidden,
        max_position_embeddings=64,
    )
    BertModel(cfg).save_pretrained(out)
    BertTokenizerFast(vocab=str(out / "vocab.txt")).save_pretrained(out)


def build_model(root: Path, hidden: int, layers: int, preset: str) -> Path:
    """A WAM (untrained, identity normaliser) reading a locally built BERT, exported to root/model."""
    import torch

    from wam_ros.export.onnx_export import ExportConfig, export_model
    from wam_ros.model import WamConfig, WorldActionModel, save_checkpoint

    build_bert(root / "bert", hidden, layers)
    cfg = WamConfig.preset(preset, instruction_encoder=f"hf:{root / 'bert'}", text_dim=hidden, max_tokens=24)
    model = WorldActionModel(cfg)
    J, N = cfg.num_joints, cfg.chunk
    model.set_normalizer(torch.zeros(J), torch.ones(J), torch.zeros(N, J), torch.ones(N, J))
    ckpt = save_checkpoint(root / "run" / "model.pt", model)
    export_model(ckpt, root / "model", ExportConfig(fp16=False, check_batches=(1,)))
    return root / "model"


def stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
    }


def measure(model: Path, reps: int) -> dict:
    from wam_ros.runtime import load_policy

    policy = load_policy(model, backend="onnxruntime", threads=1)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    q = np.zeros(policy.spec.num_joints)
    colours = ["red", "green", "blue", "yellow", "purple", "orange"]
    verbs = [
        "reach the",
        "go to the",
        "please touch the",
        "tap the",
        "push the cube onto the",
        "shove the box onto the",
    ]
    nouns = ["target", "pad", "zone", "dot", "button", "area", "mat", "marker"]
    fillers = ["", " now", " please", " carefully"]
    texts = [f"{v} {c} {n}{f}" for f in fillers for v in verbs for c in colours for n in nouns][:reps]
    if len(texts) < reps:
        raise ValueError(f"--reps must be <= {len(texts)} (distinct instructions)")
    policy.tokens("reach the red target")  # warm-up: first session run
    policy.predict({"images": [img], "joint_pos": q, "instruction": "reach the red target"})
    new, cached, predict = [], [], []
    for text in texts:  # interleaved, so a load change on the machine touches all three alike
        t0 = time.perf_counter()
        policy.tokens(text)
        t1 = time.perf_counter()
        policy.tokens(text)
        t2 = time.perf_counter()
        policy.predict({"images": [img], "joint_pos": q, "instruction": text})
        t3 = time.perf_counter()
        new.append((t1 - t0) * 1e3)
        cached.append((t2 - t1) * 1e3)
        predict.append((t3 - t2) * 1e3)
    enc = policy.tokenizer
    return {
        "encoder": repr(enc),
        "encoder_bytes": (model / "text_encoder.onnx").stat().st_size,
        "encoder_runs": enc.calls,
        "new_instruction": stats(new),
        "cached": stats(cached),
        "predict": stats(predict),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model", default=None, help="an exported folder with text_encoder.onnx (skips the build)"
    )
    ap.add_argument(
        "--sizes", nargs="+", default=["256x4", "768x12"], help="BERT sizes HIDDENxLAYERS to build"
    )
    ap.add_argument("--preset", default="small", help="WAM preset of the built model")
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    rows = {}
    if a.model:
        rows[a.model] = measure(Path(a.model), a.reps)
    for size in [] if a.model else a.sizes:
        hidden, layers = (int(x) for x in size.split("x"))
        with tempfile.TemporaryDirectory(prefix="wam_te_bench_") as tmp:
            rows[f"bert {size}"] = measure(build_model(Path(tmp), hidden, layers, a.preset), a.reps)
    print(
        f"{'encoder':<14} {'onnx MB':>8} {'new instruction p50/p99':>24} {'cached p50/p99':>18} {'predict p50/p99':>18}"
    )
    for name, r in rows.items():
        n, c, p = r["new_instruction"], r["cached"], r["predict"]
        print(
            f"{name:<14} {r['encoder_bytes'] / 2**20:>8.1f} {n['p50_ms']:>11.2f} / {n['p99_ms']:>6.2f} ms "
            f"{c['p50_ms'] * 1e3:>7.1f} / {c['p99_ms'] * 1e3:>5.1f} us {p['p50_ms']:>7.2f} / {p['p99_ms']:>6.2f} ms"
        )
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
