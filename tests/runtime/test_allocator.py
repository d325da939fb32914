"""glibc malloc settings: applied once the package compiles a function
(not on import), so freed tensor memory is reused without page faults;
never over a user's own MALLOC_* choice or another allocator."""
import os
import platform
import subprocess
import sys

import pytest

from lasagne_tagger.runtime import allocator

GLIBC = platform.libc_ver()[0] == 'glibc'

# Allocates, fills and frees a 64 MB array five times and prints the minor
# page faults that took: after importing the package (glibc's defaults
# still), then after compiling a function through the package (tuned), with
# what tune() applied in between.
FAULTS = r'''
import resource
import numpy as np

def churn():
    np.ones(16 * 2 ** 20, np.float32).sum()          # warm up
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        np.ones(16 * 2 ** 20, np.float32).sum()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

import lasagne_tagger.runtime._theano  # noqa: F401 (prepares Theano)
print(churn())
import theano.tensor as T
from lasagne_tagger.runtime import allocator, function_cache
x = T.vector('x')
function_cache.function([x], x * 2)
print(sorted(allocator.tune()))
print(churn())
'''


def _run(**env):
    full = {k: v for k, v in os.environ.items()
            if not k.startswith('MALLOC_') and k not in (
                'GLIBC_TUNABLES', 'LD_PRELOAD', 'LASAGNE_TAGGER_NO_DEFAULTS',
                'LASAGNE_TAGGER_NO_MALLOC_TUNING')}
    full.update(env)
    out = subprocess.run([sys.executable, '-c', FAULTS], capture_output=True,
                         text=True, env=full, timeout=300)
    assert out.returncode == 0, out.stderr
    imported, applied, compiled = out.stdout.splitlines()[-3:]
    return int(imported), applied, int(compiled)


# Mapped afresh, each round faults in 16,384 pages of 4 KiB, or 32 huge
# pages of 2 MiB (numpy asks for transparent huge pages): at least 80 in
# five rounds.  Reused, none (a few to spare, e.g. NUMA balancing).
FRESH, REUSED = 80, 40


@pytest.mark.skipif(not GLIBC, reason='glibc malloc settings only')
def test_compiling_a_function_tunes_malloc_and_importing_does_not():
    imported, applied, compiled = _run()
    assert imported >= FRESH, imported     # the import changed nothing
    assert applied == "['M_MMAP_MAX', 'M_TRIM_THRESHOLD']"
    assert compiled < REUSED, compiled     # freed memory reused


@pytest.mark.skipif(not GLIBC, reason='glibc malloc settings only')
@pytest.mark.parametrize('env', [
    {'LASAGNE_TAGGER_NO_MALLOC_TUNING': '1'},
    {'LASAGNE_TAGGER_NO_DEFAULTS': '1'},
])
def test_opting_out_keeps_glibc_defaults(env):
    _, applied, compiled = _run(**env)
    assert applied == '[]'
    assert compiled >= FRESH, compiled     # the cost the tuning avoids


@pytest.mark.parametrize('env', [
    {'MALLOC_ARENA_MAX': '2'},
    {'MALLOC_TRIM_THRESHOLD_': '131072'},
    {'GLIBC_TUNABLES': 'glibc.malloc.mmap_max=8'},
    {'LD_PRELOAD': '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2'},
    {'LASAGNE_TAGGER_NO_MALLOC_TUNING': 'yes'},
    {'LASAGNE_TAGGER_NO_DEFAULTS': '1'},
])
def test_settings_leave_a_users_choice_alone(env):
    assert allocator.settings(env) == {}


@pytest.mark.skipif(not GLIBC, reason='glibc malloc settings only')
@pytest.mark.parametrize('env', [
    {}, {'LASAGNE_TAGGER_NO_MALLOC_TUNING': '0'},
    {'GLIBC_TUNABLES': 'glibc.cpu.hwcaps=-AVX512F'},
])
def test_settings_by_default(env):
    assert allocator.settings(env) == {'M_MMAP_MAX': 0,
                                       'M_TRIM_THRESHOLD': 2 ** 31 - 1}
