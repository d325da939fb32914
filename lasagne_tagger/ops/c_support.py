"""C-code pieces shared by the package's Theano ops with C code
(:mod:`~lasagne_tagger.ops.caffe_pool_op`, :mod:`~lasagne_tagger.ops.lrn_op`,
:mod:`~lasagne_tagger.ops.bias_relu_op`, :mod:`~lasagne_tagger.ops.conv_op`): the
gradient ops' Apply node, the loop over (image, channel) planes, the
output allocation and the cache version.  This module imports Theano;
import it lazily.
"""
import functools
import hashlib

from ..runtime import _theano  # noqa: F401 (prepares Theano)
import theano.tensor as T
from theano.gof import Apply

__all__ = ['alloc_output', 'cache_version', 'grad_apply', 'plane_loop',
           'source_version']


@functools.lru_cache(maxsize=None)
def source_version(path):
    """SHA-256 (16 hex digits) of a module's source file."""
    with open(path, 'rb') as fh:
        return hashlib.sha256(fh.read()).hexdigest()[:16]


def cache_version(number, op, path, *extra):
    """An op's ``c_code_cache_version``: ``number``, its OpenMP setting,
    any ``extra`` parts, and the digests of this module and of ``path``
    (the op's own module).
    Theano keys compiled modules by that version and not by the C code, so
    an edit to either source must never reuse a module compiled from the
    old code."""
    return (number, op.openmp) + extra + (source_version(__file__),
                                          source_version(path))


def grad_apply(op, x, g):
    """The Apply node of a 4D gradient op ``op(x, g) -> gx`` (``g`` cast to
    ``x``'s dtype)."""
    x = T.as_tensor_variable(x)
    g = T.as_tensor_variable(g)
    if x.ndim != 4 or g.ndim != 4:
        raise TypeError('%s needs 4D tensors' % type(op).__name__)
    if g.dtype != x.dtype:
        g = T.cast(g, x.dtype)
    return Apply(op, [x, g], [x.type()])


def alloc_output(out, nd, dims, like, cleanup, fail):
    """C lines making output ``out`` a C-contiguous array of ``nd`` dims
    ``dims`` (a C ``npy_intp`` array expression) in the dtype of the array
    ``like``, reused when it already is one; on failure ``cleanup`` then
    ``fail`` run."""
    same = ''.join('\n                || PyArray_DIMS(%s)[%d] != %s[%d]'
                   % (out, i, dims, i) for i in range(nd))
    return r"""
        if (!%(out)s || !PyArray_IS_C_CONTIGUOUS(%(out)s)
                || PyArray_NDIM(%(out)s) != %(nd)d%(same)s) {
            Py_XDECREF(%(out)s);
            %(out)s = (PyArrayObject*)PyArray_EMPTY(%(nd)d, %(dims)s,
                                                    PyArray_TYPE(%(like)s), 0);
            if (!%(out)s) { %(cleanup)s %(fail)s; }
        }
""" % dict(out=out, nd=nd, dims=dims, like=like, same=same,
           cleanup=cleanup, fail=fail)


def plane_loop(openmp, scratch, body, count='N * C'):
    """C lines running ``body`` for each (image, channel) ``plane`` in
    ``[0, count)`` (``N * C`` by default), in parallel with OpenMP when
    ``openmp``.  ``scratch`` lists ``(C type, name, element count)``
    buffers that ``body`` may use, allocated once per thread rather than
    once per plane; if one cannot be allocated, the int ``failed``
    (declared by the caller) is set to 1 and that thread's planes are
    skipped."""
    if not scratch:
        return r"""
        %(for_)s
        for (npy_intp plane = 0; plane < %(count)s; ++plane) {
            %(body)s
        }
""" % dict(for_='#pragma omp parallel for schedule(static)' if openmp
           else '', body=body, count=count)
    ok = ' && '.join(name for _, name, _ in scratch)
    return r"""
        %(parallel)s
        {
        %(alloc)s
        if (!(%(ok)s)) failed = 1;
        %(for_)s
        for (npy_intp plane = 0; plane < %(count)s; ++plane) {
            if (!(%(ok)s)) continue;
            %(body)s
        }
        %(free)s
        }
""" % dict(parallel='#pragma omp parallel' if openmp else '',
           for_='#pragma omp for schedule(static)' if openmp else '',
           ok=ok, body=body, count=count,
           alloc=''.join('%s* %s = (%s*)malloc(sizeof(%s) * (%s));\n'
                         % (t, name, t, t, size)
                         for t, name, size in scratch),
           free=''.join('free(%s);\n' % name for _, name, _ in scratch))
