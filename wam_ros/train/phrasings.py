"""Language checks: what a model understood of an instruction, and closed-loop success under other phrasings.

    templates = load_phrasings("config/phrasings/heldout.yaml")      # {"reach": ["tap the {colour} dot", ...], ...}
    rewrite("reach the red target", "tap the {colour} dot")          # "tap the red dot"
    res = phrasing_closed_loop(policy, "reach", templates["reach"], seeds, replan=4, image_size=64)
    res["tap the {colour} dot"]["success_rate"]

    report = explain_instruction(model, "plese reach the reds tagret zorblax")   # `wam instruct`
    report["words"]     # [{"word", "maps_to", "status", "attention"}, ...]; report["task"], report["colour"]

    retarget_closed_loop(policy, seeds, replan=4, switch_step=5)    # reach: change the colour mid-episode

A phrasing file is YAML, one list of templates per task, each with one `{colour}` slot (the colour of the scene's
own instruction goes there):

    reach: ["go to the {colour} one", "tap the {colour} dot"]
    push: ["shove the box onto the {colour} mat"]

The word attention of `explain_instruction` is the softmax attention of the action queries on each instruction
token in the last transformer block (averaged over heads and queries), recomputed from that block's own input
(a forward pre-hook) and its ln1 / qkv weights: the model is not changed.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from wam_ros.model.paraphrase import AUG_NOUNS, AUG_VERBS
from wam_ros.model.tokenizer import COLOUR_NAMES, Tokenizer, words
from wam_ros.train.closed_loop import closed_loop, wam_factory

TASKS = ("reach", "push")
SLOT = "colour"


# ------------------------------------------------------------------------------------------------ phrasing files
def check_template(template: Any, where: str = "template") -> str:
    """`template` if it is a usable phrasing (a non-empty str with exactly one {colour} slot), else ValueError."""
    if not isinstance(template, str) or not template.strip():
        raise ValueError(f"{where}: a template must be a non-empty string, got {template!r}")
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ValueError(f"{where}: {template!r} is not a valid template ({exc})") from exc
    if fields != [SLOT]:
        raise ValueError(
            f"{where}: {template!r} must have exactly one {{{SLOT}}} slot and no other braces, got fields {fields}"
        )
    return template


def load_phrasings(path: str | Path) -> dict[str, list[str]]:
    """{task: [template, ...]} from a YAML phrasing file (see the module docstring); ValueError naming the file and
    the problem for a damaged file, an unknown task, a value that is not a list or a template without {colour}."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"phrasing file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(f"phrasing file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not data:
        raise ValueError(
            f"phrasing file {path} must be a mapping task -> list of templates (tasks: {', '.join(TASKS)}), "
            f"got {type(data).__name__}"
        )
    out: dict[str, list[str]] = {}
    for task, templates in data.items():
        if task not in TASKS:
            raise ValueError(
                f"phrasing file {path}: unknown task {task!r}; expected one of {', '.join(TASKS)}"
            )
        if not isinstance(templates, list) or not templates:
            raise ValueError(
                f"phrasing file {path}: {task} must be a non-empty list of templates, got {templates!r}"
            )
        checked = [check_template(t, f"{path}: {task}[{i}]") for i, t in enumerate(templates)]
        dup = sorted({t for t in checked if checked.count(t) > 1})
        if dup:
            raise ValueError(f"phrasing file {path}: {task} lists {dup} more than once")
        out[task] = checked
    return out


def colour_of(instruction: str) -> str:
    """The one colour word of a scene's instruction (ValueError when it has none or several)."""
    found = sorted({w for w in words(instruction) if w in COLOUR_NAMES})
    if len(found) != 1:
        raise ValueError(f"instruction {instruction!r} must name exactly one colour, found {found}")
    return found[0]


def rewrite(instruction: str, template: str) -> str:
    """`template` with the colour of the scene's `instruction` in its {colour} slot."""
    return check_template(template).format(**{SLOT: colour_of(instruction)})


def phrasing_closed_loop(
    policy: Any,
    task: str,
    templates: Sequence[str],
    seeds: Iterable[int],
    replan: int,
    image_size: int = 64,
    control_hz: int = 10,
    progress: bool = False,
    robot: str = "panda",
) -> dict[str, dict[str, Any]]:
    """Closed loop on the same seeded scenes once per template, every scene's instruction rewritten with it (the
    scenes simulate `robot`, a profile name or path).

    Returns {template: {success_rate, successes, episodes, mean_steps, outcomes}}; each outcome also holds `said`,
    the instruction the policy was given (`instruction` is the scene's own)."""
    templates = [check_template(t) for t in templates]
    factories = {t: wam_factory(policy, replan, instruction=lambda s, t=t: rewrite(s, t)) for t in templates}
    res = closed_loop(
        factories, task, seeds, image_size=image_size, control_hz=control_hz, progress=progress, robot=robot
    )
    out: dict[str, dict[str, Any]] = {}
    for t, r in res.items():
        for o in r["outcomes"]:
            o["said"] = rewrite(o["instruction"], t)
        out[t] = {k: r[k] for k in ("success_rate", "successes", "episodes", "mean_steps", "outcomes")}
    return out


def retarget_closed_loop(
    policy: Any,
    seeds: Iterable[int],
    replan: int,
    switch_step: int = 5,
    image_size: int = 64,
    control_hz: int = 10,
    template: str = "reach the {colour} target",
    robot: str = "panda",
) -> dict[str, Any]:
    """Reach, with the colour changed mid-episode: the policy starts on the scene's instruction; after
    `switch_step` steps the scene's goal moves to the next target (TabletopEnv.retarget) and the policy gets the
    new instruction through ChunkPolicy.set_instruction (as wam_node does on /wam/instruction: a new instruction
    starts a fresh frame history and plan). Success: the fingertip reaches the NEW target before the step limit
    (reaching the first one before the switch ends the episode as a failure)."""
    from wam_ros.runtime.chunk_policy import ChunkPolicy
    from wam_ros.sim.tabletop import TabletopEnv

    env = TabletopEnv(task="reach", image_size=image_size, control_hz=control_hz, robot=robot)
    outcomes = []
    try:
        for seed in (int(s) for s in seeds):
            obs, _ = env.reset(seed=seed)
            first = env.instruction
            runner = ChunkPolicy(policy, replan=replan, instruction=rewrite(first, template))
            done = early = False
            while not done:
                if env.steps == switch_step:
                    env.retarget((env.scene.instruction_index + 1) % env.n_instructions)
                    runner.set_instruction(rewrite(env.instruction, template))
                obs, _, terminated, truncated, _ = env.step(runner.select_action(obs))
                done = terminated or truncated
                early = terminated and env.steps <= switch_step
            outcomes.append(
                {
                    "seed": seed,
                    "first": first,
                    "second": env.instruction,
                    "success": bool(terminated and not early),
                    "steps": int(env.steps),
                }
            )
    finally:
        env.close()
    ok = sum(o["success"] for o in outcomes)
    return {
        "episodes": len(outcomes),
        "successes": ok,
        "success_rate": ok / max(1, len(outcomes)),
        "switch_step": switch_step,
        "outcomes": outcomes,
    }


# ------------------------------------------------------------------------------------------------ wam instruct
def _task_words() -> dict[str, set[str]]:
    """Words that name one task only (from the augmentation's verb and noun lists)."""
    reach = {w for v, p in AUG_VERBS["reach"] for w in words(v)} | set(AUG_NOUNS["reach_goal"])
    push = {w for v, p in AUG_VERBS["push"] for w in words(v)}
    push |= set(AUG_NOUNS["push_object"]) | set(AUG_NOUNS["push_goal"])
    common = reach & push | {"the", "your", "to"}
    return {"reach": reach - common, "push": push - common}


def recognise(mapped: Sequence[str | None]) -> dict[str, Any]:
    """The task and colour the word lists recognise in the mapped words of an instruction (None when none or a
    tie), with the words that decided it."""
    task_words = _task_words()
    hits = {t: [w for w in mapped if w in ws] for t, ws in task_words.items()}
    best = max(hits, key=lambda t: len(hits[t]))
    tie = sum(len(h) == len(hits[best]) for h in hits.values()) > 1
    colours = sorted({w for w in mapped if w in COLOUR_NAMES})
    return {
        "task": None if tie else best,
        "task_words": hits,
        "colour": colours[0] if len(colours) == 1 else None,
        "colours": colours,
    }


def word_attention(
    model: torch.nn.Module, frames: torch.Tensor, joint_pos: torch.Tensor, tokens: torch.Tensor
) -> dict[str, Any]:
    """Attention of the action queries in the last transformer block (one sample), averaged over heads and queries:
    {"words": (L,) weight on each instruction token slot, "groups": {image, joint, words, queries} total weight}.

    The token order is the trunk's [image P][joint 1][words L][queries N]; the block's additive mask is checked
    against the padding of `tokens` to be sure the word slots are where they are read."""
    cfg = model.cfg
    L, N = int(cfg.max_tokens), int(cfg.chunk)
    block = model.blocks[-1]
    seen: dict[str, torch.Tensor] = {}

    def grab(_module, args, kwargs):
        if "x" not in seen:
            seen["x"] = args[0] if args else kwargs["x"]
            seen["mask"] = args[1] if len(args) > 1 else kwargs["mask"]

    handle = block.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            model.forward_action(frames, joint_pos, tokens)
    finally:
        handle.remove()
    x, mask = seen["x"][:1], seen["mask"][:1]
    S, D = int(x.shape[1]), int(x.shape[2])
    first_word = S - L - N
    pad = model.instruction_pad(tokens[:1])
    if first_word < 0 or not torch.equal(mask.reshape(1, -1)[:, first_word : S - N], pad):
        raise ValueError(
            "the model's last block does not have the [image][joint][words][queries] token layout"
        )
    with torch.no_grad():
        h = block.ln1(x)
        q = torch.nn.functional.linear(h[:, S - N :], block.qkv.weight[:D], block.qkv.bias[:D])
        k = torch.nn.functional.linear(h, block.qkv.weight[D : 2 * D], block.qkv.bias[D : 2 * D])
        nh, hs = block.n_heads, D // block.n_heads
        q = q.reshape(1, N, nh, hs).transpose(1, 2)  # (1, nh, N, hs)
        k = k.reshape(1, S, nh, hs).transpose(1, 2)  # (1, nh, S, hs)
        att = torch.softmax(q @ k.transpose(-1, -2) * block.scale + mask.reshape(1, 1, 1, S), dim=-1)
        per_key = att.mean(dim=(0, 1, 2)).double().numpy()  # (S,)
    return {
        "words": per_key[first_word : S - N],
        "groups": {
            "image": float(per_key[: first_word - 1].sum()),
            "joint": float(per_key[first_word - 1]),
            "words": float(per_key[first_word : S - N].sum()),
            "queries": float(per_key[S - N :].sum()),
        },
    }


def explain_instruction(
    model: torch.nn.Module,
    text: str,
    frames: np.ndarray | None = None,
    joint_pos: np.ndarray | None = None,
) -> dict[str, Any]:
    """What `model` understood of `text`: per word its mapping (known / mapped to a vocabulary word / unknown) and
    the last block's attention of the action queries on it; the task and colour the word lists recognise; the
    attention per token group. frames uint8 (K, 3, H, W) / joint_pos (J,): the observation the attention is computed
    on (default: mid-grey frames and the normaliser's mean joints, i.e. the instruction alone)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"instruction must be a non-empty string, got {text!r}")
    cfg = model.cfg
    tok: Tokenizer = model.tokenizer
    K, H = int(cfg.k_frames), int(cfg.image_size)
    f = np.full((K, 3, H, H), 128, np.uint8) if frames is None else np.asarray(frames, np.uint8)
    q = model.joint_mean.detach().cpu().numpy() if joint_pos is None else np.asarray(joint_pos, np.float32)
    if f.shape != (K, 3, H, H):
        raise ValueError(f"frames must be uint8 ({K}, 3, {H}, {H}), got {f.shape}")
    ids = tok.encode(text)
    att = word_attention(
        model,
        torch.from_numpy(f)[None],
        torch.as_tensor(q, dtype=torch.float32)[None],
        torch.from_numpy(ids)[None],
    )
    explained = tok.explain(text)
    # word ids, or with a pretrained text encoder (ids is then its embedding (L, E)) the encoder's subword ids: its
    # explain() rows are the subword tokens the model reads, special tokens included, one per instruction position
    token_ids = ids if ids.ndim == 1 else tok.token_ids([text])[0][0]
    rows = []
    for i, (w, known) in enumerate(explained):
        status = "unknown" if known is None else "known" if known == w else "mapped"
        used = i < tok.max_tokens
        rows.append(
            {
                "word": w,
                "maps_to": known,
                "status": status if used else "truncated",
                "token": int(token_ids[i]) if used else None,
                "attention": float(att["words"][i]) if used else None,
            }
        )
    scored = [r for r in rows if r["attention"] is not None]
    top = max(scored, key=lambda r: r["attention"]) if scored else None
    colour_rows = [r for r in scored if r["maps_to"] in COLOUR_NAMES]
    return {
        "instruction": text,
        "words": rows,
        "unknown": [r["word"] for r in rows if r["status"] == "unknown"],
        **recognise([r["maps_to"] for r in rows if r["status"] != "truncated"]),
        "attended_word": None if top is None else top["word"],
        "attended_colour": max(colour_rows, key=lambda r: r["attention"])["maps_to"] if colour_rows else None,
        "attention_groups": att["groups"],
        "max_tokens": tok.max_tokens,
    }


@dataclass
class InstructConfig:
    """`wam instruct`: model (directory or .pt checkpoint), the instruction text; scene_seed: the attention is
    computed on a rendered tabletop scene of the recognised task (seed scene_seed or the next seed whose scene shows
    the named colour); None computes it on mid-grey frames (the instruction alone)."""

    model: str
    text: str
    scene_seed: int | None = 0
    threads: int = 1


def _scene_observation(model: torch.nn.Module, task: str, colour: str | None, seed: int) -> dict[str, Any]:
    """frames (K, 3, H, W) and joints of a rendered tabletop scene (the first frame repeated, as at an episode
    start), preferring a scene whose objects include `colour`."""
    from wam_ros.sim.tabletop import TabletopEnv

    env = TabletopEnv(task=task, image_size=int(model.cfg.image_size), robot=str(model.cfg.robot))
    try:
        for s in range(seed, seed + 50):
            obs, _ = env.reset(seed=s)
            if colour is None or any(o.get("colour") == colour for o in env.scene.objects.values()):
                break
        frame = obs["image"].transpose(2, 0, 1)
        return {
            "frames": np.repeat(frame[None], int(model.cfg.k_frames), axis=0),
            "joint_pos": obs["joint_pos"],
            "scene": {"task": task, "seed": s, "instruction": env.instruction},
        }
    finally:
        env.close()


def _simulated(model_cfg: Any) -> bool:
    """True when the tabletop sim can render the model's robot: its profile exists, names a URDF and a tool link, and
    has the model's joints."""
    from wam_ros.robot import RobotProfile

    try:
        profile = RobotProfile.load(str(model_cfg.robot))
    except (OSError, ValueError):
        return False
    return bool(profile.urdf and profile.ee_link) and profile.joint_names == list(model_cfg.joint_names)


def instruct(cfg: InstructConfig) -> dict[str, Any]:
    """explain_instruction for `wam instruct` (loads the checkpoint; see InstructConfig)."""
    from wam_ros.model import load_checkpoint
    from wam_ros.runtime.text_encoder import attach_text_encoder

    torch.set_num_threads(cfg.threads)
    model = attach_text_encoder(load_checkpoint(cfg.model, require_fitted=True), cfg.model)
    report = explain_instruction(model, cfg.text)
    if cfg.scene_seed is not None and report["task"] is not None and _simulated(model.cfg):
        obs = _scene_observation(model, report["task"], report["colour"], int(cfg.scene_seed))
        report = explain_instruction(model, cfg.text, obs["frames"], obs["joint_pos"])
        report["scene"] = obs["scene"]
    else:
        report["scene"] = None
    report["model"] = str(cfg.model)
    return report
