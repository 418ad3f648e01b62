"""Pre- and post-processing shared by every runtime backend (torch, onnxruntime, TensorRT).

    rgb = to_rgb(img, "bgr8")                               # rgb8 / bgr8 / mono8 / rgba8 / bgra8 -> (H, W, 3) RGB
    frames = stack_frames(images, k=2, size=(64, 64))       # -> uint8 (1, K, 3, H, W), the model's `frames` input
    joint_pos = check_joint_pos(q, n_joints=8)              # -> float32 (1, J)

Every graph takes RAW inputs (frames 0..255, joint positions in radians/metres, int64 tokens) and returns absolute
joint targets + a next frame in [0, 1] (normalisation lives inside the network, see docs/interfaces.md "Model"), so the
only processing here is resize (area averaging, wam_ros.data.images), colour order and K-frame stacking. Bad input raises ValueError naming
what was expected and what came.

Core module: numpy + cv2 only, never imports rclpy or torch.
"""

from __future__ import annotations

import collections
import statistics
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from wam_ros.data.images import area_resize, area_resize_split, row_split

ENCODINGS = ("rgb8", "bgr8", "mono8", "rgba8", "bgra8")
_CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}


def to_rgb(image: np.ndarray, encoding: str = "rgb8") -> np.ndarray:
    """Convert one camera image in `encoding` to uint8 (H, W, 3) RGB.

    `image` is uint8 (H, W, C) with C given by the encoding ((H, W) or (H, W, 1) for mono8).
    """
    if encoding not in _CHANNELS:
        raise ValueError(f"image encoding must be one of {ENCODINGS}, got {encoding!r}")
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError(f"image must be uint8 ({encoding}), got dtype {img.dtype}")
    want = _CHANNELS[encoding]
    if want == 1 and img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    shape_ok = img.ndim == 2 if want == 1 else (img.ndim == 3 and img.shape[2] == want)
    if not shape_ok or min(img.shape[:2], default=0) < 1:
        expected = "(H, W)" if want == 1 else f"(H, W, {want})"
        raise ValueError(f"{encoding} image must have shape {expected} with H, W >= 1, got {img.shape}")
    if encoding == "rgb8":
        return img
    if encoding == "bgr8":
        return np.ascontiguousarray(img[:, :, ::-1])
    if encoding == "mono8":
        return np.repeat(img[:, :, None], 3, axis=2)
    if encoding == "rgba8":
        return np.ascontiguousarray(img[:, :, :3])
    return np.ascontiguousarray(img[:, :, 2::-1])  # bgra8


# Camera frames with at least this many pixels may be resized as two row bands on two threads (numpy and cv2 release
# the GIL), bit-identical to one band. Whether that pays depends on a second core being free: on the idle 2-vCPU VM
# it did (session 7: 0.24 instead of 0.31 ms for 640x480 -> 64x64); on the same VM busy with other jobs the worker
# waits for a core and two bands cost 0.1-0.17 ms more than one inside predict() (session 8,
# benchmarks/predict_resize.py --bands). So `resize` measures both as it goes (BandChooser) and uses the faster.
PARALLEL_RESIZE_MIN_PIXELS = 160 * 120
_resize_pool: ThreadPoolExecutor | None = None
_resize_pool_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _resize_pool
    with _resize_pool_lock:
        if _resize_pool is None:
            _resize_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wam-resize")
        return _resize_pool


class BandChooser:
    """One band or two, by their measured wall time: the median of each way's last `window` calls, the faster one
    used, the other tried again every `explore`-th call (every 16 x `explore`-th while it is more than 1.5x slower)
    so a change of load is noticed. Both give the same pixels.

    A median, not a running mean (sessions 7-14): one slow call (a preemption: a p99 event, so 1 % of calls) moved
    the mean enough to switch ways, and the slower way then ran until enough retries of the other pulled the mean
    back: with 1-2 % such calls a simulated stream ran 9-30 % of its calls on the slower way (session 15,
    tests/test_images.py); with the median, as often as the retries alone. A real change of load is followed once
    the other way's retries make up half its window (5 retries: 80 calls, or up to 1,280 while it was more than 1.5x
    slower)."""

    def __init__(self, explore: int = 16, window: int = 9) -> None:
        self.explore = explore
        self.samples: dict[bool, collections.deque[float]] = {
            False: collections.deque(maxlen=window),
            True: collections.deque(maxlen=window),
        }
        self.calls = 0

    def typical(self, bands: bool) -> float:
        """The median of the way's recent wall times in seconds (0.0: not measured yet, so it is tried first)."""
        s = self.samples[bands]
        return statistics.median(s) if s else 0.0

    def use_bands(self) -> bool:
        self.calls += 1
        two, one = self.typical(True), self.typical(False)
        faster = two <= one
        # the other way retried every `explore`-th call, or 16x less often while it has been more than 1.5x slower
        # (with the C box kernel two bands cost 2x one on the 2-vCPU VM: a retry every 16th call would put that
        # cost in the p99 of every resize, docs/resize.md)
        lo, hi = sorted((two, one))
        every = self.explore * 16 if hi > 1.5 * lo > 0.0 else self.explore
        return (not faster) if self.calls % every == 0 else faster

    def record(self, bands: bool, seconds: float) -> None:
        self.samples[bands].append(seconds)


_choosers: dict[tuple[int, ...], BandChooser] = {}


def resize(image: np.ndarray, size: tuple[int, int], parallel: bool = True) -> np.ndarray:
    """Resize an (h, w, C) uint8 image to size = (H, W) by area averaging (a no-op when it already fits): the same
    function the episode importers and the training windows use (wam_ros.data.images.area_resize), so a camera frame
    is resized on the robot exactly as the training frames were. With `parallel`, a camera-size frame may be resized
    as two row bands, the top one on a worker thread, with a bit-identical result (images.row_split), when that has
    been the faster way lately (BandChooser)."""
    split = None
    if parallel and image.shape[0] * image.shape[1] >= PARALLEL_RESIZE_MIN_PIXELS:
        split = row_split(image.shape, size)
    if split is None:
        return area_resize(image, size)
    key = (*image.shape, int(size[0]), int(size[1]))
    chooser = _choosers.get(key)
    if chooser is None:
        chooser = _choosers[key] = BandChooser()
    bands = chooser.use_bands()
    t0 = time.perf_counter()
    out = resize_in_bands(image, size, split) if bands else area_resize(image, size)
    chooser.record(bands, time.perf_counter() - t0)
    return out


def resize_in_bands(image: np.ndarray, size: tuple[int, int], split: tuple[int, int]) -> np.ndarray:
    """area_resize(image, size) as two row bands split at `split` (images.row_split): the top band on the worker
    thread, the bottom one here; bit-identical to one band."""
    top, bottom = area_resize_split(image, size, split)
    upper = _pool().submit(top)
    lower = bottom()
    # the worker not started on the top band by the time the bottom one is done: no core is free for it; resize it
    # here rather than wait for the scheduler
    return np.concatenate([top() if upper.cancel() else upper.result(), lower])


def prepare_image(image: np.ndarray, encoding: str, size: tuple[int, int]) -> np.ndarray:
    """One camera image in `encoding` -> uint8 (H, W, 3) RGB at `size`: resized first (in its own channel layout,
    which cv2 resizes alike), then converted, so a bgr8 640x480 frame is not copied whole just to swap channels."""
    img = np.asarray(image)
    colour = encoding in ("rgb8", "bgr8", "rgba8", "bgra8") and img.dtype == np.uint8 and img.ndim == 3
    if colour and img.shape[2] == _CHANNELS[encoding] and min(img.shape[:2]) >= 1:
        return to_rgb(resize(img, size), encoding)
    if (
        encoding == "mono8"
        and img.dtype == np.uint8
        and img.ndim in (2, 3)
        and min(img.shape[:2], default=0) >= 1
    ):
        mono = img[:, :, 0] if img.ndim == 3 and img.shape[2] == 1 else img
        if mono.ndim == 2:
            return to_rgb(resize(mono, size), "mono8")
    return resize(to_rgb(image, encoding), size)  # anything else: to_rgb raises with its message


def _as_frame_list(images: object) -> list[np.ndarray]:
    if isinstance(images, np.ndarray):
        if images.ndim == 3:  # one frame (h, w, 3)
            return [images]
        if images.ndim == 4:  # (K, h, w, 3)
            return list(images)
        raise ValueError(
            f"images must be uint8 (K, h, w, 3), one (h, w, 3) frame or a list of frames, "
            f"got an array of shape {images.shape}"
        )
    if isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
        return [np.asarray(f) for f in images]
    raise ValueError(
        f"images must be uint8 (K, h, w, 3) or a list of (h, w, 3) RGB frames, got {type(images).__name__}"
    )


def stack_frames(images: object, k: int, size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """Stack RGB frames (oldest first, any size) into the model input uint8 (1, K, 3, H, W).

    Fewer than K frames are left-padded by repeating the oldest one, as the training windows do at an episode start.
    out: a uint8 (1, K, 3, H, W) array to fill and return instead of a new one (Policy.predict() passes its bound
    graph input).
    """
    frames = _as_frame_list(images)
    if not 1 <= len(frames) <= k:
        raise ValueError(
            f"images must hold 1..{k} frames (the model stacks K={k}, oldest first), got {len(frames)}"
        )
    h, w = int(size[0]), int(size[1])
    if out is None:
        out = np.empty((1, k, 3, h, w), np.uint8)
    pad = k - len(frames)
    for i, frame in enumerate(frames):
        if frame.dtype != np.uint8:
            raise ValueError(f"images[{i}] must be uint8 RGB (h, w, 3), got dtype {frame.dtype}")
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
            raise ValueError(
                f"images[{i}] must be uint8 RGB of shape (h, w, 3), got shape {frame.shape} "
                "(convert bgr8/mono8 with wam_ros.runtime.preprocess.to_rgb)"
            )
        if frame.shape[0] != h or frame.shape[1] != w:
            frame = resize(frame, size)
        out[0, pad + i] = frame.transpose(2, 0, 1)
    if pad:
        out[0, :pad] = out[0, pad]
    return out


def check_joint_pos(joint_pos: object, n_joints: int, out: np.ndarray | None = None) -> np.ndarray:
    """Validate a joint position vector (J,) and return it as float32 (1, J) (written into `out` when given)."""
    try:
        q = np.asarray(joint_pos, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"joint_pos must be {n_joints} numbers, got {joint_pos!r}") from exc
    if q.shape != (n_joints,):
        raise ValueError(
            f"joint_pos must have shape ({n_joints},) (one value per model joint), got {q.shape}"
        )
    q32 = np.empty((1, n_joints), np.float32) if out is None else out
    # finite in float64 but beyond float32 (1e300) would reach the graph as inf
    with np.errstate(over="ignore"):
        q32[0] = q
    if not np.isfinite(q32).all():
        raise ValueError(f"joint_pos must be finite (in float32), got {q.tolist()}")
    return q32


def frame_to_image(next_frame: np.ndarray) -> np.ndarray:
    """Model output (3, H, W) float in [0, 1] -> uint8 (H, W, 3) RGB (rounded half to even). Computed in place on
    one float32 copy, the channels interleaved by cv2.merge: 15 instead of 33 us for 64x64."""
    img = np.clip(np.asarray(next_frame, dtype=np.float32), 0.0, 1.0)
    img *= 255.0
    np.rint(img, out=img)
    return cv2.merge(tuple(img.astype(np.uint8)))
