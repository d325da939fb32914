"""The BLAS that Theano's C code and the package's C ops link against.

Theano 1.0.5 reads the BLAS to link from its ``blas.ldflags`` flag.  Where
the user sets none (``THEANO_FLAGS`` or a ``.theanorc`` file), the package
uses **scipy-openblas32**, the OpenBLAS build that SciPy and NumPy ship on
PyPI, pinned in ``requirements.txt``: every machine that runs ``make
install`` links the same library, found by its absolute path (``-L`` and an
rpath, which Theano adds for every ``-L``), with no system package and no
``LD_LIBRARY_PATH``.  A system BLAS is used only when the user names one in
``blas.ldflags``.

Why this one (measured, ``benchmarks/blas_choice.py``,
``benchmarks/results/blas_choice.json``: GoogLeNet's 57 convolution GEMMs
at batch 8, two threads as our convolution op runs them, medians of 3
alternating rounds, forward / gradient ms): scipy-openblas32 0.3.34
144 / 290, Debian's OpenBLAS 0.3.21 (the system library used before) 147 /
299, cmeel-openblas 0.3.31 138 / 287 (within this machine's noise of one
another), MKL 2026.2 sequential 165 / 339 (15% slower; a 211 MB wheel plus
its dependencies).  scipy-openblas32 is a 7.9 MB wheel, selects its
kernels at run time (``DYNAMIC_ARCH``: any x86-64 or ARM64 CPU), needs no
``libgfortran`` and allows 64 threads.  On a fresh machine Debian's and
cmeel's libraries do not even load (``libgfortran.so.5: cannot open shared
object file``, ``blas_choice-no-gfortran.json``); cmeel-openblas is also
built for Skylake-X alone (illegal instructions without AVX-512) and caps at
4 threads.

scipy-openblas32 prefixes its symbols (``scipy_sgemm_``) so that it cannot
clash with another OpenBLAS in the process.  Theano's C code calls the
plain Fortran names (``sgemm_``), so ``blas.ldflags`` also carries
``-include<names header>`` (:data:`NAMES_HEADER`, shipped in
``lasagne_tagger/data``): ``#define sgemm_ scipy_sgemm_`` and so on, for
every BLAS name Theano's headers declare that the library exports (a test
checks both sides).  ``-include`` is a compile flag, which Theano passes to
every C module that uses BLAS.

Nothing here imports Theano; :func:`default_ldflags` runs before Theano is
imported (from :mod:`lasagne_tagger.runtime.compat`), :func:`ensure_usable` once a
process before the package compiles its first function.
"""
import ctypes
import functools
import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
import tempfile

from ..errors import TaggerError
from ..resources import resource_path

__all__ = ['DISTRIBUTION', 'NAMES_HEADER', 'Bundled', 'find_bundled',
           'bundled_ldflags', 'default_ldflags', 'describe', 'link_error',
           'ensure_usable']

DISTRIBUTION = 'scipy-openblas32'
MODULE = 'scipy_openblas32'
LIBRARY = 'scipy_openblas'           # -lscipy_openblas: libscipy_openblas.so
PREFIX = 'scipy_'
NAMES_HEADER = resource_path('scipy_openblas_names.h')
# THEANO_FLAGS is split at ',' and '=' and ldflags at white space: a path
# with one of these cannot be written into the flag.
_UNSAFE_PATH = re.compile(r'[\s,=\'"]')


class Bundled(object):
    """Where the installed scipy-openblas32 lies (nothing is loaded)."""

    def __init__(self, libdir, library, version):
        self.libdir = libdir
        self.library = library
        self.version = version

    def __repr__(self):
        return 'Bundled(%r, %r, %r)' % (self.libdir, self.library,
                                        self.version)


def find_bundled():
    """The installed scipy-openblas32, or a one-line reason why there is none.

    Returns
    -------
    (Bundled or None, str or None)
        The library's location, or None and why.
    """
    try:
        spec = importlib.util.find_spec(MODULE)   # finds; does not import
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None, '%s is not installed' % DISTRIBUTION
    libdir = os.path.join(list(spec.submodule_search_locations)[0], 'lib')
    library = os.path.join(libdir, 'lib%s.so' % LIBRARY)
    if not os.path.isfile(library):
        return None, '%s: no lib%s.so (a broken %s install)' % (
            libdir, LIBRARY, DISTRIBUTION)
    if not os.path.isfile(NAMES_HEADER):
        return None, '%s is missing (a broken lasagne_tagger install)' % (
            NAMES_HEADER)
    for path in (libdir, NAMES_HEADER):
        if _UNSAFE_PATH.search(path):
            return None, ('%s: a path with spaces, commas, quotes or "=" '
                          'cannot go into blas.ldflags' % path)
    try:
        version = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        version = 'unknown version'
    return Bundled(libdir, library, version), None


def bundled_ldflags(bundled):
    """The ``blas.ldflags`` value that links ``bundled``."""
    return '-L%s -l%s -include%s' % (bundled.libdir, LIBRARY, NAMES_HEADER)


def default_ldflags():
    """``blas.ldflags`` for a user who set none, and why it is empty if so.

    Returns
    -------
    (str, str or None)
        The flag's value (the bundled library's, or ``''``: Theano's NumPy
        fallback) and None, or ``''`` and the one-line reason.
    """
    bundled, why = find_bundled()
    if bundled is None:
        return '', why
    return bundled_ldflags(bundled), None


def describe(ldflags):
    """One line saying which BLAS ``ldflags`` links."""
    bundled, _ = find_bundled()
    if bundled is not None and ldflags == bundled_ldflags(bundled):
        return 'BLAS: %s %s (OpenBLAS from PyPI, %s)' % (
            DISTRIBUTION, bundled.version, bundled.library)
    if not ldflags.strip():
        from .compat import user_blas_ldflags
        why = ('blas.ldflags is empty' if user_blas_ldflags() is not None
               else find_bundled()[1])
        return ('BLAS: none (%s): Theano\'s NumPy fallback, convolutions '
                'single-threaded and several times slower' % why)
    return 'BLAS: blas.ldflags=%s (your setting)' % ldflags


_PROBE = r"""
#ifdef __cplusplus
extern "C" {
#endif
void sgemm_(char*, char*, const int*, const int*, const int*, const float*,
            const float*, const int*, const float*, const int*, const float*,
            float*, const int*);
void dgemm_(char*, char*, const int*, const int*, const int*, const double*,
            const double*, const int*, const double*, const int*,
            const double*, double*, const int*);
#ifdef __cplusplus
}
#endif
int main(void)
{
    char n = 'N';
    int one = 1;
    float a = 2, b = 3, c = 0, alpha = 1, beta = 0;
    double da = 2, db = 3, dc = 0, dalpha = 1, dbeta = 0;
    sgemm_(&n, &n, &one, &one, &one, &alpha, &a, &one, &b, &one, &beta, &c,
           &one);
    dgemm_(&n, &n, &one, &one, &one, &dalpha, &da, &one, &db, &one, &dbeta,
           &dc, &one);
    return (c == 6 && dc == 6) ? 0 : 3;
}
"""


def _ldflags_tokens(ldflags):
    """Compiler arguments as Theano makes them from ``ldflags``: its
    tokens, an rpath for every ``-L``."""
    tokens = [t.strip('"\'') for t in ldflags.split()]
    return tokens + ['-Wl,-rpath,' + t[2:] for t in tokens
                     if t.startswith('-L')]


def link_error(ldflags, compiler='g++'):
    """Why a C++ program calling ``sgemm_`` and ``dgemm_`` cannot be built
    and run with ``ldflags``, as one line, or None if it can.

    This is what every BLAS-using C module of Theano and of the package
    needs; checking it up front turns an ``undefined symbol`` deep inside
    a compile into one line before it.
    """
    with tempfile.TemporaryDirectory(prefix='lasagne_tagger_blas_') as tmp:
        source = os.path.join(tmp, 'probe.cpp')
        program = os.path.join(tmp, 'probe')
        with open(source, 'w') as fh:
            fh.write(_PROBE)
        try:
            built = subprocess.run(
                [compiler, source, '-o', program] + _ldflags_tokens(ldflags),
                capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as exc:
            return 'cannot run %s: %s' % (compiler, exc)
        if built.returncode != 0:
            lines = [l for l in built.stderr.splitlines()
                     if 'error' in l or 'undefined' in l or 'cannot' in l]
            return (lines or built.stderr.splitlines() or ['link failed'])[
                0].strip()
        try:
            ran = subprocess.run([program], capture_output=True, text=True,
                                 timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            return 'the linked program does not run: %s' % exc
        if ran.returncode != 0:
            text = (ran.stderr.strip().splitlines() or [''])[0]
            return ('the linked program failed (exit %d)%s' % (
                ran.returncode, ': ' + text if text else ''))
    return None


@functools.lru_cache(maxsize=None)
def ensure_usable(ldflags):
    """Check once a process, before anything compiles, that ``ldflags``
    links, and say so in one line when there is no BLAS.

    Parameters
    ----------
    ldflags : str
        Theano's ``blas.ldflags`` in effect.

    Raises
    ------
    TaggerError
        ``blas.ldflags=...: cannot link a BLAS: <cause>``: a flag that names a
        library the compiler cannot link, or the bundled library damaged.
    """
    if not ldflags.strip():
        print('lasagne_tagger: %s' % describe(ldflags), file=sys.stderr)
        return describe(ldflags)
    bundled, _ = find_bundled()
    if bundled is not None and ldflags == bundled_ldflags(bundled):
        # Our own flags: the library is where they say; loading it (a few
        # ms) checks that it is whole and runs on this CPU.
        try:
            lib = ctypes.CDLL(bundled.library)
            getattr(lib, PREFIX + 'sgemm_')
            getattr(lib, PREFIX + 'dgemm_')
        except (OSError, AttributeError) as exc:
            raise TaggerError('cannot load the bundled BLAS: %s' % exc,
                              bundled.library)
        return describe(ldflags)
    why = link_error(ldflags)
    if why is not None:
        raise TaggerError('cannot link a BLAS with it (%s); set '
                          'blas.ldflags to a BLAS the compiler can link, or '
                          'leave it unset for the bundled %s'
                          % (why, DISTRIBUTION), 'blas.ldflags=%s' % ldflags)
    return describe(ldflags)
