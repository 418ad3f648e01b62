"""Issue 16: the imagining WAM (mixture proposals, action-conditioned imagination, progress critic), its training
batches, the warm start, the best-of-N planner and its oracle in the real PyBullet tabletop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from wam_ros.data.episode import read_episode
from wam_ros.data.windows import WindowArrays
from wam_ros.data.world_windows import WorldWindows
from wam_ros.model import WamConfig, WorldActionModel, load_checkpoint
from wam_ros.model.batch import EXECUTED, FUTURE_FRAME, GOAL_DISTANCE, HORIZON, STEPS_TO_GO, SUCCESS
from wam_ros.model.losses import wam_loss
from wam_ros.robot import RobotProfile
from wam_ros.runtime.planner import BestOfN, PlannerConfig, score_of
from wam_ros.runtime.safety import SafetyLimits
from wam_ros.train.critic_data import IMAGINATION_MODULES
from wam_ros.train.synthetic import write_synthetic_episodes
from wam_ros.train.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]

torch.set_num_threads(1)


def _model(seed: int = 0) -> WorldActionModel:
    torch.manual_seed(seed)
    m = WorldActionModel(WamConfig.preset("tiny_imagine"))
    J, N = m.cfg.num_joints, m.cfg.chunk
    m.set_normalizer(torch.zeros(J), torch.ones(J), torch.zeros(N, J), torch.full((N, J), 0.05))
    torch.nn.init.normal_(m.frame_out.weight, std=0.05)  # zero-initialised (copy-last); a trained one is not
    return m.eval()


def _inputs(m: WorldActionModel, B: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    c = m.cfg
    frames = torch.randint(
        0, 256, (B, c.k_frames, 3, c.image_size, c.image_size), generator=g, dtype=torch.uint8
    )
    q = torch.randn(B, c.num_joints, generator=g) * 0.3
    tokens = torch.from_numpy(m.tokenizer.encode_batch(["reach the red target"] * B))
    chunk = q[:, None, :] + torch.randn(B, c.chunk, c.num_joints, generator=g) * 0.05
    return frames, q, tokens, chunk


@torch.no_grad()
def test_imagination_is_causal_in_the_chunk():
    """The future after h actions depends on actions 0..h-1 only: changing action k leaves h <= k unchanged."""
    m = _model()
    frames, q, tokens, chunk = _inputs(m)
    changed = chunk.clone()
    changed[:, 5] += 0.3
    a = m.imagine_frames(frames, q, tokens, chunk)
    b = m.imagine_frames(frames, q, tokens, changed)
    assert torch.allclose(a[:, :5], b[:, :5], atol=1e-6)  # horizons 1..5 saw actions 0..4 only
    assert not torch.allclose(a[:, 5:], b[:, 5:], atol=1e-6)
    ctx = m.context(frames, q, tokens)[2]
    c4, q4 = m.imagine_score(ctx, tokens, q, chunk, horizon=4)
    d4, r4 = m.imagine_score(ctx, tokens, q, changed, horizon=4)
    assert torch.allclose(c4, d4, atol=1e-6) and torch.allclose(q4, r4, atol=1e-6)
    c8, _ = m.imagine_score(ctx, tokens, q, chunk)
    d8, _ = m.imagine_score(ctx, tokens, q, changed)
    assert not torch.allclose(c8, d8, atol=1e-6)


@torch.no_grad()
def test_one_pass_gives_the_chunk_and_its_imagined_future():
    """forward(): the most probable mode's chunk, and the frame imagined after its first action."""
    m = _model(1)
    frames, q, tokens, _ = _inputs(m, B=3)
    action, frame = m(frames, q, tokens)
    proposals, probs, ctx = m.context(frames, q, tokens)
    best = probs.argmax(1)
    assert torch.allclose(action, proposals[torch.arange(3), best], atol=1e-5)
    assert torch.allclose(m.forward_action(frames, q, tokens), action, atol=1e-5)
    imagined = m.imagine_frames(frames, q, tokens, action)
    assert torch.allclose(frame, imagined[:, 0], atol=1e-5)
    assert torch.allclose(probs.sum(1), torch.ones(3), atol=1e-5)


def test_world_windows_targets(tmp_path):
    """Executed actions (not the labels) condition the imagination; the future is t+h clamped to the episode end;
    h covers 0..N; the same indices give the same batch."""
    write_synthetic_episodes(tmp_path, n=3, steps=10, seed=3)
    from wam_ros.data.episode import list_episodes

    eps = [read_episode(p) for p in list_episodes(tmp_path)]
    eps[1].extra["executed_actions"] = (eps[1].actions + 0.01).astype(np.float32)
    eps[1].extra["goal_distance"] = np.linspace(0.3, 0.0, len(eps[1])).astype(np.float32)
    m = _model()
    base = WindowArrays(eps, 2, 8, 64, m.tokenizer)
    w = WorldWindows(base, eps)
    idx = np.arange(len(w))
    b = w.batch(idx)
    assert torch.equal(b[HORIZON], w.batch(idx)[HORIZON])
    h = b[HORIZON].numpy()
    assert h.min() >= 0 and h.max() <= 8 and len(set(h)) > 3
    fut = np.minimum(base.current + h, base.last)
    assert np.array_equal(b[FUTURE_FRAME].numpy(), base.frames[fut])
    on1 = base.episode == 1
    assert np.allclose(b[EXECUTED].numpy()[on1], base.actions[base.future[on1]] + 0.01, atol=1e-6)
    assert np.allclose(b[EXECUTED].numpy()[~on1], base.actions[base.future[~on1]])
    assert np.isnan(b[GOAL_DISTANCE].numpy()[~on1]).all() and np.isfinite(b[GOAL_DISTANCE].numpy()[on1]).all()
    assert np.array_equal(b[STEPS_TO_GO].numpy(), (base.last - fut).astype(np.float32))
    assert set(b[SUCCESS].numpy()) <= {0.0, 1.0}
    out = wam_loss(m.train(), b, 0.5)
    out["loss"].backward()
    for name in ("act_emb.weight", "imag_blocks.0.qkv.weight", "critic_head.0.weight", "mode_head.weight"):
        grad = dict(m.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_winner_take_all_trains_the_nearest_mode_only():
    """The mode nearest the demonstration gets the full gradient; the others only the small spread share."""
    m = _model(2).train()
    frames, q, tokens, _ = _inputs(m, B=1)
    from wam_ros.model.batch import ACTION_MASK, ACTIONS, FRAMES, FUTURE_JOINTS, JOINT_POS, TOKENS

    with torch.no_grad():
        modes, _ = m._modes_norm(m._trunk(frames, q, tokens)[0])
    target = m.delta_mean + modes[:, 1] * m.delta_std + q[:, None]  # exactly mode 1
    batch = {
        FRAMES: frames,
        JOINT_POS: q,
        TOKENS: tokens,
        ACTIONS: target,
        ACTION_MASK: torch.ones(1, 8, dtype=torch.bool),
        EXECUTED: target,
        HORIZON: torch.tensor([3]),
        FUTURE_FRAME: frames[:, -1],
        FUTURE_JOINTS: q,
        SUCCESS: torch.tensor([1.0]),
        STEPS_TO_GO: torch.tensor([5.0]),
        GOAL_DISTANCE: torch.tensor([float("nan")]),
    }
    out = wam_loss(m, batch, 0.0)
    assert float(out["action"]) < 0.05 * 1.0 + 1e-3  # the winner's error is 0; only the spread share remains
    assert torch.isfinite(out["loss"])


def test_warm_start_copies_the_policy_and_seeds_every_mode(tmp_path):
    write_synthetic_episodes(tmp_path / "d", n=4, steps=10, seed=4)
    common = dict(data=[str(tmp_path / "d")], steps=2, batch_size=8, warmup=1, threads=1, val_frac=0.0)
    src = train(TrainConfig(out=str(tmp_path / "a"), preset="tiny", **common))
    dst = train(TrainConfig(out=str(tmp_path / "b"), preset="tiny_imagine", init=str(src), lr=1e-9, **common))
    a, b = load_checkpoint(src), load_checkpoint(dst)
    assert b.cfg.imagine and b.cfg.modes == 3
    assert torch.allclose(a.enc1.down[0].weight, b.enc1.down[0].weight, atol=1e-6)
    assert torch.equal(a.joint_std, b.joint_std) and torch.equal(a.delta_std, b.delta_std)
    J = a.cfg.num_joints
    w = b.action_head.weight.detach()
    assert torch.allclose(w[:J], a.action_head.weight, atol=1e-5)  # mode 0: the single head itself
    for k in (1, 2):  # the others: seeded by it, but apart, so winner-take-all can tell them apart
        other = w[k * J : (k + 1) * J]
        assert not torch.allclose(other, a.action_head.weight, atol=1e-3)
        assert (
            torch.corrcoef(torch.stack([other.flatten(), a.action_head.weight.detach().flatten()]))[0, 1]
            > 0.5
        )


def _TorchPB(m: WorldActionModel):  # noqa: N802 - the planner's torch backend (onnxruntime: test_plan_backends)
    from wam_ros.runtime.plan_backends import TorchPlanBackend

    return TorchPlanBackend(m, threads=1)


class _Runner:
    """What the planner reads of a ChunkPolicy."""

    def __init__(self, m: WorldActionModel) -> None:
        from wam_ros.model.tokenizer import Tokenizer

        self.frames = _inputs(m, B=1)[0].numpy()
        self.frames_seen = 1
        self.instruction = "reach the red target"
        tok = Tokenizer(m.cfg.vocab, m.cfg.max_tokens)
        self.policy = type("P", (), {"tokens": lambda self, s: tok.encode(s)[None]})()


def _limits() -> SafetyLimits:
    return SafetyLimits.from_profile(RobotProfile.load("panda"))


def test_planner_proposes_scores_and_keeps_the_limits():
    m = _model(3)
    lim = _limits()
    q = (lim.position_lower + lim.position_upper) / 2
    planner = BestOfN(
        _TorchPB(m), PlannerConfig(candidates=9, noise=0.05, seed=1, trigger="always"), limits=lim, dt=0.1
    )
    runner = _Runner(m)
    plan = planner(runner, q)
    info = plan.info
    assert info["candidates"].shape == (9, 8, 8) and len(info["score"]) == 9
    proposals, probs, _ = _TorchPB(m).propose(
        runner.frames, q.astype(np.float32)[None], runner.policy.tokens(runner.instruction)
    )
    own = np.clip(proposals[0, probs[0].argmax()], lim.position_lower, lim.position_upper)
    assert np.allclose(info["candidates"][0], own, atol=1e-5)  # 0: the policy's own (inside the limits)
    ok = info["feasible"]
    best = int(np.argmax(np.where(ok, info["score"], -np.inf)))
    keep = ok[0] and info["score"][best] - info["score"][0] < planner.cfg.margin  # the trust region
    assert info["chosen"] == (0 if keep else best)
    assert np.allclose(plan.chunk, info["candidates"][info["chosen"]])
    again = BestOfN(
        _TorchPB(m), PlannerConfig(candidates=9, noise=0.05, seed=1, trigger="always"), limits=lim, dt=0.1
    )
    assert np.array_equal(again(runner, q).info["candidates"], info["candidates"])  # seeded
    # a candidate beyond a position limit or faster than the velocity limit is never chosen
    bad = info["candidates"].copy()
    bad[1:, 3, 0] = lim.position_upper[0] + 0.1
    bad[0, 1, 1] = q[1] + 10 * lim.velocity_limit[1] * 0.1
    assert not planner.feasible(bad, q).any()
    assert planner.feasible(np.repeat(q[None, None], 2, 0).repeat(8, 1), q).all()


def test_planner_clips_a_hair_past_a_limit_and_rejects_beyond_the_tolerance():
    """A target 3e-5 past a limit (the Panda's fingers, as the network proposes them when fully open) is clipped onto
    it and stays feasible; one 0.01 past it makes the candidate infeasible."""
    from wam_ros.runtime.planner import TARGET_TOLERANCE

    m = _model(3)
    lim = _limits()
    q = (lim.position_lower + lim.position_upper) / 2
    q[7] = lim.position_upper[7] - 0.005  # fingers nearly fully open
    planner = BestOfN(_TorchPB(m), PlannerConfig(candidates=3, noise=0.0), limits=lim, dt=0.1)
    assert TARGET_TOLERANCE < 0.01
    chunks = np.repeat(q[None, None], 3, 0).repeat(8, 1)
    for i, past in (
        (1, 3e-5),
        (2, 0.01),
    ):  # fingers opening to past the limit, in steps the velocity limit allows
        chunks[i, :, 7] = np.linspace(q[7], lim.position_upper[7] + past, 9)[1:]
    assert list(planner.feasible(chunks, q)) == [True, True, False]
    plan = planner(_Runner(m), q)
    cand = plan.info["candidates"]
    assert np.all(cand <= lim.position_upper) and np.all(cand >= lim.position_lower)  # scored and run inside


def test_planner_that_keeps_its_own_chunk_drives_exactly_like_the_policy():
    """Real model, real PyBullet: a planner that never prefers another candidate (margin 1e9) must execute exactly
    the policy's actions. Until session 10 it did not: it rejected the policy's own chunk whenever a finger target came
    out 1e-5 m past its limit (27 % of push decisions) and executed another candidate."""
    from wam_ros.runtime import load_policy
    from wam_ros.runtime.chunk_policy import ChunkPolicy
    from wam_ros.runtime.plan_backends import open_plan_backend
    from wam_ros.sim.tabletop import TabletopEnv

    model = ROOT / "models" / "panda_tabletop"
    policy = load_policy(model, threads=1)
    backend = open_plan_backend(model, threads=1)
    lim = SafetyLimits.from_profile(RobotProfile.load("panda"), list(policy.spec.joint_names))
    env = TabletopEnv(task="push", image_size=64, control_hz=10)
    try:
        actions = {}
        for name in ("policy", "planner"):
            obs, _ = env.reset(seed=2_000_000)
            planner = None
            if name == "planner":
                planner = BestOfN(
                    backend, PlannerConfig(candidates=8, margin=1e9, trigger="always"), limits=lim, dt=0.1
                )
            runner = ChunkPolicy(policy, replan=2, instruction=env.instruction, planner=planner)
            seq = []
            for _ in range(16):
                a = runner.select_action(obs)
                seq.append(a)
                obs, *_ = env.step(a)
            actions[name] = np.array(seq)
    finally:
        env.close()
    # the same chunks through two graphs (propose vs the policy's): float32 differences of ~1e-5 rad; another
    # candidate would move the targets by centiradians
    assert np.allclose(actions["planner"], actions["policy"], atol=1e-4)


def test_planner_falls_back_to_the_policy_when_nothing_is_feasible():
    m = _model(4)
    lim = _limits()
    q = (
        lim.position_upper + 0.5
    )  # every candidate starts far outside: each first step breaks the velocity limit
    q[7] = lim.position_upper[7]
    planner = BestOfN(_TorchPB(m), PlannerConfig(candidates=4, noise=0.0), limits=lim, dt=0.1)
    plan = planner(_Runner(m), q)
    assert plan.info["fallback"] and plan.info["chosen"] == 0


def test_stall_trigger_keeps_the_policy_until_the_present_estimate_stops_moving():
    """trigger "stall": the policy's own chunk (no chooser asked) while the critic's estimate of the present distance
    moves; once it has stayed within stall_span for stall_window decisions (after stall_after), the best-scored
    candidate by the critic alone (no margin, no proximity). A reset runner starts a new episode."""
    from wam_ros.runtime.planner import stalled

    m = _model(6)  # a random model whose candidates are all feasible here (checked below)
    lim = _limits()
    q = (lim.position_lower + lim.position_upper) / 2
    cfg = PlannerConfig(candidates=6, noise=0.05, seed=2, trigger="stall", stall_after=3, stall_window=2)
    asked = []

    def chooser(chunks: np.ndarray, info: dict) -> int:
        asked.append(len(asked))
        return int(np.argmax(np.where(info["feasible"], info["score"], -np.inf)))

    for with_chooser in (False, True):
        planner = BestOfN(_TorchPB(m), cfg, limits=lim, dt=0.1, chooser=chooser if with_chooser else None)
        runner = _Runner(m)
        infos = []
        for k in range(6):  # the same frame at every decision: the present estimate does not move
            runner.frames_seen = k + 1
            infos.append(planner(runner, q).info)
        assert [bool(i["stalled"]) for i in infos] == [False, False, False, True, True, True]
        assert len({float(i["present_distance"]) for i in infos}) == 1
        for i in infos[:3]:
            assert i["chosen"] == 0 and i["feasible"][0]
        for i in infos[3:]:
            assert i["feasible"].all()
            alone = score_of(i["critic"], "goal")  # no proximity
            assert np.allclose(i["score"], alone)
            assert i["chosen"] == int(np.argmax(np.where(i["feasible"], alone, -np.inf)))  # no margin
        if with_chooser:
            assert len(asked) == 3  # only at the stalled decisions
        runner.frames_seen = 1  # reset: the frame count went back
        assert not planner(runner, q).info["stalled"]
    assert stalled([0.2, 0.2, 0.2, 0.2], cfg) and not stalled([0.2, 0.2, 0.2], cfg)  # stall_after
    assert not stalled([0.2, 0.18, 0.15, 0.12, 0.09], cfg)  # progress: 3 cm per decision
    assert stalled([0.2, 0.15, 0.1, 0.105, 0.098], cfg) and not stalled([0.2, 0.15, 0.1, 0.1, 0.089], cfg)
    always = BestOfN(_TorchPB(m), PlannerConfig(candidates=6, seed=2, trigger="always"), limits=lim, dt=0.1)
    assert "stalled" not in always(_Runner(m), q).info


def test_stall_test_survives_a_critic_that_gives_no_estimate():
    """A non-finite present estimate (a damaged or diverged critic) is no stall and no crash: the estimates start
    afresh and the policy's own chunk goes out."""
    m = _model(6)
    lim = _limits()
    q = (lim.position_lower + lim.position_upper) / 2
    real = _TorchPB(m)

    class NanPresent:  # the real backend, its h=0 row's distance output replaced by NaN
        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        def score(self, *args: np.ndarray, horizon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            critic, joints = real.score(*args, horizon=horizon)
            critic = critic.copy()
            critic[horizon == 0, 2] = np.nan
            return critic, joints

    cfg = PlannerConfig(candidates=6, seed=2, trigger="stall", stall_after=1, stall_window=1)
    planner = BestOfN(NanPresent(), cfg, limits=lim, dt=0.1)
    runner = _Runner(m)
    for k in range(4):
        runner.frames_seen = k + 1
        info = planner(runner, q).info
        assert not info["stalled"] and np.isnan(info["present_distance"]) and info["chosen"] == 0
    assert planner.estimates == []


def test_planner_config_and_scores_are_validated():
    for bad in (
        dict(candidates=0),
        dict(noise=-1.0),
        dict(score="vibes"),
        dict(horizon=0),
        dict(trigger="sometimes"),
        dict(stall_span=0.0),
        dict(stall_span=float("nan")),
        dict(stall_window=0),
        dict(stall_after=1, stall_window=2),
        dict(stall_after=2.5),
    ):
        with pytest.raises(ValueError):
            PlannerConfig(**bad)
    critic = np.array([[3.0, 0.2, 0.5], [-3.0, 0.1, 0.1]])
    assert np.argmax(score_of(critic, "success")) == 0 and np.argmax(score_of(critic, "goal")) == 1


def test_planner_defaults_agree_across_eval_node_and_runtime():
    """`wam eval`, wam_node and the runtime plan with the same score and margin unless told otherwise (the setting the
    model card reports; before session 10 eval and the node defaulted to "success" with no margin, which picked a
    worse chunk than the policy's own in 41 % of simulated push decisions)."""
    from wam_ros.cli.eval import add_arguments
    from wam_ros.ros.wam_node import WamNodeParams
    from wam_ros.train.evaluate import EvalConfig

    cfg = PlannerConfig()
    want = (cfg.score, cfg.margin, cfg.proximity, cfg.trigger)
    assert want == ("goal", 0.05, 2.0, "stall")
    node = WamNodeParams()
    assert (node.planner_score, node.planner_margin, node.planner_proximity, node.planner_trigger) == want
    assert (node.planner_stall_span, node.planner_stall_window, node.planner_stall_after) == (
        cfg.stall_span,
        cfg.stall_window,
        cfg.stall_after,
    )
    ev = EvalConfig(model="m")
    assert (ev.planner_score, ev.planner_margin, ev.planner_proximity, ev.planner_trigger) == want
    import argparse

    ap = argparse.ArgumentParser()
    add_arguments(ap)
    args = ap.parse_args(["--model", "m"])
    assert (args.planner_score, args.planner_margin, args.planner_proximity, args.planner_trigger) == want


def test_oracle_rolls_candidates_out_and_restores_the_simulator():
    """Real PyBullet: try_chunks leaves the env exactly as it was, and a chunk that reaches the target scores as
    success where standing still does not."""
    from wam_ros.sim.experts import make_expert
    from wam_ros.sim.tabletop import TabletopEnv

    env = TabletopEnv(task="reach")
    try:
        obs, _ = env.reset(seed=11)
        expert = make_expert(env)
        plan = []
        probe = TabletopEnv(task="reach")
        o, _ = probe.reset(seed=11)
        ex2 = make_expert(probe)
        for _ in range(40):  # the expert's path to the target, from a twin env
            a = ex2(o)
            plan.append(a)
            o, _, done, trunc, _ = probe.step(a)
            if done or trunc:
                break
        probe.close()
        q0, img0, steps0 = obs["joint_pos"].copy(), obs["image"].copy(), env.steps
        still = np.repeat(q0[None], 8, 0)
        path = np.array(plan[:8])
        results = env.try_chunks(np.stack([still, path]))
        after = env._observe()
        assert np.array_equal(after["joint_pos"], q0) and np.array_equal(after["image"], img0)
        assert env.steps == steps0
        assert results[1]["goal_distance"] < results[0]["goal_distance"]
        obs2, *_ = env.step(expert(obs))  # the env still steps normally afterwards
        assert np.all(np.isfinite(obs2["joint_pos"]))
    finally:
        env.close()


def test_dream_candidates_draws_the_imagined_futures_and_the_choice(tmp_path):
    """`wam dream --candidates 4`: every candidate's imagined future beside the real one, scored, one chosen."""
    from wam_ros.cli import main as wam_main
    from wam_ros.data.episode import list_episodes
    from wam_ros.model import save_checkpoint
    from wam_ros.train.dream import dream_candidates

    write_synthetic_episodes(tmp_path / "d", n=1, steps=12, seed=5)
    ep_path = list_episodes(tmp_path / "d")[0]
    m = _model(5)
    res = dream_candidates(m, read_episode(ep_path), start=2, candidates=4)
    assert res["imagined"].shape == (4, 8, 64, 64, 3) and res["real"].shape == (8, 64, 64, 3)
    best = int(
        np.argmax(res["score"])
    )  # the planner's rule: the best, unless it beats the policy's own by < margin
    assert res["chosen"] == best or (res["chosen"] == 0 and res["score"][best] - res["score"][0] < 0.05)
    assert not np.array_equal(res["imagined"][0], res["imagined"][-1])  # different chunks, different futures
    ckpt = save_checkpoint(tmp_path / "m.pt", m)
    out = tmp_path / "cand.gif"
    assert (
        wam_main(
            [
                "dream",
                "--model",
                str(ckpt),
                "--episode",
                str(ep_path),
                "--start",
                "2",
                "--candidates",
                "4",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert out.stat().st_size > 0 and out.with_suffix(".gif.png").stat().st_size > 0
    plain = load_checkpoint(ckpt)
    plain_cfg = WamConfig.preset("tiny")
    with pytest.raises(ValueError, match="imagination"):
        dream_candidates(WorldActionModel(plain_cfg), read_episode(ep_path), start=2)
    assert plain.cfg.imagine


def test_eval_runs_the_planner_beside_the_policy_and_its_baselines(tmp_path):
    """`wam eval --planner best_of_n`: the policy alone stays `wam`, the planner is `wam_plan`, with the oracle and
    random picks of the same candidates, the critic's calibration and reliability plot, and `--phrasings` results
    per template, all on the same real PyBullet scenes."""
    import argparse
    import json

    from wam_ros.cli import eval as eval_cli

    write_synthetic_episodes(tmp_path / "d", n=4, steps=10, seed=6)
    ckpt = train(
        TrainConfig(
            data=[str(tmp_path / "d")],
            out=str(tmp_path / "m"),
            preset="tiny_imagine",
            steps=3,
            batch_size=8,
            warmup=1,
            threads=1,
            val_frac=0.0,
        )
    )
    (tmp_path / "ph.yaml").write_text('reach: ["go to the {colour} one"]\n')
    parser = argparse.ArgumentParser()
    eval_cli.add_arguments(parser)
    args = parser.parse_args(
        [
            "--model",
            str(ckpt),
            "--tasks",
            "reach",
            "--episodes",
            "2",
            "--seed-start",
            "3000000",
            "--planner",
            "best_of_n",
            "--candidates",
            "4",
            "--threads",
            "1",
            "--out",
            str(tmp_path / "e"),
            "--phrasings",
            str(tmp_path / "ph.yaml"),
            "--data",
            str(tmp_path / "held_out"),
            "--rank-check",
        ]
    )
    write_synthetic_episodes(tmp_path / "held_out", n=2, steps=14, seed=9)
    assert eval_cli.run(args) == 0
    res = json.loads((tmp_path / "e" / "results.json").read_text())
    cl = res["closed_loop"]["reach"]
    for name in ("wam", "wam_plan", "wam_plan_oracle", "wam_plan_random", "expert"):
        assert cl[name]["episodes"] == 2 and [o["seed"] for o in cl[name]["outcomes"]] == [3000000, 3000001]
    assert cl["planner_gain"] == cl["wam_plan"]["success_rate"] - cl["wam"]["success_rate"]
    assert "planner_gap_to_oracle" in cl
    d = cl["planner_decisions"]  # the default trigger "stall" tests every decision
    assert (
        d["decisions"] >= 2 and 0 <= d["stalled"] <= d["decisions"] and 0 <= d["switched"] <= d["decisions"]
    )
    assert res["planner"]["trigger"] == "stall"
    assert cl["phrasings"]["go to the {colour} one"]["episodes"] == 2
    # --rank-check: every decision with two or more feasible candidates rolled out in the real simulator
    rk = cl["critic_ranking"]
    assert (
        1 <= rk["all"]["decisions"] <= d["decisions"] and rk["stalled"]["decisions"] <= rk["all"]["decisions"]
    )
    a = rk["all"]
    assert 2 <= a["candidates_mean"] <= 4 and 0 <= a["top1_rate"] <= 1 and 0 < a["random_top1_rate"] <= 1
    assert a["dist_best_mm"] <= a["dist_random_mm"] + 1e-9 and a["dist_best_mm"] <= a["dist_top_mm"] + 1e-9
    assert a["success_top"] <= a["success_best"] and a["success_random"] <= a["success_best"]
    cal = res["critic_calibration"]["reach"]
    assert cal["decisions"] >= 2 and 0.0 <= cal["brier"] <= 1.0
    assert (tmp_path / "e" / "reliability.png").stat().st_size > 0
    assert res["planner"]["candidates"] == 4
    md = (tmp_path / "e" / "results.md").read_text()
    assert "| reach | wam_plan |" in md
    assert f"Planner decisions on reach: {d['decisions']};" in md
    assert f"Critic ranking on reach, all decisions ({a['decisions']}, true roll-outs)" in md
    # the action-conditioned imagination (the figure) is in the report, apart from the rolled-forward frames
    im = res["offline"]["imagination"]["all"]
    assert "## Imagination: frames imagined after the executed actions" in md
    assert f"| all | {im['psnr_h1']:.2f} | {im['copy_psnr_h1']:.2f} | {im['ssim_h1']:.3f} |" in md


def test_ranking_summary_scores_a_critic_against_the_true_outcomes():
    """The rank check's arithmetic: a critic that orders candidates as their true outcomes gets top-1 1.0 and Spearman
    1, the reverse order Spearman -1 and the worst distance; a random pick's chance counts tied bests; reaching the
    goal ranks above any miss (the oracle's value)."""
    from wam_ros.train.planning_eval import rank_row, ranking_summary

    def rolled(dists, success=()):
        return [{"success": i in success, "goal_distance": d, "steps": 8} for i, d in enumerate(dists)]

    dists = [0.05, 0.02, 0.04, 0.03]
    good = rank_row(-np.array(dists), rolled(dists), stalled=True)
    bad = rank_row(np.array(dists), rolled(dists), stalled=False)
    assert good["top_is_best"] and good["spearman"] == pytest.approx(1.0) and good["dist_top"] == 0.02
    assert not bad["top_is_best"] and bad["spearman"] == pytest.approx(-1.0) and bad["dist_top"] == 0.05
    assert good["random_is_best"] == 0.25 and good["dist_mean"] == pytest.approx(0.035)
    # two tied bests: a random pick is a best half the time; a success beats a nearer miss
    tied = rank_row(np.array([0.0, 1.0, 0.5]), rolled([0.01, 0.03, 0.01]), stalled=True)
    assert tied["random_is_best"] == pytest.approx(2 / 3) and not tied["top_is_best"]
    won = rank_row(np.array([1.0, 0.0]), rolled([0.06, 0.01], success=(0,)), stalled=True, own=False)
    assert won["top_is_best"] and won["success_top"] == 1.0 and won["dist_own"] is None
    flat = rank_row(np.ones(3), rolled([0.02, 0.02, 0.02]), stalled=True)
    assert flat["spearman"] is None and flat["top_is_best"]
    s = ranking_summary([good, bad, tied, won, flat])
    assert s["all"]["decisions"] == 5 and s["stalled"]["decisions"] == 4
    assert s["all"]["top1_rate"] == pytest.approx(3 / 5)
    assert s["stalled"]["spearman_decisions"] == 3  # the flat decision has no rank correlation
    assert s["all"]["dist_own_mm"] == pytest.approx(1000 * np.mean([0.05, 0.05, 0.01, 0.02]))
    assert ranking_summary([])["all"] == {"decisions": 0}


def test_counterfactual_critic_data_and_refit(tmp_path):
    """`wam critic collect` labels every candidate of every decision by rolling it out in real PyBullet (the
    candidate that reaches further gets the smaller distance); `finetune` refits only the goal-distance output and
    keeps the other two (distillation)."""
    from wam_ros.cli import main as wam_main
    from wam_ros.model import save_checkpoint

    m = _model(7)
    ckpt = save_checkpoint(tmp_path / "m.pt", m)
    args = [
        "critic",
        "collect",
        "--model",
        str(ckpt),
        "--task",
        "reach",
        "--episodes",
        "1",
        "--seed-start",
        "3000000",
        "--candidates",
        "4",
        "--out",
        str(tmp_path / "c"),
    ]
    assert wam_main(args) == 0
    files = sorted((tmp_path / "c").glob("critic_*.npz"))
    assert len(files) == 1
    with np.load(files[0]) as z:
        D = len(z["frames"])
        assert D >= 2 and z["candidates"].shape == (D, 4, 8, 8) and z["goal"].shape == (D, 4)
        assert np.all(np.isfinite(z["goal"])) and np.all(z["goal"] >= 0)
        assert z["frames"].dtype == np.uint8 and z["joint_pos"].shape == (D, 8)
        # the labels are real outcomes: candidates of one decision end at different distances
        assert np.ptp(z["goal"], axis=1).max() > 1e-4

    def finetune(data: str, out: str, *extra: str) -> int:
        return wam_main(["critic", "finetune", "--model", str(ckpt), "--data", data, "--out", out, *extra])

    assert finetune(str(tmp_path / "c"), str(tmp_path / "f"), "--steps", "200") == 0
    refit = load_checkpoint(tmp_path / "f" / "model.pt")
    assert not torch.equal(refit.critic_head[2].weight, m.critic_head[2].weight)
    for name, p in m.named_parameters():  # only the critic head changed
        if not name.startswith("critic_head"):
            assert torch.equal(p, dict(refit.named_parameters())[name]), name
    assert finetune(str(tmp_path / "nothing"), str(tmp_path / "g")) == 2

    # end to end: the imagination learns the outcomes too; the trunk, proposals and frame decoder do not move
    assert finetune(str(tmp_path / "c"), str(tmp_path / "e"), "--steps", "30", "--end-to-end") == 0
    e2e = load_checkpoint(tmp_path / "e" / "model.pt")
    changed = {n for n, p in e2e.named_parameters() if not torch.equal(p, dict(m.named_parameters())[n])}
    assert any(n.startswith("imag_blocks") for n in changed) and any(
        n.startswith("critic_head") for n in changed
    )
    assert all(n.split(".")[0] in IMAGINATION_MODULES for n in changed), changed
    report = json.loads((tmp_path / "e" / "critic_finetune.json").read_text())
    assert report["mode"] == "imagination+critic"
    for when in ("before", "after"):
        r = report[when]
        assert (
            0.0 <= r["best_pick_rate"] <= 1.0 and r["oracle_gain_vs_policy_m"] >= r["mean_gain_vs_policy_m"]
        )

    # anchored: demonstration windows keep the imagined frames while the ranking trains (the report says how well)
    from wam_ros.model.losses import world_loss

    write_synthetic_episodes(tmp_path / "demos", 20, steps=14, seed=3)
    anchored = ("--steps", "30", "--end-to-end", "--anchor", str(tmp_path / "demos"), "--anchor-weight", "20")
    threads = torch.get_num_threads()
    assert finetune(str(tmp_path / "c"), str(tmp_path / "a"), *anchored, "--threads", "1") == 0
    assert torch.get_num_threads() == threads  # the process's setting is given back
    report = json.loads((tmp_path / "a" / "critic_finetune.json").read_text())
    assert report["anchor"] == [str(tmp_path / "demos")] and report["threads"] == 1
    for when in ("before", "after"):
        q = report["imagination"][when]
        assert q["windows"] > 0 and np.isfinite(q["psnr_hN"]) and -1.0 <= q["ssim_hN"] <= 1.0
        # the same held-out windows
        assert q["copy_psnr_hN"] == report["imagination"]["before"]["copy_psnr_hN"]
    kept = load_checkpoint(tmp_path / "a" / "model.pt")
    changed = {n for n, p in kept.named_parameters() if not torch.equal(p, dict(m.named_parameters())[n])}
    assert all(n.split(".")[0] in IMAGINATION_MODULES for n in changed), changed
    # the frozen trunk ran in inference mode: no batch-norm statistic moved
    for name, buf in m.named_buffers():
        assert torch.equal(buf, dict(kept.named_buffers())[name]), name
    assert finetune(str(tmp_path / "c"), str(tmp_path / "x"), "--anchor", str(tmp_path / "demos")) == 2
    eps = [read_episode(p) for p in sorted((tmp_path / "demos").glob("episode_*.npz"))]
    c = m.cfg
    windows = WorldWindows(WindowArrays(eps, c.k_frames, c.chunk, c.image_size, m.tokenizer), eps)
    batch = windows.batch(np.arange(len(windows)), augment=False)
    with torch.no_grad():
        frame_err = {
            name: world_loss(load_checkpoint(tmp_path / name / "model.pt"), batch, 0.5)["frame"]
            for name in ("e", "a")
        }
    assert frame_err["a"] < frame_err["e"], (
        frame_err
    )  # the anchored imagination draws the demonstrations better
