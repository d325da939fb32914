"""Theano flags this project ships as its defaults, for speed.

Unlike :mod:`lasagne_tagger.runtime.compat` (which makes Theano *run* here), these
only make it faster, and each is set only where the user has not set the
flag in ``THEANO_FLAGS`` or a ``.theanorc`` file: a user's own setting
always wins.  Like ``compat``, nothing here imports Theano, and the package's
``__init__`` applies it before Theano is imported.

``openmp=True``
    Theano 1.0.5 ships ``openmp=False`` (its ``configdefaults`` disables
    the multi-core default).  With it on, ``CorrMM`` convolutions run their
    batch loop, large element-wise ops and our Caffe pooling op
    (:mod:`lasagne_tagger.ops.caffe_pool_op`) their planes on every core.
    Measured on the 2-core reference machine (``benchmarks/flags.py``,
    ``benchmarks/results/flags.json``): GoogLeNet forward x1.19-1.32,
    training x1.44-1.47, same results (the faithfulness tests run with it).
    Not set on a one-core machine, where OpenMP only adds overhead, nor
    without a BLAS (``blas.ldflags`` empty): Theano's ``CorrMM`` then calls
    its NumPy fallback GEMM, which uses the Python C-API, from OpenMP
    threads, and the process aborts ("PyEval_SaveThread: the function must
    be called with the GIL held", seen with Theano 1.0.5).

``GOMP_SPINCOUNT=20000`` and ``OPENBLAS_THREAD_TIMEOUT=4`` (environment
variables, read when libgomp and OpenBLAS load)
    After their work, libgomp's threads spin 300,000 times (its default)
    and OpenBLAS's (Theano's ``Dot22``/``Gemm``: the LSTM, the classifier)
    for 2**28 cycles, about 0.1 s, before they sleep; on 2 cores each
    library's idle threads take the cores the other one needs.  With the
    shorter spins, measured (``benchmarks/threads.py``,
    ``benchmarks/results/threads.json``: medians of 3 interleaved rounds,
    float32), against both libraries' defaults: the tagger's training step
    (128 units, batch 100) 25.5 against 87.7 ms, GoogLeNet 224 px forward
    at batch 8 55.9 against 41.1 images/s, greedy decoding (512 units,
    batch 200) 3,954 against 4,098 rows/s and the fine-tuning step 16.7
    against 17.1 images/s (both within noise).  OpenBLAS on one thread
    instead: the same tagger and forward speed, but decoding 27% slower;
    libgomp's spin alone shortened: the tagger as fast, the forward pass
    not faster.  Each is set only where the user has not set it
    (the spin also not where ``OMP_WAIT_POLICY`` is set).

``openmp_elemwise_minsize=20000``
    With OpenMP on, Theano runs an element-wise op on several threads only
    from this many elements (its default: 200000).  GoogLeNet's ReLUs,
    bias additions and their gradients are mostly smaller: at 20000,
    measured forward x1.06-1.07 and training x0.98-1.06, over five
    interleaved rounds (``benchmarks/results/flags-minsize.json``).
"""
import os
import sys

from . import parallel_compile, precompiled_header
from .compat import add_theano_flag, user_theano_flag

__all__ = ['SPEED_DEFAULTS', 'apply', 'prefer_float32']

# note: Theano's own defaults are openmp=False and minsize 200000; ours are
# the fastest measured on the reference machine (see the module docstring).
SPEED_DEFAULTS = (('openmp', 'True'), ('openmp_elemwise_minsize', '20000'))
# how long libgomp's and OpenBLAS's idle threads spin before they sleep (see
# the module docstring): (variable, our value, the variables any of which
# the user may have set instead)
SPIN_DEFAULTS = (('GOMP_SPINCOUNT', '20000',
                  ('GOMP_SPINCOUNT', 'OMP_WAIT_POLICY')),
                 ('OPENBLAS_THREAD_TIMEOUT', '4', ('OPENBLAS_THREAD_TIMEOUT',)))


def _cpu_count(environ):
    threads = environ.get('OMP_NUM_THREADS', '')
    if threads.strip().isdigit():
        return int(threads)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def apply(environ=None):
    """Append each of :data:`SPEED_DEFAULTS` the user has not set to
    ``THEANO_FLAGS``; safe to call any number of times.

    Also installs :mod:`lasagne_tagger.runtime.parallel_compile` (a function's C
    modules compiled on every core) and :mod:`lasagne_tagger.
    precompiled_header` (their common headers parsed once), unless
    ``LASAGNE_TAGGER_NO_PARALLEL_COMPILE`` / ``LASAGNE_TAGGER_NO_PCH`` is
    set.

    Returns the ``{flag or variable: value}`` this call added.  Adds nothing once Theano
    is imported (too late), on one core (or ``OMP_NUM_THREADS=1``), or with
    ``LASAGNE_TAGGER_NO_DEFAULTS`` set to a non-empty value other than ``0``
    (which also leaves the compile loop alone).
    """
    environ = os.environ if environ is None else environ
    if (environ.get('LASAGNE_TAGGER_NO_DEFAULTS', '') not in ('', '0')
            or _cpu_count(environ) < 2):
        return {}
    for module in (parallel_compile, precompiled_header):
        if environ.get(module.DISABLE_ENV, '') in ('', '0'):
            module.install()
    if 'theano' in sys.modules:
        return {}
    added = {}
    for name, value, user_names in SPIN_DEFAULTS:
        if not any(environ.get(user) for user in user_names):
            environ[name] = added[name] = value
    no_blas = not (user_theano_flag('blas.ldflags', environ) or '').strip()
    for name, value in SPEED_DEFAULTS:
        if no_blas and name == 'openmp':
            continue
        if user_theano_flag(name, environ) is None:
            add_theano_flag(environ, name, value)
            added[name] = value
    return added


def prefer_float32(environ=None):
    """Run in ``floatX=float32`` where the user set no ``floatX``; returns
    True if this call set it (only before Theano is imported).

    For whole-pipeline runs (``lasagne-tagger demo``): float32 is what the
    2016 system trained in on its GPU and what ports are checked at, and
    on a CPU it halves memory and runs the 224 px network about twice as
    fast (``benchmarks/run.py`` measures in it).  Everything else keeps
    Theano's own default, float64, in which the tests and checkpoints are
    exact.
    """
    environ = os.environ if environ is None else environ
    if 'theano' in sys.modules or user_theano_flag('floatX', environ) \
            is not None:
        return False
    add_theano_flag(environ, 'floatX', 'float32')
    return True

