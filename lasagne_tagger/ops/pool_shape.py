"""Caffe's pooled output length, the one Python copy of the formula
(NumPy only; Theano is imported only for a symbolic size)."""
import numpy as np

__all__ = ['caffe_pool_output_length']


def caffe_pool_output_length(size, pool, stride, pad):
    """Caffe's pooled length: ceil((size + 2 pad - pool) / stride) + 1,
    minus one if the last window would start in the padding, at least 1.

    The one Python copy of the formula (the C op carries the same one in
    ``lt_caffe_pool_len``, :mod:`lasagne_tagger.ops.caffe_pool_op`).  ``size`` is an int (an int comes back), None
    (None: an unknown static size) or a symbolic Theano scalar (a symbolic
    length comes back).
    """
    if size is None:
        return None
    symbolic = not isinstance(size, (int, np.integer))
    if not symbolic:
        size = int(size)
    # ceil(a / s) == (a + s - 1) // s for integers of either sign.
    n = (size + 2 * pad - pool + stride - 1) // stride + 1
    if symbolic:
        from ..runtime import _theano  # noqa: F401 (prepares Theano)
        import theano.tensor as T
        if pad:
            n = n - T.ge((n - 1) * stride, size + pad)
        return T.maximum(n, 1)
    if pad and (n - 1) * stride >= size + pad:
        n -= 1
    return max(n, 1)
