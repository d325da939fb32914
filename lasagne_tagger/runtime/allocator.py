"""Keep freed tensor memory in the process (glibc ``malloc`` settings).

Every Theano call allocates its intermediate tensors afresh (``allow_gc``)
and frees them as soon as they are used.  glibc's ``malloc`` serves a block
over its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and hands it
back to the kernel on ``free``, and it gives the top of its heap back too
(``M_TRIM_THRESHOLD``).  The next call then page-faults every 4 KiB page of
its outputs and scratch buffers in again: a GoogLeNet activation at batch 32
is 77 MB, about 19,000 faults, and in a VM a fault costs microseconds.  In
the profile of the training step at batch 32 that showed as a bias addition
of 19 M elements taking 70 ms and an LRN gradient four times slower per
element than its forward pass.

:func:`tune` asks glibc never to ``mmap`` a block (``M_MMAP_MAX = 0``) and
never to trim the heap (``M_TRIM_THRESHOLD`` at its maximum): freed blocks
stay in the heap and the next call reuses them, already mapped.  Measured on
the 2-core reference machine (``benchmarks/flags.py``,
``benchmarks/results/allocator.json``, 3 interleaved rounds): the
training step x1.16 at batch 8 and x1.43 at batch 32, the forward pass
x1.01 and x1.12, same results (only where memory comes from changes).  The
cost: the process keeps its peak heap until it exits; the peak itself
barely moves (training 1.60 GB against 1.67 GB, forward 0.42 against
0.37 GB).

The package applies :func:`tune` when it compiles a function
(:func:`lasagne_tagger.runtime.function_cache.function`, which every training,
extraction and decoding function goes through), not on import: a program
that only reads bundles or checkpoints keeps glibc's behaviour.  The
benchmarks call it explicitly for both sides of
``benchmarks/port_speed.py``.  Nothing is changed where the C library is not
glibc, where another allocator is preloaded (jemalloc, tcmalloc, mimalloc),
where the user has set any ``MALLOC_*`` variable or a ``glibc.malloc``
tunable (their choice wins), or with ``LASAGNE_TAGGER_NO_MALLOC_TUNING``
(this alone) or ``LASAGNE_TAGGER_NO_DEFAULTS`` (all our speed defaults) set
to a non-empty value other than ``0``.  The settings cannot be undone within
a process.
"""
import ctypes
import functools
import os
import platform

__all__ = ['SETTINGS', 'settings', 'tune']

# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
# note: glibc's defaults are a dynamic mmap threshold (128 KiB to 32 MiB)
# and trimming beyond 128 KiB free; ours keep memory for the next call.
SETTINGS = (('M_MMAP_MAX', _M_MMAP_MAX, 0),
            ('M_TRIM_THRESHOLD', _M_TRIM_THRESHOLD, 2 ** 31 - 1))


# allocators that replace glibc's malloc when preloaded
_OTHER_ALLOCATORS = ('jemalloc', 'tcmalloc', 'mimalloc')


def _user_set(environ):
    return (any(name.startswith('MALLOC_') for name in environ)
            or 'glibc.malloc' in environ.get('GLIBC_TUNABLES', '')
            or any(lib in environ.get('LD_PRELOAD', '')
                   for lib in _OTHER_ALLOCATORS))


def settings(environ=None):
    """The ``{name: value}`` :func:`tune` applies in this environment
    (empty where it changes nothing); imports and calls nothing."""
    environ = os.environ if environ is None else environ
    if (any(environ.get(name, '') not in ('', '0') for name in
            ('LASAGNE_TAGGER_NO_DEFAULTS', 'LASAGNE_TAGGER_NO_MALLOC_TUNING'))
            or _user_set(environ)
            or platform.libc_ver()[0] != 'glibc'):
        return {}
    return {name: value for name, _, value in SETTINGS}


def tune(environ=None):
    """Apply :func:`settings` with ``mallopt``, once a process (later calls
    are free).  Returns the ``{name: value}`` glibc accepted."""
    wanted = settings(environ)
    return dict(_apply(tuple(sorted(wanted.items())))) if wanted else {}


@functools.lru_cache(maxsize=None)
def _apply(items):
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return ()
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    numbers = {name: number for name, number, _ in SETTINGS}
    return tuple((name, value) for name, value in items
                 if mallopt(numbers[name], value) == 1)
