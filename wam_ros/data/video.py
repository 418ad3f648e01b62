"""MP4 video with PyAV, encoded as LeRobot encodes it: AV1 (libsvtav1) by default, H.264 (libx264) as an option.

    cfg = VideoEncoderConfig()                                  # libsvtav1, yuv420p, g=2, crf=30, preset 12
    with VideoWriter("cam.mp4", fps=10, width=64, height=64, cfg=cfg) as w:
        w.write(frames)                                         # uint8 (N, H, W, 3) RGB; frame i is shown at i/fps
    info = probe("cam.mp4")                                     # LeRobot's info.json `video.*` keys + frames, duration
    with VideoReader("cam.mp4") as r:
        times, frames = r.read(0.0, 1.0)                        # every frame shown in [0, 1] s, (n,), (n, H, W, 3)

The encoder settings are LeRobot's `VideoEncoderConfig` defaults (lerobot/configs/video.py): a keyframe every 2
frames (`g=2`) so that a random frame costs at most two decodes, constant rate factor 30, SVT-AV1 preset 12. Decoding
uses whatever decoder FFmpeg picks (libdav1d for AV1). Frame times are presentation timestamps in seconds
(`pts * time_base`), the clock LeRobot's loader matches data timestamps against.

SVT-AV1 prints a banner and warnings to stderr at its default log level; unless SVT_LOG is already set, the writer
sets it to 1 (errors only) before opening an AV1 encoder. Core module: PyAV + numpy only, never imports rclpy.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# encoder name -> the codec name a decoder reports (`stream.codec.canonical_name`, LeRobot's `video.codec`)
CODECS = {"libsvtav1": "av1", "h264": "h264"}
ALIASES = {"av1": "libsvtav1", "libx264": "h264"}
LIBSVTAV1_DEFAULT_PRESET = 12  # LeRobot's LIBSVTAV1_DEFAULT_PRESET (SVT-AV1 4.x maps it to its fastest, M11)


class VideoError(ValueError):
    """A video cannot be opened, decoded or written as asked."""


@dataclass(frozen=True)
class VideoEncoderConfig:
    """How frames are encoded. Field names follow LeRobot's VideoEncoderConfig, so `info()` reads as its info.json.

    Args:
        vcodec: "libsvtav1" (AV1, LeRobot's default) or "h264" (libx264); "av1" and "libx264" are accepted aliases.
        pix_fmt: pixel format of the stream; yuv420p (chroma at half resolution, what every player decodes) needs
            an even width and height.
        g: GOP size, frames between keyframes.
        crf: constant rate factor; lower is better quality and larger files (libsvtav1 0-63, h264 0-51).
        preset: speed/quality preset; None means 12 for libsvtav1 (LeRobot's default) and x264's own for h264.
    """

    vcodec: str = "libsvtav1"
    pix_fmt: str = "yuv420p"
    g: int = 2
    crf: int = 30
    preset: int | str | None = None
    extra_options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "vcodec", ALIASES.get(self.vcodec, self.vcodec))
        if self.vcodec not in CODECS:
            raise ValueError(f"vcodec {self.vcodec!r} is not supported; expected one of {sorted(CODECS)}")
        if self.preset is None and self.vcodec == "libsvtav1":
            object.__setattr__(self, "preset", LIBSVTAV1_DEFAULT_PRESET)
        top = 63 if self.vcodec == "libsvtav1" else 51
        if not 0 <= self.crf <= top:
            raise ValueError(f"crf must be in [0, {top}] for {self.vcodec}, got {self.crf}")
        if self.g < 1:
            raise ValueError(f"g (GOP size) must be >= 1, got {self.g}")

    @property
    def codec_name(self) -> str:
        """The name a decoder reports for this stream: "av1" or "h264"."""
        return CODECS[self.vcodec]

    def options(self) -> dict[str, str]:
        """FFmpeg codec options, as LeRobot's `get_codec_options(as_strings=True)` builds them."""
        opts = {"g": str(self.g), "crf": str(self.crf)}
        if self.preset is not None:
            opts["preset"] = str(self.preset)
        for k, v in self.extra_options.items():
            opts.setdefault(k, str(v))
        return opts

    def info(self) -> dict:
        """The encoder fields LeRobot records beside the stream's own in a video feature's info (`video.<field>`)."""
        d = asdict(self)
        d.pop("vcodec")  # the stream's codec name is recorded instead (video.codec)
        return {
            **{f"video.{k}": v for k, v in d.items()},
            "video.fast_decode": 0,
            "video.video_backend": "pyav",
        }


def _rate(fps: float) -> Fraction:
    if not fps > 0:
        raise VideoError(f"fps must be > 0, got {fps}")
    return Fraction(fps).limit_denominator(1001)  # 10 -> 10/1, 29.97 -> 30000/1001


class VideoWriter:
    """One MP4 file with one video stream; `write` appends RGB frames, frame i of the file is shown at i/fps."""

    def __init__(
        self, path: str | Path, fps: float, width: int, height: int, cfg: VideoEncoderConfig | None = None
    ) -> None:
        self.path, self.cfg = Path(path), cfg or VideoEncoderConfig()
        self.width, self.height, self.frames_written, self.bytes_written = int(width), int(height), 0, 0
        if self.cfg.pix_fmt == "yuv420p" and (self.width % 2 or self.height % 2):
            raise VideoError(
                f"{self.path}: yuv420p needs an even width and height, got {self.width}x{self.height}"
            )
        if self.cfg.vcodec == "libsvtav1":
            os.environ.setdefault("SVT_LOG", "1")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.path), "w")
        try:
            self._stream = self._container.add_stream(self.cfg.vcodec, _rate(fps), options=self.cfg.options())
            self._stream.width, self._stream.height = self.width, self.height
            self._stream.pix_fmt = self.cfg.pix_fmt
        except Exception:
            self._container.close()
            raise

    def write(self, frames: np.ndarray) -> None:
        """Append uint8 RGB frames, (N, H, W, 3) or one (H, W, 3)."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.dtype != np.uint8 or frames.shape[1:] != (self.height, self.width, 3):
            raise VideoError(
                f"{self.path}: frames must be uint8 (N, {self.height}, {self.width}, 3), "
                f"got {frames.dtype} {frames.shape}"
            )
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = self.frames_written  # in 1/fps units: the stream's codec time base
            self._mux(self._stream.encode(frame))
            self.frames_written += 1

    def _mux(self, packets: list) -> None:
        self.bytes_written += sum(p.size for p in packets)
        self._container.mux(packets)

    def close(self) -> None:
        if self._container is None:
            return
        try:
            self._mux(self._stream.encode(None))  # flush the encoder
        finally:
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def probe(path: str | Path) -> dict:
    """A video's stream facts under LeRobot's info.json names, plus `frames` (counted when the header has none)
    and `duration_s`. Raises VideoError for a missing file or one without a video stream."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"video file not found: {path}")
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise VideoError(f"{path}: no video stream")
            s = c.streams.video[0]
            frames = int(s.frames or 0) or sum(1 for pkt in c.demux(s) if pkt.size)
            duration = (
                float(s.duration * s.time_base) if s.duration else float(c.duration or 0) / av.time_base
            )
            return {
                "video.height": int(s.height),
                "video.width": int(s.width),
                "video.codec": s.codec.canonical_name,
                "video.pix_fmt": s.pix_fmt,
                "video.fps": int(s.base_rate) if s.base_rate else None,
                "video.channels": 3,
                "has_audio": bool(c.streams.audio),
                "frames": frames,
                "duration_s": duration,
            }
    except av.FFmpegError as exc:
        raise VideoError(f"{path}: cannot read video: {exc}") from exc


class VideoReader:
    """Reads frames by presentation time, forward from where the last read stopped (seeking back when asked for an
    earlier time), so reading the episodes stored one after another in a file decodes it once."""

    def __init__(self, path: str | Path, size: tuple[int, int] | None = None) -> None:
        """size: (width, height) to scale frames to (area interpolation); None keeps the stored size."""
        self.path, self.size = Path(path), size
        if not self.path.is_file():
            raise VideoError(f"video file not found: {self.path}")
        try:
            self._container = av.open(str(self.path))
        except av.FFmpegError as exc:
            raise VideoError(f"{self.path}: cannot open video: {exc}") from exc
        if not self._container.streams.video:
            self._container.close()
            raise VideoError(f"{self.path}: no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._frames = None  # the decode iterator
        self._held: tuple[float, np.ndarray] | None = (
            None  # a decoded frame past the last read, kept for the next
        )
        self._passed = -np.inf  # time of the last frame handed out or skipped (frames up to it are behind us)
        self.last_time = None  # time of the last frame decoded so far (None: nothing decoded yet)

    def _seek(self, t: float) -> None:
        self._container.seek(
            max(0, int(t / self._stream.time_base)), stream=self._stream, backward=True, any_frame=False
        )
        self._frames = self._container.decode(self._stream)
        self._held, self._passed = None, -np.inf

    def _next(self) -> tuple[float, np.ndarray] | None:
        try:
            for frame in self._frames:
                if frame.pts is None:
                    continue
                t = float(frame.pts * self._stream.time_base)
                if self.size is not None:
                    frame = frame.reformat(
                        width=self.size[0], height=self.size[1], format="rgb24", interpolation="AREA"
                    )
                self.last_time = t
                return t, frame.to_ndarray(format="rgb24")
        except av.FFmpegError as exc:
            raise VideoError(f"{self.path}: decode error after t={self.last_time}: {exc}") from exc
        return None

    def read(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
        """Frames shown in [t0, t1] seconds: (times (n,) float64, frames (n, H, W, 3) uint8); n may be 0."""
        if self._frames is None or t0 <= self._passed:
            self._seek(t0)
        times, frames = [], []
        while True:
            item, self._held = (self._held, None) if self._held is not None else (self._next(), None)
            if item is None:
                break
            t, rgb = item
            if t > t1:
                self._held = item
                break
            self._passed = t
            if t >= t0:
                times.append(t)
                frames.append(rgb)
        h, w = (self.size[1], self.size[0]) if self.size else (self._stream.height, self._stream.width)
        stacked = np.stack(frames) if frames else np.zeros((0, h, w, 3), np.uint8)
        return np.asarray(times, np.float64), stacked

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
