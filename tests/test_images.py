"""area_resize (wam_ros.data.images): the one resize of training data and the runtime, against OpenCV's single-pass
INTER_AREA on camera-like images of common and odd sizes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wam_ros.data.images import TWO_STEP_MIN_FACTOR, area_resize


def _camera_like(h: int, w: int, channels: int, seed: int) -> np.ndarray:
    """Smooth shapes + edges + sensor noise: what a camera sees, not white noise (which area means flatten)."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 256, (h, w, channels), dtype=np.uint8), (0, 0), 4)
    img = cv2.rectangle(img.copy(), (w // 5, h // 4), (w // 2, h // 2), (255,) * channels, -1)
    noise = rng.normal(0, 6, img.shape)
    return np.clip(img.astype(np.float64) + noise, 0, 255).astype(np.uint8).reshape(h, w, channels)


@pytest.mark.parametrize(
    ("h", "w"),
    [(480, 640), (720, 1280), (1080, 1920), (240, 320), (479, 641), (64, 64), (100, 70), (96, 128)],
)
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_close_to_single_pass_inter_area_and_exact_for_small_downscales(h, w, channels):
    img = _camera_like(h, w, channels, seed=h + w)
    for size in ((64, 64), (96, 96), (48, 64)):
        ref = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA).reshape(*size, -1)
        out = area_resize(img, size).reshape(
            *size, -1
        )  # (cv2 drops a single channel's axis; the no-op does not)
        assert out.shape == ref.shape and out.dtype == np.uint8
        diff = np.abs(out.astype(int) - ref.astype(int))
        if max(h / size[0], w / size[1]) >= TWO_STEP_MIN_FACTOR:
            # two area steps: another valid anti-aliased downscale, not OpenCV's bit for bit; on average within a
            # grey level of it (a sharp 255-contrast edge may land a fraction of a pixel apart: up to ~30 there),
            # and it preserves the image's mean brightness like any area average
            assert diff.mean() < 1.0, (h, w, size, diff.mean())
            assert abs(float(out.mean()) - float(img.mean())) < 1.0, (h, w, size)
        else:  # one pass: exactly OpenCV's
            assert diff.max() == 0, (h, w, size, diff.max())
    flat = np.full((h, w, channels), 77, np.uint8)
    assert np.all(area_resize(flat, (64, 64)) == 77)


def test_model_size_is_returned_as_is_and_no_integer_factor_means_one_pass():
    img = _camera_like(64, 64, 3, 0)
    assert area_resize(img, (64, 64)) is img
    prime = _camera_like(127, 131, 3, 1)  # no factor divides: exactly OpenCV's single pass
    ref = cv2.resize(prime, (64, 64), interpolation=cv2.INTER_AREA)
    assert np.array_equal(area_resize(prime, (64, 64)), ref)


def test_training_data_and_the_runtime_resize_with_the_same_function():
    from wam_ros.runtime import preprocess

    img = _camera_like(480, 640, 3, 9)
    assert np.array_equal(preprocess.resize(img, (64, 64)), area_resize(img, (64, 64)))
    assert np.array_equal(preprocess.prepare_image(img, "rgb8", (64, 64)), area_resize(img, (64, 64)))


@pytest.mark.parametrize(
    "shape",
    [
        (480, 640, 3),
        (720, 1280, 3),
        (1080, 1920, 4),
        (400, 640, 1),
        (480, 640),
        (240, 320, 3),
        (479, 641, 3),
        (600, 800, 3),
    ],
)
@pytest.mark.parametrize("size", [(64, 64), (96, 96), (48, 64), (128, 128)])
def test_two_band_parallel_resize_is_bit_identical(shape, size):
    """The runtime resizes a camera frame as two row bands on two threads; the split rows are chosen so no area window
    straddles them, and the result must equal the one-thread resize of the training data exactly."""
    from wam_ros.data.images import row_split
    from wam_ros.runtime import preprocess

    img = _camera_like(shape[0], shape[1], shape[2] if len(shape) == 3 else 1, seed=sum(shape)).reshape(shape)
    split = row_split(img.shape, size)
    out = preprocess.resize(img, size)
    assert np.array_equal(out, area_resize(img, size)), (shape, size, split)
    assert np.array_equal(out, preprocess.resize(img, size, parallel=False))
    if split is not None:  # the two bands themselves (resize picks one or two bands by their measured time)
        assert np.array_equal(preprocess.resize_in_bands(img, size, split), out)
    if shape[:2] in ((480, 640), (720, 1280)):
        assert split is not None and shape[0] // 4 <= split[0] <= 3 * shape[0] // 4  # camera sizes do split
    if shape[0] == 479:
        assert split is None  # a prime-ish height: no whole output row boundary, one band


@pytest.mark.parametrize(
    "shape, size",
    [
        ((141, 160, 3), (48, 32)),
        ((141, 320, 3), (48, 64)),
        ((141, 640, 1), (48, 32)),
        ((423, 640, 3), (48, 64)),
    ],
)
def test_row_bands_use_the_whole_frames_first_step(shape, size):
    """A band's own shape can give other box factors than the whole frame's (141 rows -> 48: none; its 94-row band
    -> 32: 2). Each band must be resized with the frame's factors, on the C path as on the numpy path, or the
    runtime's two-band resize differs from the training data's (it did by up to 24 grey levels, session 16)."""
    from wam_ros.data import native
    from wam_ros.data.images import _first_step, _first_step_of, area_resize_split, row_split

    img = _camera_like(shape[0], shape[1], shape[2], seed=sum(shape)).reshape(shape)
    split = row_split(img.shape, size)
    assert split is not None
    r, out_row = split
    band_factors = {
        _first_step_of(r, shape[1], out_row, size[1]),
        _first_step_of(shape[0] - r, shape[1], size[0] - out_row, size[1]),
    }
    assert band_factors != {_first_step(shape, size)}  # the case this test is about
    with native.disabled():
        want = area_resize(img, size)  # the numpy path: the whole frame, as the training data is resized
        top, bottom = area_resize_split(img, size, split)
        assert np.array_equal(np.concatenate([top(), bottom()]), want)
    top, bottom = area_resize_split(img, size, split)  # the C kernels where built
    assert np.array_equal(np.concatenate([top(), bottom()]), want)
    assert np.array_equal(area_resize(img, size), want)


def test_parallel_resize_from_many_threads_keeps_each_callers_frame():
    """wam_node's camera callbacks and a predict() loop may resize at once: the shared worker never mixes frames."""
    from concurrent.futures import ThreadPoolExecutor

    from wam_ros.data.images import row_split
    from wam_ros.runtime import preprocess

    frames = [_camera_like(480, 640, 3, seed=s) for s in range(6)]
    want = [area_resize(f, (64, 64)) for f in frames]
    split = row_split(frames[0].shape, (64, 64))
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda f: preprocess.resize(f, (64, 64)), frames * 5))
        banded = list(ex.map(lambda f: preprocess.resize_in_bands(f, (64, 64), split), frames * 5))
    assert all(np.array_equal(g, want[i % 6]) for i, g in enumerate(got))
    assert all(np.array_equal(g, want[i % 6]) for i, g in enumerate(banded))


def test_band_chooser_uses_the_faster_way_and_keeps_trying_the_other():
    from wam_ros.runtime.preprocess import BandChooser

    chooser = BandChooser(explore=4)
    first = [chooser.use_bands() for _ in range(2)]
    assert first == [True, True]  # nothing measured: both 0.0, bands first
    chooser.record(True, 0.0028)  # two bands slower (a busy machine) ...
    chooser.record(False, 0.002)  # ... one band faster, by less than 1.5x
    picks = [chooser.use_bands() for _ in range(8)]  # calls 3..10: every 4th tries the other way
    assert picks == [False, True, False, False, False, True, False, False]
    for _ in range(6):  # the machine frees up: two bands now faster
        chooser.record(True, 0.001)
    assert chooser.use_bands() is True and chooser.typical(True) < chooser.typical(False)
    # one way more than 1.5x slower: it is retried 16x less often (every 64th call here), so its cost stays out of
    # the tail of the resize; still retried, so a change of load is noticed
    slow = BandChooser(explore=4)
    slow.record(True, 0.004)
    slow.record(False, 0.002)
    picks = [slow.use_bands() for _ in range(128)]
    assert [i + 1 for i, p in enumerate(picks) if p] == [64, 128]


def test_band_chooser_is_not_switched_by_one_slow_call():
    """A preempted call (a p99 event) must not send the stream to the slower way: with a running mean (sessions
    7-14) 2 % of such calls kept a simulated stream on the slower way for 30 % of its calls."""
    from wam_ros.runtime.preprocess import BandChooser

    chooser = BandChooser(explore=16)
    for _ in range(9):
        chooser.record(False, 0.0001)
        chooser.record(True, 0.00015)
    chooser.record(False, 0.005)  # one call 50x slower
    assert chooser.use_bands() is False
    rng = np.random.default_rng(0)
    stream = BandChooser()
    on_bands = 0
    for _ in range(20000):  # one band 0.10 ms, two bands 0.15 ms, 10 % jitter, 2 % of calls preempted to 1 ms
        bands = stream.use_bands()
        t = (0.15e-3 if bands else 0.10e-3) * (1 + 0.1 * rng.standard_normal())
        stream.record(bands, 1e-3 if rng.random() < 0.02 else t)
        on_bands += bands
    assert on_bands / 20000 < 0.07  # the retries (every 16th call at most) and little more
    # and a real change of load is followed: two bands become 2x faster than one (after 5 retries: the median of 9
    # turns; at most 5 x 256 calls while they had been more than 1.5x slower)
    picks = []
    for _ in range(2000):
        bands = stream.use_bands()
        stream.record(bands, 0.05e-3 if bands else 0.10e-3)
        picks.append(bands)
    assert sum(picks[-100:]) >= 99  # two bands, but for at most one retry of one band (every 256th call)


@pytest.fixture(params=["native", "numpy"])
def resize_path(request):
    """Run a test with the C kernels (wam_ros/data/_area.c) and again with the numpy path (native.disabled())."""
    from wam_ros.data import native

    if request.param == "numpy":
        with native.disabled():
            assert native.load() is None
            yield request.param
        return
    if native.load() is None:
        pytest.skip("the C kernels are not built (no C compiler at install time)")
    yield request.param


def test_the_c_kernels_are_built_where_a_compiler_is():
    """`make install` compiles wam_ros/data/_area.c (optional in setup.py, so a failed build would otherwise pass
    unnoticed on the slower numpy path)."""
    import os
    import shutil

    from wam_ros.data import native

    if os.environ.get("WAM_NO_NATIVE", "") not in ("", "0"):
        pytest.skip("WAM_NO_NATIVE is set")
    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("no C compiler here")
    kernels = native.load()
    assert kernels is not None, "wam_ros/data/_area.c was not built: run `pip install -e .` (make install)"
    img = _camera_like(480, 640, 3, 5)
    work = np.empty(native.work_array(img.shape), np.uint32)
    out = np.empty((80, 64, 3), np.uint8)
    assert kernels.box_mean(img, 6, 10, work, out)
    assert np.array_equal(out, cv2.resize(img, (64, 80), interpolation=cv2.INTER_AREA))
    # a case they leave to cv2: OpenCV's 2 x 2 SIMD path rounds halves up; nothing is written
    assert not kernels.box_mean(img, 2, 2, work, np.empty((240, 320, 3), np.uint8))


def test_the_c_kernels_refuse_what_does_not_fit_them():
    """The kernels check every buffer themselves: a wrong output shape, a work array too small, another dtype, a
    view, a read-only output or too many channels is a False with nothing written, never a write out of bounds."""
    from wam_ros.data import native

    kernels = native.load()
    if kernels is None:
        pytest.skip("the C kernels are not built")
    img = _camera_like(480, 640, 3, 6)
    work = np.empty(native.work_array(img.shape), np.uint32)
    mid, out = np.empty((80, 64, 3), np.uint8), np.empty((64, 64, 3), np.uint8)
    assert kernels.area_resize(img, 6, 10, work, mid, out)  # the good call, for contrast
    want = out.copy()
    readonly = np.zeros((64, 64, 3), np.uint8)
    readonly.flags.writeable = False
    bad_calls = [
        (img, 6, 10, work, mid, np.zeros((64, 63, 3), np.uint8)),  # out one column short
        (
            img,
            6,
            10,
            work,
            np.zeros((80, 64, 4), np.uint8),
            np.zeros((64, 64, 3), np.uint8),
        ),  # mid of 4 channels
        (img, 6, 10, work[:100], mid, np.zeros((64, 64, 3), np.uint8)),  # work too small
        (img.astype(np.float32), 6, 10, work, mid, np.zeros((64, 64, 3), np.uint8)),  # not uint8
        (img[:, ::2], 6, 5, work, mid, np.zeros((64, 64, 3), np.uint8)),  # a strided view
        (img, 6, 10, work, mid, readonly),  # nowhere to write
        (img, 0, 10, work, mid, np.zeros((64, 64, 3), np.uint8)),  # no box
        (np.zeros((480, 640, 5), np.uint8), 6, 10, work, mid, np.zeros((64, 64, 5), np.uint8)),  # 5 channels
        (img, 6, 10, work, mid, np.zeros((80, 64, 3), np.uint8)),  # no row step left: box_mean's case
    ]
    for i, (src, kh, kw, wk, m, o) in enumerate(bad_calls):
        before = o.copy()
        assert kernels.area_resize(src, kh, kw, wk, m, o) is False, i
        assert np.array_equal(o, before), i
    assert kernels.box_mean(img, 6, 10, work, np.zeros((80, 65, 3), np.uint8)) is False
    assert kernels.area_rows(mid, work, np.zeros((64, 64, 2), np.uint8)) is False
    assert kernels.area_rows(mid, work, np.zeros((90, 64, 3), np.uint8)) is False  # an upscale
    with pytest.raises(TypeError):
        kernels.area_resize(img, 6, 10, work, mid)  # a missing argument is a programming error, raised
    assert np.array_equal(out, want)


def _tie_rich(rng: np.random.Generator, shape: tuple[int, ...], trial: int) -> np.ndarray:
    if trial % 3 == 0:
        return rng.integers(0, 256, shape, dtype=np.uint8)
    if trial % 3 == 1:  # black and white: many means end in exactly .5
        return rng.integers(0, 2, shape, dtype=np.uint8) * 255
    return rng.integers(120, 136, shape, dtype=np.uint8)  # a narrow band of greys: ties and near-ties


def test_the_c_row_step_is_opencvs_inter_area_bit_for_bit():
    """area_resize's second step for the usual cameras (64x80 -> 64x64, 64x72 -> 64x64: an area downscale along
    the rows only, by a non-integer factor) in C: OpenCV's float weights and operation order, so
    cv2.resize(INTER_AREA)'s pixels exactly, on random sizes, 1-4 channels and tie-rich images."""
    from wam_ros.data import native

    kernels = native.load()
    if kernels is None:
        pytest.skip("the C kernels are not built")
    rng = np.random.default_rng(33)
    checked = refused = 0
    camera_cases = [((80, 64), 64), ((72, 64), 64), ((72, 128), 64), ((120, 96), 96), ((3, 5), 2)]
    for trial in range(2000):
        if trial < 250:
            (sh, w), dh = camera_cases[trial % len(camera_cases)]
        else:
            dh, w = (int(v) for v in rng.integers(1, 40, 2))
            sh = dh + int(rng.integers(0, 3 * dh + 2))
        channels = int(rng.choice([0, 1, 2, 3, 4]))
        img = _tie_rich(rng, (sh, w) + ((channels,) if channels else ()), trial)
        out = np.empty((dh, w) + ((channels,) if channels > 1 else ()), np.uint8)
        work = np.empty(native.work_array(img.shape), np.uint32)
        if not kernels.area_rows(img, work, out):  # no downscale or a whole-number one: OpenCV's other paths
            assert sh % dh == 0, (sh, dh)
            refused += 1
            continue
        ref = cv2.resize(img, (w, dh), interpolation=cv2.INTER_AREA)
        assert np.array_equal(out, ref.reshape(out.shape)), (sh, w, dh, channels, trial)
        checked += 1
    assert checked > 1700 and refused > 0
    # a different width is not a rows-only step: refused, nothing written, left to cv2
    img = np.zeros((80, 64, 3), np.uint8)
    assert not kernels.area_rows(
        img, np.empty(native.work_array(img.shape), np.uint32), np.empty((64, 60, 3), np.uint8)
    )


@pytest.mark.parametrize(
    ("h", "w"), [(480, 640), (720, 1280), (1080, 1920), (480, 848), (240, 320), (479, 641), (100, 70)]
)
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_area_resize_gives_the_same_pixels_with_and_without_the_c_kernels(h, w, channels):
    from wam_ros.data import native

    if native.load() is None:
        pytest.skip("the C kernels are not built")
    img = _camera_like(h, w, channels, seed=3 * h + w)
    if channels == 1 and h % 2:
        img = img[:, :, 0]  # a (h, w) mono frame as well as (h, w, 1)
    for size in ((64, 64), (96, 96), (48, 64), (120, 160)):
        fast = area_resize(img, size)
        with native.disabled():
            slow = area_resize(img, size)
        assert fast.shape == slow.shape and fast.dtype == slow.dtype == np.uint8, (h, w, size)
        assert np.array_equal(fast, slow), (h, w, channels, size)


def test_box_mean_is_opencvs_integer_factor_area_resize_bit_for_bit(resize_path):
    """area_resize's first step (exact kh x kw box means) is computed in C (or with a numpy row reduction and a cv2
    box filter without the C kernels) instead of OpenCV's scalar area loop; it must equal cv2.resize(INTER_AREA)
    exactly, rounding ties included, for every factor, size and channel count (2 x 2 goes to cv2 itself: its SIMD
    path rounds halves up)."""
    from wam_ros.data.images import box_mean

    rng = np.random.default_rng(21)
    checked = 0
    for trial in range(1500):
        kh, kw = int(rng.integers(1, 13)), int(rng.integers(1, 13))
        if kh == kw == 1:
            continue
        oh, ow = int(rng.integers(1, 24)), int(rng.integers(1, 24))
        channels = int(rng.choice([0, 1, 2, 3, 4]))  # 0: a (h, w) image
        shape = (oh * kh, ow * kw) + ((channels,) if channels else ())
        if trial % 3 == 0:
            img = rng.integers(0, 256, shape, dtype=np.uint8)
        elif trial % 3 == 1:  # black and white: many box means end in exactly .5
            img = rng.integers(0, 2, shape, dtype=np.uint8) * 255
        else:  # a narrow band of greys: ties and near-ties
            img = rng.integers(120, 136, shape, dtype=np.uint8)
        ref = cv2.resize(img, (ow, oh), interpolation=cv2.INTER_AREA)
        out = box_mean(img, kh, kw)
        assert out.shape == ref.shape and out.dtype == np.uint8, (kh, kw, shape)
        assert np.array_equal(out, ref), (kh, kw, shape, trial)
        checked += 1
    assert checked > 1400
    # the camera case, on a camera-like frame, and a box large enough for uint32 row sums
    img = _camera_like(480, 640, 3, 3)
    assert np.array_equal(box_mean(img, 6, 10), cv2.resize(img, (64, 80), interpolation=cv2.INTER_AREA))
    # 20 x 20: wide sums (uint32 rows, a float64 box filter); 300 x 300: sums past 2 ** 24, cv2 itself
    for k in (20, 300):
        big = rng.integers(0, 256, (2 * k, 3 * k, 3), dtype=np.uint8)
        assert np.array_equal(box_mean(big, k, k), cv2.resize(big, (3, 2), interpolation=cv2.INTER_AREA))
    # a non-contiguous view and a 2 x 2 box go through cv2 itself, with the same result
    view = img[:, ::2]
    assert np.array_equal(box_mean(view, 6, 4), cv2.resize(view, (80, 80), interpolation=cv2.INTER_AREA))
    assert np.array_equal(box_mean(img, 2, 2), cv2.resize(img, (320, 240), interpolation=cv2.INTER_AREA))


def _numpy_path(fn, *args):
    """fn(*args) with the C kernels switched off."""
    from wam_ros.data import native

    with native.disabled():
        return fn(*args)


def _outcome(fn, *args):
    try:
        out = fn(*args)
    except Exception as exc:  # the same refusal either way is fine; a crash would end the test run
        return type(exc).__name__
    return out


@settings(max_examples=300, deadline=None)
@given(
    h=st.integers(1, 260),
    w=st.integers(1, 340),
    channels=st.sampled_from([0, 1, 2, 3, 4, 5]),
    size=st.tuples(st.integers(1, 96), st.integers(1, 96)),
    view=st.sampled_from(["whole", "cropped", "strided", "float32", "int16"]),
    seed=st.integers(0, 2**16),
)
def test_area_resize_is_the_same_with_and_without_the_c_kernels_for_any_input(
    h, w, channels, size, view, seed
):
    """Sizes, channel counts, views and dtypes no camera of ours sends: the C kernels take what they handle and leave
    the rest to numpy and cv2, so the result (or the refusal) is the numpy path's, and nothing crashes."""
    from wam_ros.data import native

    if native.load() is None:
        pytest.skip("the C kernels are not built")
    rng = np.random.default_rng(seed)
    img = _tie_rich(rng, (h, w) + ((channels,) if channels else ()), seed)
    if view == "cropped" and h > 2:
        img = img[1:-1]  # a contiguous block of rows
    elif view == "strided" and w > 1:
        img = img[:, ::2]  # not contiguous
    elif view == "float32":
        img = img.astype(np.float32)
    elif view == "int16":
        img = img.astype(np.int16)
    fast = _outcome(area_resize, img, size)
    slow = _outcome(_numpy_path, area_resize, img, size)
    if isinstance(slow, str):
        assert fast == slow, (img.shape, img.dtype, size)
    else:
        assert isinstance(fast, np.ndarray) and fast.shape == slow.shape and fast.dtype == slow.dtype
        assert np.array_equal(fast, slow), (img.shape, img.dtype, size, view)
