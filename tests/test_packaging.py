"""setup.py, requirements.txt and environment.yml agree."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup_runtime():
    tree = ast.parse((ROOT / 'setup.py').read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
                getattr(t, 'id', None) == 'RUNTIME' for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError('setup.py has no RUNTIME list')


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
    runtime = _setup_runtime()
    assert len(runtime) >= 6
    for spec in runtime:
        name, version = spec.split('==')
        assert name.lower() in env, '%s missing from environment.yml' % name
        assert env[name.lower()] == version, (name, env[name.lower()], version)


def test_environment_has_the_gpu_backend_and_python_311():
    env = _environment_deps()
    assert env['python'] == '3.11'
    assert 'pygpu' in env and 'libgpuarray' in env


def test_requirements_pin_the_same_versions():
    pins = dict(line.split('==') for line in
                (ROOT / 'requirements.txt').read_text().splitlines()
                if '==' in line and not line.startswith('#'))
    for spec in _setup_runtime():
        name, version = spec.split('==')
        assert pins.get(name) == version, name
