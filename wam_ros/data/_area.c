/* The camera resize's two area steps in C, OpenCV's results bit for bit (wam_ros.data.images, docs/resize.md).

   Module wam_ros.data._area (wam_ros.data.native imports it, or reports it missing); each function takes numpy
   arrays (any C-contiguous uint8 buffer), checks every shape here, runs without the GIL (so the runtime's two-band
   resize can run two calls at once) and returns True when it wrote its output, False when the case is one it leaves
   to numpy and cv2 (nothing written):

     box_mean(src, kh, kw, work, out)          exact kh x kw box means of a uint8 (h, w[, c]) image:
                                               cv2.resize(INTER_AREA) by integer factors (OpenCV's resizeAreaFast_:
                                               int box sums, stored as cvRound(float(sum) * (1.f / area)))
     area_rows(src, work, out)                 cv2.resize(INTER_AREA) of a downscale along the rows only, by a
                                               non-integer factor (OpenCV's ResizeArea_Invoker, its float weights
                                               and operations in the same order)
     area_resize(src, kh, kw, work, mid, out)  the two in one call: box means into `mid`, then the row step into
                                               `out` (640x480 -> 64x80 -> 64x64; 1280x720 or 1920x1080 -> 64x72 -> 64x64)

   `work` is a writable buffer of at least 16 * w * c bytes (work_bytes(src)). Build: -O3 -ffp-contract=off (no fused
   multiply-adds: OpenCV's x86 baseline has none, and a contraction would change roundings) -fno-math-errno (lrintf
   as one instruction). tests/test_images.py checks each against cv2.resize on thousands of random images full of
   exact .5 ties. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

static inline uint8_t round_u8(float v) {
    /* cvRound (round half to even under the default rounding mode), then saturate_cast<uchar> */
    long i = lrintf(v);
    return (uint8_t)(i < 0 ? 0 : i > 255 ? 255 : i);
}

/* Box means, one output row at a time:
   1. the kh source rows of the row of boxes added into `rows`, one source row per pass. On a frame not yet in
      the caches this is 2x faster (0.08 against 0.16-0.18 ms for 640x480x3 by 10 x 6, AMD EPYC) than reading
      two rows per pass, and than the code gcc makes when `src` is declared restrict: hence no restrict there;
   2. along `rows`, sums of kw pixels of one channel (stride C) by doubling: a[x] = rows[x] + rows[x + C],
      then a[x] + a[x + 2C], ...; the sums of 1, 2, 4, ... pixels that make up kw (its binary digits) are added
      into `acc` at each box's first pixel. Every pass is a plain loop over contiguous lanes, which the compiler
      vectorises; a box's k-th pixel one at a time (OpenCV's way) is a strided scalar loop, about 3x slower here;
   3. acc * (1.f / area), rounded half to even.
   Integer sums are exact in any order, so the result is OpenCV's whatever the order of the additions. */
#define BOX_MEAN(NAME, ACC, C)                                                                                     \
    static void NAME(const uint8_t *src, long h, long w, long cn, long kh, long kw, ACC *rows,                     \
                     ACC *restrict a, ACC *restrict b, uint32_t *restrict acc, uint8_t *restrict out) {            \
        const long c = (C) ? (C) : cn; /* a constant for the common channel counts, for the compiler */          \
        const long oh = h / kh, ow = w / kw, wc = w * c, n = ow * c, stride = kw * c;                             \
        const float inv = 1.0f / (float)(kh * kw);                                                                 \
        for (long y = 0; y < oh; y++) {                                                                            \
            const uint8_t *s = src + y * kh * wc;                                                                  \
            for (long x = 0; x < wc; x++) rows[x] = s[x];                                                          \
            for (long k = 1; k < kh; k++) {                                                                        \
                const uint8_t *t = s + k * wc;                                                                     \
                for (long x = 0; x < wc; x++) rows[x] += t[x];                                                     \
            }                                                                                                      \
            for (long j = 0; j < n; j++) acc[j] = 0;                                                               \
            const ACC *cur = rows;                                                                                 \
            ACC *bufs[2] = {a, b};                                                                                 \
            long m = 1, off = 0, len = wc, rem = kw;                                                               \
            int pi = 0;                                                                                            \
            for (;;) {                                                                                             \
                if (rem & 1) {                                                                                     \
                    const ACC *q = cur + off * c;                                                                  \
                    for (long bx = 0; bx < ow; bx++)                                                               \
                        for (long ch = 0; ch < c; ch++) acc[bx * c + ch] += q[bx * stride + ch];                   \
                    off += m;                                                                                      \
                }                                                                                                  \
                rem >>= 1;                                                                                         \
                if (!rem) break;                                                                                   \
                ACC *restrict nx = bufs[pi];                                                                       \
                pi ^= 1;                                                                                           \
                const long shift = m * c;                                                                          \
                len -= shift;                                                                                      \
                for (long x = 0; x < len; x++) nx[x] = (ACC)(cur[x] + cur[x + shift]);                             \
                cur = nx;                                                                                          \
                m *= 2;                                                                                            \
            }                                                                                                      \
            uint8_t *restrict o = out + y * n;                                                                     \
            for (long j = 0; j < n; j++) o[j] = round_u8((float)acc[j] * inv);                                     \
        }                                                                                                          \
    }

BOX_MEAN(box_u16_c1, uint16_t, 1)
BOX_MEAN(box_u16_c3, uint16_t, 3)
BOX_MEAN(box_u16_c4, uint16_t, 4)
BOX_MEAN(box_u16_any, uint16_t, 0)
BOX_MEAN(box_u32_any, uint32_t, 0)

/* src: C-contiguous uint8 (h, w, c); out: (h / kh, w / kw, c); work: at least 4 * w * c uint32. Handles what
   images.box_mean does itself: kh, kw dividing h, w, not both 1 and not 2 x 2 (OpenCV's SIMD 2 x 2 path rounds
   halves up), 1 <= c <= 4, box sums below 2 ** 24 (exact in float). */
static int wam_box_mean_u8(const uint8_t *src, long h, long w, long c, long kh, long kw, void *work, uint8_t *out) {
    const long area = kh * kw;
    if (h < 1 || w < 1 || kh < 1 || kw < 1 || h % kh || w % kw || area < 2 || (kh == 2 && kw == 2) || c < 1 ||
        c > 4 || area * 255 >= (1L << 24))
        return 1;
    const long wc = w * c;
    if (area * 255 < (1L << 16)) { /* every box sum fits in uint16: twice the lanes per vector */
        uint16_t *rows = work, *a = rows + wc, *b = a + wc;
        uint32_t *acc = (uint32_t *)(b + wc + (wc & 1));
        if (c == 3)
            box_u16_c3(src, h, w, c, kh, kw, rows, a, b, acc, out);
        else if (c == 1)
            box_u16_c1(src, h, w, c, kh, kw, rows, a, b, acc, out);
        else if (c == 4)
            box_u16_c4(src, h, w, c, kh, kw, rows, a, b, acc, out);
        else
            box_u16_any(src, h, w, c, kh, kw, rows, a, b, acc, out);
    } else {
        uint32_t *rows = work, *a = rows + wc, *b = a + wc, *acc = b + wc;
        box_u32_any(src, h, w, c, kh, kw, rows, a, b, acc, out);
    }
    return 0;
}

/* src: C-contiguous uint8 (sh, w, cn); dst: (dh, w, cn), dh < sh: cv2.resize(INTER_AREA) of a downscale along
   the rows only by a factor that is not a whole number (640x480 -> 64x80 box means -> 64x64). OpenCV's
   ResizeArea_Invoker with its tables from computeResizeAreaTab: along x the table is then one weight of exactly
   1.f per pixel, so its row buffer holds the pixels as floats; along y each source row j adds beta_j * row to the
   sum of its output row, in the same order, and the sum is stored with cvRound. Anything else (a downscale along
   x too, a whole-number factor: OpenCV's integer path) returns 1 and goes to cv2. */
static int wam_area_rows_u8(const uint8_t *src, long sh, long w, long cn, long dh, uint8_t *dst, float *work) {
    if (sh < 2 || w < 1 || dh < 1 || dh >= sh || cn < 1 || cn > 4 || sh > (1L << 30) / 4) return 1;
    /* cv2.resize: inv_scale = dsize / ssize; scale = 1 / inv_scale; its integer path when the scale is within
       DBL_EPSILON of a whole number (saturate_cast<int> rounds to nearest) */
    const double scale = 1. / ((double)dh / (double)sh);
    if (fabs(scale - (double)lrint(scale)) < DBL_EPSILON) return 1;
    const long width = w * cn;
    float *restrict sum = work, *restrict row = work + width;
    long prev = 0;
    for (long x = 0; x < width; x++) sum[x] = 0.f;
    /* computeResizeAreaTab(sh, dh, 1, scale) walked entry by entry: (dy, sy, beta) */
    for (long dy = 0; dy < dh; dy++) {
        const double f1 = dy * scale, f2 = f1 + scale;
        const double cell = scale < sh - f1 ? scale : sh - f1;
        long s1 = (long)ceil(f1), s2 = (long)floor(f2);
        if (s2 > sh - 1) s2 = sh - 1;
        if (s1 > s2) s1 = s2;
        for (int part = 0; part < 3; part++) {
            long sy0, sy1;
            float beta;
            if (part == 0) { /* the partial first row */
                if (!(s1 - f1 > 1e-3)) continue;
                sy0 = s1 - 1, sy1 = s1, beta = (float)((s1 - f1) / cell);
            } else if (part == 1) { /* whole rows */
                sy0 = s1, sy1 = s2, beta = (float)(1.0 / cell);
            } else { /* the partial last row */
                if (!(f2 - s2 > 1e-3)) continue;
                double a = f2 - s2;
                if (a > 1.) a = 1.;
                if (a > cell) a = cell;
                sy0 = s2, sy1 = s2 + 1, beta = (float)(a / cell);
            }
            for (long sy = sy0; sy < sy1; sy++) {
                const uint8_t *restrict s = src + sy * width;
                for (long x = 0; x < width; x++) row[x] = (float)s[x]; /* 0.f + s * 1.f: exact */
                if (dy != prev) {
                    uint8_t *restrict d = dst + prev * width;
                    for (long x = 0; x < width; x++) {
                        d[x] = round_u8(sum[x]);
                        sum[x] = beta * row[x];
                    }
                    prev = dy;
                } else {
                    for (long x = 0; x < width; x++) sum[x] += beta * row[x];
                }
            }
        }
    }
    uint8_t *restrict d = dst + prev * width;
    for (long x = 0; x < width; x++) d[x] = round_u8(sum[x]);
    return 0;
}

/* area_resize's two steps in one call: box means of src (h, w, c) by kh x kw into mid (h / kh, w / kw, c), then
   the row step from mid into dst (dh, w / kw, c). Returns 1, with nothing written to dst, when the row step is not
   one wam_area_rows_u8 handles or the box step not one wam_box_mean_u8 handles. work: at least 4 * w * c uint32. */
static int wam_area_resize_u8(const uint8_t *src, long h, long w, long c, long kh, long kw, long dh, void *work,
                              uint8_t *mid, uint8_t *dst) {
    if (kh < 1 || kw < 1) return 1;
    const long mh = h / kh, mw = w / kw;
    if (mh <= dh || mh < 2 || mh > (1L << 30) / 4) return 1;
    const double scale = 1. / ((double)dh / (double)mh);
    if (fabs(scale - (double)lrint(scale)) < DBL_EPSILON) return 1;
    const int r = wam_box_mean_u8(src, h, w, c, kh, kw, work, mid);
    if (r) return r;
    return wam_area_rows_u8(mid, mh, mw, c, dh, dst, work);
}

/* ---- Python bindings ------------------------------------------------------------------------------------------ */

typedef struct {
    Py_buffer view;
    long h, w, c; /* (h, w) or (h, w, c) */
} Image;

/* A C-contiguous uint8 buffer of 2 or 3 dimensions (1 <= c <= 4) into `im`; 0, or -1 (no exception set) when the
   object is anything else: the caller then returns False and numpy and cv2 take the case. */
static int get_image(PyObject *obj, Image *im, int writable) {
    if (PyObject_GetBuffer(obj, &im->view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0) {
        PyErr_Clear();
        return -1;
    }
    const Py_buffer *v = &im->view;
    const char *f = v->format ? v->format : "B";
    if (strchr("@=<>!", f[0]) && f[0] != 0) f++; /* a byte order mark means nothing for one byte */
    const int u8 = v->itemsize == 1 && strcmp(f, "B") == 0;
    if (!u8 || (v->ndim != 2 && v->ndim != 3) || v->shape[0] < 1 || v->shape[1] < 1 ||
        (v->ndim == 3 && (v->shape[2] < 1 || v->shape[2] > 4))) {
        PyBuffer_Release(&im->view);
        return -1;
    }
    im->h = (long)v->shape[0];
    im->w = (long)v->shape[1];
    im->c = v->ndim == 3 ? (long)v->shape[2] : 1;
    return 0;
}

/* out must hold (h, w) pixels of c channels: (h, w, c), or (h, w) / (h, w, 1) for one channel */
static int shape_is(const Image *out, long h, long w, long c) {
    return out->h == h && out->w == w && out->c == c;
}

static int get_work(PyObject *obj, Py_buffer *view, long w, long c) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) {
        PyErr_Clear();
        return -1;
    }
    if (view->len < 16 * w * c || ((uintptr_t)view->buf % sizeof(uint32_t)) != 0) {
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static int get_long(PyObject *obj, long *out) {
    *out = PyLong_AsLong(obj);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static PyObject *py_box_mean(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    long kh, kw;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "box_mean(src, kh, kw, work, out)");
        return NULL;
    }
    if (get_long(args[1], &kh) < 0 || get_long(args[2], &kw) < 0) return NULL;
    Image src, out;
    Py_buffer work;
    int r = 1;
    if (get_image(args[0], &src, 0) < 0) Py_RETURN_FALSE;
    if (get_image(args[4], &out, 1) < 0) {
        PyBuffer_Release(&src.view);
        Py_RETURN_FALSE;
    }
    if (kh >= 1 && kw >= 1 && shape_is(&out, src.h / kh, src.w / kw, src.c) &&
        get_work(args[3], &work, src.w, src.c) == 0) {
        Py_BEGIN_ALLOW_THREADS
        r = wam_box_mean_u8(src.view.buf, src.h, src.w, src.c, kh, kw, work.buf, out.view.buf);
        Py_END_ALLOW_THREADS
        PyBuffer_Release(&work);
    }
    PyBuffer_Release(&out.view);
    PyBuffer_Release(&src.view);
    return PyBool_FromLong(r == 0);
}

static PyObject *py_area_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "area_rows(src, work, out)");
        return NULL;
    }
    Image src, out;
    Py_buffer work;
    int r = 1;
    if (get_image(args[0], &src, 0) < 0) Py_RETURN_FALSE;
    if (get_image(args[2], &out, 1) < 0) {
        PyBuffer_Release(&src.view);
        Py_RETURN_FALSE;
    }
    if (shape_is(&out, out.h, src.w, src.c) && get_work(args[1], &work, src.w, src.c) == 0) {
        Py_BEGIN_ALLOW_THREADS
        r = wam_area_rows_u8(src.view.buf, src.h, src.w, src.c, out.h, out.view.buf, work.buf);
        Py_END_ALLOW_THREADS
        PyBuffer_Release(&work);
    }
    PyBuffer_Release(&out.view);
    PyBuffer_Release(&src.view);
    return PyBool_FromLong(r == 0);
}

static PyObject *py_area_resize(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    long kh, kw;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "area_resize(src, kh, kw, work, mid, out)");
        return NULL;
    }
    if (get_long(args[1], &kh) < 0 || get_long(args[2], &kw) < 0) return NULL;
    Image src, mid, out;
    Py_buffer work;
    int r = 1;
    if (get_image(args[0], &src, 0) < 0) Py_RETURN_FALSE;
    if (get_image(args[4], &mid, 1) < 0) {
        PyBuffer_Release(&src.view);
        Py_RETURN_FALSE;
    }
    if (get_image(args[5], &out, 1) < 0) {
        PyBuffer_Release(&mid.view);
        PyBuffer_Release(&src.view);
        Py_RETURN_FALSE;
    }
    if (kh >= 1 && kw >= 1 && shape_is(&mid, src.h / kh, src.w / kw, src.c) &&
        shape_is(&out, out.h, src.w / kw, src.c) && get_work(args[3], &work, src.w, src.c) == 0) {
        Py_BEGIN_ALLOW_THREADS
        r = wam_area_resize_u8(src.view.buf, src.h, src.w, src.c, kh, kw, out.h, work.buf, mid.view.buf,
                               out.view.buf);
        Py_END_ALLOW_THREADS
        PyBuffer_Release(&work);
    }
    PyBuffer_Release(&out.view);
    PyBuffer_Release(&mid.view);
    PyBuffer_Release(&src.view);
    return PyBool_FromLong(r == 0);
}

static PyMethodDef area_methods[] = {
    {"box_mean", (PyCFunction)(void (*)(void))py_box_mean, METH_FASTCALL,
     "box_mean(src, kh, kw, work, out) -> bool: exact box means (cv2.resize INTER_AREA by integer factors)"},
    {"area_rows", (PyCFunction)(void (*)(void))py_area_rows, METH_FASTCALL,
     "area_rows(src, work, out) -> bool: cv2.resize INTER_AREA along the rows only, non-integer factor"},
    {"area_resize", (PyCFunction)(void (*)(void))py_area_resize, METH_FASTCALL,
     "area_resize(src, kh, kw, work, mid, out) -> bool: box_mean into mid, then area_rows into out"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef area_module = {
    PyModuleDef_HEAD_INIT, "_area", "C kernels of wam_ros.data.images (docs/resize.md); use wam_ros.data.native",
    -1, area_methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__area(void) { return PyModule_Create(&area_module); }
