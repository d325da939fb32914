"""The one-shot GPU check: the same model on Theano's CUDA back end and on
the CPU, compared as a port would be.

``make gpu-check`` (``gpu/check.sh``) builds libgpuarray and pygpu on the
GPU machine from the carried sources, then runs, in this order::

    python -m lasagne_tagger.ports.gpu_check links DIR      # libcuda.so etc.
    python -m lasagne_tagger.ports.gpu_check run --device cpu  --out OUT/cpu
    python -m lasagne_tagger.ports.gpu_check run --device cuda --out OUT/cuda
    python -m lasagne_tagger.ports.gpu_check compare OUT/cpu OUT/cuda

``run`` writes, in a child process of its own with ``THEANO_FLAGS=device=
DEVICE,floatX=float32``:

- ``reference.h5``: a reference bundle of the full 224 px GoogLeNet and a
  tagger, seeded random weights (the same on both devices), the embedded
  photos: every layer, the LSTM states and the greedy tags
  (:func:`lasagne_tagger.ports.reference.export_reference`);
- ``step.npz``: one fine-tuning step (:func:`lasagne_tagger.training.finetune.
  compile_functions`, dropout off so both devices draw nothing random) from
  the same weights on the same batch: the loss and the updated weights of
  four layers;
- ``device.json``: what ran (Theano's device, ``dnn.enabled``, the
  convolution and pooling implementations).

``compare`` checks the bundles with the port tolerances
(:func:`lasagne_tagger.ports.bundle.compare_bundles`) and the step with the same
rule, and prints one summary line (``gpu-check: PASS ...`` or ``FAIL``);
its exit status is 0 only when everything agrees.  ``--image-size`` and
``--width`` make a small check (the tests run it on the CPU).
"""
import argparse
import glob
import json
import os
import subprocess
import sys

import numpy as np

from ..runtime import _theano  # noqa: F401 (prepares Theano)
from .. import atomic

__all__ = ['link_cuda_libraries', 'run', 'compare', 'main', 'STEP_LAYERS']

# The layers whose updated weights the step compares: the first, a middle
# one, the last convolution and the classifier.
STEP_LAYERS = ('conv1/7x7_s2', 'inception_4c/3x3', 'inception_5b/5x5',
               'loss3/classifier')
# Unversioned names libgpuarray opens with dlopen, and where CUDA keeps the
# versioned files on the machines we know (the driver's folder, a CUDA
# toolkit, NVIDIA's pip wheels).
CUDA_LIBRARIES = ('libcuda.so', 'libnvrtc.so', 'libcublas.so')
SEARCH = ('/usr/local/nvidia/lib64', '/usr/local/nvidia/lib',
          '/usr/lib/x86_64-linux-gnu', '/usr/local/cuda/lib64',
          '/usr/local/cuda/targets/x86_64-linux/lib')


def _candidates(name, folders):
    for folder in folders:
        for path in sorted(glob.glob(os.path.join(folder, name + '*')),
                           key=lambda p: (len(p), p)):
            if os.path.isfile(path):
                yield path


def _python_folders():
    """``site-packages/nvidia/*/lib`` of this interpreter and of others on
    PATH (the GPU image's PyTorch carries NVRTC and cuBLAS there)."""
    out = []
    for root in set(sys.path + glob.glob('/opt/*/.venv/lib/python3*/'
                                         'site-packages')):
        out.extend(glob.glob(os.path.join(root, 'nvidia', '*', 'lib')))
    return sorted(out)


def link_cuda_libraries(target, folders=None):
    """Make ``target/libcuda.so`` etc. point to the versioned files found.

    Returns
    -------
    dict
        ``name -> path linked`` (None for a library not found).
    """
    folders = list(folders or (list(SEARCH) + _python_folders()))
    os.makedirs(target, exist_ok=True)
    found = {}
    for name in CUDA_LIBRARIES:
        path = next(iter(_candidates(name, folders)), None)
        found[name] = path
        link = os.path.join(target, name)
        if path is not None:
            if os.path.lexists(link):
                os.remove(link)
            os.symlink(os.path.abspath(path), link)
    return found


def _child(kind, args, device):
    """Run ``kind`` (export or step) in a fresh process on ``device``."""
    env = dict(os.environ)
    flags = 'device=%s,floatX=float32' % device
    env['THEANO_FLAGS'] = flags + (',' + env['THEANO_FLAGS']
                                   if env.get('THEANO_FLAGS') else '')
    cmd = [sys.executable, '-m', 'lasagne_tagger.ports.gpu_check', '_' + kind,
           '--out', args.out, '--image-size', str(args.image_size),
           '--width', str(args.width), '--count', str(args.count),
           '--seed', str(args.seed)]
    return subprocess.run(cmd, env=env).returncode


def run(args):
    """``run``: the bundle, the step and device.json for one device."""
    os.makedirs(args.out, exist_ok=True)
    for kind in ('export', 'step'):
        code = _child(kind, args, args.device)
        if code != 0:
            print('gpu-check: %s on %s failed (exit %d)'
                  % (kind, args.device, code), file=sys.stderr)
            return code
    return 0


def _export(args):
    from ..runtime import gpu
    from .reference import export_reference
    from ..runtime.theano_check import import_theano
    theano = import_theano()
    export_reference(os.path.join(args.out, 'reference.h5'), seed=args.seed,
                     width=args.width, image_size=args.image_size,
                     count=args.count, log=lambda msg: print(msg))
    atomic.write_json(os.path.join(args.out, 'device.json'),
                      {'device': theano.config.device,
                       'on_gpu': gpu.on_gpu(),
                       'dnn.enabled': str(theano.config.dnn.enabled),
                       'floatX': theano.config.floatX,
                       'implementations': gpu.describe()})
    print(gpu.describe())
    return 0


def _step(args):
    from ..training import finetune
    from ..data import synthetic
    from ..data.preprocess import to_network_input
    from ..runtime.theano_check import import_theano
    import_theano()
    cfg = finetune.FinetuneConfig(store='none', from_scratch=True,
                                  width=args.width, dropout=0.0,
                                  learning_rate=0.01, batch_size=4,
                                  seed=args.seed + 1, init='he')
    net, _ = finetune.build_network(cfg, 8, args.image_size)
    train_fn, _, _, _, _ = finetune.compile_functions(net, cfg)
    rng = np.random.default_rng(args.seed)
    crops = np.stack([np.asarray(synthetic.render_garment(
        cls, args.image_size, rng)) for cls in synthetic.CLASSES[:4]])
    labels = np.arange(4, dtype=np.int32)
    loss, acc = train_fn(to_network_input(crops), labels)
    values = {'loss': np.asarray(loss), 'accuracy': np.asarray(acc)}
    for name in STEP_LAYERS:
        values[name + '/W'] = net[name].W.get_value()
        values[name + '/b'] = net[name].b.get_value()
    np.savez(os.path.join(args.out, 'step.npz'), **values)
    print('step: loss %.6f' % float(loss))
    return 0


def compare(cpu_dir, gpu_dir, atol=None, rtol=None):
    """Compare the two runs; returns ``(passed, summary line, report)``."""
    from . import bundle
    atol = bundle.DEFAULT_ATOL if atol is None else atol
    rtol = bundle.DEFAULT_RTOL if rtol is None else rtol
    report = bundle.compare_bundles(os.path.join(cpu_dir, 'reference.h5'),
                                    os.path.join(gpu_dir, 'reference.h5'),
                                    atol=atol, rtol=rtol)
    step = _compare_steps(os.path.join(cpu_dir, 'step.npz'),
                          os.path.join(gpu_dir, 'step.npz'), atol, rtol)
    with open(os.path.join(gpu_dir, 'device.json')) as fh:
        device = json.load(fh)
    bad = [r for r in report['rows'] if r['status'] != 'ok']
    worst = max((r for r in report['rows'] if r['max_abs'] is not None),
                key=lambda r: r['max_rel'] or 0, default=None)
    passed = report['passed'] and step['passed']
    line = ('gpu-check: %s: bundle %d arrays, %s%s; tags %s; step %s (loss '
            '%s vs %s); ran: %s' % (
                'PASS' if passed else 'FAIL', len(report['rows']),
                'all agree' if not bad else '%d differ, first %s' % (
                    len(bad), report['first']),
                ' (worst %s, rel %.2g)' % (worst['key'], worst['max_rel'])
                if worst is not None and worst['max_rel'] is not None else '',
                'identical' if report['tags_equal'] else 'differ',
                'agrees' if step['passed'] else 'differs in ' +
                ', '.join(step['failed']), step['loss'][0], step['loss'][1],
                device.get('implementations')))
    return passed, line, dict(bundle=report, step=step, device=device)


def _compare_steps(path_a, path_b, atol, rtol):
    from .bundle import _float_errors
    with np.load(path_a) as a, np.load(path_b) as b:
        failed = []
        for key in a.files:
            if key not in b.files or a[key].shape != b[key].shape:
                failed.append(key)
                continue
            _, _, ok = _float_errors(a[key].astype(np.float64),
                                     b[key].astype(np.float64), atol, rtol)
            if not ok:
                failed.append(key)
        return {'passed': not failed, 'failed': failed,
                'loss': ('%.6g' % float(a['loss']), '%.6g' % float(b['loss'])
                         if 'loss' in b.files else 'missing')}


def opts_parser():
    p = argparse.ArgumentParser(
        prog='python -m lasagne_tagger.ports.gpu_check',
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True
    q = sub.add_parser('links', help='link libcuda.so, libnvrtc.so and '
                                     'libcublas.so into a folder')
    q.add_argument('target')
    for name in ('run', '_export', '_step'):
        q = sub.add_parser(name, help='export, step and device.json on one '
                           'device' if name == 'run' else
                           argparse.SUPPRESS)
        if name == 'run':
            q.add_argument('--device', default='cuda',
                           help='Theano device (cpu, cuda, cuda0...)')
        q.add_argument('--out', required=True, help='folder to write')
        q.add_argument('--image-size', type=int, default=224)
        q.add_argument('--width', type=float, default=1.0)
        q.add_argument('--count', type=int, default=4,
                       help='embedded photos in the bundle')
        q.add_argument('--seed', type=int, default=0)
    q = sub.add_parser('compare', help='compare a CPU and a GPU run')
    q.add_argument('cpu_dir')
    q.add_argument('gpu_dir')
    q.add_argument('--json', default=None, help='also write the report here')
    return p


def main(argv=None):
    args = opts_parser().parse_args(argv)
    if args.command == 'links':
        found = link_cuda_libraries(args.target)
        for name, path in found.items():
            print('%s -> %s' % (name, path or 'NOT FOUND'))
        return 0 if all(found.values()) else 1
    if args.command == 'run':
        return run(args)
    if args.command == '_export':
        return _export(args)
    if args.command == '_step':
        return _step(args)
    passed, line, report = compare(args.cpu_dir, args.gpu_dir)
    if args.json:
        atomic.write_text(args.json,
                          json.dumps(report, indent=2, default=str) + '\n')
    print(line)
    return 0 if passed else 1


if __name__ == '__main__':
    sys.exit(main())
