"""Training losses of the joint WAM: action loss + frame_weight * frame loss.

    out = wam_loss(model, batch, frame_weight=0.5)   # dict: loss, action, frame (scalar tensors)

Action loss: smooth-L1 on normalised deltas, masked past the episode end. Frame loss: MSE on [0, 1] pixels.
With frame_weight == 0 the frame decoder is not even run (the action-only ablation: same network, no frame signal).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from wam_ros.model.batch import (
    ACTION_MASK,
    ACTIONS,
    EXECUTED,
    FRAMES,
    FUTURE_FRAME,
    FUTURE_JOINTS,
    GOAL_DISTANCE,
    HORIZON,
    JOINT_POS,
    NEXT_FRAME,
    STEPS_TO_GO,
    SUCCESS,
    TOKENS,
)
from wam_ros.model.modeling import DIST_SCALE, STEPS_SCALE, WorldActionModel

# weights of the imagining model's extra terms (issue 16), beside action (1) and frame (frame_weight)
WTA_SPREAD = 0.05  # relaxed winner-take-all: every mode also gets this share of its own error (no dead modes)
MODE_WEIGHT = 0.1
JOINT_WEIGHT = 0.1
CRITIC_WEIGHT = 0.1


def wam_loss(
    model: WorldActionModel, batch: dict[str, torch.Tensor], frame_weight: float, forward=None
) -> dict[str, torch.Tensor]:
    """Losses for one batch (keys of wam_ros.model.batch). `forward` may be a DDP wrapper's __call__."""
    if model.cfg.imagine:
        return world_loss(model, batch, frame_weight, forward)
    fwd = forward or model.forward_train
    delta_n, frame = fwd(batch[FRAMES], batch[JOINT_POS], batch[TOKENS], frame_weight > 0)
    target = model.normalize_delta(batch[ACTIONS], batch[JOINT_POS])
    mask = batch[ACTION_MASK].to(delta_n.dtype)[..., None]  # (B, N, 1)
    per = F.smooth_l1_loss(delta_n, target, reduction="none", beta=0.5) * mask
    action = per.sum() / (mask.sum() * delta_n.shape[-1]).clamp_min(1.0)
    if frame is None:
        frame_loss = torch.zeros((), dtype=delta_n.dtype)
    else:
        frame_loss = F.mse_loss(frame, batch[NEXT_FRAME].to(torch.float32) / 255.0)
    return {
        "loss": action + frame_weight * frame_loss,
        "action": action.detach(),
        "frame": frame_loss.detach(),
    }


def world_loss(
    model: WorldActionModel, batch: dict[str, torch.Tensor], frame_weight: float, forward=None
) -> dict[str, torch.Tensor]:
    """Losses of an imagining model (cfg.imagine) on a WorldWindows batch.

    action: relaxed winner-take-all over the M proposal modes (the nearest mode's smooth-L1, plus WTA_SPREAD x every
    mode's); mode: cross-entropy of the mode logits on the winning mode; frame: MSE of the frame imagined after the h
    executed actions against the frame at t + h (h >= 1 only); joints: smooth-L1 of the imagined joint change;
    critic: BCE on the episode's success + smooth-L1 on steps to go (successes only) and on the goal distance
    (where recorded)."""
    fwd = forward or model.forward_world
    q = batch[JOINT_POS]
    h = batch[HORIZON]
    out = fwd(batch[FRAMES], q, batch[TOKENS], batch[EXECUTED], h, frame_weight > 0)
    modes, logits = out["modes"], out["mode_logits"]  # (B, M, N, J), (B, M) | None
    target = model.normalize_delta(batch[ACTIONS], q)[:, None]  # (B, 1, N, J)
    mask = batch[ACTION_MASK].to(modes.dtype)[:, None, :, None]  # (B, 1, N, 1)
    per = F.smooth_l1_loss(modes, target.expand_as(modes), reduction="none", beta=0.5) * mask
    per_mode = per.sum((2, 3)) / (mask.sum((2, 3)) * modes.shape[-1]).clamp_min(1.0)  # (B, M)
    best, win = per_mode.min(1)
    action = best.mean() + WTA_SPREAD * per_mode.mean()
    zero = torch.zeros((), dtype=modes.dtype, device=modes.device)
    mode = F.cross_entropy(logits, win) if logits is not None else zero
    frame, joints = imagined_errors(model, batch, out)
    critic = out["critic"]
    success = batch[SUCCESS]
    bce = F.binary_cross_entropy_with_logits(critic[:, 0], success)
    steps = (
        F.smooth_l1_loss(critic[:, 1], batch[STEPS_TO_GO] / STEPS_SCALE, reduction="none") * success
    ).sum() / (success.sum().clamp_min(1.0))
    dist = batch[GOAL_DISTANCE]
    known = torch.isfinite(dist).to(modes.dtype)
    dist_err = F.smooth_l1_loss(critic[:, 2], torch.nan_to_num(dist) / DIST_SCALE, reduction="none") * known
    goal = dist_err.sum() / known.sum().clamp_min(1.0)
    critic_loss = bce + steps + goal
    total = (
        action
        + MODE_WEIGHT * mode
        + frame_weight * frame
        + JOINT_WEIGHT * joints
        + CRITIC_WEIGHT * critic_loss
    )
    return {
        "loss": total,
        "action": action.detach(),
        "frame": frame.detach(),
        "mode": mode.detach(),
        "joints": joints.detach(),
        "critic_bce": bce.detach(),
        "critic_steps": steps.detach(),
        "critic_goal": goal.detach(),
    }


def imagined_errors(
    model: WorldActionModel, batch: dict[str, torch.Tensor], out: dict[str, torch.Tensor | None]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(frame, joints) of a forward_world output `out` on a WorldWindows batch: the MSE of the imagined frame
    against the frame at t + h over the windows with h >= 1 (0 without a frame), and the smooth-L1 of the imagined
    joint change."""
    h = batch[HORIZON]
    q = batch[JOINT_POS]
    if out["frame"] is None:
        frame = torch.zeros((), dtype=out["joints"].dtype, device=out["joints"].device)
    else:
        moved = (h > 0).to(out["frame"].dtype)
        err = ((out["frame"] - batch[FUTURE_FRAME].to(torch.float32) / 255.0) ** 2).mean((1, 2, 3))
        frame = (err * moved).sum() / moved.sum().clamp_min(1.0)
    joint_t = (batch[FUTURE_JOINTS] - q) / model.delta_std[-1]
    return frame, F.smooth_l1_loss(out["joints"], joint_t, beta=0.5)
