"""Train the joint WAM on episodes (progress bar, checkpoints, resume, seeded, DDP via torchrun): `wam train`.

    path = train(TrainConfig(data=["data/reach", "data/push"], out="runs/panda", steps=6000))
    wam train --data data/reach data/push --preset small --out runs/panda --steps 6000        # wam_ros/cli/train.py
    wam train ... --device cuda --amp bf16 --workers 4                  # one GPU, mixed precision, loader workers
    torchrun --nproc_per_node 2 -m wam_ros.cli.train --data data/reach --out runs/ddp   # 2 CPU processes, gloo
    torchrun --nproc_per_node 8 -m wam_ros.cli.train --device cuda --amp bf16 ...       # 8 GPUs, nccl

Devices (docs/training.md): `device` "cpu" (the default), "cuda" (refused with the reason when this machine or this
torch build cannot run CUDA: never a silent CPU fallback) or "auto" (CUDA when it works, else CPU, logged). `amp`
"off" (the default: fp32, the same numbers as before devices existed), "bf16" (autocast, no loss scaling) or "fp16"
(autocast + GradScaler); both work on CPU too (slowly; for tests). `workers` > 0 gathers batches in DataLoader worker
processes (pinned memory on CUDA, non-blocking copies); the batches are the same as with 0 workers.
Under torchrun every rank sets its device from LOCAL_RANK (nccl on CUDA, gloo on CPU), samples its own shard of the
training windows, and only rank 0 evaluates and writes files.

Writes into `out`: model.pt (the model checkpoint, see wam_ros.model.checkpoint) and the model folder's manifest
(sha256 of model.pt, wam_ros.runtime.model_dir), train_state.pt (optimizer, step, RNG: what `resume` needs),
metrics.csv, loss_curves.png, train_args.json. Loss = action + frame_weight * frame; frame_weight 0 trains the
action-only ablation (same network, the frame decoder gets no signal).

The run is a `Trainer` (as diffusion_policy's BaseWorkspace): `setup()` builds data, model and optimizer from the
config, `resume()` restores them from train_state.pt, `step()` is one optimizer step, `evaluate()` the held-out
losses, `save()` the checkpoint + state; `run()` strings them together. Every rank of a DDP run holds one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from wam_ros.data.windows import WindowArrays
from wam_ros.data.world_windows import WorldWindows
from wam_ros.fileio import atomic_path
from wam_ros.model import WamConfig, WorldActionModel, load_checkpoint, save_checkpoint
from wam_ros.model.batch import ACTION_MASK, ACTIONS, FRAMES, JOINT_POS, TOKENS
from wam_ros.model.config import check_cameras, parse_instruction_encoder
from wam_ros.model.losses import wam_loss
from wam_ros.model.tokenizer import extend_vocab
from wam_ros.runtime.backends import cuda_device_count
from wam_ros.runtime.model_dir import CHECKPOINT, add_to_manifest
from wam_ros.runtime.text_encoder import open_instruction_encoder
from wam_ros.train.batches import BatchStream, load_episodes
from wam_ros.train.plots import MetricsLog, plot_losses

log = logging.getLogger("wam.train")
STATE = "train_state.pt"
# warm start into a mixture head: the extra modes start as the single head + this much noise (x the weights' std)
WARM_MODE_NOISE = 0.5
DEVICES = ("cpu", "cuda", "auto")
AMP_MODES = ("off", "bf16", "fp16")
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# instruction length with a pretrained encoder: subword tokens plus [CLS]/[SEP] outnumber the words (12 by default)
TEXT_MAX_TOKENS = 24


@dataclass
class TrainConfig:
    """Options of one training run (validated)."""

    data: list[str]
    out: str
    preset: str = "small"
    steps: int = 4000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 200
    frame_weight: float = 0.5
    seed: int = 0
    threads: int = 2
    ckpt_every: int = 500
    eval_every: int = 250
    val_frac: float = 0.05
    max_minutes: float = 0.0  # 0: no wall-clock limit
    resume: bool = False
    device: str = "cpu"  # cpu | cuda | auto
    amp: str = "off"  # off | bf16 | fp16 (autocast; fp16 with a GradScaler)
    workers: int = 0  # DataLoader worker processes gathering batches (0: in the training process)
    init: str | None = None  # warm start: copy every weight of this checkpoint whose shape fits (issue 16)
    augment_instructions: float = (
        0.0  # probability that a window's instruction is paraphrased (issue 17; 0: off)
    )
    # the instruction encoder (issue 17 item 2): "words" (the learned vocabulary) or a frozen pretrained encoder
    # "hf:<name or local dir>" | "onnx:<dir>" whose per-token embedding is computed once per distinct instruction
    instruction_encoder: str = "words"
    max_tokens: int = (
        0  # instruction length L; 0: the preset's (words) or TEXT_MAX_TOKENS (a pretrained encoder)
    )
    # the model's cameras (issue 19): () = one camera, the episodes' `frames`; ("front", "wrist"): `frames` is the
    # first (the one predicted), each other camera is read from the episodes' `<camera>_frames` arrays
    cameras: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.data:
            raise ValueError("TrainConfig.data must name at least one episode directory")
        for name in ("steps", "batch_size", "threads", "ckpt_every", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr!r}")
        if self.frame_weight < 0:
            raise ValueError(f"TrainConfig.frame_weight must be >= 0, got {self.frame_weight!r}")
        if not 0.0 <= self.val_frac < 1.0:
            raise ValueError(f"TrainConfig.val_frac must be in [0, 1), got {self.val_frac!r}")
        if self.max_minutes < 0:
            raise ValueError(f"TrainConfig.max_minutes must be >= 0, got {self.max_minutes!r}")
        if self.device not in DEVICES:
            raise ValueError(f"TrainConfig.device must be one of {DEVICES}, got {self.device!r}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"TrainConfig.amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.workers < 0:
            raise ValueError(f"TrainConfig.workers must be >= 0, got {self.workers!r}")
        if not 0.0 <= self.augment_instructions <= 1.0:
            raise ValueError(
                f"TrainConfig.augment_instructions must be in [0, 1], got {self.augment_instructions!r}"
            )
        parse_instruction_encoder(self.instruction_encoder)  # ValueError naming the accepted forms
        if self.max_tokens < 0:
            raise ValueError(f"TrainConfig.max_tokens must be >= 0 (0: the default), got {self.max_tokens!r}")
        if self.cameras:
            self.cameras = tuple(check_cameras(list(self.cameras), "TrainConfig.cameras"))


class DeviceUnavailable(ValueError):
    """The device asked for cannot be used on this machine (the message says what is missing)."""


def cuda_unavailable_reason() -> str | None:
    """None when torch can run CUDA here; otherwise what is missing, in words."""
    if torch.cuda.is_available():
        return None
    gpus = cuda_device_count()  # asks the NVIDIA driver directly, whatever torch was built with
    seen = (
        f"the NVIDIA driver reports {gpus} GPU(s)"
        if gpus
        else "the NVIDIA driver (libcuda.so.1) reports no GPU on this machine"
    )
    if torch.version.cuda is None:
        return f"this torch build ({torch.__version__}) has no CUDA support, and {seen}"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return (
        f"torch {torch.__version__} is built for CUDA {torch.version.cuda} but cannot use a GPU: {seen}"
        + (f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else "")
    )


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The torch device for TrainConfig.device on this process (cuda:LOCAL_RANK under torchrun, made current).

    "cuda" raises DeviceUnavailable with the reason when CUDA cannot run here; "auto" falls back to the CPU (logged)."""
    if name not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {name!r}")
    if name == "cpu":
        return torch.device("cpu")
    reason = cuda_unavailable_reason()
    if reason is not None:
        if name == "auto":
            log.info("--device auto: training on the CPU (%s)", reason)
            return torch.device("cpu")
        raise DeviceUnavailable(
            f"--device cuda: {reason}. Train on the CPU with --device cpu (the default), or --device auto"
        )
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise DeviceUnavailable(
            f"--device cuda: this is LOCAL_RANK {local_rank} but only {count} CUDA device(s) are visible: "
            f"start torchrun with --nproc_per_node <= {count}"
        )
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def check_amp(amp: str, device: torch.device) -> None:
    """Refuse a precision the device cannot train in, before any work."""
    # native bf16 only (Ampere and later): emulated bf16 on older GPUs is slower than fp32
    if (
        amp == "bf16"
        and device.type == "cuda"
        and not torch.cuda.is_bf16_supported(including_emulation=False)
    ):
        name = torch.cuda.get_device_name(device)
        raise DeviceUnavailable(f"--amp bf16: {name} has no bf16 support; use --amp fp16 (with loss scaling)")


class _TrainForward(nn.Module):
    """The module DDP wraps: its forward is the training forward (normalised deltas + frame)."""

    def __init__(self, model: WorldActionModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args):
        """forward_train(frames, joint_pos, tokens, with_frame), or an imagining model's forward_world(frames,
        joint_pos, tokens, chunk, horizon, with_frame)."""
        if self.model.cfg.imagine:
            return self.model.forward_world(*args)
        return self.model.forward_train(*args)


def _augmenter(p: float, max_words: int):  # noqa: ANN202 - the paraphrase generator (issue 17), imported only when asked for
    import functools

    from wam_ros.model.paraphrase import augment_instruction

    return functools.partial(augment_instruction, p=p, max_words=max_words)


def split_episodes(n: int, val_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Episode indices (train, val), split by episode (never by window) with a seeded permutation."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = min(int(round(n * val_frac)), n - 1)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def lr_at(step: int, cfg: TrainConfig, time_frac: float = 0.0) -> float:
    """Linear warm-up then cosine decay to 5% of the peak.

    With a wall-clock budget (--max-minutes) the decay follows whichever is further along, steps or time, so a run
    cut short by the budget still ends at a low learning rate (such a run is then only as deterministic as the
    machine's speed; without --max-minutes it depends on the seed alone).
    """
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = min(1.0, max(time_frac, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)))
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p)))


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The batch on `device` (non-blocking copies: asynchronous from pinned memory); unchanged on the CPU."""
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def validate(
    model: WorldActionModel, data: WindowArrays, idx: np.ndarray, frame_weight: float, batch_size: int = 128
) -> dict[str, float]:
    """Mean val losses + action MAE in raw units (absolute targets, masked) over the windows `idx` (fp32, on the
    model's device)."""
    model.eval()
    device = model.joint_mean.device
    sums: dict[str, float] = {}
    n = 0
    for s in range(0, len(idx), batch_size):
        b = to_device(data.batch(idx[s : s + batch_size], augment=False), device)  # the template phrasing
        out = wam_loss(
            model, b, frame_weight=1.0
        )  # always measure the frame loss, whatever the training weight
        action = model.forward_action(b[FRAMES], b[JOINT_POS], b[TOKENS])
        mask = b[ACTION_MASK][..., None].float()
        mae = ((action - b[ACTIONS]).abs() * mask).sum() / (mask.sum() * action.shape[-1])
        k = len(b[TOKENS])
        for key, value in out.items():
            if key != "loss":
                sums[f"val_{key}"] = sums.get(f"val_{key}", 0.0) + float(value) * k
        sums["val_action_mae"] = sums.get("val_action_mae", 0.0) + float(mae) * k
        n += k
    model.train()
    return {key: v / max(n, 1) for key, v in sums.items()}


class Trainer:
    """One training run (one rank of it under DDP). See the module docstring for the life cycle."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.rank = 0
        self.device = torch.device("cpu")
        self.scaler: torch.amp.GradScaler | None = None
        self.stream: BatchStream | None = None
        self.step_count = 0
        self.elapsed_before = 0.0  # training time of the runs this one resumes
        self.t0 = time.monotonic()

    # ------------------------------------------------------------------------------------------------ set-up
    def setup(self) -> None:
        """Device, process group, threads, data, model (normaliser fitted on the training split), optimizer, sampler.

        The device is checked first, so a machine that cannot run it is told so before any work."""
        cfg = self.cfg
        self.device = resolve_device(cfg.device, self.local_rank)
        check_amp(cfg.amp, self.device)
        if self.device.type == "cuda":  # fixed batch shapes: let cuDNN pick its fastest kernels once
            torch.backends.cudnn.benchmark = True
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.rank = dist.get_rank() if self.world > 1 else 0
        torch.set_num_threads(cfg.threads)
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
        self.state = self._read_state()
        self.episodes = load_episodes(cfg.data)
        self.mcfg = self._model_config()
        torch.manual_seed(cfg.seed)
        self.model = WorldActionModel(self.mcfg)
        if self.mcfg.uses_text_encoder:  # one cached encoder: each distinct instruction is encoded once
            self.model.tokenizer = self.text_encoder
        self.train_ep, self.val_ep = split_episodes(len(self.episodes), cfg.val_frac, cfg.seed)
        self.data = WindowArrays(
            self.episodes,
            self.mcfg.k_frames,
            self.mcfg.chunk,
            self.mcfg.image_size,
            self.model.tokenizer,
            **(
                {"augment": _augmenter(cfg.augment_instructions, self.mcfg.max_tokens)}
                if cfg.augment_instructions
                else {}
            ),
            cameras=self.mcfg.cameras,
        )
        if self.mcfg.imagine:
            self.data = WorldWindows(self.data, self.episodes, seed=cfg.seed)
        self.train_idx = np.flatnonzero(np.isin(self.data.episode, self.train_ep))
        val_idx = np.flatnonzero(np.isin(self.data.episode, self.val_ep))
        self.val_idx = val_idx[np.random.default_rng(cfg.seed).permutation(len(val_idx))[:1024]]
        if self.state is None and cfg.init:
            self._warm_start(cfg.init)
        elif self.state is None:
            self._fit_normalizer()
        self.model.to(self.device)  # initialised on the CPU: the same initial weights on every device
        self.opt = self._optimizer()
        if cfg.amp == "fp16":
            self.scaler = torch.amp.GradScaler(self.device.type)
        self.rng = np.random.default_rng(cfg.seed * 1000 + self.rank)
        # per-rank sharding: rank r samples the training windows r, r + world, ... (all of them with one process)
        self.shard = self.train_idx[self.rank :: self.world]
        if self.world > 1 and cfg.batch_size % self.world and self.rank == 0:
            log.warning(
                "batch size %d is not a multiple of the %d ranks: each rank takes %d (global batch %d)",
                cfg.batch_size,
                self.world,
                self._per_rank(),
                self._per_rank() * self.world,
            )

    def _per_rank(self) -> int:
        return max(1, self.cfg.batch_size // self.world)

    def _read_state(self) -> dict | None:
        path = self.out / STATE
        if self.cfg.resume and path.is_file():
            return torch.load(path, map_location="cpu", weights_only=True)
        if self.cfg.resume and self.rank == 0:
            log.warning("--resume: no %s yet, starting from scratch", path)
        return None

    def _model_config(self) -> WamConfig:
        if self.state is not None:
            mcfg = WamConfig.from_dict(self.state["config"])
            if mcfg.uses_text_encoder:
                self.text_encoder = open_instruction_encoder(mcfg.to_dict())
            return mcfg
        cfg, first = self.cfg, self.episodes[0]
        if cfg.instruction_encoder != "words":
            return self._text_encoder_config()
        base = WamConfig.preset(cfg.preset)
        vocab = base.vocab
        if cfg.init:  # the warm start's word ids stay where they were
            vocab = load_checkpoint(cfg.init).cfg.vocab
        texts = sorted({e.instruction for e in self.episodes})
        if cfg.augment_instructions:
            from wam_ros.model.paraphrase import lexicon

            texts += [" ".join(lexicon())]
        return WamConfig.preset(
            cfg.preset,
            **({"max_tokens": cfg.max_tokens} if cfg.max_tokens else {}),
            **({"cameras": list(cfg.cameras)} if cfg.cameras else {}),
            vocab=extend_vocab(vocab, texts),
            num_joints=first.joint_pos.shape[1],
            joint_names=list(first.meta["robot"].get("joint_names", base.joint_names)),
            control_hz=float(first.meta["control_hz"]),
            robot=str(first.meta["robot"].get("name", base.robot)),
        )

    def _text_encoder_config(self) -> WamConfig:
        """The preset with a frozen pretrained instruction encoder: opened here (a clear error when it is not local)
        to learn its embedding size; the word vocabulary stays the preset's (unused)."""
        cfg, first = self.cfg, self.episodes[0]
        base = WamConfig.preset(cfg.preset)
        spec = {
            "instruction_encoder": cfg.instruction_encoder,
            "max_tokens": cfg.max_tokens or TEXT_MAX_TOKENS,
            "vocab": base.vocab,
        }
        self.text_encoder = open_instruction_encoder(spec)
        return WamConfig.preset(
            cfg.preset,
            **spec,
            **({"cameras": list(cfg.cameras)} if cfg.cameras else {}),
            text_dim=self.text_encoder.dim,
            num_joints=first.joint_pos.shape[1],
            joint_names=list(first.meta["robot"].get("joint_names", base.joint_names)),
            control_hz=float(first.meta["control_hz"]),
            robot=str(first.meta["robot"].get("name", base.robot)),
        )

    def _warm_start(self, path: str) -> None:
        """Copy the weights and the normaliser of checkpoint `path` wherever a tensor of the same name fits: same
        shape, or the first rows of a larger one (new vocabulary words); a single-chunk action head becomes mode 0 of
        a mixture head and seeds the others (plus WARM_MODE_NOISE, so the modes can part). The rest (imagination, critic, mode logits) starts
        fresh. The normaliser is the checkpoint's: its action head speaks those units."""
        src = load_checkpoint(path).state_dict()
        dst = self.model.state_dict()
        copied, g = [], torch.Generator().manual_seed(self.cfg.seed)
        for name, value in src.items():
            if name not in dst:
                continue
            t = dst[name]
            if t.shape == value.shape:
                t.copy_(value)
            elif (
                name.startswith("action_head.")
                and t.shape[0] % value.shape[0] == 0
                and t.shape[1:] == value.shape[1:]
            ):
                M = t.shape[0] // value.shape[0]  # the head's rows are (M, J): row m * J + j
                tiled = value.repeat(M, *([1] * (value.ndim - 1)))
                # mode 0 is the checkpoint's head exactly (the policy does not get worse at step 0); the others
                # start as clearly different chunks, so winner-take-all can tell them apart and they specialise
                noise = WARM_MODE_NOISE * value.std() * torch.randn(tiled.shape, generator=g)
                noise[: value.shape[0]] = 0.0
                t.copy_(tiled + noise)
            elif t.ndim == value.ndim and t.shape[1:] == value.shape[1:] and t.shape[0] > value.shape[0]:
                t[: value.shape[0]].copy_(value)
            else:
                continue
            copied.append(name)
        self.model.load_state_dict(dst)
        if self.rank == 0:
            log.info("warm start from %s: %d of %d tensors copied", path, len(copied), len(dst))

    def _fit_normalizer(self) -> None:
        """Joint and action-delta statistics of the training episodes only (never the held-out ones)."""
        m = self.mcfg
        sub = self.data
        if len(self.val_ep):
            train_eps = [self.episodes[i] for i in self.train_ep]
            sub = WindowArrays(
                train_eps, m.k_frames, m.chunk, m.image_size, self.model.tokenizer, cameras=m.cameras
            )
        self.model.set_normalizer(*map(torch.from_numpy, sub.normalizer_stats()))

    def _optimizer(self) -> torch.optim.Optimizer:
        """AdamW; no weight decay on biases, norms, embeddings and the action queries."""
        named = list(self.model.named_parameters())
        decays = [p.ndim >= 2 and "emb" not in n and "queries" not in n for n, p in named]
        decay = [p for (_, p), d in zip(named, decays, strict=True) if d]
        no_decay = [p for (_, p), d in zip(named, decays, strict=True) if not d]
        return torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": self.cfg.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=self.cfg.lr,
        )

    def resume(self) -> None:
        """Continue exactly where train_state.pt left off: weights, optimizer, step, clock, every RNG."""
        state = self.state
        if state is None:
            return
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.step_count, self.elapsed_before = int(state["step"]), float(state["elapsed_s"])
        rngs = state["rng"]
        self.rng.bit_generator.state = (
            rngs[self.rank] if self.rank < len(rngs) else self.rng.bit_generator.state
        )
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        if state.get("amp", "off") != self.cfg.amp and self.rank == 0:
            log.warning(
                "--resume: the run was trained with --amp %s, continuing with --amp %s",
                state.get("amp", "off"),
                self.cfg.amp,
            )

    def start(self) -> None:
        """Training mode, the DDP wrapper, the batch stream, metrics.csv and train_args.json (rank 0)."""
        cfg = self.cfg
        self.model.train()
        self.forward: nn.Module = _TrainForward(self.model)
        if self.world > 1:
            self.forward = nn.parallel.DistributedDataParallel(
                self.forward,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=cfg.frame_weight == 0,
            )
        self.stream = BatchStream(
            self.data,
            self.shard,
            self._per_rank(),
            self.rng,
            workers=cfg.workers,
            pin_memory=self.device.type == "cuda",
        )
        self.metrics = MetricsLog(self.out / "metrics.csv") if self.rank == 0 else None
        if self.rank == 0:
            (self.out / "train_args.json").write_text(
                json.dumps(
                    {
                        **vars(cfg),
                        "world_size": self.world,
                        "device_used": str(self.device),
                        "model_params": self.model.num_parameters(),
                        "episodes": len(self.episodes),
                        "windows": len(self.data),
                        "val_episodes": len(self.val_ep),
                    },
                    indent=2,
                )
            )
        self.t0 = time.monotonic()

    # ------------------------------------------------------------------------------------------------ the loop
    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.t0

    def time_frac(self) -> float:
        """Fraction of the wall-clock budget spent (0 without one); every rank uses rank 0's clock."""
        if not self.cfg.max_minutes:
            return 0.0
        # on the training device: nccl broadcasts CUDA tensors only
        frac = torch.tensor([self.elapsed() / (self.cfg.max_minutes * 60)], device=self.device)
        if self.world > 1:
            dist.broadcast(frac, 0)
        return float(frac)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for the forward pass and the loss (nothing at all with amp "off")."""
        if self.cfg.amp == "off":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=AMP_DTYPES[self.cfg.amp])

    def step(self, lr: float) -> dict[str, torch.Tensor]:
        """One optimizer step on the stream's next batch of training windows; returns the batch's losses."""
        for group in self.opt.param_groups:
            group["lr"] = lr
        batch = to_device(self.stream.next(), self.device)
        with self.autocast():
            losses = wam_loss(self.model, batch, self.cfg.frame_weight, forward=self.forward)
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is None:
            losses["loss"].backward()
            nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
        else:  # fp16: scaled loss, gradients unscaled before clipping; steps with inf/NaN gradients are skipped
            self.scaler.scale(losses["loss"]).backward()
            self.scaler.unscale_(self.opt)
            nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.scaler.step(self.opt)
            self.scaler.update()
        self.step_count += 1
        return losses

    def evaluate(self) -> dict[str, float]:
        """Held-out losses and action MAE (rank 0 only; empty without held-out episodes)."""
        if self.rank != 0 or not len(self.val_idx):
            return {}
        return validate(self.model, self.data, self.val_idx, self.cfg.frame_weight)

    def save(self) -> None:
        """model.pt + its manifest entry + train_state.pt (rank 0) with every rank's sampler state, so a resume
        continues exactly. A collective call under DDP: every rank calls it."""
        rngs = [self.stream.rng_state()]
        if self.world > 1:
            rngs = [None] * self.world
            dist.all_gather_object(rngs, self.stream.rng_state())
        if self.rank != 0:
            return
        cfg, elapsed = self.cfg, self.elapsed()
        extra = {
            "step": self.step_count,
            "train_elapsed_s": round(elapsed, 1),
            "frame_weight": cfg.frame_weight,
            "data": list(cfg.data),
            "seed": cfg.seed,
            "world_size": self.world,
            "device": self.device.type,
            "amp": cfg.amp,
        }
        checkpoint = save_checkpoint(self.out / CHECKPOINT, self.model, extra=extra)
        add_to_manifest(self.out, [checkpoint])  # verified at load (wam_ros.runtime.model_dir)
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "step": self.step_count,
            "elapsed_s": elapsed,
            "rng": rngs,
            "torch_rng": torch.get_rng_state(),
            "config": self.mcfg.to_dict(),
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        if cfg.amp != "off":
            state["amp"] = cfg.amp
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        with atomic_path(self.out / STATE) as tmp:
            torch.save(state, tmp)
        plot_losses(self.out / "metrics.csv", self.out / "loss_curves.png")

    def run(self) -> Path:
        """Set up, resume, train to cfg.steps (or the time budget), evaluating and saving on schedule."""
        from tqdm import tqdm

        cfg = self.cfg
        self.setup()
        self.resume()
        self.start()
        bar = tqdm(
            total=cfg.steps,
            initial=self.step_count,
            desc="train",
            disable=self.rank != 0,
            dynamic_ncols=True,
            mininterval=2,
        )
        try:
            self._loop(bar)
        finally:
            bar.close()
            self.stream.close()  # stops the loader's workers (if any)
        if self.world > 1:  # no rank leaves before rank 0 has written the last checkpoint
            dist.barrier(device_ids=[self.device.index] if self.device.type == "cuda" else None)
            dist.destroy_process_group()
        return self.out / CHECKPOINT

    def _loop(self, bar) -> None:  # noqa: ANN001 - a tqdm bar
        cfg = self.cfg
        stop = False
        while self.step_count < cfg.steps and not stop:
            tf = self.time_frac()
            lr = lr_at(self.step_count, cfg, tf)
            losses = self.step(lr)
            step = self.step_count
            bar.update(1)
            stop = tf >= 1.0  # the same decision on every rank (rank 0's clock)
            row = None
            if step % 25 == 0 or step == 1:
                row = {"step": step, "elapsed_s": self.elapsed(), "lr": lr}
                row.update({k: float(v.detach()) for k, v in losses.items()})
                bar.set_postfix(
                    loss=f"{row['loss']:.4f}", act=f"{row['action']:.4f}", frm=f"{row['frame']:.5f}"
                )
            if step % cfg.eval_every == 0 or step == cfg.steps or stop:
                val = self.evaluate()
                if val:
                    row = {**(row or {"step": step, "elapsed_s": self.elapsed()}), **val}
            if self.metrics is not None and row is not None:
                self.metrics.write(row)
            if step % cfg.ckpt_every == 0 or step == cfg.steps or stop:
                self.save()


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) training; returns the path of the final model checkpoint."""
    return Trainer(cfg).run()
