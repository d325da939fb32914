"""Compiled Theano functions cached across processes: warm starts skip the
graph optimizer.

Theano's own compile cache keeps the C *modules* of a function, but every
process still runs the graph optimizer again (about 25 s for GoogLeNet's
fine-tuning functions on 2 cores, 5 s for its forward pass) before it links
the optimized graph to those modules.  :func:`function` is ``theano.function``
that also stores the optimized graph (Theano's ``FunctionMaker``, the object
Theano itself pickles when a function is pickled) in
``<theano compiledir>/lasagne_tagger_functions/<key>.pkl``; a later process
that builds the same graph loads it and only links it (C modules from
Theano's cache).

The key is a SHA-256 of everything the optimized graph depends on: the
structure of the unoptimized graph (every op with its parameters, every
constant's value, every variable's type, the inputs' names, scan inner
graphs included), the types and shapes of its shared variables, the updates
(explicit and the ``default_update`` ones Theano adds), every Theano
configuration value, the Theano, Lasagne and NumPy versions, the source of
this package, and the ``theano.function`` options.  Anything else changes
the key and compiles afresh.  Only plain calls are cached (Variables in and
out, options with plain values); ``givens``, ``no_default_updates``,
``In``/``Out`` wrappers or a ``Mode`` object compile as ``theano.function``.

Shared variables (weights, optimizer state, random-stream states, learning
rates) are *not* stored: the file refers to them by their position in the
graph, and on loading they are the caller's own objects, so updates go to
the caller's variables exactly as with ``theano.function``.  (A loaded
function's ``get_shared()`` lists clones sharing those variables' storage,
and its ``copy(swap=...)`` does not know the caller's variables; nothing in
this package uses either.)

# note: these files are pickles, which can run code when loaded.  They live
# in Theano's compiledir next to Theano's own ``key.pkl`` files, which Theano
# unpickles on every start, so they add no new trust boundary: anyone who can
# write there can already run code in every Theano process.  Our checkpoints
# and features stay name-keyed .npz/HDF5 (never pickles).

Set ``LASAGNE_TAGGER_NO_FUNCTION_CACHE=1`` to compile every function
afresh; a file that fails to load is reported in one line and replaced.
"""
import copyreg
import functools
import hashlib
import os
import pickle
import sys
import time
import warnings

from . import allocator, blas, timing

__all__ = ['function', 'graph_key', 'cache_dir', 'DISABLE_ENV']

DISABLE_ENV = 'LASAGNE_TAGGER_NO_FUNCTION_CACHE'
# Bump when the file layout or the key's contents change.
FORMAT_VERSION = 3
# Pickling a deep graph recurses once per node level (GoogLeNet's training
# graph needs about 20,000 frames).
RECURSION_LIMIT = 100000
# ... and a C stack for it (the thread that pickles gets its own).
STACK_BYTES = 512 * 1024 * 1024
# The cache keeps this many files (a few MB each for GoogLeNet), dropping
# the least recently used.
MAX_FILES = 256


def cache_dir():
    """Where the optimized functions are stored (inside Theano's
    compiledir, so they are cleared with it)."""
    import theano
    return os.path.join(theano.config.compiledir, 'lasagne_tagger_functions')


@functools.lru_cache(maxsize=None)
def _package_digest():
    """SHA-256 of this package's Python sources (read once a process)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if name.endswith('.py'):
                path = os.path.join(dirpath, name)
                digest.update(os.path.relpath(path, root).encode())
                with open(path, 'rb') as fh:
                    digest.update(fh.read())
    return digest.hexdigest()


def _config_items():
    import theano
    import theano.configparser as configparser
    return [(p.fullname, repr(p.__get__(theano.config, None)))
            for p in configparser._config_var_list]


def _shared_variables(variables):
    """Every shared variable the graph of ``variables`` reads, in graph
    order (deterministic for a deterministic graph build)."""
    from theano.compile import SharedVariable
    from theano.gof import graph
    return [v for v in graph.inputs(variables)
            if isinstance(v, SharedVariable)]


def _describe_value(value):
    """A description of an op parameter that is the same in every process
    (no memory addresses): ops by class and ``__props__``, containers item
    by item, arrays by digest."""
    import numpy as np
    cls = type(value)
    if isinstance(value, (str, bytes, int, float, bool, type(None))):
        return repr(value)
    if isinstance(value, np.ndarray):
        return 'array%s%s%s' % (value.dtype, value.shape, hashlib.sha256(
            np.ascontiguousarray(value).tobytes()).hexdigest())
    if isinstance(value, dict) or hasattr(value, 'items'):
        items = sorted((repr(k), _describe_value(v))
                       for k, v in value.items())
        return '{%s}' % ','.join('%s:%s' % kv for kv in items)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_describe_value(v) for v in value]
        if isinstance(value, (set, frozenset)):
            items.sort()
        return '%s(%s)' % (cls.__name__, ','.join(items))
    name = '%s.%s' % (cls.__module__, cls.__qualname__)
    props = getattr(value, '__props__', None)
    if props:
        return '%s%s' % (name, ''.join(
            '[%s=%s]' % (p, _describe_value(getattr(value, p)))
            for p in props))
    # note: a description holding an address differs in every process:
    # the key then never matches, and the function is compiled each time.
    return '%s<%s>' % (name, value)


def _op_description(op, describe_graph):
    """A process-independent description of ``op``: its class, its
    ``__props__`` (or its ``str``), and any inner graph (scan, OpFromGraph)."""
    parts = [_describe_value(op)]
    if hasattr(op, 'info'):
        parts.append(_describe_value(op.info))
    inner_in = getattr(op, 'inputs', None)
    inner_out = getattr(op, 'outputs', None)
    if isinstance(inner_in, list) and isinstance(inner_out, list):
        parts.append(describe_graph(inner_in, inner_out))
    return '|'.join(parts)


def _describe_graph(inputs, outputs, shared=None):
    """SHA-256 of the structure of the graph from ``inputs`` to
    ``outputs`` (every node's op and the identities of its inputs)."""
    import numpy as np
    from theano.gof import Constant, graph
    shared = shared or []
    names = {}
    for i, v in enumerate(inputs):
        names[v] = 'in%d:%s:%r' % (i, v.type, v.name)   # keyword calls
    for i, v in enumerate(shared):
        names.setdefault(v, 'sh%d:%s:%s' % (
            i, v.type, getattr(v.get_value(borrow=True), 'shape', ())))
    digest = hashlib.sha256()

    def name(v):
        if v not in names:
            if isinstance(v, Constant):
                data = getattr(v, 'data', None)
                arr = np.asarray(data)
                if arr.dtype.hasobject:     # None, slices: bytes are pointers
                    value = repr(data)
                else:
                    value = '%s%s%s' % (arr.dtype, arr.shape, hashlib.sha256(
                        arr.tobytes()).hexdigest())
                names[v] = 'c:%s:%s' % (v.type, value)
            else:                       # an input we were not told about
                names[v] = 'free%d:%s' % (len(names), v.type)
            digest.update(names[v].encode())
        return names[v]

    roots = list(inputs) + [v for v in graph.inputs(outputs)
                            if v not in names]
    for v in roots:
        name(v)
    for k, node in enumerate(graph.io_toposort(roots, outputs)):
        args = ','.join(name(v) for v in node.inputs)
        op = _op_description(node.op, _describe_graph)
        for j, out in enumerate(node.outputs):
            names[out] = 'n%d.%d:%s' % (k, j, out.type)
        digest.update(('%s(%s)->%s\n' % (op, args, ','.join(
            names[o] for o in node.outputs))).encode())
    digest.update(('out:' + ','.join(name(o) for o in outputs)).encode())
    return digest.hexdigest()


def graph_key(inputs, outputs, updates, shared, options):
    """The cache key of ``theano.function(inputs, outputs, updates=updates,
    **options)`` (see the module docstring for what it covers)."""
    import lasagne
    import numpy
    import theano
    update_pairs = list(updates)
    roots = list(outputs) + [new for _, new in update_pairs]
    parts = [
        'format %d' % FORMAT_VERSION,
        'theano %s lasagne %s numpy %s python %s' % (
            theano.__version__, lasagne.__version__, numpy.__version__,
            sys.version.split()[0]),
        'package ' + _package_digest(),
        'config ' + repr(_config_items()),
        'options ' + repr(sorted(options.items())),
        'graph ' + _describe_graph(list(inputs), roots, shared),
        'updates ' + repr([shared.index(old) for old, _ in update_pairs]),
    ]
    return hashlib.sha256('\n'.join(parts).encode()).hexdigest()


class _Pickler(pickle.Pickler):
    """Pickles a FunctionMaker with the shared variables (and their
    containers) replaced by their position in the graph."""

    def __init__(self, fh, shared):
        from theano.gof.fg import FunctionGraph
        from theano.gof.utils import scratchpad
        super().__init__(fh, protocol=pickle.HIGHEST_PROTOCOL)
        self._ids = {}
        for i, v in enumerate(shared):
            self._ids[id(v)] = ('shared', i)
            self._ids[id(v.container)] = ('container', i)
        # (a Pickler's own table replaces copyreg's: start from copyreg's)
        self.dispatch_table = dict(copyreg.dispatch_table)
        self.dispatch_table.update({scratchpad: _reduce_tag,
                                    FunctionGraph: _reduce_fgraph})

    def persistent_id(self, obj):
        return self._ids.get(id(obj))


def _reduce_tag(tag):
    """A variable's ``tag`` without ``trace`` (where the variable was
    created: for error messages only, and most of a pickled graph)."""
    state = {k: v for k, v in tag.__dict__.items() if k != 'trace'}
    return type(tag), (), state


class _Unpickler(pickle.Unpickler):
    def __init__(self, fh, shared):
        super().__init__(fh)
        self._shared = shared

    def persistent_load(self, pid):
        kind, index = pid
        variable = self._shared[index]
        return variable if kind == 'shared' else variable.container


class _deep_recursion(object):
    def __enter__(self):
        self.limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(self.limit, RECURSION_LIMIT))

    def __exit__(self, *exc):
        sys.setrecursionlimit(self.limit)


# note: features the optimizer attached to the graph (shape inference,
# merging); linking does not use them and they are half of a pickled graph.
OPTIMIZER_ONLY_FEATURES = ('ShapeFeature', 'MergeFeature')


def _reduce_fgraph(fgraph):
    """A FunctionGraph without :data:`OPTIMIZER_ONLY_FEATURES`."""
    state = fgraph.__getstate__()
    state['_features'] = [f for f in state['_features'] if type(f).__name__
                          not in OPTIMIZER_ONLY_FEATURES]
    for name in ('shape_feature', 'merge_feature'):
        state.pop(name, None)
    return _new_object, (type(fgraph),), state


def _new_object(cls):
    return cls.__new__(cls)


def _maker_arguments(maker):
    """``FunctionMaker`` arguments that rebuild ``maker`` from its optimized
    graph alone (as ``Function.copy`` does): inputs, outputs and updates
    point into ``maker.fgraph``, so the unoptimized graph is not stored."""
    import copy
    fgraph = maker.fgraph
    inputs, next_update = [], len(maker.outputs)
    for spec, variable in zip(maker.inputs, fgraph.inputs):
        spec = copy.copy(spec)
        spec.variable = variable
        if spec.update is not None:
            spec.update = fgraph.outputs[next_update]
            next_update += 1
        inputs.append(spec)
    outputs = []
    for spec, variable in zip(maker.outputs, fgraph.outputs):
        spec = copy.copy(spec)
        spec.variable = variable
        outputs.append(spec)
    return dict(inputs=inputs,
                outputs=outputs[0] if maker.unpack_single else outputs,
                fgraph=fgraph, mode=maker.mode,
                accept_inplace=maker.accept_inplace,
                function_builder=maker.function_builder,
                # note: checked when first compiled; the optimizer may
                # have removed an input's uses since (Function.copy too)
                on_unused_input='ignore',
                output_keys=maker.output_keys, name=maker.name)


def _in_big_stack(fn):
    """``fn()`` in a thread with a :data:`STACK_BYTES` C stack: the C
    pickler recurses on the C stack, once per graph level, and overflows
    the main thread's (a crash, not an exception) on deep graphs."""
    import threading
    result = {}

    def target():
        try:
            with _deep_recursion():
                result['value'] = fn()
        except BaseException as exc:       # re-raised in the caller
            result['error'] = exc
    previous = threading.stack_size(STACK_BYTES)
    try:
        thread = threading.Thread(target=target, name='function_cache')
        thread.start()
    finally:
        threading.stack_size(previous)
    thread.join()
    if 'error' in result:
        raise result['error']
    return result['value']


def _load(path, shared):
    import theano
    from theano.compile.function_module import FunctionMaker
    with open(path, 'rb') as fh:
        arguments = _in_big_stack(lambda: _Unpickler(fh, shared).load())
    containers = {id(v.container) for v in shared}
    if any(spec.implicit and id(spec.value) not in containers
           for spec in arguments['inputs']):
        raise ValueError("its shared variables are not the graph's")
    maker = FunctionMaker(**arguments)
    with theano.change_flags(compute_test_value='off'):
        return maker.create([getattr(i, 'value', None)
                             for i in maker.inputs])


def _save(path, fn, shared):
    from ..atomic import atomic_path
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    arguments = _maker_arguments(fn.maker)
    with atomic_path(path, what='cache this function') as tmp:
        with open(tmp, 'wb') as fh:
            _in_big_stack(lambda: _Pickler(fh, shared).dump(arguments))
    _prune(directory, MAX_FILES)


def _prune(directory, keep):
    """Remove all but the ``keep`` most recently used cache files."""
    entries = []
    for name in os.listdir(directory):
        if name.endswith('.pkl'):
            path = os.path.join(directory, name)
            try:
                entries.append((os.stat(path).st_mtime, path))
            except OSError:
                pass                  # removed by another process
    for _, path in sorted(entries, reverse=True)[keep:]:
        try:
            os.remove(path)
        except OSError:
            pass


def function(inputs, outputs, updates=None, **options):
    """``theano.function(inputs, outputs, updates=updates, **options)``,
    loaded from the cache when the same graph was compiled before.

    Parameters
    ----------
    inputs : list of Variable
        Explicit inputs (plain variables, as ``theano.function`` takes).
    outputs : Variable or list of Variable
    updates : OrderedDict or list of pairs, optional
        ``shared variable -> new value``.
    **options
        Other ``theano.function`` keywords (hashable values).

    Returns
    -------
    theano.compile.Function
        With the attribute ``from_cache`` (bool) telling which way it came.

    Notes
    -----
    Checks first that the BLAS links (:func:`lasagne_tagger.runtime.blas.ensure_usable`,
    once a process) and applies :func:`lasagne_tagger.runtime.allocator.tune`: the
    package's ``malloc`` settings take effect once it compiles a function.
    """
    start = time.time()
    fn = _function(inputs, outputs, updates, options)
    timing.record_function(time.time() - start, fn.from_cache)
    return fn


def _function(inputs, outputs, updates, options):
    import theano
    blas.ensure_usable(theano.config.blas.ldflags)
    allocator.tune()
    pairs = list(updates.items() if hasattr(updates, 'items')
                 else updates or [])
    single = not isinstance(outputs, (list, tuple))
    outs = [outputs] if single else list(outputs)
    if (os.environ.get(DISABLE_ENV, '') not in ('', '0')
            or not _cacheable(inputs, outs, pairs, options)):
        fn = theano.function(inputs, outputs, updates=pairs, **options)
        fn.from_cache = False
        return fn
    implicit, shared = _with_default_updates(outs, pairs)
    key = graph_key(inputs, outs, pairs + implicit, shared,
                    dict(options, single_output=single))
    path = os.path.join(cache_dir(), key + '.pkl')
    if os.path.exists(path):
        try:
            fn = _load(path, shared)
        except Exception as exc:     # stale or broken file: compile afresh
            warnings.warn('%s: cannot use this cached function (%s: %s); '
                          'compiling it again' % (
                              path, type(exc).__name__, exc))
        else:
            fn.from_cache = True
            try:
                os.utime(path)        # recently used: kept by _prune
            except OSError:
                pass
            return fn
    fn = theano.function(inputs, outputs, updates=pairs, **options)
    fn.from_cache = False
    try:
        _save(path, fn, shared)
    except Exception as exc:          # a cache that cannot be written
        warnings.warn('%s: cannot cache this function (%s: %s)' % (
            path, type(exc).__name__, exc))
    return fn


def _cacheable(inputs, outputs, pairs, options):
    """Only plain graphs are cached: Variables in and out, shared variables
    updated, options with plain values (``givens``, ``no_default_updates``,
    ``In``/``Out`` wrappers and Mode objects compile uncached)."""
    from theano.compile import SharedVariable
    from theano.gof import Variable
    plain = (str, int, float, bool, type(None))
    return (all(type(v) is not SharedVariable and isinstance(v, Variable)
                for v in inputs)
            and all(isinstance(v, Variable) for v in outputs)
            and all(isinstance(old, SharedVariable)
                    and isinstance(new, Variable) for old, new in pairs)
            and all(isinstance(v, plain) for v in options.values()))


def _with_default_updates(outputs, pairs):
    """The ``default_update`` pairs ``theano.function`` adds by itself (for
    every shared variable the graph reads that has one and is not updated
    explicitly, as ``pfunc`` does), and every shared variable of the graph
    and of all its updates, in graph order."""
    explicit = {id(old) for old, _ in pairs}
    roots = outputs + [new for _, new in pairs] + [old for old, _ in pairs]
    implicit = []
    while True:
        shared = _shared_variables(roots + [new for _, new in implicit])
        more = [(v, v.default_update) for v in shared
                if getattr(v, 'default_update', None) is not None
                and id(v) not in explicit]
        if len(more) == len(implicit):
            return implicit, shared
        implicit = more
