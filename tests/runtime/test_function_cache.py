"""The cross-process cache of optimized Theano functions: same results as
theano.function, updates reach the caller's shared variables, keys stable
across processes and different for different graphs, broken files
replaced."""
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import lasagne_tagger.runtime._theano  # noqa: F401 (prepares Theano)
from lasagne_tagger.runtime import function_cache

import lasagne  # noqa: E402
import theano  # noqa: E402
import theano.tensor as T  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.delenv(function_cache.DISABLE_ENV, raising=False)
    monkeypatch.setattr(function_cache, 'cache_dir', lambda: str(tmp_path))
    return tmp_path


def _net(l2=1e-3, width=6, seed=0):
    """A small conv net with dropout, trained with Nesterov momentum and L2:
    the same kinds of ops and updates as the fine-tuning step."""
    from lasagne.layers import (Conv2DLayer, DenseLayer, DropoutLayer,
                                InputLayer, get_all_params, get_output)
    lasagne.random.set_rng(np.random.RandomState(seed))
    x, y = T.tensor4('x'), T.ivector('y')
    net = InputLayer((None, 3, 8, 8), x)
    net = Conv2DLayer(net, width, 3)
    net = DropoutLayer(net, 0.5)
    net = DenseLayer(net, 4, nonlinearity=lasagne.nonlinearities.softmax)
    probs = get_output(net)
    loss = T.nnet.categorical_crossentropy(probs, y).mean() + l2 * \
        lasagne.regularization.regularize_network_params(
            net, lasagne.regularization.l2)
    params = get_all_params(net, trainable=True)
    updates = lasagne.updates.nesterov_momentum(loss, params, 0.1, 0.9)
    return net, (x, y), loss, updates


def _state(updates):
    """Every shared variable the step reads or writes, dropout's random
    state included."""
    shared = function_cache._shared_variables(
        [new for new in updates.values()] + list(updates))
    return shared, [v.get_value() for v in shared]


def _batch():
    rng = np.random.RandomState(1)
    return (rng.rand(5, 3, 8, 8).astype(theano.config.floatX),
            rng.randint(0, 4, 5).astype('int32'))


def test_cached_step_equals_theano_function_and_updates_callers_variables(
        cache):
    net, (x, y), loss, updates = _net()
    shared, start = _state(updates)
    fresh = theano.function([x, y], loss, updates=updates)
    first = function_cache.function([x, y], loss, updates=updates)
    assert not first.from_cache and len(os.listdir(cache)) == 1
    cached = function_cache.function([x, y], loss, updates=updates)
    assert cached.from_cache

    def run(fn):
        for v, value in zip(shared, start):
            v.set_value(value)
        losses = [float(fn(*_batch())) for _ in range(3)]
        return losses, [v.get_value() for v in shared]

    want_losses, want_state = run(fresh)
    got_losses, got_state = run(cached)
    assert got_losses == want_losses
    for want, got, v in zip(want_state, got_state, shared):
        np.testing.assert_array_equal(got, want, err_msg=str(v))
    # the step changed the caller's own parameters (and dropout's state)
    assert not all(np.array_equal(a, b) for a, b in zip(start, got_state))


def test_single_output_and_lists_keep_their_form(cache):
    a = T.vector('a')
    for outputs in (a * 2, [a * 2], [a * 2, a + 1]):
        fresh = theano.function([a], outputs)
        function_cache.function([a], outputs)
        cached = function_cache.function([a], outputs)
        assert cached.from_cache
        got, want = cached([1., 2.]), fresh([1., 2.])
        assert type(got) is type(want)
        np.testing.assert_array_equal(got, want)


def test_scan_function_is_cached(cache):
    w = theano.shared(np.eye(3, dtype=theano.config.floatX) * 0.5, name='w')
    h0 = T.vector('h0')
    hs, _ = theano.scan(lambda h, w: T.tanh(T.dot(w, h) + 1), outputs_info=h0,
                        non_sequences=w, n_steps=4)
    fresh = theano.function([h0], hs)
    function_cache.function([h0], hs)
    cached = function_cache.function([h0], hs)
    assert cached.from_cache
    h = np.arange(3, dtype=theano.config.floatX)
    np.testing.assert_array_equal(cached(h), fresh(h))
    w.set_value(w.get_value() * 2)      # reads the caller's variable
    np.testing.assert_array_equal(cached(h), fresh(h))


def _key(**kw):
    net, (x, y), loss, updates = _net(**kw)
    pairs = list(updates.items())
    shared = function_cache._shared_variables(
        [loss] + [n for _, n in pairs] + [o for o, _ in pairs])
    return function_cache.graph_key([x, y], [loss], pairs, shared, {})


def test_key_changes_with_the_graph():
    base = _key()
    assert _key() == base                   # a rebuild: same key
    assert _key(l2=2e-3) != base            # a constant in the graph
    assert _key(width=7) != base            # a parameter's shape
    a = T.vector('a')
    keys = {function_cache.graph_key([a], [op(a)], [], [], {})
            for op in (T.exp, T.log, T.tanh)}
    assert len(keys) == 3


def test_key_is_the_same_in_every_process():
    code = textwrap.dedent('''
        import sys; sys.path.insert(0, %r)
        import test_function_cache as t
        print(t._key())
    ''' % HERE)
    keys = set()
    for seed in ('1', '2'):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, '-c', code], env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        keys.add(out.stdout.split()[-1])
    assert keys == {_key()}


def test_broken_file_is_reported_and_replaced(cache):
    a = T.vector('a')
    function_cache.function([a], a * 3)
    (path,) = cache.iterdir()
    path.write_bytes(b'not a pickle')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        fn = function_cache.function([a], a * 3)
    assert not fn.from_cache
    assert any(str(path) in str(w.message) for w in caught)
    np.testing.assert_array_equal(fn([1.]), [3.])
    assert function_cache.function([a], a * 3).from_cache


def test_disabled_by_environment(cache, monkeypatch):
    monkeypatch.setenv(function_cache.DISABLE_ENV, '1')
    a = T.vector('a')
    function_cache.function([a], a - 1)
    assert not function_cache.function([a], a - 1).from_cache
    assert list(cache.iterdir()) == []


def test_prune_keeps_the_most_recent(tmp_path):
    for i in range(5):
        path = tmp_path / ('%d.pkl' % i)
        path.write_bytes(b'x')
        os.utime(path, (i, i))
    function_cache._prune(str(tmp_path), 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['3.pkl', '4.pkl']


def test_input_names_are_part_of_the_key(cache):
    # same structure, inputs named the other way round: keyword calls
    # must bind as theano.function binds them
    p, q = T.scalar('p'), T.scalar('q')
    function_cache.function([p, q], p - q)
    q2, p2 = T.scalar('q'), T.scalar('p')
    fn = function_cache.function([q2, p2], q2 - p2)
    assert not fn.from_cache
    assert float(fn(p=1.0, q=0.0)) == -1.0


def test_default_updates_are_part_of_the_key(cache):
    def build(step):
        s = theano.shared(np.asarray(0.0, theano.config.floatX), name='s')
        s.default_update = s + step
        return s, function_cache.function([], s * 1)
    s1, f1 = build(1)
    f1()
    assert s1.get_value() == 1
    s5, f5 = build(5)
    assert not f5.from_cache
    f5()
    assert s5.get_value() == 5
    s1b, f1b = build(1)
    assert f1b.from_cache
    f1b()
    f1b()
    assert s1b.get_value() == 2         # the caller's variable, updated


def test_non_plain_calls_compile_uncached(cache):
    a, b = T.scalar('a'), T.scalar('b')
    fns = [function_cache.function([b], a * 1, givens={a: b * k})
           for k in (2, 3)]
    assert [float(f(1.0)) for f in fns] == [2.0, 3.0]
    assert not any(f.from_cache for f in fns)
    fn = function_cache.function([theano.In(a, value=4.0)], a + 1)
    assert float(fn()) == 5.0 and not fn.from_cache
    assert list(cache.iterdir()) == []


def test_input_unused_after_optimization_still_loads(cache):
    x, y = T.vector('x'), T.vector('y')
    function_cache.function([x, y], T.switch(1, x, y))
    fn = function_cache.function([x, y], T.switch(1, x, y))
    assert fn.from_cache
    np.testing.assert_array_equal(fn([1.0], [2.0]), [1.0])


def test_none_constants_give_the_same_key_in_every_process():
    code = textwrap.dedent('''
        import lasagne_tagger.runtime._theano  # noqa: F401 (prepares Theano)
        from lasagne_tagger.runtime import function_cache
        import theano.tensor as T
        m, i = T.matrix('m'), T.iscalar('i')
        print(function_cache.graph_key([m, i], [m[1:, i]], [], [], {}))
    ''')
    keys = {subprocess.run([sys.executable, '-c', code], capture_output=True,
                           text=True, timeout=300).stdout.split()[-1]
            for _ in range(2)}
    assert len(keys) == 1


def test_deep_graph_pickles_without_crashing():
    # The C pickler recurses on the C stack once per graph level: 10,000
    # unfused levels crash the main thread (8 MB stack; measured rc 139),
    # so pickling runs in a thread with a large stack.  In a subprocess, so
    # a crash fails this test instead of killing pytest.
    code = textwrap.dedent('''
        import io
        import lasagne_tagger.runtime._theano  # noqa: F401 (prepares Theano)
        from lasagne_tagger.runtime import function_cache as fc
        import theano.tensor as T
        x = T.vector('x')
        v = x
        for i in range(10000):
            v = v + 1 if i % 2 else v * 2
        buf = io.BytesIO()
        fc._in_big_stack(lambda: fc._Pickler(buf, []).dump(v))
        print('pickled', len(buf.getvalue()))
    ''')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    assert out.stdout.startswith('pickled')
