"""2D correlation as im2col + one GEMM per image, for the CPU: forward,
input gradient and weight gradient (what Theano's ``CorrMM`` computes,
faster on GoogLeNet's layers).

``CorrMM`` unfolds each image into a scratch matrix (``im2col``) with a
bounds test per element, zeroes that matrix on every call, and for the
input gradient folds a GEMM's result back (``col2im``) the same way.  Here:

* a 1x1 filter with stride 1 and no padding (37 of GoogLeNet's 57 layers)
  needs no unfolding at all: the GEMMs read the images and write the input
  gradient directly;
* otherwise ``im2col`` and ``col2im`` work row by row: for each filter tap
  the columns that fall inside the image are found once, copied (or added)
  as a contiguous run, and the padding is filled with zeros; stride and
  padding are compile-time constants.

The GEMM calls are ``CorrMM``'s, with the same arguments, and ``col2im``
adds in ``CorrMM``'s order, so the results are the same, except for
images over 4 MiB unfolded (GoogLeNet's conv1 and conv2/3x3,
:data:`UNFOLD_BYTES`): those are unfolded (or folded back) in blocks of
output rows, a GEMM per block, so that the block is still in cache when
the next step reads it.  The forward sums are unchanged by the blocks
(bit for bit at GoogLeNet's sizes, tested); the weight gradient adds its
per-block GEMMs and ``col2im`` adds block by block, so their last bits
may differ from ``CorrMM``'s.  On smaller layers the smaller GEMMs lose
more than the cache gains.  Like ``CorrMM``
with OpenMP, images are shared out among threads and BLAS runs
single-threaded inside; the weight gradient is accumulated per thread and
added up in thread order.

* :class:`CorrGemm` ``y = corr(x, W)``, ``W`` of shape ``(M, C, kh, kw)``
  (with ``flip``, the convolution: the taps reversed in a copy of ``W``
  made once a call, and the weight gradient reversed back, so the GEMMs
  are those of Theano's ``conv2d`` with ``filter_flip=True``);
* :class:`CorrGemmGradInputs` ``gx`` from ``(W, gy, (H, W))``;
* :class:`CorrGemmGradWeights` ``gW`` from ``(x, gy)``.

Each op has a NumPy ``perform``; the tests compare them with ``CorrMM``
(values and gradients).  This module imports Theano; import it lazily.
"""
import numpy as np
from ..runtime import _theano  # noqa: F401 (prepares Theano)
import theano.tensor as T
from theano.gof import Apply, OpenMPOp
from theano.gradient import grad_not_implemented, grad_undefined
from theano.tensor import blas_headers
from theano.tensor.blas import blas_header_version, ldflags

from .c_support import alloc_output, cache_version

__all__ = ['CorrGemm', 'CorrGemmGradInputs', 'CorrGemmGradWeights',
           'UNFOLD_BYTES', 'fuse_bias_relu', 'register_bias_relu_fusion']

# note: measured on GoogLeNet's layers (2 cores, float32, batch 8,
# benchmarks/conv_layers.py): in 2 MiB blocks conv1 (7x7/2, 7.4 MB unfolded
# an image) runs 1.2x faster (forward 145 GFLOP/s instead of 123, both
# gradients too) and conv2/3x3 (7.2 MB) 1.08-1.11x; 2.7-3.6 MB layers
# blocked at 256-512 KiB lost up to 15% (smaller GEMMs), hence blocks only
# above twice this size (4 MiB).
UNFOLD_BYTES = 2 << 20


def _pair(v, name):
    v = tuple(int(i) for i in (v if isinstance(v, (tuple, list)) else
                               (v, v)))
    if len(v) != 2:
        raise ValueError('%s must be an int or a pair, got %r' % (name, v))
    return v


def _unfold(x, kernel, stride, pad):
    """NumPy im2col: ``(N, C, kh, kw, OH, OW)`` windows of ``x``."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
    n, c, h, w = x.shape
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), x.dtype)
    xp[:, :, ph:ph + h, pw:pw + w] = x
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    cols = np.empty((n, c, kh, kw, oh, ow), x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i:i + sh * (oh - 1) + 1:sh,
                                  j:j + sw * (ow - 1) + 1:sw]
    return cols


class _CorrGemmBase(OpenMPOp):
    """Properties, BLAS set-up (as Theano's ``BaseCorrMM``) and the C
    helpers shared by the three ops."""
    __props__ = ('kernel', 'stride', 'pad', 'flip', 'unfold_bytes')

    def __init__(self, kernel, stride=(1, 1), pad=(0, 0), flip=False,
                 openmp=None, unfold_bytes=UNFOLD_BYTES):
        super(_CorrGemmBase, self).__init__(openmp=openmp)
        if unfold_bytes is not None and int(unfold_bytes) < 0:
            raise ValueError('unfold_bytes must be >= 0 or None, got %r'
                             % (unfold_bytes,))
        self.unfold_bytes = None if not unfold_bytes else int(unfold_bytes)
        self.flip = bool(flip)
        self.kernel = _pair(kernel, 'kernel')
        self.stride = _pair(stride, 'stride')
        self.pad = _pair(pad, 'pad')
        if min(self.kernel) < 1 or min(self.stride) < 1 or min(self.pad) < 0:
            raise ValueError('bad convolution: kernel %s, stride %s, pad %s'
                             % (self.kernel, self.stride, self.pad))

    @property
    def direct(self):
        """A 1x1 filter, stride 1, no padding: no unfolding needed."""
        return (self.kernel == (1, 1) and self.stride == (1, 1)
                and self.pad == (0, 0))

    def _blas_type(self):
        import theano
        flags = theano.config.blas.ldflags
        return 'openblas' if 'openblas' in flags else \
            'mkl' if 'mkl' in flags else ''

    def c_support_code(self):
        code = blas_headers.blas_header_text() + _MUTABLE
        if self._blas_type() == 'openblas':
            code += blas_headers.openblas_threads_text()
        elif self._blas_type() == 'mkl':
            code += blas_headers.mkl_threads_text()
        return code

    def c_support_code_apply(self, node, name):
        sub = dict(self._sub(node), name=name)
        return _UNFOLD % dict(sub, im2col=_IM2COL % sub,
                              col2im=_COL2IM % sub)

    def c_libraries(self):
        return ldflags()

    def c_compile_args(self):
        return (ldflags(libs=False, flags=True)
                + super(_CorrGemmBase, self).c_compile_args())

    def c_lib_dirs(self):
        return ldflags(libs=False, libs_dir=True)

    def c_header_dirs(self):
        return ldflags(libs=False, include_dir=True)

    def c_code_cache_version(self):
        return cache_version(3, self, __file__, blas_header_version())

    def _sub(self, node):
        """Format values: the GEMM and C type for the output's dtype, the
        geometry, and OpenMP and BLAS thread calls (none without
        OpenMP)."""
        dtype = node.outputs[0].dtype
        if dtype not in ('float32', 'float64'):
            raise TypeError('%s: float32 or float64, got %s'
                            % (type(self).__name__, dtype))
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.pad
        sub = dict(gemm='sgemm_' if dtype == 'float32' else 'dgemm_',
                   ctype='float' if dtype == 'float32' else 'double',
                   kh=kh, kw=kw, sh=sh, sw=sw, ph=ph, pw=pw,
                   direct=int(self.direct), op=type(self).__name__,
                   block=self.unfold_bytes or 0,
                   flip=int(self.flip),
                   omp='', threads='1', tid='0', set_blas='', get_blas='0')
        import theano
        # note: without blas.ldflags Theano's sgemm_ is a NumPy fallback
        # that calls the Python C-API, not safe from OpenMP threads: then
        # the images run one after another.
        if self.openmp and theano.config.blas.ldflags:
            sub.update(omp='#pragma omp parallel for schedule(static) '
                           'num_threads(threads)',
                       threads='omp_get_max_threads()',
                       tid='omp_get_thread_num()')
            if self._blas_type() == 'openblas':
                sub.update(set_blas='openblas_set_num_threads',
                           get_blas='openblas_get_num_threads()')
            elif self._blas_type() == 'mkl':
                sub.update(set_blas='mkl_set_num_threads',
                           get_blas='mkl_get_max_threads()')
        return sub

    def _c_code(self, node, sub, parts):
        """The op's C code: ``parts`` gives the input names (``a``, ``b``),
        the shape lines, the output, the per-image body (and the
        ``epilogue`` it may include), the lines after the loop and the
        per-thread scratch the loop needs."""
        s = dict(self._sub(node), fail=sub['fail'], epilogue='',
                 empty_epilogue='')
        s.update(parts)
        s['mismatch'] = ('{ PyErr_SetString(PyExc_ValueError, "%s: shape '
                         'mismatch"); LT_RELEASE %s; }'
                         % (s['op'], sub['fail']))
        for k in ('epilogue', 'empty_epilogue', 'scratch', 'scratch_missing',
                  'scratch_free', 'body'):
            s[k] = s[k] % s
        return (_PROLOGUE + parts['shapes'] + _OUTPUT + _LOOP
                + parts['after'] + _EPILOGUE) % s


# The GEMMs' matrix arguments without const.  With an empty blas.ldflags
# Theano's NumPy fallback defines sgemm_/dgemm_ with non-const A and B: a
# C++ overload beside the declared BLAS function, which only a call with
# non-const pointers reaches (a const call would need the BLAS symbol).
_MUTABLE = r"""
template <typename T> static inline T* lt_mut(const T* p)
{ return const_cast<T*>(p); }
#define LT_MUT(p) lt_mut(p)
"""

# Row-by-row unfolding (im2col) and folding back (col2im, adding), for one
# image of C planes H x W into/from K = C*kh*kw rows of OH*OW columns.  For
# each tap (c, i, j) the output columns whose input column lies inside the
# image, [lo, hi), are found once per tap; the padding is zeros.  The
# folding adds in the tap, row, column order CorrMM's col2im uses.
_UNFOLD = r"""
static void lt_flip_%(name)s(const %(ctype)s* w, npy_intp M, npy_intp C,
                             %(ctype)s* out)
{
    /* out[m, c, i, j] = w[m, c, kh - 1 - i, kw - 1 - j] */
    for (npy_intp mc = 0; mc < M * C; ++mc)
        for (int i = 0; i < %(kh)d; ++i)
            for (int j = 0; j < %(kw)d; ++j)
                out[(mc * %(kh)d + i) * %(kw)d + j] =
                    w[(mc * %(kh)d + %(kh)d - 1 - i) * %(kw)d + %(kw)d - 1 - j];
}

static void lt_taps_%(name)s(int W, int OW, int j, int* lo, int* hi)
{
    /* output columns ow with 0 <= ow * %(sw)d - %(pw)d + j < W */
    const int a = %(pw)d - j;
    *lo = a > 0 ? (a + %(sw)d - 1) / %(sw)d : 0;
    const int b = W - 1 + %(pw)d - j;
    *hi = b >= 0 ? b / %(sw)d + 1 : 0;
    if (*lo > OW) *lo = OW;
    if (*hi > OW) *hi = OW;
    if (*hi < *lo) *hi = *lo;
}

%(im2col)s
%(col2im)s"""

def _tap_loop(signature, col, image_row, outside, inside):
    """C function over every (channel, tap, output row) of one image: the
    shared loop of im2col and col2im.  ``col`` and ``image_row`` declare
    the unfolded row and the image row (``row[ow * sw]`` is the tap's input
    at output column ``ow``), ``outside`` runs for output rows whose tap
    row lies in the padding, ``inside`` otherwise, with ``[lo, hi)`` the
    output columns inside the image."""
    return r"""
static void %s
{
    for (int c = 0; c < C; ++c)
    for (int i = 0; i < %%(kh)d; ++i)
    for (int j = 0; j < %%(kw)d; ++j) {
        int lo, hi;
        lt_taps_%%(name)s(W, OW, j, &lo, &hi);
        %s = col_
            + ((npy_intp)(c * %%(kh)d + i) * %%(kw)d + j) * (oh1 - oh0) * OW;
        for (int oh = oh0; oh < oh1; ++oh, cp += OW) {
            const int ih = oh * %%(sh)d - %%(ph)d + i;
            if (ih < 0 || ih >= H) { %s continue; }
            %s = im + ((npy_intp)c * H + ih) * W - %%(pw)d + j;
            %s
        }
    }
}
""" % (signature, col, outside, image_row, inside)


_IM2COL = _tap_loop(
    'lt_im2col_%(name)s(const %(ctype)s* im, int C, int H, int W, int OH, '
    'int OW, int oh0, int oh1, %(ctype)s* col_)', '%(ctype)s* cp',
    'const %(ctype)s* row',
    'for (int ow = 0; ow < OW; ++ow) cp[ow] = 0;',
    'for (int ow = 0; ow < lo; ++ow) cp[ow] = 0;\n'
    '            for (int ow = lo; ow < hi; ++ow) cp[ow] = row[ow * %(sw)d];\n'
    '            for (int ow = hi; ow < OW; ++ow) cp[ow] = 0;')
# note: adds in CorrMM's col2im order (tap, row, column), same sums
_COL2IM = _tap_loop(
    'lt_col2im_%(name)s(const %(ctype)s* col_, int C, int H, int W, int OH, '
    'int OW, int oh0, int oh1, %(ctype)s* im)', 'const %(ctype)s* cp',
    '%(ctype)s* row', '',
    'for (int ow = lo; ow < hi; ++ow) row[ow * %(sw)d] += cp[ow];')


# the start of a per-image body's loop over its blocks of rb output rows,
# [oh0, oh1): Pb columns of the image's P
_ROW_BLOCKS = r"""
                for (npy_intp oh0 = 0; oh0 < OH; oh0 += rb) {
                    const npy_intp oh1 = oh0 + rb < OH ? oh0 + rb : OH;
                    int Pb = (int)((oh1 - oh0) * OW);
"""

# C lines shared by the three ops: contiguous copies of the inputs a and b
# (released by LT_RELEASE), then the op's shape lines (setting N, C, H, W,
# M, OH, OW and dims, the output shape), then the output.
_PROLOGUE = r"""
        {
        PyArrayObject* ac = PyArray_GETCONTIGUOUS(%(a)s);
        if (!ac) { %(fail)s; }
        PyArrayObject* bc = PyArray_GETCONTIGUOUS(%(b)s);
        if (!bc) { Py_DECREF(ac); %(fail)s; }
        #define LT_RELEASE Py_DECREF(ac); Py_DECREF(bc);
"""
_OUTPUT = r"""
        if (OH < 1 || OW < 1) %(mismatch)s
""" + alloc_output('%(out)s', 4, 'dims', 'ac', 'LT_RELEASE', '%(fail)s') \
    + r"""
        const npy_intp K = C * %(kh)d * %(kw)d, P = OH * OW;
        int Ki = (int)K, Mi = (int)M, Pi = (int)P;
        /* an image unfolded in blocks of rb output rows (unfold_bytes) */
        npy_intp rb = OH;
        if (!%(direct)d && %(block)d > 0
                && (npy_intp)sizeof(%(ctype)s) * K * P
                   > 2 * (npy_intp)%(block)d) {
            rb = %(block)d / ((npy_intp)sizeof(%(ctype)s) * K * OW);
            if (rb < 1) rb = 1;
        }
        char NT = 'N', TR = 'T';
        const %(ctype)s one = 1, zero = 0;
        int threads = %(threads)s;
        if (threads > N) threads = (int)N;
        if (threads < 1) threads = 1;
        /* per-thread unfolded images (none when direct), then the op's own
           scratch */
        %(ctype)s* col = %(direct)d ? NULL : (%(ctype)s*)malloc(
            sizeof(%(ctype)s) * ((size_t)threads * K * P + 1));
        %(scratch)s
        if ((!%(direct)d && !col) || %(scratch_missing)s) {
            free(col); %(scratch_free)s LT_RELEASE
            PyErr_NoMemory();
            %(fail)s;
        }
"""
_LOOP = r"""
        if (N > 0 && K > 0 && M > 0) {
            const int saved_blas_threads = %(get_blas)s;
            %(set_blas)s(1);
            %(omp)s
            for (npy_intp n = 0; n < N; ++n) {
                const int t = %(tid)s;
                %(ctype)s* colt = col ? col + (npy_intp)t * K * P : NULL;
                %(body)s
            }
            %(set_blas)s(saved_blas_threads);
        } else {
            PyArray_FILLWBYTE(%(out)s, 0);   /* empty sums */
            %(empty_epilogue)s
        }
"""
_EPILOGUE = r"""
        free(col);
        %(scratch_free)s
        LT_RELEASE
        #undef LT_RELEASE
        }
"""


# the filters the forward and input-gradient GEMMs use (op scratch)
_WEIGHTS = r'''
        /* the filters flipped (true convolution), when flip */
        %(ctype)s* wf = %(flip)d ? (%(ctype)s*)malloc(
            sizeof(%(ctype)s) * ((size_t)M * K + 1)) : NULL;
        if (wf) lt_flip_%(name)s((const %(ctype)s*)PyArray_DATA(bc), M, C, wf);
        const %(ctype)s* wd = %(flip)d ? wf
                              : (const %(ctype)s*)PyArray_DATA(bc);
'''

# the _c_code parts of the two ops whose GEMMs read the filters
_WITH_WEIGHTS = dict(scratch=_WEIGHTS, scratch_missing='(%(flip)d && !wf)',
                     scratch_free='free(wf);', after='')


class CorrGemm(_CorrGemmBase):
    """``y = corr(x, W)``, or with ``flip`` the convolution (``W``'s taps
    reversed, as Lasagne 0.1's layers); ``y`` of shape ``(N, M, OH, OW)``
    with ``OH = (H + 2 ph - kh) // sh + 1``.

    With ``bias_relu``, ``y = rectify(corr(x, W) + b[m])`` from
    ``(x, W, b)``, exactly as :class:`~lasagne_tagger.ops.bias_relu_op.BiasReLU`
    computes it, applied to each block of rows right after its GEMM, while
    it is in cache.  That op has no gradient (the rectifier's needs the
    pre-activation it overwrites): :func:`fuse_bias_relu` puts it in
    compiled graphs where nothing else reads the pre-activation (inference).
    """
    __props__ = _CorrGemmBase.__props__ + ('bias_relu',)

    def __init__(self, kernel, stride=(1, 1), pad=(0, 0), flip=False,
                 openmp=None, unfold_bytes=UNFOLD_BYTES, bias_relu=False):
        super(CorrGemm, self).__init__(kernel, stride, pad, flip, openmp,
                                       unfold_bytes)
        self.bias_relu = bool(bias_relu)

    def make_node(self, x, w, *bias):
        x, w = T.as_tensor_variable(x), T.as_tensor_variable(w)
        if x.ndim != 4 or w.ndim != 4:
            raise TypeError('CorrGemm needs 4D tensors')
        if len(bias) != int(self.bias_relu):
            raise TypeError('CorrGemm%s takes %d inputs, got %d' % (
                ' with bias_relu' if self.bias_relu else '',
                2 + self.bias_relu, 2 + len(bias)))
        w = T.cast(w, x.dtype) if w.dtype != x.dtype else w
        bias = [T.as_tensor_variable(b) for b in bias]
        if any(b.ndim != 1 for b in bias):
            raise TypeError('CorrGemm: the bias must be 1D')
        bias = [T.cast(b, x.dtype) if b.dtype != x.dtype else b
                for b in bias]
        out = T.TensorType(x.dtype, (x.broadcastable[0], w.broadcastable[0],
                                     False, False))
        return Apply(self, [x, w] + bias, [out()])

    def infer_shape(self, node, shapes):
        (n, _, h, w), (m, _, _, _) = shapes[:2]
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.pad
        return [(n, m, (h + 2 * ph - kh) // sh + 1,
                 (w + 2 * pw - kw) // sw + 1)]

    def perform(self, node, inputs, outputs):
        x, w = inputs[:2]
        w = w[:, :, ::-1, ::-1] if self.flip else w
        cols = _unfold(x, self.kernel, self.stride, self.pad)
        y = np.ascontiguousarray(np.einsum('ncijhw,mcij->nmhw', cols, w),
                                 dtype=x.dtype)
        if self.bias_relu:
            s = y + inputs[2].astype(x.dtype)[None, :, None, None]
            y = (s.dtype.type(0.5) * (s + np.abs(s))).astype(x.dtype)
        outputs[0][0] = y

    def grad(self, inputs, output_grads):
        if self.bias_relu:
            return [grad_not_implemented(self, i, v)
                    for i, v in enumerate(inputs)]
        x, w = inputs
        gy, = output_grads
        props = dict(kernel=self.kernel, stride=self.stride, pad=self.pad,
                     flip=self.flip, openmp=self.openmp,
                     unfold_bytes=self.unfold_bytes)
        gx = CorrGemmGradInputs(**props)(w, gy, x.shape[2:])
        gw = CorrGemmGradWeights(**props)(x, gy)
        return [T.patternbroadcast(gx, x.broadcastable),
                T.patternbroadcast(T.cast(gw, w.dtype), w.broadcastable)]

    def c_code(self, node, name, inputs, outputs, sub):
        x, w = inputs[:2]
        bias = inputs[2] if self.bias_relu else None
        return self._c_code(node, sub, dict(
            _WITH_WEIGHTS, a=x, b=w, out=outputs[0], name=name,
            epilogue=_BIAS_RELU if bias else '',
            # no channels (K == 0): the sums are empty, y = rectify(b)
            empty_epilogue=_BIAS_RELU_EMPTY if bias else '',
            shapes=(r"""
        const npy_intp M_ = PyArray_DIMS(%(bias)s)[0];
        const char* bias_ = PyArray_BYTES(%(bias)s);
        const npy_intp bias_step = PyArray_STRIDES(%(bias)s)[0];
""".replace('%(bias)s', bias) if bias else '') + r"""
        const npy_intp N = PyArray_DIMS(ac)[0], C = PyArray_DIMS(ac)[1];
        const npy_intp H = PyArray_DIMS(ac)[2], W = PyArray_DIMS(ac)[3];
        const npy_intp M = PyArray_DIMS(bc)[0];
        if (PyArray_DIMS(bc)[1] != C || PyArray_DIMS(bc)[2] != %(kh)d
                || PyArray_DIMS(bc)[3] != %(kw)d) %(mismatch)s
""" + ('        if (M_ != M) %(mismatch)s\n' if bias else '') + r"""
        if (H + 2 * %(ph)d < %(kh)d || W + 2 * %(pw)d < %(kw)d) %(mismatch)s
        const npy_intp OH = (H + 2 * %(ph)d - %(kh)d) / %(sh)d + 1;
        const npy_intp OW = (W + 2 * %(pw)d - %(kw)d) / %(sw)d + 1;
        npy_intp dims[4] = {N, M, OH, OW};
""",
            body=r"""
                const %(ctype)s* xn = (const %(ctype)s*)PyArray_DATA(ac)
                                      + n * C * H * W;
                %(ctype)s* yn = (%(ctype)s*)PyArray_DATA(%(out)s)
                                + n * M * P;
                /* column-major: y[n] (P x M) = col (P x K) * W (K x M),
                   a GEMM per block of rows */
""" + _ROW_BLOCKS + r"""                    if (colt) lt_im2col_%(name)s(xn, C, H, W, OH, OW,
                                                 (int)oh0, (int)oh1, colt);
                    %(gemm)s(&NT, &NT, &Pb, &Mi, &Ki, &one,
                             LT_MUT(colt ? colt : xn + oh0 * OW),
                             colt ? &Pb : &Pi, LT_MUT(wd), &Ki, &zero,
                             yn + oh0 * OW, &Pi);
                    %(epilogue)s
                }
"""))


# CorrGemm's bias_relu: BiasReLU's arithmetic on the block just computed
_BIAS_RELU = r"""
                    for (npy_intp m = 0; m < M; ++m) {
                        const %(ctype)s bm =
                            *(const %(ctype)s*)(bias_ + m * bias_step);
                        %(ctype)s* yb = yn + m * P + oh0 * OW;
                        for (npy_intp p = 0; p < Pb; ++p) {
                            const %(ctype)s v = yb[p] + bm;
                            yb[p] = (%(ctype)s)0.5 * (v + (%(ctype)s)fabs(v));
                        }
                    }
"""
# ... and on the whole zero-filled output when the sums are empty
_BIAS_RELU_EMPTY = r"""
            for (npy_intp n = 0; n < N; ++n) {
                %(ctype)s* yn = (%(ctype)s*)PyArray_DATA(%(out)s) + n * M * P;
                const npy_intp oh0 = 0, Pb = P;
""" + _BIAS_RELU + r"""
            }
"""


class CorrGemmGradInputs(_CorrGemmBase):
    """``gx`` of :class:`CorrGemm` from ``(W, gy, (H, W))``."""

    def make_node(self, w, gy, shape):
        w, gy = T.as_tensor_variable(w), T.as_tensor_variable(gy)
        shape = T.as_tensor_variable(shape)
        if w.ndim != 4 or gy.ndim != 4 or shape.ndim != 1:
            raise TypeError('CorrGemmGradInputs needs 4D W and gy and a '
                            'shape vector')
        w = T.cast(w, gy.dtype) if w.dtype != gy.dtype else w
        out = T.TensorType(gy.dtype, (gy.broadcastable[0],
                                      w.broadcastable[1], False, False))
        return Apply(self, [w, gy, T.cast(shape, 'int64')], [out()])

    def infer_shape(self, node, shapes):
        (_, c, _, _), (n, _, _, _), _ = shapes
        shape = node.inputs[2]
        return [(n, c, shape[0], shape[1])]

    def perform(self, node, inputs, outputs):
        w, gy, shape = inputs
        w = w[:, :, ::-1, ::-1] if self.flip else w
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.pad
        n, _, oh, ow = gy.shape
        h, wd = int(shape[0]), int(shape[1])
        cols = np.einsum('nmhw,mcij->ncijhw', gy, w)
        padded = np.zeros((n, w.shape[1], max(h + 2 * ph, sh * (oh - 1) + kh),
                           max(wd + 2 * pw, sw * (ow - 1) + kw)), gy.dtype)
        for i in range(kh):
            for j in range(kw):
                padded[:, :, i:i + sh * (oh - 1) + 1:sh,
                       j:j + sw * (ow - 1) + 1:sw] += cols[:, :, i, j]
        outputs[0][0] = np.ascontiguousarray(
            padded[:, :, ph:ph + h, pw:pw + wd], dtype=gy.dtype)

    def grad(self, inputs, output_grads):
        return [grad_undefined(self, i, v) for i, v in enumerate(inputs)]

    def connection_pattern(self, node):
        return [[True], [True], [False]]

    def c_code(self, node, name, inputs, outputs, sub):
        w, gy, shape = inputs
        return self._c_code(node, sub, dict(
            _WITH_WEIGHTS, a=gy, b=w, out=outputs[0], name=name,
            shapes=r"""
        const npy_intp N = PyArray_DIMS(ac)[0], M = PyArray_DIMS(ac)[1];
        const npy_intp OH = PyArray_DIMS(ac)[2], OW = PyArray_DIMS(ac)[3];
        const npy_intp C = PyArray_DIMS(bc)[1];
        if (PyArray_DIMS(%(shape)s)[0] != 2) %(mismatch)s
        const npy_intp H = *(npy_int64*)PyArray_GETPTR1(%(shape)s, 0);
        const npy_intp W = *(npy_int64*)PyArray_GETPTR1(%(shape)s, 1);
        if (PyArray_DIMS(bc)[0] != M || PyArray_DIMS(bc)[2] != %(kh)d
                || PyArray_DIMS(bc)[3] != %(kw)d || H < 1 || W < 1
                || H + 2 * %(ph)d < %(kh)d || W + 2 * %(pw)d < %(kw)d
                || (H + 2 * %(ph)d - %(kh)d) / %(sh)d + 1 != OH
                || (W + 2 * %(pw)d - %(kw)d) / %(sw)d + 1 != OW) %(mismatch)s
        npy_intp dims[4] = {N, C, H, W};
""".replace('%(shape)s', shape),
            body=r"""
                const %(ctype)s* gn = (const %(ctype)s*)PyArray_DATA(ac)
                                      + n * M * P;
                %(ctype)s* out = (%(ctype)s*)PyArray_DATA(%(out)s)
                                 + n * C * H * W;
                /* column-major: col (P x K) = gy[n] (P x M) * W^T (M x K),
                   a GEMM per block of rows, folded back block by block;
                   direct, col is the input gradient itself */
                if (colt)
                    for (npy_intp i = 0; i < C * H * W; ++i) out[i] = 0;
""" + _ROW_BLOCKS + r"""                    %(gemm)s(&NT, &TR, &Pb, &Ki, &Mi, &one,
                             LT_MUT(gn + oh0 * OW), &Pi, LT_MUT(wd), &Ki, &zero,
                             colt ? colt : out + oh0 * OW, colt ? &Pb : &Pi);
                    if (colt) lt_col2im_%(name)s(colt, C, H, W, OH, OW,
                                                 (int)oh0, (int)oh1, out);
                }
"""))


class CorrGemmGradWeights(_CorrGemmBase):
    """``gW`` of :class:`CorrGemm` from ``(x, gy)``: ``(M, C, kh, kw)``."""

    def make_node(self, x, gy):
        x, gy = T.as_tensor_variable(x), T.as_tensor_variable(gy)
        if x.ndim != 4 or gy.ndim != 4:
            raise TypeError('CorrGemmGradWeights needs 4D tensors')
        gy = T.cast(gy, x.dtype) if gy.dtype != x.dtype else gy
        kh, kw = self.kernel
        out = T.TensorType(x.dtype, (gy.broadcastable[1], x.broadcastable[1],
                                     kh == 1, kw == 1))
        return Apply(self, [x, gy], [out()])

    def infer_shape(self, node, shapes):
        (_, c, _, _), (_, m, _, _) = shapes
        return [(m, c) + self.kernel]

    def perform(self, node, inputs, outputs):
        x, gy = inputs
        cols = _unfold(x, self.kernel, self.stride, self.pad)
        gw = np.einsum('ncijhw,nmhw->mcij', cols, gy)
        gw = gw[:, :, ::-1, ::-1] if self.flip else gw
        outputs[0][0] = np.ascontiguousarray(gw, dtype=x.dtype)

    def c_code(self, node, name, inputs, outputs, sub):
        x, gy = inputs
        return self._c_code(node, sub, dict(
            a=x, b=gy, out=outputs[0], name=name,
            # per-thread partial sums, zeroed: a thread without images adds
            # nothing; first[t]: the thread's next GEMM overwrites
            scratch=r"""
        %(ctype)s* local = (%(ctype)s*)calloc((size_t)threads * M * K + 1,
                                              sizeof(%(ctype)s));
        int* first = (int*)malloc(sizeof(int) * (threads + 1));
        if (first) for (int t = 0; t < threads; ++t) first[t] = 1;
""", scratch_missing='!local || !first',
            scratch_free='free(local); free(first);',
            shapes=r"""
        const npy_intp N = PyArray_DIMS(ac)[0], C = PyArray_DIMS(ac)[1];
        const npy_intp H = PyArray_DIMS(ac)[2], W = PyArray_DIMS(ac)[3];
        const npy_intp M = PyArray_DIMS(bc)[1];
        if (H + 2 * %(ph)d < %(kh)d || W + 2 * %(pw)d < %(kw)d) %(mismatch)s
        const npy_intp OH = (H + 2 * %(ph)d - %(kh)d) / %(sh)d + 1;
        const npy_intp OW = (W + 2 * %(pw)d - %(kw)d) / %(sw)d + 1;
        if (PyArray_DIMS(bc)[0] != N || PyArray_DIMS(bc)[2] != OH
                || PyArray_DIMS(bc)[3] != OW) %(mismatch)s
        npy_intp dims[4] = {M, C, %(kh)d, %(kw)d};
""",
            body=r"""
                const %(ctype)s* xn = (const %(ctype)s*)PyArray_DATA(ac)
                                      + n * C * H * W;
                const %(ctype)s* gn = (const %(ctype)s*)PyArray_DATA(bc)
                                      + n * M * P;
                /* column-major: local (K x M) += col^T (K x P) * gy[n]
                   (P x M), a GEMM per block of rows */
""" + _ROW_BLOCKS + r"""                    if (colt) lt_im2col_%(name)s(xn, C, H, W, OH, OW,
                                                 (int)oh0, (int)oh1, colt);
                    %(gemm)s(&TR, &NT, &Ki, &Mi, &Pb, &one,
                             LT_MUT(colt ? colt : xn + oh0 * OW),
                             colt ? &Pb : &Pi, LT_MUT(gn + oh0 * OW), &Pi,
                             first[t] ? &zero : &one,
                             local + t * M * K, &Ki);
                    first[t] = 0;
                }
""",
            after=r"""
        /* in thread order, as CorrMM_gradWeights adds its partial sums;
           when flip, into the first partial sum, then flipped */
        %(ctype)s* od = (%(ctype)s*)PyArray_DATA(%(out)s);
        %(ctype)s* sum = %(flip)d ? local : od;
        for (npy_intp j = 0; j < M * K; ++j) {
            %(ctype)s acc = 0;
            for (int t = 0; t < threads; ++t) acc += local[t * M * K + j];
            sum[j] = acc;
        }
        if (%(flip)d) lt_flip_%(name)s(local, M, C, od);
"""))


def fuse_bias_relu(node):
    """Local graph rewrite: ``BiasReLU(CorrGemm(x, W), b)`` as one
    ``CorrGemm(bias_relu=True)(x, W, b)`` when nothing else reads the
    convolution's output (so not in a training graph, whose rectifier
    gradient reads it).  Returns the replacement outputs, or False."""
    from .bias_relu_op import BiasReLU
    if not isinstance(node.op, BiasReLU) or len(node.inputs) != 2:
        return False
    s, b = node.inputs
    conv = s.owner
    if (conv is None or type(conv.op) is not CorrGemm or conv.op.bias_relu
            or len(getattr(s, 'clients', ())) != 1):
        return False
    op = conv.op
    fused = CorrGemm(op.kernel, op.stride, op.pad, flip=op.flip,
                     openmp=op.openmp, unfold_bytes=op.unfold_bytes,
                     bias_relu=True)
    return [fused(conv.inputs[0], conv.inputs[1], b)]


_FUSION = 'lasagne_tagger_conv_bias_relu'


def register_bias_relu_fusion():
    """Add :func:`fuse_bias_relu` to Theano's ``fast_run`` optimizations
    (after the graph is specialized, before in-place rewrites), once per
    process.  This module calls it once, when it is imported (as Theano
    registers its own rewrites); a mode can still leave it out with
    ``mode.excluding('lasagne_tagger_conv_bias_relu')``."""
    from theano.compile import optdb
    from theano.gof.opt import in2out, local_optimizer
    from .bias_relu_op import BiasReLU
    entry = optdb.__db__.get(_FUSION)
    if entry:
        return                                  # registered already
    if entry is not None:
        # note: a query naming it (mode.excluding(_FUSION)) leaves an
        # empty tag of that name in Theano's DB, which register() refuses
        del optdb.__db__[_FUSION]
    optdb.register(_FUSION, in2out(local_optimizer([BiasReLU])(
        fuse_bias_relu), name=_FUSION), 48.8, 'fast_run')


register_bias_relu_fusion()
