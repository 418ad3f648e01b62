"""Build TensorRT fp16 engines from the exported ONNX graphs (needs an NVIDIA GPU and the `tensorrt` package).

    build_engine("models/panda_tabletop/wam_full_fp16.onnx", "models/panda_tabletop/wam_full_fp16.engine")
    # or: wam export CKPT --out DIR --tensorrt

The source is the fp16 ONNX graph written by `wam export` (fp16 weights and activations, fp32 I/O), built as a
strongly typed network: that is the only fp16 route TensorRT 11 keeps (BuilderFlag.FP16 was removed) and the
recommended one since 10.12. On an older TensorRT without strong typing, the fp16 builder flag is set instead.
One optimisation profile covers the dynamic batch (min 1, opt 1, max `max_batch`). The engine's wam.* metadata goes
to `<engine>.json` (engines have no metadata slot). `tensorrt` is imported lazily and never required elsewhere.

Core module: never imports rclpy.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx

from wam_ros.fileio import atomic_write_bytes
from wam_ros.runtime.backends import TensorRTUnavailable, require_tensorrt, tensorrt_unavailable_reason
from wam_ros.runtime.model_dir import add_to_manifest, read_manifest, read_metadata, write_engine_sidecar

__all__ = ["TensorRTUnavailable", "build_engine", "require_tensorrt", "tensorrt_unavailable_reason"]


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    max_batch: int = 4,
    opt_batch: int = 1,
    workspace_mb: int = 1024,
) -> Path:
    """Parse `onnx_path`, build an fp16 engine with a dynamic-batch profile, write `engine_path` (+ .json)."""
    if not 1 <= opt_batch <= max_batch:
        raise ValueError(
            f"need 1 <= opt_batch <= max_batch, got opt_batch={opt_batch}, max_batch={max_batch}"
        )
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    model = onnx.load(str(onnx_path))
    read_metadata(model)  # refuses a graph without wam.* metadata before any GPU work
    props = {p.key: p.value for p in model.metadata_props}
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    strong = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    if strong:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if not strong and hasattr(trt.BuilderFlag, "FP16"):
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = list(tensor.shape)[1:]
        if any(d < 0 for d in dims):
            raise RuntimeError(f"{onnx_path}: input {tensor.name} has dynamic non-batch dims {tensor.shape}")
        profile.set_shape(tensor.name, (1, *dims), (opt_batch, *dims), (max_batch, *dims))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(
            f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)"
        )
    atomic_write_bytes(engine_path, bytes(serialized))
    props["wam.precision"] = "fp16"
    props["wam.tensorrt"] = json.dumps(
        {
            "version": trt.__version__,
            "max_batch": max_batch,
            "opt_batch": opt_batch,
            "source": onnx_path.name,
            "strongly_typed": strong,
        }
    )
    write_engine_sidecar(engine_path, props)
    if read_manifest(engine_path.parent) is not None:
        add_to_manifest(engine_path.parent, [engine_path])
    return engine_path
