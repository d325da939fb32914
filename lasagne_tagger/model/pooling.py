"""Max pooling with Caffe's semantics, forward *and* backward.

Theano's ``Pool``/``MaxPoolGrad`` gives the incoming gradient to *every*
element equal to a window's maximum.  In GoogLeNet ties are common: a 3x3
stride-1 inception pool makes plateaus, its 1x1 ``pool_proj`` keeps them,
and the next stride-2 pool then sees several equal maxima and multiplies the
gradient by their number (measured: exactly 4x on 2x2 plateaus; from-scratch
training then never left chance level).  Caffe (and cuDNN) send the gradient
to one element, the first maximum in row-major order.

:func:`caffe_max_pool` computes the max as a chain of strict comparisons
over the window's shifted views, ``m = switch(v > m, v, m)``, so the
gradient flows to exactly that first maximum.  Padding is -inf (never
selected); output size is Caffe's ceil mode (a last window starting inside
the padded input is kept).  :class:`CaffeMaxPool2DLayer` wraps it for
Lasagne.

On the CPU the layer uses :mod:`lasagne_tagger.ops.caffe_pool_op` instead: the
same forward and gradient as one C loop nest per direction (parallel with
Theano's ``openmp`` flag), faster than the ``switch`` graph.  On a GPU it
keeps the ``switch`` graph, whose element-wise ops Theano moves to the
device (a CPU op there would copy every activation to the host).
"""
import numpy as np

from ..runtime import _theano  # noqa: F401 (prepares Theano)
import lasagne
import theano.tensor as T

from ..ops.caffe_pool_op import CaffeMaxPool
from ..ops.pool_shape import caffe_pool_output_length
from .layers import use_c_op

__all__ = ['caffe_max_pool', 'CaffeMaxPool2DLayer']


def caffe_max_pool(x, pool, stride, pad, out_shape):
    """Max-pool the last two axes of 4D ``x`` the way Caffe does.

    ``out_shape`` is the (rows, cols) of the output, symbolic or ints.
    """
    oh, ow = out_shape
    # Room for every window: (out - 1) * stride + pool rows after padding.
    need_h = (oh - 1) * stride + pool
    need_w = (ow - 1) * stride + pool
    h, w = x.shape[2], x.shape[3]
    canvas = T.alloc(np.asarray(-np.inf, dtype=x.dtype), x.shape[0],
                     x.shape[1], T.maximum(need_h, h + pad),
                     T.maximum(need_w, w + pad))
    padded = T.set_subtensor(canvas[:, :, pad:pad + h, pad:pad + w], x)
    best = None
    for i in range(pool):
        for j in range(pool):
            view = padded[:, :, i:i + (oh - 1) * stride + 1:stride,
                          j:j + (ow - 1) * stride + 1:stride]
            # strict '>' keeps the first maximum, like Caffe's loop
            best = view if best is None else T.switch(T.gt(view, best),
                                                      view, best)
    return best


class CaffeMaxPool2DLayer(lasagne.layers.Layer):
    """Square max pooling, Caffe semantics (see module docstring).

    Parameters
    ----------
    incoming : Layer
    pool_size, stride, pad : int
    impl : {'auto', 'op', 'graph'}
        'op': the C op (:mod:`lasagne_tagger.ops.caffe_pool_op`); 'graph':
        the ``switch`` graph (:func:`caffe_max_pool`); 'auto' (default):
        the op on a CPU device, the graph on a GPU.  Both give the same
        numbers.
    """

    def __init__(self, incoming, pool_size, stride=1, pad=0, impl='auto',
                 **kwargs):
        use_c_op(impl)                       # validate now
        super(CaffeMaxPool2DLayer, self).__init__(incoming, **kwargs)
        self.pool_size, self.stride, self.pad = pool_size, stride, pad
        self.impl = impl

    def get_output_shape_for(self, input_shape):
        return input_shape[:2] + tuple(
            caffe_pool_output_length(s, self.pool_size, self.stride,
                                     self.pad) for s in input_shape[2:])

    def get_output_for(self, input, **kwargs):
        if use_c_op(self.impl):
            return CaffeMaxPool(self.pool_size, self.stride, self.pad)(input)
        shape = self.get_output_shape_for(self.input_shape)[2:]
        if any(s is None for s in shape):
            shape = [caffe_pool_output_length(size, self.pool_size,
                                              self.stride, self.pad)
                     for size in (input.shape[2], input.shape[3])]
        return caffe_max_pool(input, self.pool_size, self.stride,
                              self.pad, shape)
