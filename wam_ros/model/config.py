"""Configuration of the joint World Action Model: one validated dataclass with named presets.

    cfg = WamConfig.preset("tiny")                 # seconds-fast, for tests
    cfg = WamConfig.preset("small", n_layers=2)    # the shipped model's size; keyword overrides are validated too

The config travels inside every checkpoint (`dataclasses.asdict`), so a checkpoint alone rebuilds its network.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from wam_ros.robot import CAMERA_NAME

PANDA_JOINTS = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_gripper"]

# Words the instruction vocabulary always knows; training adds the words of its episodes' instructions.
BASE_VOCAB = [
    "reach",
    "push",
    "touch",
    "move",
    "go",
    "to",
    "the",
    "a",
    "an",
    "of",
    "and",
    "onto",
    "into",
    "toward",
    "towards",
    "target",
    "cube",
    "block",
    "object",
    "ball",
    "goal",
    "zone",
    "area",
    "marker",
    "region",
    "red",
    "green",
    "blue",
    "yellow",
    "purple",
    "orange",
    "white",
    "black",
    "cyan",
    "magenta",
    "left",
    "right",
    "front",
    "back",
    "up",
    "down",
    "pick",
    "place",
    "put",
    "on",
]
PAD, UNK = "<pad>", "<unk>"
WORDS = "words"  # the instruction encoder of every model before issue 17 item 2: the learned word vocabulary
TEXT_ENCODER_KINDS = ("hf", "onnx")  # a frozen pretrained text encoder: "hf:<name or dir>" | "onnx:<dir>"
CONV_NORMS = ("group", "batch", "none")
FRAME_DECODERS = ("deconv", "shuffle")
FRONT = "front"  # the camera of every single-camera model (an episode's `frames`)


@dataclass
class WamConfig:
    """Hyper-parameters of `WorldActionModel`.

    Args:
        image_size: side of the square RGB input/output frames (pixels); must be divisible by 8.
        k_frames: number of past frames stacked as input (oldest first).
        num_joints: J, size of the joint-position vector (and of one action).
        joint_names: the J joint names, in the order of every joint vector.
        chunk: N, actions predicted per forward pass (absolute targets for steps t .. t+N-1).
        control_hz: control rate the model was trained at (actions are one control step apart).
        d_model: transformer width.
        n_layers: transformer blocks.
        n_heads: attention heads (must divide d_model).
        mlp_ratio: MLP hidden size / d_model.
        enc_channels: channels of the three stride-2 conv stages (image_size -> image_size / 8).
        dropout: dropout in the transformer (0 for the small data sets we train on).
        max_tokens: L, instruction length in tokens (padded / truncated).
        vocab: instruction words; index 0 is padding, 1 is unknown (read only with instruction_encoder "words").
        instruction_encoder: how the instruction becomes the L instruction tokens. "words" (the default, and every
            checkpoint from before the field): word ids over `vocab`, a learned embedding. "hf:<name or local dir>"
            (transformers, local files only: nothing is downloaded) or "onnx:<dir>" (text_encoder.onnx +
            tokenizer.json): a FROZEN pretrained encoder gives a per-token embedding (L, text_dim), computed once
            per instruction outside the network (wam_ros.model.text_encoder); the network normalises it and
            projects it into d_model with a learned Linear. Padding rows of the embedding are all zeros.
        text_dim: the pretrained encoder's hidden size (0 with "words"); set by training from the encoder.
        frame_residual: predict the next frame as a residual over the last input frame.
        conv_norm: normalisation in the conv encoder/decoder: "group" (GroupNorm), "batch" (BatchNorm: at inference
            it is a per-channel affine that onnxruntime/TensorRT fold into the preceding conv, so each conv stage
            becomes one fused Conv+ReLU kernel) or "none".
        film: condition every conv stage on the instruction (FiLM: per-channel scale and shift from the mean word
            embedding), so the image features can single out the named object before the transformer.
        frame_decoder: how the frame decoder reaches full resolution. "deconv": a third transposed-conv U-Net stage at
            H x W with the stacked input frames as its skip (the first shipped models). "shuffle": the decoder stops at
            H/2 x W/2 and one 3x3 conv predicts 4 sub-pixels per output pixel (PixelShuffle / ONNX DepthToSpace):
            no convolution runs at full resolution, which was the costliest part of both a training step and an
            onnxruntime call. Checkpoints from before this field existed load as "deconv".
        modes: M, components of the action head (issue 16: multimodal proposals). 1 is the single-chunk head of
            the first models. With M > 1 the head returns M chunks and M mode logits, trained winner-take-all (the
            component nearest the demonstration learns it, the logits learn which one won); the policy alone
            follows the most probable component and a planner draws candidates from all of them.
        imagine: the action-conditioned imagination (issue 16): a second small transformer that reads the trunk's
            image, joint and word tokens plus any candidate chunk and predicts, for a horizon h in 0..N, the frame
            and the joint positions after the first h actions, and a progress critic on that imagined state
            (success probability, steps to go, distance to the goal). The next frame of forward() is then the
            imagination of the proposed chunk at h=1: one pass gives the chunk and its imagined future together.
        imag_layers: transformer blocks of the imagination.
        robot: robot profile name the joints belong to.
        cameras: the M named cameras the model sees (issue 19), each through the shared conv encoder plus a
            learned camera embedding (image tokens per camera). The first is the one the frame decoder and the
            imagination predict (an episode's `frames`, e.g. "front"); the others are read from the episodes'
            `<name>_frames` arrays and come as extra graph inputs `frames_<name>`. ["front"] (the default, and every
            checkpoint from before the field) is the single-camera model, unchanged.
    """

    # -- observation / action spaces
    image_size: int = 64
    k_frames: int = 2
    num_joints: int = 8
    joint_names: list[str] = field(default_factory=lambda: list(PANDA_JOINTS))
    chunk: int = 8
    control_hz: float = 10.0
    # -- network
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    mlp_ratio: int = 2
    enc_channels: tuple[int, int, int] = (32, 64, 96)
    dropout: float = 0.0
    # -- instruction encoder (learned vocabulary embedding; nothing downloaded at run time)
    max_tokens: int = 12
    vocab: list[str] = field(default_factory=lambda: [PAD, UNK, *BASE_VOCAB])
    instruction_encoder: str = (
        WORDS  # or "hf:<name or dir>" | "onnx:<dir>" (a frozen pretrained text encoder)
    )
    text_dim: int = 0
    # -- heads
    frame_residual: bool = True
    conv_norm: str = "group"
    film: bool = False
    frame_decoder: str = "deconv"
    modes: int = 1
    imagine: bool = False
    imag_layers: int = 2
    robot: str = "panda"
    # -- cameras (issue 19): the first is predicted; the others are extra inputs
    cameras: list[str] = field(default_factory=lambda: [FRONT])

    def __post_init__(self) -> None:
        self.enc_channels = tuple(int(c) for c in self.enc_channels)  # JSON round trips give lists
        self.joint_names = list(self.joint_names)
        self.vocab = list(self.vocab)
        self.cameras = check_cameras(self.cameras, "WamConfig.cameras")
        positive = (
            "image_size",
            "k_frames",
            "num_joints",
            "chunk",
            "d_model",
            "n_layers",
            "n_heads",
            "mlp_ratio",
            "max_tokens",
            "modes",
            "imag_layers",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"WamConfig.{name} must be a positive int, got {value!r}")
        if self.image_size % 8:
            raise ValueError(f"WamConfig.image_size must be divisible by 8, got {self.image_size}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"WamConfig.d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )
        if len(self.enc_channels) != 3 or min(self.enc_channels) < 1:
            raise ValueError(f"WamConfig.enc_channels must be 3 positive ints, got {self.enc_channels!r}")
        if len(self.joint_names) != self.num_joints:
            raise ValueError(
                f"WamConfig.joint_names has {len(self.joint_names)} names, num_joints is {self.num_joints}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"WamConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if not self.control_hz > 0:
            raise ValueError(f"WamConfig.control_hz must be > 0, got {self.control_hz!r}")
        if self.vocab[:2] != [PAD, UNK]:
            raise ValueError(f"WamConfig.vocab must start with {[PAD, UNK]}, got {self.vocab[:2]}")
        if self.conv_norm not in CONV_NORMS:
            raise ValueError(f"WamConfig.conv_norm must be one of {CONV_NORMS}, got {self.conv_norm!r}")
        if self.frame_decoder not in FRAME_DECODERS:
            raise ValueError(
                f"WamConfig.frame_decoder must be one of {FRAME_DECODERS}, got {self.frame_decoder!r}"
            )
        if len(set(self.vocab)) != len(self.vocab):
            raise ValueError("WamConfig.vocab has duplicate words")
        kind, _ = parse_instruction_encoder(self.instruction_encoder)
        if isinstance(self.text_dim, bool) or not isinstance(self.text_dim, int) or self.text_dim < 0:
            raise ValueError(f"WamConfig.text_dim must be an int >= 0, got {self.text_dim!r}")
        if kind == WORDS and self.text_dim:
            raise ValueError(
                f"WamConfig.text_dim is {self.text_dim} but instruction_encoder is {WORDS!r} (word ids have no "
                "embedding size); set text_dim only with a pretrained encoder (hf:... / onnx:...)"
            )
        if kind != WORDS and not self.text_dim:
            raise ValueError(
                f"WamConfig.instruction_encoder {self.instruction_encoder!r} needs text_dim, the encoder's hidden "
                "size (training sets it from the encoder)"
            )

    @property
    def uses_text_encoder(self) -> bool:
        """True when the instruction input is a pretrained encoder's embedding (not word ids)."""
        return self.instruction_encoder != WORDS

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> WamConfig:
        """A named preset ("tiny" | "small" | "small96" | "small128"), with optional field overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown WamConfig preset {name!r}; expected one of {sorted(PRESETS)}")
        known = {f.name for f in fields(cls)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise ValueError(f"unknown WamConfig field(s) {bad}; known: {sorted(known)}")
        return replace(cls(**PRESETS[name]), **overrides)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WamConfig:
        known = {f.name for f in fields(cls)}
        bad = sorted(set(data) - known)
        if bad:
            raise ValueError(f"config has unknown field(s) {bad}; known: {sorted(known)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["enc_channels"] = list(self.enc_channels)
        return out


def check_cameras(cameras: object, where: str = "cameras") -> list[str]:
    """A validated list of camera names (non-empty, unique, each matching CAMERA_NAME); ValueError naming `where`."""
    if isinstance(cameras, str) or not isinstance(cameras, list | tuple) or not cameras:
        raise ValueError(f"{where} must be a non-empty list of camera names, got {cameras!r}")
    bad = [c for c in cameras if not isinstance(c, str) or not CAMERA_NAME.fullmatch(c)]
    if bad:
        raise ValueError(
            f"{where}: camera names must be lower-case identifiers (a-z, 0-9, _; up to 32 characters), got {bad!r}"
        )
    if len(set(cameras)) != len(cameras):
        raise ValueError(f"{where} names a camera twice: {list(cameras)}")
    return list(cameras)


def parse_instruction_encoder(spec: str) -> tuple[str, str]:
    """("words", "") | ("hf", name or dir) | ("onnx", dir) for a WamConfig.instruction_encoder string; ValueError
    naming the accepted forms otherwise."""
    if spec == WORDS:
        return WORDS, ""
    kind, sep, arg = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if not sep or kind not in TEXT_ENCODER_KINDS or not arg.strip():
        raise ValueError(
            f"instruction_encoder must be {WORDS!r}, 'hf:<name or local dir>' or 'onnx:<dir>', got {spec!r}"
        )
    return kind, arg


PRESETS: dict[str, dict[str, Any]] = {
    # everything shrunk: the real pipeline (train -> dream -> eval -> export) runs in seconds
    "tiny": dict(
        d_model=32,
        n_layers=1,
        n_heads=2,
        mlp_ratio=2,
        enc_channels=(8, 16, 32),
        film=True,
        conv_norm="batch",
        frame_decoder="shuffle",
    ),
    # the shipped model: ~0.6M parameters (sized for 30 min of training on 2 CPU cores). BatchNorm in the conv
    # stages: cheaper than GroupNorm to train on the CPU, and free at inference (folded into the convs by
    # onnxruntime / TensorRT). Checkpoints from before conv_norm existed load as "group" (the field's default).
    # The sub-pixel frame decoder ("shuffle", session 4): 1.37x training steps per minute, 0.86x the time per
    # onnxruntime call; checkpoints from before it existed load as "deconv".
    "small": dict(
        d_model=128,
        n_layers=3,
        n_heads=4,
        mlp_ratio=2,
        enc_channels=(16, 32, 64),
        film=True,
        conv_norm="batch",
        frame_decoder="shuffle",
    ),
}
# The imagining planner's model (issue 16): the small network with a 4-component action head and the
# action-conditioned imagination + progress critic.
PRESETS["small_imagine"] = {**PRESETS["small"], "modes": 4, "imagine": True, "imag_layers": 2}
PRESETS["tiny_imagine"] = {**PRESETS["tiny"], "modes": 3, "imagine": True, "imag_layers": 1}
# Image-size presets (issue 19): the small network at 96x96 and 128x128 (`small` is 64x64). Measured side by side
# (benchmarks/image_sizes.py, RESULTS.md "image size presets"): a training step costs ~1.6x / ~2.3x the 64 one and an
# onnxruntime call ~2.1x / ~3.9x, for 2.25x / 4x the pixels.
PRESETS["small96"] = {**PRESETS["small"], "image_size": 96}
PRESETS["small128"] = {**PRESETS["small"], "image_size": 128}
