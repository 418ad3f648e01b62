"""Camera-frame resize cost: OpenCV's single-pass INTER_AREA, the two area steps done by OpenCV alone (the resize before
session 8), wam_ros.data.images.area_resize (the same two steps, bit-identical: in C since session 15,
wam_ros/data/_area.c; the numpy box step of sessions 8-14 inside native.disabled()) and the runtime's preprocess.resize (area_resize in one band, in two row bands on two threads, or whichever of the
two has been faster lately: its default), on 1 and 2 OpenCV threads, side by side in one run (issue 21).

    .venv/bin/python benchmarks/resize_cost.py                    # 640x480 -> 64x64, 1000 calls each
    .venv/bin/python benchmarks/resize_cost.py --camera 720x1280 --size 96 --calls 500

Each call gets another frame of a pool of 16 (as a camera delivers them), so the frame is not in the cache; the rows
are interleaved call by call.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import cv2
import numpy as np

from wam_ros.data import native
from wam_ros.data.images import _first_step, area_resize, row_split
from wam_ros.runtime import preprocess


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--camera", default="480x640", help="HxW of the camera frames")
    ap.add_argument("--size", type=int, default=64, help="model image size")
    ap.add_argument("--calls", type=int, default=1000)
    a = ap.parse_args()
    h, w = (int(v) for v in a.camera.split("x"))
    rng = np.random.default_rng(0)
    pool = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(16)]
    kh, kw = _first_step((h, w), (a.size, a.size))

    def cv2_two_steps(f: np.ndarray) -> np.ndarray:
        box = cv2.resize(f, (w // kw, h // kh), interpolation=cv2.INTER_AREA)
        return cv2.resize(box, (a.size, a.size), interpolation=cv2.INTER_AREA)

    rows = {
        "cv2 INTER_AREA, one pass": lambda f: cv2.resize(f, (a.size, a.size), interpolation=cv2.INTER_AREA),
        "cv2 two area steps (before)": cv2_two_steps,
        "area_resize (C kernels)": lambda f: area_resize(f, (a.size, a.size)),
        "area_resize (numpy, cv2)": lambda f: area_resize(f, (a.size, a.size)),
        "preprocess.resize (1 band)": lambda f: preprocess.resize(f, (a.size, a.size), parallel=False),
        "preprocess.resize (its choice)": lambda f: preprocess.resize(f, (a.size, a.size)),
    }
    split = row_split((h, w, 3), (a.size, a.size))
    if split is not None:
        rows["2 row bands, 2 threads"] = lambda f: preprocess.resize_in_bands(f, (a.size, a.size), split)
    # run inside native.disabled() (entered before the clock starts)
    numpy_rows = {"area_resize (numpy, cv2)"}
    if native.load() is None:
        numpy_rows = set()
        del rows["area_resize (C kernels)"]
        print("the C kernels are not built (pip install -e .): every row runs the numpy path")
    f0 = pool[0]
    assert np.array_equal(area_resize(f0, (a.size, a.size)), cv2_two_steps(f0)), (
        "area_resize changed its result"
    )
    print(f"{h}x{w} -> {a.size}x{a.size}, {a.calls} calls per row (ms)")
    for threads in (1, 2):
        cv2.setNumThreads(threads)
        times: dict[str, list[float]] = {name: [] for name in rows}
        n = 0
        for _ in range(a.calls + 20):  # rows interleaved, so load from other processes hits each alike
            for name, fn in rows.items():
                n += 1  # every call another frame
                with native.disabled() if name in numpy_rows else contextlib.nullcontext():
                    t = time.perf_counter()
                    fn(pool[n % len(pool)])
                    times[name].append(time.perf_counter() - t)
        for name, ts in times.items():
            t = np.asarray(ts[20:]) * 1e3
            print(
                f"  {threads} OpenCV thread(s)  {name:<34s} p50 {np.percentile(t, 50):.3f}  p99 {np.percentile(t, 99):.3f}"
            )


if __name__ == "__main__":
    main()
