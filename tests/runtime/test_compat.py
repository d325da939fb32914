"""Each compatibility patch: needed (fails without it), works with it,
applied only where needed, idempotent, and respectful of user flags."""
import json
import os
import sys

import numpy as np
import pytest

from lasagne_tagger.runtime import blas, compat
from python_child import run_python


def test_blas_patch_is_needed_and_works():
    if compat.numpy_has_blas_info():
        pytest.skip('this NumPy still has blas_opt_info: patch not needed')
    bare = run_python('import theano', LASAGNE_TAGGER_NO_COMPAT='1')
    assert bare.returncode != 0 and 'blas_opt_info' in bare.stderr
    ok = run_python('import lasagne_tagger.runtime._theano, theano; '
                   'print(repr(theano.config.blas.ldflags))',
                   THEANORC=os.devnull)
    assert ok.returncode == 0, ok.stderr
    # the pinned scipy-openblas32 (installed with the package), not a
    # system library
    expected, why = blas.default_ldflags()
    assert why is None and '-lscipy_openblas' in expected
    assert ok.stdout.strip() == repr(expected)


def test_user_theano_flags_are_respected():
    ok = run_python('import lasagne_tagger.runtime._theano, theano, os; '
                   'print(repr(theano.config.blas.ldflags)); '
                   'print(os.environ["THEANO_FLAGS"])',
                   THEANO_FLAGS='floatX=float32,blas.ldflags=-lblas')
    assert ok.returncode == 0, ok.stderr
    ldflags, flags = ok.stdout.splitlines()
    assert ldflags == "'-lblas'"
    # Kept as given; compat adds no blas.ldflags of its own (speed
    # defaults such as openmp may follow: tests/test_theano_defaults.py).
    assert flags.startswith('floatX=float32,blas.ldflags=-lblas')
    assert flags.count('blas.ldflags') == 1


def test_user_theanorc_is_respected(tmp_path):
    rc = tmp_path / 'theanorc'
    rc.write_text('[blas]\nldflags =\n')
    assert compat.user_blas_ldflags({'THEANORC': str(rc)}) == ''
    env = {'THEANORC': str(tmp_path / 'missing')}
    assert compat.user_blas_ldflags(env) is None
    env['THEANO_FLAGS'] = 'device=cpu,blas__ldflags=-lmkl_rt'
    assert compat.user_blas_ldflags(env) == '-lmkl_rt'


def test_apply_is_idempotent_in_this_process():
    # The package applied everything at import; a second call changes
    # nothing (Theano is imported, so the flags are left alone too).
    before = list(sys.meta_path)
    assert compat.apply() == {'blas': None, 'downsample': False,
                              'scan': False, 'cache_key': False,
                              'dnn': None}
    assert sys.meta_path == before
    state = compat.applied()
    assert state['downsample']
    assert state['scan'] == (sys.version_info[:2]
                             > compat.LAST_PYTHON_WITH_CYTHON_SCAN)
    disabled = compat.apply({'LASAGNE_TAGGER_NO_COMPAT': '1'})
    assert disabled == {'blas': None, 'downsample': False, 'scan': False,
                        'cache_key': False, 'dnn': None}
    assert state['cache_key'] == {'theano.gof.cc': True,
                                  'theano.gof.op': compat.hash_seed_varies()}


def test_blas_flag_is_appended_once_in_a_fresh_process():
    code = ('import os, lasagne_tagger.runtime.compat as c; '
            'r1 = c.apply(); r2 = c.apply(); '
            'print(os.environ["THEANO_FLAGS"]); print(r2["blas"])')
    out = run_python(code, THEANO_FLAGS='floatX=float32', THEANORC=os.devnull)
    assert out.returncode == 0, out.stderr
    flags, second = out.stdout.splitlines()
    # (the package's speed defaults, such as openmp, may follow)
    assert (flags + ',').startswith(
        'floatX=float32,blas.ldflags=%s,' % blas.default_ldflags()[0])
    assert flags.count('blas.ldflags') == 1
    assert second == 'None'


def test_downsample_patch_is_needed_and_matches_pool_2d():
    bare = run_python('import lasagne', LASAGNE_TAGGER_NO_COMPAT='1',
                     THEANO_FLAGS='blas.ldflags=')
    assert bare.returncode != 0
    assert "cannot import name 'downsample'" in bare.stderr
    import theano
    import theano.tensor as T
    from theano.tensor.signal.pool import pool_2d
    from theano.tensor.signal import downsample
    assert downsample.max_pool_2d is compat.pool_2d_adapter
    x = T.tensor4()
    data = np.random.RandomState(0).randn(1, 2, 7, 6).astype(x.dtype)
    for kw, new in [(dict(ds=(3, 3), st=(2, 2), ignore_border=False),
                     dict(ws=(3, 3), stride=(2, 2), ignore_border=False)),
                    (dict(ds=(3, 3), st=(1, 1), ignore_border=True,
                          padding=(1, 1)),
                     dict(ws=(3, 3), stride=(1, 1), ignore_border=True,
                          pad=(1, 1))),
                    (dict(ds=(2, 2), ignore_border=True,
                          mode='average_exc_pad'),
                     dict(ws=(2, 2), ignore_border=True,
                          mode='average_exc_pad'))]:
        f = theano.function([x], [downsample.max_pool_2d(x, **kw),
                                  pool_2d(x, **new)])
        a, b = f(data)
        assert a.shape == b.shape and np.array_equal(a, b)


SCAN_CODE = '''
import lasagne_tagger.runtime._theano, theano, theano.tensor as T, numpy as np
x = T.vector()
out, _ = theano.scan(lambda a, acc: acc + a, sequences=x,
                     outputs_info=T.zeros_like(x[0]))
f = theano.function([x], out)
print(f(np.arange(4, dtype=x.dtype)).tolist())
'''


@pytest.mark.skipif(sys.version_info[:2] <= compat.LAST_PYTHON_WITH_CYTHON_SCAN,
                    reason='Cython scan compiles on this Python')
@pytest.mark.slow
def test_scan_patch_is_needed_and_works():
    ok = run_python(SCAN_CODE)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert ok.stdout.strip() == '[0.0, 1.0, 3.0, 6.0]'
    # Without the scan patch (the two others applied by hand) it fails.
    code = ('import sys, lasagne_tagger.runtime.compat as c; c._patch_downsample(); '
            + SCAN_CODE.replace('import lasagne_tagger.runtime._theano, ', 'import '))
    bare = run_python(code, LASAGNE_TAGGER_NO_COMPAT='1', THEANO_FLAGS='blas.ldflags=')
    assert bare.returncode != 0
    assert 'scan_perform' in bare.stderr


# A COp (DimShuffle) and ops without __props__ (Softmax, Alloc): their
# cache versions, patched and Theano's own, and how many C modules this
# process compiled for a function that uses them.
CACHE_KEY_CODE = '''
import json, lasagne_tagger.runtime._theano, theano, theano.tensor as T, numpy as np
from lasagne_tagger.runtime import compat
from theano.gof import FunctionGraph
from theano.gof.cc import CLinker
from theano.gof.cmodule import GCC_compiler
from theano.tensor.elemwise import DimShuffle
# every C module compiled, by Theano's loop or side by side
# (lasagne_tagger.runtime.parallel_compile): both call the compiler's compile_str
compiled = []
compile_str = GCC_compiler.compile_str
def counting(*args, **kwargs):
    compiled.append(1)
    return compile_str(*args, **kwargs)
GCC_compiler.compile_str = staticmethod(counting)
op = DimShuffle((False, False), (1, 0))
method = type(op).c_code_cache_version
x = T.matrix()
fg = FunctionGraph([x], [T.nnet.Softmax()(x)])
linker = CLinker().accept(fg)
key = getattr(CLinker.cmodule_key_, '__wrapped__', CLinker.cmodule_key_)
f = theano.function([x], [x.T * 2, T.nnet.softmax(x), T.alloc(x.sum(), 2)])
assert np.allclose(f(np.ones((2, 3), x.dtype))[0], 2)
print(json.dumps({
    'applied': compat.applied()['cache_key'],
    'cop': repr(op.c_code_cache_version()),
    'cop_theano': repr(getattr(method, '__wrapped__', method)(op)),
    'softmax_versioned': bool(linker.cmodule_key_(fg, [])[0]),
    'softmax_versioned_theano': bool(key(linker, fg, [])[0]),
    'compiled': len(compiled)}))
'''


@pytest.mark.slow
def test_cache_key_patch_is_needed_and_makes_warm_starts_hit_the_cache(
        tmp_path):
    flags = 'base_compiledir=%s' % tmp_path
    runs = []
    for _ in range(2):
        out = run_python(CACHE_KEY_CODE, THEANO_FLAGS=flags,
                        PYTHONHASHSEED='random')
        assert out.returncode == 0, out.stderr[-2000:]
        runs.append(json.loads(out.stdout.splitlines()[-1]))
    first, second = runs
    assert first['applied'] == {'theano.gof.cc': True, 'theano.gof.op': True}
    # Needed: Theano's COp version changes with the hash seed, and its key
    # for an op without __props__ is unversioned (never cached) ...
    assert first['cop_theano'] != second['cop_theano']
    assert not first['softmax_versioned_theano']
    # ... ours are stable and versioned: the second process compiles
    # nothing.
    assert first['cop'] == second['cop']
    assert first['softmax_versioned']
    assert first['compiled'] >= 3 and second['compiled'] == 0
    # A fixed hash seed needs no COp fix.
    fixed = run_python(CACHE_KEY_CODE, THEANO_FLAGS=flags, PYTHONHASHSEED='0')
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert json.loads(fixed.stdout.splitlines()[-1])['applied'] == {
        'theano.gof.cc': True, 'theano.gof.op': False}


def test_stable_cache_version_keeps_the_params_part():
    class FakeParams(object):
        def c_code_cache_version(self):
            return (7,)

    class FakeCOp(object):
        func_codes = ['int f(void) { return 1; }']
        params_type = FakeParams()

    def original(self):
        return (hash(tuple(self.func_codes)),)
    stable = compat.stable_c_code_cache_version(original)
    version = stable(FakeCOp())
    assert len(version) == 2 and version[1] == (7,)
    assert stable.__wrapped__ is original and stable.stable_cache_key
    FakeCOp.func_codes = ['int f(void) { return 2; }']
    assert stable(FakeCOp())[0] != version[0]
