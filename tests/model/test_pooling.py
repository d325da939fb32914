"""Caffe max pooling: same forward as Caffe, gradient to one maximum."""
import numpy as np
import pytest

import lasagne_tagger.runtime._theano  # noqa: F401 (prepares Theano)
from lasagne_tagger.model.pooling import CaffeMaxPool2DLayer
from lasagne_tagger.ops.pool_shape import caffe_pool_output_length

import numpy_reference as ref


IMPLS = ['op', 'graph']


def _fn(layer_shape, k, s, p, symbolic=False, impl='auto', mode=None):
    import lasagne
    import theano
    import theano.tensor as T
    x = T.tensor4('x')
    shape = (None, layer_shape[1], None, None) if symbolic else layer_shape
    layer = CaffeMaxPool2DLayer(lasagne.layers.InputLayer(shape), k, s, p,
                                impl=impl)
    out = lasagne.layers.get_output(layer, x)
    return layer, theano.function([x], [out, T.grad((out ** 2).sum(), x)],
                                  mode=mode)


@pytest.mark.parametrize('h, w, k, s, p', [
    (7, 7, 3, 2, 0), (8, 8, 3, 2, 0), (13, 14, 3, 2, 0), (6, 5, 3, 1, 1),
    (2, 2, 3, 1, 1), (2, 2, 3, 2, 0)])
@pytest.mark.parametrize('symbolic', [False, True])
@pytest.mark.parametrize('impl', IMPLS)
def test_forward_equals_caffe(h, w, k, s, p, symbolic, impl):
    data = np.random.RandomState(h * w).randn(2, 3, h, w)
    layer, f = _fn((None, 3, h, w), k, s, p, symbolic, impl)
    out, _ = f(data)
    want = ref.max_pool(data, k, s, p)
    assert out.shape == want.shape
    assert np.array_equal(out, want)
    if not symbolic:
        assert layer.output_shape[2:] == want.shape[2:]


def test_output_length_is_caffes():
    assert caffe_pool_output_length(112, 3, 2, 0) == 56
    assert caffe_pool_output_length(7, 3, 2, 0) == 3
    assert caffe_pool_output_length(14, 3, 1, 1) == 14
    assert caffe_pool_output_length(1, 3, 2, 0) == 1     # at least one
    assert caffe_pool_output_length(None, 3, 2, 0) is None


def _caffe_length(size, k, s, p):
    # Caffe's pooling_layer.cpp, written out in floats
    n = int(np.ceil((size + 2 * p - k) / float(s))) + 1
    if p and (n - 1) * s >= size + p:
        n -= 1
    return max(n, 1)


def test_output_length_int_and_symbolic_are_one_formula():
    import theano
    import theano.tensor as T
    sizes = np.arange(1, 40)
    combos = [(3, 2, 0), (3, 2, 1), (3, 1, 1), (5, 3, 2), (7, 2, 3),
              (2, 2, 0), (1, 1, 0)]
    v = T.lvector('sizes')
    f = theano.function([v], [caffe_pool_output_length(v, k, s, p)
                              for k, s, p in combos])
    for (k, s, p), symbolic in zip(combos, f(sizes)):
        want = [_caffe_length(int(n), k, s, p) for n in sizes]
        assert [caffe_pool_output_length(int(n), k, s, p)
                for n in sizes] == want, (k, s, p)
        assert [caffe_pool_output_length(np.int64(n), k, s, p)
                for n in sizes] == want, (k, s, p)
        assert list(symbolic) == want, (k, s, p)


@pytest.mark.parametrize('impl', IMPLS)
def test_gradient_goes_to_the_first_maximum_only(impl):
    """A 2x2 plateau under a 3x3 stride-2 window: Theano's own Pool gives
    the gradient to all four tied elements (4x too much); Caffe, and this
    layer, to the first one."""
    import theano
    import theano.tensor as T
    from theano.tensor.signal.pool import pool_2d
    plateau = np.ones((1, 1, 2, 2))
    x = T.tensor4()
    theirs = theano.function([x], T.grad(pool_2d(
        x, ws=(3, 3), stride=(2, 2), ignore_border=False).sum(), x))(plateau)
    assert theirs.sum() == 4.0                       # the bug we avoid
    _, f = _fn((None, 1, 2, 2), 3, 2, 0, impl=impl)
    _, grad = f(plateau)
    assert grad.sum() == 2.0                         # d(out^2) = 2 out
    assert grad[0, 0, 0, 0] == 2.0


@pytest.mark.parametrize('impl', IMPLS)
def test_gradient_matches_finite_differences(impl):
    data = np.random.RandomState(3).randn(1, 2, 5, 6)
    _, f = _fn((None, 2, 5, 6), 3, 2, 0, impl=impl)
    analytic = f(data)[1]
    eps = 1e-6
    for idx in [(0, 0, 1, 1), (0, 1, 4, 5), (0, 1, 2, 3)]:
        d = data.copy()
        d[idx] += eps
        up = (f(d)[0] ** 2).sum()
        d[idx] -= 2 * eps
        down = (f(d)[0] ** 2).sum()
        assert abs((up - down) / (2 * eps) - analytic[idx]) < 1e-4


@pytest.mark.parametrize('h, w, k, s, p', [
    (9, 9, 3, 2, 0), (10, 7, 3, 1, 1), (14, 14, 3, 2, 0), (3, 3, 3, 2, 0),
    (7, 7, 7, 1, 0),
    # stride 1, 2 * pad == pool - 1: the op's flat "same" path, including
    # planes narrower or shorter than the window and a 1x1 plane
    (7, 7, 3, 1, 1), (28, 17, 3, 1, 1), (1, 1, 3, 1, 1), (1, 9, 3, 1, 1),
    (9, 2, 3, 1, 1), (6, 8, 5, 1, 2), (3, 4, 5, 1, 2), (4, 4, 1, 1, 0)])
@pytest.mark.parametrize('linker', ['c', 'py'])
def test_op_equals_switch_graph_with_ties(h, w, k, s, p, linker):
    """Small integers make many ties: the op (its C code, and its NumPy
    ``perform`` under the Python linker) and the ``switch`` graph must give
    the same maxima and send every gradient to the same element."""
    import theano
    data = np.random.RandomState(k * h + w).randint(0, 3, (2, 3, h, w))
    data = data.astype(theano.config.floatX)
    mode = theano.compile.mode.Mode(linker=linker, optimizer='fast_run')
    _, op = _fn((None, 3, h, w), k, s, p, impl='op', mode=mode)
    _, graph = _fn((None, 3, h, w), k, s, p, impl='graph')
    (a, ga), (b, gb) = op(data), graph(data)
    assert np.array_equal(a, b)
    assert np.array_equal(ga, gb)
    assert np.array_equal(a, ref.max_pool(data, k, s, p))


@pytest.mark.parametrize('h, w, k, s, p', [
    (7, 7, 3, 1, 1), (5, 6, 3, 2, 0), (4, 5, 5, 1, 2)])
def test_op_keeps_the_first_of_signed_zeros_and_skips_nan(h, w, k, s, p):
    """-0.0 and 0.0 tie: the first in row-major order is kept, and gets
    the window's gradient, as in Caffe's strict ``>`` scan (the reference's
    ``max`` does not define which); NaN never wins over a number."""
    import theano
    import theano.tensor as T
    from lasagne_tagger.ops.caffe_pool_op import CaffeMaxPool
    rng = np.random.RandomState(h * w + k)
    data = rng.choice([-0.0, 0.0, -1.0, np.nan], size=(2, 3, h, w),
                      p=[0.4, 0.4, 0.1, 0.1]).astype(theano.config.floatX)
    oh, ow = (caffe_pool_output_length(v, k, s, p) for v in (h, w))
    incoming = rng.randint(1, 9, (2, 3, oh, ow)).astype(data.dtype)
    x, gz = T.tensor4(), T.tensor4()
    z = CaffeMaxPool(k, s, p)(x)
    out, gx = theano.function([x, gz], [z, T.grad(
        None, x, known_grads={z: gz})])(data, incoming)
    want_gx = np.zeros_like(data)
    for i in range(oh):
        for j in range(ow):
            r0, c0 = max(i * s - p, 0), max(j * s - p, 0)
            win = data[:, :, r0:min(i * s - p + k, h),
                       c0:min(j * s - p + k, w)]
            for n in range(2):
                for c in range(3):
                    best, arg = -np.inf, None
                    for (a, b), v in np.ndenumerate(win[n, c]):
                        if v > best:
                            best, arg = v, (r0 + a, c0 + b)
                    got = out[n, c, i, j]
                    assert got == best and (np.signbit(got)
                                            == np.signbit(best))
                    if arg is not None:
                        want_gx[(n, c) + arg] += incoming[n, c, i, j]
    np.testing.assert_array_equal(gx, want_gx)


@pytest.mark.parametrize('k, s, p', [(3, 2, 0), (3, 1, 1)])
def test_op_with_openmp_equals_without(k, s, p):
    import theano
    import theano.tensor as T
    from lasagne_tagger.ops.caffe_pool_op import CaffeMaxPool
    data = np.random.RandomState(0).randn(3, 5, 11, 11).astype(
        theano.config.floatX)
    x = T.tensor4()
    outs = []
    for openmp in (False, True):
        z = CaffeMaxPool(k, s, p, openmp=openmp)(x)
        outs.append(theano.function([x], [z, T.grad((z ** 2).sum(), x)])(
            data))
    for a, b in zip(*outs):
        assert np.array_equal(a, b)


def test_op_shape_is_known_to_theano():
    """infer_shape gives Caffe's lengths without running the op."""
    import theano
    import theano.tensor as T
    from lasagne_tagger.ops.caffe_pool_op import CaffeMaxPool
    x = T.tensor4()
    shape = theano.function([x], CaffeMaxPool(3, 2, 1)(x).shape)
    data = np.zeros((2, 4, 14, 13), dtype=theano.config.floatX)
    assert tuple(shape(data)) == (2, 4, caffe_pool_output_length(14, 3, 2, 1),
                                  caffe_pool_output_length(13, 3, 2, 1))


def test_bad_implementation_name_is_an_error():
    import lasagne
    with pytest.raises(ValueError, match='graph'):
        CaffeMaxPool2DLayer(lasagne.layers.InputLayer((1, 1, 4, 4)), 3, 2,
                            impl='cudnn')


@pytest.mark.parametrize('shape', [(2, 3, 0, 5), (2, 3, 4, 0)])
def test_same_pooling_of_empty_planes_is_minus_infinity(shape):
    """An empty plane still has one output (Caffe's length formula gives
    at least 1), which no window fills: -inf, as in the NumPy perform."""
    import theano
    import theano.tensor as T
    from lasagne_tagger.ops.caffe_pool_op import CaffeMaxPool
    x = T.tensor4()
    data = np.zeros(shape, theano.config.floatX)
    z = CaffeMaxPool(3, 1, 1)(x)
    PY = theano.Mode(linker='py', optimizer='fast_compile')
    got = theano.function([x], z)(data)
    want = theano.function([x], z, mode=PY)(data)
    assert got.shape == want.shape
    assert np.all(np.isneginf(got)) and np.all(np.isneginf(want))
