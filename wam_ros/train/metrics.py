"""Offline metrics: PSNR and SSIM of predicted frames, action error, and batched imagination rollouts.

    psnr(pred, target)            # (B,) dB, images float (B, 3, H, W) in [0, 1]
    ssim(pred, target)            # (B,) mean SSIM (Gaussian window 11, sigma 1.5; Wang et al. 2004 constants)
    imagine(model, frames, tokens, joints, horizon)   # (B, h, 3, H, W): the model fed its own predicted frames

Pure torch; used by `wam eval`, `wam dream` and the benchmarks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from wam_ros.model import WorldActionModel

PROPRIO_MODES = ("real", "imagined")


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for float images in [0, 1], shape (B, C, H, W)."""
    mse = ((pred.float() - target.float()) ** 2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-10))


def _gaussian(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image mean SSIM for float images in [0, 1], shape (B, C, H, W); 'valid' Gaussian filtering."""
    c = pred.shape[1]
    g = _gaussian()
    wx = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    wy = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(x, wx, groups=c), wy, groups=c)

    x, y = pred.float(), target.float()
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1)


@torch.no_grad()
def imagine(
    model: WorldActionModel,
    frames: torch.Tensor,
    tokens: torch.Tensor,
    joints: torch.Tensor,
    horizon: int,
    proprio: str = "real",
) -> torch.Tensor:
    """Roll the model forward on its own predicted frames.

    frames: (B, K, 3, H, W) real frames up to t (0..255); tokens (B, L); joints (B, horizon, J): the joint positions
    at t .. t+horizon-1. proprio="real" feeds those measured joints at every step (the camera is imagined, the joint
    encoders are not); "imagined" uses only joints[:, 0] and then the model's own first action target.
    Returns the imagined frames t+1 .. t+horizon, (B, horizon, 3, H, W) in [0, 1].
    """
    if proprio not in PROPRIO_MODES:
        raise ValueError(f"proprio must be one of {PROPRIO_MODES}, got {proprio!r}")
    window = frames.float()
    q = joints[:, 0]
    out = []
    for h in range(horizon):
        action, nxt = model(window, q, tokens)
        out.append(nxt)
        window = torch.cat([window[:, 1:], nxt[:, None] * 255.0], dim=1)
        if h + 1 < horizon:
            q = joints[:, h + 1] if proprio == "real" else action[:, 0]
    return torch.stack(out, dim=1)
