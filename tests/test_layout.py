"""The package's layout: imports point down the map of the package
docstring, and importing the NumPy-only parts prepares nothing of Theano."""
import ast
import json
import os

import pytest

import lasagne_tagger
from python_child import run_python

PACKAGE = os.path.dirname(os.path.abspath(lasagne_tagger.__file__))

# The map of lasagne_tagger/__init__.py, lowest first: a module may import
# from its own layer and the layers before it, never from a later one.
LAYERS = [
    {'errors', 'config', 'atomic', 'resources', '__init__'},
    {'runtime'},
    {'ops'},
    {'data'},
    {'model'},
    {'evaluation'},
    {'training'},
    {'tagging'},
    {'reporting'},
    {'ports'},
    {'demo', 'cli'},
]

# Modules that use neither Theano nor Lasagne (the port's environment has
# neither): importing them must leave Theano's flags and Python's import
# machinery as they were.
NUMPY_ONLY = ['lasagne_tagger', 'lasagne_tagger.errors',
              'lasagne_tagger.config', 'lasagne_tagger.atomic',
              'lasagne_tagger.tagging.vocabulary',
              'lasagne_tagger.tagging.decode',
              'lasagne_tagger.evaluation.metrics',
              'lasagne_tagger.data.datasets', 'lasagne_tagger.data.store',
              'lasagne_tagger.data.preprocess',
              'lasagne_tagger.data.composites',
              'lasagne_tagger.model.caffemodel',
              'lasagne_tagger.ports.bundle', 'lasagne_tagger.ports.torch_port']


def _layer(top):
    for k, names in enumerate(LAYERS):
        if top in names:
            return k
    raise AssertionError('%s is not on the map of lasagne_tagger/__init__.py'
                         % top)


def _modules():
    for dirpath, dirnames, filenames in os.walk(PACKAGE):
        dirnames[:] = [d for d in dirnames if d != '__pycache__']
        for name in filenames:
            if name.endswith('.py'):
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, PACKAGE)[:-3].split(os.sep)
                yield path, rel


def _imported_tops(path, rel):
    """The top-level names (subpackage or module) that a module imports
    from the package, with their line numbers."""
    tree = ast.parse(open(path, encoding='utf-8').read(), path)
    package = rel[:-1]      # the package a relative import starts from
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                parts = base + (node.module.split('.') if node.module else [])
                if parts:
                    yield parts[0], node.lineno
                else:   # from .. import x: x is the top-level name
                    for alias in node.names:
                        yield alias.name, node.lineno
            elif node.module and node.module.split('.')[0] == 'lasagne_tagger':
                parts = node.module.split('.')[1:]
                if parts:
                    yield parts[0], node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split('.')
                if parts[0] == 'lasagne_tagger' and len(parts) > 1:
                    yield parts[1], node.lineno


def test_every_import_points_down_the_map():
    seen = 0
    upward = []
    for path, rel in _modules():
        own = _layer(rel[0] if len(rel) > 1 else rel[0])
        for top, line in _imported_tops(path, rel):
            seen += 1
            if top == '__version__':
                continue
            if _layer(top) > own:
                upward.append('%s:%d imports %s' % (
                    os.path.relpath(path, PACKAGE), line, top))
    assert seen > 200          # the walk found the package's imports
    assert not upward, upward


def test_the_checker_sees_an_upward_import(tmp_path):
    # the check above can fail: a data module importing the model is caught
    path = tmp_path / 'fake.py'
    path.write_text('from ..model import googlenet\nfrom . import store\n')
    tops = list(_imported_tops(str(path), ['data', 'fake']))
    assert tops == [('model', 1), ('data', 2)]
    assert _layer('model') > _layer('data')


def test_every_subpackage_and_module_is_on_the_map():
    tops = {rel[0] for _, rel in _modules()}
    for top in tops:
        _layer(top)
    mapped = set().union(*LAYERS)
    assert mapped - tops == set(), 'on the map but not in the package'


def _theano_imports(tree):
    """(line, prepared) for each import of theano or lasagne in a module:
    prepared when the entry point was imported before it, at module level
    or earlier in the same function."""
    def is_entry(node):
        return (isinstance(node, ast.ImportFrom)
                and any(a.name == '_theano' for a in node.names)
                or isinstance(node, ast.Import)
                and any(a.name.endswith('runtime._theano')
                        for a in node.names))

    def is_theano(node):
        names = ([node.module or ''] if isinstance(node, ast.ImportFrom)
                 and not node.level else
                 [a.name for a in node.names] if isinstance(node, ast.Import)
                 else [])
        return any(n.split('.')[0] in ('theano', 'lasagne') for n in names)

    module_level = any(is_entry(n) for n in tree.body)
    found = []

    def visit(body, prepared):
        for node in body:
            if is_entry(node):
                prepared = True
            elif is_theano(node):
                found.append((node.lineno, prepared))
            for field in ('body', 'orelse', 'finalbody', 'handlers'):
                inner = getattr(node, field, None)
                if isinstance(inner, list) and inner and \
                        isinstance(inner[0], ast.AST):
                    visit(inner, prepared)
    visit(tree.body, module_level)
    return found


def test_every_theano_import_goes_through_the_entry_point():
    unprepared = []
    for path, rel in _modules():
        if rel[0] == 'runtime':      # the entry point's own layer
            continue
        tree = ast.parse(open(path, encoding='utf-8').read(), path)
        unprepared += ['%s:%d' % (os.path.relpath(path, PACKAGE), line)
                       for line, ok in _theano_imports(tree) if not ok]
    assert not unprepared, unprepared


def test_the_entry_point_check_can_fail():
    bad = ast.parse('def f():\n    import lasagne\n')
    good = ast.parse('def f():\n    from ..runtime import _theano\n'
                     '    import lasagne\n')
    assert _theano_imports(bad) == [(2, False)]
    assert _theano_imports(good) == [(3, True)]


CHILD = r'''
import json, os, sys
before = (os.environ.get('THEANO_FLAGS'), len(sys.meta_path),
          os.environ.get('GOMP_SPINCOUNT'))
import importlib
for name in %r:
    importlib.import_module(name)
after = (os.environ.get('THEANO_FLAGS'), len(sys.meta_path),
         os.environ.get('GOMP_SPINCOUNT'))
print(json.dumps({'theano': 'theano' in sys.modules,
                  'lasagne': 'lasagne' in sys.modules,
                  'same': before == after, 'before': before,
                  'after': after}))
'''


def test_numpy_only_modules_prepare_nothing():
    out = run_python(CHILD % (NUMPY_ONLY,))
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout)
    assert not got['theano'] and not got['lasagne'], got
    assert got['same'], got


@pytest.mark.parametrize('module', ['lasagne_tagger.model.googlenet',
                                    'lasagne_tagger.training.finetune',
                                    'lasagne_tagger.ops.conv_op'])
def test_theano_modules_prepare_theano_through_the_entry_point(module):
    # the same child, importing a Theano module and then Theano: the entry
    # point set the flags (the BLAS from PyPI) before Theano read them
    code = CHILD % ([module],) + r'''
import theano
print(json.dumps({'blas': theano.config.blas.ldflags}))
'''
    out = run_python(code)
    assert out.returncode == 0, out.stderr[-2000:]
    first, second = [json.loads(l) for l in out.stdout.splitlines()[-2:]]
    assert not first['same'], first
    assert 'scipy_openblas' in second['blas'], second
