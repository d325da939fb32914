"""The C LRN op (and its NumPy perform) equal the LRN graph, values and
gradients, in float32 and float64."""
import numpy as np
import pytest

from lasagne_tagger.model import layers

import lasagne  # noqa: E402
import theano  # noqa: E402
import theano.tensor as T  # noqa: E402
from lasagne_tagger.ops.lrn_op import CaffeLRN  # noqa: E402


def _graph_lrn(x, alpha, k, beta, n):
    """Lasagne 0.1's LRN maths, written out (constants in x's dtype, as
    Lasagne's are under floatX)."""
    alpha, k, beta = (np.asarray(v, x.dtype) for v in (alpha, k, beta))
    half = n // 2
    b, ch, r, c = x.shape
    sqr = T.set_subtensor(
        T.alloc(np.asarray(0, x.dtype), b, ch + 2 * half, r, c)[
            :, half:half + ch], T.sqr(x))
    s = k
    for i in range(n):
        s += alpha * sqr[:, i:i + ch]
    return x / s ** beta


PY = theano.Mode(linker='py', optimizer='fast_compile')


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('beta,n,channels,hw', [
    (0.75, 5, 7, (5, 4)), (0.5, 3, 6, (5, 4)), (0.75, 5, 3, (5, 4)),
    (0.75, 5, 9, (9, 13))])     # planes past a vector length, odd tails
def test_op_equals_graph(dtype, beta, n, channels, hw):
    rng = np.random.RandomState(0)
    x = T.tensor4(dtype=dtype)
    data = (rng.randn(2, channels, *hw) * 300).astype(dtype)
    proj = rng.randn(*data.shape).astype(dtype)
    alpha, k = 0.0001 / 5, 1.0

    def outputs(y):
        return [y, T.grad((y * proj).sum(), x)]
    op = CaffeLRN(alpha, k, beta, n)
    want = theano.function([x], outputs(_graph_lrn(x, alpha, k, beta, n)))
    c_code = theano.function([x], outputs(op(x)))
    python = theano.function([x], outputs(op(x)), mode=PY)
    kinds = {type(a.op).__name__ for a in c_code.maker.fgraph.apply_nodes}
    assert {'CaffeLRN', 'CaffeLRNGrad'} <= kinds
    rtol = 1e-6 if dtype == 'float32' else 1e-13
    expected = want(data)
    for got in (c_code(data), python(data)):
        for g, w in zip(got, expected):
            assert g.dtype == w.dtype
            np.testing.assert_allclose(g, w, rtol=rtol,
                                       atol=rtol * np.abs(w).max())


def test_layer_uses_the_op_on_cpu():
    inp = lasagne.layers.InputLayer((None, 6, 4, 4))
    out = lasagne.layers.get_output(layers.LRNLayer(inp, alpha=2e-5, k=1,
                                                    beta=0.75, n=5))
    assert isinstance(out.owner.op, CaffeLRN)


def test_even_size_is_refused():
    with pytest.raises(ValueError, match='odd'):
        CaffeLRN(1e-4, 1, 0.75, 4)
