"""The planner's backends (issue 16): propose chunks and imagine + score candidates, on torch or onnxruntime.

    backend = open_plan_backend("models/panda_tabletop", backend="auto", precision="fp32", threads=2)
    proposals, probs, context = backend.propose(frames, joint_pos, tokens)
    #   frames uint8 (1,K,3,H,W), joint_pos float32 (1,J), tokens int64 (1,L)
    #   -> proposals float32 (1,M,N,J) absolute targets of every mode, probs float32 (1,M), context float32 (1,S,d)
    critic, joints = backend.score(context, tokens, joint_pos, chunks)          # optional horizon=h (default N)
    #   context (B,S,d) float32, tokens (B,L) int64, joint_pos (B,J) float32, chunks (B,N,J) float32 absolute targets
    #   -> critic float32 (B,3) [success logit, steps to go / steps_scale, goal distance / dist_scale],
    #      joints float32 (B,J) imagined joint positions after `horizon` actions
    #   context, tokens and joint_pos may also be batch 1: they are then repeated for the B candidates.
    #   (a model with a pretrained text encoder takes its embedding float32 (B,L,E) wherever `tokens` stands here;
    #   its graphs name that input `text_emb`: wam_ros.runtime.model_dir.planner_inputs)
    if backend.has_frame_graph:
        frame = backend.imagine_frame(frames, joint_pos, tokens, chunk, horizon)
    #   frames uint8 (B,K,3,H,W), joint_pos float32 (B,J), tokens int64 (B,L), chunk float32 (B,N,J) absolute targets,
    #   horizon int64 (B,) in 0..N (or an int for every row) -> frame float32 (B,3,H,W) in [0,1]: the picture imagined
    #   after the first `horizon` actions of the chunk (the planner asks at B=1, h=1 for its chosen chunk)

Backends: TorchPlanBackend (the checkpoint's WorldActionModel.context / imagine_score / imagine_frame) and
OrtPlanBackend (the graphs wam_plan_propose[_fp16].onnx, wam_plan_imagine[_fp16].onnx and, optionally,
wam_plan_frame[_fp16].onnx that `wam export` writes for a model built with cfg.imagine; see
wam_ros/export/planner_onnx.py). `open_plan_backend` opens a model directory or a `.pt` checkpoint: "auto" takes the
onnxruntime graphs when propose and imagine are there (else the checkpoint on torch).

The frame graph is optional: a directory exported before it existed holds only propose + imagine and still opens;
its backend then has `has_frame_graph` False and `imagine_frame` raises FileNotFoundError naming the file and the
`wam export` command that writes it (never a silent substitute: the caller decides, e.g. the planner shows the
policy's own next frame instead). The torch backend always has it (True). When the frame graph is there it is
verified and checked for staleness like the other two.

Every file is checked against the directory's manifest before it is loaded (IntegrityError for a damaged file, never a
fallback to another file), and graphs exported from another checkpoint than the model.pt beside them are refused (or,
with "auto", replaced by the checkpoint, with a warning) exactly as load_policy does. A model that does not imagine is
refused with a ValueError that says so. Each backend also carries `spec` (PolicySpec), `config` (the WamConfig dict:
vocabulary, joints) and `planner` (modes, horizon_max, context_tokens, d_model, critic_outputs, steps_scale,
dist_scale).

The graphs take one context row per candidate; tiling it (np.repeat of context, tokens and joints to 16 candidates
of the small_imagine preset, here or by the caller) costs under 0.1 ms of a ~20-30 ms decision, so a broadcasting
graph would win nothing and have two batch dimensions to get wrong. Input checks cost ~40 us per score() call.
Both backends accept score(..., horizon=h), h in 0..N actions (default N), or an int64 array (B,) of one horizon
per row: the planner scores its N candidates at h=N and the policy's own chunk at h=0 (the present state, which its
stall test reads) in one call, ~1 ms cheaper than a second call at batch 1.

Core module: never imports rclpy; torch is imported only for the torch backend.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from wam_ros.runtime.backends import open_session
from wam_ros.runtime.model_dir import (
    CHECKPOINT,
    PLANNER_GRAPHS,
    PLANNER_OUTPUTS,
    PRECISIONS,
    REQUIRED_PLANNER,
    IntegrityError,
    PolicySpec,
    onnx_name,
    planner_inputs,
    planner_onnx_name,
    read_metadata,
)
from wam_ros.runtime.policy import _stale_reason, _verify  # the same file checks as load_policy

log = logging.getLogger("wam_ros.runtime")

PLAN_BACKENDS = ("auto", "torch", "onnxruntime")


@runtime_checkable
class PlanBackend(Protocol):
    """What the planner (wam_ros.runtime.planner.BestOfN) needs from a backend."""

    name: str  # "torch" | "onnxruntime"
    precision: str  # "fp32" | "fp16"
    # backends here also have has_frame_graph (bool) and imagine_frame(frames, joint_pos, tokens, chunk, horizon);
    # they are not part of the protocol, so a planner must ask getattr(backend, "has_frame_graph", False) first

    def propose(
        self, frames: np.ndarray, joint_pos: np.ndarray, tokens: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def score(
        self, context: np.ndarray, tokens: np.ndarray, joint_pos: np.ndarray, chunks: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]: ...


class NotImaginingError(ValueError):
    """The model has no imagination / progress critic (built without cfg.imagine): nothing to plan with."""


def not_imagining(where: Any) -> NotImaginingError:
    return NotImaginingError(
        f"{where} is not an imagining model (its config has imagine=False): best-of-N planning needs a model "
        "trained with cfg.imagine (presets small_imagine, tiny_imagine: `wam train --preset small_imagine`), which "
        "has the proposal modes, the action-conditioned imagination and the progress critic"
    )


def planner_constants(config: dict[str, Any]) -> dict[str, Any]:
    """What a planner must know to use the graphs without torch: modes M, horizon_max N, the context's shape (S, d)
    and the critic's outputs and units (wam_ros.model.modeling). Written by the export into every planner graph's
    spec.extra["planner"]; the torch backend computes it here. Imports torch (the model package)."""
    from wam_ros.model.modeling import CRITIC_OUTPUTS, DIST_SCALE, STEPS_SCALE

    grid = int(config["image_size"]) // 8
    return {
        "modes": int(config["modes"]),
        "horizon_max": int(config["chunk"]),
        "context_tokens": grid**2 + 1 + int(config["max_tokens"]),
        "d_model": int(config["d_model"]),
        "critic_outputs": list(CRITIC_OUTPUTS),
        "steps_scale": float(STEPS_SCALE),
        "dist_scale": float(DIST_SCALE),
    }


def _check(name: str, arr: Any, dtype: type, tail: tuple[int, ...], batch: int | None = None) -> int:
    """Validate one input array; returns its batch size. ValueError naming what was expected and what came."""
    shape = ", ".join(map(str, tail))
    want = f"{np.dtype(dtype).name} ({'B' if batch is None else batch}, {shape})"
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{name} must be a numpy array {want}, got {type(arr).__name__}")
    if arr.dtype != dtype or arr.ndim != len(tail) + 1 or arr.shape[1:] != tail:
        raise ValueError(f"{name} must be {want}, got {arr.dtype} {arr.shape}")
    if arr.shape[0] < 1 or (batch is not None and arr.shape[0] != batch):
        raise ValueError(f"{name} must be {want}, got batch {arr.shape[0]}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or Inf")
    return int(arr.shape[0])


class _PlanBase:
    """Input validation and batch-1 tiling shared by both backends (subclasses implement _propose / _score)."""

    name: str
    precision: str
    spec: PolicySpec
    config: dict[str, Any]
    planner: dict[str, Any]
    has_frame_graph: bool = False  # whether imagine_frame can run (set by the subclass)
    _frame_missing = "this planner backend has no frame graph"

    def _setup(self, config: dict[str, Any], planner: dict[str, Any]) -> None:
        if not config.get("imagine"):
            raise not_imagining(getattr(self, "source", "the model"))
        self.config, self.planner = config, planner
        self.spec = PolicySpec.from_config(config, graph="propose", planner=planner)
        self.modes, self.horizon_max = int(planner["modes"]), int(planner["horizon_max"])
        self.critic_outputs = tuple(planner["critic_outputs"])

    def _frames_tail(self) -> tuple[int, ...]:
        """The frames input's shape without the batch: (K, 3, H, W), or (M, K, 3, H, W) with M > 1 cameras."""
        s = self.spec
        cams = (len(s.cameras),) if len(s.cameras) > 1 else ()
        return (*cams, s.k_frames, 3, *s.image_size)

    def propose(
        self, frames: np.ndarray, joint_pos: np.ndarray, tokens: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = self.spec
        B = _check("frames", frames, np.uint8, self._frames_tail())
        _check("joint_pos", joint_pos, np.float32, (s.num_joints,), B)
        self._check_tokens(tokens, B)
        return self._propose(frames, joint_pos, tokens)

    def score(
        self,
        context: np.ndarray,
        tokens: np.ndarray,
        joint_pos: np.ndarray,
        chunks: np.ndarray,
        horizon: int | np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """See the module docstring; horizon: actions of each chunk to imagine, 0..N (default N, the whole chunk), or
        an int64 array (B,) of one horizon per chunk."""
        s, p = self.spec, self.planner
        B = _check("chunks", chunks, np.float32, (s.chunk, s.num_joints))
        args = {}
        for name, arr, dtype, tail in (
            ("context", context, np.float32, (p["context_tokens"], p["d_model"])),
            ("tokens", tokens, *self._text_input()),
            ("joint_pos", joint_pos, np.float32, (s.num_joints,)),
        ):
            n = _check(name, arr, dtype, tail)
            if n not in (1, B):
                raise ValueError(f"{name} has batch {n}: expected 1 (shared) or {B} (one per chunk)")
            args[name] = np.repeat(arr, B, 0) if n != B else arr
        self._check_tokens(args["tokens"], B)
        h = self.horizon_max if horizon is None else horizon
        want = f"an int in 0..{self.horizon_max} (actions) or an int64 array ({B},) of them"
        if isinstance(h, np.ndarray):
            if h.dtype != np.int64 or h.shape != (B,):
                raise ValueError(f"horizon must be {want}, got {h.dtype} {h.shape}")
            if int(h.min()) < 0 or int(h.max()) > self.horizon_max:
                raise ValueError(f"horizon must be {want}, got values {h.tolist()}")
            rows = h
        elif not isinstance(h, (int, np.integer)) or isinstance(h, bool) or not 0 <= h <= self.horizon_max:
            raise ValueError(f"horizon must be {want}, got {horizon!r}")
        else:
            rows = np.full(B, int(h), dtype=np.int64)
        return self._score(args["context"], args["tokens"], args["joint_pos"], chunks, rows)

    def imagine_frame(
        self,
        frames: np.ndarray,
        joint_pos: np.ndarray,
        tokens: np.ndarray,
        chunk: np.ndarray,
        horizon: np.ndarray | int,
    ) -> np.ndarray:
        """The frame float32 (B,3,H,W) in [0,1] imagined after the first `horizon` actions of `chunk` (see the module
        docstring). Every array has the same batch B; horizon is int64 (B,) or one int for every row, in 0..N.
        FileNotFoundError when this backend has no frame graph (has_frame_graph False)."""
        if not self.has_frame_graph:
            raise FileNotFoundError(self._frame_missing)
        s = self.spec
        B = _check("frames", frames, np.uint8, self._frames_tail())
        _check("joint_pos", joint_pos, np.float32, (s.num_joints,), B)
        _check("chunk", chunk, np.float32, (s.chunk, s.num_joints), B)
        self._check_tokens(tokens, B)
        want = f"an int64 array (B={B},) or an int, in 0..{self.horizon_max} (actions)"
        if isinstance(horizon, (int, np.integer)) and not isinstance(horizon, bool):
            if not 0 <= horizon <= self.horizon_max:
                raise ValueError(f"horizon must be {want}, got {horizon!r}")
            horizon = np.full(B, horizon, dtype=np.int64)
        elif not isinstance(horizon, np.ndarray) or horizon.dtype != np.int64 or horizon.shape != (B,):
            got = f"{horizon.dtype} {horizon.shape}" if isinstance(horizon, np.ndarray) else repr(horizon)
            raise ValueError(f"horizon must be {want}, got {got}")
        elif int(horizon.min()) < 0 or int(horizon.max()) > self.horizon_max:
            raise ValueError(f"horizon must be {want}, got values {horizon.tolist()}")
        return self._imagine_frame(frames, joint_pos, tokens, chunk, horizon)

    def _text_input(self) -> tuple[type, tuple[int, ...]]:
        """(dtype, shape without the batch) of the instruction input: word ids int64 (L,), or a pretrained text
        encoder's embedding float32 (L, E)."""
        _, dtype, tail = self.spec.instruction_input()
        return np.dtype(dtype).type, tail

    def _check_tokens(self, tokens: np.ndarray, batch: int) -> None:
        _check("tokens", tokens, *self._text_input(), batch)
        if self.spec.text_dim:
            return  # an embedding: _check refused NaN/Inf
        vocab = len(self.config["vocab"])
        if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab):
            raise ValueError(
                f"token ids must be in [0, {vocab}), got [{int(tokens.min())}, {int(tokens.max())}]"
            )

    def _propose(self, frames, joint_pos, tokens):  # noqa: ANN001, ANN202
        raise NotImplementedError

    def _score(self, context, tokens, joint_pos, chunks, horizon):  # noqa: ANN001, ANN202 - horizon int64 (B,)
        raise NotImplementedError

    def _imagine_frame(self, frames, joint_pos, tokens, chunk, horizon):  # noqa: ANN001, ANN202
        raise NotImplementedError


class TorchPlanBackend(_PlanBase):
    """The eager torch model (a WorldActionModel built with cfg.imagine), on CPU with `threads` intra-op threads."""

    def __init__(self, model: Any, threads: int | None = 2, source: str | Path = "the model") -> None:
        import torch

        self.source = source
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)
        config = model.cfg.to_dict()
        if not config["imagine"]:
            raise not_imagining(source)
        self._setup(config, planner_constants(config))
        self.model = model.eval()
        self.name, self.precision = "torch", "fp32"
        self.has_frame_graph = True  # WorldActionModel.imagine_frame itself
        self._torch = torch

    def _propose(
        self, frames: np.ndarray, joint_pos: np.ndarray, tokens: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            out = self.model.context(
                torch.from_numpy(frames), torch.from_numpy(joint_pos), torch.from_numpy(tokens)
            )
        return tuple(np.ascontiguousarray(t.float().numpy()) for t in out)  # type: ignore[return-value]

    def _score(
        self,
        context: np.ndarray,
        tokens: np.ndarray,
        joint_pos: np.ndarray,
        chunks: np.ndarray,
        horizon: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            critic, joints = self.model.imagine_score(
                *(torch.from_numpy(a) for a in (context, tokens, joint_pos, chunks)),
                horizon=torch.from_numpy(horizon),
            )
        return critic.float().numpy(), joints.float().numpy()

    def _imagine_frame(
        self,
        frames: np.ndarray,
        joint_pos: np.ndarray,
        tokens: np.ndarray,
        chunk: np.ndarray,
        horizon: np.ndarray,
    ) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            frame = self.model.imagine_frame(
                *(torch.from_numpy(a) for a in (frames, joint_pos, tokens, chunk, horizon))
            )
        return np.ascontiguousarray(frame.float().numpy())

    def __repr__(self) -> str:
        return f"TorchPlanBackend({self.source}, M={self.modes}, N={self.horizon_max})"


class OrtPlanBackend(_PlanBase):
    """The exported planner graphs in onnxruntime (paths of the propose and the imagine graph, one precision, and
    optionally of the frame graph: without it has_frame_graph is False and imagine_frame raises FileNotFoundError)."""

    def __init__(
        self,
        propose_path: str | Path,
        imagine_path: str | Path,
        threads: int = 2,
        providers: list[Any] | None = None,
        frame_path: str | Path | None = None,
    ) -> None:
        self.paths = {"propose": Path(propose_path), "imagine": Path(imagine_path)}
        if frame_path is not None:
            self.paths["frame"] = Path(frame_path)
        self.source = self.paths["propose"].parent
        metas = {}
        for graph, path in self.paths.items():
            spec, meta = read_metadata(path)  # ValueError for a file that is not a wam_ros graph
            if meta["graph"] != graph:
                raise ValueError(
                    f"{path} is the {meta['graph']!r} graph, expected the planner's {graph!r} graph"
                )
            if not meta["config"].get("imagine"):
                raise not_imagining(path)
            metas[graph] = (spec, meta)
        sp, mp = metas["propose"]
        for graph in self.paths.keys() - {"propose"}:
            mi = metas[graph][1]
            if mp["precision"] != mi["precision"] or mp["config"] != mi["config"]:
                raise ValueError(
                    f"{self.paths['propose']} and {self.paths[graph]} do not belong together (precision "
                    f"{mp['precision']} / {mi['precision']}, or another model config): re-export with `wam export`"
                )
            src = (mp.get("source", {}).get("sha256"), mi.get("source", {}).get("sha256"))
            if src[0] and src[1] and src[0] != src[1]:
                raise ValueError(
                    f"{self.paths['propose']} and {self.paths[graph]} were exported from different checkpoints "
                    "(sha256 differ): re-export them all with `wam export`"
                )
        planner = sp.extra.get("planner")
        need = {"modes", "horizon_max", "context_tokens", "d_model", "critic_outputs"}
        if not isinstance(planner, dict) or not need <= set(planner):
            raise ValueError(
                f"{self.paths['propose']}: metadata has no planner constants (spec.extra['planner'])"
            )
        self._setup(mp["config"], planner)
        self.precision = mp["precision"]
        self.sessions = {g: open_session(p, threads, providers) for g, p in self.paths.items()}
        for graph, sess in self.sessions.items():
            names_in = tuple(i.name for i in sess.get_inputs())
            names_out = tuple(o.name for o in sess.get_outputs())
            want_in = planner_inputs(graph, self.config)
            if names_in != want_in or names_out != PLANNER_OUTPUTS[graph]:
                raise ValueError(
                    f"{self.paths[graph]} is not the planner's {graph!r} graph: expected inputs "
                    f"{list(want_in)} -> {list(PLANNER_OUTPUTS[graph])}, got {list(names_in)} -> "
                    f"{list(names_out)}"
                )
        self.text_input = planner_inputs("propose", self.config)[2]  # "tokens" or "text_emb"
        self.providers: list[str] = self.sessions["propose"].get_providers()
        self.name = "onnxruntime"
        self.has_frame_graph = "frame" in self.sessions
        frame_name = planner_onnx_name("frame", self.precision)
        self._frame_missing = (
            f"{self.source} has no {frame_name} (exported before the planner's frame graph existed): "
            f"imagine_frame needs it; re-export with `wam export {self.source / CHECKPOINT} --out {self.source}`, "
            "or check has_frame_graph first"
        )

    def _propose(
        self, frames: np.ndarray, joint_pos: np.ndarray, tokens: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = self.sessions["propose"].run(
            None, {"frames": frames, "joint_pos": joint_pos, self.text_input: tokens}
        )
        return out[0], out[1], out[2]

    def _score(
        self,
        context: np.ndarray,
        tokens: np.ndarray,
        joint_pos: np.ndarray,
        chunks: np.ndarray,
        horizon: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        feeds = {
            "context": context,
            self.text_input: tokens,
            "joint_pos": joint_pos,
            "chunks": chunks,
            "horizon": horizon,
        }
        critic, joints = self.sessions["imagine"].run(None, feeds)
        return critic, joints

    def _imagine_frame(
        self,
        frames: np.ndarray,
        joint_pos: np.ndarray,
        tokens: np.ndarray,
        chunk: np.ndarray,
        horizon: np.ndarray,
    ) -> np.ndarray:
        feeds = {
            "frames": frames,
            "joint_pos": joint_pos,
            self.text_input: tokens,
            "chunks": chunk,
            "horizon": horizon,
        }
        return self.sessions["frame"].run(None, feeds)[0]

    def __repr__(self) -> str:
        return (
            f"OrtPlanBackend({self.source}, {self.precision}, {self.providers[0]}, M={self.modes}, "
            f"N={self.horizon_max}, frame graph: {'yes' if self.has_frame_graph else 'no'})"
        )


def _config_in(model_dir: Path) -> tuple[dict[str, Any] | None, Path | None]:
    """The model config of a directory without loading weights (any exported graph's metadata), or (None, None)."""
    for name in [planner_onnx_name(g, p) for g in PLANNER_GRAPHS for p in PRECISIONS] + [
        onnx_name(g, p) for g in ("full", "action") for p in PRECISIONS
    ]:
        path = model_dir / name
        if path.is_file():
            try:
                return read_metadata(path)[1]["config"], path
            except ValueError:
                continue
    return None, None


def _open_torch(file: Path, threads: int) -> TorchPlanBackend:
    from wam_ros.model.checkpoint import load_checkpoint

    _verify(file)
    model = load_checkpoint(file)  # CheckpointError (a ValueError) for a damaged or foreign file
    if not model.cfg.imagine:
        raise not_imagining(file)
    return TorchPlanBackend(model, threads, source=file)


def open_plan_backend(
    path: str | Path,
    backend: str = "auto",
    precision: str = "fp32",
    threads: int = 2,
    providers: list[Any] | None = None,
) -> TorchPlanBackend | OrtPlanBackend:
    """Open the planner of a model directory or a `.pt` checkpoint (see the module docstring).

    backend: "auto" (the onnxruntime graphs when both are in the directory, else the checkpoint), "torch" or
    "onnxruntime". precision: which ONNX files ("fp16" needs onnxruntime). providers: onnxruntime provider override.
    Raises FileNotFoundError (missing files, with the command that makes them), IntegrityError (a file that differs from
    the manifest), NotImaginingError (a model without imagination) or ValueError (anything else malformed)."""
    if backend not in PLAN_BACKENDS:
        raise ValueError(f"backend must be one of {PLAN_BACKENDS}, got {backend!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads must be an int >= 1, got {threads!r}")
    if backend == "torch" and precision != "fp32":
        raise ValueError("precision 'fp16' runs on onnxruntime only (the torch backend is fp32)")
    path = Path(path)
    if path.is_file():
        if path.suffix != ".pt":
            raise ValueError(
                f"open_plan_backend takes a model directory or a .pt checkpoint, got {path.name}: the planner "
                f"needs two graphs, {planner_onnx_name('propose')} and {planner_onnx_name('imagine')}; pass "
                "their directory"
            )
        if backend == "onnxruntime" or precision != "fp32":
            raise ValueError(
                f"{path.name} is a checkpoint (torch, fp32); for onnxruntime or fp16 pass the model directory "
                "that `wam export` wrote"
            )
        return _open_torch(path, threads)
    if not path.is_dir():
        raise FileNotFoundError(f"model path not found: {path}")
    ckpt = path / CHECKPOINT
    files = {g: path / planner_onnx_name(g, precision) for g in REQUIRED_PLANNER}
    have_graphs = all(f.is_file() for f in files.values())
    frame = path / planner_onnx_name("frame", precision)
    if have_graphs and frame.is_file():  # optional (exports before it have none), checked like the others
        files["frame"] = frame
    if not have_graphs:
        config, where = _config_in(path)
        if config is not None and not config.get("imagine"):
            raise not_imagining(where)
        if not ckpt.is_file() and config is None:
            raise FileNotFoundError(f"{path} holds no model: expected {CHECKPOINT} or the exported graphs")
        several = config is not None and len(config.get("cameras") or ["front"]) > 1
        if several and (backend == "onnxruntime" or precision != "fp32" or not ckpt.is_file()):
            raise ValueError(
                f"{path}: a model with several cameras {config['cameras']} has no planner graphs (`wam export` "
                f"writes them for one-camera models only); plan on torch with the checkpoint {ckpt} "
                "(backend 'torch' / planner_backend:=torch)"
            )
        if backend == "onnxruntime" or precision != "fp32" or not ckpt.is_file():
            missing = [f.name for f in files.values() if not f.is_file()]
            raise FileNotFoundError(
                f"{path} has no planner graphs {missing} for precision {precision}: export them with "
                f"`wam export {ckpt} --out {path}` (written for a model built with cfg.imagine)"
            )
        return _open_torch(ckpt, threads)
    if backend == "torch":
        if not ckpt.is_file():
            raise FileNotFoundError(f"backend 'torch' needs {ckpt}")
        return _open_torch(ckpt, threads)
    for f in files.values():
        _verify(f)  # IntegrityError for a damaged graph: never a fallback to another file
    if ckpt.is_file():
        try:
            _verify(ckpt)
        except (
            IntegrityError
        ) as exc:  # the graphs are intact and verified; only the checkpoint beside them is not
            log.warning("%s; running the intact, verified planner graphs", exc)
            stale = None
        else:
            stale = next(
                (r for r in (_stale_reason(f, "onnxruntime", ckpt) for f in files.values()) if r), None
            )
        if stale and backend == "auto" and precision == "fp32":
            log.warning("%s; using the checkpoint (torch) instead", stale)
            return _open_torch(ckpt, threads)
        if stale:
            raise ValueError(stale)
    be = OrtPlanBackend(files["propose"], files["imagine"], threads, providers, files.get("frame"))
    log.info("loaded %r", be)
    return be
