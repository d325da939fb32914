"""All of the project's benchmarks on this machine, in one command.

Each measurement runs in a child process of its own (Theano flags are read
at import) and prints one ``RESULT {json}`` line, with the child's peak
resident memory (``peak_rss_mb``).  The parent writes everything to one JSON
file (default ``benchmarks/results/all.json``):

- ``forward``: GoogLeNet forward images/s at 224 px, batch 8 and 32, and
  the warm compile time of the forward function;
- ``train``: the fine-tuning step (:func:`lasagne_tagger.training.finetune.
  compile_functions`: Nesterov SGD, L2, dropout) images/s at 224 px, batch
  8 and 32, and its warm compile time;
- ``compile_cold``: the training and greedy-decoding functions compiled in
  an empty Theano compiledir (cold), then again in the same one (warm);
- ``startup``: ``lasagne-tagger imagenet-tags`` on one photo, warm (the
  compile cache filled by a first run): wall time of the whole command, and
  its phases (imports, loading the weights, compiling, classifying);
- ``prepare``: :func:`lasagne_tagger.data.store.prepare` images/s on real photos
  (the first ``--prepare-images`` of ``--photos``) at 224 px;
- ``extract``: :func:`lasagne_tagger.tagging.features.extract_features` images/s at
  224 px from a full-width (random-weight) classifier checkpoint;
- ``decode``: greedy tags/s, the compiled scan vs the slow reference, batch
  1 and 100 (``benchmarks/decode.py``);
- ``port``: ``benchmarks/port_speed.py``: Theano and the PyTorch port
  (in ``.venv-port``, ``make install-port``) alternating for
  ``--port-rounds`` rounds (medians) with the same weights: forward and training-step images/s (batch 8 and 32, the
  port also channels_last) and greedy decode tags/s; ``ratios`` is the
  port's speed over Theano's.

    python benchmarks/run.py [--only forward,train] [--repeats 3]

``BENCHMARK_LAYERS=lasagne`` in the environment measures the network with
Lasagne 0.1's own convolution and LRN graphs (see :func:`layer_options`).
Every child uses the same ``THEANO_FLAGS`` (``floatX=float32`` unless the
environment sets ``floatX``: the precision a port is checked at, and the
one the 2016 system trained in on its GPU).
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MEASURES = ('forward', 'train', 'compile_cold', 'startup', 'prepare',
            'extract', 'decode', 'port')

# A measurement's child process: sys.argv[1] is the JSON of
# (root, here, name, args).
CHILD = r'''
import json, os, sys, time
root, here, name, args = json.loads(sys.argv[1])
sys.path.insert(0, root)
sys.path.insert(0, here)
import resource, run
args['layer_options'] = run.layer_options(
    os.environ.get('BENCHMARK_LAYERS', 'ours'))
res = getattr(run, 'child_' + name)(args)
res['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
res['effective_theano_flags'] = os.environ.get('THEANO_FLAGS', '')
print('RESULT ' + json.dumps(res))
'''


def layer_options(which):
    """The ``layer_options`` of :func:`lasagne_tagger.model.googlenet.
    build_model` that build variant ``which`` of the network: ``'ours'``
    the package's GoogLeNet as it ships; ``'lasagne'`` Lasagne 0.1's own
    convolution and LRN graphs (same maths, the graphs before issue 7), to
    measure what our layers contribute (``BENCHMARK_LAYERS=lasagne`` in a
    ``benchmarks/flags.py`` setting); ``'corrmm'`` ours with Theano's
    ``CorrMM`` convolutions instead of :mod:`lasagne_tagger.ops.conv_op`;
    ``'graph-bias-relu'`` ours with Theano's bias addition and rectifier
    instead of :mod:`lasagne_tagger.ops.bias_relu_op`; ``'join'`` ours with
    Lasagne's concatenation (a ``BiasReLU`` per branch and Theano's
    ``Join``); ``'unblocked'`` ours with every image unfolded whole."""
    table = {
        'ours': {},
        'lasagne': {'conv': {'impl': 'lasagne'}, 'lrn': {'impl': 'lasagne'}},
        'corrmm': {'conv': {'impl': 'graph'}},
        'graph-bias-relu': {'conv': {'bias_relu': 'graph'}},
        'join': {'concat': {'impl': 'graph'}},
        'unblocked': {'conv': {'unfold_bytes': None}},
    }
    if which not in table:
        raise SystemExit('BENCHMARK_LAYERS must be one of %s; got %r'
                         % (', '.join(table), which))
    return table[which]


def _median(values):
    values = sorted(values)
    return values[len(values) // 2]


def _timed(fn, repeats):
    fn()                                            # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return _median(times)


def child_forward(args):
    import numpy as np
    import lasagne_tagger.runtime._theano  # noqa: F401 (prepares Theano)
    import theano
    from lasagne_tagger.model import googlenet, imagenet
    net = googlenet.build_model(layer_options=args['layer_options'])
    t = time.perf_counter()
    f = imagenet.compile_forward(net, ('pool5/7x7_s1', 'prob'))
    res = {'compile_s': time.perf_counter() - t}
    rng = np.random.RandomState(0)
    for batch in (8, 32):
        x = rng.randn(batch, 3, 224, 224).astype(theano.config.floatX)
        res['b%d_img_s' % batch] = batch / _timed(lambda: f(x),
                                                  args['repeats'])
    return res


def _train_fn(layer_options, config_kwargs=None):
    from lasagne_tagger.training import finetune
    config = finetune.FinetuneConfig(from_scratch=True, dropout=0.4,
                                     **(config_kwargs or {}))
    net, _ = finetune.build_network(config, 15, 224,
                                    layer_options=layer_options)
    t = time.perf_counter()
    train_fn = finetune.compile_functions(net, config)[0]
    return train_fn, time.perf_counter() - t


def child_train(args):
    import numpy as np
    import lasagne_tagger.runtime._theano  # noqa: F401 (prepares Theano)
    import theano
    train_fn, compile_s = _train_fn(args['layer_options'])
    res = {'compile_s': compile_s}
    rng = np.random.RandomState(0)
    for batch in (8, 32):
        x = rng.randn(batch, 3, 224, 224).astype(theano.config.floatX) * 50
        y = rng.randint(0, 15, batch).astype('int32')
        res['b%d_img_s' % batch] = batch / _timed(lambda: train_fn(x, y),
                                                  args['repeats'])
    return res


def child_compile(args):
    """Compile the training and decoding functions (cold or warm: the
    compiledir decides)."""
    import lasagne_tagger.runtime._theano  # noqa: F401 (prepares Theano)
    from lasagne_tagger.tagging import tagger
    t0 = time.perf_counter()
    import theano  # noqa: F401
    res = {'import_s': time.perf_counter() - t0}
    res['train_s'] = _train_fn(args['layer_options'])[1]
    net = tagger.build_tagger(1024, 30, 6, tagger.TaggerConfig())
    t = time.perf_counter()
    tagger.compile_greedy(net, 6)
    res['greedy_decode_s'] = time.perf_counter() - t
    return res


def child_prepare(args):
    from lasagne_tagger.data import datasets, store
    dataset = _subset(datasets.read_folder_dataset(args['photos']),
                      args['prepare_images'])
    with tempfile.TemporaryDirectory() as d:
        summary = store.prepare(dataset, os.path.join(d, 's.h5'), size=224,
                                upscale=True, progress=False)
        return {'images': summary.processed,
                'img_s': summary.images_per_second}


def _subset(dataset, n):
    """The first ``n`` items of every class of the train split."""
    from lasagne_tagger.data.datasets import Dataset
    per_class = max(1, n // len(dataset.classes))
    seen, items = {}, []
    for item in dataset.split('train'):
        if seen.get(item.label, 0) < per_class:
            seen[item.label] = seen.get(item.label, 0) + 1
            items.append(item)
    return Dataset(dataset.name, dataset.root, dataset.classes, items)


def child_extract(args):
    import lasagne_tagger.runtime._theano  # noqa: F401 (prepares Theano)
    from lasagne_tagger.training import checkpoint, finetune
    from lasagne_tagger.data import datasets, store
    from lasagne_tagger.tagging import features
    from lasagne_tagger.config import config_to_dict
    dataset = _subset(datasets.read_folder_dataset(args['photos']),
                      args['extract_images'])
    with tempfile.TemporaryDirectory() as d:
        s = os.path.join(d, 's.h5')
        store.prepare(dataset, s, size=224, upscale=True, progress=False)
        config = finetune.FinetuneConfig(store=s, from_scratch=True)
        net, _ = finetune.build_network(config, len(dataset.classes), 224)
        prefix = os.path.join(d, 'cnn')
        checkpoint.save_checkpoint(
            prefix, checkpoint.named_params(net),
            {'kind': 'googlenet-classifier',
             'config': config_to_dict(config),
             'classes': list(dataset.classes), 'image_size': 224,
             'epoch': 0})
        t = time.perf_counter()
        features.extract_features(prefix, s, os.path.join(d, 'f.h5'),
                                  progress=False)
        seconds = time.perf_counter() - t
    return {'images': len(dataset.items), 'img_s_incl_compile':
            len(dataset.items) / seconds, 'seconds': seconds,
            'note': 'includes loading the checkpoint and compiling'}


STARTUP_PHASES = r'''
import json, sys, time
t0 = time.perf_counter()
import lasagne_tagger.runtime._theano, theano, lasagne  # noqa: F401
from lasagne_tagger.model import imagenet
t1 = time.perf_counter()
net, synsets = imagenet.load_imagenet_model(sys.argv[1])
t2 = time.perf_counter()
forward = imagenet.compile_forward(net)
t3 = time.perf_counter()
imagenet.classify_files([sys.argv[2]], forward, synsets, upscale=True)
t4 = time.perf_counter()
print(json.dumps({'import_s': t1 - t0, 'load_weights_s': t2 - t1,
                  'compile_s': t3 - t2, 'classify_s': t4 - t3}))
'''


def child_startup(args):
    """``lasagne-tagger imagenet-tags`` on one photo, warm (after one run
    that fills the compile cache): the whole command's wall time and, in
    another process, where the time goes.  The weights are a file with the
    model zoo's exact structure and random values (``tests/py2pickle.py``:
    the real one cannot be downloaded here); loading costs the same.
    The runs use a compile cache of their own, as after a fresh install:
    Theano reads every cached module's key on a process's first compile,
    so a cache grown by other work (the test suite leaves ~1,300 modules)
    adds ~0.7 ms a module; ``warm_wall_s_shared_cache`` is the same command
    with the shared cache."""
    import numpy as np
    sys.path.insert(0, os.path.join(ROOT, 'tests'))
    import numpy_reference
    import py2pickle
    from lasagne_tagger.data import datasets
    photo = datasets.read_folder_dataset(args['photos']).items[0].path
    cli = os.path.join(os.path.dirname(sys.executable), 'lasagne-tagger')
    with tempfile.TemporaryDirectory() as d:
        pkl = os.path.join(d, 'blvc_googlenet.pkl')
        py2pickle.write_model_zoo_pickle(
            pkl, numpy_reference.random_params(np.random.RandomState(0)))
        command = [cli, 'imagenet-tags', '--weights', pkl, '--upscale',
                   '--json', photo]
        own = dict(os.environ, THEANO_FLAGS=os.environ.get(
            'THEANO_FLAGS', '') + ',base_compiledir=' + os.path.join(
                d, 'theano'))

        def walls(env):
            times = []
            for _ in range(1 + args['repeats']):      # the first one warms
                t = time.perf_counter()
                subprocess.run(command, check=True, env=env,
                               stdout=subprocess.DEVNULL)
                times.append(time.perf_counter() - t)
            return times
        fresh, shared = walls(own), walls(None)
        phases = subprocess.run([sys.executable, '-c', STARTUP_PHASES, pkl,
                                 photo], check=True, capture_output=True,
                                text=True, env=own)
    res = {'first_wall_s': fresh[0], 'warm_wall_s': _median(fresh[1:]),
           'warm_wall_s_shared_cache': _median(shared[1:]),
           'photo': os.path.relpath(photo, ROOT)}
    res['warm_phases'] = json.loads(phases.stdout.splitlines()[-1])
    return res


def child_decode(args):
    import lasagne_tagger.runtime._theano  # noqa: F401 (prepares Theano)
    import decode
    return decode.measure(None, (1, 100), args['repeats'], log=lambda s: None)


def _run_child(name, args, env, here=HERE):
    """Run ``child_<name>(args)`` of the ``run`` module in ``here`` (this
    one) in a child process with environment ``env``; its result dict, with
    ``child_wall_s``."""
    argv = [sys.executable, '-c', CHILD, json.dumps([ROOT, here, name,
                                                     args])]
    t = time.perf_counter()
    proc = subprocess.Popen(argv, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    out, err = proc.communicate()
    wall = time.perf_counter() - t
    for line in out.splitlines():
        if line.startswith('RESULT '):
            res = json.loads(line[7:])
            res['child_wall_s'] = wall
            return res
    raise RuntimeError('%s failed:\n%s' % (name, err[-3000:]))


def _port(args):
    """``benchmarks/port_speed.py`` (Theano and the PyTorch port,
    alternating, same weights) when the port's environment exists."""
    python = args['port_python']
    if not (python and os.path.exists(python)):
        return {'skipped': 'no PyTorch port environment at %s (make '
                           'install-port)' % python}
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, 'port.json')
        proc = subprocess.run(
            [sys.executable, os.path.join(HERE, 'port_speed.py'),
             '--repeats', str(args['repeats']), '--rounds',
             str(args['port_rounds']), '--port-python', python,
             '--out', out], capture_output=True, text=True, cwd=ROOT)
        if proc.returncode or not os.path.exists(out):
            return {'failed': proc.stderr[-2000:]}
        with open(out) as fh:
            return json.load(fh)


def base_theano_flags():
    """The environment's ``THEANO_FLAGS``, with ``floatX=float32`` unless
    they set ``floatX``."""
    flags = os.environ.get('THEANO_FLAGS', '')
    if 'floatX' not in flags:
        flags = ','.join(filter(None, [flags, 'floatX=float32']))
    return flags


def opts_parser():
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--only', default=','.join(MEASURES),
                   help='comma-separated subset of ' + ', '.join(MEASURES))
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--photos', default=os.path.join(
        ROOT, '..', 'shared', 'data', 'clothing-small'),
        help='a folder dataset for prepare/extract')
    p.add_argument('--prepare-images', type=int, default=400)
    p.add_argument('--extract-images', type=int, default=128)
    p.add_argument('--port-rounds', type=int, default=5,
                   help='alternating Theano/port rounds (medians)')
    p.add_argument('--port-python', default=os.path.join(
        ROOT, '.venv-port', 'bin', 'python'),
        help="the PyTorch port environment's python")
    p.add_argument('--out', default=os.path.join(HERE, 'results',
                                                 'all.json'))
    return p


def run(args):
    only = args.only.split(',')
    unknown = set(only) - set(MEASURES)
    if unknown:
        raise SystemExit('unknown measurement(s): %s' % ', '.join(unknown))
    env = dict(os.environ)
    flags = env['THEANO_FLAGS'] = base_theano_flags()
    cargs = dict(repeats=args.repeats, photos=os.path.abspath(args.photos),
                 prepare_images=args.prepare_images,
                 extract_images=args.extract_images,
                 port_python=args.port_python,
                 port_rounds=args.port_rounds)
    results = {'machine': {'cpus': os.cpu_count(),
                           'processor': platform.processor(),
                           'python': platform.python_version(),
                           'load_average_at_start': os.getloadavg()},
               'when': time.strftime('%Y-%m-%d %H:%M:%S'),
               'theano_flags': flags, 'results': {}}
    if os.path.exists(args.out):             # keep measurements not redone
        with open(args.out) as fh:
            results['results'] = json.load(fh).get('results', {})
    for name in only:
        print('measuring %s ...' % name, flush=True)
        if name == 'port':
            res = _port(cargs)
        elif name == 'compile_cold':
            with tempfile.TemporaryDirectory() as d:
                cold_env = dict(env, THEANO_FLAGS=flags
                                + ',base_compiledir=' + d)
                res = {'cold': _run_child('compile', cargs, cold_env),
                       'warm': _run_child('compile', cargs, cold_env)}
        else:
            res = _run_child(name, cargs, env)
        results['results'][name] = res
        print(name, json.dumps(res), flush=True)
    results['ratios'] = _ratios(results['results'])
    results['best_port_layout_over_theano'] = dict(
        results['results'].get('port', {}).get(
            'best_port_layout_over_theano', {}))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as fh:
        json.dump(results, fh, indent=2)
    print('ratios (port / Theano):', json.dumps(results['ratios']))
    print("the port's best layout / Theano:",
          json.dumps(results['best_port_layout_over_theano']))
    print('wrote', args.out)
    return results


def _ratios(res):
    """The PyTorch port's speed over Theano's, as port_speed.py measured
    them in one run (same weights, same machine)."""
    return dict(res.get('port', {}).get('port_over_theano', {}))


def main(argv=None):
    run(opts_parser().parse_args(argv))


if __name__ == '__main__':
    main()
