"""The optional C kernels of the camera resize (wam_ros/data/_area.c), loaded with ctypes.

    kernels = native.load()        # None when the extension was not built (no C compiler) or WAM_NO_NATIVE=1
    if kernels is not None and kernels.box_mean(image, 6, 10, work, out):
        ...                        # False: a case the kernels leave to cv2

`pip install -e .` (what `make install` does) compiles `_area.c` beside this file; setup.py marks it optional, so an
install without a C compiler still works and wam_ros.data.images computes the same pixels with numpy and cv2
(slower: docs/resize.md). ctypes releases the GIL for the length of each call, so two threads can resize two row
bands at once. Set WAM_NO_NATIVE=1 to use the numpy path (the tests compare the two bit for bit).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os

import numpy as np

_P = ctypes.c_void_p
_L = ctypes.c_long


class Kernels:
    """The three C functions, wrapped to take numpy arrays. Each returns True when it wrote its output and False
    when the case is one it leaves to cv2 (nothing written)."""

    def __init__(self, lib: ctypes.CDLL, path: str) -> None:
        self.path = path
        self._box = lib.wam_box_mean_u8
        self._box.argtypes = [_P, _L, _L, _L, _L, _L, _P, _P]
        self._rows = lib.wam_area_rows_u8
        self._rows.argtypes = [_P, _L, _L, _L, _L, _P, _P]
        self._both = lib.wam_area_resize_u8
        self._both.argtypes = [_P, _L, _L, _L, _L, _L, _L, _P, _P, _P]
        for fn in (self._box, self._rows, self._both):
            fn.restype = ctypes.c_int

    @staticmethod
    def work(image: np.ndarray) -> int:
        """The uint32 work array length every kernel needs for `image` (h, w[, c])."""
        return 4 * image.shape[1] * (1 if image.ndim == 2 else image.shape[2])

    @staticmethod
    def _done(code: int) -> bool:
        return code == 0

    def box_mean(self, image: np.ndarray, kh: int, kw: int, work: np.ndarray, out: np.ndarray) -> bool:
        """Box means of a C-contiguous uint8 (h, w[, c]) image into out (h // kh, w // kw[, c]) (the same pixels as
        cv2.resize(INTER_AREA)); work: uint32, at least work(image) long."""
        h, w = image.shape[:2]
        c = 1 if image.ndim == 2 else image.shape[2]
        return self._done(self._box(image.ctypes.data, h, w, c, kh, kw, work.ctypes.data, out.ctypes.data))

    def area_rows(self, image: np.ndarray, work: np.ndarray, out: np.ndarray) -> bool:
        """cv2.resize(image, INTER_AREA) into out, for a downscale along the rows only by a non-integer factor
        (out has the image's width); work: uint32, at least work(image) long."""
        sh, w = image.shape[:2]
        c = 1 if image.ndim == 2 else image.shape[2]
        if out.shape[1] != w:
            return False
        return self._done(self._rows(image.ctypes.data, sh, w, c, out.shape[0], out.ctypes.data, work.ctypes.data))

    def area_resize(
        self, image: np.ndarray, kh: int, kw: int, work: np.ndarray, mid: np.ndarray, out: np.ndarray
    ) -> bool:
        """Box means into mid (h // kh, w // kw[, c]), then the row step into out (H, w // kw[, c]), in one call."""
        h, w = image.shape[:2]
        c = 1 if image.ndim == 2 else image.shape[2]
        if out.shape[1] != w // kw:
            return False
        return self._done(
            self._both(
                image.ctypes.data, h, w, c, kh, kw, out.shape[0], work.ctypes.data, mid.ctypes.data, out.ctypes.data
            )
        )


@functools.cache
def _load(disabled: bool) -> Kernels | None:
    if disabled:
        return None
    spec = importlib.util.find_spec("wam_ros.data._area")
    if spec is None or not spec.origin:
        return None
    try:
        return Kernels(ctypes.CDLL(spec.origin), spec.origin)
    except (OSError, AttributeError):  # a stale or foreign build: the numpy path computes the same pixels
        return None


def load() -> Kernels | None:
    """The C kernels, or None when they are not built or WAM_NO_NATIVE is set to a non-empty value other than 0."""
    return _load(os.environ.get("WAM_NO_NATIVE", "") not in ("", "0"))
