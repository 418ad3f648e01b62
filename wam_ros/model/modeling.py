"""The joint World Action Model (pure torch): one forward pass -> next action chunk AND next camera frame.

    model = WorldActionModel(WamConfig.preset("small"))
    action, next_frame = model(frames, joint_pos, tokens)

Inputs are RAW (see docs/interfaces.md "Model"):
    frames     uint8/float (B, K, 3, H, W)  RGB 0..255, oldest first
                           (B, M, K, 3, H, W)  with M = len(cfg.cameras) > 1: camera m in cfg.cameras order
    joint_pos  float32     (B, J)           radians / metres
    tokens     int64       (B, L)           model.tokenizer.encode(instruction): word ids (cfg.instruction_encoder
                                            "words"), or with a pretrained text encoder ("hf:..." / "onnx:...")
               float32     (B, L, E)        its per-token embedding, padding rows all zeros (E = cfg.text_dim)
Outputs:
    action     float32 (B, N, J)  ABSOLUTE joint position targets for steps t .. t+N-1
    next_frame float32 (B, 3, H, W) in [0, 1], the predicted frame at t+1 (of cfg.cameras[0])

Architecture: a conv encoder over the K stacked frames gives (H/8)^2 image tokens; one proprioception token, L
instruction tokens and N action-query tokens join them in a pre-norm transformer; the action head reads the query
tokens (normalised deltas relative to the current joints), the frame decoder reads the image tokens back into a
(3, H, W) residual over the last frame through a small U-Net with the encoder's skips (ending in a sub-pixel conv at
H/2 with cfg.frame_decoder == "shuffle", or a full-resolution stage with "deconv"). The normaliser lives in buffers,
so the network (and every exported graph) takes raw inputs and returns absolute targets. No Python control flow on
data, no in-place ops on inputs: ONNX opset-17 friendly and batch-dynamic.

Several cameras (cfg.cameras, issue 19): every camera's K frames go through the same conv encoder (FiLM included),
each camera's (H/8)^2 image tokens get the image position embedding plus a learned camera embedding, and the tokens
of the cameras after the first sit between the instruction and the action queries, so the first camera's tokens, the
joint token and the words keep the positions the frame decoder and the imagination read: both predict the first
camera, with the decoder's skips from its encoder features; the other cameras reach them through attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from wam_ros.model.config import WamConfig
from wam_ros.model.text_encoder import UnattachedEncoder
from wam_ros.model.tokenizer import Tokenizer

STD_FLOOR = 1e-3  # a joint that never moves in the data (e.g. the gripper in reach) must not divide by ~0
# the progress critic's outputs, in order: success logit, steps to go / STEPS_SCALE, goal distance (m) / DIST_SCALE
CRITIC_OUTPUTS = ("success_logit", "steps_to_go", "goal_distance")
STEPS_SCALE = 50.0
DIST_SCALE = 0.1


def _norm(c: int, kind: str = "group") -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(c)
    if kind == "none":
        return nn.Identity()
    return nn.GroupNorm(min(8, c), c)


class ConvBlock(nn.Module):
    """Stride-2 4x4 conv + 3x3 conv, GroupNorm + ReLU: (B, cin, H, W) -> (B, cout, H/2, W/2).

    ReLU, not GELU, in the conv stages: GELU's backward was 10% of a CPU training step at 64x64.
    """

    def __init__(self, cin: int, cout: int, norm: str = "group") -> None:
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1), _norm(cout, norm), nn.ReLU())
        self.conv = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1), _norm(cout, norm), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        return x + self.conv(x)


class UpBlock(nn.Module):
    """2x transposed conv, concatenated skip, 3x3 conv: (B, cin, h, w) + skip (B, cskip, 2h, 2w) -> (B, cout, 2h, 2w)."""

    def __init__(self, cin: int, cskip: int, cout: int, norm: str = "group") -> None:
        super().__init__()
        self.up = nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1), _norm(cout, norm), nn.ReLU())
        self.conv = nn.Sequential(nn.Conv2d(cout + cskip, cout, 3, 1, 1), _norm(cout, norm), nn.ReLU())

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        return x + self.conv(torch.cat([x, skip], dim=1))


class Block(nn.Module):
    """Pre-norm transformer block with scaled-dot-product attention and an additive key mask."""

    def __init__(self, d: int, n_heads: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.scale = (
            d // n_heads
        ) ** -0.5  # explicit: the exported graph holds a constant, not Shape->Sqrt->Div
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(
            nn.Linear(d, mlp_ratio * d), nn.GELU(), nn.Linear(mlp_ratio * d, d), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last: int | None = None) -> torch.Tensor:
        """(B, S, D) -> (B, S, D); with `last`, only the last `last` tokens' outputs (B, last, D): every token is still
        a key and a value, but queries, projection and MLP run for those rows only (the same numbers for them)."""
        # static sizes only (the batch is -1): the exported graph reshapes with constants, no Shape/Gather chains
        S, D = int(x.shape[1]), int(x.shape[2])
        h = self.ln1(x)
        if last is None:
            q, k, v = self.qkv(h).chunk(3, dim=-1)
        else:
            x = x[:, S - last :]
            q = F.linear(h[:, S - last :], self.qkv.weight[:D], self.qkv.bias[:D])
            k, v = F.linear(h, self.qkv.weight[D:], self.qkv.bias[D:]).chunk(2, dim=-1)
        Q = int(q.shape[1])
        hs = D // self.n_heads
        q = q.reshape(-1, Q, self.n_heads, hs).transpose(1, 2)  # (B,nh,Q,hs)
        k, v = (t.reshape(-1, S, self.n_heads, hs).transpose(1, 2) for t in (k, v))  # (B,nh,S,hs)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0, scale=self.scale
        )
        x = x + self.proj(y.transpose(1, 2).reshape(-1, Q, D))
        return x + self.mlp(self.ln2(x))


class WorldActionModel(nn.Module):
    """Joint WAM: shared encoder + transformer, an action-chunk head and a frame-decoder head."""

    def __init__(self, cfg: WamConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # the instruction encoder (its `encode` gives the `tokens` input): the word tokenizer, or with a pretrained
        # text encoder a placeholder until wam_ros.runtime.text_encoder.attach_text_encoder(model) opens it
        self.tokenizer = (
            UnattachedEncoder(cfg.instruction_encoder)
            if cfg.uses_text_encoder
            else Tokenizer(cfg.vocab, cfg.max_tokens)
        )
        c1, c2, c3 = cfg.enc_channels
        d, J, N = cfg.d_model, cfg.num_joints, cfg.chunk
        self.grid = cfg.image_size // 8
        self.n_cameras = len(cfg.cameras)
        n_tokens = self.grid**2 + 1 + cfg.max_tokens + N
        # -- normaliser (raw inputs in, absolute targets out); filled by set_normalizer() from the training data
        self.register_buffer("joint_mean", torch.zeros(J))
        self.register_buffer("joint_std", torch.ones(J))
        self.register_buffer("delta_mean", torch.zeros(N, J))
        self.register_buffer("delta_std", torch.ones(N, J))
        self.register_buffer("stats_fitted", torch.zeros((), dtype=torch.bool))
        # -- encoders
        nk = cfg.conv_norm
        self.enc1 = ConvBlock(3 * cfg.k_frames, c1, nk)
        self.enc2 = ConvBlock(c1, c2, nk)
        self.enc3 = ConvBlock(c2, c3, nk)
        self.img_proj = nn.Linear(c3, d)
        self.joint_proj = nn.Sequential(nn.Linear(J, d), nn.GELU(), nn.Linear(d, d))
        if (
            cfg.uses_text_encoder
        ):  # a frozen encoder's per-token embedding (B, L, text_dim), normalised + projected
            self.text_norm = nn.LayerNorm(cfg.text_dim)
            self.text_proj = nn.Linear(cfg.text_dim, d)
        else:
            self.word_emb = nn.Embedding(len(cfg.vocab), d)
        if cfg.film:  # zero-initialised: training starts from the unconditioned encoder
            self.film = nn.Linear(d, 2 * (c1 + c2 + c3))
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)
        self.action_queries = nn.Parameter(torch.randn(N, d) * 0.02)
        self.pos_emb = nn.Parameter(torch.randn(n_tokens, d) * 0.02)
        if (
            self.n_cameras > 1
        ):  # which camera an image token comes from (added to the image position embedding)
            self.cam_emb = nn.Parameter(torch.randn(self.n_cameras, d) * 0.02)
        self.blocks = nn.ModuleList(
            Block(d, cfg.n_heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.n_layers)
        )
        self.ln_f = nn.LayerNorm(d)
        # -- heads
        M = cfg.modes
        self.action_head = nn.Linear(d, J * M)
        if M > 1:
            self.mode_head = nn.Linear(d, M)
        self.frame_proj = nn.Linear(d, c3)
        self.dec3 = UpBlock(c3, c2, c2, nk)
        self.dec2 = UpBlock(c2, c1, c1, nk)
        if cfg.frame_decoder == "shuffle":  # H/2 x W/2 features -> 4 sub-pixels each (PixelShuffle)
            self.frame_out = nn.Conv2d(c1, 3 * 4, 3, 1, 1)
        else:
            c0 = max(8, c1 // 2)  # full-resolution stage kept narrow: it dominates the decoder's cost
            self.dec1 = UpBlock(c1, 3 * cfg.k_frames, c0, nk)
            self.frame_out = nn.Conv2d(c0, 3, 3, 1, 1)
        nn.init.zeros_(self.frame_out.weight)  # start as copy-last-frame (residual) / mid-grey
        nn.init.zeros_(self.frame_out.bias)
        if cfg.imagine:  # action-conditioned imagination + progress critic (issue 16)
            self.act_emb = nn.Linear(J, d)
            self.act_pos = nn.Parameter(torch.randn(N, d) * 0.02)
            self.horizon_emb = nn.Embedding(N + 1, d)
            self.imag_blocks = nn.ModuleList(
                Block(d, cfg.n_heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.imag_layers)
            )
            self.imag_ln = nn.LayerNorm(d)
            self.joint_future_head = nn.Linear(d, J)
            self.critic_head = nn.Sequential(
                nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, len(CRITIC_OUTPUTS))
            )

    # ---------------------------------------------------------------- normaliser
    def set_normalizer(
        self,
        joint_mean: torch.Tensor,
        joint_std: torch.Tensor,
        delta_mean: torch.Tensor,
        delta_std: torch.Tensor,
    ) -> None:
        """Store statistics of the raw joints (J,) and of the action deltas a_{t+i} - q_t (N, J)."""
        J, N = self.cfg.num_joints, self.cfg.chunk
        for name, value, shape in (
            ("joint_mean", joint_mean, (J,)),
            ("joint_std", joint_std, (J,)),
            ("delta_mean", delta_mean, (N, J)),
            ("delta_std", delta_std, (N, J)),
        ):
            value = torch.as_tensor(value, dtype=torch.float32)
            if tuple(value.shape) != shape:
                raise ValueError(f"normaliser {name} must have shape {shape}, got {tuple(value.shape)}")
            if not torch.isfinite(value).all():
                raise ValueError(f"normaliser {name} contains NaN or Inf")
            if name.endswith("std"):
                value = value.clamp_min(STD_FLOOR)
            getattr(self, name).copy_(value)
        self.stats_fitted.fill_(True)

    @property
    def normalizer_fitted(self) -> bool:
        return bool(self.stats_fitted)

    def normalize_delta(self, actions: torch.Tensor, joint_pos: torch.Tensor) -> torch.Tensor:
        """Absolute targets (B, N, J) -> normalised deltas relative to joint_pos (B, J)."""
        return (actions - joint_pos[:, None, :] - self.delta_mean) / self.delta_std

    # ---------------------------------------------------------------- network
    def _instruction(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(instruction tokens (B, L, d), real-token mask float (B, L): 1 for a word / subword, 0 for padding).

        Word ids: padding is id 0. A pretrained encoder's embedding (B, L, E): padding rows are all zeros."""
        if not self.cfg.uses_text_encoder:
            return self.word_emb(tokens), (tokens != 0).to(torch.float32)
        text = tokens.to(torch.float32)
        real = (text.abs().amax(-1) > 0).to(torch.float32)  # (B, L)
        return self.text_proj(self.text_norm(text)), real

    def instruction_pad(self, tokens: torch.Tensor) -> torch.Tensor:
        """The additive attention mask of the instruction tokens (B, L): -1e4 on padding (never attended to; -1e4
        keeps an all-padding instruction finite), 0 on real tokens."""
        if not self.cfg.uses_text_encoder:
            return (tokens == 0).to(torch.float32) * -1e4
        return (tokens.to(torch.float32).abs().amax(-1) == 0).to(torch.float32) * -1e4

    def _trunk(
        self, frames: torch.Tensor, joint_pos: torch.Tensor, tokens: torch.Tensor, actions_only: bool = False
    ):
        """Shared encoder + transformer. Returns (x (B, S, d), skips, last frame in [0,1] (B,3,H,W)); with several
        cameras the skips and the last frame are the first camera's.

        actions_only: the last block computes only the N action-query rows (x is then (B, N, d)); nothing else reads
        the other rows when no frame is decoded, and they are most of the last block's cost."""
        M = self.n_cameras
        x_img = frames.to(torch.float32) / 255.0  # (B, K, 3, H, W), or (B, M, K, 3, H, W)
        B = x_img.shape[0]
        H = self.cfg.image_size
        last = x_img[:, -1] if M == 1 else x_img[:, 0, -1]
        stacked = (x_img.reshape(-1, 3 * self.cfg.k_frames, H, H) - 0.5) / 0.25  # (B * M, 3K, H, W)
        word_tok, real = self._instruction(tokens)  # (B, L, d), (B, L)
        e1 = self.enc1(stacked)  # (B * M, c1, H/2, W/2)
        if self.cfg.film:
            keep = real[..., None]  # (B, L, 1)
            sentence = (word_tok * keep).sum(1) / keep.sum(1).clamp_min(1.0)  # (B, d) mean word embedding
            c1, c2, c3 = self.cfg.enc_channels
            film = self.film(sentence)  # (B, 2 (c1 + c2 + c3))
            if M > 1:  # the same conditioning for every camera of a sample: rows b * M + m
                film = film[:, None].expand(-1, M, -1).reshape(-1, 2 * (c1 + c2 + c3))
            g1, b1, g2, b2, g3, b3 = film[:, :, None, None].split([c1, c1, c2, c2, c3, c3], dim=1)
            e1 = e1 * (1 + g1) + b1
            e2 = self.enc2(e1)  # (B, c2, H/4, W/4)
            e2 = e2 * (1 + g2) + b2
            e3 = self.enc3(e2)  # (B, c3, H/8, W/8)
            e3 = e3 * (1 + g3) + b3
        else:
            e2 = self.enc2(e1)
            e3 = self.enc3(e2)
        img_tok = self.img_proj(e3.flatten(2).transpose(1, 2))  # (B * M, P, d)
        q = (joint_pos.to(torch.float32) - self.joint_mean) / self.joint_std
        joint_tok = self.joint_proj(q)[:, None, :]  # (B, 1, d)
        queries = self.action_queries[None].expand(B, -1, -1)  # (B, N, d)
        pad = self.instruction_pad(tokens)  # (B, L) padding words are never attended to
        n_img = self.grid**2 + 1
        skips = (stacked, e1, e2, e3)
        if M == 1:
            x = torch.cat([img_tok, joint_tok, word_tok, queries], dim=1) + self.pos_emb
            mask = F.pad(pad, (n_img, self.cfg.chunk))[:, None, None, :]  # zeros for image/joint/query keys
        else:
            x, mask = self._camera_sequence(img_tok, joint_tok, word_tok, queries, pad)
            skips = tuple(t.reshape(-1, M, *t.shape[1:])[:, 0] for t in skips)  # the first camera's
        n = len(self.blocks)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, self.cfg.chunk if actions_only and i == n - 1 else None)
        return self.ln_f(x), skips, last

    def _camera_sequence(
        self,
        img_tok: torch.Tensor,
        joint_tok: torch.Tensor,
        word_tok: torch.Tensor,
        queries: torch.Tensor,
        pad: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The token sequence of a several-camera model (B, M P + 1 + L + N, d) and its key mask (B, 1, 1, S):
        [first camera's P image tokens, joint, L words, the other cameras' (M - 1) P image tokens, N queries]. Every
        camera's image tokens carry the image position embedding plus its camera embedding."""
        M, P, L, d = self.n_cameras, self.grid**2, self.cfg.max_tokens, self.cfg.d_model
        img = img_tok.reshape(-1, M, P, d) + self.pos_emb[:P] + self.cam_emb[:, None, :]  # (B, M, P, d)
        rest = self.pos_emb[P:]  # joint, words, queries
        x = torch.cat(
            [
                img[:, 0],
                joint_tok + rest[:1],
                word_tok + rest[1 : 1 + L],
                img[:, 1:].reshape(-1, (M - 1) * P, d),
                queries + rest[1 + L :],
            ],
            dim=1,
        )
        mask = F.pad(pad, (P + 1, (M - 1) * P + self.cfg.chunk))[:, None, None, :]
        return x, mask

    def _modes_norm(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(normalised deltas of every mode (B, M, N, J), mode logits (B, M) or None with one mode)."""
        c = self.cfg
        qx = x[:, -c.chunk :]  # (B, N, d) the action-query rows
        out = self.action_head(qx).reshape(-1, c.chunk, c.modes, c.num_joints).transpose(1, 2)
        logits = self.mode_head(qx.mean(1)) if c.modes > 1 else None
        return out, logits

    def _action_norm(self, x: torch.Tensor) -> torch.Tensor:
        """The policy's chunk: the most probable mode's normalised deltas (B, N, J)."""
        modes, logits = self._modes_norm(x)
        if logits is None:
            return modes[:, 0]
        pick = F.one_hot(logits.argmax(-1), self.cfg.modes).to(modes.dtype)  # (B, M): gather without Gather
        return (modes * pick[:, :, None, None]).sum(1)

    def _decode_frame(self, x: torch.Tensor, skips, last: torch.Tensor) -> torch.Tensor:
        stacked, e1, e2, e3 = skips
        P = self.grid**2
        f = (
            self.frame_proj(x[:, :P])
            .transpose(1, 2)
            .reshape(-1, self.cfg.enc_channels[2], self.grid, self.grid)
            + e3
        )  # (B, c3, g, g)
        f = self.dec2(self.dec3(f, e2), e1)  # (B, c1, H/2, W/2)
        if self.cfg.frame_decoder == "shuffle":
            out = F.pixel_shuffle(self.frame_out(f), 2)  # (B, 3, H, W); ONNX DepthToSpace
        else:
            out = self.frame_out(self.dec1(f, stacked))  # (B, 3, H, W)
        if self.cfg.frame_residual:
            return (last + out).clamp(0.0, 1.0)
        return torch.sigmoid(out)

    def forward_train(
        self, frames: torch.Tensor, joint_pos: torch.Tensor, tokens: torch.Tensor, with_frame: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(normalised action deltas (B, N, J), next frame (B, 3, H, W) in [0,1] or None) — what the losses use."""
        x, skips, last = self._trunk(frames, joint_pos, tokens)
        frame = self._decode_frame(x, skips, last) if with_frame else None
        return self._action_norm(x), frame

    def _absolute(self, delta_n: torch.Tensor, joint_pos: torch.Tensor) -> torch.Tensor:
        return joint_pos.to(torch.float32)[:, None, :] + delta_n * self.delta_std + self.delta_mean

    def forward(
        self, frames: torch.Tensor, joint_pos: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw inputs -> (absolute action targets (B, N, J), next frame (B, 3, H, W) in [0, 1]).

        With cfg.imagine the next frame is the imagination of the proposed chunk at h=1 (the frame after its first
        action): one pass gives the chunk and its imagined future together."""
        x, skips, last = self._trunk(frames, joint_pos, tokens)
        delta_n = self._action_norm(x)
        if not self.cfg.imagine:
            return self._absolute(delta_n, joint_pos), self._decode_frame(x, skips, last)
        h = torch.ones(delta_n.shape[0], dtype=torch.int64, device=delta_n.device)
        z = self._imagine_tokens(x, tokens, delta_n, h)
        return self._absolute(delta_n, joint_pos), self._decode_frame(z, skips, last)

    # ---------------------------------------------------------------- imagination (cfg.imagine)
    def _imagine_tokens(
        self, x: torch.Tensor, tokens: torch.Tensor, delta_n: torch.Tensor, horizon: torch.Tensor
    ) -> torch.Tensor:
        """The imagined state after the first `horizon` (B,) actions of the chunk `delta_n` (B, N, J) (normalised
        deltas): (B, P + 1, d) image and joint tokens (ln'd), from the trunk's context `x` (B, S, d).

        The image and joint tokens carry a horizon embedding and attend to the action tokens 0..h-1 only (the
        later ones are masked as keys), so one network answers every horizon 0..N. The word and action tokens come
        first in the sequence, so the last block computes only the P + 1 state rows that are read (queries, MLP)."""
        c = self.cfg
        N, P, L = c.chunk, self.grid**2, c.max_tokens
        hz = self.horizon_emb(horizon)[:, None, :]  # (B, 1, d)
        state = x[:, : P + 1] + hz  # image + joint tokens of the trunk
        words = x[:, P + 1 : P + 1 + L]
        acts = self.act_emb(delta_n) + self.act_pos  # (B, N, d)
        seq = torch.cat([words, acts, state], dim=1)
        step = torch.arange(N, device=delta_n.device)[None, :]
        act_mask = (step >= horizon[:, None]).to(torch.float32) * -1e4  # (B, N) actions not yet executed
        pad = self.instruction_pad(tokens)  # (B, L)
        zeros = torch.zeros_like(pad[:, :1]).expand(-1, P + 1)
        mask = torch.cat([pad, act_mask, zeros], dim=1)[:, None, None, :]
        n = len(self.imag_blocks)
        for i, block in enumerate(self.imag_blocks):
            seq = block(seq, mask, P + 1 if i == n - 1 else None)
        return self.imag_ln(seq[:, -(P + 1) :])

    def _critic(self, z: torch.Tensor) -> torch.Tensor:
        """Critic outputs (B, 3) (CRITIC_OUTPUTS) of an imagined state's tokens z (B, P + 1, d)."""
        P = self.grid**2
        return self.critic_head(torch.cat([z[:, :P].mean(1), z[:, P]], dim=-1))

    def forward_world(
        self,
        frames: torch.Tensor,
        joint_pos: torch.Tensor,
        tokens: torch.Tensor,
        chunk: torch.Tensor,
        horizon: torch.Tensor,
        with_frame: bool = True,
    ) -> dict[str, torch.Tensor | None]:
        """Training pass of an imagining model. `chunk` (B, N, J) absolute targets to imagine (e.g. the actions
        executed in the data), `horizon` (B,) int in 0..N. Returns normalised proposal deltas `modes` (B, M, N, J),
        `mode_logits` (B, M) or None, the imagined `frame` (B, 3, H, W) after h actions (None without with_frame),
        `joints` (B, J) the imagined joint change q_{t+h} - q_t over delta_std[-1], and `critic` (B, 3)."""
        if not self.cfg.imagine:
            raise ValueError("forward_world needs a model built with cfg.imagine")
        x, skips, last = self._trunk(frames, joint_pos, tokens)
        modes, logits = self._modes_norm(x)
        z = self._imagine_tokens(x, tokens, self.normalize_delta(chunk, joint_pos), horizon)
        return {
            "modes": modes,
            "mode_logits": logits,
            "frame": self._decode_frame(z, skips, last) if with_frame else None,
            "joints": self.joint_future_head(z[:, self.grid**2]),
            "critic": self._critic(z),
        }

    def context(
        self, frames: torch.Tensor, joint_pos: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Planner step 1 (one call per decision): (proposals: absolute targets of every mode (B, M, N, J),
        mode probabilities (B, M), the context tokens (B, P + 1 + L, d) that `imagine_score` reads)."""
        x, _, _ = self._trunk(frames, joint_pos, tokens)
        modes, logits = self._modes_norm(x)
        B, M = modes.shape[0], self.cfg.modes
        absolute = self._absolute(modes.reshape(B * M, self.cfg.chunk, -1), joint_pos.repeat_interleave(M, 0))
        probs = torch.softmax(logits, -1) if logits is not None else torch.ones(B, 1, device=modes.device)
        P, L = self.grid**2, self.cfg.max_tokens
        return absolute.reshape(B, M, self.cfg.chunk, -1), probs, x[:, : P + 1 + L]

    def imagine_score(
        self,
        context: torch.Tensor,
        tokens: torch.Tensor,
        joint_pos: torch.Tensor,
        chunk: torch.Tensor,
        horizon: int | torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Planner step 2, batched over candidates: imagine each chunk (B, N, J) (absolute targets) from its context
        (B, P + 1 + L, d) (`context`'s, repeated per candidate) to `horizon` (default N) and score it. Returns
        (critic (B, 3): success logit, steps to go / STEPS_SCALE, goal distance / DIST_SCALE; imagined joint
        positions (B, J) at the horizon, raw units)."""
        if isinstance(horizon, torch.Tensor):  # (B,) a horizon per candidate
            hz = horizon.to(torch.int64)
        else:
            h = self.cfg.chunk if horizon is None else int(horizon)
            hz = torch.full((chunk.shape[0],), h, dtype=torch.int64, device=chunk.device)
        z = self._imagine_tokens(context, tokens, self.normalize_delta(chunk, joint_pos), hz)
        q = joint_pos.to(torch.float32) + self.joint_future_head(z[:, self.grid**2]) * self.delta_std[-1]
        return self._critic(z), q

    def imagine_frame(
        self,
        frames: torch.Tensor,
        joint_pos: torch.Tensor,
        tokens: torch.Tensor,
        chunk: torch.Tensor,
        horizon: torch.Tensor,
    ) -> torch.Tensor:
        """The frame imagined after the first `horizon` (B,) actions of `chunk` (B, N, J) absolute targets:
        (B, 3, H, W) in [0, 1] (the planner's picture of the chunk it chose; h=1 is what the surprise monitor
        compares the next camera frame with)."""
        x, skips, last = self._trunk(frames, joint_pos, tokens)
        z = self._imagine_tokens(x, tokens, self.normalize_delta(chunk, joint_pos), horizon.to(torch.int64))
        return self._decode_frame(z, skips, last)

    def imagine_frames(
        self, frames: torch.Tensor, joint_pos: torch.Tensor, tokens: torch.Tensor, chunk: torch.Tensor
    ) -> torch.Tensor:
        """imagine(frames, joint_pos, instruction, chunk): the imagined frames after 1..N actions of `chunk`
        (B, N, J) absolute targets: (B, N, 3, H, W) in [0, 1]. One trunk pass; the imagination runs per horizon."""
        x, skips, last = self._trunk(frames, joint_pos, tokens)
        delta_n = self.normalize_delta(chunk, joint_pos)
        out = []
        for h in range(1, self.cfg.chunk + 1):
            hz = torch.full((chunk.shape[0],), h, dtype=torch.int64, device=chunk.device)
            out.append(self._decode_frame(self._imagine_tokens(x, tokens, delta_n, hz), skips, last))
        return torch.stack(out, 1)

    def forward_action(
        self, frames: torch.Tensor, joint_pos: torch.Tensor, tokens: torch.Tensor
    ) -> torch.Tensor:
        """Action-only path (no frame decoder; the last block runs for the action queries only): absolute targets
        (B, N, J), equal to forward()'s action up to float rounding."""
        x, _, _ = self._trunk(frames, joint_pos, tokens, actions_only=True)
        return self._absolute(self._action_norm(x), joint_pos)

    def check_inputs(self, frames: torch.Tensor, joint_pos: torch.Tensor, tokens: torch.Tensor) -> None:
        """Raise ValueError naming the expected and received shapes/dtypes (call before forward on untrusted input)."""
        c = self.cfg
        exp = (c.k_frames, 3, c.image_size, c.image_size)
        if self.n_cameras > 1:
            exp = (self.n_cameras, *exp)
        if frames.ndim != len(exp) + 1 or tuple(frames.shape[1:]) != exp:
            cams = f" (cameras {c.cameras})" if self.n_cameras > 1 else ""
            raise ValueError(
                f"frames must be (B, {', '.join(map(str, exp))}) RGB 0..255{cams}, got {tuple(frames.shape)}"
            )
        B = frames.shape[0]
        if tuple(joint_pos.shape) != (B, c.num_joints):
            raise ValueError(f"joint_pos must be (B={B}, J={c.num_joints}), got {tuple(joint_pos.shape)}")
        if c.uses_text_encoder:
            if tokens.dtype != torch.float32 or tuple(tokens.shape) != (B, c.max_tokens, c.text_dim):
                raise ValueError(
                    f"tokens must be the text encoder's embedding float32 (B={B}, L={c.max_tokens}, "
                    f"E={c.text_dim}) (cfg.instruction_encoder {c.instruction_encoder!r}), got {tokens.dtype} "
                    f"{tuple(tokens.shape)}"
                )
            if not torch.isfinite(tokens).all():
                raise ValueError("the instruction embedding contains NaN or Inf")
        elif tokens.dtype != torch.int64 or tuple(tokens.shape) != (B, c.max_tokens):
            raise ValueError(
                f"tokens must be int64 (B={B}, L={c.max_tokens}), got {tokens.dtype} {tuple(tokens.shape)}"
            )
        elif int(tokens.min()) < 0 or int(tokens.max()) >= len(c.vocab):
            raise ValueError(
                f"token ids must be in [0, {len(c.vocab)}), got [{int(tokens.min())}, {int(tokens.max())}]"
            )
        if not torch.isfinite(joint_pos).all():
            raise ValueError("joint_pos contains NaN or Inf")

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
