/* C code of lasagne_tagger/ops/conv_op.py: 2D correlation as im2col + one
   GEMM per image (a block of rows at a time for large images), the three
   ops in one template, as Theano's own corr_gemm.c.  Macros besides
   c_support.h's:
     DTYPE                 the element type (float or double)
     LT_GEMM               the BLAS GEMM for it (sgemm_ or dgemm_)
     LT_NAME               the op's name, a string literal
     LT_DIRECTION          0: y = corr(x, W) from (LT_A = x, LT_B = W);
                           1: gW from (LT_A = x, LT_B = gy);
                           2: gx from (LT_A = gy, LT_B = W, LT_SHAPE)
     LT_KH, LT_KW, LT_SH, LT_SW, LT_PH, LT_PW   filter, stride, padding
     LT_DIRECT             1 for a 1x1 filter, stride 1, no padding: the
                           GEMMs read the images (and write gx) directly
     LT_FLIP               1: the convolution (the taps reversed)
     LT_BLOCK              unfold_bytes (0: never in blocks)
     LT_BIAS_RELU          1: y = rectify(y + b[m]), the bias LT_BIAS
     LT_IMAGES_PARALLEL    1: the images shared out among OpenMP threads,
                           BLAS single-threaded inside
     LT_BLAS_GET_THREADS, LT_BLAS_SET_THREADS(n)   the BLAS's thread calls
*/

#section support_code
#ifndef LT_CONV_SUPPORT
#define LT_CONV_SUPPORT
/* The GEMMs' matrix arguments without const.  With an empty blas.ldflags
   Theano's NumPy fallback defines sgemm_/dgemm_ with non-const A and B: a
   C++ overload beside the declared BLAS function, which only a call with
   non-const pointers reaches (a const call would need the BLAS symbol). */
template <typename T> static inline T* lt_mut(const T* p)
{ return const_cast<T*>(p); }
#define LT_MUT(p) lt_mut(p)
#endif

#section support_code_apply
/* out[m, c, i, j] = w[m, c, kh - 1 - i, kw - 1 - j] */
static void APPLY_SPECIFIC(lt_flip)(const DTYPE* w, npy_intp M, npy_intp C,
                                    DTYPE* out)
{
    for (npy_intp mc = 0; mc < M * C; ++mc)
        for (int i = 0; i < LT_KH; ++i)
            for (int j = 0; j < LT_KW; ++j)
                out[(mc * LT_KH + i) * LT_KW + j] =
                    w[(mc * LT_KH + LT_KH - 1 - i) * LT_KW + LT_KW - 1 - j];
}

/* [lo, hi): the output columns ow with 0 <= ow * sw - pw + j < W */
static void APPLY_SPECIFIC(lt_taps)(int W, int OW, int j, int* lo, int* hi)
{
    const int a = LT_PW - j;
    *lo = a > 0 ? (a + LT_SW - 1) / LT_SW : 0;
    const int b = W - 1 + LT_PW - j;
    *hi = b >= 0 ? b / LT_SW + 1 : 0;
    if (*lo > OW) *lo = OW;
    if (*hi > OW) *hi = OW;
    if (*hi < *lo) *hi = *lo;
}

/* Row-by-row unfolding (FOLD 0, im2col: image im into col) and folding back
   (FOLD 1, col2im: col added into im), for output rows [oh0, oh1) of one
   image of C planes H x W, K = C*kh*kw rows of (oh1 - oh0)*OW columns.  For
   each tap (c, i, j) the output columns whose input column lies inside the
   image, [lo, hi), are found once; the padding is zeros.  The folding adds
   in the tap, row, column order CorrMM's col2im uses. */
template <int FOLD>
static void APPLY_SPECIFIC(lt_unfold)(DTYPE* col, int C, int H, int W,
                                      int OW, int oh0, int oh1, DTYPE* im)
{
    for (int c = 0; c < C; ++c)
    for (int i = 0; i < LT_KH; ++i)
    for (int j = 0; j < LT_KW; ++j) {
        int lo, hi;
        APPLY_SPECIFIC(lt_taps)(W, OW, j, &lo, &hi);
        DTYPE* cp = col
            + ((npy_intp)(c * LT_KH + i) * LT_KW + j) * (oh1 - oh0) * OW;
        for (int oh = oh0; oh < oh1; ++oh, cp += OW) {
            const int ih = oh * LT_SH - LT_PH + i;
            if (ih < 0 || ih >= H) {
                if (!FOLD) for (int ow = 0; ow < OW; ++ow) cp[ow] = 0;
                continue;
            }
            DTYPE* row = im + ((npy_intp)c * H + ih) * W - LT_PW + j;
            if (FOLD) {
                for (int ow = lo; ow < hi; ++ow) row[ow * LT_SW] += cp[ow];
            } else {
                for (int ow = 0; ow < lo; ++ow) cp[ow] = 0;
                for (int ow = lo; ow < hi; ++ow) cp[ow] = row[ow * LT_SW];
                for (int ow = hi; ow < OW; ++ow) cp[ow] = 0;
            }
        }
    }
}

static inline void APPLY_SPECIFIC(lt_im2col)(const DTYPE* im, int C, int H,
                                             int W, int OW, int oh0, int oh1,
                                             DTYPE* col)
{
    APPLY_SPECIFIC(lt_unfold)<0>(col, C, H, W, OW, oh0, oh1, (DTYPE*)im);
}

static inline void APPLY_SPECIFIC(lt_col2im)(const DTYPE* col, int C, int H,
                                             int W, int OW, int oh0, int oh1,
                                             DTYPE* im)
{
    APPLY_SPECIFIC(lt_unfold)<1>((DTYPE*)col, C, H, W, OW, oh0, oh1, im);
}

/* bias_relu: BiasReLU's arithmetic on output columns [p0, p0 + count) of
   each of the M planes of one image's output yn (P columns a plane) */
static inline void APPLY_SPECIFIC(lt_bias_relu)(
    DTYPE* yn, npy_intp M, npy_intp P, npy_intp p0, npy_intp count,
    const char* bias, npy_intp bias_step)
{
    for (npy_intp m = 0; m < M; ++m) {
        const DTYPE bm = *(const DTYPE*)(bias + m * bias_step);
        DTYPE* yb = yn + m * P + p0;
        for (npy_intp p = 0; p < count; ++p) {
            const DTYPE v = yb[p] + bm;
            yb[p] = (DTYPE)0.5 * (v + (DTYPE)fabs(v));
        }
    }
}

#section code
{
/* contiguous copies of the inputs LT_A and LT_B, released by LT_RELEASE */
PyArrayObject* ac = PyArray_GETCONTIGUOUS(LT_A);
if (!ac) FAIL;
PyArrayObject* bc = PyArray_GETCONTIGUOUS(LT_B);
if (!bc) { Py_DECREF(ac); FAIL; }
#define LT_RELEASE Py_DECREF(ac); Py_DECREF(bc);
#define LT_MISMATCH { PyErr_SetString(PyExc_ValueError, \
                                      LT_NAME ": shape mismatch"); \
                      LT_RELEASE FAIL; }

/* the shapes: N, C, H, W, M, OH, OW and dims, the output's */
#if LT_DIRECTION == 0
const npy_intp N = PyArray_DIMS(ac)[0], C = PyArray_DIMS(ac)[1];
const npy_intp H = PyArray_DIMS(ac)[2], W = PyArray_DIMS(ac)[3];
const npy_intp M = PyArray_DIMS(bc)[0];
if (PyArray_DIMS(bc)[1] != C || PyArray_DIMS(bc)[2] != LT_KH
        || PyArray_DIMS(bc)[3] != LT_KW) LT_MISMATCH
#if LT_BIAS_RELU
const char* bias_ = PyArray_BYTES(LT_BIAS);
const npy_intp bias_step = PyArray_STRIDES(LT_BIAS)[0];
if (PyArray_DIMS(LT_BIAS)[0] != M) LT_MISMATCH
#endif
if (H + 2 * LT_PH < LT_KH || W + 2 * LT_PW < LT_KW) LT_MISMATCH
const npy_intp OH = (H + 2 * LT_PH - LT_KH) / LT_SH + 1;
const npy_intp OW = (W + 2 * LT_PW - LT_KW) / LT_SW + 1;
npy_intp dims[4] = {N, M, OH, OW};
#elif LT_DIRECTION == 1
const npy_intp N = PyArray_DIMS(ac)[0], C = PyArray_DIMS(ac)[1];
const npy_intp H = PyArray_DIMS(ac)[2], W = PyArray_DIMS(ac)[3];
const npy_intp M = PyArray_DIMS(bc)[1];
if (H + 2 * LT_PH < LT_KH || W + 2 * LT_PW < LT_KW) LT_MISMATCH
const npy_intp OH = (H + 2 * LT_PH - LT_KH) / LT_SH + 1;
const npy_intp OW = (W + 2 * LT_PW - LT_KW) / LT_SW + 1;
if (PyArray_DIMS(bc)[0] != N || PyArray_DIMS(bc)[2] != OH
        || PyArray_DIMS(bc)[3] != OW) LT_MISMATCH
npy_intp dims[4] = {M, C, LT_KH, LT_KW};
#else
const npy_intp N = PyArray_DIMS(ac)[0], M = PyArray_DIMS(ac)[1];
const npy_intp OH = PyArray_DIMS(ac)[2], OW = PyArray_DIMS(ac)[3];
const npy_intp C = PyArray_DIMS(bc)[1];
if (PyArray_DIMS(LT_SHAPE)[0] != 2) LT_MISMATCH
const npy_intp H = *(npy_int64*)PyArray_GETPTR1(LT_SHAPE, 0);
const npy_intp W = *(npy_int64*)PyArray_GETPTR1(LT_SHAPE, 1);
if (PyArray_DIMS(bc)[0] != M || PyArray_DIMS(bc)[2] != LT_KH
        || PyArray_DIMS(bc)[3] != LT_KW || H < 1 || W < 1
        || H + 2 * LT_PH < LT_KH || W + 2 * LT_PW < LT_KW
        || (H + 2 * LT_PH - LT_KH) / LT_SH + 1 != OH
        || (W + 2 * LT_PW - LT_KW) / LT_SW + 1 != OW) LT_MISMATCH
npy_intp dims[4] = {N, C, H, W};
#endif

if (OH < 1 || OW < 1) LT_MISMATCH
if (lt_alloc_output(&OUTPUT_0, 4, dims, PyArray_TYPE(ac))) {
    LT_RELEASE FAIL;
}
const npy_intp K = C * LT_KH * LT_KW, P = OH * OW;
int Ki = (int)K, Mi = (int)M, Pi = (int)P;
/* an image unfolded in blocks of rb output rows (unfold_bytes) */
npy_intp rb = OH;
if (!LT_DIRECT && LT_BLOCK > 0
        && (npy_intp)sizeof(DTYPE) * K * P > 2 * (npy_intp)LT_BLOCK) {
    rb = LT_BLOCK / ((npy_intp)sizeof(DTYPE) * K * OW);
    if (rb < 1) rb = 1;
}
char NT = 'N', TR = 'T';
const DTYPE one = 1, zero = 0;
#if LT_IMAGES_PARALLEL
int threads = omp_get_max_threads();
#else
int threads = 1;
#endif
if (threads > N) threads = (int)N;
if (threads < 1) threads = 1;
/* per-thread unfolded images (none when direct); the filters flipped (the
   convolution) for the GEMMs that read them; gW's per-thread partial sums,
   zeroed, so that a thread without images adds nothing (first[t]: the
   thread's next GEMM overwrites) */
DTYPE* col = LT_DIRECT ? NULL : (DTYPE*)malloc(
    sizeof(DTYPE) * ((size_t)threads * K * P + 1));
DTYPE* wf = NULL;
DTYPE* local = NULL;
int* first = NULL;
#if LT_DIRECTION == 1
local = (DTYPE*)calloc((size_t)threads * M * K + 1, sizeof(DTYPE));
first = (int*)malloc(sizeof(int) * (threads + 1));
if (first) for (int t = 0; t < threads; ++t) first[t] = 1;
const int missing = !local || !first;
#else
if (LT_FLIP) {
    wf = (DTYPE*)malloc(sizeof(DTYPE) * ((size_t)M * K + 1));
    if (wf) APPLY_SPECIFIC(lt_flip)((const DTYPE*)PyArray_DATA(bc), M, C, wf);
}
const DTYPE* wd = LT_FLIP ? wf : (const DTYPE*)PyArray_DATA(bc);
const int missing = LT_FLIP && !wf;
#endif
if ((!LT_DIRECT && !col) || missing) {
    free(col); free(wf); free(local); free(first);
    LT_RELEASE
    PyErr_NoMemory();
    FAIL;
}

if (N > 0 && K > 0 && M > 0) {
    const int saved_blas_threads = LT_BLAS_GET_THREADS;
    LT_BLAS_SET_THREADS(1);
#if LT_IMAGES_PARALLEL
#pragma omp parallel for schedule(static) num_threads(threads)
#endif
    for (npy_intp n = 0; n < N; ++n) {
#if LT_IMAGES_PARALLEL
        const int t = omp_get_thread_num();
#else
        const int t = 0;
#endif
        DTYPE* colt = col ? col + (npy_intp)t * K * P : NULL;
#if LT_DIRECTION == 0
        const DTYPE* xn = (const DTYPE*)PyArray_DATA(ac) + n * C * H * W;
        DTYPE* yn = (DTYPE*)PyArray_DATA(OUTPUT_0) + n * M * P;
#elif LT_DIRECTION == 1
        const DTYPE* xn = (const DTYPE*)PyArray_DATA(ac) + n * C * H * W;
        const DTYPE* gn = (const DTYPE*)PyArray_DATA(bc) + n * M * P;
#else
        const DTYPE* gn = (const DTYPE*)PyArray_DATA(ac) + n * M * P;
        DTYPE* out = (DTYPE*)PyArray_DATA(OUTPUT_0) + n * C * H * W;
        /* folded back block by block; direct, col is gx itself */
        if (colt)
            for (npy_intp i = 0; i < C * H * W; ++i) out[i] = 0;
#endif
        /* a GEMM per block of rb output rows, [oh0, oh1): Pb columns of the
           image's P (column-major matrices) */
        for (npy_intp oh0 = 0; oh0 < OH; oh0 += rb) {
            const npy_intp oh1 = oh0 + rb < OH ? oh0 + rb : OH;
            int Pb = (int)((oh1 - oh0) * OW);
#if LT_DIRECTION == 0
            /* y[n] (P x M) = col (P x K) * W (K x M) */
            if (colt) APPLY_SPECIFIC(lt_im2col)(xn, C, H, W, OW, (int)oh0,
                                                (int)oh1, colt);
            LT_GEMM(&NT, &NT, &Pb, &Mi, &Ki, &one,
                    LT_MUT(colt ? colt : xn + oh0 * OW),
                    colt ? &Pb : &Pi, LT_MUT(wd), &Ki, &zero,
                    yn + oh0 * OW, &Pi);
#if LT_BIAS_RELU
            APPLY_SPECIFIC(lt_bias_relu)(yn, M, P, oh0 * OW, Pb, bias_,
                                         bias_step);
#endif
#elif LT_DIRECTION == 1
            /* local (K x M) += col^T (K x P) * gy[n] (P x M) */
            if (colt) APPLY_SPECIFIC(lt_im2col)(xn, C, H, W, OW, (int)oh0,
                                                (int)oh1, colt);
            LT_GEMM(&TR, &NT, &Ki, &Mi, &Pb, &one,
                    LT_MUT(colt ? colt : xn + oh0 * OW),
                    colt ? &Pb : &Pi, LT_MUT(gn + oh0 * OW), &Pi,
                    first[t] ? &zero : &one, local + t * M * K, &Ki);
            first[t] = 0;
#else
            /* col (P x K) = gy[n] (P x M) * W^T (M x K) */
            LT_GEMM(&NT, &TR, &Pb, &Ki, &Mi, &one,
                    LT_MUT(gn + oh0 * OW), &Pi, LT_MUT(wd), &Ki, &zero,
                    colt ? colt : out + oh0 * OW, colt ? &Pb : &Pi);
            if (colt) APPLY_SPECIFIC(lt_col2im)(colt, C, H, W, OW, (int)oh0,
                                                (int)oh1, out);
#endif
        }
    }
    LT_BLAS_SET_THREADS(saved_blas_threads);
} else {
    PyArray_FILLWBYTE(OUTPUT_0, 0);   /* empty sums */
#if LT_DIRECTION == 0 && LT_BIAS_RELU
    /* no channels (K == 0): y = rectify(b) */
    for (npy_intp n = 0; n < N; ++n)
        APPLY_SPECIFIC(lt_bias_relu)((DTYPE*)PyArray_DATA(OUTPUT_0)
                                     + n * M * P, M, P, 0, P, bias_,
                                     bias_step);
#endif
}
#if LT_DIRECTION == 1
{
    /* in thread order, as CorrMM_gradWeights adds its partial sums; when
       flip, into the first partial sum, then flipped */
    DTYPE* od = (DTYPE*)PyArray_DATA(OUTPUT_0);
    DTYPE* sum = LT_FLIP ? local : od;
    for (npy_intp j = 0; j < M * K; ++j) {
        DTYPE acc = 0;
        for (int t = 0; t < threads; ++t) acc += local[t * M * K + j];
        sum[j] = acc;
    }
    if (LT_FLIP) APPLY_SPECIFIC(lt_flip)(local, M, C, od);
}
#endif
free(col); free(wf); free(local); free(first);
LT_RELEASE
#undef LT_MISMATCH
#undef LT_RELEASE
}
