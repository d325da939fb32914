"""Theano flags this project ships as its defaults, for speed.

Unlike :mod:`lasagne_tagger.compat` (which makes Theano *run* here), these
only make it faster, and each is set only where the user has not set the
flag in ``THEANO_FLAGS`` or a ``.theanorc`` file: a user's own setting
always wins.  Like ``compat``, nothing here imports Theano, and the package's
``__init__`` applies it before Theano is imported.

``openmp=True``
    Theano 1.0.5 ships ``openmp=False`` (its ``configdefaults`` disables
    the multi-core default).  With it on, ``CorrMM`` convolutions run their
    batch loop, large element-wise ops and our Caffe pooling op
    (:mod:`lasagne_tagger.caffe_pool_op`) their planes on every core.
    Measured on the 2-core reference machine (``benchmarks/flags.py``,
    ``benchmarks/results/flags.json``): GoogLeNet forward x1.19-1.32,
    training x1.44-1.47, same results (the faithfulness tests run with it).
    Not set on a one-core machine, where OpenMP only adds overhead, nor
    without a BLAS (``blas.ldflags`` empty): Theano's ``CorrMM`` then calls
    its NumPy fallback GEMM, which uses the Python C-API, from OpenMP
    threads, and the process aborts ("PyEval_SaveThread: the function must
    be called with the GIL held", seen with Theano 1.0.5).

``GOMP_SPINCOUNT=1000`` (an environment variable, read when libgomp loads)
    After a parallel region, libgomp's threads spin 300,000 times (its
    default) before they sleep; OpenBLAS's threads, which run Theano's
    ``Dot22``/``Gemm`` (the LSTM, the classifier), spin too, and on 2 cores
    each set starves the other.  Measured (two interleaved rounds, float32):
    the tagger's training step (128 units, batch 100) 97 ms with the
    defaults, 28-30 ms with ``GOMP_SPINCOUNT=1000``, 34-35 ms with
    OpenBLAS on one thread; greedy decoding (512 units, batch 200)
    2,200-2,600 rows/s, 2,870-2,890, 1,900-2,000; GoogLeNet 224 px at batch
    8 the same within noise (forward 38.6-44.1 images/s against
    41.9-43.7, training 10.7-13.6 against 10.6-13.6).  Set only where the
    user set neither ``GOMP_SPINCOUNT`` nor ``OMP_WAIT_POLICY``.

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
# libgomp's spin before its threads sleep (see the module docstring)
SPIN_VARIABLES = ('GOMP_SPINCOUNT', 'OMP_WAIT_POLICY')
SPIN_COUNT = '1000'


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

    Also installs :mod:`lasagne_tagger.parallel_compile` (a function's C
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
    if not any(environ.get(name) for name in SPIN_VARIABLES):
        environ[SPIN_VARIABLES[0]] = SPIN_COUNT
        added[SPIN_VARIABLES[0]] = SPIN_COUNT
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

