"""Loss arithmetic shared by both training stages (Theano graphs).

# note: Lasagne's ``categorical_crossentropy(softmax(z))`` takes the log of
# a probability that underflows to 0 early in from-scratch training (NaN
# loss measured here); the log-softmax below is the same value, finite.
"""

__all__ = ['log_softmax']


def log_softmax(logits, axis=-1):
    """Stable ``log(softmax(logits))`` along ``axis`` (a Theano graph).

    Parameters
    ----------
    logits : Theano tensor
    axis : int
        The class axis (the last by default).

    Returns
    -------
    Theano tensor
        Same shape as ``logits``: ``z - max(z) - log(sum(exp(z - max(z))))``.
    """
    from ..runtime import _theano  # noqa: F401 (prepares Theano)
    import theano.tensor as T
    shifted = logits - logits.max(axis=axis, keepdims=True)
    return shifted - T.log(T.exp(shifted).sum(axis=axis, keepdims=True))
