"""Caffe max pooling as one Theano Op with C code (forward and gradient).

:func:`lasagne_tagger.model.pooling.caffe_max_pool` builds Caffe's max pooling
out of ``pool_size**2`` element-wise ``switch`` nodes over shifted views.
That is exact and runs anywhere Theano does (on a GPU the element-wise ops
are moved there), but on the CPU each node is a separate single-threaded
pass over the data, and its gradient is a chain of as many ``switch``
gradients and ``inc_subtensor`` scatters: in GoogLeNet training at 64 px it
halved the images/s (measured: ~110 -> ~60).

This module does the same computation in one loop nest per direction,
parallel over (image, channel) planes with OpenMP when Theano's ``openmp``
flag is on:

- :class:`CaffeMaxPool`: ``max`` over each window, windows placed as Caffe
  places them (ceil-mode output size, padding that never wins, a last
  window starting inside the padding dropped).
- :class:`CaffeMaxPoolGrad`: the incoming gradient goes to the *first*
  maximum of each window in row-major order (strict ``>``), as in Caffe's
  ``MaxPoolBackward``; overlapping windows add up.

Both have a NumPy ``perform`` (used when Theano has no C++ compiler), and the
tests compare both implementations with the ``switch`` graph and with an
independent NumPy Caffe.  This module imports Theano; import it lazily.
"""
import numpy as np
from ..runtime import _theano  # noqa: F401 (prepares Theano)
import theano.tensor as T
from theano.gof import Apply, OpenMPOp
from theano.gradient import grad_not_implemented

from .c_support import alloc_output, cache_version, grad_apply, plane_loop
from .pool_shape import caffe_pool_output_length as pooled_length

__all__ = ['CaffeMaxPool', 'CaffeMaxPoolGrad']


_SUPPORT = r"""
static npy_intp lt_caffe_pool_len(npy_intp size, int k, int s, int p)
{
    /* ceil((size + 2p - k) / s) + 1, the last window not starting in the
       padding; the same formula as pool_shape.caffe_pool_output_length */
    npy_intp num = size + 2 * p - k;
    npy_intp n = (num >= 0 ? (num + s - 1) / s : -((-num) / s)) + 1;
    if (p && (n - 1) * s >= size + p) n -= 1;
    return n < 1 ? 1 : n;
}
"""


class _CaffePoolBase(OpenMPOp):
    __props__ = ('pool', 'stride', 'pad')

    def __init__(self, pool, stride, pad, openmp=None):
        super(_CaffePoolBase, self).__init__(openmp=openmp)
        self.pool, self.stride, self.pad = int(pool), int(stride), int(pad)
        if self.pool < 1 or self.stride < 1 or not 0 <= self.pad < self.pool:
            raise ValueError('bad pooling: pool %d, stride %d, pad %d'
                             % (self.pool, self.stride, self.pad))

    def _out_hw(self, h, w):
        return tuple(_int_len(v, self.pool, self.stride, self.pad)
                     for v in (h, w))

    def _same(self):
        """Stride 1 and ``2 * pad == pool - 1``: output planes the input's
        shape, pooled by :func:`_same_plane`."""
        return self.stride == 1 and 2 * self.pad == self.pool - 1

    def _same_windows(self):
        """Format values of :func:`_same_plane`'s C lines: the pool, the
        padding, and the clipped windows ``[lo, hi)`` of column ``c`` and
        row ``oh``."""
        return dict(k=self.pool, p=self.pad,
                    col_window=self._window('c', 'lo', 'hi', 'W'),
                    row_window=self._window('oh', 'lo', 'hi', 'H'))

    def _row_windows(self):
        """C lines setting ``[hs, he)``, output row ``oh``'s input rows."""
        return self._window('oh', 'hs', 'he', 'H')

    def c_support_code(self):
        return _SUPPORT

    def c_code_cache_version(self):
        return cache_version(5, self, __file__)

    def _window(self, out, lo, hi, size):
        """C lines setting ``[lo, hi)``, the input range of output index
        ``out`` along an axis of length ``size``, clipped to the input."""
        return ('npy_intp %(lo)s = %(out)s * %(s)d - %(p)d, '
                '%(hi)s = %(lo)s + %(k)d;\n'
                'if (%(hi)s > %(size)s) %(hi)s = %(size)s;\n'
                'if (%(lo)s < 0) %(lo)s = 0;\n'
                % dict(out=out, lo=lo, hi=hi, size=size, s=self.stride,
                       p=self.pad, k=self.pool))

    def _row_pass(self):
        """C lines filling, for every input row ``r`` of plane ``xp`` and
        output column ``ow``, ``rm[r * OW + ow]``: the max over the
        window's columns.  Windows that lie inside the row run as a
        fixed-length loop the compiler unrolls and vectorizes across
        ``ow``; the clipped ones at the edges as a loop over the window."""
        take = '{ const dtype_T v = row[q]; m = v > m ? v : m; }'
        return r"""
            /* interior windows: [ow * s - p, ow * s - p + k) inside [0, W) */
            npy_intp ow_lo = (%(p)d + %(s)d - 1) / %(s)d;
            npy_intp ow_hi = W + %(p)d >= %(k)d
                ? (W + %(p)d - %(k)d) / %(s)d + 1 : 0;
            if (ow_lo > OW) ow_lo = OW;
            if (ow_hi > OW) ow_hi = OW;
            if (ow_hi < ow_lo) ow_hi = ow_lo;
            for (npy_intp r = 0; r < H; ++r) {
                const dtype_T* row = xp + r * W;
                for (npy_intp ow = 0; ow < OW; ++ow) {
                    if (ow == ow_lo) ow = ow_hi;
                    if (ow >= OW) break;
                    %(cols)s
                    dtype_T m = -INFINITY;
                    for (npy_intp q = ws; q < we; ++q) %(take)s
                    rm[r * OW + ow] = m;
                }
                for (npy_intp ow = ow_lo; ow < ow_hi; ++ow) {
                    const npy_intp q0 = ow * %(s)d - %(p)d;
                    dtype_T m = -INFINITY;
                    for (npy_intp q = q0; q < q0 + %(k)d; ++q) %(take)s
                    rm[r * OW + ow] = m;
                }
            }
""" % dict(k=self.pool, s=self.stride, p=self.pad, take=take,
           cols=self._window('ow', 'ws', 'we', 'W'))


def _int_len(size, pool, stride, pad):
    return pooled_length(int(size), pool, stride, pad)


def _first_max_offsets(x, pool, stride, pad, oh, ow):
    """NumPy: (max, flat index into x's plane of the first maximum)."""
    n, c, h, w = x.shape
    need_h, need_w = (oh - 1) * stride + pool, (ow - 1) * stride + pool
    canvas = np.full((n, c, max(need_h, h + pad), max(need_w, w + pad)),
                     -np.inf, dtype=x.dtype)
    canvas[:, :, pad:pad + h, pad:pad + w] = x
    best = np.full((n, c, oh, ow), -np.inf, dtype=x.dtype)
    index = np.full((n, c, oh, ow), -1, dtype=np.int64)
    rows = (np.arange(oh) * stride)[:, None]
    cols = (np.arange(ow) * stride)[None, :]
    for i in range(pool):
        for j in range(pool):
            view = canvas[:, :, i:i + (oh - 1) * stride + 1:stride,
                          j:j + (ow - 1) * stride + 1:stride]
            take = view > best
            best = np.where(take, view, best)
            r, q = rows + i - pad, cols + j - pad
            index = np.where(take, (r * w + q)[None, None], index)
    return best, index


def _same_plane(track):
    """C lines for one plane of "same" pooling: stride 1 and
    ``2 * pad == pool - 1`` (GoogLeNet's inception pools), where output and
    input planes have the same shape, so output element ``i`` of the
    flattened plane reads input elements ``i - p + j`` (row pass, into
    ``rm``) and ``i + (r - p) * W`` (column pass).  Each pass is one flat
    loop over the plane, vectorized even for 7x7 planes, then redone,
    clipped, where a window crosses a row's (or the plane's) edge.  The
    comparisons run in the general path's order (ascending column, then
    ascending row, strict ``>``), so ties, signed zeros and NaN give the
    same result.  ``track``: also the flat index of each window's first
    maximum (``ra`` for the rows, ``oa`` for the windows; -1 when nothing
    beats ``-inf``), for the gradient; otherwise the maxima go to ``zp``.
    The first maximum of a window is the first maximum of the first row
    whose own maximum is the window's, so the two passes find it too."""
    if track:
        take = ('{ const int t_ = v > m; a = t_ ? (%s) : a; '
                'm = t_ ? v : m; }')
        start = 'dtype_%(x)s m = -INFINITY; npy_intp a = -1;'
        row_out, win_out = 'rm[%s] = m; ra[%s] = a;', 'oa[%s] = a;'
    else:
        take = '{ (void)(%s); m = v > m ? v : m; }'
        start = 'dtype_%(x)s m = -INFINITY;'
        row_out, win_out = 'rm[%s] = m; (void)(%s);', 'zp[%s] = m;'
    return _SAME_PASSES % dict(
        start=start, take_row=take % 'i - %(p)d + j', take_q=take % 'q',
        take_col=take % ('ra[q]' if track else 'q'),
        row_i=row_out % ('i', 'i'),
        row_rc=row_out % ('r * W + c', 'r * W + c'),
        win_i=win_out % 'i', win_oc=win_out % '(oh * W + c)')


_SAME_PASSES = r"""
            const dtype_%%(x)s* xp = xd + plane * H * W;
            const npy_intp HW = H * W;
            for (npy_intp i = %%(p)d; i < HW - %%(p)d; ++i) {
                %(start)s
                for (int j = 0; j < %%(k)d; ++j) {
                    const dtype_%%(x)s v = xp[i - %%(p)d + j];
                    %(take_row)s
                }
                %(row_i)s
            }
            for (npy_intp r = 0; r < H; ++r)
                for (npy_intp c = 0; c < W; ++c) {
                    if (c == %%(p)d && W - %%(p)d > c) {
                        c = W - %%(p)d - 1;
                        continue;
                    }
                    %%(col_window)s
                    %(start)s
                    for (npy_intp q = r * W + lo; q < r * W + hi; ++q) {
                        const dtype_%%(x)s v = xp[q];
                        %(take_q)s
                    }
                    %(row_rc)s
                }
            for (npy_intp i = %%(p)d * W; i < HW - %%(p)d * W; ++i) {
                %(start)s
                for (int r = 0; r < %%(k)d; ++r) {
                    const npy_intp q = i + (r - %%(p)d) * W;
                    const dtype_%%(x)s v = rm[q];
                    %(take_col)s
                }
                %(win_i)s
            }
            for (npy_intp oh = 0; oh < H; ++oh) {
                if (oh == %%(p)d && H - %%(p)d > oh) {
                    oh = H - %%(p)d - 1;
                    continue;
                }
                %%(row_window)s
                for (npy_intp c = 0; c < W; ++c) {
                    %(start)s
                    for (npy_intp q = lo * W + c; q < hi * W + c; q += W) {
                        const dtype_%%(x)s v = rm[q];
                        %(take_col)s
                    }
                    %(win_oc)s
                }
            }
"""

# one plane of each op's C loop (see plane_loop)
_FORWARD_PLANE_SAME = r'''
            dtype_%(z)s* zp = zd + plane * H * W;''' + _same_plane(False)

_GRAD_PLANE_SAME = r'''
            const dtype_%(gz)s* gp = gd + plane * H * W;
            dtype_%(gx)s* op = od + plane * H * W;''' + _same_plane(True) + r'''
            for (npy_intp i = 0; i < HW; ++i) op[i] = 0;
            for (npy_intp i = 0; i < HW; ++i)   /* the general path's order */
                if (oa[i] >= 0) op[oa[i]] += gp[i];
'''

_FORWARD_PLANE = r'''
            const dtype_%(x)s* xp = xd + plane * H * W;
            dtype_%(z)s* zp = zd + plane * OH * OW;
%(rows)s            for (npy_intp oh = 0; oh < OH; ++oh) {
                %(windows)s
                dtype_%(z)s* out = zp + oh * OW;
                for (npy_intp ow = 0; ow < OW; ++ow) out[ow] = -INFINITY;
                for (npy_intp r = hs; r < he; ++r) {
                    const dtype_%(z)s* t = rm + r * OW;
                    for (npy_intp ow = 0; ow < OW; ++ow)
                        out[ow] = t[ow] > out[ow] ? t[ow] : out[ow];
                }
            }
'''

_GRAD_PLANE = r'''
            const dtype_%(x)s* xp = xd + plane * H * W;
            const dtype_%(gz)s* gp = gd + plane * OH * OW;
            dtype_%(gx)s* op = od + plane * H * W;
            for (npy_intp i = 0; i < H * W; ++i) op[i] = 0;
            for (npy_intp oh = 0; oh < OH; ++oh) {
                %(windows)s
                for (npy_intp ow = 0; ow < OW; ++ow) {
                    %(cols)s
                    dtype_%(x)s m = -INFINITY;
                    npy_intp arg = -1;
                    for (npy_intp r = hs; r < he; ++r)
                        for (npy_intp q = ws; q < we; ++q) {
                            const dtype_%(x)s v = xp[r * W + q];
                            if (v > m) { m = v; arg = r * W + q; }
                        }
                    if (arg >= 0) op[arg] += gp[oh * OW + ow];
                }
            }
'''


class CaffeMaxPool(_CaffePoolBase):
    """``z = max-pool(x)`` over the last two axes of a 4D tensor, Caffe's
    way.  ``pool``, ``stride``, ``pad`` are ints (square windows)."""

    def make_node(self, x):
        x = T.as_tensor_variable(x)
        if x.ndim != 4:
            raise TypeError('CaffeMaxPool needs a 4D tensor, got %dD'
                            % x.ndim)
        return Apply(self, [x], [x.type()])

    def infer_shape(self, node, shapes):
        n, c, h, w = shapes[0]
        k, s, p = self.pool, self.stride, self.pad
        return [(n, c, pooled_length(h, k, s, p), pooled_length(w, k, s, p))]

    def perform(self, node, inputs, outputs):
        x, = inputs
        oh, ow = self._out_hw(*x.shape[2:])
        best, _ = _first_max_offsets(x, self.pool, self.stride, self.pad,
                                     oh, ow)
        outputs[0][0] = best.astype(x.dtype)

    def grad(self, inputs, output_grads):
        x, = inputs
        gz, = output_grads
        return [CaffeMaxPoolGrad(self.pool, self.stride, self.pad,
                                 openmp=self.openmp)(x, gz)]

    def c_code(self, node, name, inputs, outputs, sub):
        x, = inputs
        z, = outputs
        windows = self._row_windows()
        rows = self._row_pass().replace('dtype_T', 'dtype_%s' % x)
        scratch = [('dtype_%s' % z, 'rm', 'H * OW + 1')]
        loop = plane_loop(self.openmp, scratch, _FORWARD_PLANE)
        if self._same():
            # an empty plane still has one (-inf) output: the general loop
            loop = ('        if (H > 0 && W > 0) {\n'
                    + plane_loop(self.openmp, scratch, _FORWARD_PLANE_SAME)
                    + '        } else {\n' + loop + '        }\n')
        return r"""
        {
        if (PyArray_NDIM(%(x)s) != 4) {
            PyErr_SetString(PyExc_ValueError, "CaffeMaxPool: input not 4D");
            %(fail)s;
        }
        PyArrayObject* xc = PyArray_GETCONTIGUOUS(%(x)s);
        if (!xc) { %(fail)s; }
        const npy_intp N = PyArray_DIMS(xc)[0], C = PyArray_DIMS(xc)[1];
        const npy_intp H = PyArray_DIMS(xc)[2], W = PyArray_DIMS(xc)[3];
        const npy_intp OH = lt_caffe_pool_len(H, %(k)d, %(s)d, %(p)d);
        const npy_intp OW = lt_caffe_pool_len(W, %(k)d, %(s)d, %(p)d);
        npy_intp dims[4] = {N, C, OH, OW};
%(alloc)s        const dtype_%(x)s* xd = (const dtype_%(x)s*)PyArray_DATA(xc);
        dtype_%(z)s* zd = (dtype_%(z)s*)PyArray_DATA(%(z)s);
        /* The max does not depend on which element is the first maximum,
           so the forward pass is separable: a max over each window's
           columns, row by row, into tmp (H x OW), then over its rows.
           2k comparisons an output instead of k*k, in loops over ow that
           the compiler vectorizes. */
        int failed = 0;
%(loop)s        if (failed) {
            Py_DECREF(xc);
            PyErr_NoMemory();
            %(fail)s;
        }
        Py_DECREF(xc);
        }
        """ % dict(x=x, z=z, fail=sub['fail'], k=self.pool, s=self.stride,
                   p=self.pad,
                   loop=loop % dict(x=x, z=z, rows=rows, windows=windows,
                                    **self._same_windows()),
                   alloc=alloc_output(z, 4, 'dims', 'xc', 'Py_DECREF(xc);',
                                      sub['fail']))


class CaffeMaxPoolGrad(_CaffePoolBase):
    """``gx`` for :class:`CaffeMaxPool`: each window's incoming gradient
    goes to its first maximum (row-major, strict ``>``)."""

    def make_node(self, x, gz):
        return grad_apply(self, x, gz)

    def infer_shape(self, node, shapes):
        return [shapes[0]]

    def perform(self, node, inputs, outputs):
        x, gz = inputs
        n, c, h, w = x.shape
        oh, ow = gz.shape[2:]
        _, index = _first_max_offsets(x, self.pool, self.stride, self.pad,
                                      oh, ow)
        gx = np.zeros((n * c, h * w), dtype=x.dtype)
        planes = np.repeat(np.arange(n * c), oh * ow)
        flat = index.reshape(-1)
        keep = flat >= 0
        np.add.at(gx, (planes[keep], flat[keep]), gz.reshape(-1)[keep])
        outputs[0][0] = gx.reshape(x.shape)

    def grad(self, inputs, output_grads):
        x, gz = inputs
        # note: piecewise constant in x (the argmax only moves at ties);
        # the second derivative through gz is not needed for training.
        return [x.zeros_like(), grad_not_implemented(self, 1, gz)]

    def c_code(self, node, name, inputs, outputs, sub):
        x, gz = inputs
        gx, = outputs
        windows = self._row_windows()
        # note: a separable row pass with argmaxes per plane row, like the
        # forward pass's, was not faster than this scan of each window for
        # strided windows, so only "same" pooling (flat passes over the
        # whole plane) tracks argmaxes through two passes.
        if self._same():
            index = 'H * W + 1'
            loop = plane_loop(self.openmp, [
                ('dtype_%s' % x, 'rm', index), ('npy_intp', 'ra', index),
                ('npy_intp', 'oa', index)], _GRAD_PLANE_SAME)
        else:
            loop = plane_loop(self.openmp, [], _GRAD_PLANE)
        loop %= dict(x=x, gz=gz, gx=gx, windows=windows,
                     cols=self._window('ow', 'ws', 'we', 'W'),
                     **self._same_windows())
        return r"""
        {
        PyArrayObject* xc = PyArray_GETCONTIGUOUS(%(x)s);
        if (!xc) { %(fail)s; }
        PyArrayObject* gc = PyArray_GETCONTIGUOUS(%(gz)s);
        if (!gc) { Py_DECREF(xc); %(fail)s; }
        const npy_intp N = PyArray_DIMS(xc)[0], C = PyArray_DIMS(xc)[1];
        const npy_intp H = PyArray_DIMS(xc)[2], W = PyArray_DIMS(xc)[3];
        const npy_intp OH = PyArray_DIMS(gc)[2], OW = PyArray_DIMS(gc)[3];
        if (PyArray_DIMS(gc)[0] != N || PyArray_DIMS(gc)[1] != C
                || OH != lt_caffe_pool_len(H, %(k)d, %(s)d, %(p)d)
                || OW != lt_caffe_pool_len(W, %(k)d, %(s)d, %(p)d)) {
            PyErr_SetString(PyExc_ValueError,
                            "CaffeMaxPoolGrad: gradient shape mismatch");
            Py_DECREF(xc); Py_DECREF(gc);
            %(fail)s;
        }
%(alloc)s        const dtype_%(x)s* xd = (const dtype_%(x)s*)PyArray_DATA(xc);
        const dtype_%(gz)s* gd = (const dtype_%(gz)s*)PyArray_DATA(gc);
        dtype_%(gx)s* od = (dtype_%(gx)s*)PyArray_DATA(%(gx)s);
        int failed = 0;   /* set by plane_loop */
%(loop)s        if (failed) {
            Py_DECREF(xc); Py_DECREF(gc);
            PyErr_NoMemory();
            %(fail)s;
        }
        Py_DECREF(xc);
        Py_DECREF(gc);
        }
        """ % dict(x=x, gz=gz, gx=gx, fail=sub['fail'], k=self.pool,
                   s=self.stride, p=self.pad, loop=loop,
                   alloc=alloc_output(gx, 4, 'PyArray_DIMS(xc)', 'xc',
                                      'Py_DECREF(xc); Py_DECREF(gc);',
                                      sub['fail']))
