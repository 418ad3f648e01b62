"""The keys of a training batch: defined once here, where the loss reads them (wam_ros.model.losses); the windows
that build batches (wam_ros.data.windows) and the trainer use the same names.

    batch[FRAMES]       uint8   (B, K, 3, H, W)  frames t-K+1 .. t (the first frame repeats before the episode start)
    batch[JOINT_POS]    float32 (B, J)           joint positions at t
    batch[ACTIONS]      float32 (B, N, J)        absolute joint targets commanded at t .. t+N-1 (last repeats past the end)
    batch[ACTION_MASK]  bool    (B, N)           False where the action was padded past the episode end
    batch[NEXT_FRAME]   uint8   (B, 3, H, W)     the frame at t + frame_horizon (clamped to the last frame)
    batch[TOKENS]       int64   (B, L)           the instruction's token ids

One window as a torch Dataset item (wam_ros.data.windows.WindowDataset) has the same keys without the batch
dimension, and the strings INSTRUCTION and TASK instead of TOKENS.
"""

from __future__ import annotations

FRAMES = "frames"
JOINT_POS = "joint_pos"
ACTIONS = "actions"
ACTION_MASK = "action_mask"
NEXT_FRAME = "next_frame"
TOKENS = "tokens"
INSTRUCTION = "instruction"
TASK = "task"

BATCH_KEYS = (FRAMES, JOINT_POS, ACTIONS, ACTION_MASK, NEXT_FRAME, TOKENS)
