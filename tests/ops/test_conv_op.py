"""Our im2col + GEMM convolution ops equal Theano's CorrMM (values and
gradients), in C (with and without OpenMP) and in their NumPy perform, and
the layer uses them on the CPU."""
import numpy as np
import pytest

from lasagne_tagger.model import layers

import lasagne  # noqa: E402
import theano  # noqa: E402
import theano.tensor as T  # noqa: E402
from lasagne_tagger.ops.conv_op import (  # noqa: E402
    CorrGemm, CorrGemmGradInputs, CorrGemmGradWeights)

PY = theano.Mode(linker='py', optimizer='fast_compile')
NO_FUSION = theano.compile.mode.get_default_mode().excluding(
    'lasagne_tagger_conv_bias_relu')

GEOMETRIES = [  # kernel, stride, pad, (N, C, M, H, W)
    ((1, 1), (1, 1), (0, 0), (5, 7, 3, 4, 6)),    # direct: no unfolding
    ((3, 3), (1, 1), (1, 1), (3, 4, 5, 6, 7)),
    ((5, 5), (1, 1), (2, 2), (2, 3, 4, 5, 5)),
    ((7, 7), (2, 2), (3, 3), (2, 3, 4, 11, 10)),  # conv1's geometry
    ((3, 3), (2, 2), (0, 0), (3, 2, 3, 9, 8)),    # H + 2p - k odd
    ((3, 2), (2, 1), (1, 0), (1, 2, 3, 6, 5)),    # fewer images than threads
    ((1, 1), (2, 2), (1, 1), (2, 3, 2, 5, 4)),    # taps only in the padding
    ((3, 3), (1, 1), (1, 1), (0, 2, 3, 4, 4)),    # no images: zero gradient
]


def _with_grads(y, x, w, proj):
    """``y`` and the gradients of ``sum(y * proj)`` for ``x`` and ``w``."""
    return [y] + T.grad((y * proj).sum(), [x, w])


def _functions(kernel, stride, pad, dtype, openmp, flip=False):
    x, w = T.tensor4('x', dtype), T.tensor4('w', dtype)
    proj = T.tensor4('proj', dtype)

    def outputs(y):
        return _with_grads(y, x, w, proj)
    ref = theano.function([x, w, proj], outputs(T.nnet.conv2d(
        x, w, border_mode=pad, subsample=stride, filter_flip=flip)))
    ours = outputs(CorrGemm(kernel, stride, pad, flip=flip,
                            openmp=openmp)(x, w))
    return (ref, theano.function([x, w, proj], ours),
            theano.function([x, w, proj], ours, mode=PY))


@pytest.mark.parametrize('dtype,openmp,flip', [
    ('float32', False, False), ('float32', True, True),
    ('float64', True, False), ('float64', False, True)])
@pytest.mark.parametrize('kernel,stride,pad,shape', GEOMETRIES)
def test_ops_equal_corrmm(kernel, stride, pad, shape, dtype, openmp, flip):
    n, c, m, h, wd = shape
    rng = np.random.RandomState(sum(shape))
    x = rng.randn(n, c, h, wd).astype(dtype)
    w = rng.randn(m, c, *kernel).astype(dtype)
    ref, c_code, python = _functions(kernel, stride, pad, dtype, openmp,
                                     flip)
    kinds = {type(a.op).__name__ for a in c_code.maker.fgraph.apply_nodes}
    assert {'CorrGemm', 'CorrGemmGradInputs',
            'CorrGemmGradWeights'} <= kinds
    # no CorrMM, and no flip in the graph (its gradient would be a scatter)
    assert not any(k.startswith('CorrMM') or 'Subtensor' in k
                   for k in kinds), kinds
    out_hw = [(size + 2 * p - k) // s + 1
              for size, p, k, s in zip((h, wd), pad, kernel, stride)]
    proj = rng.randn(n, m, *out_hw).astype(dtype)
    expected = ref(x, w, proj)
    rtol = 1e-5 if dtype == 'float32' else 1e-12
    for got in (c_code(x, w, proj), python(x, w, proj)):
        for g, e in zip(got, expected):
            assert g.shape == e.shape and g.dtype == e.dtype
            np.testing.assert_allclose(
                g, e, rtol=rtol, atol=rtol * np.abs(e).max(initial=0))


@pytest.mark.parametrize('flip', [False, True])
def test_c_code_is_corrmms_bit_for_bit(flip):
    """Same GEMMs, col2im adding in CorrMM's order: identical float32."""
    rng = np.random.RandomState(3)
    x = rng.randn(4, 6, 9, 9).astype('float32')
    w = rng.randn(5, 6, 3, 3).astype('float32')
    proj = rng.randn(4, 5, 9, 9).astype('float32')
    ref, c_code, _ = _functions((3, 3), (1, 1), (1, 1), 'float32', True,
                                flip)
    for g, e in zip(c_code(x, w, proj), ref(x, w, proj)):
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize('unfold_bytes', [1, 600, 4096])
@pytest.mark.parametrize('kernel,stride,pad,shape', GEOMETRIES)
def test_row_blocks_compute_the_same_sums(kernel, stride, pad, shape,
                                          unfold_bytes):
    """Unfolding (and folding back) in blocks of output rows, forced here
    with a tiny ``unfold_bytes`` (one row, a few rows, whole images): the
    outputs and both gradients of the unblocked op, up to rounding (the
    weight gradient adds per-block GEMMs, col2im adds block by block; and
    at these tiny sizes OpenBLAS picks its small-matrix kernels by the
    GEMM's size)."""
    n, c, m, h, wd = shape
    rng = np.random.RandomState(sum(shape) + unfold_bytes)
    x = rng.randn(n, c, h, wd).astype('float32')
    w = rng.randn(m, c, *kernel).astype('float32')
    out_hw = [(size + 2 * p - k) // s + 1
              for size, p, k, s in zip((h, wd), pad, kernel, stride)]
    proj = rng.randn(n, m, *out_hw).astype('float32')
    xs, ws = T.tensor4('x', 'float32'), T.tensor4('w', 'float32')
    ps = T.tensor4('proj', 'float32')
    results = []
    for b in (unfold_bytes, None):
        y = CorrGemm(kernel, stride, pad, flip=True, openmp=True,
                     unfold_bytes=b)(xs, ws)
        results.append(theano.function(
            [xs, ws, ps], _with_grads(y, xs, ws, ps))(
                x, w, proj))
    for blocked, whole in zip(*results):
        assert blocked.shape == whole.shape
        np.testing.assert_allclose(blocked, whole, rtol=1e-5,
                                   atol=1e-5 * np.abs(whole).max(initial=0))


def test_blocks_of_several_rows_with_a_shorter_last_one():
    """5 output rows in blocks of 2, 2 and 1 (``unfold_bytes`` of two
    unfolded rows): the unblocked op's outputs and gradients."""
    (kh, kw), stride, pad, (n, c, m, h, wd) = GEOMETRIES[2]   # 5x5, 5 rows
    row_bytes = 4 * c * kh * kw * wd
    rng = np.random.RandomState(7)
    x = rng.randn(n, c, h, wd).astype('float32')
    w = rng.randn(m, c, kh, kw).astype('float32')
    proj = rng.randn(n, m, h, wd).astype('float32')
    xs, ws = T.tensor4('x', 'float32'), T.tensor4('w', 'float32')
    ps = T.tensor4('proj', 'float32')
    results = []
    for b in (2 * row_bytes, None):
        op = CorrGemm((kh, kw), stride, pad, flip=True, unfold_bytes=b)
        y = op(xs, ws)
        results.append(theano.function(
            [xs, ws, ps], _with_grads(y, xs, ws, ps))(
                x, w, proj))
    assert 4 * c * kh * kw * h * wd > 2 * 2 * row_bytes   # it does block
    for blocked, whole in zip(*results):
        np.testing.assert_allclose(blocked, whole, rtol=1e-5,
                                   atol=1e-5 * np.abs(whole).max())


@pytest.mark.parametrize('geometry', [
    (3, 224, 64, 7, 2, 3),    # conv1/7x7_s2: 7.4 MB unfolded an image
    (64, 56, 192, 3, 1, 1)])  # conv2/3x3: 7.2 MB
def test_googlenets_blocked_layers_match_corrmm(geometry):
    """The layers the default ``unfold_bytes`` blocks: CorrMM's float32
    outputs exactly (with OpenBLAS, the BLAS we ship; another BLAS may
    round differently in its kernels for smaller GEMMs), its gradients up
    to float32 rounding."""
    c, size, m, k, stride, pad = geometry
    rng = np.random.RandomState(c)
    x = rng.randn(2, c, size, size).astype('float32')
    w = rng.randn(m, c, k, k).astype('float32')
    out = (size + 2 * pad - k) // stride + 1
    proj = rng.randn(2, m, out, out).astype('float32')
    xs, ws = T.tensor4('x', 'float32'), T.tensor4('w', 'float32')
    ps = T.tensor4('proj', 'float32')
    op = CorrGemm(k, stride, pad, flip=True, openmp=True)
    assert op.unfold_bytes and 4 * c * k * k * out ** 2 > 2 * op.unfold_bytes
    results = []
    for y in (op(xs, ws), T.nnet.conv2d(xs, ws, border_mode=(pad, pad),
                                         subsample=(stride, stride))):
        results.append(theano.function(
            [xs, ws, ps], _with_grads(y, xs, ws, ps))(
                x, w, proj))
    (ours, ours_gx, ours_gw), (ref, ref_gx, ref_gw) = results
    if 'openblas' in theano.config.blas.ldflags:
        np.testing.assert_array_equal(ours, ref)
    for got, want in ((ours, ref), (ours_gx, ref_gx), (ours_gw, ref_gw)):
        np.testing.assert_allclose(got, want, rtol=1e-4,
                                   atol=1e-5 * np.abs(want).max())


def test_unfold_bytes_is_checked():
    assert CorrGemm(3).unfold_bytes > 0
    assert CorrGemm(3, unfold_bytes=0) == CorrGemm(3, unfold_bytes=None)
    with pytest.raises(ValueError, match='unfold_bytes'):
        CorrGemm(3, unfold_bytes=-1)


def test_shape_mismatch_is_an_error():
    x, w = T.tensor4('x'), T.tensor4('w')
    f = theano.function([x, w], CorrGemm((3, 3), 1, 1)(x, w))
    with pytest.raises(ValueError, match='CorrGemm: shape mismatch'):
        f(np.zeros((2, 3, 4, 4), x.dtype), np.zeros((5, 4, 3, 3), w.dtype))
    with pytest.raises(ValueError, match='CorrGemm: shape mismatch'):
        f(np.zeros((2, 4, 4, 4), x.dtype), np.zeros((5, 4, 1, 1), w.dtype))
    # an image smaller than the filter: no output (not C's truncated 1 row)
    small = theano.function([x, w], CorrGemm((3, 3), 2, 0)(x, w))
    with pytest.raises(ValueError, match='CorrGemm: shape mismatch'):
        small(np.zeros((1, 1, 2, 5), x.dtype),
              np.zeros((1, 1, 3, 3), w.dtype))
    g = theano.function([w, x], CorrGemmGradInputs((3, 3), 1, 1)(
        w, x, [4, 4]))
    with pytest.raises(ValueError, match='GradInputs: shape mismatch'):
        g(np.zeros((5, 3, 3, 3), w.dtype), np.zeros((2, 4, 4, 4), x.dtype))
    h = theano.function([x, w], CorrGemmGradWeights((3, 3), 1, 1)(x, w))
    with pytest.raises(ValueError, match='GradWeights: shape mismatch'):
        h(np.zeros((2, 3, 4, 4), x.dtype), np.zeros((2, 5, 3, 3), x.dtype))


def test_bad_geometry_is_refused():
    with pytest.raises(ValueError, match='bad convolution'):
        CorrGemm((0, 3))
    with pytest.raises(ValueError, match='bad convolution'):
        CorrGemm(3, stride=0)


def test_layer_uses_the_op_on_cpu():
    inp = lasagne.layers.InputLayer((None, 6, 5, 5))
    kinds = {}
    for size, pad in ((1, 0), (1, 'same'), (3, 1), (3, 'same')):
        layer = layers.Conv2DLayer(inp, 4, size, pad=pad)
        f = theano.function([inp.input_var], lasagne.layers.get_output(layer))
        kinds[size, pad] = {type(a.op).__name__
                            for a in f.maker.fgraph.apply_nodes}
    for key in ((1, 0), (1, 'same'), (3, 1)):
        assert 'CorrGemm' in kinds[key] and 'CorrMM' not in kinds[key]
    assert 'CorrGemm' not in kinds[3, 'same']   # Lasagne's own path


@pytest.mark.parametrize('kernel,stride,pad,shape', GEOMETRIES)
@pytest.mark.parametrize('dtype,unfold_bytes', [('float32', None),
                                                ('float32', 1),
                                                ('float64', 600)])
def test_bias_relu_epilogue_is_biasrelus_bit_for_bit(kernel, stride, pad,
                                                     shape, dtype,
                                                     unfold_bytes):
    """``CorrGemm(bias_relu=True)(x, W, b)`` computes BiasReLU's values on
    the convolution, in C (blocks or not) and in NumPy, zeros and NaN
    included."""
    from lasagne_tagger.ops.bias_relu_op import BiasReLU
    n, c, m, h, wd = shape
    rng = np.random.RandomState(sum(shape))
    x = rng.randn(n, c, h, wd).astype(dtype)
    w = rng.randn(m, c, *kernel).astype(dtype)
    b = rng.randn(m).astype(dtype)
    w[0] = 0
    b[0] = 0                           # channel 0: pre-activation exactly 0
    if n and m > 1:
        x[0, 0, 0, 0] = np.nan         # NaN reaches some outputs
    xs, ws = T.tensor4('x', dtype), T.tensor4('w', dtype)
    bs = T.vector('b', dtype)
    props = dict(flip=True, openmp=True, unfold_bytes=unfold_bytes)
    apart = BiasReLU()(CorrGemm(kernel, stride, pad, **props)(xs, ws), bs)
    fused = CorrGemm(kernel, stride, pad, bias_relu=True, **props)(xs, ws, bs)
    for mode in (NO_FUSION, PY):
        want = theano.function([xs, ws, bs], apart, mode=mode)(x, w, b)
        got = theano.function([xs, ws, bs], fused, mode=mode)(x, w, b)
        np.testing.assert_array_equal(got, want)
        assert not np.signbit(got[got == 0]).any()


def _kinds(f):
    return [(type(a.op).__name__, getattr(a.op, 'bias_relu', None))
            for a in f.maker.fgraph.apply_nodes]


def test_bias_relu_is_fused_into_the_convolution_for_inference_only():
    """A compiled forward graph runs the layer's bias and rectifier inside
    the convolution; a training graph (the rectifier's gradient reads the
    convolution) and a graph that also returns the convolution keep them
    apart.  Values as Lasagne's layer."""
    inp = lasagne.layers.InputLayer((None, 3, 6, 6))
    layer = layers.Conv2DLayer(inp, 4, 3, pad=1)
    theirs = lasagne.layers.Conv2DLayer(inp, 4, 3, pad=1, W=layer.W,
                                        b=layer.b)
    x = inp.input_var
    y = lasagne.layers.get_output(layer)
    data = np.random.RandomState(0).randn(2, 3, 6, 6).astype(
        theano.config.floatX)
    forward = theano.function([x], y)
    assert ('CorrGemm', True) in _kinds(forward)
    assert not any(k == 'BiasReLU' for k, _ in _kinds(forward))
    np.testing.assert_array_equal(
        forward(data), theano.function(
            [x], lasagne.layers.get_output(theirs))(data))
    train = theano.function([x], [y, T.grad(y.sum(), layer.W)])
    assert ('CorrGemm', False) in _kinds(train)
    assert ('BiasReLU', None) in _kinds(train)
    np.testing.assert_array_equal(train(data)[0], forward(data))
    conv = y.owner.inputs[0]
    both = theano.function([x], [y, conv])
    assert ('CorrGemm', True) not in _kinds(both)


def test_bias_relu_op_checks_its_inputs():
    x, w, b = T.tensor4('x'), T.tensor4('w'), T.vector('b')
    op = CorrGemm(3, 1, 1, bias_relu=True)
    with pytest.raises(TypeError, match='takes 3 inputs, got 2'):
        op(x, w)
    with pytest.raises(TypeError, match='takes 2 inputs, got 3'):
        CorrGemm(3, 1, 1)(x, w, b)
    f = theano.function([x, w, b], op(x, w, b))
    with pytest.raises(ValueError, match='CorrGemm: shape mismatch'):
        f(np.zeros((1, 2, 4, 4), x.dtype), np.zeros((3, 2, 3, 3), x.dtype),
          np.zeros(2, x.dtype))
    with pytest.raises(theano.gradient.NullTypeGradError):
        T.grad(op(x, w, b).sum(), w)


def test_bias_relu_of_no_channels_is_the_rectified_bias():
    """No input channels: every sum is empty, so y = rectify(b), as the
    unfused graph and the NumPy perform give."""
    x, w, b = T.tensor4('x'), T.tensor4('w'), T.vector('b')
    data = (np.zeros((2, 0, 4, 4), x.dtype), np.zeros((3, 0, 3, 3), x.dtype),
            np.array([1.0, -2.0, 0.5], x.dtype))
    want = np.maximum(data[2], 0)[None, :, None, None] * np.ones((2, 3, 2, 2))
    for mode in (None, PY):
        got = theano.function([x, w, b], CorrGemm(3, 1, 0, bias_relu=True)(
            x, w, b), mode=mode)(*data)
        np.testing.assert_array_equal(got, want)


def test_fusion_registers_after_a_query_named_it():
    """``mode.excluding(name)`` before registration leaves an empty tag of
    that name in Theano's optimizer DB; importing the op module (which
    registers the fusion) still works, and registering again changes
    nothing (in a fresh process: here the module is imported already)."""
    import subprocess
    import sys
    code = (
        'import lasagne_tagger.runtime._theano, theano\n'
        'from theano.compile import optdb\n'
        '_FUSION = "lasagne_tagger_conv_bias_relu"\n'
        'theano.compile.mode.get_default_mode().excluding(_FUSION)'
        '.optimizer\n'
        'assert _FUSION in optdb.__db__ and not optdb.__db__[_FUSION]\n'
        'from lasagne_tagger.ops import conv_op\n'
        'assert conv_op._FUSION == _FUSION\n'
        'assert len(optdb.__db__[_FUSION]) == 1\n'
        'conv_op.register_bias_relu_fusion()\n'
        'assert len(optdb.__db__[_FUSION]) == 1\n'
        'assert _FUSION in optdb.__position__\n'
        'print("ok")\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True)
    assert out.returncode == 0 and out.stdout.strip() == 'ok', out.stderr
