"""How the package's Theano ops with C code
(:mod:`~lasagne_tagger.ops.caffe_pool_op`, :mod:`~lasagne_tagger.ops.lrn_op`,
:mod:`~lasagne_tagger.ops.bias_relu_op`, :mod:`~lasagne_tagger.ops.conv_op`)
get their C: each op's C lies in a ``.c`` file beside its module, cut into
``#section <name>`` parts (as Theano's ``COp`` files are), and reaches the
compiler unformatted, between a block of ``#define`` lines that give it the
node's names and the op's parameters and the matching ``#undef`` lines
(see ``c_support.h`` for the macros every op gets).  Also the gradient ops'
Apply node and the cache version.  This module imports Theano; import it
lazily.
"""
import functools
import hashlib
import os
import re
import sys

import numpy as np

from ..runtime import _theano  # noqa: F401 (prepares Theano)
import theano.tensor as T
from theano.gof import Apply, OpenMPOp

__all__ = ['CFileOp', 'cache_version', 'c_sections', 'grad_apply',
           'node_macros', 'source_version', 'support_code', 'with_macros']

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = 'c_support.h'


@functools.lru_cache(maxsize=None)
def source_version(path):
    """SHA-256 (16 hex digits) of a source file."""
    with open(path, 'rb') as fh:
        return hashlib.sha256(fh.read()).hexdigest()[:16]


def cache_version(number, op, path, c_file, *extra):
    """An op's ``c_code_cache_version``: ``number``, its OpenMP setting,
    any ``extra`` parts, and the digests of the shared sources (this module
    and ``c_support.h``), of the op's C file ``c_file`` (a name in this
    folder) and of ``path`` (the op's own module), last.
    Theano keys compiled modules by that version and not by the C code, so
    an edit to any of them must never reuse a module compiled from the
    old code."""
    shared = tuple(source_version(p) for p in (
        __file__, os.path.join(HERE, HEADER), os.path.join(HERE, c_file)))
    return (number, op.openmp) + extra + shared + (source_version(path),)


@functools.lru_cache(maxsize=None)
def c_sections(c_file):
    """The sections of the C file ``c_file`` (a name in this folder):
    ``{name: text}``, each section running from its ``#section <name>``
    line to the next; a line ``#include_section <name>`` stands for that
    section's text (a section that other sections include, only once
    each).  Raises ``ValueError`` on code before the first section, a name
    used twice or an unknown or nested inclusion."""
    path = os.path.join(HERE, c_file)
    with open(path) as fh:
        text = fh.read()
    sections, name, preamble = {}, None, []
    for number, line in enumerate(text.splitlines(True), 1):
        where = '%s:%d' % (path, number)
        if line.startswith('#section '):
            name = line.split(None, 1)[1].strip()
            if name in sections:
                raise ValueError('%s: section %r twice' % (where, name))
            sections[name] = []
        elif name is not None:
            sections[name].append((where, line))
        else:
            preamble.append(line)
    if re.sub(r'/\*.*?\*/', '', ''.join(preamble), flags=re.S).strip():
        raise ValueError('%s: code (not a comment) before the first '
                         '#section' % path)
    return {name: ''.join(_included(sections, lines))
            for name, lines in sections.items()}


def _included(sections, lines, depth=0):
    """``lines`` (``(where, line)`` pairs) with each ``#include_section``
    line replaced by the named section's lines."""
    for where, line in lines:
        if not line.startswith('#include_section '):
            yield line
            continue
        name = line.split(None, 1)[1].strip()
        if name not in sections or depth:
            raise ValueError('%s: cannot include section %r here'
                             % (where, name))
        yield from _included(sections, sections[name], depth + 1)


@functools.lru_cache(maxsize=None)
def support_code():
    """``c_support.h``: support code shared by every op (Theano includes
    identical support code once a module)."""
    with open(os.path.join(HERE, HEADER)) as fh:
        return fh.read()


def _macro_value(value):
    """``value`` as a macro body: bools as 0/1, multi-line text with line
    continuations."""
    if isinstance(value, (bool, np.bool_)):
        value = int(value)
    return ' \\\n'.join(str(value).split('\n'))


def with_macros(code, macros):
    """``code`` between ``#define`` lines for ``macros`` (``(name,
    value)`` pairs, a name may take arguments: ``'LT_OMP(...)'``) and the
    matching ``#undef`` lines."""
    defines = ''.join('#define %s %s\n' % (name, _macro_value(value))
                      for name, value in macros)
    undefs = ''.join('#undef %s\n' % name.split('(')[0]
                     for name, _ in reversed(macros))
    return '\n' + defines + code + undefs


def node_macros(op, node, name, sub=None):
    """The macros every op's C gets (``c_support.h`` lists them): the node's
    variable names (when ``sub``, the ``c_code`` arguments, is given: a
    dict with ``'inputs'``, ``'outputs'`` and ``'fail'``), their element
    types, ``APPLY_SPECIFIC`` and ``LT_OMP`` (OpenMP pragmas only when
    ``op.openmp``)."""
    macros = [('APPLY_SPECIFIC(str)', 'str##_%s' % name),
              ('LT_OMP(...)', '_Pragma(#__VA_ARGS__)' if op.openmp else '')]
    for kind, variables in (('INPUT', node.inputs), ('OUTPUT', node.outputs)):
        for i, v in enumerate(variables):
            if hasattr(v.type, 'dtype'):
                macros.append(('DTYPE_%s_%d' % (kind, i), 'npy_' + v.dtype))
    if sub is not None:
        for kind in ('INPUT', 'OUTPUT'):
            for i, v in enumerate(sub[kind.lower() + 's']):
                macros.append(('%s_%d' % (kind, i), v))
        # one statement wherever it stands (``if (!x) FAIL;``), whatever
        # the failure code holds
        macros.append(('FAIL', 'do { %s; } while (0)' % sub['fail']))
    return macros


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


class CFileOp(OpenMPOp):
    """An ``OpenMPOp`` whose C code is the section :attr:`c_section` of the
    file :attr:`c_file` beside this module, given the macros of
    :func:`node_macros` and the op's own (:meth:`c_macros`).  The file's
    optional ``support_code`` section (shared by its ops) and
    ``support_code_apply`` section (per node, with the same macros, names
    made unique by ``APPLY_SPECIFIC``) come with it."""
    c_file = None
    c_section = None
    #: bumped by hand when the op's C contract changes (the digests of the
    #: sources follow every edit anyway)
    c_version = 0

    def c_macros(self, node):
        """The op's own ``(name, value)`` macros for ``node``."""
        return []

    def c_version_extra(self):
        """More parts of the cache version (e.g. the BLAS header's)."""
        return ()

    def _macros(self, node, name, sub=None):
        return node_macros(self, node, name, sub) + list(self.c_macros(node))

    def c_support_code(self):
        own = c_sections(self.c_file).get('support_code')
        return [support_code()] + ([own] if own else [])

    def c_support_code_apply(self, node, name):
        code = c_sections(self.c_file).get('support_code_apply')
        return with_macros(code, self._macros(node, name)) if code else ''

    def c_code(self, node, name, inputs, outputs, sub):
        return with_macros(c_sections(self.c_file)[self.c_section],
                           self._macros(node, name, dict(
                               inputs=inputs, outputs=outputs,
                               fail=sub['fail'])))

    def c_code_cache_version(self):
        return cache_version(self.c_version, self,
                             sys.modules[type(self).__module__].__file__,
                             self.c_file, *self.c_version_extra())
