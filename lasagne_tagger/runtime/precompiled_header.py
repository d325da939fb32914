"""Compile Theano's C modules against a precompiled header.

Every module Theano 1.0.5 compiles starts with the same block of includes
(``Python.h``, ``<iostream>``, ``theano_mod_helper.h``, NumPy's headers):
about 0.35 s of each ``g++`` run goes to parsing them, half of a small
module's compile (measured on GoogLeNet's and the tagger's modules).  GCC
can load that block from a precompiled header (``Python.h.gch``) instead,
when it is found first on the include path and was built with the same
compiler and options.

:func:`compile_str` wraps Theano's ``GCC_compiler.compile_str``: for a
module whose source starts with ``#include <Python.h>`` it puts a folder on
the include path holding ``Python.h`` (the module's own leading includes)
and ``Python.h.gch``, built once for that exact include block, compiler,
compiler arguments and include path, and for the versions of Python, NumPy
and Theano whose headers it holds (all in the folder's name, a SHA-256
under ``<compiledir>/lasagne_tagger_pch``).  The module's cache key is
Theano's own, untouched: the precompiled header changes how fast a
module compiles, not what it is (GCC refuses a header built with other
options and reads the real files).  If the header cannot be built, the
module compiles as before.

Installed by :mod:`lasagne_tagger.runtime.theano_defaults` unless
``LASAGNE_TAGGER_NO_PCH`` (or ``LASAGNE_TAGGER_NO_DEFAULTS``) is set.
Measured: ``benchmarks/results/compile.json``.
"""
import functools
import hashlib
import json
import os
import subprocess
import sys
import threading

from ..atomic import atomic_path, write_bytes
from ..errors import TaggerError

__all__ = ['install', 'installed', 'leading_includes', 'stub', 'header_folder',
           'DISABLE_ENV']

DISABLE_ENV = 'LASAGNE_TAGGER_NO_PCH'
FOLDER = 'lasagne_tagger_pch'
_LOCKS = {}
_LOCKS_GUARD = threading.Lock()


def leading_includes(src_code):
    """The ``#include`` lines a module starts with (the block a precompiled
    ``Python.h`` can stand for), or None if it does not start with
    ``#include <Python.h>``."""
    lines = []
    for line in src_code.splitlines():
        if not line.startswith('#include '):
            break
        lines.append(line)
    if not lines or lines[0].strip() != '#include <Python.h>':
        return None
    return '\n'.join(lines) + '\n'


def stub(block):
    """The ``Python.h`` that stands for ``block`` in the folder.

    A compile that cannot use the ``.gch`` reads this file instead: it goes
    on to the real ``Python.h`` (``#include_next``; compiled as the primary
    file, for the ``.gch``, it acts as ``#include``), then the rest of the
    block.  The guard makes the headers' own ``#include <Python.h>`` (NumPy
    includes it inside ``extern "C"``) a no-op.
    """
    return ('#ifndef LASAGNE_TAGGER_PCH_STUB\n'
            '#define LASAGNE_TAGGER_PCH_STUB\n'
            + block.replace('#include <Python.h>',
                            '#include_next <Python.h>', 1)
            + '#endif\n')


def _forced_includes(preargs):
    """Contents of the files that ``-include`` arguments force in (their
    macros precede the header, so they are part of what it depends on)."""
    out = []
    for i, arg in enumerate(preargs):
        path = None
        if arg == '-include' and i + 1 < len(preargs):
            path = preargs[i + 1]
        elif arg.startswith('-include') and len(arg) > len('-include'):
            path = arg[len('-include'):]
        if path:
            try:
                with open(path, 'rb') as fh:
                    out.append(hashlib.sha256(fh.read()).hexdigest())
            except OSError:
                out.append('missing:' + path)
    return out


def _signature(block, compiler, preargs, include_dirs):
    import numpy
    import theano
    from theano.gof import cmodule
    return hashlib.sha256(json.dumps([
        stub(block), compiler, cmodule.gcc_version(), list(preargs),
        list(include_dirs), _forced_includes(preargs), sys.version,
        numpy.__version__, theano.__version__]).encode()).hexdigest()[:24]


def _lock_for(path):
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(path, threading.Lock())


def header_folder(block, preargs, include_dirs, base=None):
    """The folder with ``Python.h`` and its precompiled ``Python.h.gch``
    for modules that start with ``block`` and compile with ``preargs`` and
    ``include_dirs`` (built on first use), or None if it cannot be built.
    """
    import theano
    base = base or os.path.join(theano.config.compiledir, FOLDER)
    compiler = theano.config.cxx
    folder = os.path.join(base, _signature(block, compiler, preargs,
                                           include_dirs))
    gch = os.path.join(folder, 'Python.h.gch')
    failed = os.path.join(folder, 'failed')
    with _lock_for(folder):
        if os.path.exists(gch):
            return folder
        if os.path.exists(failed):
            return None
        try:
            os.makedirs(folder, exist_ok=True)
            header = os.path.join(folder, 'Python.h')
            if not os.path.exists(header):
                write_bytes(header, stub(block).encode())
            return folder if _precompile(compiler, preargs, include_dirs,
                                         header, gch, failed) else None
        except (OSError, subprocess.SubprocessError, TaggerError):
            return None


def _precompile(compiler, preargs, include_dirs, header, gch, failed):
    """Compile ``header`` into ``gch`` (atomically); on a compiler error
    write its message to ``failed`` and return False."""
    errors = []
    try:
        with atomic_path(gch, what='precompile') as tmp:
            cmd = ([compiler, '-x', 'c++-header', '-g', '-w']
                   + list(preargs)
                   + ['-I%s' % d for d in include_dirs]
                   + ['-fvisibility=hidden', header, '-o', tmp])
            done = subprocess.run(cmd, capture_output=True, timeout=600)
            if done.returncode != 0:
                errors.append(done.stderr[-4000:])
                raise TaggerError('the compiler failed', gch)
    except TaggerError:
        if errors:
            write_bytes(failed, errors[0])
        return False
    return True


def _with_header(original):
    @functools.wraps(original)
    def compile_str(module_name, src_code, location=None, include_dirs=None,
                    lib_dirs=None, libs=None, preargs=None, py_module=True,
                    hide_symbols=True):
        block = leading_includes(src_code)
        if block is not None:
            from theano import config
            from theano.gof.cmodule import std_include_dirs
            args = list(preargs or [])
            if config.cmodule.remove_gxx_opt:
                args = [p for p in args if not p.startswith('-O')]
            dirs = [d for d in (include_dirs or []) if d]
            folder = header_folder(block, args, dirs + std_include_dirs())
            if folder is not None:
                include_dirs = [folder] + dirs
        return original(module_name, src_code, location=location,
                        include_dirs=include_dirs, lib_dirs=lib_dirs,
                        libs=libs, preargs=preargs, py_module=py_module,
                        hide_symbols=hide_symbols)
    return compile_str


def install():
    """Wrap ``GCC_compiler.compile_str`` now if Theano is imported, else
    right after ``theano.gof.cmodule`` is first imported; False if already
    done."""
    from .compat import patch_after_import
    return patch_after_import('theano.gof.cmodule', 'GCC_compiler',
                              'compile_str', _with_header,
                              'precompiled_header', static=True)


def installed():
    """Whether the wrapper is in place (or waiting for Theano's import)."""
    from .compat import patched
    return patched('theano.gof.cmodule', 'GCC_compiler', 'compile_str',
                   'precompiled_header')
