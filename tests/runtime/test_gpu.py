"""The CUDA back end's set-up, as far as a CPU machine can check it: the
cuDNN flag logic, the choice of implementations per device, the CUDA
library links, and the GPU check's own run and comparison (on the CPU)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lasagne_tagger.runtime import gpu
from lasagne_tagger.ports import gpu_check
from repo import ROOT


class _FakeCudnn(object):
    def __init__(self, version):
        self.cudnnGetVersion = lambda: version


def _loader(found):
    """A ctypes.CDLL stand-in: ``found`` maps library names to versions."""
    def load(name):
        base = os.path.basename(name)
        if base in found:
            return _FakeCudnn(found[base])
        raise OSError('%s: not found' % name)
    return load


@pytest.mark.parametrize('env, version, flag, why', [
    ({'THEANO_FLAGS': 'device=cpu'}, 7605, None, 'no GPU requested'),
    ({'THEANO_FLAGS': 'device=cuda'}, None, 'False', 'no cuDNN found'),
    ({'THEANO_FLAGS': 'device=cuda0'}, 8902, 'False',
     'cuDNN 8902: Theano 1.0.5 supports only v5-v7'),
    ({'THEANO_FLAGS': 'device=cuda'}, 7605, None,
     'cuDNN 7605: usable by Theano 1.0.5'),
    ({'THEANO_FLAGS': 'device=cuda,dnn.enabled=True'}, 90100, None,
     'dnn.enabled set by the user'),
])
def test_cudnn_is_turned_off_unless_theano_can_use_it(tmp_path, env, version,
                                                      flag, why):
    env = dict(env, THEANORC=str(tmp_path / 'none'))
    got = gpu.configure(env, version_of=lambda path: version)
    assert got == (flag, why)
    if flag:
        assert env['THEANO_FLAGS'].endswith(',dnn.enabled=False')
    else:
        assert 'dnn.enabled=False' not in env['THEANO_FLAGS']


def test_theanorc_device_and_dnn_are_read(tmp_path):
    rc = tmp_path / 'theanorc'
    rc.write_text('[global]\ndevice = cuda\n[dnn]\nenabled = auto\n')
    env = {'THEANORC': str(rc)}
    assert gpu.configure(env, version_of=lambda p: 9000) == (
        None, 'dnn.enabled set by the user')


def test_cudnn_version_reads_the_library():
    assert gpu.cudnn_version(loader=_loader({'libcudnn.so.8': 8902})) == 8902
    assert gpu.cudnn_version(loader=_loader({})) is None


def test_a_cpu_process_builds_our_ops_and_never_lasagnes_dnn():
    code = r'''
import sys, lasagne_tagger.runtime._theano, theano
from lasagne_tagger.model import googlenet, imagenet
from lasagne_tagger.runtime import gpu
net = googlenet.build_model(image_size=32, width=0.125, num_classes=4)
f = imagenet.compile_forward(net, ('prob',))
kinds = {type(n.op).__name__ for n in f.maker.fgraph.apply_nodes}
print('lasagne.layers.dnn' in sys.modules, 'CorrGemm' in str(kinds),
      'CaffeMaxPool' in str(kinds), gpu.on_gpu())
print(gpu.describe())
'''
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    flags, line = out.stdout.strip().splitlines()[-2:]
    assert flags == 'False True True False'
    assert line.startswith('device: cpu; convolutions: lasagne_tagger '
                           'CorrGemm')


def test_on_a_gpu_device_the_stock_graph_is_chosen(monkeypatch):
    """What the layers pick comes from the device name alone: on a GPU
    device none of our C ops is in the graph (Theano moves the stock ops to
    the device)."""
    import lasagne
    import theano
    from lasagne_tagger.model import googlenet, layers

    def graph_ops():
        net = googlenet.build_model(image_size=32, width=0.125,
                                    num_classes=4)
        out = lasagne.layers.get_output(net['prob'], deterministic=True)
        inputs = theano.gof.graph.inputs([out])
        return {type(a.op).__name__ for a in
                theano.gof.graph.io_toposort(inputs, [out])}
    assert layers.use_c_op('auto')
    assert {'CorrGemm', 'CaffeMaxPool'} <= graph_ops()
    monkeypatch.setattr(gpu, 'theano_device', lambda: 'cuda0')
    assert not layers.use_c_op('auto')
    ops = graph_ops()
    assert not {'CorrGemm', 'CaffeMaxPool', 'BiasReLU', 'CaffeLRN'} & ops
    assert 'AbstractConv2d' in ops
    assert gpu.wants_gpu('cuda0') and gpu.wants_gpu('opencl0:0')
    assert not gpu.wants_gpu('cpu') and not gpu.wants_gpu('')


def test_cuda_libraries_are_linked_by_their_unversioned_names(tmp_path):
    driver = tmp_path / 'nvidia' / 'lib64'
    wheel = tmp_path / 'site' / 'nvidia' / 'cuda_nvrtc' / 'lib'
    for folder, name in ((driver, 'libcuda.so.1'),
                         (wheel, 'libnvrtc.so.13'),
                         (wheel, 'libnvrtc-builtins.so.13.0')):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b'\x7fELF')
    found = gpu_check.link_cuda_libraries(str(tmp_path / 'links'),
                                          [str(driver), str(wheel)])
    assert found['libcuda.so'] == str(driver / 'libcuda.so.1')
    assert found['libnvrtc.so'] == str(wheel / 'libnvrtc.so.13')
    assert found['libcublas.so'] is None
    assert os.readlink(tmp_path / 'links' / 'libnvrtc.so') == \
        str(wheel / 'libnvrtc.so.13')
    assert not (tmp_path / 'links' / 'libcublas.so').exists()


@pytest.fixture(scope='module')
def cpu_runs(tmp_path_factory):
    """The GPU check's run, twice on the CPU (a small network)."""
    base = tmp_path_factory.mktemp('gpu-check')
    for name in ('a', 'b'):
        out = subprocess.run(
            [sys.executable, '-m', 'lasagne_tagger.ports.gpu_check', 'run',
             '--device', 'cpu', '--out', str(base / name), '--image-size',
             '32', '--width', '0.125', '--count', '2'],
            capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stderr[-3000:]
    return base


@pytest.mark.slow
def test_the_check_runs_and_compares(cpu_runs):
    for name in ('reference.h5', 'step.npz', 'device.json'):
        assert (cpu_runs / 'a' / name).exists()
    device = json.loads((cpu_runs / 'a' / 'device.json').read_text())
    assert device['device'] == 'cpu' and device['floatX'] == 'float32'
    passed, line, report = gpu_check.compare(str(cpu_runs / 'a'),
                                             str(cpu_runs / 'b'))
    assert passed and line.startswith('gpu-check: PASS: bundle ')
    assert 'tags identical' in line and 'step agrees' in line
    with np.load(cpu_runs / 'a' / 'step.npz') as step:
        assert {'loss', 'conv1/7x7_s2/W', 'loss3/classifier/W'} <= \
            set(step.files)
        assert np.isfinite(step['loss'])


@pytest.mark.slow
def test_a_difference_fails_with_one_summary_line(cpu_runs, tmp_path):
    import shutil
    bad = tmp_path / 'bad'
    shutil.copytree(cpu_runs / 'b', bad)
    with np.load(bad / 'step.npz') as step:
        values = dict(step)
    values['inception_5b/5x5/W'] = values['inception_5b/5x5/W'] * 1.01
    np.savez(bad / 'step.npz', **values)
    out = subprocess.run(
        [sys.executable, '-m', 'lasagne_tagger.ports.gpu_check', 'compare',
         str(cpu_runs / 'a'), str(bad), '--json', str(tmp_path / 'r.json')],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    (line,) = [l for l in out.stdout.splitlines() if l.startswith('gpu-')]
    assert line.startswith('gpu-check: FAIL') and \
        'step differs in inception_5b/5x5/W' in line
    assert json.loads((tmp_path / 'r.json').read_text())['step']['failed'] \
        == ['inception_5b/5x5/W']


def test_the_check_script_says_what_it_lacks(tmp_path):
    script = os.path.join(ROOT, 'gpu', 'check.sh')
    out = subprocess.run(['bash', script], capture_output=True, text=True,
                         env=dict(os.environ, GPU_CARRY=str(tmp_path / 'no'),
                                  OUT=str(tmp_path / 'out')), timeout=60)
    assert out.returncode == 2
    assert out.stdout.strip().startswith('gpu-check: FAIL: no ')
