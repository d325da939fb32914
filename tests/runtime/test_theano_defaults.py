"""The project's speed defaults: set where the user set nothing, never over
a user's THEANO_FLAGS or .theanorc, and not on one core."""
import os
import subprocess
import sys

import pytest

from lasagne_tagger.runtime import compat, theano_defaults

PRINT_OPENMP = ('import lasagne_tagger.runtime._theano, theano, os; '
                'print(theano.config.openmp); print(os.environ["THEANO_FLAGS"])')
PRINT_MINSIZE = ('import lasagne_tagger.runtime._theano, theano; '
                 'print(theano.config.openmp_elemwise_minsize)')


def _run(code, tmp_path, **env):
    full = dict(os.environ)
    for name in ('THEANO_FLAGS', 'OMP_NUM_THREADS', 'LASAGNE_TAGGER_NO_DEFAULTS',
                 'GOMP_SPINCOUNT', 'OMP_WAIT_POLICY', 'OPENBLAS_THREAD_TIMEOUT'):
        full.pop(name, None)
    full['THEANORC'] = str(tmp_path / 'no-theanorc')
    full.update(env)
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, env=full, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


@pytest.fixture
def cores():
    if theano_defaults._cpu_count({}) < 2:
        pytest.skip('one core: no OpenMP default to check')


def test_openmp_is_on_by_default(cores, tmp_path):
    openmp, flags = _run(PRINT_OPENMP, tmp_path)
    assert openmp == 'True'
    assert 'openmp=True' in flags.split(',')
    assert _run(PRINT_MINSIZE, tmp_path) == ['20000']


def test_user_minsize_is_respected(cores, tmp_path):
    out = _run(PRINT_MINSIZE, tmp_path,
               THEANO_FLAGS='openmp_elemwise_minsize=5000')
    assert out == ['5000']


@pytest.mark.parametrize('env', [
    {'THEANO_FLAGS': 'floatX=float32,openmp=False'},
    {'THEANO_FLAGS': 'openmp=False'},
    # no BLAS: Theano's CorrMM would call the NumPy fallback from threads
    {'THEANO_FLAGS': 'blas.ldflags='},
    {'LASAGNE_TAGGER_NO_DEFAULTS': '1'},
    {'OMP_NUM_THREADS': '1'},
])
def test_openmp_left_alone(cores, tmp_path, env):
    openmp, flags = _run(PRINT_OPENMP, tmp_path, **env)
    assert openmp == 'False'
    assert 'openmp=True' not in flags.split(',')
    if 'THEANO_FLAGS' in env:
        assert flags.startswith(env['THEANO_FLAGS'])


def test_theanorc_global_openmp_is_respected(cores, tmp_path):
    rc = tmp_path / 'theanorc'
    rc.write_text('[global]\nopenmp = False\n')
    openmp, flags = _run(PRINT_OPENMP, tmp_path, THEANORC=str(rc))
    assert openmp == 'False'
    assert 'openmp=' not in flags


def test_user_theano_flag_lookup(tmp_path):
    rc = tmp_path / 'theanorc'
    rc.write_text('[global]\nopenmp = False\n[dnn.conv]\nalgo_fwd = small\n')
    env = {'THEANORC': str(rc)}
    assert compat.user_theano_flag('openmp', env) == 'False'
    assert compat.user_theano_flag('dnn.conv.algo_fwd', env) == 'small'
    assert compat.user_theano_flag('floatX', env) is None
    env['THEANO_FLAGS'] = 'openmp=True,dnn__conv__algo_fwd=none'
    assert compat.user_theano_flag('openmp', env) == 'True'
    assert compat.user_theano_flag('dnn.conv.algo_fwd', env) == 'none'


def test_apply_adds_nothing_once_theano_is_imported():
    import theano  # noqa: F401  (the package imported it already)
    env = {}
    assert theano_defaults.apply(env) == {}
    assert env == {}


PRINT_SPIN = ('import os, lasagne_tagger.runtime._theano; '
              'print(os.environ.get("GOMP_SPINCOUNT", "-"), '
              'os.environ.get("OPENBLAS_THREAD_TIMEOUT", "-"))')


@pytest.mark.parametrize('env, expected', [
    ({}, '20000 4'),
    ({'GOMP_SPINCOUNT': '50000'}, '50000 4'),
    ({'OMP_WAIT_POLICY': 'ACTIVE'}, '- 4'),
    ({'OPENBLAS_THREAD_TIMEOUT': '28'}, '20000 28'),
    ({'GOMP_SPINCOUNT': '0', 'OPENBLAS_THREAD_TIMEOUT': '10'}, '0 10'),
    ({'LASAGNE_TAGGER_NO_DEFAULTS': '1'}, '- -'),
])
def test_spin_defaults_and_user_settings(cores, tmp_path, env, expected):
    """libgomp's spin and OpenBLAS's thread timeout: ours where the user
    set neither variable (nor OMP_WAIT_POLICY for the spin), the user's
    otherwise."""
    assert _run(PRINT_SPIN, tmp_path, **env) == [expected]
