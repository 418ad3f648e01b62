"""Image resizing shared by training data and the runtime: one function, so frames are resized alike everywhere.

    small = area_resize(frame, (64, 64))     # uint8 (h, w, C) -> (64, 64, C), area averaging

Pure numpy + cv2, with optional C kernels for the camera case (wam_ros/data/_area.c, built by `pip install -e .`;
without them the numpy path computes the same pixels: docs/resize.md). The data layer: below the runtime, which
uses it too.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable

import cv2
import numpy as np

from wam_ros.data import native

# Two area steps only for downscales by 4x or more: there the first (exact box) step removes most pixels and the result
# stays within a few grey levels of one INTER_AREA pass (mean < 1, tests/test_images.py); for small downscales the
# one pass is cheap anyway, and two steps could move a sharp edge by a fraction of a pixel.
TWO_STEP_MIN_FACTOR = 4.0


def _box_factor(src: int, dst: int) -> int:
    """The largest integer k >= 2 dividing `src` with src / k >= dst (1 when there is none)."""
    for k in range(src // dst, 1, -1):
        if src % k == 0:
            return k
    return 1


def _first_step(shape: tuple[int, ...], size: tuple[int, int]) -> tuple[int, int]:
    """Integer box factors (kh, kw) of area_resize's first step for an image of `shape` (1, 1: one pass)."""
    return _first_step_of(int(shape[0]), int(shape[1]), int(size[0]), int(size[1]))


@functools.lru_cache(maxsize=256)  # a camera stream asks for the same sizes every frame
def _first_step_of(src_h: int, src_w: int, h: int, w: int) -> tuple[int, int]:
    kh, kw = _box_factor(src_h, h), _box_factor(src_w, w)
    if max(src_h / h, src_w / w) >= TWO_STEP_MIN_FACTOR and (kh > 1 or kw > 1):
        return kh, kw
    return 1, 1


_SCRATCH = threading.local()


def _scratch(name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """This thread's reusable work array `name` of `shape` and `dtype` (box_mean runs on two threads at once in the
    runtime's two-band resize)."""
    arrays = getattr(_SCRATCH, "arrays", None)
    if arrays is None:
        arrays = _SCRATCH.arrays = {}
    key = (name, shape, dtype)
    arr = arrays.get(key)
    if arr is None:
        if len(arrays) >= 16:  # a few camera sizes at most; never grow without bound
            arrays.clear()
        arr = arrays[key] = np.empty(shape, dtype)
    return arr


def box_mean(image: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """cv2.resize(image, (w // kw, h // kh), interpolation=cv2.INTER_AREA) for a uint8 (h, w[, C]) image whose sides
    kh, kw divide, bit for bit: in C when the kernels are built (wam_ros/data/_area.c, about half the time of the
    numpy path below and a third of cv2's for 640x480 by 10 x 6: docs/resize.md, benchmarks/RESULTS.md).

    OpenCV's integer-factor area path (resizeAreaFast_) sums each kh x kw box in int, one box at a time in scalar
    code, and stores cvRound(float(sum) * (1.f / area)). Without the C kernels the same integer sums take two
    vectorised passes: numpy adds the kh rows of each box (uint16 accumulators: the frame is read once, with SIMD),
    then a cv2.boxFilter of kw pixels along the rows, sampled every kw-th pixel, adds the kw columns (integer sums;
    no BLAS call, whose threads could spin beside onnxruntime's); then the same float32 product, rounded half to
    even. OpenCV runs 2 x 2 with SIMD code that rounds halves up: that, other dtypes, non-contiguous images, more
    than 4 channels and boxes whose sums could pass 2 ** 24 go to cv2.resize itself. tests/test_images.py checks the two against each
    other over 1,500 random factors, sizes and channel counts, with images full of exact .5 ties."""
    h, w = image.shape[:2]
    oh, ow = h // kh, w // kw
    area = kh * kw
    c = 1 if image.ndim == 2 else image.shape[2]
    if (
        (kh, kw) == (2, 2)
        or image.dtype != np.uint8
        or not image.flags.c_contiguous
        or image.ndim not in (2, 3)
        or not 1 <= c <= 4
        or h % kh
        or w % kw
        or area * 255 >= 1 << 24
    ):
        return cv2.resize(image, (ow, oh), interpolation=cv2.INTER_AREA)
    kernels = native.load()
    if kernels is not None:  # the same sums and rounding in one C pass over the frame (wam_ros/data/_area.c)
        out = np.empty((oh, ow) if image.ndim == 2 or c == 1 else (oh, ow, c), np.uint8)
        if kernels.box_mean(image, kh, kw, _scratch("work", native.work_array(image.shape), np.uint32), out):
            return out
    narrow = area * 255 < 1 << 16  # every box sum fits in uint16
    acc = np.uint16 if narrow else np.uint32
    # the kh rows of each box added, into this thread's scratch array (no fresh 300 kB array, page-faulted anew,
    # per call: that cost more than the sums themselves)
    rows = np.add.reduce(image.reshape(oh, kh, w * c), axis=1, out=_scratch("rows", (oh, w * c), acc))
    rows = rows.reshape((oh, w) if c == 1 else (oh, w, c))
    if kw > 1:
        # boxFilter has no 32-bit integer type: wide sums in float64, exact
        src = rows if narrow else rows.astype(np.float64)
        run = _scratch("run", src.shape, src.dtype)
        cv2.boxFilter(
            src, -1, (kw, 1), dst=run, anchor=(0, 0), normalize=False, borderType=cv2.BORDER_CONSTANT
        )
        # the sum of pixels x .. x + kw - 1 at every x; each box starts at a multiple of kw
        rows = run[:, ::kw]
    sums = rows.astype(np.float32)
    sums *= np.float32(1.0) / np.float32(area)
    return np.rint(sums, out=sums).astype(np.uint8)  # (oh, ow) for one channel, as cv2 returns it


@functools.lru_cache(maxsize=256)
def _fused_plan(
    shape: tuple[int, ...], h: int, w: int, kh: int, kw: int
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None:
    """(mid shape, out shape, work shape) when resizing an image of `shape` to (h, w) with first-step factors
    (kh, kw) is a box step followed by a row-only area step (the usual camera), which the C kernels do in one call;
    None otherwise. The factors come from the caller: a row band of a frame uses the whole frame's, which its own
    shape need not give (tests/test_images.py)."""
    if len(shape) not in (2, 3) or (len(shape) == 3 and not 1 <= shape[2] <= 4):
        return None
    if (kh == 1 and kw == 1) or shape[1] // kw != w or shape[0] // kh <= h:
        return None
    # one channel comes back (H, W), as cv2 returns it
    tail = shape[2:3] if len(shape) == 3 and shape[2] > 1 else ()
    return (shape[0] // kh, w, *tail), (h, w, *tail), native.work_array(shape)


def _fused(image: np.ndarray, h: int, w: int, kh: int, kw: int) -> np.ndarray | None:
    """Both steps in one C call (box means, then the area step along the rows: OpenCV's pixels bit for bit), or
    None when the C kernels are not built or leave this case to numpy and cv2 (e.g. an area step along x too).
    The camera path: one cached plan, no per-call environment or shape logic (each Python call right after a graph
    call costs several microseconds, docs/resize.md)."""
    kernels = native.load()
    if kernels is None or image.dtype != np.uint8:
        return None
    plan = _fused_plan(image.shape, h, w, kh, kw)
    if plan is None:
        return None
    mid_shape, out_shape, work_shape = plan
    out = np.empty(out_shape, np.uint8)
    mid = _scratch("mid", mid_shape, np.uint8)
    work = _scratch("work", work_shape, np.uint32)
    return out if kernels.area_resize(image, kh, kw, work, mid, out) else None


def _resize_steps(image: np.ndarray, size: tuple[int, int], kh: int, kw: int) -> np.ndarray:
    """area_resize with first-step factors (kh, kw) given: the whole frame's, also for each of its row bands."""
    h, w = int(size[0]), int(size[1])
    out = _fused(image, h, w, kh, kw)
    if out is not None:
        return out
    return _separate_steps(image, h, w, kh, kw)


def _separate_steps(image: np.ndarray, h: int, w: int, kh: int, kw: int) -> np.ndarray:
    """The box step (box_mean), then cv2 for the rest: what the C kernels do in one call, for every other case."""
    if kh > 1 or kw > 1:
        image = box_mean(image, kh, kw)
        if image.shape[0] == h and image.shape[1] == w:
            return image
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)


def area_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (h, w, C) uint8 image to size = (H, W) by area averaging (a no-op when it already fits).

    A large downscale (a 640x480 camera to 64x64) is done in two area steps: first by integer factors that divide the
    source (cv2's INTER_AREA fast path: exact k x k box means, e.g. 640x480 -> 64x80), then INTER_AREA for the small
    rest (80 -> 64). Both steps average areas, so the result stays within a few grey levels (mean < 1) of a single
    INTER_AREA pass (tests/test_images.py) at a fraction of its cost (benchmarks/resize_cost.py): the general
    INTER_AREA path with fractional windows was most of predict()'s time beyond the graph (benchmarks/RESULTS.md,
    issue 21). Both steps give OpenCV's pixels bit for bit; for the usual cameras (the second step along the rows
    only) they run in one call of the C kernels when those are built (docs/resize.md), else box_mean and cv2."""
    if image.shape[0] == int(size[0]) and image.shape[1] == int(size[1]):
        return image
    return _resize_steps(image, size, *_first_step(image.shape, size))


def row_split(shape: tuple[int, ...], size: tuple[int, int]) -> tuple[int, int] | None:
    """(source row, output row) where area_resize(image, size) splits into two bands resized independently with a
    bit-identical result, or None when there is none near the middle (or the image is not a >= 2x downscale).

    A boundary r works when it is a multiple of the first step's row factor kh and r * H / h is a whole output row:
    then every output row above it averages only source rows above it (area windows never straddle it)."""
    return _row_split_of(int(shape[0]), int(shape[1]), int(size[0]), int(size[1]))


@functools.lru_cache(maxsize=256)  # 9 us per call uncached: once per camera frame in the runtime
def _row_split_of(src: int, src_w: int, dst: int, dst_w: int) -> tuple[int, int] | None:
    if src < 2 * dst or src_w < 2 * dst_w:
        return None
    kh, _ = _first_step_of(src, src_w, dst, dst_w)
    best = None
    for out_row in range(1, dst):
        r, rem = divmod(out_row * src, dst)
        if rem == 0 and r % kh == 0 and (best is None or abs(2 * r - src) < abs(2 * best[0] - src)):
            best = (r, out_row)
    if best is None or not src // 4 <= best[0] <= 3 * src // 4:
        return None
    return best


def area_resize_split(
    image: np.ndarray, size: tuple[int, int], split: tuple[int, int]
) -> tuple[Callable[[], np.ndarray], Callable[[], np.ndarray]]:
    """The two bands of area_resize(image, size) at `split` (from row_split) as two callables (top, bottom), each
    returning its output rows; np.concatenate([top(), bottom()]) equals area_resize(image, size) bit for bit. cv2
    releases the GIL, so a caller can run the two on two cores (wam_ros.runtime.preprocess.resize)."""
    kh, kw = _first_step(image.shape, size)
    r, out_row = split
    h, w = int(size[0]), int(size[1])
    return (
        lambda: _resize_steps(image[:r], (out_row, w), kh, kw),
        lambda: _resize_steps(image[r:], (h - out_row, w), kh, kw),
    )
