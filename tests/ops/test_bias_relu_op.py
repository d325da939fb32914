"""The fused bias + rectify op equals Lasagne's graph: the output and the
input gradient bit for bit (zeros and NaN included), the bias gradient to
float rounding; in C (with and without OpenMP) and in its NumPy perform."""
import numpy as np
import pytest

from lasagne_tagger.model import layers

import lasagne  # noqa: E402
import theano  # noqa: E402
import theano.tensor as T  # noqa: E402
from lasagne_tagger.ops.bias_relu_op import BiasReLU  # noqa: E402

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
    # (a forward graph runs it inside the convolution: test_conv_op.py)
    apart = theano.compile.mode.get_default_mode().excluding(
        'lasagne_tagger_conv_bias_relu')
    for name, kw in cases.items():
        layer = layers.Conv2DLayer(inp, 4, 3, pad=1, **kw)
        f = theano.function([inp.input_var], lasagne.layers.get_output(layer),
                            mode=apart)
        kinds[name] = {type(a.op).__name__ for a in f.maker.fgraph.apply_nodes}
    assert 'BiasReLU' in kinds['rectify']
    assert not any('BiasReLU' in kinds[k] for k in cases if k != 'rectify')


def _branches(dtype, channels=(3, 6, 4), seed=1):
    """Pre-activations, biases and an incoming gradient for branches of
    ``channels`` channels, the special values of ``_data`` in each."""
    xs, bs = [], []
    for i, c in enumerate(channels):
        x, b, _ = _data(dtype, (3, c, 4, 7), seed + i)
        xs.append(x)
        bs.append(b)
    g = np.random.RandomState(seed).randn(3, sum(channels), 4, 7).astype(
        dtype)
    return xs, bs, g


@pytest.mark.parametrize('dtype,openmp', [('float32', True),
                                          ('float64', False)])
def test_pairs_equal_lasagnes_concatenation(dtype, openmp):
    """``BiasReLU(x1, b1, x2, b2, ...)``: Lasagne's rectified branches
    concatenated along the channels, and their gradients (input
    gradients bit for bit, bias gradients to rounding), in C and NumPy."""
    channels = (3, 6, 4)
    xs_v, bs_v, g_v = _branches(dtype, channels)
    xs = [T.tensor4('x%d' % i, dtype) for i in range(len(channels))]
    bs = [T.vector('b%d' % i, dtype) for i in range(len(channels))]
    g = T.tensor4('g', dtype)
    inputs = xs + bs + [g]

    def outputs(y):
        return [y] + T.grad((y * g).sum(), xs + bs)
    want = theano.function(inputs, outputs(T.concatenate(
        [lasagne.nonlinearities.rectify(x + b.dimshuffle('x', 0, 'x', 'x'))
         for x, b in zip(xs, bs)], axis=1)))
    ours = outputs(BiasReLU(openmp=openmp)(
        *[v for pair in zip(xs, bs) for v in pair]))
    c_code = theano.function(inputs, ours)
    kinds = {type(a.op).__name__ for a in c_code.maker.fgraph.apply_nodes}
    assert {'BiasReLU', 'BiasReLUGrad'} <= kinds
    assert not kinds & {'Join', 'Split'}, kinds
    data = xs_v + bs_v + [g_v]
    expected = want(*data)
    k = len(channels)
    rtol = 1e-6 if dtype == 'float32' else 1e-14
    for got in (c_code(*data), theano.function(inputs, ours, mode=PY)(*data)):
        np.testing.assert_array_equal(got[0], expected[0])
        for gx, want_gx in zip(got[1:1 + k], expected[1:1 + k]):
            np.testing.assert_array_equal(gx, want_gx)
        for gb, want_gb in zip(got[1 + k:], expected[1 + k:]):
            assert gb.shape == want_gb.shape
            np.testing.assert_array_equal(np.isnan(gb), np.isnan(want_gb))
            keep = ~np.isnan(want_gb)
            np.testing.assert_allclose(
                gb[keep], want_gb[keep], rtol=rtol,
                atol=rtol * np.abs(want_gb[keep]).max(initial=0))


def test_pairs_must_agree():
    x1, x2 = T.tensor4('x1'), T.tensor4('x2')
    b1, b2 = T.vector('b1'), T.vector('b2')
    f = theano.function([x1, b1, x2, b2], BiasReLU()(x1, b1, x2, b2))
    z = np.zeros
    dt = x1.dtype
    with pytest.raises(ValueError, match=r'input 1 is \(2, 3, 4, 5\), input '
                                         r'0 has 2 images of 4 x 4'):
        f(z((2, 1, 4, 4), dt), z(1, dt), z((2, 3, 4, 5), dt), z(3, dt))
    with pytest.raises(ValueError, match='3 channels but 2 biases'):
        f(z((2, 1, 4, 4), dt), z(1, dt), z((2, 3, 4, 4), dt), z(2, dt))
    with pytest.raises(TypeError, match='pairs'):
        BiasReLU()(x1, b1, x2)


def test_concat_layer_fuses_rectified_branches_only():
    """An inception-like concatenation of rectified, biased convolutions
    runs as one BiasReLU with no Join (same values as Lasagne's
    ConcatLayer); any other input, or another axis, keeps Lasagne's."""
    inp = lasagne.layers.InputLayer((None, 3, 5, 5))
    relu = [layers.Conv2DLayer(inp, n, size, pad=size // 2)
            for n, size in ((2, 1), (3, 3))]
    linear = layers.Conv2DLayer(inp, 2, 1,
                                nonlinearity=lasagne.nonlinearities.linear)
    data = np.random.RandomState(0).randn(2, 3, 5, 5).astype(
        theano.config.floatX)
    cases = {'fused': (relu, 1), 'mixed': (relu + [linear], 1),
             'axis 2': (relu[:1] * 2, 2)}
    for name, (incomings, axis) in cases.items():
        ours = layers.ConcatLayer(incomings, axis=axis)
        theirs = lasagne.layers.ConcatLayer(incomings, axis=axis)
        f = theano.function([inp.input_var], lasagne.layers.get_output(ours))
        kinds = [type(a.op).__name__ for a in f.maker.fgraph.apply_nodes]
        want = theano.function([inp.input_var],
                               lasagne.layers.get_output(theirs))(data)
        np.testing.assert_array_equal(f(data), want)
        assert ('Join' in kinds) == (name != 'fused'), (name, kinds)
        if name == 'fused':
            assert kinds.count('BiasReLU') == 1
