"""One predict() API over every backend: torch checkpoint, ONNX Runtime (CPU / CUDA / TensorRT EP), TensorRT engine.

    policy = load_policy("models/panda_tabletop", backend="auto", threads=2, graph="full")
    policy.spec          # PolicySpec: joint_names, image_size (H, W), k_frames, chunk, control_hz, camera_encoding
    out = policy.predict({"images": [rgb_prev, rgb_now],   # 1..K uint8 RGB frames, oldest first, any size
                          "joint_pos": q,                  # (J,) in spec.joint_names order
                          "instruction": "reach the red target"})
    # a model with several cameras (spec.cameras, e.g. ["front", "wrist"]): the frames of every camera, by name
    out = policy.predict({"images": {"front": [f0, f1], "wrist": [w0, w1]}, "joint_pos": q, "instruction": text})
    out["action"]        # float64 (N, J) absolute joint position targets
    out["next_frame"]    # uint8 (H, W, 3) RGB, or None for the action-only graph
    policy.tokens("reach the red target")   # the instruction input, computed once per instruction and cached: word
                                            # ids int64 (1, L), or a pretrained text encoder's embedding float32
                                            # (1, L, E) (the folder's text_encoder.onnx; runtime/text_encoder.py)

`path` is a model directory (see docs/export.md for its files), a `.pt` checkpoint, an `.onnx` file or a TensorRT
`.engine` (with its `.engine.json` metadata). `backend="auto"` on a directory picks the best one that works here:
TensorRT engine (GPU + tensorrt installed) > onnxruntime > torch. Pre/post-processing (area resize,
K-frame stacking, tokenising, output to uint8 RGB) is the same code for every backend.

Core module: never imports rclpy; torch is imported only for the torch backend.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from wam_ros.fileio import sha256_file
from wam_ros.model.config import WamConfig
from wam_ros.model.text_encoder import CachedTextEncoder
from wam_ros.model.tokenizer import Tokenizer
from wam_ros.runtime import preprocess
from wam_ros.runtime.backends import Backend, OrtBackend, TorchBackend, cuda_device_count
from wam_ros.runtime.model_dir import (
    CHECKPOINT,
    GRAPHS,
    PRECISIONS,
    IntegrityError,
    PolicySpec,
    engine_name,
    onnx_name,
    read_engine_sidecar,
    read_metadata,
    verify_file,
)
from wam_ros.runtime.text_encoder import open_instruction_encoder

log = logging.getLogger("wam_ros.runtime")

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")


class Policy:
    """A loaded WAM policy: validation + preprocessing around one backend."""

    def __init__(
        self,
        backend: Backend,
        spec: PolicySpec,
        config: dict[str, Any],
        source: Path,
        tokenizer: Tokenizer | CachedTextEncoder | None = None,
    ) -> None:
        self.backend = backend
        self.spec = spec
        self.config = config
        self.source = source
        # the instruction encoder: the word Tokenizer, or a pretrained text encoder (load_policy opens the folder's)
        self.tokenizer = tokenizer or Tokenizer(config["vocab"], config["max_tokens"])
        self._tokens: dict[str, np.ndarray] = {}
        # frames already resized, by identity (+ a pixel sample, so a buffer refilled in place is not reused):
        # in a stream K-1 of the K frames of a call were in the previous call (see `prepare`)
        # (frame, its pixel sample, resized (H, W, 3), the same as (3, H, W) for the graph input)
        self._prepared: OrderedDict[int, tuple[np.ndarray, bytes, np.ndarray, np.ndarray]] = OrderedDict()
        self._prepared_lock = (
            threading.Lock()
        )  # predict() may be called from several threads (one bound call each)
        # predict()'s batch-1 call with its inputs bound once (OrtBackend.bound: IOBinding on CPU), fed by name
        self._bound = getattr(backend, "bound", None)
        self._text_input = spec.instruction_input()[0]
        self._input_names = {*spec.camera_inputs, "joint_pos", self._text_input}

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def graph(self) -> str:
        return self.backend.graph

    def tokens(self, instruction: str) -> np.ndarray:
        """The instruction input for an instruction (cached; unknown words are logged once): token ids int64 (1, L),
        or with a pretrained text encoder its embedding float32 (1, L, E) (the encoder runs once per instruction)."""
        if not isinstance(instruction, str):
            raise ValueError(f"instruction must be a str, got {type(instruction).__name__}")
        tok = self._tokens.get(instruction)
        if tok is None:
            unknown = self.tokenizer.unknown_words(instruction)
            if unknown:
                shown = (
                    instruction
                    if len(instruction) <= 60
                    else f"{instruction[:60]}... ({len(instruction)} chars)"
                )
                log.warning("instruction %r has words the model never saw: %s", shown, unknown[:20])
            tok = self.tokenizer.encode(instruction)[None]
            if len(self._tokens) > 256:
                self._tokens.clear()
            self._tokens[instruction] = tok
        return tok

    def prepare_image(self, image: np.ndarray, encoding: str = "rgb8") -> np.ndarray:
        """One camera image (any size, rgb8/bgr8/mono8/rgba8/bgra8) -> uint8 (H, W, 3) RGB at the model size.

        Call it once per camera message and keep the result (runtime.chunk_policy.ChunkPolicy does): a model-size
        frame costs predict() nothing. predict() itself also resizes a camera-size frame only once while the same
        array stays in the caller's K-frame window (a stream passes K-1 frames again each call).
        Large downscales convert the colour order after resizing (fewer pixels to touch).
        """
        return preprocess.prepare_image(image, encoding, self.spec.image_size)

    def prepare(self, obs: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Observation dict -> (frames uint8 (1,K,3,H,W), joint_pos float32 (1,J), tokens int64 (1,L)).

        obs["images"]: a list of 1..K frames, or {camera: list of frames} naming every camera of spec.cameras; a
        several-camera model needs the dict and gets frames (1,M,K,3,H,W) (ValueError naming a missing camera)."""
        return self._prepare(obs, None)

    def _prepare(
        self, obs: Mapping[str, Any], into: dict[str, np.ndarray] | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """prepare(); with `into` (graph input name -> bound (1, ...) array) the inputs are written there instead
        (frames camera by camera: the returned frames are then those of the first camera only)."""
        if not isinstance(obs, Mapping):
            raise ValueError(
                f"obs must be a dict with keys 'images', 'joint_pos', 'instruction', got {type(obs).__name__}"
            )
        missing = [k for k in ("images", "joint_pos", "instruction") if k not in obs]
        if missing:
            raise ValueError(
                f"obs is missing {missing}: expected keys 'images' (1..{self.spec.k_frames} uint8 RGB "
                f"frames), 'joint_pos' ({self.spec.num_joints},), 'instruction' str; got {sorted(obs)}"
            )
        images = obs["images"]
        if into is not None and len(self.spec.cameras) == 1 and self._stack_into(images, into["frames"]):
            frames = into["frames"]
        else:
            frames = self._camera_frames(images, into)
        joint_pos = preprocess.check_joint_pos(
            obs["joint_pos"], self.spec.num_joints, None if into is None else into["joint_pos"]
        )
        tokens = self.tokens(obs["instruction"])
        if into is not None:
            text = into[self._text_input]
            np.copyto(text, tokens)
            tokens = text
        return frames, joint_pos, tokens

    def _camera_frames(self, images: Any, into: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """obs["images"] -> frames uint8 (1,K,3,H,W), or (1,M,K,3,H,W) for a several-camera model (with `into`:
        each camera's frames written into its graph input, the first camera's returned)."""
        cameras = self.spec.cameras
        if isinstance(images, Mapping):
            missing = [c for c in cameras if c not in images]
            unknown = sorted(set(images) - set(cameras), key=str)
            if missing or unknown:
                raise ValueError(
                    f"the model sees cameras {cameras}: obs['images'] has no frames for {missing}"
                    + (f" and frames for cameras it does not know {unknown}" if unknown else "")
                    + f" (got {sorted(images, key=str)})"
                )
            per = [images[c] for c in cameras]
        elif len(cameras) > 1:
            raise ValueError(
                f"the model sees {len(cameras)} cameras {cameras}: obs['images'] must be a dict "
                f"{{camera: frames}} naming each, got {type(images).__name__}"
            )
        else:
            per = [images]
        stacked = []
        names = self.spec.camera_inputs
        for m, (name, cam) in enumerate(zip(cameras, per, strict=True)):
            if isinstance(cam, list | tuple):
                cam = [self._resized(f) for f in cam]
            out = None if into is None else into[names[m]]
            try:
                stacked.append(preprocess.stack_frames(cam, self.spec.k_frames, self.spec.image_size, out))
            except ValueError as exc:
                if len(cameras) == 1:
                    raise
                raise ValueError(f"camera {name!r}: {exc}") from exc
        return stacked[0] if len(cameras) == 1 or into is not None else np.stack(stacked, axis=1)

    def _stack_into(self, images: Any, out: np.ndarray) -> bool:
        """predict()'s lean path for the usual observation, a list of 1..K uint8 (h, w, 3) arrays of one camera:
        write them into the bound graph input `out` (1, K, 3, H, W), camera frames from the resize cache already
        laid out (3, H, W). False, with nothing refused, for anything else: the caller then takes the general path
        (stack_frames), which accepts or refuses it with its message."""
        k = self.spec.k_frames
        if type(images) not in (list, tuple) or not 1 <= len(images) <= k:
            return False
        h, w = self.spec.image_size
        planes = []
        for f in images:
            if type(f) is not np.ndarray or f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
                return False
            if f.shape[0] == h and f.shape[1] == w:
                planes.append(f.transpose(2, 0, 1))
            elif f.shape[0] < 1 or f.shape[1] < 1:
                return False
            else:
                planes.append(self._prepared_entry(f)[3])
        pad = k - len(planes)
        for i, plane in enumerate(planes):
            out[0, pad + i] = plane
        if pad:
            out[0, :pad] = planes[0]
        return True

    def _resized(self, frame: Any) -> Any:
        """`frame` at the model size, resized at most once while it stays in the caller's K-frame window. Anything
        that is not a uint8 (h, w, 3) array is returned as it is, for stack_frames to refuse with its message."""
        h, w = self.spec.image_size
        if (
            not isinstance(frame, np.ndarray)
            or frame.dtype != np.uint8
            or frame.ndim != 3
            or frame.shape[2] != 3
        ):
            return frame
        if frame.shape[0] == h and frame.shape[1] == w:
            return frame
        return self._prepared_entry(frame)[2]

    def _prepared_entry(self, frame: np.ndarray) -> tuple[np.ndarray, bytes, np.ndarray, np.ndarray]:
        """The resize cache's entry of a uint8 (h, w, 3) camera frame (resized now when it is not there)."""
        sample = frame[:: max(1, frame.shape[0] // 8), :: max(1, frame.shape[1] // 8)].tobytes()
        key = id(frame)
        with self._prepared_lock:
            hit = self._prepared.get(key)
            if hit is not None and hit[0] is frame and hit[1] == sample:
                self._prepared.move_to_end(key)
                return hit
        small = preprocess.resize(frame, self.spec.image_size)
        entry = (frame, sample, small, np.ascontiguousarray(small.transpose(2, 0, 1)))
        with self._prepared_lock:
            self._prepared[key] = entry  # holds `frame`, so its id is not reused meanwhile
            while len(self._prepared) > 2 * self.spec.k_frames * len(self.spec.cameras):
                self._prepared.popitem(last=False)
        return entry

    def predict(self, obs: Mapping[str, Any]) -> dict[str, np.ndarray | None]:
        """One control step: {"action": float64 (N, J), "next_frame": uint8 (H, W, 3) or None}.

        On onnxruntime CPU the inputs are written straight into arrays bound to the graph once (OrtBackend.bound:
        no feeds dict, input OrtValues or output arrays per call); other backends get backend.run(*prepare(obs))."""
        bound = None if self._bound is None else self._bound()
        if bound is not None and bound.inputs.keys() == self._input_names:
            self._prepare(obs, bound.inputs)
            action, next_frame = bound.run()
        else:
            action, next_frame = self.backend.run(*self.prepare(obs))
        return {
            "action": action[0].astype(np.float64),
            "next_frame": None if next_frame is None else preprocess.frame_to_image(next_frame[0]),
        }

    def run_batch(
        self, frames: np.ndarray, joint_pos: np.ndarray, tokens: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw batched call (already preprocessed inputs), checked for shape and dtype."""
        B = check_batch(self.spec, frames, joint_pos, tokens)
        action, next_frame = self.backend.run(frames, joint_pos, tokens)
        if action.shape[0] != B:
            raise RuntimeError(
                f"backend {self.backend_name} returned batch {action.shape[0]} for input batch {B}"
            )
        return action, next_frame

    def __repr__(self) -> str:
        h, w = self.spec.image_size
        cams = f", cameras={self.spec.cameras}" if len(self.spec.cameras) > 1 else ""
        return (
            f"Policy({self.source}, backend={self.backend_name}, graph={self.graph}, {h}x{w}, "
            f"K={self.spec.k_frames}, N={self.spec.chunk}, J={self.spec.num_joints}{cams})"
        )


def check_batch(spec: PolicySpec, frames: np.ndarray, joint_pos: np.ndarray, tokens: np.ndarray) -> int:
    """Validate raw batched inputs against the spec; return the batch size B (frames (B, M, K, 3, H, W) for a
    model with M > 1 cameras)."""
    H, W = spec.image_size
    _, text_dtype, text_tail = spec.instruction_input()
    cams = (len(spec.cameras),) if len(spec.cameras) > 1 else ()
    want = {
        "frames": (np.uint8, (*cams, spec.k_frames, 3, H, W)),
        "joint_pos": (np.float32, (spec.num_joints,)),
        "tokens": (np.dtype(text_dtype).type, text_tail),
    }
    B = None
    for name, arr in (("frames", frames), ("joint_pos", joint_pos), ("tokens", tokens)):
        dtype, tail = want[name]
        if (
            not isinstance(arr, np.ndarray)
            or arr.dtype != dtype
            or arr.shape[1:] != tail
            or arr.ndim != len(tail) + 1
        ):
            got = f"{arr.dtype} {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
            raise ValueError(
                f"{name} must be {np.dtype(dtype).name} (B, {', '.join(map(str, tail))}), got {got}"
            )
        if B is None:
            B = arr.shape[0]
        elif arr.shape[0] != B:
            raise ValueError(f"{name} has batch {arr.shape[0]}, frames have batch {B}")
    if B == 0:
        raise ValueError("batch must be >= 1, got 0")
    return int(B)


def _tensorrt_usable() -> bool:
    if cuda_device_count() == 0:
        return False
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def _resolve(path: Path, backend: str, graph: str, precision: str) -> tuple[str, Path]:
    """(backend, file) for a directory, checkpoint, ONNX or engine path."""
    if path.is_dir():
        ckpt, onnx_file, engine = (
            path / CHECKPOINT,
            path / onnx_name(graph, precision),
            path / engine_name(graph),
        )
        if backend == "auto":
            if engine.is_file() and _tensorrt_usable():
                return "tensorrt", engine
            if onnx_file.is_file():
                return "onnxruntime", onnx_file
            if ckpt.is_file():
                return "torch", ckpt
            raise FileNotFoundError(
                f"{path} holds no model: expected {engine.name}, {onnx_file.name} or {CHECKPOINT}"
            )
        target = {"torch": ckpt, "onnxruntime": onnx_file, "tensorrt": engine}[backend]
        if not target.is_file():
            hint = "`wam export --tensorrt` on a GPU machine" if backend == "tensorrt" else "`wam export`"
            raise FileNotFoundError(f"backend {backend!r} needs {target} (make it with {hint})")
        return backend, target
    if not path.is_file():
        raise FileNotFoundError(f"model path not found: {path}")
    kind = {".pt": "torch", ".onnx": "onnxruntime", ".engine": "tensorrt"}.get(path.suffix)
    if kind is None:
        raise ValueError(f"cannot tell the model type of {path}: expected a directory, .pt, .onnx or .engine")
    if backend not in ("auto", kind):
        raise ValueError(
            f"backend {backend!r} cannot run {path.name} (a {path.suffix} file runs on {kind!r}); "
            f"pass the model directory or the matching file"
        )
    return kind, path


def _stale_reason(file: Path, kind: str, ckpt: Path) -> str | None:
    """Why an exported graph does not belong to the checkpoint beside it (None when it does)."""
    _, meta = read_engine_sidecar(file) if kind == "tensorrt" else read_metadata(file)
    exported_from = meta.get("source", {}).get("sha256")
    if exported_from and exported_from != sha256_file(ckpt):
        return (
            f"{file} was exported from another checkpoint than {ckpt} (sha256 differs): it would run old "
            f"weights; re-export with `wam export {ckpt} --out {ckpt.parent}`"
        )
    return None


def _self_sealed(checkpoint: Path) -> bool:
    """True when a checkpoint carries a weights seal and it verifies (read_checkpoint checks it)."""
    from wam_ros.model.checkpoint import CheckpointError, read_checkpoint

    try:
        return read_checkpoint(checkpoint).get("weights_sha256") is not None
    except CheckpointError:
        return False


def _one_opencv_thread() -> None:
    """Resizing one 640x480 camera frame gains nothing from a second OpenCV thread (benchmarks/resize_cost.py: the
    same p50 on 1 and 2), and a second OpenCV worker spinning after each resize would compete with onnxruntime's
    threads. Process-wide (cv2.setNumThreads); a host program may set it back after loading."""
    import cv2

    cv2.setNumThreads(1)


def _verify(file: Path) -> None:
    """Check `file` against the model directory's manifest (IntegrityError on a mismatch, never a fallback)."""
    try:
        verified = verify_file(file)
    except IntegrityError:
        if file.name != CHECKPOINT or not _self_sealed(file):
            raise
        log.warning(
            "%s differs from the manifest but its own weights seal verifies: it was replaced after the export "
            "(retrained), not damaged",
            file,
        )
        return
    if not verified:
        log.warning(
            "%s is not listed in a %s beside it: its integrity cannot be checked (write one with `wam export`)",
            file,
            "manifest.json",
        )


def load_policy(
    path: str | Path,
    backend: str = "auto",
    threads: int = 2,
    graph: str | None = None,
    precision: str = "fp32",
    providers: list[Any] | None = None,
    io_binding: bool | None = None,
) -> Policy:
    """Load a policy (see the module docstring). graph: "full" (default) or "action"; precision "fp32"/"fp16"
    picks the ONNX file in a directory; providers overrides the onnxruntime provider choice."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if graph is not None and graph not in GRAPHS:
        raise ValueError(f"graph must be one of {GRAPHS}, got {graph!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an int >= 1, got {threads!r}")
    path = Path(path)
    _one_opencv_thread()
    kind, file = _resolve(path, backend, graph or "full", precision)
    _verify(file)
    if kind != "torch" and path.is_dir() and (path / CHECKPOINT).is_file():
        try:
            _verify(path / CHECKPOINT)
        except (
            IntegrityError
        ) as exc:  # the graph is intact and verified; only the checkpoint beside it is damaged
            log.warning("%s; running the intact, verified %s", exc, file.name)
            stale = None
        else:
            stale = _stale_reason(file, kind, path / CHECKPOINT)
        if stale and backend == "auto":
            log.warning("%s; using the checkpoint (torch) instead", stale)
            kind, file = "torch", path / CHECKPOINT
        elif stale:
            raise ValueError(stale)
    if kind == "torch":
        from wam_ros.model.checkpoint import load_checkpoint

        model = load_checkpoint(file)
        config = model.cfg.to_dict()
        spec = PolicySpec.from_config(config, graph=graph or "full")
        encoder = open_instruction_encoder(
            config, file
        )  # the folder's exported encoder, else the config's source
        policy = Policy(TorchBackend(model, graph or "full", threads), spec, config, file, encoder)
    else:
        spec, meta = read_engine_sidecar(file) if kind == "tensorrt" else read_metadata(file)
        if graph is not None and graph != spec.graph:
            raise ValueError(f"{file} is the {spec.graph!r} graph, but graph={graph!r} was asked for")
        try:
            WamConfig.from_dict(
                meta["config"]
            )  # validates the embedded config (and so the tokenizer vocabulary)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{file}: the model config in its metadata is invalid: {exc}") from exc
        if kind == "tensorrt":
            from wam_ros.runtime.backends_trt import TensorRTBackend

            be: Backend = TensorRTBackend(file, spec)
        else:
            be = OrtBackend(file, threads, providers, io_binding)
        # a pretrained instruction encoder runs from the folder's text_encoder.onnx only (no torch, no transformers)
        encoder = open_instruction_encoder(meta["config"], file, local_only=True)
        policy = Policy(be, spec, meta["config"], file, encoder)
    log.info("loaded %r", policy)
    return policy
