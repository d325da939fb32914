"""setup.py, requirements.txt and environment.yml agree, for each Python the
project runs on (3.11: the pip install; 3.10: the conda GPU environment)."""
import ast
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
# conda-forge's names for PyPI distributions, where they differ
CONDA_NAMES = {'matplotlib': 'matplotlib-base', 'theano': 'theano'}


def _setup_lists():
    tree = ast.parse((ROOT / 'setup.py').read_text())
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                values[node.targets[0].id] = node.value
    return values


def _runtime_specs():
    """setup.py's RUNTIME as strings (its PY311/PY310 marker suffixes
    substituted)."""
    values = _setup_lists()
    out = []
    for item in values['RUNTIME'].elts:
        if isinstance(item, ast.BinOp):
            out.append(ast.literal_eval(item.left)
                       + values[item.right.id])
        else:
            out.append(ast.literal_eval(item))
    return out


def _pins(specs, python):
    """{name (lower case): version} of the specs that apply on ``python``."""
    env = {'python_version': python, 'python_full_version': python + '.0'}
    pins = {}
    for spec in specs:
        req = Requirement(spec)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        (clause,) = req.specifier
        assert clause.operator == '==', spec
        pins[req.name.lower()] = clause.version
    return pins


def _environment_deps():
    """(name, version) pairs from environment.yml, conda and pip sections."""
    deps = {}
    for line in (ROOT / 'environment.yml').read_text().splitlines():
        line = line.split('#', 1)[0].strip()
        m = re.match(r'^-\s+([A-Za-z0-9_.-]+)\s*(==|=)\s*([0-9][^\s]*)$', line)
        if m:
            deps[m.group(1).lower()] = m.group(3)
    return deps


def test_environment_names_every_runtime_dependency_at_its_version():
    env = _environment_deps()
    runtime = _pins(_runtime_specs(), '3.10')
    assert len(runtime) >= 9
    for name, version in runtime.items():
        name = CONDA_NAMES.get(name, name)
        assert name in env, '%s missing from environment.yml' % name
        assert env[name] == version, (name, env[name], version)


def test_environment_has_the_gpu_backend_on_python_310_without_cudnn():
    env = _environment_deps()
    assert env['python'] == '3.10'
    assert env['pygpu'] == env['libgpuarray'] == '0.7.6'
    assert env['theano'] == '1.0.5' and env['cudatoolkit'] == '11.8.0'
    assert not any('cudnn' in name for name in env)


@pytest.mark.parametrize('python', ['3.10', '3.11'])
def test_requirements_pin_the_same_versions(python):
    lines = [l for l in (ROOT / 'requirements.txt').read_text().splitlines()
             if l.strip() and not l.startswith('#')]
    pinned = _pins(lines, python)
    runtime = _pins(_runtime_specs(), python)
    for name, version in runtime.items():
        assert pinned.get(name) == version, (python, name)
    # the test extra's pytest (setup.py) at the same version
    assert "'pytest==%s' + PY3%s" % (pinned['pytest'], python[2:]) in \
        (ROOT / 'setup.py').read_text()


def test_python_requires_covers_both():
    text = (ROOT / 'setup.py').read_text()
    assert "python_requires='>=3.10,<3.12'" in text
