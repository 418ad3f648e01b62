"""Checkpoints: one torch file holding config, weights, normaliser (buffers) and vocabulary (config).

    save_checkpoint("models/panda_tabletop/model.pt", model, extra={"data": "data/reach"})
    model = load_checkpoint("models/panda_tabletop/model.pt")   # eval mode, ready to run

Loaded with `weights_only=True` (no arbitrary code from a file). `extra` must hold plain Python values.
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from wam_ros.fileio import atomic_path
from wam_ros.model.config import WamConfig
from wam_ros.model.modeling import WorldActionModel

CHECKPOINT_FILE = "model.pt"  # its name inside a model directory (wam_ros.runtime.model_dir.CHECKPOINT)
FORMAT = "wam_ros.checkpoint"
VERSION = 1
NORMALIZER_KEYS = ("joint_mean", "joint_std", "delta_mean", "delta_std", "stats_fitted")


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or not a wam_ros model checkpoint."""


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes (sorted by name): the checkpoint's own integrity seal,
    stored at save and checked at load, so a damaged file is refused even where no manifest lies beside it."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def checkpoint_dict(model: WorldActionModel, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": model.cfg.to_dict(),
        "state_dict": state,
        "weights_sha256": weights_sha256(state),
        "extra": dict(extra or {}),
    }


def save_checkpoint(path: str | Path, model: WorldActionModel, extra: dict[str, Any] | None = None) -> Path:
    """Atomically write the model checkpoint (tmp file + fsync + rename, wam_ros.fileio). Returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(checkpoint_dict(model, extra), tmp)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw, validated checkpoint dict (format, version, config, state_dict, extra)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch file: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a wam_ros model checkpoint (expected format {FORMAT!r})")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {ckpt.get('version')!r}, this code reads {VERSION}"
        )
    for key in ("config", "state_dict"):
        if not isinstance(ckpt.get(key), dict):
            raise CheckpointError(f"{path}: checkpoint has no {key!r} dict")
    missing = [k for k in NORMALIZER_KEYS if k not in ckpt["state_dict"]]
    if missing:
        raise CheckpointError(f"{path}: checkpoint is missing normaliser statistics {missing}")
    sealed = ckpt.get("weights_sha256")
    if sealed is not None and sealed != weights_sha256(ckpt["state_dict"]):
        raise CheckpointError(
            f"{path}: the weights do not match the sha256 recorded when the checkpoint was saved: the file is "
            "damaged; restore it or retrain"
        )
    return ckpt


def load_checkpoint(path: str | Path, require_fitted: bool = False) -> WorldActionModel:
    """Rebuild the model from a checkpoint file (or a directory holding model.pt); eval mode, CPU.

    require_fitted: also refuse a model whose normaliser was never fitted to data (an untrained model).
    """
    ckpt = read_checkpoint(path)
    try:
        cfg = WamConfig.from_dict(ckpt["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: invalid model config in checkpoint: {exc}") from exc
    model = WorldActionModel(cfg)
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the config: {exc}") from exc
    if require_fitted and not model.normalizer_fitted:
        raise CheckpointError(f"{path}: the normaliser statistics were never fitted (untrained model)")
    model.extra = ckpt.get("extra", {})
    return model.eval()
