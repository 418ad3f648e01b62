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

# -- imagination + critic (issue 16; batches of wam_ros.data.world_windows.WorldWindows, models with cfg.imagine)
EXECUTED = "executed"  # float32 (B, N, J)  the targets really executed at t .. t+N-1 (the labels, without DART/DAgger)
HORIZON = "horizon"  # int64 (B,)  h in 0..N: imagine after the first h executed actions
FUTURE_FRAME = "future_frame"  # uint8 (B, 3, H, W)  the frame at t + h (clamped to the last frame)
FUTURE_JOINTS = "future_joints"  # float32 (B, J)  the joint positions at t + h (clamped)
SUCCESS = "success"  # float32 (B,)  1 if the episode reached its goal
STEPS_TO_GO = (
    "steps_to_go"  # float32 (B,)  steps from t + h to the episode's last step (meaningful on successes)
)
GOAL_DISTANCE = (
    "goal_distance"  # float32 (B,)  privileged distance to the goal at t + h (m), NaN if not recorded
)

WORLD_KEYS = (EXECUTED, HORIZON, FUTURE_FRAME, FUTURE_JOINTS, SUCCESS, STEPS_TO_GO, GOAL_DISTANCE)
