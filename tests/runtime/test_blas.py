"""The bundled BLAS (scipy-openblas32): found without a system library,
every name Theano calls mapped to a symbol it exports, user flags checked
before any compile, and a path without BLAS that still runs."""
import ctypes
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from lasagne_tagger.runtime import blas
from lasagne_tagger.errors import TaggerError
from python_child import run_python
from repo import ROOT


def _exported(library):
    out = subprocess.run(['nm', '-D', '--defined-only', library],
                         capture_output=True, text=True, check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


def test_bundled_blas_is_installed_and_is_the_default():
    bundled, why = blas.find_bundled()
    assert why is None and bundled is not None
    assert os.path.isfile(bundled.library)
    # pinned like everything else
    req = open(os.path.join(ROOT,
                            'requirements.txt')).read()
    assert '%s==%s' % (blas.DISTRIBUTION, bundled.version) in req
    flags = blas.bundled_ldflags(bundled)
    assert flags.split() == ['-L' + bundled.libdir, '-lscipy_openblas',
                             '-include' + blas.NAMES_HEADER]
    assert blas.default_ldflags() == (flags, None)
    assert blas.describe(flags).startswith(
        'BLAS: scipy-openblas32 %s' % bundled.version)


def test_names_header_maps_every_declared_name_the_library_exports():
    import theano  # noqa: F401  (configured by the package)
    from theano.tensor import blas_headers
    bundled, _ = blas.find_bundled()
    exported = _exported(bundled.library)
    text = blas_headers.blas_header_text() + \
        blas_headers.openblas_threads_text()
    # the declarations only (with an empty ldflags the NumPy fallback's
    # own helpers follow them)
    text = text[text.index('extern "C"'):]
    text = text[:text.index('}')] + blas_headers.openblas_threads_text()
    declared = set(re.findall(r'\b([a-z][a-z0-9_]*)\s*\(', text))
    header = open(blas.NAMES_HEADER).read()
    mapped = dict(re.findall(r'^#define (\w+) (\w+)$', header, re.M))
    mapped.pop('LASAGNE_TAGGER_SCIPY_OPENBLAS_NAMES_H', None)
    for name, target in mapped.items():
        assert target == blas.PREFIX + name
        assert target in exported, target
    missing = {n for n in declared - set(mapped)
               if blas.PREFIX + n in exported}
    assert not missing, 'declared and exported but not mapped: %s' % missing
    for name in ('sgemm_', 'dgemm_', 'sgemv_', 'dgemv_', 'sdot_', 'ddot_',
                 'sger_', 'dger_', 'openblas_set_num_threads',
                 'openblas_get_num_threads'):
        assert name in mapped
    # what is left unmapped is called nowhere in Theano's C code
    unmapped = declared - set(mapped)
    assert unmapped <= {n for n in declared if n.endswith('_sub_')} | {
        'xerbla_'}, unmapped


def test_the_library_loads_and_multiplies():
    bundled, _ = blas.find_bundled()
    lib = ctypes.CDLL(bundled.library)
    lib.scipy_openblas_get_config.restype = ctypes.c_char_p
    assert b'DYNAMIC_ARCH' in lib.scipy_openblas_get_config()


def test_compiled_modules_link_it_through_an_rpath(tmp_path):
    """A fresh process, a fresh compiledir, no LD_LIBRARY_PATH: Theano's
    Dot22 and our convolution both link and load the bundled library."""
    code = r'''
import numpy as np, lasagne_tagger.runtime._theano, theano, theano.tensor as T
from lasagne_tagger.ops.conv_op import CorrGemm
a = T.matrix('a', dtype='float64')
f = theano.function([a], T.dot(a, a.T))
x = T.tensor4('x', dtype='float32'); w = T.tensor4('w', dtype='float32')
g = theano.function([x, w], CorrGemm((3, 3), pad=(1, 1), openmp=True)(x, w))
m = np.arange(6.).reshape(2, 3)
print(float(f(m).sum()), float(g(np.ones((3, 2, 4, 4), 'float32'),
                                 np.ones((2, 2, 3, 3), 'float32')).sum()))
print(sorted(type(n.op).__name__ for n in f.maker.fgraph.toposort()))
'''
    env = dict(THEANORC=os.devnull,
               THEANO_FLAGS='compiledir=%s' % (tmp_path / 'cd'))
    env.pop('LD_LIBRARY_PATH', None)
    out = run_python(code, **env)
    assert out.returncode == 0, out.stderr
    first, kinds = out.stdout.strip().splitlines()[-2:]
    m = np.arange(6.).reshape(2, 3)
    assert first == '%r %r' % (float((m @ m.T).sum()),
                               float(_conv_ones_sum()))
    assert 'Dot22' in kinds
    modules = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path / 'cd')
               for f in fs if f.endswith('.so')]
    linked = ''.join(subprocess.run(['ldd', m], capture_output=True,
                                    text=True).stdout for m in modules)
    bundled, _ = blas.find_bundled()
    assert 'libscipy_openblas.so => %s' % bundled.library in linked
    # (on Python 3.10 Theano also links libpython, which ldd outside the
    # interpreter may not find; the BLAS is what this test is about)
    assert 'libscipy_openblas.so => not found' not in linked


def _conv_ones_sum():
    """Sum of a 3x3, pad 1 correlation of ones (3 images, 2 -> 2 channels,
    4x4): each output counts the taps inside the image."""
    inside = np.zeros((4, 4))
    for i in range(4):
        for j in range(4):
            inside[i, j] = (min(i + 1, 3) - max(i - 1, 0) + 1) * \
                (min(j + 1, 3) - max(j - 1, 0) + 1)
    return 3 * 2 * 2 * inside.sum()


def test_a_broken_user_flag_is_refused_in_one_line_before_any_compile():
    why = blas.link_error('-lno_such_blas_library')
    assert why and 'no_such_blas_library' in why and '\n' not in why
    with pytest.raises(TaggerError, match=r'^blas.ldflags=-lno_such_blas_'
                       r'library: cannot link a BLAS with it \('):
        blas.ensure_usable('-lno_such_blas_library')
    # a library without the symbols
    why = blas.link_error('-lm')
    assert why and 'sgemm_' in why


def test_the_bundled_flags_link_by_the_probe_too():
    bundled, _ = blas.find_bundled()
    assert blas.link_error(blas.bundled_ldflags(bundled)) is None


def test_cli_refuses_a_broken_blas_flag_with_one_line(tmp_path):
    out = subprocess.run(
        [sys.executable, '-m', 'lasagne_tagger.cli', 'reference', 'export',
         '--width', '0.125', '--image-size', '32', '--count', '1',
         '--out', str(tmp_path / 'r.h5')],
        capture_output=True, text=True, timeout=600,
        env=dict(os.environ, THEANO_FLAGS='blas.ldflags=-lno_such_blas',
                 THEANORC=os.devnull))
    assert out.returncode == 2, out.stderr
    lines = [l for l in out.stderr.splitlines() if l.startswith('error:')]
    assert lines == [l for l in out.stderr.splitlines()
                     if 'blas' in l.lower() and 'WARNING' not in l]
    assert lines[0].startswith('error: blas.ldflags=-lno_such_blas: cannot '
                               'link a BLAS')
    assert 'Traceback' not in out.stderr
    assert not (tmp_path / 'r.h5').exists()


@pytest.mark.slow
def test_without_blas_the_package_says_so_once_and_still_runs(tmp_path):
    """An empty blas.ldflags: Theano's NumPy fallback for its own ops, our
    convolution on the same fallback (no BLAS symbol needed), one line."""
    code = r'''
import numpy as np, lasagne_tagger.runtime._theano, theano, theano.tensor as T
from lasagne_tagger.runtime import function_cache
from lasagne_tagger.ops.conv_op import CorrGemm
x = T.tensor4('x', dtype='float32'); w = T.tensor4('w', dtype='float32')
y = CorrGemm((3, 3), pad=(1, 1), openmp=True)(x, w)
gx, gw = theano.grad(y.sum(), [x, w])
f = function_cache.function([x, w], [y, gx, gw])
g = function_cache.function([x, w], y * 2)
rng = np.random.RandomState(0)
xv, wv = rng.randn(3, 2, 5, 5).astype('float32'), \
    rng.randn(4, 2, 3, 3).astype('float32')
ys, gxs, gws = f(xv, wv)
ref = theano.function([x, w], T.nnet.conv2d(x, w, border_mode=(1, 1),
                                           filter_flip=False))(xv, wv)
# Theano's Dot22 has no C code without a BLAS: its Python code runs (and
# compiling it side by side must not trip on that)
a = T.matrix('a', dtype='float32')
h = function_cache.function([a], [T.dot(a, a.T), T.dot(a, a.T) * 2])
m = rng.randn(3, 4).astype('float32')
assert abs(h(m)[0] - m @ m.T).max() < 1e-5
print(float(abs(ys - ref).max()), float(abs(g(xv, wv) - 2 * ref).max()))
'''
    out = run_python(code, THEANORC=os.devnull,
                    THEANO_FLAGS='blas.ldflags=,compiledir=%s' % (tmp_path / 'c'))
    assert out.returncode == 0, out.stderr
    err = [l for l in out.stderr.splitlines() if 'lasagne_tagger: BLAS' in l]
    assert err == ['lasagne_tagger: BLAS: none (blas.ldflags is empty): '
                   "Theano's NumPy fallback, convolutions single-threaded "
                   'and several times slower']
    diff, diff2 = map(float, out.stdout.split())
    assert diff < 1e-4 and diff2 < 1e-4
