"""Make Theano 1.0.5 and Lasagne 0.1 run on Python 3.11 / NumPy 1.23.

Five small, independent patches, each applied only when it is needed and
each idempotent.  :func:`apply` must run before anything imports ``theano``
or ``lasagne``; the package's ``__init__`` calls it, so importing any
``lasagne_tagger`` module first is enough.  Nothing here imports Theano.

1. **BLAS flags** (``blas``).  Theano computes the default of
   ``blas.ldflags`` from ``numpy.distutils.__config__.blas_opt_info``, which
   NumPy builds made with Meson no longer have: ``import theano`` then dies
   with ``AttributeError``; and where NumPy still has it, it names whatever
   BLAS NumPy was built against, often a system library a fresh machine
   lacks.  When the user has not set ``blas.ldflags`` in ``THEANO_FLAGS``
   or a ``.theanorc`` file, we append ``blas.ldflags=<value>`` to
   ``THEANO_FLAGS``: the pinned scipy-openblas32 from PyPI
   (:mod:`lasagne_tagger.runtime.blas` says why that one and how it is linked),
   or the empty string if it is not installed, with which Theano falls back
   to NumPy's own BLAS (said in one line before the first compile).
2. **downsample module** (``downsample``).  Lasagne 0.1 does
   ``from theano.tensor.signal import downsample``, a module removed in
   Theano 0.9.  A meta-path finder placed *last* on ``sys.meta_path``
   provides a thin adapter over :func:`theano.tensor.signal.pool.pool_2d`,
   so it is only ever used when the real module cannot be found.
3. **Python scan loop** (``scan``).  Theano's bundled Cython scan
   (``scan_perform.c``) was generated for older CPython and does not compile
   on 3.11; Theano would then fail instead of falling back.  Setting
   ``sys.modules['theano.scan_module.scan_perform_ext'] = None`` turns the
   import into an ``ImportError``, on which Theano uses its Python scan loop
   (``Scan.execute``), giving identical results.

4. **Cacheable C modules** (``cache_key``).  Not Python 3.11 breakages but
   two Theano 1.0.5 bugs that make every process recompile C modules it has
   already compiled, costing every warm start seconds (issue 7):

   - ``COp.c_code_cache_version`` returns ``hash(tuple(self.func_codes))``,
     Python's *salted* string hash: with hash randomization (the default:
     ``PYTHONHASHSEED`` unset or ``random``) each process computes another
     key for every COp (``DimShuffle`` among them).  We use a SHA-256
     digest of the C code instead; needed only when the hash seed varies.
   - ``CLinker.cmodule_key_`` counts an op's empty ``__props__`` as
     "unversioned", so the modules of ``Alloc``, ``Dot22``, ``Softmax``,
     ``DotModulo`` (dropout's random numbers)... are never cached.  We keep
     such keys versioned when everything else in them is
     (:func:`versioned_empty_props`).

   Theano's ``theano.gof.op`` and ``theano.gof.cc`` are patched right after
   they are first imported (a post-import hook), so this module still
   imports nothing from Theano.

5. **cuDNN on a GPU** (``dnn``).  Theano 1.0.5 cannot use cuDNN 8 or later
   (it calls functions cuDNN 8 removed): on ``device=cuda*`` with
   ``dnn.enabled`` unset we append ``dnn.enabled=False`` unless a cuDNN
   older than 8 is found (:func:`lasagne_tagger.runtime.gpu.configure`).

Set ``LASAGNE_TAGGER_NO_COMPAT=1`` to apply none of them (for debugging, or
to check that they are still needed: the tests do exactly that).
"""
import configparser
import functools
import hashlib
import importlib.abc
import importlib.machinery
import os
import shlex
import sys
import types

__all__ = ['apply', 'applied', 'user_theano_flag', 'user_blas_ldflags',
           'add_theano_flag', 'numpy_has_blas_info',
           'pool_2d_adapter', 'hash_seed_varies',
           'stable_c_code_cache_version', 'versioned_empty_props']

DOWNSAMPLE_MODULE = 'theano.tensor.signal.downsample'
SCAN_EXT_MODULE = 'theano.scan_module.scan_perform_ext'
DISABLE_ENV = 'LASAGNE_TAGGER_NO_COMPAT'
# The last Python on which Theano 1.0.5's generated scan_perform.c compiles.
LAST_PYTHON_WITH_CYTHON_SCAN = (3, 10)


def _theano_flags_dict(flags):
    """Parse a THEANO_FLAGS string the way Theano's configparser does."""
    splitter = shlex.shlex(flags, posix=True)
    splitter.whitespace = ','
    splitter.whitespace_split = True
    out = {}
    for pair in splitter:
        key, sep, value = pair.strip().partition('=')
        if sep:
            out[key.strip()] = value
    return out


def _theanorc_files(environ):
    return [os.path.expanduser(p) for p in
            environ.get('THEANORC', '~/.theanorc').split(os.pathsep) if p]


def user_theano_flag(name, environ=None):
    """Return the user's own setting of Theano flag ``name``, or None if unset.

    Looks where Theano looks: ``THEANO_FLAGS`` first (``blas.ldflags`` or
    ``blas__ldflags``), then the files named by ``THEANORC`` (default
    ``~/.theanorc``), later files winning: option ``ldflags`` of section
    ``[blas]`` for ``blas.ldflags``, section ``[global]`` for a flag without
    a dot such as ``openmp``.

    Parameters
    ----------
    name : str
        Flag name as Theano spells it, e.g. ``'blas.ldflags'``, ``'openmp'``.
    environ : mapping, optional
        Environment to read (default ``os.environ``).
    """
    environ = os.environ if environ is None else environ
    flags = _theano_flags_dict(environ.get('THEANO_FLAGS', ''))
    for key in (name, name.replace('.', '__')):
        if key in flags:
            return flags[key]
    section, _, option = name.rpartition('.')
    section = section or 'global'
    parser = configparser.RawConfigParser()
    try:
        parser.read(_theanorc_files(environ))
    except configparser.Error:
        return None   # Theano itself will report the broken file
    if parser.has_option(section, option):
        return parser.get(section, option)
    return None


def user_blas_ldflags(environ=None):
    """The user's own ``blas.ldflags`` (see :func:`user_theano_flag`)."""
    return user_theano_flag('blas.ldflags', environ)


def add_theano_flag(environ, name, value):
    """Append ``name=value`` to ``environ['THEANO_FLAGS']``."""
    flags = environ.get('THEANO_FLAGS', '')
    entry = '%s=%s' % (name, value)
    environ['THEANO_FLAGS'] = '%s,%s' % (flags, entry) if flags else entry


def numpy_has_blas_info():
    """True if NumPy still exposes the ``blas_opt_info`` Theano reads."""
    try:
        import numpy.distutils.__config__ as np_config
    except ImportError:
        return False
    return hasattr(np_config, 'blas_opt_info')


def _patch_blas(environ):
    if 'theano' in sys.modules:
        return None        # too late to change flags; Theano is configured
    if user_blas_ldflags(environ) is not None:
        return None
    from .blas import default_ldflags
    value, _ = default_ldflags()
    add_theano_flag(environ, 'blas.ldflags', value)
    return value


def pool_2d_adapter(input, ds, ignore_border=None, st=None, padding=(0, 0),
                    mode='max'):
    """``downsample.max_pool_2d`` (Theano < 0.9 API) on top of ``pool_2d``.

    Lasagne 0.1 calls it with ``ds``/``st``/``padding``; ``pool_2d`` takes
    ``ws``/``stride``/``pad``.  Modes are passed through unchanged.
    """
    from theano.tensor.signal.pool import pool_2d
    if ignore_border is None:
        ignore_border = False   # the old default, made explicit
    return pool_2d(input, ws=tuple(ds), ignore_border=ignore_border,
                   stride=None if st is None else tuple(st),
                   pad=tuple(padding), mode=mode)


class _DownsampleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Provides ``theano.tensor.signal.downsample`` only if Theano lacks it."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != DOWNSAMPLE_MODULE:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__doc__ = ('lasagne_tagger adapter: Theano >= 0.9 removed this '
                          'module; max_pool_2d forwards to pool.pool_2d.')
        module.max_pool_2d = pool_2d_adapter
        return module

    def exec_module(self, module):
        pass


def _patch_downsample():
    if any(isinstance(f, _DownsampleFinder) for f in sys.meta_path):
        return False
    # Appended last: every real finder is asked first, so a Theano that still
    # ships the module keeps its own.
    sys.meta_path.append(_DownsampleFinder())
    return True


def _patch_scan():
    if sys.version_info[:2] <= LAST_PYTHON_WITH_CYTHON_SCAN:
        return False
    if SCAN_EXT_MODULE in sys.modules:
        return False       # already loaded (or already blocked)
    sys.modules[SCAN_EXT_MODULE] = None
    return True


def hash_seed_varies(environ=None):
    """Whether Python's string hash differs from process to process (the
    ``PYTHONHASHSEED`` this interpreter started with is unset or
    ``random``)."""
    environ = os.environ if environ is None else environ
    return bool(sys.flags.hash_randomization) and \
        environ.get('PYTHONHASHSEED', '') in ('', 'random')


def stable_c_code_cache_version(original):
    """``COp.c_code_cache_version`` with a SHA-256 digest of the C code
    where Theano uses the salted ``hash()``; ``original`` is kept as
    ``__wrapped__``."""
    @functools.wraps(original)
    def c_code_cache_version(self):
        code = '\0'.join(self.func_codes).encode('utf-8')
        version = (int(hashlib.sha256(code).hexdigest()[:16], 16),)
        if hasattr(self, 'params_type'):
            version += (self.params_type.c_code_cache_version(),)
        return version
    c_code_cache_version.stable_cache_key = True
    return c_code_cache_version


def versioned_empty_props(original):
    """``CLinker.cmodule_key_`` that keeps modules of ops without
    ``__props__`` versioned; ``original`` is kept as ``__wrapped__``.

    Theano 1.0.5 appends each op's ``__props__`` to the key's version and
    treats any empty entry as "unversioned", so every op whose ``__props__``
    is ``()`` (``Alloc``, ``Dot22``, ``Softmax``, ``SoftmaxWithBias``,
    ``ScalarFromTensor``, the MRG ``DotModulo``...) makes its module
    uncacheable: recompiled in every process, although the op's own C code
    is versioned.  When the original returns an unversioned key we rebuild
    the version in Theano's order with ``('__props__',) + props`` in place
    of the props, and keep it unversioned if anything else is unversioned.
    """
    @functools.wraps(original)
    def cmodule_key_(self, fgraph, no_recycling, *args, **kwargs):
        key = original(self, fgraph, no_recycling, *args, **kwargs)
        if key is None or key[0]:
            return key
        version = []
        for node in self.schedule(fgraph):
            if hasattr(node.op, 'c_code_cache_version_apply'):
                version.append(node.op.c_code_cache_version_apply(node))
            if hasattr(node.op, '__props__'):
                version.append(('__props__',) + tuple(node.op.__props__))
            for var in list(node.inputs) + list(node.outputs):
                version.append(var.type.c_code_cache_version())
        if version and all(version):
            return tuple(version), key[1]
        return key
    cmodule_key_.stable_cache_key = True
    return cmodule_key_


def wrap_once(owner, name, wrapper, marker, static=False):
    """Replace ``owner.name`` by ``wrapper(original)`` unless it already
    carries the attribute ``marker`` (so twice is once); ``static`` for a
    staticmethod.  Returns whether it changed anything."""
    current = getattr(owner, name)
    if getattr(current, marker, False):
        return False
    new = wrapper(current)
    setattr(new, marker, True)
    setattr(owner, name, staticmethod(new) if static else new)
    return True


def patch_after_import(module_name, owner, name, wrapper, marker,
                       static=False):
    """:func:`wrap_once` on ``module.owner.name`` now if the module is
    imported, else right after its first import."""
    return _after_import(module_name, lambda module: wrap_once(
        getattr(module, owner), name, wrapper, marker, static))


def patched(module_name, owner, name, marker):
    """Whether :func:`patch_after_import` took effect (or waits for the
    module's import)."""
    if module_name in sys.modules:
        return getattr(getattr(getattr(sys.modules[module_name], owner),
                               name), marker, False)
    return _hook_installed(module_name)


# module -> (class name, method, wrapper) of the cache-key fixes
CACHE_KEY_FIXES = {
    'theano.gof.op': ('COp', 'c_code_cache_version',
                      stable_c_code_cache_version),
    'theano.gof.cc': ('CLinker', 'cmodule_key_', versioned_empty_props),
}


class _PostImportHook(importlib.abc.MetaPathFinder):
    """Runs ``callback(module)`` right after the module ``name`` has been
    executed by its own loader (found by the normal path finder)."""

    def __init__(self, name, callback):
        self.name = name
        self.callback = callback

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _CallbackLoader(spec.loader, self.callback)
        return spec


class _CallbackLoader(importlib.abc.Loader):
    def __init__(self, loader, callback):
        self.loader = loader
        self.callback = callback

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        self.callback(module)


def _hook_installed(name):
    return any(isinstance(f, _PostImportHook) and f.name == name
               for f in sys.meta_path)


def _after_import(name, callback):
    """``callback(module)`` now if ``name`` is imported, else right after
    its first import; False if that was already arranged."""
    if name in sys.modules:
        return callback(sys.modules[name])
    if _hook_installed(name):
        return False
    # First: the normal finders would load the module without the hook.
    sys.meta_path.insert(0, _PostImportHook(name, callback))
    return True


def _cache_key_fix(module_name):
    cls, method, wrapper = CACHE_KEY_FIXES[module_name]
    return patch_after_import(module_name, cls, method, wrapper,
                              'stable_cache_key')


def _cache_key_fixed(module_name):
    cls, method, _ = CACHE_KEY_FIXES[module_name]
    return patched(module_name, cls, method, 'stable_cache_key')


def _patch_cache_key(environ):
    changed = _cache_key_fix('theano.gof.cc')
    if hash_seed_varies(environ):
        changed = _cache_key_fix('theano.gof.op') or changed
    return changed


def applied():
    """What is in effect: the ``blas.ldflags`` value (None if unset) and
    whether the ``downsample``, ``scan`` and ``cache_key`` patches are
    installed."""
    return {
        'cache_key': {name: _cache_key_fixed(name)
                      for name in sorted(CACHE_KEY_FIXES)},
        'blas': user_blas_ldflags(),
        'downsample': any(isinstance(f, _DownsampleFinder)
                          for f in sys.meta_path),
        'scan': SCAN_EXT_MODULE in sys.modules
                and sys.modules[SCAN_EXT_MODULE] is None,
    }


def apply(environ=None):
    """Apply every needed patch; safe to call any number of times.

    Returns a dict saying what this call changed: ``blas`` holds the
    ldflags value it set (or None), ``downsample``, ``scan`` and
    ``cache_key`` booleans, ``dnn`` the ``dnn.enabled`` value it set (or
    None).
    Does nothing when ``LASAGNE_TAGGER_NO_COMPAT`` is set to a non-empty
    value other than ``0``.
    """
    environ = os.environ if environ is None else environ
    if environ.get(DISABLE_ENV, '') not in ('', '0'):
        return {'blas': None, 'downsample': False, 'scan': False,
                'cache_key': False, 'dnn': None}
    return {'blas': _patch_blas(environ),
            'downsample': _patch_downsample(),
            'scan': _patch_scan(),
            'cache_key': _patch_cache_key(environ),
            'dnn': _patch_dnn(environ)}


def _patch_dnn(environ):
    if 'theano' in sys.modules:
        return None
    from .gpu import configure
    return configure(environ)[0]
