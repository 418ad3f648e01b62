"""The optional C kernels of the camera resize (wam_ros/data/_area.c).

    kernels = native.load()        # the module, or None when it was not built or WAM_NO_NATIVE=1
    if kernels is not None and kernels.box_mean(image, 6, 10, work, out):
        ...                        # False: a case the kernels leave to numpy and cv2 (nothing written)

`pip install -e .` (what `make install` does) and `colcon build` compile `_area.c` beside this file; setup.py marks it
optional, so an install without a C compiler still works and wam_ros.data.images computes the same pixels with numpy
and cv2 (slower: docs/resize.md). The kernels take numpy arrays, check every shape themselves and release the GIL
while they run, so two threads can resize two row bands at once. WAM_NO_NATIVE=1 in the environment of a process
(read once, at import: load() runs once per camera frame, and an environment lookup right after a graph call cost
9 us) or `with native.disabled():` use the numpy path (the tests compare the two bit for bit).
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from types import ModuleType



def work_array(shape: tuple[int, ...]) -> tuple[int]:
    """Shape of the uint32 work array the kernels need for an image of `shape` (h, w[, c])."""
    return (4 * shape[1] * (shape[2] if len(shape) == 3 else 1),)


@functools.cache
def _load() -> ModuleType | None:
    try:
        from wam_ros.data import _area
    except ImportError:  # not built (no C compiler at install time), or built for another Python
        return None
    return _area


_disabled = os.environ.get("WAM_NO_NATIVE", "") not in ("", "0")


def load() -> ModuleType | None:
    """The C kernels (module wam_ros.data._area: box_mean, area_rows, area_resize), or None when they are not built,
    WAM_NO_NATIVE was set (to a non-empty value other than 0) when this module was imported, or inside disabled()."""
    return None if _disabled else _load()


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """The numpy path inside the block (for comparisons and benchmarks; not meant for threads that resize meanwhile)."""
    global _disabled
    before, _disabled = _disabled, True
    try:
        yield
    finally:
        _disabled = before
