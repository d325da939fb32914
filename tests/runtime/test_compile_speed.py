"""Faster cold compiles: a function's C modules compiled side by side
(parallel_compile) and against a precompiled header (precompiled_header),
with the same modules, keys and results as Theano's own loop."""
import os
import subprocess
import sys
import textwrap

import pytest

from lasagne_tagger.runtime import parallel_compile, precompiled_header

pytestmark = pytest.mark.slow   # cold compiles in fresh processes

# A graph with several distinct C modules (fused element-wise kernels, a
# reduction, a GEMM), each a cold compile in a fresh compiledir.
GRAPH = r'''
import json, os, sys
import numpy as np
import lasagne_tagger.runtime._theano, theano, theano.tensor as T
from lasagne_tagger.runtime import parallel_compile, precompiled_header
added = []
real = parallel_compile.precompile
def counting(nodes, workers=None):
    added.append(real(nodes, workers))
    return added[-1]
parallel_compile.precompile = counting
x = T.matrix('x'); y = T.matrix('y')
outs = [T.tanh(x) * 3 + 1, (x ** 2).sum(axis=1), T.dot(x, y.T),
        T.nnet.sigmoid(x - y) * y, T.maximum(x, 0.5) / (1 + abs(y))]
f = theano.function([x, y], outs)
rng = np.random.RandomState(0)
a, b = rng.rand(4, 3), rng.rand(4, 3)
values = [v.tolist() for v in f(a, b)]
g = theano.function([x, y], outs)       # the same modules: all cached
print(json.dumps(dict(
    added=added, values=values,
    parallel=bool(parallel_compile.installed()),
    pch=bool(precompiled_header.installed()),
    compiledir=theano.config.compiledir)))
'''


def _run(code, tmp_path, **env):
    full = dict(os.environ)
    for name in ('THEANO_FLAGS', parallel_compile.DISABLE_ENV,
                 precompiled_header.DISABLE_ENV,
                 'LASAGNE_TAGGER_NO_DEFAULTS'):
        full.pop(name, None)
    full['THEANORC'] = os.devnull
    full['THEANO_FLAGS'] = 'compiledir=%s' % (tmp_path / 'cd')
    full.update(env)
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, env=full, timeout=600)
    assert out.returncode == 0, out.stderr
    import json
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def cores():
    if parallel_compile._workers() < 2:
        pytest.skip('one CPU: nothing is compiled side by side')


def test_modules_compile_side_by_side_with_the_same_results(cores, tmp_path):
    fast = _run(GRAPH, tmp_path / 'a')
    assert fast['parallel'] and fast['pch']
    # the first function's modules were compiled by precompile, the second
    # found them all in the cache
    assert fast['added'][0] >= 4 and fast['added'][-1] == 0
    slow = _run(GRAPH, tmp_path / 'b', LASAGNE_TAGGER_NO_PARALLEL_COMPILE='1',
                LASAGNE_TAGGER_NO_PCH='1')
    assert not slow['parallel'] and not slow['pch'] and slow['added'] == []
    assert fast['values'] == slow['values']
    # the same modules, keyed as Theano keys them: a process with the
    # serial loop finds every one of them in the parallel run's cache
    again = _run(GRAPH, tmp_path / 'a',
                 LASAGNE_TAGGER_NO_PARALLEL_COMPILE='1')
    entries = lambda d: sorted(e for e in os.listdir(d) if e.startswith('tmp'))
    assert entries(fast['compiledir']) == entries(again['compiledir'])


def test_defaults_off_leave_theanos_loop_alone(tmp_path):
    out = _run(GRAPH, tmp_path, LASAGNE_TAGGER_NO_DEFAULTS='1')
    assert not out['parallel'] and not out['pch']


def test_leading_includes():
    src = '#include <Python.h>\n#include <iostream>\n//x\n#include <a.h>\n'
    assert precompiled_header.leading_includes(src) == (
        '#include <Python.h>\n#include <iostream>\n')
    assert precompiled_header.leading_includes('#include <iostream>\n') \
        is None
    assert precompiled_header.leading_includes('int x;\n') is None


PCH_USE = r'''
import json, os
import lasagne_tagger.runtime._theano, theano, theano.tensor as T
from theano.gof import cmodule
real = cmodule.output_subprocess_Popen
used = []
def popen(cmd, *a, **k):
    out = real(list(cmd) + ['-H'], *a, **k)
    err = out[1].decode() if isinstance(out[1], bytes) else out[1]
    src = [c for c in cmd if c.endswith('mod.cpp')]
    # Theano's function modules (not its own helpers, such as cutils_ext)
    if src and open(src[0]).readline().strip() == '#include <Python.h>':
        used.append(any(l.startswith('! ') and l.endswith('Python.h.gch')
                        for l in err.splitlines()))
    return out
cmodule.output_subprocess_Popen = popen
x = T.tensor3('x')
f = theano.function([x], [T.exp(x) + 2, x.max(axis=2)])
print(json.dumps(dict(used=used, value=float(f([[[0.0, 1.0]]])[1].sum()))))
'''


def test_modules_read_the_precompiled_header(tmp_path):
    out = _run(PCH_USE, tmp_path, LASAGNE_TAGGER_NO_PARALLEL_COMPILE='1')
    assert out['used'] and all(out['used'])
    folders = os.listdir(tmp_path / 'cd' / precompiled_header.FOLDER)
    assert folders and all(
        os.path.exists(tmp_path / 'cd' / precompiled_header.FOLDER / f /
                       'Python.h.gch') for f in folders)


def test_a_damaged_precompiled_header_falls_back_to_the_headers(tmp_path):
    _run(PCH_USE, tmp_path, LASAGNE_TAGGER_NO_PARALLEL_COMPILE='1')
    base = tmp_path / 'cd' / precompiled_header.FOLDER
    for folder in os.listdir(base):
        (base / folder / 'Python.h.gch').write_bytes(b'not a header')
    # new modules (another graph), the same include blocks and flags
    code = PCH_USE.replace('T.exp(x) + 2', 'T.log1p(abs(x)) * 5')
    out = _run(code, tmp_path, LASAGNE_TAGGER_NO_PARALLEL_COMPILE='1')
    assert out['used'] and not any(out['used'])
    assert out['value'] == 1.0


def test_a_header_that_cannot_be_built_is_not_retried(tmp_path):
    code = textwrap.dedent('''
        import lasagne_tagger.runtime._theano, theano
        from lasagne_tagger.runtime import precompiled_header as p
        block = '#include <Python.h>\\n#include <no_such_header_here.h>\\n'
        print(p.header_folder(block, ['-O3'], [], base=%r))
        print(p.header_folder(block, ['-O3'], [], base=%r))
    ''' % (str(tmp_path / 'b'), str(tmp_path / 'b')))
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ['None', 'None']
    (folder,) = os.listdir(tmp_path / 'b')
    # the compiler's own words are kept there
    assert b'fatal error' in (tmp_path / 'b' / folder / 'failed').read_bytes()
