"""The PyTorch port against the Theano reference, on a tiny random model.

The port runs in a Python that has PyTorch: this one if it can import
torch, else the port environment ``.venv-port`` (``make install-port``), or
``$LASAGNE_TAGGER_PORT_PYTHON``; the tests that need it are skipped, saying
so, where there is none.  Bundles are exchanged through files, as a real
port would.
"""
import importlib.util
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from lasagne_tagger.ports import bundle
from lasagne_tagger import cli

from repo import ROOT, TESTS

pytestmark = pytest.mark.slow   # the full 224 px network in two frameworks


def _port_python():
    """A Python that can import torch, or None."""
    env = os.environ.get('LASAGNE_TAGGER_PORT_PYTHON')
    if env:
        return env
    if importlib.util.find_spec('torch') is not None:
        return sys.executable
    venv = os.path.join(ROOT, '.venv-port', 'bin', 'python')
    return venv if os.path.exists(venv) else None


PORT_PYTHON = _port_python()
needs_torch = pytest.mark.skipif(
    PORT_PYTHON is None,
    reason='PyTorch is not importable here and there is no .venv-port: run '
           '`make install-port` (torch==2.13.0 CPU wheel) to test the port')


def _run(python, args, timeout=300):
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [ROOT] + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    return subprocess.run([python] + args, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _port(reference, out, *extra):
    return _run(PORT_PYTHON, ['-m', 'lasagne_tagger.ports.torch_port',
                              str(reference), '--out', str(out), '--quiet']
                + list(extra))


def _report(a, b, **kw):
    return bundle.compare_bundles(a, b, **kw)


def test_port_imports_nothing_from_theano_or_lasagne():
    code = ("import sys\n"
            "sys.modules['theano'] = None; sys.modules['lasagne'] = None\n"
            "import lasagne_tagger.ports.torch_port as p\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('theano', 'lasagne') and sys.modules[m] is not None]\n"
            "assert not bad, bad\n"
            "print(len(p.param_layers()))")
    done = _run(PORT_PYTHON or sys.executable, ['-c', code], timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ['58']


@pytest.fixture(scope='module')
def port_float32(tiny_reference, tmp_path_factory):
    if PORT_PYTHON is None:
        pytest.skip('no PyTorch (see module docstring)')
    out = tmp_path_factory.mktemp('port') / 'torch32.h5'
    done = _port(tiny_reference, out)
    assert done.returncode == 0, done.stderr
    return out


@needs_torch
def test_port_matches_the_theano_reference_in_float32(tiny_reference,
                                                      port_float32, capsys):
    report = _report(tiny_reference, port_float32)
    assert report['passed'], report['problems']
    assert report['tags_equal']
    worst = max(r['max_rel'] for r in report['rows']
                if r['max_rel'] is not None)
    assert 0 < worst < 2e-5           # float32 rounding, well inside 1e-4
    with bundle.open_bundle(port_float32) as r:
        assert r.meta['framework'] == 'torch'
        assert r.meta['dtype'] == 'float32'
        assert r.info('activations/cnn/prob')[1] == np.float32
    assert cli.main(['reference', 'compare', str(tiny_reference),
                     str(port_float32)]) == 0
    assert 'decoded tags: identical' in capsys.readouterr().out


@needs_torch
def test_port_in_float64_agrees_to_rounding(tiny_reference, tmp_path):
    out = tmp_path / 'torch64.h5'
    done = _port(tiny_reference, out, '--dtype', 'float64')
    assert done.returncode == 0, done.stderr
    # note: 1e-6, not 1e-12: Lasagne 0.1's LRN writes the squares into a
    # buffer made by T.alloc(0., ...), which Theano types float32, so even
    # a float64 reference rounds them to float32 (2e-8 at the LRN, 1.3e-7
    # after the LSTM, measured).
    report = _report(tiny_reference, out, rtol=1e-6, atol=1e-12)
    with bundle.open_bundle(tiny_reference) as r:
        reference_dtype = r.meta['dtype']
    if reference_dtype == 'float64':
        assert report['passed'], report['problems']
    else:                                  # a float32 reference
        assert _report(tiny_reference, out)['passed']


@needs_torch
def test_channels_last_gives_the_same_numbers(tiny_reference, tmp_path):
    out = tmp_path / 'nhwc.h5'
    done = _port(tiny_reference, out, '--channels-last', '--compare')
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'PASS' in done.stdout


@needs_torch
def test_port_names_a_wrong_weight_shape(tiny_reference, tmp_path):
    bad = tmp_path / 'bad.h5'
    shutil.copyfile(tiny_reference, bad)
    key = 'weights/cnn/inception_4b/3x3/W'
    with h5py.File(bad, 'r+') as h5:
        w = h5[key][()]
        del h5[key]
        h5[key] = w[:, :-1]
    done = _port(bad, tmp_path / 'out.h5')
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: %s: ' % bad)
    assert 'inception_4b/3x3/W has shape' in lines[0]
    assert not (tmp_path / 'out.h5').exists()


@needs_torch
def test_port_refuses_a_newer_bundle(tiny_reference, tmp_path):
    newer = tmp_path / 'newer.h5'
    shutil.copyfile(tiny_reference, newer)
    with h5py.File(newer, 'r+') as h5:
        h5.attrs['format_version'] = bundle.FORMAT_VERSION + 1
    done = _port(newer, tmp_path / 'out.h5')
    assert done.returncode == 2
    assert 'newer than this reader' in done.stderr
    assert done.stderr.count('\n') == 1


@needs_torch
def test_port_pooling_and_lrn_follow_caffe():
    """Odd sizes where ceil mode keeps or drops a last window, and LRN, each
    against the NumPy reference written from Caffe's definitions."""
    code = r'''
import sys, numpy as np, torch
sys.path.insert(0, %r)
import numpy_reference as ref
from lasagne_tagger.ports import torch_port as p
rng = np.random.RandomState(0)
for h, w in [(7, 7), (8, 9), (13, 14), (2, 3), (3, 4)]:
    x = rng.randn(2, 5, h, w)
    for k, s, pad in [(3, 2, 0), (3, 1, 1), (2, 2, 0), (3, 3, 1)]:
        want = ref.max_pool(x, k, s, pad)
        got = p.caffe_max_pool(torch.from_numpy(x), k, s, pad).numpy()
        assert got.shape == want.shape, (h, w, k, s, pad, got.shape)
        assert np.array_equal(got, want), (h, w, k, s, pad)
x = rng.randn(2, 7, 4, 3) * 30
assert np.allclose(p.caffe_lrn(torch.from_numpy(x)).numpy(), ref.lrn(x),
                   rtol=1e-12)
print('ok')
''' % TESTS
    done = _run(PORT_PYTHON, ['-c', code], timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == 'ok'


@needs_torch
def test_a_port_that_drops_layers_is_reported(tiny_reference, port_float32,
                                              tmp_path, capsys):
    partial = tmp_path / 'partial.h5'
    shutil.copyfile(port_float32, partial)
    with h5py.File(partial, 'r+') as h5:
        del h5['activations/cnn/inception_5a']
    code = cli.main(['reference', 'compare', str(tiny_reference),
                     str(partial)])
    out = capsys.readouterr().out
    assert code == 1
    missing = [l for l in out.splitlines() if 'missing in B' in l]
    assert len(missing) == 8            # the module's 7 branches + output
    assert 'first divergence: activations/cnn/inception_5a/pool' in out
    assert 'decoded tags: identical' in out


MUTANT = r'''
import sys
import numpy as np
import torch
import torch.nn.functional as F
from lasagne_tagger.ports import torch_port as p
kind, ref, out = sys.argv[1:4]
if kind == 'unflipped':            # filters flipped as for Lasagne 0.1
    init = p.GoogLeNet.__init__
    def flipped(self, weights, *a, **k):
        weights = {n: (w[:, :, ::-1, ::-1] if w.ndim == 4 else w)
                   for n, w in weights.items()}
        init(self, weights, *a, **k)
    p.GoogLeNet.__init__ = flipped
elif kind == 'lrn_alpha':          # alpha not divided by the window size
    lrn = p.caffe_lrn
    p.caffe_lrn = lambda x: lrn(x, alpha=5e-4)
elif kind == 'no_bias':
    def conv_relu(self, x, name, stride=1, pad=0):
        return F.relu(F.conv2d(x, self.params[name][0], None, stride, pad))
    p.GoogLeNet._conv_relu = conv_relu
elif kind in ('gate_swap', 'lasagne01_peephole'):
    def step(self, x, cell, hid):
        t, H = self.t, self.hidden_size
        g = x @ t['lstm/W_in'] + hid @ t['lstm/W_hid'] + t['lstm/b']
        w = t['lstm/w_peephole']
        gi, gf = g[:, 0:H], g[:, H:2 * H]
        if kind == 'gate_swap':
            gi, gf = gf, gi
        i = torch.sigmoid(gi + cell * w[0])
        f = torch.sigmoid(gf + cell * w[1])
        c = f * cell + i * torch.tanh(g[:, 2 * H:3 * H])
        if kind == 'gate_swap':
            o = torch.sigmoid(g[:, 3 * H:] + c * w[2])
        else:                       # Lasagne 0.1: peephole after the sigmoid
            o = torch.sigmoid(g[:, 3 * H:]) + c * w[2]
        return c, o * torch.tanh(c)
    p.Tagger.step = step
p.run_port(ref, out)
'''


@needs_torch
@pytest.mark.parametrize('kind, first', [
    # the port writes the weights it used: the flip shows there first
    ('unflipped', 'weights/cnn/conv1/7x7_s2/W'),
    ('lrn_alpha', 'activations/cnn/pool1/norm1'),
    ('no_bias', 'activations/cnn/conv1/7x7_s2'),
    ('gate_swap', 'activations/tagger/cell'),
    ('lasagne01_peephole', 'activations/tagger/cell'),
])
def test_typical_porting_bugs_are_caught_where_they_start(
        tiny_reference, tmp_path, kind, first):
    out = tmp_path / ('%s.h5' % kind)
    done = _run(PORT_PYTHON, ['-c', MUTANT, kind, str(tiny_reference),
                              str(out)])
    assert done.returncode == 0, done.stderr
    report = _report(tiny_reference, out)
    assert not report['passed']
    assert report['first'] == first
    row = next(r for r in report['rows'] if r['key'] == first)
    assert row['status'] == 'DIVERGES' and row['max_rel'] > 1e-2
    if kind == 'unflipped':
        row = next(r for r in report['rows']
                   if r['key'] == 'activations/cnn/conv1/7x7_s2')
        assert row['status'] == 'DIVERGES' and row['max_rel'] > 1e-2
