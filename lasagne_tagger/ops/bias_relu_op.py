"""A convolution's bias and Lasagne's ``rectify`` as one Theano Op with C
code (forward and gradient), for the CPU; optionally several of them and
the concatenation of their results along the channel axis (an inception
module's branches and its ``ConcatLayer``).

Lasagne 0.1 computes ``rectify(conv + b.dimshuffle('x', 0, 'x', 'x'))``
with ``rectify(s) = 0.5 * (s + abs(s))``.  In a training graph Theano keeps
the pre-activation ``s`` for the gradient, so the forward pass is two
passes over the data (the addition, then the rectifier), and the backward
pass another two: ``0.5 * g + 0.5 * g * sgn(s)``, then the bias gradient,
a single-threaded ``Sum`` over the image, row and column axes: together
about 7% of GoogLeNet's training step on 2 cores.  An inception module
then copies its four branches into one tensor (``Join``), and its gradient
copies them out again (``Split``): another 2% of a training step.

:class:`BiasReLU` computes ``y`` in one pass, straight into the
concatenated output when given several ``(x, b)`` pairs;
:class:`BiasReLUGrad` recomputes ``s = x + b`` (the same rounding, so the
same ``s``) and gives each input gradient and, in the same pass, each bias
gradient, summed in float64 per (image, channel) plane and then over
images in order.  Both loop over planes in parallel with OpenMP when
Theano's ``openmp`` flag is on.  The values are Lasagne's: ``y`` is
``0.5 * (s + |s|)`` computed as Lasagne computes it (so ``+0`` below zero,
NaN for NaN and for ``-inf``), the input gradient is
``0.5 * g + 0.5 * g * sgn(s)`` bit for bit (``g / 2`` where ``s == 0``, as
Lasagne's), and the bias gradient is the same float64 sum in another
order.  Both ops have a NumPy ``perform``; the tests compare them with the
Lasagne graph.  The C code is ``bias_relu_op.c``.  This module imports
Theano; import it lazily.
"""
import numpy as np
from ..runtime import _theano  # noqa: F401 (prepares Theano)
import theano.tensor as T
from theano.gof import Apply
from theano.gradient import grad_not_implemented

from .c_support import CFileOp

__all__ = ['BiasReLU', 'BiasReLUGrad']


def _pairs(name, args):
    """``args`` as ``[(x, b), ...]``: 4D ``x``, 1D ``b`` cast to the first
    ``x``'s dtype."""
    if not args or len(args) % 2:
        raise TypeError('%s needs (x, b) pairs, got %d inputs'
                        % (name, len(args)))
    pairs = []
    for x, b in zip(args[0::2], args[1::2]):
        x, b = T.as_tensor_variable(x), T.as_tensor_variable(b)
        if x.ndim != 4 or b.ndim != 1:
            raise TypeError('%s needs a 4D tensor and a 1D bias, got %dD '
                            'and %dD' % (name, x.ndim, b.ndim))
        dtype = pairs[0][0].dtype if pairs else x.dtype
        pairs.append((x if x.dtype == dtype else T.cast(x, dtype),
                      b if b.dtype == dtype else T.cast(b, dtype)))
    return pairs


def _preactivation(x, b):
    return x + b[None, :, None, None]


class _Base(CFileOp):
    __props__ = ()
    c_file = 'bias_relu_op.c'
    c_version = 6
    gradient = False

    def c_macros(self, node):
        pairs = len(node.outputs) // 2 if self.gradient else \
            len(node.inputs) // 2
        macros = [('DTYPE', 'npy_' + node.inputs[0].dtype),
                  ('LT_NAME', '"%s"' % type(self).__name__),
                  ('LT_PAIRS', pairs),
                  ('LT_XS', _c_list('INPUT_%d', 0, pairs)),
                  ('LT_BS', _c_list('INPUT_%d', 1, pairs))]
        if self.gradient:
            macros += [('LT_GY', 'INPUT_%d' % (2 * pairs)),
                       ('LT_GXS', _c_list('&OUTPUT_%d', 0, pairs)),
                       ('LT_GBS', _c_list('&OUTPUT_%d', 1, pairs))]
        return macros


def _c_list(template, start, pairs):
    """A C initializer listing ``template % i`` for every other ``i`` from
    ``start``: one for each pair."""
    return '{%s}' % ', '.join(template % (start + 2 * i)
                              for i in range(pairs))


class BiasReLU(_Base):
    """``y = rectify(x + b[c])`` for a 4D ``x`` and a bias per channel;
    given several pairs ``(x1, b1, x2, b2, ...)`` (the same images, rows
    and columns), their results concatenated along the channel axis."""
    c_section = 'forward'

    def make_node(self, *args):
        pairs = _pairs('BiasReLU', args)
        x = pairs[0][0]
        out = x.type() if len(pairs) == 1 else T.TensorType(
            x.dtype, (x.broadcastable[0], False, False, False))()
        return Apply(self, [v for pair in pairs for v in pair], [out])

    def infer_shape(self, node, shapes):
        n, _, h, w = shapes[0]
        channels = shapes[0][1]
        for shape in shapes[2::2]:
            channels = channels + shape[1]
        return [(n, channels, h, w)]

    def perform(self, node, inputs, outputs):
        ys = []
        for x, b in zip(inputs[0::2], inputs[1::2]):
            s = _preactivation(x, b)
            ys.append((s.dtype.type(0.5) * (s + np.abs(s))).astype(x.dtype))
        outputs[0][0] = ys[0] if len(ys) == 1 else np.concatenate(ys, 1)

    def grad(self, inputs, output_grads):
        gy, = output_grads
        return BiasReLUGrad(openmp=self.openmp)(*(list(inputs) + [gy]))


class BiasReLUGrad(_Base):
    """``(gx1, gb1, gx2, gb2, ...)`` of :class:`BiasReLU` from
    ``(x1, b1, x2, b2, ..., gy)``."""
    c_section = 'gradient'
    gradient = True

    def make_node(self, *args):
        pairs = _pairs('BiasReLUGrad', args[:-1])
        gy = T.as_tensor_variable(args[-1])
        if gy.ndim != 4:
            raise TypeError('BiasReLUGrad: gy must be 4D, got %dD'
                            % gy.ndim)
        dtype = pairs[0][0].dtype
        if gy.dtype != dtype:
            gy = T.cast(gy, dtype)
        inputs = [v for pair in pairs for v in pair]
        return Apply(self, inputs + [gy], [v.type() for v in inputs])

    def infer_shape(self, node, shapes):
        return list(shapes[:-1])

    def perform(self, node, inputs, outputs):
        gy, start = inputs[-1], 0
        for i, (x, b) in enumerate(zip(inputs[0:-1:2], inputs[1:-1:2])):
            g = gy[:, start:start + x.shape[1]]
            start += x.shape[1]
            s = _preactivation(x, b)
            half = x.dtype.type(0.5)
            gx = (half * g + half * g * np.sign(s)).astype(x.dtype)
            outputs[2 * i][0] = gx
            outputs[2 * i + 1][0] = gx.sum(
                axis=(0, 2, 3), dtype=np.float64).astype(x.dtype)

    def grad(self, inputs, output_grads):
        # note: the second derivative is not needed for training.
        return [grad_not_implemented(self, i, v)
                for i, v in enumerate(inputs)]
