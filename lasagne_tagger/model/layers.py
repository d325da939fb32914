"""Lasagne 0.1 layers with the same maths, in graphs Theano runs faster.

* :func:`Conv2DLayer` -- Lasagne 0.1's ``Conv2DLayer`` pads an integer
  ``pad`` by allocating a zero tensor and copying the input into it
  (``padding.pad``), then convolves without padding.  Theano 1.0's
  ``conv2d`` takes the padding itself (``border_mode=(p, p)``): ``CorrMM``
  pads inside its im2col, cuDNN natively.  Same values, no copy; the
  ``Alloc`` + ``IncSubtensor`` pair was 7% of GoogLeNet's forward time on
  the CPU.  Filters keep Lasagne 0.1's orientation (true convolution,
  ``filter_flip=True``); ``'same'``, ``'full'`` and ``'valid'`` strings take
  Lasagne's own path.  On a CPU device the convolution is
  :class:`lasagne_tagger.ops.conv_op.CorrGemm` instead of Theano's ``CorrMM``
  (the same GEMMs; a cheaper unfolding, none for GoogLeNet's 37 1x1
  layers); and tied biases followed by Lasagne's
  ``rectify`` run as one :class:`lasagne_tagger.ops.bias_relu_op.BiasReLU`
  (forward and gradient each one pass, the bias gradient included).
* :func:`ConcatLayer` -- Lasagne 0.1's ``ConcatLayer``; when it joins
  such layers along the channels (an inception module's four branches),
  their ``BiasReLU`` writes straight into the concatenated output: one op
  instead of four and a ``Join`` (and a ``Split`` in the gradient).
* :func:`LRNLayer` -- Lasagne 0.1's ``LocalResponseNormalization2DLayer``
  (Caffe's ACROSS_CHANNELS LRN with ``alpha`` per element), whose
  ``scale ** beta`` is a ``pow`` call per element: 15% of GoogLeNet's
  forward time.  For ``beta = 0.75`` (GoogLeNet, AlexNet) we compute
  ``s ** 0.75`` as ``sqrt(s) * sqrt(sqrt(s))``, exact up to float rounding
  (a few units in the last place).

All keep Lasagne's parameters, names and output shapes, so checkpoints and
model-zoo weights load unchanged.

Each layer takes its implementation as a constructor argument, ``impl``:
``'op'`` (the package's C op, CPU only), ``'graph'`` (Theano's own ops,
which Theano moves to a GPU), ``'lasagne'`` where a layer has it (Lasagne
0.1's own graph, for comparison) or ``'auto'`` (default: the op on a CPU
device, the graph on a GPU).  Every choice gives the same numbers; the
benchmarks compare them through these arguments
(:func:`lasagne_tagger.model.googlenet.build_model`'s ``layer_options``).
"""
import lasagne
import theano.tensor as T

from ..runtime import _theano  # noqa: F401 (prepares Theano)
from ..ops import conv_op
from ..ops.bias_relu_op import BiasReLU
from ..ops.lrn_op import CaffeLRN

__all__ = ['ConcatLayer', 'Conv2DLayer', 'LRNLayer', 'IMPLEMENTATIONS',
           'use_c_op']

#: What every layer's ``impl`` accepts (some also take ``'lasagne'``).
IMPLEMENTATIONS = ('auto', 'op', 'graph')


def use_c_op(impl, allowed=IMPLEMENTATIONS):
    """Whether ``impl`` means the C op here (``'auto'``: on a CPU device).

    Raises
    ------
    ValueError
        ``impl`` is not one of ``allowed`` (the message names both).
    """
    if impl not in allowed:
        raise ValueError('implementation must be one of %s, got %r'
                         % (', '.join(allowed), impl))
    if impl == 'auto':
        from ..runtime import gpu
        return not gpu.wants_gpu(gpu.theano_device())
    return impl == 'op'


class Conv2DLayer(lasagne.layers.Conv2DLayer):
    """``lasagne.layers.Conv2DLayer`` (Lasagne 0.1) with integer padding
    done by the convolution (see the module docstring).

    Parameters
    ----------
    incoming, num_filters, filter_size, *args, **kwargs
        As Lasagne 0.1's ``Conv2DLayer``.
    impl : {'auto', 'op', 'graph', 'lasagne'}
        The convolution: ``'op'`` :class:`lasagne_tagger.ops.conv_op.CorrGemm`;
        ``'graph'`` Theano's ``conv2d`` with its own padding (``CorrMM`` on
        a CPU, ``GpuCorrMM`` or cuDNN on a GPU); ``'lasagne'`` Lasagne 0.1's
        own graph (padding copied, then a 'valid' convolution), bias and
        rectifier included.
    bias_relu : {'auto', 'op', 'graph'}
        Tied biases followed by ``rectify``: ``'op'`` one
        :class:`lasagne_tagger.ops.bias_relu_op.BiasReLU`, ``'graph'``
        Theano's addition and rectifier.
    unfold_bytes : int or None
        :class:`CorrGemm`'s block size for large images (None: whole).
    """
    IMPLEMENTATIONS = IMPLEMENTATIONS + ('lasagne',)

    def __init__(self, incoming, num_filters, filter_size, *args,
                 impl='auto', bias_relu='auto',
                 unfold_bytes=conv_op.UNFOLD_BYTES, **kwargs):
        use_c_op(impl, self.IMPLEMENTATIONS)          # validate now
        use_c_op(bias_relu)
        super(Conv2DLayer, self).__init__(incoming, num_filters, filter_size,
                                          *args, **kwargs)
        self.impl, self.bias_relu = impl, bias_relu
        self.unfold_bytes = unfold_bytes

    def get_output_for(self, input, input_shape=None, **kwargs):
        if self.impl == 'lasagne':
            return super(Conv2DLayer, self).get_output_for(
                input, input_shape=input_shape, **kwargs)
        pad = self._gemm_pad()
        if pad is not None:
            # note: on the CPU, our im2col + GEMM op (conv_op) instead
            # of Theano's CorrMM: same GEMMs, cheaper unfolding, none
            # for 1x1 filters.  Lasagne 0.1 convolves (flipped filters).
            conved = conv_op.CorrGemm(
                self.filter_size, self.stride, pad, flip=True,
                unfold_bytes=self.unfold_bytes)(input, self.W)
        elif isinstance(self.pad, str):
            return super(Conv2DLayer, self).get_output_for(
                input, input_shape=input_shape, **kwargs)
        else:
            # note: Lasagne 0.1 pads with padding.pad and convolves
            # 'valid'; the convolution's own padding gives the same
            # values, faster.
            conved = self.convolution(
                input, self.W, subsample=self.stride,
                input_shape=input_shape or self.input_shape,
                filter_shape=self.get_W_shape(),
                border_mode=tuple(int(p) for p in self.pad))
        if self._fused_bias_relu():
            # note: one C pass instead of Theano's addition, rectifier
            # and their gradients (bias_relu_op); same values.  Where
            # nothing else reads the convolution (inference), the
            # compiled graph does it inside the convolution's loop
            # (conv_op.fuse_bias_relu).
            return BiasReLU()(conved, self.b)
        if self.b is None:
            activation = conved
        elif self.untie_biases:
            activation = conved + self.b.dimshuffle('x', 0, 1, 2)
        else:
            activation = conved + self.b.dimshuffle('x', 0, 'x', 'x')
        return self.nonlinearity(activation)

    def _fused_bias_relu(self):
        """Tied biases and Lasagne's ``rectify``, with ``bias_relu`` the
        op."""
        return (self.b is not None and not self.untie_biases
                and self.nonlinearity is lasagne.nonlinearities.rectify
                and use_c_op(self.bias_relu))

    def _gemm_pad(self):
        """The padding for :class:`lasagne_tagger.ops.conv_op.CorrGemm`
        when ``impl`` is the op and the convolution Theano's ``conv2d``,
        else None: integer padding, or any mode for a 1x1 filter (all mean
        none)."""
        if (self.convolution is not T.nnet.conv2d
                or not use_c_op(self.impl, self.IMPLEMENTATIONS)):
            return None
        if not isinstance(self.pad, str):
            return tuple(int(p) for p in self.pad)
        if tuple(self.filter_size) == (1, 1):
            return (0, 0)
        return None


class LRNLayer(lasagne.layers.LocalResponseNormalization2DLayer):
    """``lasagne.layers.LocalResponseNormalization2DLayer`` (Lasagne 0.1):
    ``x / (k + alpha * sum over n channels of x^2) ** beta``.

    Parameters
    ----------
    incoming, *args, **kwargs
        As Lasagne 0.1's layer (``alpha``, ``k``, ``beta``, ``n``).
    impl : {'auto', 'op', 'graph', 'lasagne'}
        ``'op'`` :class:`lasagne_tagger.ops.lrn_op.CaffeLRN`; ``'graph'``
        Theano ops with ``** 0.75`` computed from square roots (see the
        module docstring); ``'lasagne'`` Lasagne 0.1's own graph (``pow``).
    """
    IMPLEMENTATIONS = IMPLEMENTATIONS + ('lasagne',)

    def __init__(self, incoming, *args, impl='auto', **kwargs):
        use_c_op(impl, self.IMPLEMENTATIONS)
        super(LRNLayer, self).__init__(incoming, *args, **kwargs)
        self.impl = impl

    def get_output_for(self, input, **kwargs):
        if use_c_op(self.impl, self.IMPLEMENTATIONS):
            return CaffeLRN(self.alpha, self.k, self.beta, self.n)(input)
        if self.impl == 'lasagne' or self.beta != 0.75:
            return super(LRNLayer, self).get_output_for(input, **kwargs)
        input_shape = self.input_shape
        if any(s is None for s in input_shape):
            input_shape = input.shape
        half_n = self.n // 2
        b, ch, r, c = input_shape
        padded = T.alloc(0., b, ch + 2 * half_n, r, c)
        sqr = T.set_subtensor(padded[:, half_n:half_n + ch, :, :],
                              T.sqr(input))
        scale = self.k
        for i in range(self.n):
            scale += self.alpha * sqr[:, i:i + ch, :, :]
        # note: s ** 0.75 == sqrt(s) * sqrt(sqrt(s)); pow is 4x slower.
        root = T.sqrt(scale)
        return input / (root * T.sqrt(root))


class ConcatLayer(lasagne.layers.ConcatLayer):
    """``lasagne.layers.ConcatLayer`` (Lasagne 0.1); along the channel axis,
    inputs that are all biased, rectified convolutions of
    :class:`Conv2DLayer` (an inception module's branches, with their
    ``bias_relu`` the op) are rectified straight into the concatenated
    output by one :class:`lasagne_tagger.ops.bias_relu_op.BiasReLU` (see the
    module docstring).

    Parameters
    ----------
    incomings, **kwargs
        As Lasagne 0.1's ``ConcatLayer`` (``axis``).
    impl : {'auto', 'op', 'graph'}
        ``'op'`` fuses such inputs as above; ``'graph'`` Lasagne's
        ``Join``.
    """

    def __init__(self, incomings, impl='auto', **kwargs):
        use_c_op(impl)
        super(ConcatLayer, self).__init__(incomings, **kwargs)
        self.impl = impl

    def get_output_for(self, inputs, **kwargs):
        pairs = self._bias_relu_pairs(inputs) if use_c_op(self.impl) else None
        if pairs:
            # note: one C pass from the branches' pre-activations into
            # the concatenation instead of a BiasReLU each and a Join
            # (and, for the gradient, a Split); same values.
            return BiasReLU()(*pairs)
        return super(ConcatLayer, self).get_output_for(inputs, **kwargs)

    def _bias_relu_pairs(self, inputs):
        """``[x1, b1, x2, b2, ...]`` when every input is a single-pair
        ``BiasReLU(x, b)`` and the axis is 1, else None."""
        if self.axis != 1:
            return None
        owners = [v.owner for v in inputs]
        if not all(o is not None and isinstance(o.op, BiasReLU)
                   and len(o.inputs) == 2 for o in owners):
            return None
        return [v for o in owners for v in o.inputs]
