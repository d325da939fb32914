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
independent NumPy Caffe.  The C code is ``caffe_pool_op.c``.  This module
imports Theano; import it lazily.
"""
import numpy as np
from ..runtime import _theano  # noqa: F401 (prepares Theano)
import theano.tensor as T
from theano.gof import Apply
from theano.gradient import grad_not_implemented

from .c_support import CFileOp, grad_apply
from .pool_shape import caffe_pool_output_length as pooled_length

__all__ = ['CaffeMaxPool', 'CaffeMaxPoolGrad']


class _CaffePoolBase(CFileOp):
    __props__ = ('pool', 'stride', 'pad')
    c_file = 'caffe_pool_op.c'
    c_version = 6

    def __init__(self, pool, stride, pad, openmp=None):
        super(_CaffePoolBase, self).__init__(openmp=openmp)
        self.pool, self.stride, self.pad = int(pool), int(stride), int(pad)
        if self.pool < 1 or self.stride < 1 or not 0 <= self.pad < self.pool:
            raise ValueError('bad pooling: pool %d, stride %d, pad %d'
                             % (self.pool, self.stride, self.pad))

    def _out_hw(self, h, w):
        return tuple(_int_len(v, self.pool, self.stride, self.pad)
                     for v in (h, w))

    def c_macros(self, node):
        # "same" pooling: stride 1 and 2 * pad == pool - 1, output planes
        # the input's shape (GoogLeNet's inception pools), pooled by two
        # flat passes over each plane
        same = self.stride == 1 and 2 * self.pad == self.pool - 1
        return [('DTYPE', 'npy_' + node.inputs[0].dtype),
                ('LT_KP', self.pool), ('LT_S', self.stride),
                ('LT_P', self.pad), ('LT_SAME', same)]


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


class CaffeMaxPool(_CaffePoolBase):
    """``z = max-pool(x)`` over the last two axes of a 4D tensor, Caffe's
    way.  ``pool``, ``stride``, ``pad`` are ints (square windows)."""
    c_section = 'forward'

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


class CaffeMaxPoolGrad(_CaffePoolBase):
    """``gx`` for :class:`CaffeMaxPool`: each window's incoming gradient
    goes to its first maximum (row-major, strict ``>``)."""
    c_section = 'gradient'

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
