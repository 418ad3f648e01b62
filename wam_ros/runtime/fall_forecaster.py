"""The fall forecaster at run time: onnxruntime only (no torch), streaming or batched, with the alarm rule.

    fc = FallForecasterRuntime.load("models/fall_forecaster_laikago", threads=1)
    stream = fc.stream()                      # ring buffer of the last `window` samples (padded at start)
    out = stream.push(sample)                 # sample float32 (10 + 3J,) in fc.input_columns order
    out.p_fall_1s, out.p_fall_0_5s, out.time_to_fall_s, out.alarm
    p05, p1, ttf = fc.predict(windows)        # batched: windows float32 (B, W, 10 + 3J)

The model folder (written by wam_ros.export.forecaster_onnx):
    fall_forecaster.onnx    input `window` (B, W, 10 + 3J) float32 raw readings; outputs `p_fall_0_5s`,
                            `p_fall_1s`, `time_to_fall_s` (B,)
    fall_forecaster.json    the contract: window, rate_hz, input_columns, joint_names, robot, the alarm rule
                            (signal, threshold, consecutive), sha256 of the .onnx (a stale or damaged graph is refused)
    fall_forecaster.pt      the torch checkpoint it was exported from (training and parity only)
    protective_pose.json    optional (`wam campaign protect`): joint_names, targets (rad), gain_scale of the
                            protective posture the robot takes when the alarm fires, and how it was measured

The alarm rule: the alarm is on at a sample when the rule's signal has been at or above `threshold` for the last
`consecutive` samples (over the samples available at an episode's start). `debounced()` is the same rule over whole
sequences, for evaluation. Core module: never imports rclpy or torch.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wam_ros.fileio import sha256_file

ONNX_FILE = "fall_forecaster.onnx"
SPEC_FILE = "fall_forecaster.json"
TORCH_FILE = "fall_forecaster.pt"
PROTECT_FILE = "protective_pose.json"
INPUT = "window"
OUTPUTS = ("p_fall_0_5s", "p_fall_1s", "time_to_fall_s")
SIGNALS = OUTPUTS[:2]


class ForecasterError(ValueError):
    """A forecaster folder is missing, damaged or inconsistent."""


@dataclass(frozen=True)
class AlarmRule:
    """Alarm when `signal` >= `threshold` for the last `consecutive` samples."""

    threshold: float
    consecutive: int = 1
    signal: str = "p_fall_1s"

    def __post_init__(self) -> None:
        if not np.isfinite(self.threshold):
            raise ValueError(f"AlarmRule.threshold must be finite, got {self.threshold}")
        if not 1 <= self.consecutive <= 100:
            raise ValueError(f"AlarmRule.consecutive must be in [1, 100], got {self.consecutive}")


def debounced(score: np.ndarray, starts: np.ndarray, consecutive: int) -> np.ndarray:
    """Minimum of `score` over the last `consecutive` samples of the same episode (fewer at an episode's start):
    `debounced(...) >= threshold` is the alarm of AlarmRule(threshold, consecutive) at every sample.

    score (N,) concatenated episodes; starts (E,) first sample of each episode."""
    d = np.asarray(score, dtype=np.float64).copy()
    first = np.zeros(len(d), dtype=bool)
    first[np.asarray(starts, dtype=np.int64)] = True
    prev = np.asarray(score, dtype=np.float64)
    blocked = first.copy()  # no earlier sample of the same episode at this lag
    for _ in range(1, consecutive):
        prev = np.r_[prev[:1], prev[:-1]]
        d = np.where(blocked, d, np.minimum(d, prev))
        blocked = blocked | np.r_[blocked[:1], blocked[:-1]]
    return d


class AlarmState:
    """The alarm rule over a stream of signal values."""

    def __init__(self, rule: AlarmRule) -> None:
        self.rule = rule
        self.recent: deque[float] = deque(maxlen=rule.consecutive)

    def update(self, value: float) -> bool:
        self.recent.append(float(value))
        return min(self.recent) >= self.rule.threshold

    def reset(self) -> None:
        self.recent.clear()


@dataclass
class Forecast:
    p_fall_0_5s: float
    p_fall_1s: float
    time_to_fall_s: float
    alarm: bool

    @property
    def risk(self) -> float:
        return self.p_fall_1s


class FallForecasterRuntime:
    """One forecaster graph on onnxruntime (CPU)."""

    def __init__(self, onnx_path: str | Path, spec: dict[str, Any], threads: int = 1) -> None:
        import onnxruntime as ort

        self.spec = spec
        self.window = int(spec["window"])
        self.rate_hz = float(spec["rate_hz"])
        self.input_columns = list(spec["input_columns"])
        self.joint_names = list(spec["joint_names"])
        self.rule = AlarmRule(**spec["alarm"])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for a damaged file
            raise ForecasterError(f"{onnx_path}: not a loadable ONNX graph ({exc})") from exc
        got = [i.name for i in self.session.get_inputs()]
        outs = [o.name for o in self.session.get_outputs()]
        if got != [INPUT] or outs != list(OUTPUTS):
            raise ForecasterError(
                f"{onnx_path}: inputs {got} / outputs {outs}, expected [{INPUT}] / {list(OUTPUTS)}"
            )
        self._feed = np.zeros((1, self.window, len(self.input_columns)), dtype=np.float32)

    @classmethod
    def load(cls, path: str | Path, threads: int = 1) -> FallForecasterRuntime:
        """A forecaster folder (or its .json); refuses a missing, damaged or stale graph with the reason."""
        path = Path(path)
        folder = path.parent if path.suffix == ".json" else path
        spec_path = folder / SPEC_FILE
        if not spec_path.is_file():
            raise ForecasterError(f"no fall forecaster in {folder}: {SPEC_FILE} not found")
        try:
            spec = json.loads(spec_path.read_text())
        except ValueError as exc:
            raise ForecasterError(f"{spec_path} is not valid JSON ({exc})") from exc
        missing = [
            k
            for k in ("window", "rate_hz", "input_columns", "joint_names", "alarm", "onnx_sha256")
            if k not in spec
        ]
        if missing:
            raise ForecasterError(f"{spec_path} lacks {missing}")
        onnx_path = folder / ONNX_FILE
        if not onnx_path.is_file():
            raise ForecasterError(f"{onnx_path} not found (re-export with `wam campaign train-forecaster`)")
        if sha256_file(onnx_path) != spec["onnx_sha256"]:
            raise ForecasterError(
                f"{onnx_path} does not match {SPEC_FILE} (sha256 differs): a stale or damaged graph"
            )
        return cls(onnx_path, spec, threads=threads)

    def predict(self, windows: np.ndarray, batch: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(B, W, C) float32 -> p_fall_0_5s, p_fall_1s, time_to_fall_s, each (B,)."""
        windows = np.asarray(windows, dtype=np.float32)
        if windows.ndim != 3 or windows.shape[1:] != (self.window, len(self.input_columns)):
            raise ValueError(
                f"windows must be (B, {self.window}, {len(self.input_columns)}), got {windows.shape}"
            )
        outs = [
            self.session.run(None, {INPUT: windows[i : i + batch]}) for i in range(0, len(windows), batch)
        ]
        return tuple(
            np.concatenate([o[k] for o in outs]) if outs else np.zeros(0, np.float32) for k in range(3)
        )

    def predict_one(self, window: np.ndarray) -> tuple[float, float, float]:
        """One (W, C) window at batch 1 (the streaming path)."""
        self._feed[0] = window
        p05, p1, ttf = self.session.run(None, {INPUT: self._feed})
        return float(p05[0]), float(p1[0]), float(ttf[0])

    def stream(self) -> ForecastStream:
        return ForecastStream(self)

    def describe(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "rate_hz": self.rate_hz,
            "alarm": asdict(self.rule),
            "joints": self.joint_names,
        }


class ForecastStream:
    """Samples in, one forecast per sample out: a ring buffer of the last `window` samples, padded with the first
    sample until full (as the training windows at an episode's start), and the alarm rule's state."""

    def __init__(self, fc: FallForecasterRuntime) -> None:
        self.fc = fc
        self.buf = np.zeros((fc.window, len(fc.input_columns)), dtype=np.float32)
        self.count = 0
        self.alarm = AlarmState(fc.rule)

    def reset(self) -> None:
        self.count = 0
        self.alarm.reset()

    def push(self, sample: np.ndarray) -> Forecast:
        sample = np.asarray(sample, dtype=np.float32)
        if self.count == 0:
            self.buf[:] = sample
        else:
            self.buf[:-1] = self.buf[1:]
            self.buf[-1] = sample
        self.count += 1
        p05, p1, ttf = self.fc.predict_one(self.buf)
        signal = p1 if self.fc.rule.signal == "p_fall_1s" else p05
        return Forecast(p05, p1, ttf, self.alarm.update(signal))


@dataclass(frozen=True)
class ProtectivePose:
    joint_names: list[str]
    targets: list[float]
    gain_scale: float = 1.0


def load_protective_pose(folder: str | Path) -> ProtectivePose | None:
    """The folder's protective posture, None if it has none; a damaged file is an error."""
    path = Path(folder) / PROTECT_FILE
    if not path.is_file():
        return None
    try:
        blob = json.loads(path.read_text())
        pose = ProtectivePose(
            list(blob["joint_names"]), [float(v) for v in blob["targets"]], float(blob.get("gain_scale", 1.0))
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ForecasterError(f"{path} is not a protective pose ({exc})") from exc
    if len(pose.targets) != len(pose.joint_names) or not all(np.isfinite(pose.targets)):
        raise ForecasterError(
            f"{path}: {len(pose.targets)} finite targets expected for {len(pose.joint_names)} joints"
        )
    return pose
