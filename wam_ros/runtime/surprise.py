"""Surprise monitor: the error between the frame the model predicted and the frame the camera then showed.

Pure numpy (core module, never imports rclpy). The WAM predicts the next frame with every action chunk; a large
mismatch at the next step means the world did something the model did not expect (a collision, a person entering the
workspace, a fall). The ROS node publishes the value (std_msgs/Float32) and can hold the robot above a threshold.

    monitor = SurpriseMonitor(threshold=0.02)
    monitor.expect(out["next_frame"])        # uint8 (H, W, 3) RGB predicted for the next step
    s = monitor.observe(camera_rgb)          # mean squared error in [0, 1] (pixels scaled to 0..1), or None
    monitor.exceeded                          # True when the last value was above the threshold
"""

from __future__ import annotations

import numpy as np

from wam_ros.runtime.preprocess import resize


class SurpriseMonitor:
    """Mean squared pixel error (0..1 scale) between the last prediction and the next observed frame."""

    def __init__(self, threshold: float) -> None:
        if not (np.isfinite(threshold) and threshold > 0):
            raise ValueError(f"surprise threshold must be a finite number > 0, got {threshold!r}")
        self.threshold = float(threshold)
        self._expected: np.ndarray | None = None
        self.value: float | None = None

    def expect(self, predicted: np.ndarray | None) -> None:
        """Remember the predicted next frame, uint8 (H, W, 3) RGB; None (action-only graph) disables the check."""
        if predicted is None:
            self._expected = None
            return
        p = np.asarray(predicted)
        if p.dtype != np.uint8 or p.ndim != 3 or p.shape[2] != 3:
            raise ValueError(f"predicted frame must be uint8 (H, W, 3), got {p.dtype} {p.shape}")
        self._expected = p

    def observe(self, frame: np.ndarray) -> float | None:
        """Compare the observed RGB frame (any size) with the pending prediction; None when nothing was predicted."""
        if self._expected is None:
            return None
        exp = self._expected
        self._expected = None
        obs = resize(np.asarray(frame, dtype=np.uint8), exp.shape[:2])
        diff = obs.astype(np.float32) - exp.astype(np.float32)
        self.value = float(np.mean(diff * diff)) / (255.0 * 255.0)
        return self.value

    @property
    def exceeded(self) -> bool:
        return self.value is not None and self.value > self.threshold

    def reset(self) -> None:
        self._expected = None
        self.value = None
