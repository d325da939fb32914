"""Our faster Lasagne layers equal Lasagne 0.1's, values and gradients."""
import numpy as np
import pytest

from lasagne_tagger import layers  # first: applies compat

import lasagne  # noqa: E402
import theano  # noqa: E402
import theano.tensor as T  # noqa: E402


def _compare(make_ours, make_lasagne, shape, rtol, seed=0, scale=1.0):
    """Same input, same parameters: outputs and the gradient of a random
    projection w.r.t. the input and every parameter."""
    rng = np.random.RandomState(seed)
    x = T.tensor4('x')
    inp = lasagne.layers.InputLayer(shape, x)
    ours, theirs = make_ours(inp), make_lasagne(inp)
    for p, q in zip(ours.get_params(), theirs.get_params()):
        q.set_value(p.get_value())
    projection = rng.randn(*ours.output_shape).astype(theano.config.floatX)
    results = []
    for layer in (ours, theirs):
        out = lasagne.layers.get_output(layer)
        cost = (out * projection).sum()
        grads = T.grad(cost, [x] + layer.get_params())
        results.append(theano.function([x], [out] + grads))
    data = (rng.randn(*shape) * scale).astype(theano.config.floatX)
    got, want = results[0](data), results[1](data)
    assert got[0].shape == tuple(ours.output_shape)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * np.abs(w).max())
    return results


@pytest.mark.parametrize('filter_size,stride,pad', [
    (3, 1, 1), (7, 2, 3), (5, 1, 2), (1, 1, 0), (3, 2, (1, 0)),
    (3, 1, 'same'), (3, 1, 'full'), (3, 1, 'valid'), (1, 1, 'same'),
    (1, 1, 'valid')])
def test_conv_equals_lasagne(filter_size, stride, pad):
    kw = dict(num_filters=4, filter_size=filter_size, stride=stride, pad=pad)
    ours, theirs = _compare(lambda l: layers.Conv2DLayer(l, **kw),
                            lambda l: lasagne.layers.Conv2DLayer(l, **kw),
                            (2, 3, 9, 8), rtol=1e-5)
    if not isinstance(pad, str) and pad != 0:
        # the padding is inside our convolution: no zero tensor copied.
        # Lasagne 0.1 pads by copying into zeros (Alloc + IncSubtensor) in
        # the same compiled mode, so the check is one that can fail.
        def kinds(fn):
            return {type(n.op).__name__ for n in fn.maker.fgraph.apply_nodes}
        assert {'IncSubtensor', 'Alloc'} <= kinds(theirs), kinds(theirs)
        mine = kinds(ours)
        assert 'IncSubtensor' not in mine and 'Alloc' not in mine, mine


@pytest.mark.parametrize('beta', [0.75, 0.5])
def test_lrn_equals_lasagne(beta):
    kw = dict(alpha=0.0001 / 5, k=1, beta=beta, n=5)
    # activations of 100s, as after GoogLeNet's first convolutions: the
    # LRN then divides by up to ~3, not ~1
    _compare(lambda l: layers.LRNLayer(l, **kw),
             lambda l: lasagne.layers.LocalResponseNormalization2DLayer(
                 l, **kw), (2, 7, 5, 4), rtol=1e-5, scale=300.0)


def test_layers_are_lasagnes():
    inp = lasagne.layers.InputLayer((1, 3, 5, 5))
    conv = layers.Conv2DLayer(inp, 2, 3, pad=1, name='c')
    assert isinstance(conv, lasagne.layers.Conv2DLayer)
    assert [p.name for p in conv.get_params()] == ['c.W', 'c.b']
    assert isinstance(layers.LRNLayer(inp),
                      lasagne.layers.LocalResponseNormalization2DLayer)
