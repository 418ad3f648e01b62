"""Image resizing shared by training data and the runtime: one function, so frames are resized alike everywhere.

    small = area_resize(frame, (64, 64))     # uint8 (h, w, C) -> (64, 64, C), area averaging

Pure numpy + cv2 (the data layer: below the runtime, which uses it too).
"""

from __future__ import annotations

import cv2
import numpy as np

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


def area_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (h, w, C) uint8 image to size = (H, W) by area averaging (a no-op when it already fits).

    A large downscale (a 640x480 camera to 64x64) is done in two area steps: first by integer factors that divide the
    source (cv2's INTER_AREA fast path: exact k x k box means, e.g. 640x480 -> 64x80), then INTER_AREA for the small
    rest (80 -> 64). Both steps average areas, so the result stays within a few grey levels (mean < 1) of a single
    INTER_AREA pass (tests/test_images.py) at about 40 % of its cost (0.32 vs 0.82 ms p50 for 640x480 -> 64x64,
    benchmarks/resize_cost.py): the general INTER_AREA path with fractional windows was most of predict()'s time beyond the graph
    (benchmarks/RESULTS.md, issue 21)."""
    h, w = int(size[0]), int(size[1])
    if image.shape[0] == h and image.shape[1] == w:
        return image
    kh, kw = _box_factor(image.shape[0], h), _box_factor(image.shape[1], w)
    if max(image.shape[0] / h, image.shape[1] / w) >= TWO_STEP_MIN_FACTOR and (kh > 1 or kw > 1):
        image = cv2.resize(image, (image.shape[1] // kw, image.shape[0] // kh), interpolation=cv2.INTER_AREA)
        if image.shape[0] == h and image.shape[1] == w:
            return image
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
