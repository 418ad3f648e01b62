"""Training losses of the joint WAM: action loss + frame_weight * frame loss.

    out = wam_loss(model, batch, frame_weight=0.5)   # dict: loss, action, frame (scalar tensors)

Action loss: smooth-L1 on normalised deltas, masked past the episode end. Frame loss: MSE on [0, 1] pixels.
With frame_weight == 0 the frame decoder is not even run (the action-only ablation: same network, no frame signal).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from wam_ros.model.batch import ACTION_MASK, ACTIONS, FRAMES, JOINT_POS, NEXT_FRAME, TOKENS
from wam_ros.model.modeling import WorldActionModel


def wam_loss(
    model: WorldActionModel, batch: dict[str, torch.Tensor], frame_weight: float, forward=None
) -> dict[str, torch.Tensor]:
    """Losses for one batch (keys of wam_ros.model.batch). `forward` may be a DDP wrapper's __call__."""
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
