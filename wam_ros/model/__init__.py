"""wam_ros.model: the joint World Action Model in pure torch (torch core: never imports rclpy).

from wam_ros.model import WamConfig, WorldActionModel, save_checkpoint, load_checkpoint

Names are imported lazily, so the torch-free parts (config, tokenizer, text_encoder) import without torch: the
onnxruntime runtime reads a model's config and tokenizes its instructions with no torch in the process.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CheckpointError",
    "Tokenizer",
    "WamConfig",
    "WorldActionModel",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
]

_HOME = {
    "CheckpointError": "checkpoint",
    "load_checkpoint": "checkpoint",
    "read_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "WamConfig": "config",
    "WorldActionModel": "modeling",
    "Tokenizer": "tokenizer",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        import importlib

        return getattr(importlib.import_module(f"wam_ros.model.{_HOME[name]}"), name)
    raise AttributeError(f"module 'wam_ros.model' has no attribute {name!r}")
