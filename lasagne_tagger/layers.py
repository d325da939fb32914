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
  :class:`lasagne_tagger.conv_op.CorrGemm` instead of Theano's ``CorrMM``
  (the same GEMMs; a cheaper unfolding, none for GoogLeNet's 37 1x1
  layers); and tied biases followed by Lasagne's
  ``rectify`` run as one :class:`lasagne_tagger.bias_relu_op.BiasReLU`
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
model-zoo weights load unchanged.  Like :mod:`lasagne_tagger.pooling`, the
classes are created on first use: importing this module does not import
Lasagne.
"""
import functools

__all__ = ['ConcatLayer', 'Conv2DLayer', 'LRNLayer']


@functools.lru_cache(maxsize=None)
def _conv_class():
    import lasagne

    class Conv2DLayer(lasagne.layers.Conv2DLayer):
        """``lasagne.layers.Conv2DLayer`` (Lasagne 0.1) with integer padding
        done by the convolution (see the module docstring)."""

        def get_output_for(self, input, input_shape=None, **kwargs):
            pad = self._gemm_pad()
            if pad is not None:
                # note: on the CPU, our im2col + GEMM op (conv_op) instead
                # of Theano's CorrMM: same GEMMs, cheaper unfolding, none
                # for 1x1 filters.  Lasagne 0.1 convolves (flipped filters).
                from . import conv_op
                conved = conv_op.CorrGemm(
                    self.filter_size, self.stride, pad, flip=True,
                    unfold_bytes=conv_op.UNFOLD_BYTES)(input, self.W)
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
                # compiled graph does it inside the convolution's loop.
                from .bias_relu_op import BiasReLU
                from .conv_op import register_bias_relu_fusion
                register_bias_relu_fusion()
                return BiasReLU()(conved, self.b)
            if self.b is None:
                activation = conved
            elif self.untie_biases:
                activation = conved + self.b.dimshuffle('x', 0, 1, 2)
            else:
                activation = conved + self.b.dimshuffle('x', 0, 'x', 'x')
            return self.nonlinearity(activation)

        def _fused_bias_relu(self):
            """Tied biases and Lasagne's ``rectify``, on a CPU device."""
            import lasagne
            from .pooling import _use_op
            return (self.b is not None and not self.untie_biases
                    and self.nonlinearity is lasagne.nonlinearities.rectify
                    and _use_op('auto'))

        def _gemm_pad(self):
            """The padding for :class:`lasagne_tagger.conv_op.CorrGemm`
            on a CPU device with Theano's ``conv2d``, else None: integer
            padding, or any mode for a 1x1 filter (all mean none)."""
            import theano.tensor as T
            from .pooling import _use_op
            if self.convolution is not T.nnet.conv2d or not _use_op('auto'):
                return None
            if not isinstance(self.pad, str):
                return tuple(int(p) for p in self.pad)
            if tuple(self.filter_size) == (1, 1):
                return (0, 0)
            return None

    return Conv2DLayer


@functools.lru_cache(maxsize=None)
def _lrn_class():
    import lasagne
    import theano.tensor as T
    base = lasagne.layers.LocalResponseNormalization2DLayer

    class LRNLayer(base):
        """``lasagne.layers.LocalResponseNormalization2DLayer`` (Lasagne
        0.1): ``x / (k + alpha * sum over n channels of x^2) ** beta``, with
        ``** 0.75`` computed from square roots (see the module docstring)."""

        def get_output_for(self, input, **kwargs):
            from .pooling import _use_op
            if _use_op('auto'):            # the C op, on a CPU device
                from .lrn_op import CaffeLRN
                return CaffeLRN(self.alpha, self.k, self.beta,
                                self.n)(input)
            if self.beta != 0.75:
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

    return LRNLayer


@functools.lru_cache(maxsize=None)
def _concat_class():
    import lasagne

    class ConcatLayer(lasagne.layers.ConcatLayer):
        """``lasagne.layers.ConcatLayer`` (Lasagne 0.1); along the channel
        axis, inputs that are all biased, rectified convolutions of
        :func:`Conv2DLayer` (an inception module's branches, on a CPU
        device) are rectified straight into the concatenated output by one
        :class:`lasagne_tagger.bias_relu_op.BiasReLU` (see the module
        docstring)."""

        def get_output_for(self, inputs, **kwargs):
            pairs = self._bias_relu_pairs(inputs)
            if pairs:
                # note: one C pass from the branches' pre-activations into
                # the concatenation instead of a BiasReLU each and a Join
                # (and, for the gradient, a Split); same values.
                from .bias_relu_op import BiasReLU
                return BiasReLU()(*pairs)
            return super(ConcatLayer, self).get_output_for(inputs,
                                                           **kwargs)

        def _bias_relu_pairs(self, inputs):
            """``[x1, b1, x2, b2, ...]`` when every input is a
            single-pair ``BiasReLU(x, b)`` and the axis is 1, else None."""
            from .bias_relu_op import BiasReLU
            if self.axis != 1:
                return None
            owners = [v.owner for v in inputs]
            if not all(o is not None and isinstance(o.op, BiasReLU)
                       and len(o.inputs) == 2 for o in owners):
                return None
            return [v for o in owners for v in o.inputs]

    return ConcatLayer


def Conv2DLayer(*args, **kwargs):
    """Build a :func:`lasagne.layers.Conv2DLayer` whose integer padding is
    done by the convolution (same arguments)."""
    return _conv_class()(*args, **kwargs)


def ConcatLayer(*args, **kwargs):
    """Build a Lasagne 0.1 ``ConcatLayer`` that fuses the concatenation of
    biased, rectified convolutions (same arguments)."""
    return _concat_class()(*args, **kwargs)


def LRNLayer(*args, **kwargs):
    """Build a Lasagne 0.1 ``LocalResponseNormalization2DLayer`` with the
    faster ``beta = 0.75`` power (same arguments)."""
    return _lrn_class()(*args, **kwargs)
