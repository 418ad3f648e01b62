"""Phrasing evaluation (wam_ros.train.phrasings, config/phrasings/, benchmarks/paraphrase.py) and the retarget check:
phrasing files with clear errors, the held-out set disjoint from the augmentation, the closed loop really given the
rewritten instruction, a goal changed mid-episode in PyBullet (the scripted expert follows it), the benchmark at a
tiny scale."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_instruct import train_tiny

from wam_ros.model.paraphrase import lexicon
from wam_ros.model.tokenizer import COLOUR_NAMES, nearest_word, words
from wam_ros.runtime import load_policy
from wam_ros.sim.experts import make_expert
from wam_ros.sim.tabletop import TabletopEnv
from wam_ros.train.closed_loop import closed_loop, wam_factory
from wam_ros.train.phrasings import (
    load_phrasings,
    phrasing_closed_loop,
    retarget_closed_loop,
    rewrite,
)

ROOT = Path(__file__).resolve().parents[1]
HELDOUT = ROOT / "config/phrasings/heldout.yaml"
SHARED_FUNCTION_WORDS = {"the", "to", "onto", "into", "on", "it"}  # the only words heldout.yaml shares


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    return load_policy(train_tiny(tmp_path_factory.mktemp("phrasings")), backend="torch", threads=1)


def test_shipped_phrasing_files_load():
    held = load_phrasings(HELDOUT)
    assert set(held) == {"reach", "push"} and all(len(t) >= 5 for t in held.values())
    example = load_phrasings(ROOT / "config/phrasings/example.yaml")
    assert "go to the {colour} one" in example["reach"]
    for templates in [*held.values(), *example.values()]:
        for t in templates:
            assert len(words(t.format(colour="red"))) <= 12  # the model's max_tokens: nothing truncated


def test_heldout_verbs_and_nouns_are_absent_from_the_augmentation():
    lex = set(lexicon())
    held = load_phrasings(HELDOUT)
    used = {w for ts in held.values() for t in ts for w in words(t.format(colour=""))}
    assert used & lex == SHARED_FUNCTION_WORDS & used
    for w in used - SHARED_FUNCTION_WORDS:  # nor does the character fallback read one as an augmentation word
        assert nearest_word(w, sorted(lex)) is None, w
        assert w not in COLOUR_NAMES


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("reach: [unclosed", "not valid YAML"),
        ("- a\n- b\n", "must be a mapping"),
        ("", "must be a mapping"),
        ("fly: ['go to the {colour} one']", "unknown task 'fly'"),
        ("reach: 'go to the {colour} one'", "non-empty list"),
        ("reach: []", "non-empty list"),
        ("reach: ['go to the red one']", "exactly one {colour} slot"),
        ("reach: ['go to the {color} one']", "exactly one {colour} slot"),
        ("reach: ['go {colour} to the {colour} one']", "exactly one {colour} slot"),
        ("reach: ['go to the {colour one']", "not a valid template"),
        ("reach: [42]", "non-empty string"),
        ("reach: ['a {colour}', 'a {colour}']", "more than once"),
    ],
)
def test_bad_phrasing_files_are_clear_errors(tmp_path, text, error):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=error.replace("{", r"\{").replace("}", r"\}").replace("[", r"\[")):
        load_phrasings(path)


def test_files_from_other_tools(tmp_path):
    as_json = tmp_path / "p.json"  # JSON is YAML
    as_json.write_text(json.dumps({"push": ["shove the box onto the {colour} mat"]}))
    assert load_phrasings(as_json) == {"push": ["shove the box onto the {colour} mat"]}
    dumped = tmp_path / "d.yaml"
    dumped.write_text(
        yaml.safe_dump({"reach": ["tap the {colour} dot"], "push": ["bump it on the {colour} mat"]})
    )
    assert load_phrasings(dumped)["reach"] == ["tap the {colour} dot"]
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_phrasings(binary)
    with pytest.raises(ValueError, match="does not exist"):
        load_phrasings(tmp_path / "missing.yaml")


def test_rewrite_takes_the_scene_colour():
    assert rewrite("reach the red target", "tap the {colour} dot") == "tap the red dot"
    assert (
        rewrite("push the cube onto the YELLOW pad", "the {colour} mat: shove the box")
        == "the yellow mat: shove the box"
    )
    with pytest.raises(ValueError, match="exactly one colour"):
        rewrite("reach the target", "tap the {colour} dot")
    with pytest.raises(ValueError, match="exactly one colour"):
        rewrite("reach the red or the blue target", "tap the {colour} dot")


def test_retarget_moves_the_goal_and_the_expert_follows():
    env = TabletopEnv(task="reach", image_size=32)
    reached = 0
    try:
        with pytest.raises(RuntimeError, match="reset"):
            env.retarget(1)
        for seed in range(10):
            obs, _ = env.reset(seed=seed)
            k0, first = env.scene.instruction_index, env.instruction
            expert = make_expert(env)
            for _ in range(5):
                obs, _, terminated, _, _ = env.step(expert(obs))
            k1 = (k0 + 1) % env.n_instructions
            new = env.retarget(k1)
            c0, c1 = (env.scene.objects[f"target_{k}"]["colour"] for k in (k0, k1))
            assert new == first.replace(c0, c1) == env.instruction == f"reach the {c1} target"
            assert env.scene.goal == f"target_{k1}" and env.scene.instruction_index == k1
            goal = np.asarray(env.scene.objects[f"target_{k1}"]["position"])
            assert env.goal_distance() == pytest.approx(
                float(np.linalg.norm(env.fingertip_position() - goal))
            )
            terminated = truncated = False
            while not (terminated or truncated):
                obs, _, terminated, truncated, _ = env.step(expert(obs))
            old = np.asarray(env.scene.objects[f"target_{k0}"]["position"])
            reached += terminated and env.goal_distance() < np.linalg.norm(env.fingertip_position() - old)
        for bad in (3, -1, True, 1.0):
            with pytest.raises(ValueError, match="goal index"):
                env.retarget(bad)
    finally:
        env.close()
    assert reached >= 9


def test_phrasing_closed_loop_gives_the_policy_the_rewritten_instruction(policy):
    templates = ["tap the {colour} dot", "reach the {colour} target"]
    res = phrasing_closed_loop(policy, "reach", templates, [1_000_000, 1_000_001], replan=4, image_size=64)
    assert list(res) == templates
    for t, r in res.items():
        assert r["episodes"] == 2 and 0.0 <= r["success_rate"] <= 1.0 and r["successes"] <= 2
        for o in r["outcomes"]:
            assert (
                o["said"] == rewrite(o["instruction"], t) and o["said"] in policy._tokens
            )  # the policy read it
    assert [o["instruction"] for o in res[templates[0]]["outcomes"]] == [
        o["instruction"] for o in res[templates[1]]["outcomes"]
    ]  # the same scenes
    policy._tokens.clear()
    plain = closed_loop({"wam": wam_factory(policy, 4)}, "reach", [1_000_002], image_size=64)  # old signature
    assert list(policy._tokens) == [plain["wam"]["outcomes"][0]["instruction"]]
    with pytest.raises(ValueError, match="exactly one"):
        phrasing_closed_loop(policy, "reach", ["tap the dot"], [1], replan=4)


def test_retarget_closed_loop_switches_the_instruction(policy):
    res = retarget_closed_loop(policy, [1_000_000, 1_000_001], replan=4, switch_step=3, image_size=64)
    assert res["episodes"] == 2 and res["switch_step"] == 3
    for o in res["outcomes"]:
        assert o["first"] != o["second"] and o["second"] in policy._tokens and o["steps"] > 3


def test_benchmark_at_a_tiny_scale(policy, tmp_path):
    phrasings = tmp_path / "p.yaml"
    phrasings.write_text("reach: ['tap the {colour} dot']\n")
    out = tmp_path / "r.json"
    cmd = [sys.executable, str(ROOT / "benchmarks/paraphrase.py"), "--model", str(policy.source)]
    cmd += ["--tasks", "reach", "--seeds", "2", "--retarget", "2", "--phrasings", str(phrasings)]
    cmd += ["--threads", "1", "--backend", "torch", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "reach the {colour} target (template)" in proc.stdout and "tap the {colour} dot" in proc.stdout
    assert "retarget (reach" in proc.stdout
    res = json.loads(out.read_text())
    reach = res["tasks"]["reach"]
    assert list(reach["phrasings"]) == ["reach the {colour} target", "tap the {colour} dot"]
    assert all(r["episodes"] == 2 for r in reach["phrasings"].values()) and res["retarget"]["episodes"] == 2


def test_benchmark_batch_cost_needs_no_model():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/paraphrase.py"), "--batch-cost"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "cached template tokens" in proc.stdout and "augment_instruction" in proc.stdout
    bad = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/paraphrase.py")], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "--model is required" in bad.stderr
