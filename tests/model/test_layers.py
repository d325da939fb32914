"""Our faster Lasagne layers equal Lasagne 0.1's, values and gradients."""
import numpy as np
import pytest

from lasagne_tagger.model import layers

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
    assert isinstance(conv, layers.Conv2DLayer)   # a module-level class
    assert [p.name for p in conv.get_params()] == ['c.W', 'c.b']
    assert isinstance(layers.LRNLayer(inp),
                      lasagne.layers.LocalResponseNormalization2DLayer)


def _op_names(layer):
    out = lasagne.layers.get_output(layer, deterministic=True)
    inputs = theano.gof.graph.inputs([out])
    names = set()
    for a in theano.gof.graph.io_toposort(inputs, [out]):
        names.add(type(a.op).__name__)
        scalar = getattr(a.op, 'scalar_op', None)   # Elemwise: its maths
        if scalar is not None:
            names.add(type(scalar).__name__)
    return names


@pytest.mark.parametrize('impl, bias_relu, conv, fused', [
    ('op', 'op', 'CorrGemm', True), ('op', 'graph', 'CorrGemm', False),
    ('graph', 'op', 'AbstractConv2d', True),
    ('graph', 'graph', 'AbstractConv2d', False),
    ('lasagne', 'op', 'AbstractConv2d', False)])
def test_conv_implementation_is_a_constructor_argument(impl, bias_relu, conv,
                                                       fused):
    # each choice builds the graph it names, and every one gives Lasagne's
    # numbers (values and gradients)
    kw = dict(num_filters=4, filter_size=3, pad=1)
    ours, _ = _compare(
        lambda l: layers.Conv2DLayer(l, impl=impl, bias_relu=bias_relu,
                                     **kw),
        lambda l: lasagne.layers.Conv2DLayer(l, **kw), (2, 3, 6, 5),
        rtol=1e-4)
    layer = layers.Conv2DLayer(lasagne.layers.InputLayer((2, 3, 6, 5)),
                               impl=impl, bias_relu=bias_relu, **kw)
    assert (layer.impl, layer.bias_relu) == (impl, bias_relu)
    names = _op_names(layer)
    assert conv in names
    assert ('BiasReLU' in names) == fused
    if impl == 'lasagne':        # Lasagne 0.1 pads by copying, then 'valid'
        assert 'IncSubtensor' in names


def test_conv_unfold_bytes_reaches_the_op():
    inp = lasagne.layers.InputLayer((1, 3, 9, 9))
    for unfold in (None, 1024):
        layer = layers.Conv2DLayer(inp, 2, 3, pad=1, impl='op',
                                   unfold_bytes=unfold)
        out = lasagne.layers.get_output(layer)
        conv = out.owner.inputs[0].owner.op       # BiasReLU(CorrGemm(.), b)
        assert type(conv).__name__ == 'CorrGemm'
        assert conv.unfold_bytes == unfold


@pytest.mark.parametrize('impl', ['op', 'graph', 'lasagne'])
def test_lrn_implementations_agree(impl):
    kw = dict(alpha=1e-4, k=2, beta=0.75, n=5)
    _compare(lambda l: layers.LRNLayer(l, impl=impl, **kw),
             lambda l: lasagne.layers.LocalResponseNormalization2DLayer(
                 l, **kw), (2, 7, 5, 4), rtol=1e-5, scale=300.0)
    names = _op_names(layers.LRNLayer(
        lasagne.layers.InputLayer((2, 7, 5, 4)), impl=impl, **kw))
    assert ('CaffeLRN' in names) == (impl == 'op')
    assert ('Pow' in names) == (impl == 'lasagne'), names
    assert ('Sqrt' in names) == (impl == 'graph'), names


def test_concat_implementation_chooses_the_fusion():
    inp = lasagne.layers.InputLayer((2, 3, 5, 5))
    branches = [layers.Conv2DLayer(inp, n, 1, impl='op', bias_relu='op')
                for n in (2, 3)]
    fused = _op_names(layers.ConcatLayer(branches, impl='op'))
    joined = _op_names(layers.ConcatLayer(branches, impl='graph'))
    assert 'Join' not in fused and 'Join' in joined
    assert 'BiasReLU' in fused and 'BiasReLU' in joined


@pytest.mark.parametrize('make', [
    lambda inp: layers.Conv2DLayer(inp, 2, 3, impl='cudnn'),
    lambda inp: layers.Conv2DLayer(inp, 2, 3, bias_relu='lasagne'),
    lambda inp: layers.LRNLayer(inp, impl='fast'),
    lambda inp: layers.ConcatLayer([inp, inp], impl='lasagne')])
def test_an_unknown_implementation_is_refused_at_build_time(make):
    with pytest.raises(ValueError, match="implementation must be one of "
                                         "auto, op, graph"):
        make(lasagne.layers.InputLayer((1, 3, 5, 5)))


def test_googlenet_takes_layer_options():
    from lasagne_tagger.errors import TaggerError
    from lasagne_tagger.model import googlenet
    net = googlenet.build_model(image_size=32, width=0.125, num_classes=4,
                                impl='graph',
                                layer_options={'pool': {'impl': 'op'},
                                               'lrn': {'impl': 'lasagne'}})
    assert all(net[n].impl == 'graph' for n in net
               if isinstance(net[n], (layers.Conv2DLayer, layers.ConcatLayer)))
    assert net['conv2/norm2'].impl == 'lasagne'
    assert net['pool1/3x3_s2'].impl == 'op'
    assert net['conv1/7x7_s2'].bias_relu == 'graph'
    with pytest.raises(TaggerError, match='unknown kind.*convolution'):
        googlenet.build_model(image_size=32, width=0.125,
                              layer_options={'convolution': {}})
