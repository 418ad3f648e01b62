"""The joint WAM (tiny preset): shapes, raw-in/absolute-out contract, save/load round trip, bad inputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from wam_ros.model import CheckpointError, WamConfig, WorldActionModel, load_checkpoint, save_checkpoint

torch.set_num_threads(1)


def _inputs(cfg: WamConfig, b: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(
        0, 256, (b, cfg.k_frames, 3, cfg.image_size, cfg.image_size), generator=g, dtype=torch.uint8
    )
    joints = torch.randn(b, cfg.num_joints, generator=g)
    return frames, joints


def _assert_same_outputs(a: WorldActionModel, b: WorldActionModel, frames, joints, tokens) -> None:
    with torch.no_grad():
        for x, y in zip(a(frames, joints, tokens), b(frames, joints, tokens), strict=True):
            assert torch.equal(x, y)


def _legacy_config(missing: str) -> WamConfig:
    """The tiny preset's config as a checkpoint from before the field `missing` existed stores it."""
    old = WamConfig.preset("tiny").to_dict()
    del old[missing]
    return WamConfig.from_dict(old)


@pytest.fixture
def tiny() -> WorldActionModel:
    torch.manual_seed(0)
    model = WorldActionModel(WamConfig.preset("tiny")).eval()
    n, j = model.cfg.chunk, model.cfg.num_joints
    model.set_normalizer(
        torch.linspace(-1, 1, j), torch.full((j,), 0.5), torch.full((n, j), 0.01), torch.full((n, j), 0.05)
    )
    return model


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_forward_shapes_and_ranges(preset):
    cfg = WamConfig.preset(preset)
    model = WorldActionModel(cfg).eval()
    frames, joints = _inputs(cfg)
    tokens = torch.as_tensor(model.tokenizer.encode_batch(["reach the red target", "push the blue cube", ""]))
    with torch.no_grad():
        action, frame = model(frames, joints, tokens)
        action_only = model.forward_action(frames.float(), joints, tokens)  # float frames are accepted too
    assert action.shape == (3, cfg.chunk, cfg.num_joints) and action.dtype == torch.float32
    assert frame.shape == (3, 3, cfg.image_size, cfg.image_size)
    assert frame.min() >= 0 and frame.max() <= 1
    assert torch.isfinite(action).all()
    torch.testing.assert_close(action, action_only)


def test_untrained_residual_frame_head_starts_as_copy_last(tiny):
    frames, joints = _inputs(tiny.cfg)
    tokens = torch.as_tensor(tiny.tokenizer.encode_batch(["reach"] * 3))
    with torch.no_grad():
        _, frame = tiny(frames, joints, tokens)
    torch.testing.assert_close(frame, frames[:, -1].float() / 255.0)


def test_action_is_absolute_relative_to_current_joints(tiny):
    """Shifting joint_pos by c while its normalised value stays fixed shifts the absolute targets by c."""
    frames, joints = _inputs(tiny.cfg, b=1)
    tokens = torch.as_tensor(tiny.tokenizer.encode_batch(["reach the red target"]))
    with torch.no_grad():
        a1 = tiny.forward_action(frames, joints, tokens)
        tiny.joint_mean += 0.3
        a2 = tiny.forward_action(frames, joints + 0.3, tokens)
    torch.testing.assert_close(a2 - a1, torch.full_like(a1, 0.3), atol=1e-5, rtol=0)


def test_instruction_changes_the_output(tiny):
    frames, joints = _inputs(tiny.cfg, b=1)
    enc = tiny.tokenizer.encode_batch
    with torch.no_grad():
        a = tiny.forward_action(frames, joints, torch.as_tensor(enc(["reach the red target"])))
        b = tiny.forward_action(frames, joints, torch.as_tensor(enc(["reach the blue target"])))
    assert not torch.allclose(a, b)


def test_tokenizer_pads_truncates_and_maps_unknown_words(tiny):
    tok = tiny.tokenizer
    ids = tok.encode("Reach the RED target!")
    assert ids.dtype == np.int64 and ids.shape == (tiny.cfg.max_tokens,)
    assert tok.decode(ids) == "reach the red target"
    assert tok.encode("zorblax")[0] == 1 and tok.unknown_words("reach zorblax") == ["zorblax"]
    assert (tok.encode("red " * 50) > 0).all()
    with pytest.raises(ValueError, match="instruction must be a str"):
        tok.encode(None)


def test_save_load_round_trip_is_exact(tiny, tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", tiny, extra={"note": "hi", "steps": 3})
    loaded = load_checkpoint(path, require_fitted=True)
    assert loaded.cfg == tiny.cfg and loaded.extra == {"note": "hi", "steps": 3}
    for (k, v), (k2, v2) in zip(tiny.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2), k
    frames, joints = _inputs(tiny.cfg)
    tokens = torch.as_tensor(tiny.tokenizer.encode_batch(["reach the red target"] * 3))
    _assert_same_outputs(tiny, loaded, frames, joints, tokens)


def test_config_validation_names_the_bad_value():
    with pytest.raises(ValueError, match="image_size must be divisible by 8, got 60"):
        WamConfig.preset("tiny", image_size=60)
    with pytest.raises(ValueError, match="d_model .* divisible by n_heads"):
        WamConfig.preset("tiny", d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="k_frames must be a positive int, got 0"):
        WamConfig.preset("tiny", k_frames=0)
    with pytest.raises(ValueError, match="unknown WamConfig preset 'huge'"):
        WamConfig.preset("huge")
    with pytest.raises(ValueError, match=r"unknown WamConfig field\(s\) \['colour'\]"):
        WamConfig.preset("tiny", colour=1)
    with pytest.raises(ValueError, match="joint_names has 8 names, num_joints is 2"):
        WamConfig.preset("tiny", num_joints=2)
    assert WamConfig.from_dict(WamConfig.preset("small").to_dict()) == WamConfig.preset("small")
    with pytest.raises(ValueError, match="conv_norm must be one of .* got 'layer'"):
        WamConfig.preset("tiny", conv_norm="layer")
    with pytest.raises(ValueError, match="frame_decoder must be one of .* got 'bilinear'"):
        WamConfig.preset("tiny", frame_decoder="bilinear")


@pytest.mark.parametrize("norm", ["group", "batch", "none"])
def test_every_conv_norm_trains_saves_and_reloads(norm, tmp_path):
    """Each conv_norm builds, takes a training step, and round-trips exactly; a config dict from before the field
    existed (the first shipped model's) loads as GroupNorm."""
    torch.manual_seed(0)
    model = WorldActionModel(WamConfig.preset("tiny", conv_norm=norm))
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"group": "GroupNorm", "batch": "BatchNorm2d", "none": "Conv2d"}[norm] in kinds
    assert norm == "group" or "GroupNorm" not in kinds
    frames, joints = _inputs(model.cfg, b=4)
    tokens = torch.as_tensor(model.tokenizer.encode_batch(["push the cube onto the red pad"] * 4))
    delta, frame = model.forward_train(frames, joints, tokens)
    (delta.square().mean() + frame.mean()).backward()
    model.eval()
    _assert_same_outputs(
        model, load_checkpoint(save_checkpoint(tmp_path / "m.pt", model)), frames, joints, tokens
    )
    assert _legacy_config("conv_norm").conv_norm == "group"


@pytest.mark.parametrize("decoder", ["deconv", "shuffle"])
def test_both_frame_decoders_train_save_reload_and_start_as_copy_last(decoder, tmp_path):
    """ "shuffle" (sub-pixel conv at H/2, the presets' default) and "deconv" (full-resolution stage, the first shipped
    models) both build, start as copy-last-frame, learn from a step, and round-trip exactly; a config dict from
    before the field existed loads as "deconv"."""
    torch.manual_seed(0)
    model = WorldActionModel(WamConfig.preset("tiny", frame_decoder=decoder))
    assert hasattr(model, "dec1") == (decoder == "deconv")
    assert model.frame_out.out_channels == (12 if decoder == "shuffle" else 3)
    frames, joints = _inputs(model.cfg, b=4)
    tokens = torch.as_tensor(model.tokenizer.encode_batch(["push the cube onto the red pad"] * 4))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(frames, joints, tokens)[1], frames[:, -1].float() / 255.0)
    model.train()
    target = torch.rand(4, 3, model.cfg.image_size, model.cfg.image_size)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(3):
        _, frame = model.forward_train(frames, joints, tokens)
        loss = (frame - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]
    model.eval()
    loaded = load_checkpoint(save_checkpoint(tmp_path / "m.pt", model))
    assert loaded.cfg.frame_decoder == decoder
    _assert_same_outputs(model, loaded, frames, joints, tokens)
    assert _legacy_config("frame_decoder").frame_decoder == "deconv"


def test_wrong_image_size_is_a_clear_error(tiny):
    frames = torch.zeros(1, tiny.cfg.k_frames, 3, 48, 48, dtype=torch.uint8)
    joints = torch.zeros(1, tiny.cfg.num_joints)
    tokens = torch.as_tensor(tiny.tokenizer.encode_batch(["reach"]))
    with pytest.raises(ValueError, match=r"frames must be \(B, 2, 3, 64, 64\).*got \(1, 2, 3, 48, 48\)"):
        tiny.check_inputs(frames, joints, tokens)
    with pytest.raises(ValueError, match=r"joint_pos must be \(B=1, J=8\), got \(1, 7\)"):
        tiny.check_inputs(torch.zeros(1, 2, 3, 64, 64), torch.zeros(1, 7), tokens)
    with pytest.raises(ValueError, match="tokens must be int64"):
        tiny.check_inputs(torch.zeros(1, 2, 3, 64, 64), joints, tokens.float())


def test_bad_normaliser_statistics_are_refused(tiny):
    with pytest.raises(ValueError, match=r"delta_std must have shape \(8, 8\), got \(8,\)"):
        tiny.set_normalizer(torch.zeros(8), torch.ones(8), torch.zeros(8, 8), torch.ones(8))
    with pytest.raises(ValueError, match="joint_std contains NaN"):
        tiny.set_normalizer(
            torch.zeros(8), torch.full((8,), float("nan")), torch.zeros(8, 8), torch.ones(8, 8)
        )


def test_missing_normaliser_stats_and_corrupt_checkpoints_are_clear_errors(tiny, tmp_path):
    path = save_checkpoint(tmp_path / "model.pt", tiny)
    ckpt = torch.load(path, weights_only=True)
    del ckpt["state_dict"]["delta_std"]
    torch.save(ckpt, tmp_path / "nostats.pt")
    with pytest.raises(CheckpointError, match=r"missing normaliser statistics \['delta_std'\]"):
        load_checkpoint(tmp_path / "nostats.pt")
    data = path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or not a torch file"):
        load_checkpoint(tmp_path / "trunc.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a wam_ros model checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "absent.pt")
    untrained = save_checkpoint(tmp_path / "untrained.pt", WorldActionModel(WamConfig.preset("tiny")))
    with pytest.raises(CheckpointError, match="never fitted"):
        load_checkpoint(untrained, require_fitted=True)
    assert load_checkpoint(tmp_path).cfg == tiny.cfg  # a directory means <dir>/model.pt
    ckpt = torch.load(path, weights_only=True)
    ckpt["config"] = dataclasses.replace(tiny.cfg, d_model=64, n_heads=2).to_dict()
    torch.save(ckpt, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="weights do not match the config"):
        load_checkpoint(tmp_path / "mismatch.pt")
