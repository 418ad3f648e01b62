"""wam_ros.model: the joint World Action Model in pure torch (torch core: never imports rclpy).

from wam_ros.model import WamConfig, WorldActionModel, save_checkpoint, load_checkpoint
"""

from wam_ros.model.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from wam_ros.model.config import WamConfig
from wam_ros.model.modeling import WorldActionModel
from wam_ros.model.tokenizer import Tokenizer

__all__ = [
    "CheckpointError",
    "Tokenizer",
    "WamConfig",
    "WorldActionModel",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
]
