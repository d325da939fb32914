/* C code of lasagne_tagger/ops/lrn_op.py (Caffe's ACROSS_CHANNELS LRN; the
   module docstring gives the formulas).  Macros besides c_support.h's:
     DTYPE          the element type
     LT_HALF        n // 2, the window's half width
     LT_K, LT_ALPHA, LT_BETA   the parameters (float literals)
     LT_BETA_IS_075 1 when beta == 0.75 (s ** beta as sqrt(s) sqrt(sqrt(s)))
   Each direction is a loop over (image, channel) planes, shared out among
   OpenMP threads; within a plane every step is a plain loop over its
   pixels, which the compiler vectorizes. */

#section support_code_apply
/* S[p] = s for every pixel p of plane c of the image xb: k plus alpha
   times the squares of the window's channels, one pass per channel, in
   the graph's order */
static inline void APPLY_SPECIFIC(lrn_scale)(DTYPE* S, const DTYPE* xb,
                                             npy_intp c, npy_intp C,
                                             npy_intp HW)
{
    for (npy_intp p = 0; p < HW; ++p) S[p] = (DTYPE)LT_K;
    for (npy_intp j = c - LT_HALF; j <= c + LT_HALF; ++j) {
        if (j < 0 || j >= C) continue;
        const DTYPE* xj = xb + j * HW;
        for (npy_intp p = 0; p < HW; ++p)
            S[p] += (DTYPE)LT_ALPHA * (xj[p] * xj[p]);
    }
}

/* s ** beta */
static inline DTYPE APPLY_SPECIFIC(lrn_power)(DTYPE s)
{
#if LT_BETA_IS_075
    const DTYPE root = sqrt(s);
    return root * sqrt(root);
#else
    return pow(s, (DTYPE)LT_BETA);
#endif
}

#section forward
/* y = x / s ** beta, from INPUT_0 (x) into OUTPUT_0 (y) */
{
PyArrayObject* xc = PyArray_GETCONTIGUOUS(INPUT_0);
if (!xc) FAIL;
const npy_intp N = PyArray_DIMS(xc)[0], C = PyArray_DIMS(xc)[1];
const npy_intp HW = PyArray_DIMS(xc)[2] * PyArray_DIMS(xc)[3];
if (lt_alloc_output(&OUTPUT_0, 4, PyArray_DIMS(xc), PyArray_TYPE(xc))) {
    Py_DECREF(xc);
    FAIL;
}
const DTYPE* xd = (const DTYPE*)PyArray_DATA(xc);
DTYPE* yd = (DTYPE*)PyArray_DATA(OUTPUT_0);
LT_OMP(omp parallel for schedule(static))
for (npy_intp plane = 0; plane < N * C; ++plane) {
    const npy_intp b = plane / C, c = plane % C;
    const DTYPE* xp = xd + plane * HW;
    DTYPE* S = yd + plane * HW;   /* s, then y, in place */
    APPLY_SPECIFIC(lrn_scale)(S, xd + b * C * HW, c, C, HW);
    for (npy_intp p = 0; p < HW; ++p)
        S[p] = xp[p] / APPLY_SPECIFIC(lrn_power)(S[p]);
}
Py_DECREF(xc);
}

#section gradient
/* gx (OUTPUT_0) from x (INPUT_0) and gy (INPUT_1).
   pass 1: gx = 1 / s^beta (kept in the output) and t = gy x / s^(beta + 1);
   pass 2: gx = gy gx - 2 alpha beta x (sum of t over the window) */
{
PyArrayObject* xc = PyArray_GETCONTIGUOUS(INPUT_0);
if (!xc) FAIL;
PyArrayObject* gc = PyArray_GETCONTIGUOUS(INPUT_1);
if (!gc) { Py_DECREF(xc); FAIL; }
#define LT_RELEASE Py_DECREF(xc); Py_DECREF(gc);
if (!PyArray_SAMESHAPE(xc, gc)) {
    PyErr_SetString(PyExc_ValueError,
                    "CaffeLRNGrad: gradient shape mismatch");
    LT_RELEASE FAIL;
}
const npy_intp N = PyArray_DIMS(xc)[0], C = PyArray_DIMS(xc)[1];
const npy_intp HW = PyArray_DIMS(xc)[2] * PyArray_DIMS(xc)[3];
if (lt_alloc_output(&OUTPUT_0, 4, PyArray_DIMS(xc), PyArray_TYPE(xc))) {
    LT_RELEASE FAIL;
}
const DTYPE* xd = (const DTYPE*)PyArray_DATA(xc);
const DTYPE* gd = (const DTYPE*)PyArray_DATA(gc);
DTYPE* od = (DTYPE*)PyArray_DATA(OUTPUT_0);
DTYPE* t = (DTYPE*)malloc(sizeof(DTYPE) * N * C * HW);
if (!t) { LT_RELEASE PyErr_NoMemory(); FAIL; }
int failed = 0;
LT_OMP(omp parallel for schedule(static))
for (npy_intp plane = 0; plane < N * C; ++plane) {
    const npy_intp b = plane / C, c = plane % C;
    const DTYPE* xp = xd + plane * HW;
    const DTYPE* gp = gd + plane * HW;
    DTYPE* S = od + plane * HW;
    DTYPE* tp = t + plane * HW;
    APPLY_SPECIFIC(lrn_scale)(S, xd + b * C * HW, c, C, HW);
    for (npy_intp p = 0; p < HW; ++p) {
        const DTYPE s = S[p];
        const DTYPE P = APPLY_SPECIFIC(lrn_power)(s);
        S[p] = (DTYPE)1 / P;
        tp[p] = gp[p] * xp[p] / (P * s);
    }
}
LT_OMP(omp parallel)
{
    LT_SCRATCH(DTYPE, w, HW + 1);
    LT_OMP(omp for schedule(static))
    for (npy_intp plane = 0; plane < N * C; ++plane) {
        if (!w) continue;
        const npy_intp b = plane / C, c = plane % C;
        const DTYPE* tb = t + b * C * HW;
        const DTYPE* xp = xd + plane * HW;
        const DTYPE* gp = gd + plane * HW;
        DTYPE* op = od + plane * HW;
        for (npy_intp p = 0; p < HW; ++p) w[p] = 0;
        for (npy_intp j = c - LT_HALF; j <= c + LT_HALF; ++j) {
            if (j < 0 || j >= C) continue;
            const DTYPE* tj = tb + j * HW;
            for (npy_intp p = 0; p < HW; ++p) w[p] += tj[p];
        }
        for (npy_intp p = 0; p < HW; ++p)
            op[p] = gp[p] * op[p]
                    - (DTYPE)(2 * LT_ALPHA * LT_BETA) * xp[p] * w[p];
    }
    free(w);
}
free(t);
LT_RELEASE
#undef LT_RELEASE
if (failed) { PyErr_NoMemory(); FAIL; }
}
