"""wam_ros.runtime: one predict() API over torch / onnxruntime / TensorRT (torch core: never imports rclpy).

    from wam_ros.runtime import load_policy
    policy = load_policy("models/panda_tabletop", backend="auto")
    out = policy.predict({"images": frames, "joint_pos": q, "instruction": "reach the red target"})

Names are imported lazily so `wam_ros.runtime.safety` and friends do not pay for torch/onnxruntime imports.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Policy", "PolicySpec", "load_policy"]


def __getattr__(name: str) -> Any:
    if name in ("Policy", "load_policy"):
        from wam_ros.runtime import policy

        return getattr(policy, name)
    if name == "PolicySpec":
        from wam_ros.runtime.model_dir import PolicySpec

        return PolicySpec
    raise AttributeError(f"module 'wam_ros.runtime' has no attribute {name!r}")
