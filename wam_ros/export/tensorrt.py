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
import os
from pathlib import Path

import onnx

from wam_ros.export.metadata import read_metadata, write_engine_sidecar
from wam_ros.runtime.backends import cuda_device_count


class TensorRTUnavailable(RuntimeError):
    """No GPU or no tensorrt package: engines cannot be built or run on this machine."""


def tensorrt_unavailable_reason() -> str | None:
    """None when engines can be built here; otherwise why not, in words."""
    gpus = cuda_device_count()
    if gpus == 0:
        return (
            "TensorRT needs an NVIDIA GPU, and the NVIDIA driver (libcuda.so.1) reports none on this machine; "
            "the ONNX graphs (onnxruntime) and the torch checkpoint run here instead"
        )
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return (
            f"the `tensorrt` Python package is not installed ({gpus} GPU(s) seen): "
            "`pip install tensorrt` (or use the JetPack one) to build engines"
        )
    return None


def require_tensorrt():  # noqa: ANN201 - returns the tensorrt module
    reason = tensorrt_unavailable_reason()
    if reason:
        raise TensorRTUnavailable(reason)
    import tensorrt as trt

    return trt


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
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = engine_path.with_name(f".{engine_path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(bytes(serialized))
    os.replace(tmp, engine_path)
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
    return engine_path
