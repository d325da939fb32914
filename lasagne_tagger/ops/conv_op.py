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
(values and gradients).  The C code is ``conv_op.c``.  This module imports
Theano; import it lazily.
"""
import numpy as np
from ..runtime import _theano  # noqa: F401 (prepares Theano)
import theano.tensor as T
from theano.gof import Apply
from theano.gradient import grad_not_implemented, grad_undefined
from theano.tensor import blas_headers
from theano.tensor.blas import blas_header_version, ldflags

from .c_support import CFileOp

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


class _CorrGemmBase(CFileOp):
    """Properties, BLAS set-up (as Theano's ``BaseCorrMM``) and the C
    helpers shared by the three ops."""
    __props__ = ('kernel', 'stride', 'pad', 'flip', 'unfold_bytes')
    c_file = 'conv_op.c'
    c_section = 'code'
    c_version = 4

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
        code = blas_headers.blas_header_text()
        if self._blas_type() == 'openblas':
            code += blas_headers.openblas_threads_text()
        elif self._blas_type() == 'mkl':
            code += blas_headers.mkl_threads_text()
        return [code] + super(_CorrGemmBase, self).c_support_code()

    def c_libraries(self):
        return ldflags()

    def c_compile_args(self):
        return (ldflags(libs=False, flags=True)
                + super(_CorrGemmBase, self).c_compile_args())

    def c_lib_dirs(self):
        return ldflags(libs=False, libs_dir=True)

    def c_header_dirs(self):
        return ldflags(libs=False, include_dir=True)

    def c_version_extra(self):
        return (blas_header_version(),)

    def _geometry(self, node, direction, a, b, shape=None, bias=None):
        """The macros of ``conv_op.c``: the direction (0 forward, 1 weight
        gradient, 2 input gradient, as Theano's ``CorrMM``), the inputs'
        roles, the GEMM and C type for the output's dtype, the geometry,
        and the OpenMP and BLAS thread calls (none without OpenMP)."""
        dtype = node.outputs[0].dtype
        if dtype not in ('float32', 'float64'):
            raise TypeError('%s: float32 or float64, got %s'
                            % (type(self).__name__, dtype))
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.pad
        import theano
        # note: without blas.ldflags Theano's sgemm_ is a NumPy fallback
        # that calls the Python C-API, not safe from OpenMP threads: then
        # the images run one after another.
        parallel = bool(self.openmp and theano.config.blas.ldflags)
        blas = self._blas_type() if parallel else ''
        get_blas, set_blas = {
            'openblas': ('openblas_get_num_threads()',
                         'openblas_set_num_threads(n)'),
            'mkl': ('mkl_get_max_threads()', 'mkl_set_num_threads(n)'),
        }.get(blas, ('0', '(void)(n)'))
        return [('DTYPE', 'npy_' + dtype),
                ('LT_GEMM', 'sgemm_' if dtype == 'float32' else 'dgemm_'),
                ('LT_NAME', '"%s"' % type(self).__name__),
                ('LT_DIRECTION', direction), ('LT_A', a), ('LT_B', b),
                ('LT_SHAPE', shape or '0'), ('LT_BIAS', bias or '0'),
                ('LT_BIAS_RELU', bias is not None),
                ('LT_KH', kh), ('LT_KW', kw), ('LT_SH', sh), ('LT_SW', sw),
                ('LT_PH', ph), ('LT_PW', pw), ('LT_DIRECT', self.direct),
                ('LT_FLIP', self.flip), ('LT_BLOCK', self.unfold_bytes or 0),
                ('LT_IMAGES_PARALLEL', parallel),
                ('LT_BLAS_GET_THREADS', get_blas),
                ('LT_BLAS_SET_THREADS(n)', set_blas)]


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

    def c_macros(self, node):
        return self._geometry(node, 0, a='INPUT_0', b='INPUT_1',
                              bias='INPUT_2' if self.bias_relu else None)


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

    def c_macros(self, node):
        return self._geometry(node, 2, a='INPUT_1', b='INPUT_0',
                              shape='INPUT_2')


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

    def c_macros(self, node):
        return self._geometry(node, 1, a='INPUT_0', b='INPUT_1')


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
