"""The model folder: one contract for every file name, metadata key, I/O name and hash (see docs/export.md).

A model directory (`models/panda_tabletop/`) holds:

    model.pt                   the checkpoint -> the torch backend (CHECKPOINT)
    wam_{graph}[_fp16].onnx    exported graphs, graph "full" (action + next frame) or "action" (onnx_name())
    wam_{graph}_fp16.engine    TensorRT engines built on the target GPU (engine_name()), metadata in <engine>.json
    wam_plan_{graph}[_fp16].onnx   the planner's graphs of an imagining model (cfg.imagine, issue 16), graph
                               "propose", "imagine" or "frame" (planner_onnx_name()); written by `wam export` beside
                               the others ("frame" since the planner's picture of its chosen chunk: directories
                               exported before it hold only the other two, and still open)
    text_encoder.onnx          a model with a pretrained instruction encoder (cfg.instruction_encoder "hf:..." /
    tokenizer.json             "onnx:...", issue 17): the frozen encoder (input_ids, attention_mask int64 (B,L) ->
                               hidden float32 (B,L,E)) and its tokenizer (`tokenizers`, fixed length L), run by
                               wam_ros.runtime.text_encoder once per instruction (TEXT_ENCODER_FILES)
    manifest.json              sha256 + size of every weight file above (MANIFEST), written by `wam export`;
                               verified before a file is loaded (verify_file)
    export.json                the export report (parity figures, opset)
    MODEL_CARD.md              what the model is, how it was trained and measured

Graph I/O (every backend): INPUTS frames uint8 (B,K,3,H,W), joint_pos float32 (B,J), tokens int64 (B,L) ->
OUTPUTS_FULL action float32 (B,N,J) absolute targets, next_frame float32 (B,3,H,W) in [0,1]; OUTPUTS_ACTION action only.
Planner graphs (PLANNER_INPUTS / PLANNER_OUTPUTS): propose (frames, joint_pos, tokens) -> proposals float32 (B,M,N,J)
absolute targets of every mode, probs float32 (B,M), context float32 (B,S,d); imagine (context (B,S,d), tokens (B,L),
joint_pos (B,J), chunks float32 (B,N,J) absolute targets, horizon int64 (B,) in 0..N) -> critic float32 (B,3),
joints float32 (B,J) imagined joint positions at the horizon; frame (frames, joint_pos, tokens, chunks, horizon) ->
frame float32 (B,3,H,W) in [0,1], imagined after the first `horizon` actions of each chunk (optional: REQUIRED_PLANNER
names the two a planner cannot run without).
A model with a pretrained instruction encoder takes `text_emb` float32 (B,L,E) (the encoder's per-token embedding,
padding rows zero; E = PolicySpec.text_dim) wherever the others take `tokens` (INPUTS_TEXT, planner_inputs()).
A model with several cameras (PolicySpec.cameras, issue 19) takes its first camera as `frames` and each other camera
`c` as one more input `frames_c` uint8 (B,K,3,H,W), after the three above (camera_inputs(), policy_inputs()); its
planner graphs are not exported (planner_supported()).

ONNX `metadata_props`, all strings, structured ones JSON. Keys (prefix `wam.`):
    wam.format       "1"                    layout version
    wam.graph        "full" | "action"      full: action + next_frame; action: action only
                     | "propose" | "imagine" | "frame"  the planner's graphs (spec.extra["planner"] holds their constants)
    wam.precision    "fp32" | "fp16"        fp16 graphs keep fp32 inputs/outputs (casts inside)
    wam.spec         JSON PolicySpec        joint names, image size, K, N, control rate, camera encoding, robot
    wam.config       JSON WamConfig         the full model config (includes the instruction vocabulary)
    wam.normaliser   JSON {name: list}      normaliser statistics baked into the graph (for reference/debugging)
    wam.source       JSON                   checkpoint path + sha256 + export time, parity figures

    spec = PolicySpec.from_config(cfg.to_dict(), camera_encoding="rgb8")
    props = build_metadata(spec, cfg.to_dict(), normaliser, graph="full", precision="fp32")
    spec, meta = read_metadata(onnx_model_or_path)       # ValueError when keys are missing or malformed

Pure python + json (onnx only to read metadata): never imports rclpy or torch. Export writes this contract, the runtime
reads it; neither imports the other.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wam_ros.fileio import atomic_write_text, sha256_file

CHECKPOINT = "model.pt"
MANIFEST = "manifest.json"
EXPORT_REPORT = "export.json"
GRAPHS = ("full", "action")
PRECISIONS = ("fp32", "fp16")
INPUTS = ("frames", "joint_pos", "tokens")
OUTPUTS_FULL = ("action", "next_frame")
OUTPUTS_ACTION = ("action",)
TEXT_INPUT = (
    "text_emb"  # the instruction input of a model with a pretrained text encoder, instead of "tokens"
)
INPUTS_TEXT = ("frames", "joint_pos", TEXT_INPUT)
INPUT_DTYPES = {"frames": "uint8", "joint_pos": "float32", "tokens": "int64", TEXT_INPUT: "float32"}
FRONT = "front"  # the camera of a single-camera model
CAMERA_INPUT_PREFIX = (
    "frames_"  # + camera name: the input of a camera after the first (dtype that of "frames")
)
TEXT_ENCODER = "text_encoder.onnx"  # the frozen pretrained instruction encoder of such a model
TEXT_TOKENIZER = "tokenizer.json"  # its tokenizer (the `tokenizers` library's file)
TEXT_ENCODER_FILES = (TEXT_ENCODER, TEXT_TOKENIZER)
# the imagining model's planner graphs (issue 16); names distinct from GRAPHS so no file or metadata can be mistaken
PLANNER_GRAPHS = ("propose", "imagine", "frame")
REQUIRED_PLANNER = ("propose", "imagine")  # "frame" came later: a directory without it still plans
PLANNER_INPUTS = {
    "propose": INPUTS,
    "imagine": ("context", "tokens", "joint_pos", "chunks", "horizon"),
    "frame": (*INPUTS, "chunks", "horizon"),
}
PLANNER_OUTPUTS = {
    "propose": ("proposals", "probs", "context"),
    "imagine": ("critic", "joints"),
    "frame": ("frame",),
}


def uses_text_encoder(config: dict[str, Any]) -> bool:
    """Whether a model config (WamConfig fields) reads instructions through a pretrained text encoder."""
    return str(config.get("instruction_encoder", "words")) != "words"


def camera_input(camera: str, first: bool) -> str:
    """The graph input of one camera: `frames` for the first (the predicted one), `frames_<camera>` for another."""
    return "frames" if first else f"{CAMERA_INPUT_PREFIX}{camera}"


def camera_inputs(config: dict[str, Any]) -> tuple[str, ...]:
    """The extra camera inputs of a model config: `frames_<camera>` for every camera after the first (none for a
    single-camera model, or a config from before cameras existed)."""
    cameras = config.get("cameras") or [FRONT]
    return tuple(camera_input(c, False) for c in cameras[1:])


def policy_inputs(config: dict[str, Any]) -> tuple[str, ...]:
    """The policy graphs' input names for a model config: INPUTS, or INPUTS_TEXT with a pretrained text encoder,
    then the extra camera inputs (camera_inputs)."""
    return (INPUTS_TEXT if uses_text_encoder(config) else INPUTS) + camera_inputs(config)


def planner_supported(config: dict[str, Any]) -> bool:
    """Whether the planner graphs exist for a model config: an imagining model with one camera (the planner's
    graphs take one `frames` input; a several-camera model's imagination runs on torch only)."""
    return bool(config.get("imagine")) and not camera_inputs(config)


def planner_inputs(graph: str, config: dict[str, Any]) -> tuple[str, ...]:
    """A planner graph's input names for a model config (PLANNER_INPUTS, `tokens` -> `text_emb` with a text encoder)."""
    names = PLANNER_INPUTS[graph]
    return tuple(TEXT_INPUT if n == "tokens" else n for n in names) if uses_text_encoder(config) else names


def onnx_name(graph: str, precision: str = "fp32") -> str:
    """File name of one exported graph inside a model directory, e.g. wam_full.onnx, wam_action_fp16.onnx."""
    if graph not in GRAPHS or precision not in PRECISIONS:
        raise ValueError(
            f"graph must be one of {GRAPHS} and precision one of {PRECISIONS}, got {graph!r}, {precision!r}"
        )
    return f"wam_{graph}{'_fp16' if precision == 'fp16' else ''}.onnx"


def planner_onnx_name(graph: str, precision: str = "fp32") -> str:
    """File name of one planner graph, e.g. wam_plan_propose.onnx, wam_plan_imagine_fp16.onnx, wam_plan_frame.onnx."""
    if graph not in PLANNER_GRAPHS or precision not in PRECISIONS:
        raise ValueError(
            f"planner graph must be one of {PLANNER_GRAPHS} and precision one of {PRECISIONS}, "
            f"got {graph!r}, {precision!r}"
        )
    return f"wam_plan_{graph}{'_fp16' if precision == 'fp16' else ''}.onnx"


def engine_name(graph: str) -> str:
    """File name of a TensorRT engine (always fp16) inside a model directory."""
    if graph not in GRAPHS:
        raise ValueError(f"graph must be one of {GRAPHS}, got {graph!r}")
    return f"wam_{graph}_fp16.engine"


def sidecar_path(engine_path: str | Path) -> Path:
    """The engine's metadata file (a TensorRT engine carries no metadata of ours)."""
    return Path(str(engine_path) + ".json")


def output_names(graph: str) -> tuple[str, ...]:
    return OUTPUTS_FULL if graph == "full" else OUTPUTS_ACTION


def weight_files(model_dir: str | Path) -> list[Path]:
    """Every weight file of the contract present in `model_dir` (checkpoint, ONNX graphs, engines)."""
    model_dir = Path(model_dir)
    names = (
        [CHECKPOINT]
        + [onnx_name(g, p) for g in GRAPHS for p in PRECISIONS]
        + [planner_onnx_name(g, p) for g in PLANNER_GRAPHS for p in PRECISIONS]
        + [engine_name(g) for g in GRAPHS]
        + list(TEXT_ENCODER_FILES)
    )
    return [model_dir / n for n in names if (model_dir / n).is_file()]


class IntegrityError(ValueError):
    """A weight file does not match the hash recorded when it was written (damaged or replaced)."""


def write_manifest(model_dir: str | Path) -> Path:
    """Record sha256 and size of every weight file in `model_dir` (MANIFEST). Called by `wam export`."""
    model_dir = Path(model_dir)
    files = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in weight_files(model_dir)}
    return atomic_write_text(model_dir / MANIFEST, json.dumps({"format": 1, "files": files}, indent=1) + "\n")


def add_to_manifest(model_dir: str | Path, paths: list[Path]) -> Path:
    """Record (or re-record) just `paths` in the directory's manifest, e.g. an engine built after the export."""
    model_dir = Path(model_dir)
    files = read_manifest(model_dir) or {}
    for p in paths:
        files[Path(p).name] = {"sha256": sha256_file(p), "bytes": Path(p).stat().st_size}
    return atomic_write_text(model_dir / MANIFEST, json.dumps({"format": 1, "files": files}, indent=1) + "\n")


def read_manifest(model_dir: str | Path) -> dict[str, dict[str, Any]] | None:
    """{file name: {"sha256", "bytes"}} from the directory's manifest, or None when it has none."""
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        files = json.loads(path.read_text())["files"]
        if not isinstance(files, dict):
            raise TypeError("files is not an object")
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise IntegrityError(
            f"{path} is damaged ({exc}); rewrite it with `wam export {Path(model_dir) / CHECKPOINT} --out {model_dir}`"
        ) from exc
    return files


def verify_file(path: str | Path) -> bool:
    """Check one weight file against the manifest beside it. True when verified, False when the directory has no
    manifest (or the manifest does not list the file: it was added after the export). Raises IntegrityError naming
    the file and the command that rebuilds it when the bytes differ."""
    path = Path(path)
    files = read_manifest(path.parent)
    if files is None or path.name not in files:
        return False
    want = files[path.name]
    size = path.stat().st_size
    if size != want.get("bytes") or sha256_file(path) != want.get("sha256"):
        rebuild = (
            "restore it from the release or retrain"
            if path.name == CHECKPOINT
            else f"rebuild it with `wam export {path.parent / CHECKPOINT} --out {path.parent}`"
        )
        raise IntegrityError(
            f"{path} does not match the sha256 recorded in {path.parent / MANIFEST} when it was written "
            f"({size} bytes, {want.get('bytes')} recorded): the file is damaged or was replaced; {rebuild}"
        )
    return True


FORMAT_VERSION = "1"
KEYS = ("wam.format", "wam.graph", "wam.precision", "wam.spec", "wam.config", "wam.normaliser", "wam.source")
REQUIRED = ("wam.format", "wam.graph", "wam.precision", "wam.spec", "wam.config")
CAMERA_ENCODING = "rgb8"  # what every graph expects after preprocessing: RGB, channels first, 0..255


@dataclass
class PolicySpec:
    """What a consumer must know to feed a policy and use its outputs.

    Args:
        joint_names: J names, the order of joint_pos and of every action row.
        image_size: (H, W) of the frames the network sees (inputs are resized to it).
        k_frames: K frames stacked per prediction, oldest first.
        chunk: N actions per prediction (absolute joint targets, one control step apart).
        control_hz: the control rate the model was trained at.
        camera_encoding: the colour order the network sees after preprocessing (always rgb8).
        max_tokens: L, the instruction length in tokens.
        robot: robot profile name (config/robots/<robot>.yaml).
        graph: "full" (action + next frame) or "action" (action only); a planner graph's spec says "propose",
            "imagine" or "frame" (PLANNER_GRAPHS).
        text_dim: 0 when the instruction input is word ids `tokens` int64 (B, L); E when it is a pretrained text
            encoder's embedding `text_emb` float32 (B, L, E) (see instruction_input).
        cameras: the camera names, in the order of the model's inputs: the first is `frames` (and the one the
            next frame shows), each other `frames_<camera>`. ["front"] for a single-camera model.
    """

    joint_names: list[str]
    image_size: tuple[int, int]
    k_frames: int
    chunk: int
    control_hz: float
    camera_encoding: str = CAMERA_ENCODING
    max_tokens: int = 12
    robot: str = "panda"
    graph: str = "full"
    text_dim: int = 0
    cameras: list[str] = field(default_factory=lambda: [FRONT])
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.joint_names = [str(n) for n in self.joint_names]
        if (
            not isinstance(self.cameras, list | tuple)
            or not self.cameras
            or not all(isinstance(c, str) and c for c in self.cameras)
            or len(set(self.cameras)) != len(self.cameras)
        ):
            raise ValueError(f"PolicySpec.cameras must be distinct camera names, got {self.cameras!r}")
        self.cameras = list(self.cameras)
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        if not self.joint_names:
            raise ValueError("PolicySpec.joint_names must not be empty")
        if min(self.image_size) < 1:
            raise ValueError(f"PolicySpec.image_size must be positive (H, W), got {self.image_size}")
        for name in ("k_frames", "chunk", "max_tokens"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"PolicySpec.{name} must be >= 1, got {getattr(self, name)!r}")
        if not float(self.control_hz) > 0:
            raise ValueError(f"PolicySpec.control_hz must be > 0, got {self.control_hz!r}")
        if self.graph not in GRAPHS + PLANNER_GRAPHS:
            raise ValueError(f"PolicySpec.graph must be one of {GRAPHS + PLANNER_GRAPHS}, got {self.graph!r}")
        if isinstance(self.text_dim, bool) or not isinstance(self.text_dim, int) or self.text_dim < 0:
            raise ValueError(f"PolicySpec.text_dim must be an int >= 0, got {self.text_dim!r}")

    def instruction_input(self) -> tuple[str, str, tuple[int, ...]]:
        """(input name, dtype name, shape without the batch) of the instruction input: ("tokens", "int64", (L,))
        or, with a pretrained text encoder, ("text_emb", "float32", (L, E))."""
        if self.text_dim:
            return TEXT_INPUT, "float32", (self.max_tokens, self.text_dim)
        return "tokens", "int64", (self.max_tokens,)

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @classmethod
    def from_config(cls, cfg: dict[str, Any], graph: str = "full", **extra: Any) -> PolicySpec:
        """The spec of a model with WamConfig fields `cfg` (a dict, e.g. `cfg.to_dict()`)."""
        try:
            size = int(cfg["image_size"])
            return cls(
                joint_names=list(cfg["joint_names"]),
                image_size=(size, size),
                k_frames=int(cfg["k_frames"]),
                chunk=int(cfg["chunk"]),
                control_hz=float(cfg["control_hz"]),
                max_tokens=int(cfg.get("max_tokens", 12)),
                robot=str(cfg.get("robot", "panda")),
                graph=graph,
                text_dim=int(cfg.get("text_dim", 0)) if uses_text_encoder(cfg) else 0,
                cameras=list(cfg.get("cameras") or [FRONT]),
                extra=dict(extra),
            )
        except KeyError as exc:
            raise ValueError(
                f"model config lacks {exc.args[0]!r}; expected WamConfig fields "
                "image_size, joint_names, k_frames, chunk, control_hz"
            ) from exc

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["image_size"] = list(self.image_size)
        if not self.text_dim:  # word ids: the spec of every model before text encoders, unchanged
            del out["text_dim"]
        if self.cameras == [FRONT]:  # one camera: the spec of every model before cameras, unchanged
            del out["cameras"]
        return out

    @property
    def camera_inputs(self) -> tuple[str, ...]:
        """The graph inputs of the cameras, in spec.cameras order: ("frames", "frames_<camera>", ...)."""
        return tuple(camera_input(c, i == 0) for i, c in enumerate(self.cameras))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolicySpec:
        known = set(cls.__dataclass_fields__)
        bad = sorted(set(data) - known)
        if bad:
            raise ValueError(f"policy spec has unknown field(s) {bad}; known: {sorted(known)}")
        return cls(**data)


def build_metadata(
    spec: PolicySpec,
    config: dict[str, Any],
    normaliser: dict[str, Any] | None = None,
    graph: str = "full",
    precision: str = "fp32",
    source: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The `wam.*` metadata strings for one exported graph."""
    if precision not in ("fp32", "fp16"):
        raise ValueError(f"precision must be 'fp32' or 'fp16', got {precision!r}")
    spec_d = spec.to_dict()
    spec_d["graph"] = graph
    return {
        "wam.format": FORMAT_VERSION,
        "wam.graph": graph,
        "wam.precision": precision,
        "wam.spec": json.dumps(spec_d),
        "wam.config": json.dumps(config),
        "wam.normaliser": json.dumps(normaliser or {}),
        "wam.source": json.dumps(source or {}),
    }


def read_metadata_props(props: dict[str, str], where: str = "model") -> tuple[PolicySpec, dict[str, Any]]:
    """Parse `wam.*` metadata strings -> (spec, {"graph", "precision", "config", "normaliser", "source"})."""
    missing = [k for k in REQUIRED if k not in props]
    if missing:
        raise ValueError(
            f"{where} has no wam_ros metadata {missing}: expected a graph written by `wam export` "
            f"(metadata keys {list(REQUIRED)}), found keys {sorted(props)}"
        )
    if props["wam.format"] != FORMAT_VERSION:
        raise ValueError(
            f"{where}: metadata format {props['wam.format']!r} is not supported (expected "
            f"{FORMAT_VERSION!r}); re-export with this version of wam_ros"
        )
    try:
        parsed = {
            k.split(".", 1)[1]: json.loads(props[k])
            for k in ("wam.spec", "wam.config", "wam.normaliser", "wam.source")
            if k in props
        }
        spec = PolicySpec.from_dict(parsed.pop("spec"))
    except (json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"{where}: wam_ros metadata is not valid JSON ({exc})") from exc
    meta = {"graph": props["wam.graph"], "precision": props["wam.precision"], **parsed}
    if meta["graph"] != spec.graph:
        raise ValueError(
            f"{where}: metadata graph {meta['graph']!r} disagrees with spec graph {spec.graph!r}"
        )
    return spec, meta


def read_metadata(model: Any) -> tuple[PolicySpec, dict[str, Any]]:
    """Read the metadata of an onnx.ModelProto or an .onnx path (loads without weights where possible)."""
    import onnx

    where = "model"
    if isinstance(model, (str, Path)):
        where = str(model)
        try:
            model = onnx.load(str(model), load_external_data=False)
        except Exception as exc:  # protobuf raises DecodeError and friends
            raise ValueError(f"cannot read ONNX file {where}: {exc}") from exc
    return read_metadata_props({p.key: p.value for p in model.metadata_props}, where)


def write_engine_sidecar(engine_path: str | Path, props: dict[str, str]) -> Path:
    """A TensorRT engine carries no metadata of ours: store it beside the engine as `<engine>.json`."""
    return atomic_write_text(sidecar_path(engine_path), json.dumps(props, indent=1))


def read_engine_sidecar(engine_path: str | Path) -> tuple[PolicySpec, dict[str, Any]]:
    side = sidecar_path(engine_path)
    if not side.is_file():
        raise ValueError(
            f"TensorRT engine {engine_path} has no metadata file {side.name}: "
            "build engines with `wam export --tensorrt`"
        )
    try:
        props = json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{side} is not valid JSON ({exc})") from exc
    return read_metadata_props(props, str(engine_path))
