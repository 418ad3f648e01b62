"""TensorRT engine backend: runs a `wam export --tensorrt` engine with a TensorRT execution context.

    backend = TensorRTBackend("models/panda_tabletop/wam_full_fp16.engine", spec)
    action, next_frame = backend.run(frames, joint_pos, tokens)      # numpy in, numpy out (see backends.py)

Device buffers are torch CUDA tensors (no pycuda needed); inputs are copied in, the engine runs on one CUDA stream with
execute_async_v3 (TensorRT 10/11 tensor-address API), outputs are copied back. Buffers are reused while the batch size
stays the same. Needs an NVIDIA GPU, the `tensorrt` package and a CUDA build of torch; otherwise TensorRTUnavailable
says which one is missing.

Core module: never imports rclpy; tensorrt is imported only here, lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from wam_ros.runtime.backends import TensorRTUnavailable, camera_feeds, require_tensorrt
from wam_ros.runtime.model_dir import INPUTS, INPUTS_TEXT, OUTPUTS_FULL, PolicySpec


class TensorRTBackend:
    """One deserialised engine + execution context."""

    def __init__(self, engine_path: str | Path, spec: PolicySpec) -> None:
        trt = require_tensorrt()
        import torch

        if not torch.cuda.is_available():
            raise TensorRTUnavailable(
                "the TensorRT backend moves tensors with torch.cuda, but this torch build has "
                "no CUDA (install a CUDA build of torch beside tensorrt)"
            )
        self._torch, self._trt = torch, trt
        self.path = Path(engine_path)
        self.spec = spec
        data = self.path.read_bytes()
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise ValueError(
                f"cannot deserialise TensorRT engine {self.path}: corrupt, truncated, or built by "
                f"another TensorRT version / GPU (this is TensorRT {trt.__version__})"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.camera_inputs = spec.camera_inputs[1:]  # extra cameras (issue 19): frames_<camera>
        expected = [sorted((*base, *self.camera_inputs)) for base in (INPUTS, INPUTS_TEXT)]
        if sorted(self.inputs) not in expected or not set(self.outputs) <= set(OUTPUTS_FULL):
            raise ValueError(
                f"{self.path} is not a WAM engine: expected inputs {list(INPUTS)} (or {list(INPUTS_TEXT)}) "
                f"+ {list(self.camera_inputs)} and outputs within {list(OUTPUTS_FULL)}, got {self.inputs} -> "
                f"{self.outputs}"
            )
        self.text_input = INPUTS_TEXT[2] if INPUTS_TEXT[2] in self.inputs else "tokens"
        self.outputs = [n for n in OUTPUTS_FULL if n in self.outputs]
        self.graph = "full" if len(self.outputs) == 2 else "action"
        self.name = "tensorrt"
        self.stream = torch.cuda.Stream()
        self._batch = -1
        self._buffers: dict[str, Any] = {}

    def _dtype(self, name: str) -> Any:
        t, trt = self._torch, self._trt
        table = {
            trt.DataType.FLOAT: t.float32,
            trt.DataType.HALF: t.float16,
            trt.DataType.INT32: t.int32,
            trt.DataType.INT64: t.int64,
            trt.DataType.UINT8: t.uint8,
        }
        return table[self.engine.get_tensor_dtype(name)]

    def _allocate(self, shapes: dict[str, tuple[int, ...]]) -> None:
        torch = self._torch
        for name, shape in shapes.items():
            self.context.set_input_shape(name, shape)
            self._buffers[name] = torch.empty(shape, dtype=self._dtype(name), device="cuda")
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            self._buffers[name] = torch.empty(shape, dtype=self._dtype(name), device="cuda")
        for name, buf in self._buffers.items():
            self.context.set_tensor_address(name, buf.data_ptr())

    def run(
        self, frames: np.ndarray, joint_pos: np.ndarray, tokens: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        torch = self._torch
        feeds = {**camera_feeds(frames, self.camera_inputs), "joint_pos": joint_pos, self.text_input: tokens}
        batch = frames.shape[0]
        if batch != self._batch:
            self._allocate({k: tuple(v.shape) for k, v in feeds.items()})
            self._batch = batch
        with torch.cuda.stream(self.stream):
            for name, arr in feeds.items():
                self._buffers[name].copy_(torch.from_numpy(arr), non_blocking=False)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError(f"TensorRT execution failed for {self.path}")
            outs = [self._buffers[n].float().cpu().numpy() for n in self.outputs]
        self.stream.synchronize()
        return outs[0], (outs[1] if len(outs) > 1 else None)
