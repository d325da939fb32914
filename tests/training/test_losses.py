"""The one log-softmax both stages use (lasagne_tagger/training/losses.py)."""
import numpy as np

import lasagne_tagger.runtime._theano  # noqa: F401 (prepares Theano)
from lasagne_tagger.training.losses import log_softmax


def test_log_softmax_equals_numpy_and_stays_finite():
    import theano
    import theano.tensor as T
    x = T.tensor3('x')
    f = theano.function([x], [log_softmax(x), log_softmax(x, axis=1)])
    rng = np.random.RandomState(0)
    z = rng.randn(2, 3, 5).astype(theano.config.floatX) * 3
    z[0, 0] = [1e4, -1e4, 0, 0, 0]      # exp would overflow / underflow
    last, middle = f(z)
    for got, axis in ((last, -1), (middle, 1)):
        zz = z.astype(np.float64)
        m = zz.max(axis=axis, keepdims=True)
        want = zz - m - np.log(np.exp(zz - m).sum(axis=axis, keepdims=True))
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(np.exp(got).sum(axis=axis), 1, rtol=1e-5)
