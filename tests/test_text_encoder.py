"""A pluggable pretrained instruction encoder (issue 17 item 2), on a real BERT built here from a config.

A tiny BertModel (hidden 32, 2 layers) and a WordPiece tokenizer over a vocabulary written in the test are saved with
transformers' save_pretrained: nothing is downloaded. A tiny imagining WAM is trained on it (`instruction_encoder:
hf:<dir>`), exported (text_encoder.onnx + tokenizer.json + graphs that take the embedding), run without torch or
transformers in a subprocess, and driven over real DDS by wam_node with instructions arriving on wam/instruction.
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
import torch
from rclpy.context import Context
from ros_fixtures import commands, diagnostics, run_probe, wam_node_running

from wam_ros.export.onnx_export import ExportConfig, export_model
from wam_ros.model import WamConfig, WorldActionModel, load_checkpoint
from wam_ros.model.text_encoder import HFTextEncoder, TextEncoderError
from wam_ros.runtime import load_policy
from wam_ros.runtime.model_dir import TEXT_ENCODER, TEXT_TOKENIZER, IntegrityError, read_manifest
from wam_ros.runtime.plan_backends import open_plan_backend
from wam_ros.runtime.text_encoder import OnnxTextEncoder, attach_text_encoder, open_instruction_encoder
from wam_ros.train.phrasings import explain_instruction
from wam_ros.train.synthetic import write_synthetic_episodes
from wam_ros.train.train import TrainConfig, train

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parent.parent
L = 16  # instruction tokens (subwords + [CLS]/[SEP])
WORDS = [
    "reach",
    "push",
    "the",
    "to",
    "onto",
    "target",
    "cube",
    "pad",
    "red",
    "green",
    "blue",
    "yellow",
    "go",
    "move",
    "block",
    "please",
]
SUBWORDS = ["##s", "##ed", "##ing", "##e", "##r", "a", "b", "c", "##a", "##t", ",", "?", "."]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    """A tiny BERT + its fast WordPiece tokenizer, built from a config and saved locally (nothing downloaded)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    out = tmp_path_factory.mktemp("bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *SUBWORDS]
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab=str(out / "vocab.txt"))
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def training(bert_dir, tmp_path_factory) -> tuple[TrainConfig, Path]:
    """A tiny imagining WAM trained a few steps with the BERT as its frozen instruction encoder (paraphrases on)."""
    root = tmp_path_factory.mktemp("te_train")
    write_synthetic_episodes(root / "reach", n=6, steps=10, seed=0)
    write_synthetic_episodes(root / "push", n=3, steps=10, seed=1, task="push")
    cfg = TrainConfig(
        data=[str(root / "reach"), str(root / "push")],
        out=str(root / "run"),
        preset="tiny_imagine",
        steps=6,
        batch_size=8,
        warmup=2,
        threads=1,
        ckpt_every=6,
        eval_every=6,
        val_frac=0.2,
        instruction_encoder=f"hf:{bert_dir}",
        max_tokens=L,
        augment_instructions=0.5,
    )
    return cfg, train(cfg)


@pytest.fixture(scope="module")
def trained(training) -> Path:
    return training[1]


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("te_model") / "model"
    # fp32 only: fp16 parity on 6 tiny synthetic episodes is a matter of their joint statistics, not of the encoder
    export_model(trained, out, ExportConfig(fp16=False))
    return out


def _count_runs(encoder) -> list[int]:
    """Count the real encoder's runs (its own _run, still called) and the strings in each."""
    runs: list[int] = []
    real = encoder._run

    def counted(ids, mask):
        runs.append(len(ids))
        return real(ids, mask)

    encoder._run = counted
    return runs


def test_encoder_runs_once_per_distinct_instruction(bert_dir):
    enc = HFTextEncoder(str(bert_dir), L)
    runs = _count_runs(enc)
    a = enc.encode("reach the red target")
    assert a.shape == (L, 32) and a.dtype == np.float32
    again = enc.encode("reach the red target")
    np.testing.assert_array_equal(a, again)
    assert runs == [1]  # the repeated instruction is a cache hit
    b = enc.encode("push the cube onto the blue pad")
    assert runs == [1, 1]  # a new instruction runs the encoder again
    batch = enc.encode_batch(["reach the red target", "go to the green target", "go to the green target"])
    assert runs == [1, 1, 1]  # one run for the one new string, however often it repeats
    np.testing.assert_array_equal(batch[0], a)
    np.testing.assert_array_equal(batch[1], batch[2])
    assert not np.allclose(a, b) and not np.allclose(batch[0], batch[1])  # different instructions differ
    # [CLS] reach the red target [SEP]: 6 real rows, the padding rows are exactly zero
    real = np.abs(a).max(-1) > 0
    assert real.tolist() == [True] * 6 + [False] * (L - 6)
    a[:] = 0  # a caller's copy: the cache is not changed
    np.testing.assert_array_equal(enc.encode("reach the red target"), again)
    # a DataLoader worker's copy reopens the encoder from its source, with an empty cache
    worker = pickle.loads(pickle.dumps(enc))
    np.testing.assert_array_equal(worker.encode("reach the red target"), again)
    assert worker.encoded == 1
    # what the encoder understood: subword tokens, words it reads as [UNK] named as written
    assert enc.unknown_words("Reach the reds zorblax, now!") == ["zorblax", "now", "!"]
    assert enc.explain("reach the reds tagret")[:6] == [
        ("[CLS]", "[CLS]"),
        ("reach", "reach"),
        ("the", "the"),
        ("red", "red"),
        ("##s", "##s"),
        ("tagret", None),
    ]
    long = enc.explain(
        " ".join(["go to the red target"] * 5)
    )  # 25 words: the rows past L are the dropped ones
    assert len(long) == 1 + 25 + 1 and long[L - 1] == ("[SEP]", "[SEP]")


def test_words_models_are_unchanged():
    cfg = WamConfig.preset("tiny")
    assert cfg.instruction_encoder == "words" and cfg.text_dim == 0
    names = set(WorldActionModel(cfg).state_dict())
    assert "word_emb.weight" in names and not any(n.startswith("text_") for n in names)
    old = cfg.to_dict()
    del old["instruction_encoder"], old["text_dim"]  # a checkpoint config from before the field
    assert WamConfig.from_dict(old) == cfg
    shipped = load_checkpoint(ROOT / "models" / "panda_tabletop")  # the shipped model loads as it is
    assert shipped.cfg.instruction_encoder == "words"
    policy = load_policy(ROOT / "models" / "panda_tabletop", backend="onnxruntime", threads=1)
    assert policy.tokens("reach the red target").dtype == np.int64
    assert "text_dim" not in policy.spec.to_dict()  # a words model's spec is the spec of before


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"instruction_encoder": "bert-base-uncased"}, "'hf:<name or local dir>'"),
        ({"instruction_encoder": "hf:"}, "'hf:<name or local dir>'"),
        ({"instruction_encoder": "tfhub:x", "text_dim": 8}, "'onnx:<dir>'"),
        ({"instruction_encoder": "hf:/x"}, "needs text_dim"),
        ({"text_dim": 8}, "text_dim is 8 but instruction_encoder is 'words'"),
    ],
)
def test_bad_encoder_configs_are_refused(fields, needle):
    with pytest.raises(ValueError, match="instruction_encoder|text_dim") as err:
        WamConfig.preset("tiny", **fields)
    assert needle in str(err.value)


def test_a_name_that_is_not_local_is_an_error_not_a_download(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(TextEncoderError, match="nothing is downloaded"):
        HFTextEncoder("wam-ros-test/no-such-model", L)
    with pytest.raises(TextEncoderError, match="nothing is downloaded"):
        HFTextEncoder(str(tmp_path / "missing_dir"), L)
    assert time.monotonic() - t0 < 30
    with pytest.raises(ValueError, match="instruction_encoder must be"):
        TrainConfig(data=["x"], out="y", instruction_encoder="bert-base-uncased")


def test_trained_model_and_export(trained, exported, bert_dir):
    model = attach_text_encoder(load_checkpoint(trained, require_fitted=True), trained)
    cfg = model.cfg
    assert (cfg.instruction_encoder, cfg.text_dim, cfg.max_tokens) == (f"hf:{bert_dir}", 32, L)
    assert isinstance(model.tokenizer, HFTextEncoder)  # no exported encoder beside a training run: the source
    names = set(model.state_dict())
    assert {"text_proj.weight", "text_norm.weight"} <= names and "word_emb.weight" not in names
    files = read_manifest(exported)
    assert TEXT_ENCODER in files and TEXT_TOKENIZER in files  # hashed with the graphs
    report = json.loads((exported / "export.json").read_text())
    assert report["files"][TEXT_ENCODER]["max_err"] <= 1e-4

    # the exported encoder: the same ids and (within fp32 rounding) the same embedding as transformers
    onnx_enc = open_instruction_encoder(cfg.to_dict(), exported, local_only=True)
    assert isinstance(onnx_enc, OnnxTextEncoder)
    texts = ["reach the red target", "please push the block onto the green pad", "tap the zorblax dot"]
    np.testing.assert_array_equal(onnx_enc.token_ids(texts)[0], model.tokenizer.token_ids(texts)[0])
    np.testing.assert_allclose(onnx_enc.encode_batch(texts), model.tokenizer.encode_batch(texts), atol=1e-5)
    # the same folder as an "onnx:<dir>" source (train on an encoder someone else exported)
    as_source = open_instruction_encoder({**cfg.to_dict(), "instruction_encoder": f"onnx:{exported}"})
    np.testing.assert_allclose(
        as_source.encode("reach the red target"), onnx_enc.encode("reach the red target")
    )
    worker = pickle.loads(pickle.dumps(as_source))
    np.testing.assert_array_equal(
        worker.encode("reach the red target"), as_source.encode("reach the red target")
    )

    # policy parity: torch model + transformers embedding vs the onnx graph + the exported encoder, one instruction
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (1, cfg.k_frames, 3, 64, 64), dtype=np.uint8)
    q = model.joint_mean.numpy()[None].astype(np.float32)
    text = "push the cube onto the blue pad"
    policy = load_policy(exported, backend="onnxruntime", threads=1)
    assert policy.spec.instruction_input() == ("text_emb", "float32", (L, 32))
    emb = policy.tokens(text)
    assert emb.shape == (1, L, 32) and emb.dtype == np.float32
    with torch.inference_mode():
        ref_tokens = torch.from_numpy(model.tokenizer.encode(text)[None])
        model.check_inputs(torch.from_numpy(frames), torch.from_numpy(q), ref_tokens)
        action, frame = model(torch.from_numpy(frames), torch.from_numpy(q), ref_tokens)
    got_action, got_frame = policy.run_batch(frames, q, emb)
    np.testing.assert_allclose(got_action, action.numpy(), atol=1e-4)
    np.testing.assert_allclose(got_frame, frame.numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="tokens must be float32"):  # word ids are not this model's input
        policy.run_batch(frames, q, np.zeros((1, L), np.int64))

    # the imagination path: propose + imagine on the graphs vs torch, on the embedding
    onnx_plan = open_plan_backend(exported, backend="onnxruntime", threads=1)
    torch_plan = open_plan_backend(exported, backend="torch", threads=1)
    outs = [be.propose(frames, q, emb) for be in (onnx_plan, torch_plan)]
    for got, ref in zip(*outs, strict=True):
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)
    chunks = outs[1][0][0].astype(np.float32)  # every mode's chunk as a candidate
    scores = [be.score(outs[1][2], emb, q, chunks, horizon=3) for be in (onnx_plan, torch_plan)]
    for got, ref in zip(*scores, strict=True):
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)

    # `wam instruct`: the encoder's subword tokens, the unknown word named as written, attention per token
    r = explain_instruction(model, "push the cubes onto the zorblax pad")
    assert [w["word"] for w in r["words"]][:5] == ["[CLS]", "push", "the", "cube", "##s"]
    assert r["unknown"] == ["zorblax"] and r["task"] == "push"
    assert abs(sum(w["attention"] for w in r["words"]) - r["attention_groups"]["words"]) < 1e-6


def test_resume_reopens_the_encoder(training, tmp_path):
    cfg, path = training
    out = Path(shutil.copytree(path.parent, tmp_path / "run"))
    resumed = train(TrainConfig(**{**vars(cfg), "out": str(out), "steps": 8, "resume": True}))
    state = torch.load(out / "train_state.pt", weights_only=True)
    assert int(state["step"]) == 8
    model = attach_text_encoder(load_checkpoint(resumed), resumed)
    assert model.cfg == load_checkpoint(path).cfg and isinstance(model.tokenizer, HFTextEncoder)


RUNTIME_SCRIPT = """
import json, sys
import numpy as np
from wam_ros.runtime import load_policy
from wam_ros.runtime.chunk_policy import ChunkPolicy
from wam_ros.runtime.plan_backends import open_plan_backend
from wam_ros.runtime.planner import BestOfN, PlannerConfig

model = sys.argv[1]
policy = load_policy(model, backend="onnxruntime", threads=1)
runs = []
real = policy.tokenizer._run
policy.tokenizer._run = lambda ids, mask: runs.append(len(ids)) or real(ids, mask)
img = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
obs = {"images": [img], "joint_pos": np.zeros(8), "instruction": "reach the red target"}
first = policy.predict(obs)["action"]
for _ in range(3):
    policy.predict(obs)
planner = BestOfN(open_plan_backend(model, backend="onnxruntime", threads=1), PlannerConfig(candidates=4))
runner = ChunkPolicy(policy, replan=2, instruction="reach the red target", planner=planner)
for _ in range(3):
    runner.select_action({"image": img, "joint_pos": np.zeros(8)})
runner.set_instruction("push the cube onto the green pad")  # a new instruction mid-run
for _ in range(3):
    runner.select_action({"image": img, "joint_pos": np.zeros(8)})
print(json.dumps({
    "loaded": sorted(m for m in ("torch", "transformers") if m in sys.modules),
    "runs": runs,
    "encoder": type(policy.tokenizer).__name__,
    "finite": bool(np.all(np.isfinite(first))),
    "chunk": list(first.shape),
}))
"""


def test_runtime_needs_neither_torch_nor_transformers(exported):
    proc = subprocess.run(
        [sys.executable, "-c", RUNTIME_SCRIPT, str(exported)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["loaded"] == []  # predicted and planned with onnxruntime + tokenizers only
    assert out["encoder"] == "OnnxTextEncoder" and out["finite"] and out["chunk"] == [8, 8]
    assert out["runs"] == [1, 1]  # two distinct instructions over 4 predictions and 6 control steps


def test_missing_or_damaged_encoder_folder_is_a_clear_error(exported, tmp_path):
    def copy(name: str) -> Path:
        return Path(shutil.copytree(exported, tmp_path / name))

    missing = copy("missing")
    (missing / TEXT_ENCODER).unlink()
    with pytest.raises(TextEncoderError, match=r"lacks \['text_encoder.onnx'\]"):
        load_policy(missing, backend="onnxruntime")
    both = copy("both_missing")
    (both / TEXT_ENCODER).unlink()
    (both / TEXT_TOKENIZER).unlink()
    with pytest.raises(TextEncoderError, match="has no text_encoder.onnx"):  # never transformers on this path
        load_policy(both, backend="onnxruntime")
    damaged = copy("damaged")
    data = (damaged / TEXT_ENCODER).read_bytes()
    (damaged / TEXT_ENCODER).write_bytes(data[: len(data) // 2])
    with pytest.raises(IntegrityError, match="text_encoder.onnx"):  # the manifest catches it first
        load_policy(damaged, backend="onnxruntime")
    (damaged / "manifest.json").unlink()
    with pytest.raises(
        TextEncoderError, match="cannot load ONNX model"
    ):  # and without a manifest, onnxruntime
        load_policy(damaged, backend="onnxruntime")
    swapped = copy("swapped")
    (swapped / "manifest.json").unlink()
    tok = json.loads((swapped / TEXT_TOKENIZER).read_text())
    tok["truncation"]["max_length"] = 4  # another tokenizer than the encoder was exported with
    (swapped / TEXT_TOKENIZER).write_text(json.dumps(tok))
    with pytest.raises(TextEncoderError, match="not the tokenizer"):
        load_policy(swapped, backend="onnxruntime")
    garbage = copy("garbage")
    (garbage / "manifest.json").unlink()
    (garbage / TEXT_TOKENIZER).write_text("{not json")
    with pytest.raises(TextEncoderError, match="not a readable tokenizers file"):
        load_policy(garbage, backend="onnxruntime")
    with pytest.raises(TextEncoderError, match="lacks"):
        OnnxTextEncoder(tmp_path / "nowhere", L)


def test_wam_node_takes_new_instructions_over_dds(exported, tmp_path):
    """wam_node on the exported folder (onnxruntime) gets one instruction from the robot process and another from
    a third participant mid-run, embeds each once, and keeps commanding."""
    first, second = "push the cube onto the blue pad", "go to the green target please"
    with wam_node_running(exported, backend="onnxruntime", control_hz=20.0) as (node, spinner):
        assert type(node.policy.tokenizer).__name__ == "OnnxTextEncoder"
        result: dict = {}
        probe = threading.Thread(
            target=lambda: result.update(
                run_probe(tmp_path, "stream", "--rate", "30", "--duration", "4.0", "--instruction", first)
            )
        )
        probe.start()
        ctx = Context()
        rclpy.init(context=ctx)
        try:
            sender = rclpy.create_node("te_instruction_sender", context=ctx)
            from std_msgs.msg import String

            pub = sender.create_publisher(String, "wam/instruction", 10)
            end = time.monotonic() + 30
            while node.instruction != first and time.monotonic() < end:
                time.sleep(0.05)
            time.sleep(0.8)  # commands under the first instruction
            while node.instruction != second and time.monotonic() < end:
                pub.publish(String(data=second))
                time.sleep(0.1)
            sender.destroy_node()
        finally:
            rclpy.try_shutdown(context=ctx)
        probe.join(timeout=60)
        encoded = node.policy.tokenizer.encoded
    assert spinner.error is None, spinner.error
    assert node.instruction == second
    assert encoded == 3  # the parameter's default, then each new instruction: once each
    diags = diagnostics(result)
    switched = [d["t"] for d in diags if d["values"].get("instruction") == second]
    assert switched and any(d["values"].get("instruction") == first for d in diags)
    after = [c for c in commands(result) if c["t"] > switched[0] and len(c["points"]) == 8]
    assert len(after) >= 5, f"only {len(after)} motion commands after the new instruction"
