/* C code of lasagne_tagger/ops/bias_relu_op.py (the bias and Lasagne's
   rectify, optionally for several (x, b) pairs concatenated along the
   channels).  Macros besides c_support.h's:
     DTYPE        the element type
     LT_NAME      the op's name, a string literal (for error messages)
     LT_PAIRS     the number of (x, b) pairs
     LT_XS, LT_BS their x and b inputs, as brace-enclosed lists
   Both ops loop over (image, concatenated channel) planes, shared out among
   OpenMP threads. */

#section support_code
#ifndef LT_BIAS_RELU_SUPPORT
#define LT_BIAS_RELU_SUPPORT
/* Which pair the concatenated channel ct comes from (off: the pairs'
   channel offsets, off[i + 1] past the last). */
static inline int lt_pair_of(npy_intp ct, const npy_intp* off)
{
    int i = 0;
    while (ct >= off[i + 1]) ++i;
    return i;
}
#endif

#section inputs
/* Contiguous copies of the (x, b) inputs in xc/bc and their data in xd/bd,
   checked to agree (images, rows, columns, one bias per channel): N, H, W,
   HW, each pair's channels cs and offsets off into the concatenated
   channels, CT the total.  LT_BR_RELEASE drops the copies; LT_BR_PLANE
   starts a plane. */
PyArrayObject* xs_in[LT_PAIRS] = LT_XS;
PyArrayObject* bs_in[LT_PAIRS] = LT_BS;
PyArrayObject* xc[LT_PAIRS] = {0};
PyArrayObject* bc[LT_PAIRS] = {0};
#define LT_BR_RELEASE for (int i_ = 0; i_ < LT_PAIRS; ++i_) \
    { Py_XDECREF(xc[i_]); Py_XDECREF(bc[i_]); }
for (int i = 0; i < LT_PAIRS; ++i) {
    xc[i] = PyArray_GETCONTIGUOUS(xs_in[i]);
    bc[i] = PyArray_GETCONTIGUOUS(bs_in[i]);
    if (!xc[i] || !bc[i]) { LT_BR_RELEASE FAIL; }
}
const npy_intp N = PyArray_DIMS(xc[0])[0];
const npy_intp H = PyArray_DIMS(xc[0])[2], W = PyArray_DIMS(xc[0])[3];
const npy_intp HW = H * W;
npy_intp cs[LT_PAIRS], off[LT_PAIRS + 1];
const DTYPE* xd[LT_PAIRS];
const DTYPE* bd[LT_PAIRS];
off[0] = 0;
for (int i = 0; i < LT_PAIRS; ++i) {
    cs[i] = PyArray_DIMS(xc[i])[1];
    off[i + 1] = off[i] + cs[i];
    if (PyArray_DIMS(xc[i])[0] != N || PyArray_DIMS(xc[i])[2] != H
            || PyArray_DIMS(xc[i])[3] != W) {
        PyErr_Format(PyExc_ValueError, LT_NAME ": input %d is "
                     "(%ld, %ld, %ld, %ld), input 0 has %ld "
                     "images of %ld x %ld", i,
                     (long)PyArray_DIMS(xc[i])[0], (long)cs[i],
                     (long)PyArray_DIMS(xc[i])[2],
                     (long)PyArray_DIMS(xc[i])[3], (long)N, (long)H,
                     (long)W);
        LT_BR_RELEASE FAIL;
    }
    if (PyArray_DIMS(bc[i])[0] != cs[i]) {
        PyErr_Format(PyExc_ValueError, LT_NAME ": %ld channels but "
                     "%ld biases", (long)cs[i],
                     (long)PyArray_DIMS(bc[i])[0]);
        LT_BR_RELEASE FAIL;
    }
    xd[i] = (const DTYPE*)PyArray_DATA(xc[i]);
    bd[i] = (const DTYPE*)PyArray_DATA(bc[i]);
}
const npy_intp CT = off[LT_PAIRS];
/* the start of one (image n, concatenated channel ct) plane: the pair it
   comes from (i), its channel there (c), its bias, and its input plane
   (xp, at offset src into the pair's x) */
#define LT_BR_PLANE \
    const npy_intp n = plane / CT, ct = plane % CT; \
    const int i = lt_pair_of(ct, off); \
    const npy_intp c = ct - off[i]; \
    const DTYPE bias = bd[i][c]; \
    const npy_intp src = (n * cs[i] + c) * HW; \
    const DTYPE* xp = xd[i] + src

#section forward
/* y (OUTPUT_0) = rectify(x + b), the pairs' results concatenated */
{
#include_section inputs
npy_intp dims[4] = {N, CT, H, W};
if (lt_alloc_output(&OUTPUT_0, 4, dims, PyArray_TYPE(xc[0]))) {
    LT_BR_RELEASE FAIL;
}
DTYPE* yd = (DTYPE*)PyArray_DATA(OUTPUT_0);
LT_OMP(omp parallel for schedule(static))
for (npy_intp plane = 0; plane < N * CT; ++plane) {
    LT_BR_PLANE;
    DTYPE* yp = yd + plane * HW;
    for (npy_intp p = 0; p < HW; ++p) {
        const DTYPE s = xp[p] + bias;
        /* Lasagne's rectify, 0.5 * (s + |s|), literally: the same bits for
           every s, infinities and NaN included */
        yp[p] = (DTYPE)0.5 * (s + (DTYPE)fabs(s));
    }
}
LT_BR_RELEASE
#undef LT_BR_RELEASE
#undef LT_BR_PLANE
}

#section gradient
/* (gx1, gb1, gx2, gb2, ...) (the outputs) from the pairs and gy (the last
   input, LT_GY) */
{
#include_section inputs
PyArrayObject* gc = PyArray_GETCONTIGUOUS(LT_GY);
if (!gc) { LT_BR_RELEASE FAIL; }
#define LT_RELEASE LT_BR_RELEASE Py_DECREF(gc);
if (PyArray_NDIM(gc) != 4 || PyArray_DIMS(gc)[0] != N
        || PyArray_DIMS(gc)[1] != CT || PyArray_DIMS(gc)[2] != H
        || PyArray_DIMS(gc)[3] != W) {
    PyErr_SetString(PyExc_ValueError,
                    "BiasReLUGrad: gradient shape mismatch");
    LT_RELEASE FAIL;
}
PyArrayObject** gxs[LT_PAIRS] = LT_GXS;
PyArrayObject** gbs[LT_PAIRS] = LT_GBS;
DTYPE* od[LT_PAIRS];
DTYPE* bo[LT_PAIRS];
for (int i = 0; i < LT_PAIRS; ++i) {
    if (lt_alloc_output(gxs[i], 4, PyArray_DIMS(xc[i]), PyArray_TYPE(xc[0]))
            || lt_alloc_output(gbs[i], 1, PyArray_DIMS(bc[i]),
                               PyArray_TYPE(xc[0]))) {
        LT_RELEASE FAIL;
    }
    od[i] = (DTYPE*)PyArray_DATA(*gxs[i]);
    bo[i] = (DTYPE*)PyArray_DATA(*gbs[i]);
}
const DTYPE* gd = (const DTYPE*)PyArray_DATA(gc);
double* partial = (double*)malloc(sizeof(double) * (N * CT + 1));
if (!partial) { LT_RELEASE PyErr_NoMemory(); FAIL; }
LT_OMP(omp parallel for schedule(static))
for (npy_intp plane = 0; plane < N * CT; ++plane) {
    LT_BR_PLANE;
    const DTYPE* gp = gd + plane * HW;
    DTYPE* op = od[i] + src;
    double acc = 0;
    for (npy_intp p = 0; p < HW; ++p) {
        const DTYPE s = xp[p] + bias;
        const DTYPE sg = (DTYPE)((s > 0) - (s < 0));
        const DTYPE h = (DTYPE)0.5 * gp[p];
        /* Lasagne's 0.5 * g + 0.5 * g * sgn(s); NaN s gives NaN */
        const DTYPE v = s != s ? s : h + h * sg;
        op[p] = v;
        acc += (double)v;
    }
    partial[plane] = acc;
}
/* each bias gradient: per channel, the planes' float64 sums over images in
   order */
for (npy_intp ct = 0; ct < CT; ++ct) {
    const int i = lt_pair_of(ct, off);
    double acc = 0;
    for (npy_intp n = 0; n < N; ++n) acc += partial[n * CT + ct];
    bo[i][ct - off[i]] = (DTYPE)acc;
}
free(partial);
LT_RELEASE
#undef LT_RELEASE
#undef LT_BR_RELEASE
#undef LT_BR_PLANE
}
