"""Compile the C modules of a Theano function on every core at once.

Theano 1.0.5 makes a function's thunks one node after another, and each
node whose C module is not in the compile cache waits for its own ``g++``
run (0.5-3 s each: a cold GoogLeNet training function has a few hundred).
:func:`precompile` runs first, on the same nodes: it works out each node's
module key as Theano's ``Op.make_c_thunk`` does, and for every versioned
key the cache lacks, runs the compilers side by side in threads (``g++``
is a child process, so the threads run in parallel), then loads each
module and adds it to Theano's module cache under its compile lock, as
``ModuleCache.module_from_key`` would.  Theano's own loop then finds every
module in the cache.  The modules, their keys and their files are Theano's
own: only the order of the work changes.

Best effort by design: a node whose key cannot be computed, an
unversioned key (Theano does not share those between processes), or a
compile that fails is left to Theano's own loop, which compiles it and
reports any error exactly as without this module.

:func:`install` wraps ``theano.gof.vm.VM_Linker.make_all`` (the default
``cvm`` linker) right after Theano imports it; :mod:`lasagne_tagger.
theano_defaults` calls it on machines with two cores or more, unless
``LASAGNE_TAGGER_NO_PARALLEL_COMPILE`` (or ``LASAGNE_TAGGER_NO_DEFAULTS``)
is set.  Measured: ``benchmarks/results/compile.json``.
"""
import concurrent.futures
import functools
import os
import shutil

__all__ = ['install', 'installed', 'precompile', 'DISABLE_ENV']

DISABLE_ENV = 'LASAGNE_TAGGER_NO_PARALLEL_COMPILE'


def _workers():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _linker_for(node):
    """The one-node ``CLinker`` of ``node`` as ``Op.make_c_thunk`` builds
    it (the VM passes no ``no_recycling``), or None if the node makes its
    thunk another way."""
    import theano
    from theano.gof import FunctionGraph
    from theano.gof.cc import CLinker
    from theano.gof.op import Op
    op = node.op
    if type(op).make_thunk is not Op.make_thunk or not hasattr(op,
                                                               'c_code'):
        return None        # Scan, IfElse...: their own thunks
    if any(getattr(v.type, 'dtype', '') == 'float16'
           for v in node.inputs + node.outputs) and not getattr(
               op, '_f16_ok', False):
        return None
    op.prepare_node(node, storage_map=None, compute_map=None, impl='c')
    fgraph = FunctionGraph(node.inputs, node.outputs)
    return CLinker().accept(fgraph, no_recycling=[])


def _missing(nodes, cache):
    """``[(key, linker, source, module hash)]`` for the versioned modules of
    ``nodes`` that the cache lacks, each key once."""
    from theano.gof.cmodule import get_module_hash
    todo, seen = [], set()
    for node in nodes:
        try:
            linker = _linker_for(node)
            if linker is None:
                continue
            key = linker.cmodule_key()
        except Exception:          # no C code, or not ours to judge
            continue
        if not key or not key[0] or key in seen:
            continue
        seen.add(key)
        if cache._get_from_key(key) is not None:
            continue
        try:
            # (an op may have a key but no C code here, e.g. Dot22 with an
            # empty blas.ldflags: Theano's loop then uses its Python code)
            source = linker.get_src_code()
        except Exception:
            continue
        module_hash = get_module_hash(source, key)
        if module_hash in cache.module_hash_to_key_data:
            continue               # Theano maps the key to it by itself
        todo.append((key, linker, source, module_hash))
    return todo


def _build(cache, linker, source):
    """Run the compiler for one module into a fresh folder of the cache;
    returns the library's path (nothing is loaded)."""
    from theano.gof.cmodule import dlimport_workdir
    location = dlimport_workdir(cache.dirname)
    module = linker.get_dynamic_module()
    try:
        linker.c_compiler().compile_str(
            module_name=module.code_hash, src_code=source, location=location,
            include_dirs=linker.header_dirs(), lib_dirs=linker.lib_dirs(),
            libs=linker.libraries(), preargs=linker.compile_args(),
            py_module=False)
    except BaseException:
        shutil.rmtree(location, ignore_errors=True)
        raise
    return location, module.code_hash


def precompile(nodes, workers=None):
    """Compile the missing C modules of ``nodes`` side by side.

    Parameters
    ----------
    nodes : iterable of Apply
        A function graph's nodes (any order).
    workers : int, optional
        Compilers at once (default: the CPUs this process may use).

    Returns
    -------
    int
        How many modules were compiled and added to the cache.
    """
    from theano.gof import compilelock
    from theano.gof.cc import get_module_cache
    from theano.gof.cmodule import dlimport, get_lib_extension
    cache = get_module_cache()
    todo = _missing(list(nodes), cache)
    workers = workers or _workers()
    if len(todo) < 2 or workers < 2:
        return 0                   # nothing to gain over Theano's loop
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(_build, cache, linker, source)
                   for _, linker, source, _ in todo]
        built = []
        for (key, _, _, module_hash), future in zip(todo, futures):
            try:
                built.append((key, module_hash) + future.result())
            except Exception:      # Theano's own loop will say why
                continue
    added = 0
    with compilelock.lock_ctx():
        cache.refresh(cleanup=False)   # what other processes added
        for key, module_hash, location, name in built:
            if (cache._get_from_key(key) is not None
                    or module_hash in cache.module_hash_to_key_data):
                shutil.rmtree(location, ignore_errors=True)
                continue
            open(os.path.join(location, '__init__.py'), 'w').close()
            module = dlimport(os.path.join(location, '%s.%s' % (
                name, get_lib_extension())))
            cache.module_from_name[module.__file__] = module
            cache.module_hash_to_key_data[module_hash] = \
                cache._add_to_cache(module, key, module_hash)
            cache.stats[2] += 1
            added += 1
    return added


def _parallel_make_all(original):
    @functools.wraps(original)
    def make_all(self, *args, **kwargs):
        import theano
        if theano.config.cxx and self.c_thunks is not False:
            precompile(self.fgraph.apply_nodes)
        return original(self, *args, **kwargs)
    return make_all


def install():
    """Wrap ``VM_Linker.make_all`` now if Theano is imported, else right
    after ``theano.gof.vm`` is first imported; False if already done."""
    from .compat import patch_after_import
    return patch_after_import('theano.gof.vm', 'VM_Linker', 'make_all',
                              _parallel_make_all, 'parallel_compile')


def installed():
    """Whether the wrapper is in place (or waiting for Theano's import)."""
    from .compat import patched
    return patched('theano.gof.vm', 'VM_Linker', 'make_all',
                   'parallel_compile')
