"""Runtime backends: run one WAM graph on raw, already-stacked inputs. Used by wam_ros.runtime.policy.

    backend = OrtBackend("models/panda_tabletop/wam_full.onnx", threads=2)
    action, next_frame = backend.run(frames, joint_pos, tokens)
    #   frames uint8 (B, K, 3, H, W), joint_pos float32 (B, J), tokens int64 (B, L) (or, for a model with a
    #   pretrained text encoder, its embedding float32 (B, L, E): the graph's input `text_emb`)
    #   -> action float32 (B, N, J) absolute targets, next_frame float32 (B, 3, H, W) in [0, 1] or None (action graph)
    #   A model with M > 1 cameras takes frames uint8 (B, M, K, 3, H, W) (PolicySpec.cameras order); the ONNX and
    #   TensorRT backends feed camera m to the graph input PolicySpec.camera_inputs[m] (camera_feeds).

onnxruntime execution providers are chosen by what actually works on this machine: TensorRT EP (with an engine cache)
then CUDA EP when an NVIDIA driver reports a GPU, else CPU. The GPU check goes through the driver library (libcuda)
first so a CPU-only machine never asks onnxruntime-gpu for CUDA and prints no library-load errors. The choice is
logged once per process and provider list. The TensorRT engine backend lives in backends_trt.py.

Core module: never imports rclpy.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from wam_ros.runtime import model_dir
from wam_ros.runtime.model_dir import (
    CAMERA_INPUT_PREFIX,
    INPUTS,
    INPUTS_TEXT,
    OUTPUTS_ACTION,
    OUTPUTS_FULL,
)

log = logging.getLogger("wam_ros.runtime")

INPUT_DTYPES = {name: np.dtype(kind) for name, kind in model_dir.INPUT_DTYPES.items()}


class Backend(Protocol):
    """What a Policy needs from a backend."""

    name: str
    graph: str  # "full" or "action"

    def run(
        self, frames: np.ndarray, joint_pos: np.ndarray, tokens: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]: ...


def camera_feeds(frames: np.ndarray, extra_inputs: tuple[str, ...] | list[str]) -> dict[str, np.ndarray]:
    """The graph feeds of the cameras: {"frames": frames} for a single-camera graph; for a graph with extra camera
    inputs, frames uint8 (B, M, K, 3, H, W) split into `frames` (camera 0) and each extra input (camera 1..M-1)."""
    if not extra_inputs:
        return {"frames": frames}
    m = len(extra_inputs) + 1
    if frames.ndim != 6 or frames.shape[1] != m:
        raise ValueError(
            f"this graph takes {m} cameras (frames + {list(extra_inputs)}): frames must be uint8 (B, {m}, K, 3, H, W), "
            f"got {frames.dtype} {frames.shape}"
        )
    names = ("frames", *extra_inputs)
    return {name: np.ascontiguousarray(frames[:, i]) for i, name in enumerate(names)}


@functools.cache
def cuda_device_count() -> int:
    """Number of NVIDIA GPUs the driver reports (0 without a driver). Quiet: no library prints anything."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    try:
        if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
    except AttributeError:
        return 0
    return int(count.value)


def _loadable(*names: str) -> bool:
    for name in names:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def candidate_providers(cache_dir: str | Path | None = None, fp16: bool = True) -> list[Any]:
    """The onnxruntime providers worth trying here, best first (always ending with CPU)."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    out: list[Any] = []
    if cuda_device_count() > 0:
        if "TensorrtExecutionProvider" in available and _loadable(
            "libnvinfer.so.10", "libnvinfer.so.11", "libnvinfer.so"
        ):
            opts = {
                "trt_fp16_enable": bool(fp16),
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(cache_dir or Path.home() / ".cache" / "wam_ros" / "trt"),
            }
            Path(opts["trt_engine_cache_path"]).mkdir(parents=True, exist_ok=True)
            out.append(("TensorrtExecutionProvider", opts))
        if "CUDAExecutionProvider" in available:
            out.append("CUDAExecutionProvider")
    out.append("CPUExecutionProvider")
    return out


_LOGGED: set[tuple[str, ...]] = set()


def _log_choice_once(providers: list[str], path: Path) -> None:
    key = tuple(providers)
    if key not in _LOGGED:
        _LOGGED.add(key)
        log.info(
            "onnxruntime providers for %s: %s (GPUs seen by the driver: %d)",
            path.name,
            providers,
            cuda_device_count(),
        )


SPIN_ENV = (
    "WAM_ORT_SPIN"  # "0": never spin (lowest CPU use, slower with > 1 thread); "1" (default): spin in Run()
)


def session_options(threads: int, spin: bool | None = None) -> Any:
    """Lean CPU settings: all graph optimisations, `threads` intra-op threads, 1 inter-op, sequential execution.

    spin (default: env WAM_ORT_SPIN, else True): with more than one thread, worker threads spin-wait for work while a
    Run() is in progress and are stopped the moment it returns (`session.force_spinning_stop`). Without spinning,
    every parallel operator has to wake a sleeping worker, which costs more than these small operators take (2
    threads were no faster than 1); with onnxruntime's default spinning the workers keep burning a core between
    control steps, the core the ROS executor needs. Spinning only inside Run() gets the parallel speed-up and leaves
    the core idle between steps.
    """
    import onnxruntime as ort

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if spin is None:
        spin = os.environ.get(SPIN_ENV, "1") != "0"
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3  # errors only; the provider choice is logged by us
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    so.add_session_config_entry("session.force_spinning_stop", "1")
    return so


def open_session(
    path: str | Path,
    threads: int = 2,
    providers: list[Any] | None = None,
    cache_dir: str | Path | None = None,
) -> Any:
    """An onnxruntime InferenceSession on the best provider that works, with a clear error for a bad file."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    if providers is None:
        providers = candidate_providers(cache_dir)  # engine cache: ~/.cache/wam_ros/trt (never in models/)
    attempts = [providers] if providers == ["CPUExecutionProvider"] else [providers, ["CPUExecutionProvider"]]
    sess, error = None, None
    for attempt in attempts:
        ort.set_default_logger_severity(4 if len(attempt) > 1 else 3)  # quiet while probing GPU providers
        try:
            sess = ort.InferenceSession(str(path), sess_options=session_options(threads), providers=attempt)
            break
        except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, EP errors, ...)
            error = exc
            if attempt is not attempts[-1]:
                log.warning(
                    "onnxruntime providers %s failed for %s (%s); retrying on CPU",
                    attempt,
                    path.name,
                    str(exc).strip()[:200],
                )
        finally:
            ort.set_default_logger_severity(3)
    if sess is None:
        raise ValueError(
            f"cannot load ONNX model {path}: expected a complete ONNX file written by `wam export`, "
            f"onnxruntime said: {str(error).strip()[:300]}"
        ) from error
    _log_choice_once(sess.get_providers(), path)
    return sess


class OrtBackend:
    """An exported WAM graph in onnxruntime.

    io_binding: bind inputs/outputs once and reuse preallocated output buffers (None = on for GPU providers, where it
    saves host<->device copies; off on CPU, where benchmarks/latency.py measured no gain — see RESULTS.md).
    """

    def __init__(
        self,
        path: str | Path,
        threads: int = 2,
        providers: list[Any] | None = None,
        io_binding: bool | None = None,
    ) -> None:
        self.path = Path(path)
        self.sess = open_session(self.path, threads, providers)
        self.providers: list[str] = self.sess.get_providers()
        names_in = [i.name for i in self.sess.get_inputs()]
        names_out = [o.name for o in self.sess.get_outputs()]
        # extra cameras (issue 19) come after the three inputs of every graph, as frames_<camera>
        self.camera_inputs = tuple(names_in[3:])
        if (
            names_in[:3] not in (list(INPUTS), list(INPUTS_TEXT))
            or not all(n.startswith(CAMERA_INPUT_PREFIX) for n in self.camera_inputs)
            or names_out not in (list(OUTPUTS_FULL), list(OUTPUTS_ACTION))
        ):
            raise ValueError(
                f"{self.path} is not a WAM graph: expected inputs {list(INPUTS)} (or {list(INPUTS_TEXT)}), then "
                f"any {CAMERA_INPUT_PREFIX}<camera>, and outputs {list(OUTPUTS_FULL)} or {list(OUTPUTS_ACTION)}, "
                f"got {names_in} -> {names_out}"
            )
        self.text_input = names_in[2]  # "tokens", or "text_emb" with a pretrained text encoder
        self.graph = "full" if names_out == list(OUTPUTS_FULL) else "action"
        self.output_names = names_out
        self.name = "onnxruntime-" + self.providers[0].replace("ExecutionProvider", "").lower()
        gpu = self.providers[0] != "CPUExecutionProvider"
        self.io_binding = gpu if io_binding is None else io_binding
        self._binding = self.sess.io_binding() if self.io_binding else None
        self._bound = threading.local()  # each thread's BoundRun (see `bound`)

    def run(
        self, frames: np.ndarray, joint_pos: np.ndarray, tokens: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        feeds = {**camera_feeds(frames, self.camera_inputs), "joint_pos": joint_pos, self.text_input: tokens}
        if self._binding is None:
            outs = self.sess.run(self.output_names, feeds)
        else:
            b = self._binding
            for k, v in feeds.items():
                b.bind_cpu_input(k, v)
            for name in self.output_names:
                b.bind_output(name, "cpu")
            self.sess.run_with_iobinding(b)
            outs = b.copy_outputs_to_cpu()
        return outs[0], (outs[1] if len(outs) > 1 else None)

    def bound(self) -> BoundRun | None:
        """The calling thread's batch-1 call with inputs and outputs bound once (BoundRun; Policy.predict() uses
        it), or None where there is none: a GPU provider (its own binding path in `run`) or a graph with another
        dynamic dimension than the batch."""
        run = getattr(self._bound, "run", False)
        if run is False:
            run = None
            if self.providers[0] == "CPUExecutionProvider":
                try:
                    run = BoundRun(self.sess)
                except ValueError as exc:
                    log.info("%s: no bound batch-1 call (%s); predict() uses run()", self.path.name, exc)
            self._bound.run = run
        return run


_ORT_TYPES = {
    "tensor(uint8)": np.uint8,
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


class BoundRun:
    """One thread's batch-1 call of an onnxruntime CPU session with every input and output bound once (IOBinding)
    to an array allocated here: the caller writes `inputs[name]` ((1, ...) arrays) in place and calls run(), which
    returns the bound outputs (action, next_frame or None), overwritten by the next run(). No feeds dict, no input
    OrtValue and no output array is made per call: 0.05-0.07 ms less per call than `sess.run` with numpy feeds on
    the project VM (docs/resize.md, "predict()"). Not thread-safe: OrtBackend.bound() gives each thread its own."""

    def __init__(self, sess: Any) -> None:
        self._sess = sess
        self._binding = sess.io_binding()
        self.inputs: dict[str, np.ndarray] = {}
        self.outputs: list[np.ndarray] = []
        args = [(i, self.inputs) for i in sess.get_inputs()] + [(o, None) for o in sess.get_outputs()]
        for arg, into in args:
            dims = arg.shape[1:]
            if not all(isinstance(d, int) and d > 0 for d in dims) or arg.type not in _ORT_TYPES:
                raise ValueError(f"{arg.name} is {arg.type} {arg.shape}: only the batch may be dynamic")
            shape, dtype = [1, *dims], _ORT_TYPES[arg.type]
            arr = np.zeros(shape, dtype)
            if into is None:
                self._binding.bind_output(arg.name, "cpu", 0, dtype, shape, arr.ctypes.data)
                self.outputs.append(arr)
            else:
                self._binding.bind_input(arg.name, "cpu", 0, dtype, shape, arr.ctypes.data)
                into[arg.name] = arr

    def run(self) -> tuple[np.ndarray, np.ndarray | None]:
        self._sess.run_with_iobinding(self._binding)
        outs = self.outputs
        return outs[0], (outs[1] if len(outs) > 1 else None)


class TorchBackend:
    """The eager torch model (a WorldActionModel), on CPU with `threads` intra-op threads."""

    def __init__(self, model: Any, graph: str = "full", threads: int | None = 2) -> None:
        import torch

        if graph not in ("full", "action"):
            raise ValueError(f"graph must be 'full' or 'action', got {graph!r}")
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)
        self.model = model.eval()
        self.graph = graph
        self.name = "torch"
        self._torch = torch

    def run(
        self, frames: np.ndarray, joint_pos: np.ndarray, tokens: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        torch = self._torch
        with torch.inference_mode():
            f, q, t = torch.from_numpy(frames), torch.from_numpy(joint_pos), torch.from_numpy(tokens)
            if self.graph == "action":
                return self.model.forward_action(f, q, t).float().numpy(), None
            action, next_frame = self.model(f, q, t)
            return action.float().numpy(), next_frame.float().numpy()


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
