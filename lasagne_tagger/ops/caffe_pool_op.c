/* C code of lasagne_tagger/ops/caffe_pool_op.py (Caffe's max pooling and
   its gradient).  Macros besides c_support.h's:
     DTYPE             the element type
     LT_KP, LT_S, LT_P the pool size, stride and padding (ints)
     LT_SAME           1 for stride 1 and 2 * pad == pool - 1 ("same"
                       pooling: output planes of the input's shape)
   Each direction loops over (image, channel) planes, shared out among
   OpenMP threads, with per-thread scratch rows. */

#section support_code
#ifndef LT_CAFFE_POOL_SUPPORT
#define LT_CAFFE_POOL_SUPPORT
static npy_intp lt_caffe_pool_len(npy_intp size, int k, int s, int p)
{
    /* ceil((size + 2p - k) / s) + 1, the last window not starting in the
       padding; the same formula as pool_shape.caffe_pool_output_length */
    npy_intp num = size + 2 * p - k;
    npy_intp n = (num >= 0 ? (num + s - 1) / s : -((-num) / s)) + 1;
    if (p && (n - 1) * s >= size + p) n -= 1;
    return n < 1 ? 1 : n;
}

/* [lo, hi): the input range of output index `out` along an axis of length
   `size`, clipped to the input */
#define LT_POOL_WINDOW(out, lo, hi, size) \
    npy_intp lo = (out) * LT_S - LT_P, hi = lo + LT_KP; \
    if (hi > (size)) hi = (size); \
    if (lo < 0) lo = 0
#endif

#section support_code_apply
/* One plane of "same" pooling, where output and input planes have the same
   shape, so output element i of the flattened plane reads input elements
   i - p + j (row pass, into rm) and i + (r - p) * W (column pass).  Each
   pass is one flat loop over the plane, vectorized even for 7x7 planes,
   then redone, clipped, where a window crosses a row's (or the plane's)
   edge.  The comparisons run in the general path's order (ascending
   column, then ascending row, strict >), so ties, signed zeros and NaN give
   the same result.  TRACK: also the flat index of each window's first
   maximum (ra for the rows, oa for the windows; -1 when nothing beats
   -inf), for the gradient; otherwise the maxima go to zp.  The first
   maximum of a window is the first maximum of the first row whose own
   maximum is the window's, so the two passes find it too. */
#define LT_TAKE(v, idx) \
    if (TRACK) { const int t_ = (v) > m; a = t_ ? (idx) : a; \
                 m = t_ ? (v) : m; } \
    else { m = (v) > m ? (v) : m; }
#define LT_ROW_OUT(i) { rm[i] = m; if (TRACK) ra[i] = a; }
#define LT_WIN_OUT(i) { if (TRACK) oa[i] = a; else zp[i] = m; }
template <int TRACK>
static inline void APPLY_SPECIFIC(lt_same_plane)(
    const DTYPE* xp, npy_intp H, npy_intp W, DTYPE* rm, npy_intp* ra,
    npy_intp* oa, DTYPE* zp)
{
    const npy_intp HW = H * W;
    for (npy_intp i = LT_P; i < HW - LT_P; ++i) {
        DTYPE m = -INFINITY; npy_intp a = -1;
        for (int j = 0; j < LT_KP; ++j) {
            const DTYPE v = xp[i - LT_P + j];
            LT_TAKE(v, i - LT_P + j)
        }
        LT_ROW_OUT(i)
    }
    for (npy_intp r = 0; r < H; ++r)
        for (npy_intp c = 0; c < W; ++c) {
            if (c == LT_P && W - LT_P > c) {
                c = W - LT_P - 1;
                continue;
            }
            LT_POOL_WINDOW(c, lo, hi, W);
            DTYPE m = -INFINITY; npy_intp a = -1;
            for (npy_intp q = r * W + lo; q < r * W + hi; ++q) {
                const DTYPE v = xp[q];
                LT_TAKE(v, q)
            }
            LT_ROW_OUT(r * W + c)
        }
    for (npy_intp i = LT_P * W; i < HW - LT_P * W; ++i) {
        DTYPE m = -INFINITY; npy_intp a = -1;
        for (int r = 0; r < LT_KP; ++r) {
            const npy_intp q = i + (r - LT_P) * W;
            const DTYPE v = rm[q];
            LT_TAKE(v, ra[q])
        }
        LT_WIN_OUT(i)
    }
    for (npy_intp oh = 0; oh < H; ++oh) {
        if (oh == LT_P && H - LT_P > oh) {
            oh = H - LT_P - 1;
            continue;
        }
        LT_POOL_WINDOW(oh, lo, hi, H);
        for (npy_intp c = 0; c < W; ++c) {
            DTYPE m = -INFINITY; npy_intp a = -1;
            for (npy_intp q = lo * W + c; q < hi * W + c; q += W) {
                const DTYPE v = rm[q];
                LT_TAKE(v, ra[q])
            }
            LT_WIN_OUT(oh * W + c)
        }
    }
}
#undef LT_TAKE
#undef LT_ROW_OUT
#undef LT_WIN_OUT

/* One plane of the general forward pass.  The max does not depend on
   which element is the first maximum, so the pass is separable: a max over
   each window's columns, row by row, into rm (H x OW), then over its rows:
   2k comparisons an output instead of k*k, in loops over ow that the
   compiler vectorizes.  Windows that lie inside the row run as a
   fixed-length loop the compiler unrolls; the clipped ones at the edges as
   a loop over the window. */
static inline void APPLY_SPECIFIC(lt_pool_plane)(
    const DTYPE* xp, npy_intp H, npy_intp W, npy_intp OH, npy_intp OW,
    DTYPE* rm, DTYPE* zp)
{
    /* interior windows: [ow * s - p, ow * s - p + k) inside [0, W) */
    npy_intp ow_lo = (LT_P + LT_S - 1) / LT_S;
    npy_intp ow_hi = W + LT_P >= LT_KP ? (W + LT_P - LT_KP) / LT_S + 1 : 0;
    if (ow_lo > OW) ow_lo = OW;
    if (ow_hi > OW) ow_hi = OW;
    if (ow_hi < ow_lo) ow_hi = ow_lo;
    for (npy_intp r = 0; r < H; ++r) {
        const DTYPE* row = xp + r * W;
        for (npy_intp ow = 0; ow < OW; ++ow) {
            if (ow == ow_lo) ow = ow_hi;
            if (ow >= OW) break;
            LT_POOL_WINDOW(ow, ws, we, W);
            DTYPE m = -INFINITY;
            for (npy_intp q = ws; q < we; ++q)
                { const DTYPE v = row[q]; m = v > m ? v : m; }
            rm[r * OW + ow] = m;
        }
        for (npy_intp ow = ow_lo; ow < ow_hi; ++ow) {
            const npy_intp q0 = ow * LT_S - LT_P;
            DTYPE m = -INFINITY;
            for (npy_intp q = q0; q < q0 + LT_KP; ++q)
                { const DTYPE v = row[q]; m = v > m ? v : m; }
            rm[r * OW + ow] = m;
        }
    }
    for (npy_intp oh = 0; oh < OH; ++oh) {
        LT_POOL_WINDOW(oh, hs, he, H);
        DTYPE* out = zp + oh * OW;
        for (npy_intp ow = 0; ow < OW; ++ow) out[ow] = -INFINITY;
        for (npy_intp r = hs; r < he; ++r) {
            const DTYPE* t = rm + r * OW;
            for (npy_intp ow = 0; ow < OW; ++ow)
                out[ow] = t[ow] > out[ow] ? t[ow] : out[ow];
        }
    }
}

#section forward
/* z (OUTPUT_0) = max-pool(x (INPUT_0)) */
{
if (PyArray_NDIM(INPUT_0) != 4) {
    PyErr_SetString(PyExc_ValueError, "CaffeMaxPool: input not 4D");
    FAIL;
}
PyArrayObject* xc = PyArray_GETCONTIGUOUS(INPUT_0);
if (!xc) FAIL;
const npy_intp N = PyArray_DIMS(xc)[0], C = PyArray_DIMS(xc)[1];
const npy_intp H = PyArray_DIMS(xc)[2], W = PyArray_DIMS(xc)[3];
const npy_intp OH = lt_caffe_pool_len(H, LT_KP, LT_S, LT_P);
const npy_intp OW = lt_caffe_pool_len(W, LT_KP, LT_S, LT_P);
npy_intp dims[4] = {N, C, OH, OW};
if (lt_alloc_output(&OUTPUT_0, 4, dims, PyArray_TYPE(xc))) {
    Py_DECREF(xc);
    FAIL;
}
const DTYPE* xd = (const DTYPE*)PyArray_DATA(xc);
DTYPE* zd = (DTYPE*)PyArray_DATA(OUTPUT_0);
int failed = 0;
#if LT_SAME
/* an empty plane still has one (-inf) output: the general loop */
if (H > 0 && W > 0) {
    LT_OMP(omp parallel)
    {
        LT_SCRATCH(DTYPE, rm, H * OW + 1);
        LT_OMP(omp for schedule(static))
        for (npy_intp plane = 0; plane < N * C; ++plane) {
            if (!rm) continue;
            APPLY_SPECIFIC(lt_same_plane)<0>(xd + plane * H * W, H, W, rm,
                                             NULL, NULL, zd + plane * H * W);
        }
        free(rm);
    }
} else
#endif
{
    LT_OMP(omp parallel)
    {
        LT_SCRATCH(DTYPE, rm, H * OW + 1);
        LT_OMP(omp for schedule(static))
        for (npy_intp plane = 0; plane < N * C; ++plane) {
            if (!rm) continue;
            APPLY_SPECIFIC(lt_pool_plane)(xd + plane * H * W, H, W, OH, OW,
                                          rm, zd + plane * OH * OW);
        }
        free(rm);
    }
}
Py_DECREF(xc);
if (failed) { PyErr_NoMemory(); FAIL; }
}

#section gradient
/* gx (OUTPUT_0) of CaffeMaxPool from x (INPUT_0) and gz (INPUT_1): each
   window's incoming gradient goes to its first maximum (row-major, strict
   >); overlapping windows add up */
{
PyArrayObject* xc = PyArray_GETCONTIGUOUS(INPUT_0);
if (!xc) FAIL;
PyArrayObject* gc = PyArray_GETCONTIGUOUS(INPUT_1);
if (!gc) { Py_DECREF(xc); FAIL; }
#define LT_RELEASE Py_DECREF(xc); Py_DECREF(gc);
const npy_intp N = PyArray_DIMS(xc)[0], C = PyArray_DIMS(xc)[1];
const npy_intp H = PyArray_DIMS(xc)[2], W = PyArray_DIMS(xc)[3];
const npy_intp OH = PyArray_DIMS(gc)[2], OW = PyArray_DIMS(gc)[3];
if (PyArray_DIMS(gc)[0] != N || PyArray_DIMS(gc)[1] != C
        || OH != lt_caffe_pool_len(H, LT_KP, LT_S, LT_P)
        || OW != lt_caffe_pool_len(W, LT_KP, LT_S, LT_P)) {
    PyErr_SetString(PyExc_ValueError,
                    "CaffeMaxPoolGrad: gradient shape mismatch");
    LT_RELEASE FAIL;
}
if (lt_alloc_output(&OUTPUT_0, 4, PyArray_DIMS(xc), PyArray_TYPE(xc))) {
    LT_RELEASE FAIL;
}
const DTYPE* xd = (const DTYPE*)PyArray_DATA(xc);
const DTYPE* gd = (const DTYPE*)PyArray_DATA(gc);
DTYPE* od = (DTYPE*)PyArray_DATA(OUTPUT_0);
int failed = 0;
#if LT_SAME
/* note: a separable row pass with argmaxes per plane row, like the forward
   pass's, was not faster than a scan of each window for strided windows,
   so only "same" pooling (flat passes over the whole plane) tracks
   argmaxes through two passes. */
LT_OMP(omp parallel)
{
    LT_SCRATCH(DTYPE, rm, H * W + 1);
    LT_SCRATCH(npy_intp, ra, H * W + 1);
    LT_SCRATCH(npy_intp, oa, H * W + 1);
    LT_OMP(omp for schedule(static))
    for (npy_intp plane = 0; plane < N * C; ++plane) {
        if (!(rm && ra && oa)) continue;
        const DTYPE* gp = gd + plane * H * W;
        DTYPE* op = od + plane * H * W;
        APPLY_SPECIFIC(lt_same_plane)<1>(xd + plane * H * W, H, W, rm, ra,
                                         oa, NULL);
        for (npy_intp i = 0; i < H * W; ++i) op[i] = 0;
        for (npy_intp i = 0; i < H * W; ++i)  /* the general path's order */
            if (oa[i] >= 0) op[oa[i]] += gp[i];
    }
    free(rm);
    free(ra);
    free(oa);
}
#else
LT_OMP(omp parallel for schedule(static))
for (npy_intp plane = 0; plane < N * C; ++plane) {
    const DTYPE* xp = xd + plane * H * W;
    const DTYPE* gp = gd + plane * OH * OW;
    DTYPE* op = od + plane * H * W;
    for (npy_intp i = 0; i < H * W; ++i) op[i] = 0;
    for (npy_intp oh = 0; oh < OH; ++oh) {
        LT_POOL_WINDOW(oh, hs, he, H);
        for (npy_intp ow = 0; ow < OW; ++ow) {
            LT_POOL_WINDOW(ow, ws, we, W);
            DTYPE m = -INFINITY;
            npy_intp arg = -1;
            for (npy_intp r = hs; r < he; ++r)
                for (npy_intp q = ws; q < we; ++q) {
                    const DTYPE v = xp[r * W + q];
                    if (v > m) { m = v; arg = r * W + q; }
                }
            if (arg >= 0) op[arg] += gp[oh * OW + ow];
        }
    }
}
#endif
LT_RELEASE
#undef LT_RELEASE
if (failed) { PyErr_NoMemory(); FAIL; }
}
