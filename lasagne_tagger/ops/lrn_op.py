"""Caffe's ACROSS_CHANNELS LRN as one Theano Op with C code (forward and
gradient), for the CPU.

Lasagne 0.1's LRN (and :class:`lasagne_tagger.model.layers.LRNLayer`) is a graph:
square, copy into a zero tensor padded along the channels, ``n`` shifted
slices summed, a power, a division; its gradient is as many nodes again,
each a separate pass over the data: about 12% of GoogLeNet's training step
on 2 cores, for two layers.  Here each direction is one loop nest over
(image, channel) planes, parallel with OpenMP when Theano's ``openmp`` flag
is on.  Within a plane every step is a plain loop over its pixels (one per
channel of the window, then the power and division), which the compiler
vectorizes: 3.2x faster forward and 2.5x faster gradient than one loop over
pixels with the window inside, at GoogLeNet's shapes, same bits:

``y_c = x_c / s_c ** beta``, ``s_c = k + alpha * sum_{j in W(c)} x_j ** 2``,
``W(c) = [c - n // 2, c + n // 2]`` clipped to the channels, summed in the
same order as the graph (``beta = 0.75`` as ``sqrt(s) * sqrt(sqrt(s))``).

``gx_i = gy_i / s_i ** beta - 2 alpha beta x_i sum_{c in W(i)} gy_c x_c /
s_c ** (beta + 1)``.

Both ops have a NumPy ``perform``; the tests compare them with the graph
(values and gradients).  The C code is ``lrn_op.c``.  This module imports
Theano; import it lazily.
"""
import numpy as np
from ..runtime import _theano  # noqa: F401 (prepares Theano)
import theano.tensor as T
from theano.gof import Apply
from theano.gradient import grad_not_implemented

from .c_support import CFileOp, grad_apply

__all__ = ['CaffeLRN', 'CaffeLRNGrad']


def _scale(x, alpha, k, n):
    """NumPy ``s`` (see the module docstring), summed as the graph sums."""
    half, channels = n // 2, x.shape[1]
    sqr = np.square(x)
    s = np.full(x.shape, k, dtype=x.dtype)
    for c in range(channels):
        for j in range(c - half, c + half + 1):
            if 0 <= j < channels:
                s[:, c] += x.dtype.type(alpha) * sqr[:, j]
    return s


def _power(s, beta):
    if beta == 0.75:
        root = np.sqrt(s)
        return root * np.sqrt(root)
    return s ** s.dtype.type(beta)


class _LRNBase(CFileOp):
    __props__ = ('alpha', 'k', 'beta', 'n')
    c_file = 'lrn_op.c'
    c_version = 5

    def __init__(self, alpha, k, beta, n, openmp=None):
        super(_LRNBase, self).__init__(openmp=openmp)
        self.alpha, self.k, self.beta = float(alpha), float(k), float(beta)
        self.n = int(n)
        if self.n < 1 or self.n % 2 == 0:
            raise ValueError('LRN size n must be odd and positive, got %r'
                             % (n,))

    def c_macros(self, node):
        return [('DTYPE', 'npy_' + node.inputs[0].dtype),
                ('LT_HALF', self.n // 2), ('LT_K', repr(self.k)),
                ('LT_ALPHA', repr(self.alpha)), ('LT_BETA', repr(self.beta)),
                ('LT_BETA_IS_075', self.beta == 0.75)]


class CaffeLRN(_LRNBase):
    """``y = LRN(x)`` over the channel axis of a 4D tensor (see the module
    docstring); ``alpha`` is per element, as in Lasagne 0.1."""
    c_section = 'forward'

    def make_node(self, x):
        x = T.as_tensor_variable(x)
        if x.ndim != 4:
            raise TypeError('CaffeLRN needs a 4D tensor, got %dD' % x.ndim)
        return Apply(self, [x], [x.type()])

    def infer_shape(self, node, shapes):
        return [shapes[0]]

    def perform(self, node, inputs, outputs):
        x, = inputs
        s = _scale(x, self.alpha, self.k, self.n)
        outputs[0][0] = (x / _power(s, self.beta)).astype(x.dtype)

    def grad(self, inputs, output_grads):
        x, = inputs
        gy, = output_grads
        return [CaffeLRNGrad(self.alpha, self.k, self.beta, self.n,
                             openmp=self.openmp)(x, gy)]


class CaffeLRNGrad(_LRNBase):
    """``gx`` for :class:`CaffeLRN` (see the module docstring)."""
    c_section = 'gradient'

    def make_node(self, x, gy):
        return grad_apply(self, x, gy)

    def infer_shape(self, node, shapes):
        return [shapes[0]]

    def perform(self, node, inputs, outputs):
        x, gy = inputs
        s = _scale(x, self.alpha, self.k, self.n)
        p = _power(s, self.beta)
        t = gy * x / (p * s)
        half, channels = self.n // 2, x.shape[1]
        window = np.zeros_like(x)
        for c in range(channels):
            for j in range(c - half, c + half + 1):
                if 0 <= j < channels:
                    window[:, c] += t[:, j]
        gx = gy / p - 2 * self.alpha * self.beta * x * window
        outputs[0][0] = gx.astype(x.dtype)

    def grad(self, inputs, output_grads):
        # note: the second derivative is not needed for training.
        return [grad_not_implemented(self, 0, inputs[0]),
                grad_not_implemented(self, 1, inputs[1])]
