"""glibc malloc settings: applied on import, so freed tensor memory is
reused without page faults; never over a user's own MALLOC_* choice."""
import os
import platform
import subprocess
import sys

import pytest

from lasagne_tagger import allocator

GLIBC = platform.libc_ver()[0] == 'glibc'

# Allocates, fills and frees a 64 MB array six times; prints what tune()
# applied and the minor page faults of the last five rounds.
FAULTS = r'''
import resource
import numpy as np
import lasagne_tagger
from lasagne_tagger import allocator
print(sorted(allocator.tune()))
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
np.ones(16 * 2 ** 20, np.float32).sum()
before = faults()
for _ in range(5):
    np.ones(16 * 2 ** 20, np.float32).sum()
print(faults() - before)
'''


def _run(**env):
    full = {k: v for k, v in os.environ.items()
            if not k.startswith('MALLOC_') and k not in (
                'GLIBC_TUNABLES', 'LASAGNE_TAGGER_NO_DEFAULTS',
                'LASAGNE_TAGGER_NO_MALLOC_TUNING')}
    full.update(env)
    out = subprocess.run([sys.executable, '-c', FAULTS], capture_output=True,
                         text=True, env=full, timeout=120)
    assert out.returncode == 0, out.stderr
    applied, faults = out.stdout.splitlines()
    return applied, int(faults)


@pytest.mark.skipif(not GLIBC, reason='glibc malloc settings only')
def test_freed_memory_is_reused_without_page_faults():
    applied, faults = _run()
    assert applied == "['M_MMAP_MAX', 'M_TRIM_THRESHOLD']"
    # mapped afresh, each round faults in 16,384 pages of 4 KiB, or 32 huge
    # pages of 2 MiB (numpy asks for transparent huge pages)
    assert faults < 16, faults


@pytest.mark.skipif(not GLIBC, reason='glibc malloc settings only')
@pytest.mark.parametrize('env', [
    {'LASAGNE_TAGGER_NO_MALLOC_TUNING': '1'},
    {'LASAGNE_TAGGER_NO_DEFAULTS': '1'},
])
def test_opting_out_keeps_glibc_defaults(env):
    applied, faults = _run(**env)
    assert applied == '[]'
    assert faults >= 5 * 16, faults   # the cost the tuning avoids


@pytest.mark.parametrize('env', [
    {'MALLOC_ARENA_MAX': '2'},
    {'MALLOC_TRIM_THRESHOLD_': '131072'},
    {'GLIBC_TUNABLES': 'glibc.malloc.mmap_max=8'},
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
