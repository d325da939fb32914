"""The fused bias + rectify op equals Lasagne's graph: the output and the
input gradient bit for bit (zeros and NaN included), the bias gradient to
float rounding; in C (with and without OpenMP) and in its NumPy perform."""
import numpy as np
import pytest

from lasagne_tagger import layers  # first: applies compat

import lasagne  # noqa: E402
import theano  # noqa: E402
import theano.tensor as T  # noqa: E402
from lasagne_tagger.bias_relu_op import BiasReLU  # noqa: E402

PY = theano.Mode(linker='py', optimizer='fast_compile')


def _data(dtype, shape=(3, 5, 4, 7), seed=0):
    rng = np.random.RandomState(seed)
    x = rng.randn(*shape).astype(dtype)
    b = rng.randn(shape[1]).astype(dtype)
    x[0, :, 0, :3] = -b[:, None]          # pre-activation exactly 0
    x[1, 2, 1, 1] = np.nan
    x[2, 1, 0, 0] = -np.inf                # Lasagne's rectify gives NaN
    x[2, 1, 0, 1] = np.finfo(dtype).max    # ... and inf: s + s overflows
    g = rng.randn(*shape).astype(dtype)
    return x, b, g


def _functions(dtype, openmp):
    x, g = T.tensor4('x', dtype), T.tensor4('g', dtype)
    b = T.vector('b', dtype)

    def outputs(y):
        return [y] + T.grad((y * g).sum(), [x, b])
    want = theano.function([x, b, g], outputs(lasagne.nonlinearities.rectify(
        x + b.dimshuffle('x', 0, 'x', 'x'))))
    ours = outputs(BiasReLU(openmp=openmp)(x, b))
    return (want, theano.function([x, b, g], ours),
            theano.function([x, b, g], ours, mode=PY))


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('openmp', [False, True])
def test_op_equals_lasagne(dtype, openmp):
    want, c_code, python = _functions(dtype, openmp)
    kinds = {type(a.op).__name__ for a in c_code.maker.fgraph.apply_nodes}
    assert {'BiasReLU', 'BiasReLUGrad'} <= kinds
    data = _data(dtype)
    expected = want(*data)
    rtol = 1e-6 if dtype == 'float32' else 1e-14
    for got in (c_code(*data), python(*data)):
        y, gx, gb = got
        np.testing.assert_array_equal(y, expected[0])
        assert np.isnan(y[2, 1, 0, 0]) and np.isinf(y[2, 1, 0, 1])
        assert not np.signbit(y[y == 0]).any()     # +0, as Lasagne's
        np.testing.assert_array_equal(gx, expected[1])
        # the NaN reaches its channel's bias gradient (an infinite s does
        # not: its gradient is 0 or g); the rest to rounding
        assert np.isnan(gb[2]) and np.isnan(expected[2][2])
        keep = ~np.isnan(expected[2])
        np.testing.assert_allclose(gb[keep], expected[2][keep], rtol=rtol,
                                   atol=rtol * np.abs(expected[2][keep]).max())


def test_zero_preactivation_gets_half_the_gradient():
    x, b, g = (np.zeros((1, 1, 1, 2), 'float64'), np.zeros(1, 'float64'),
               np.full((1, 1, 1, 2), 4.0))
    _, c_code, python = _functions('float64', True)
    for f in (c_code, python):
        y, gx, gb = f(x, b, g)
        assert y.tolist() == [[[[0.0, 0.0]]]]
        assert gx.tolist() == [[[[2.0, 2.0]]]] and gb.tolist() == [4.0]


def test_bias_count_mismatch_is_an_error():
    x, b = T.tensor4('x'), T.vector('b')
    f = theano.function([x, b], BiasReLU()(x, b))
    with pytest.raises(ValueError, match='3 channels but 2 biases'):
        f(np.zeros((1, 3, 2, 2), x.dtype), np.zeros(2, b.dtype))


def test_layer_uses_the_op_for_rectify_with_tied_biases():
    inp = lasagne.layers.InputLayer((None, 3, 5, 5))
    cases = {'rectify': dict(), 'linear': dict(
        nonlinearity=lasagne.nonlinearities.linear),
        'untied': dict(untie_biases=True), 'no bias': dict(b=None)}
    kinds = {}
    for name, kw in cases.items():
        layer = layers.Conv2DLayer(inp, 4, 3, pad=1, **kw)
        f = theano.function([inp.input_var], lasagne.layers.get_output(layer))
        kinds[name] = {type(a.op).__name__ for a in f.maker.fgraph.apply_nodes}
    assert 'BiasReLU' in kinds['rectify']
    assert not any('BiasReLU' in kinds[k] for k in cases if k != 'rectify')
