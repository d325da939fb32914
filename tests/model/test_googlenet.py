"""GoogLeNet: structure, and numerical faithfulness to Caffe's definitions.

Each op is checked against the independent NumPy code in numpy_reference.py,
then the whole network (random weights in the pickle's layout) at
``pool5/7x7_s1`` and ``prob``: max abs error < 1e-4.
"""
import numpy as np
import pytest

import lasagne_tagger.runtime._theano  # noqa: F401 (prepares Theano)
from lasagne_tagger.model import googlenet
from lasagne_tagger.errors import TaggerError

import numpy_reference as ref

TOL = 1e-4


def _compile(layer, input_var):
    import lasagne
    import theano
    return theano.function([input_var], lasagne.layers.get_output(
        layer, deterministic=True))


def _input_layer(shape):
    import lasagne
    import theano.tensor as T
    x = T.tensor4('x')
    return lasagne.layers.InputLayer(shape, input_var=x), x


def test_layer_names_order_and_count():
    net = googlenet.build_model()
    for name in ['conv1/7x7_s2', 'pool1/3x3_s2', 'pool1/norm1',
                 'conv2/3x3_reduce', 'conv2/3x3', 'conv2/norm2',
                 'pool2/3x3_s2', 'inception_3a/output', 'pool3/3x3_s2',
                 'pool4/3x3_s2', 'inception_5b/output', 'pool5/7x7_s1',
                 'loss3/classifier', 'prob']:
        assert name in net, name
    assert googlenet.count_params(net) == googlenet.NUM_PARAMS == 6998552
    assert net['pool5/7x7_s1'].output_shape == (None, 1024)
    assert net['inception_5b/output'].output_shape == (None, 1024, 7, 7)
    assert net['prob'].output_shape == (None, 1000)
    # The zoo's list goes straight into Lasagne's own parameter order.
    import lasagne
    params = lasagne.layers.get_all_params(net['prob'])
    assert len(params) == 116
    expected = [getattr(net[n], k) for n in googlenet.PARAM_LAYERS
                for k in ('W', 'b')]
    assert all(a is b for a, b in zip(params, expected))


def test_fine_tuning_head_and_width():
    net = googlenet.build_model(num_classes=15, dropout=0.4, width=0.25,
                                image_size=64)
    assert net['pool5/drop_7x7_s1'].p == 0.4
    assert net['prob'].output_shape == (None, 15)
    assert net['pool5/7x7_s1'].output_shape == (None, 256)
    with pytest.raises(TaggerError, match='num_classes'):
        googlenet.build_model(num_classes=1)
    with pytest.raises(TaggerError, match='image_size'):
        googlenet.build_model(image_size=0)


def test_conv_filters_are_flipped_once_at_load():
    """Lasagne 0.1 convolves; Caffe correlates.  An asymmetric filter shows
    the flip is needed and that caffe_to_lasagne_filters makes them equal."""
    import lasagne
    rng = np.random.RandomState(0)
    l_in, x = _input_layer((2, 3, 9, 11))
    layer = lasagne.layers.Conv2DLayer(l_in, 4, 3, stride=2, pad=1,
                                       nonlinearity=None)
    w = rng.randn(4, 3, 3, 3).astype(np.float32)
    b = rng.randn(4).astype(np.float32)
    data = rng.randn(2, 3, 9, 11).astype(np.float32)
    expected = ref.conv2d(data, w, b, stride=2, pad=1)
    f = _compile(layer, x)
    layer.W.set_value(w)            # as stored by Caffe: wrong in Lasagne 0.1
    layer.b.set_value(b)
    assert np.abs(f(data) - expected).max() > 0.1
    layer.W.set_value(googlenet.caffe_to_lasagne_filters(w))
    assert np.abs(f(data) - expected).max() < TOL


@pytest.mark.parametrize('size', [7, 8, 13, 14])
def test_stride2_pools_are_ceil_mode(size):
    import lasagne
    rng = np.random.RandomState(size)
    l_in, x = _input_layer((1, 2, size, size))
    pool = lasagne.layers.MaxPool2DLayer(l_in, 3, stride=2,
                                         ignore_border=False)
    data = rng.randn(1, 2, size, size).astype(np.float32)
    expected = ref.max_pool(data, 3, 2)
    assert pool.output_shape[2:] == expected.shape[2:]
    assert np.abs(_compile(pool, x)(data) - expected).max() < TOL


def test_inception_pool_never_selects_padding():
    """3x3 stride 1 pad 1; all-negative input: zero padding must not win."""
    import lasagne
    rng = np.random.RandomState(1)
    l_in, x = _input_layer((1, 3, 6, 5))
    pool = lasagne.layers.MaxPool2DLayer(l_in, 3, stride=1, pad=1)
    data = -np.abs(rng.randn(1, 3, 6, 5)).astype(np.float32) - 1
    out = _compile(pool, x)(data)
    assert out.max() < 0
    assert np.abs(out - ref.max_pool(data, 3, 1, 1)).max() < TOL


def test_lrn_matches_caffe():
    import lasagne
    rng = np.random.RandomState(2)
    l_in, x = _input_layer((2, 7, 4, 4))
    layer = lasagne.layers.LocalResponseNormalization2DLayer(
        l_in, alpha=0.0001 / 5, k=1, beta=0.75, n=5)
    data = (rng.randn(2, 7, 4, 4) * 30).astype(np.float32)
    expected = ref.lrn(data, 5, 1e-4, 0.75, 1.0)
    assert np.abs(_compile(layer, x)(data) - expected).max() < TOL


@pytest.fixture(scope='module')
def full_net_outputs():
    """Full GoogLeNet, random pickle-layout weights, odd input size (67)."""
    rng = np.random.RandomState(42)
    params = ref.random_params(rng)
    net = googlenet.build_model(image_size=67)
    googlenet.set_model_zoo_values(net, params)
    data = (rng.randn(2, 3, 67, 67) * 50).astype(np.float32)
    import lasagne
    import theano
    names = ['pool1/norm1', 'pool2/3x3_s2', 'inception_3b/output',
             'pool4/3x3_s2', 'pool5/7x7_s1', 'loss3/classifier', 'prob']
    f = theano.function([net['input'].input_var], lasagne.layers.get_output(
        [net[n] for n in names], deterministic=True))
    got = dict(zip(names, f(data)))
    return got, ref.googlenet_forward(data, params), net, params


@pytest.mark.parametrize('name', ['pool1/norm1', 'pool2/3x3_s2',
                                  'inception_3b/output', 'pool4/3x3_s2',
                                  'pool5/7x7_s1', 'loss3/classifier', 'prob'])
@pytest.mark.slow
def test_full_network_matches_numpy_reference(full_net_outputs, name):
    got, want, _, _ = full_net_outputs
    assert got[name].shape == want[name].shape
    scale = max(1.0, np.abs(want[name]).max())
    err = np.abs(got[name] - want[name]).max()
    if name in ('pool5/7x7_s1', 'prob'):
        assert err < TOL, (name, err)          # the criterion
    else:
        assert err / scale < TOL, (name, err, scale)
    assert want[name].std() > 1e-3            # not a trivial (dead) signal


@pytest.mark.slow
def test_round_trip_of_model_zoo_values(full_net_outputs):
    _, _, net, params = full_net_outputs
    back = googlenet.get_model_zoo_values(net)
    assert len(back) == 116
    assert all(np.array_equal(a, b) for a, b in zip(back, params))


@pytest.mark.slow
def test_wrong_values_are_named(full_net_outputs):
    _, _, net, params = full_net_outputs
    with pytest.raises(TaggerError, match=r'expected 116 parameter arrays '
                                          r'\(W and b for 58 layers\), got 115'):
        googlenet.set_model_zoo_values(net, params[:-1])
    bad = list(params)
    bad[8] = np.zeros((3, 3), np.float32)
    with pytest.raises(TaggerError, match=r'parameter 8 \(inception_3a/'
                                          r'3x3_reduce W\) has shape \(3, 3\), '
                                          r'the network expects \(96, 192, '
                                          r'1, 1\)'):
        googlenet.set_model_zoo_values(net, bad)
