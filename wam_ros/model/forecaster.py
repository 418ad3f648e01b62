"""The fall forecaster: a small 1-D convolutional network over the last 0.5 s of proprioception (pure torch).

    cfg = ForecasterConfig(n_joints=12)
    net = FallForecaster(cfg)
    p_05, p_1, ttf = net(window)      # window float32 (B, W, 10 + 3J) raw readings, oldest first
    #   p_05, p_1  (B,)  probability of a fall within 0.5 s / 1 s of the window's last sample
    #   ttf        (B,)  time to fall (s), in [0, cfg.horizon_s]; horizon_s means "not within the horizon"

Input columns, in order (`input_columns(J)`; the campaign traces' names, wam_ros.train.campaign.traces): IMU
orientation quaternion xyzw (gravity-aligned world frame), angular velocity (rad/s), linear acceleration (m/s^2,
specific force), then joint positions, velocities and efforts of the J joints. The network turns the quaternion into
the gravity direction in the IMU frame (yaw does not matter to a fall and a real IMU's yaw drifts), normalises with
statistics stored in its buffers, so an exported graph takes the raw readings.

Three conv layers (kernel 5; the first unpadded, two with stride 2) and an MLP head: about 42k parameters for J = 12.
Optionally (`n_aux` > 0) an auxiliary linear head on the MLP's hidden layer, for training only: it predicts what the
simulator knows and the robot does not (the episode's conditions, the push so far) so the features learn them;
`forward` (and so the exported graph) never computes it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from wam_ros.fileio import atomic_path
from wam_ros.robot import IMU_COLUMNS

IMU_INPUTS = IMU_COLUMNS  # the forecaster reads the base IMU as the traces store it


def input_columns(n_joints: int) -> list[str]:
    """The raw input's columns, in order (names as in the campaign traces)."""
    cols = list(IMU_INPUTS)
    for kind in ("joint_pos", "joint_vel", "joint_effort"):
        cols += [f"{kind}_{i:02d}" for i in range(n_joints)]
    return cols


@dataclass(frozen=True)
class ForecasterConfig:
    """Args:
    n_joints: J, joints in the input (laikago and a1: 12).
    window: samples per input window (50 = 0.5 s at 100 Hz).
    rate_hz: sample rate the network was trained at.
    channels: conv channels; hidden: MLP width.
    horizon_s: time-to-fall output range; "no fall within horizon_s" reads horizon_s.
    dropout: dropout of the MLP head while training.
    """

    n_joints: int = 12
    window: int = 50
    rate_hz: float = 100.0
    channels: int = 32
    hidden: int = 64
    horizon_s: float = 2.0
    dropout: float = 0.2
    n_aux: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.n_joints <= 64:
            raise ValueError(f"ForecasterConfig.n_joints must be in [1, 64], got {self.n_joints}")
        if not 8 <= self.window <= 1000:
            raise ValueError(f"ForecasterConfig.window must be in [8, 1000], got {self.window}")
        if not self.rate_hz > 0:
            raise ValueError(f"ForecasterConfig.rate_hz must be > 0, got {self.rate_hz}")
        if self.channels < 4 or self.hidden < 4:
            raise ValueError(f"channels and hidden must be >= 4, got {self.channels}, {self.hidden}")
        if not 0 <= self.n_aux <= 64:
            raise ValueError(f"ForecasterConfig.n_aux must be in [0, 64], got {self.n_aux}")
        if not self.horizon_s > 1.0:
            raise ValueError(f"ForecasterConfig.horizon_s must be > 1 s, got {self.horizon_s}")

    @property
    def n_inputs(self) -> int:
        return 10 + 3 * self.n_joints

    @property
    def n_features(self) -> int:
        return 9 + 3 * self.n_joints  # the quaternion becomes a 3-vector

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# up = third row of R(q) = (2(xz - yw), 2(yz + xw), 1 - 2(x^2 + y^2)) = (q outer q) . UP_FROM_QQ + (0, 0, 1) for a
# unit quaternion q = (x, y, z, w): two graph operations instead of a dozen (this runs at every IMU sample)
_QQ = {
    (0, 2): (0, 2.0),
    (1, 3): (0, -2.0),
    (1, 2): (1, 2.0),
    (0, 3): (1, 2.0),
    (0, 0): (2, -2.0),
    (1, 1): (2, -2.0),
}
UP_FROM_QQ = torch.zeros(16, 3)
for (_i, _j), (_k, _v) in _QQ.items():
    UP_FROM_QQ[4 * _i + _j, _k] = _v


def features(window: torch.Tensor) -> torch.Tensor:
    """(B, W, 10 + 3J) raw readings -> (B, W, 9 + 3J): the quaternion replaced by the gravity direction ('up', world
    +z) in the IMU frame, the third row of R(q)."""
    q = window[..., :4]
    qq = (q.unsqueeze(-1) * q.unsqueeze(-2)).flatten(-2)  # (B, W, 16)
    up = qq @ UP_FROM_QQ.to(window.dtype) + torch.tensor([0.0, 0.0, 1.0], dtype=window.dtype)
    return torch.cat([up, window[..., 4:]], dim=-1)


class FallForecaster(nn.Module):
    def __init__(self, cfg: ForecasterConfig) -> None:
        super().__init__()
        self.cfg = cfg
        f, c = cfg.n_features, cfg.channels
        self.register_buffer("feature_mean", torch.zeros(f))
        self.register_buffer("feature_std", torch.ones(f))
        self.normalise = True
        self.conv = nn.Sequential(
            nn.Conv1d(f, c, 5),  # no padding: the normalisation folds into it exactly (`folded`)
            nn.ReLU(),
            nn.Conv1d(c, c, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv1d(c, c, 5, stride=2, padding=2),
            nn.ReLU(),
        )
        length = cfg.window - 4
        for _ in range(2):
            length = (length - 1) // 2 + 1
        self.head = nn.Sequential(
            nn.Linear(c * length, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, 3)
        )
        self.aux = nn.Linear(cfg.hidden, cfg.n_aux) if cfg.n_aux else None

    def set_normalisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Feature statistics (of `features(window)`), from the training data."""
        self.feature_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.feature_std.copy_(torch.clamp(torch.as_tensor(std, dtype=torch.float32), min=1e-3))

    def logits(self, window: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
        """(B, W, 10 + 3J) -> (B, 3): logit of P(fall <= 0.5 s), logit of P(fall <= 1 s), time-to-fall logit.
        `noise`: std of Gaussian noise added to the normalised features (training augmentation: sensor noise)."""
        return self.head(self._trunk(window, noise))

    def logits_aux(
        self, window: torch.Tensor, noise: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits (B, 3), auxiliary outputs (B, n_aux) or None): training with the auxiliary head."""
        hidden = self.head[:3](self._trunk(window, noise))
        return self.head[3](hidden), (self.aux(hidden) if self.aux is not None else None)

    def _trunk(self, window: torch.Tensor, noise: float) -> torch.Tensor:
        h = features(window)  # (B, W, F)
        if self.normalise:
            h = (h - self.feature_mean) / self.feature_std
        if noise > 0:
            h = h + noise * torch.randn_like(h)
        return self.conv(h.transpose(1, 2)).flatten(1)  # (B, C * W/4)

    def folded(self) -> FallForecaster:
        """A copy with the normalisation folded into the first convolution (conv((x - m) / s) = conv'(x)): the
        same function with two graph operations fewer, for export."""
        import copy

        net = copy.deepcopy(self).eval()
        conv = net.conv[0]
        with torch.no_grad():
            inv = 1.0 / self.feature_std  # (F,)
            w = conv.weight * inv[None, :, None]  # (C, F, K)
            conv.weight.copy_(w)  # exact: this convolution has no padding
            conv.bias.sub_((w * self.feature_mean[None, :, None]).sum(dim=(1, 2)))
        net.normalise = False
        net.aux = None  # training only: never in the exported graph
        return net

    def forward(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = self.logits(window)
        return torch.sigmoid(z[:, 0]), torch.sigmoid(z[:, 1]), self.cfg.horizon_s * torch.sigmoid(z[:, 2])


def save_forecaster(path, net: FallForecaster, extra: dict[str, Any] | None = None) -> None:
    """A checkpoint (atomic) with the config, weights (incl. normalisation) and `extra` (e.g. the alarm rule)."""
    with atomic_path(path) as tmp:
        torch.save({"config": net.cfg.to_dict(), "state_dict": net.state_dict(), "extra": extra or {}}, tmp)


def load_forecaster(path) -> tuple[FallForecaster, dict[str, Any]]:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    net = FallForecaster(ForecasterConfig(**blob["config"]))
    net.load_state_dict(blob["state_dict"])
    net.eval()
    return net, dict(blob.get("extra", {}))
