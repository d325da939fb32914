"""Each compatibility patch: needed (fails without it), works with it,
applied only where needed, idempotent, and respectful of user flags."""
import os
import subprocess
import sys

import numpy as np
import pytest

from lasagne_tagger import compat


def _run(code, **env):
    full = dict(os.environ)
    full.pop('THEANO_FLAGS', None)
    full.update(env)
    return subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, env=full, timeout=300)


def test_blas_patch_is_needed_and_works():
    if compat.numpy_has_blas_info():
        pytest.skip('this NumPy still has blas_opt_info: patch not needed')
    bare = _run('import theano', LASAGNE_TAGGER_NO_COMPAT='1')
    assert bare.returncode != 0 and 'blas_opt_info' in bare.stderr
    ok = _run('import lasagne_tagger, theano; '
              'print(repr(theano.config.blas.ldflags))')
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() in ("'-lopenblas'", "''")
    expected = "'-lopenblas'" if compat.openblas_available() else "''"
    assert ok.stdout.strip() == expected


def test_user_theano_flags_are_respected():
    ok = _run('import lasagne_tagger, theano, os; '
              'print(repr(theano.config.blas.ldflags)); '
              'print(os.environ["THEANO_FLAGS"])',
              THEANO_FLAGS='floatX=float32,blas.ldflags=-lblas')
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines() == ["'-lblas'",
                                      'floatX=float32,blas.ldflags=-lblas']


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
                              'scan': False}
    assert sys.meta_path == before
    state = compat.applied()
    assert state['downsample']
    assert state['scan'] == (sys.version_info[:2]
                             > compat.LAST_PYTHON_WITH_CYTHON_SCAN)
    disabled = compat.apply({'LASAGNE_TAGGER_NO_COMPAT': '1'})
    assert disabled == {'blas': None, 'downsample': False, 'scan': False}


def test_blas_flag_is_appended_once_in_a_fresh_process():
    code = ('import os, lasagne_tagger.compat as c; '
            'r1 = c.apply(); r2 = c.apply(); '
            'print(os.environ["THEANO_FLAGS"]); print(r2["blas"])')
    out = _run(code, THEANO_FLAGS='floatX=float32', THEANORC=os.devnull)
    assert out.returncode == 0, out.stderr
    flags, second = out.stdout.splitlines()
    if compat.numpy_has_blas_info():
        assert flags == 'floatX=float32'
    else:
        assert flags.startswith('floatX=float32,blas.ldflags=')
        assert flags.count('blas.ldflags') == 1
    assert second == 'None'


def test_downsample_patch_is_needed_and_matches_pool_2d():
    bare = _run('import lasagne', LASAGNE_TAGGER_NO_COMPAT='1',
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
import lasagne_tagger, theano, theano.tensor as T, numpy as np
x = T.vector()
out, _ = theano.scan(lambda a, acc: acc + a, sequences=x,
                     outputs_info=T.zeros_like(x[0]))
f = theano.function([x], out)
print(f(np.arange(4, dtype=x.dtype)).tolist())
'''


@pytest.mark.skipif(sys.version_info[:2] <= compat.LAST_PYTHON_WITH_CYTHON_SCAN,
                    reason='Cython scan compiles on this Python')
def test_scan_patch_is_needed_and_works():
    ok = _run(SCAN_CODE)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert ok.stdout.strip() == '[0.0, 1.0, 3.0, 6.0]'
    # Without the scan patch (the two others applied by hand) it fails.
    code = ('import sys, lasagne_tagger.compat as c; c._patch_downsample(); '
            + SCAN_CODE.replace('import lasagne_tagger, ', 'import '))
    bare = _run(code, LASAGNE_TAGGER_NO_COMPAT='1', THEANO_FLAGS='blas.ldflags=')
    assert bare.returncode != 0
    assert 'scan_perform' in bare.stderr
