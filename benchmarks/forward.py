"""GoogLeNet forward throughput and compile times, per BLAS setting.

Each configuration runs in its own process (``blas.ldflags`` must be set
before Theano is imported).  Writes ``benchmarks/results/blas.json``.

    python benchmarks/forward.py [--repeats 3] [--out FILE] [--cold]

``--cold`` also measures a cold compile in an empty Theano compiledir.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

CHILD = r'''
import json, sys, time
t0 = time.time()
import numpy as np
import lasagne_tagger.runtime._theano  # noqa: F401 (prepares Theano)
from lasagne_tagger.model import googlenet, imagenet
import theano
t_import = time.time() - t0
net = googlenet.build_model()
t1 = time.time()
f = imagenet.compile_forward(net, ('pool5/7x7_s1', 'prob'))
t_compile = time.time() - t1
res = {'ldflags': theano.config.blas.ldflags, 'import_s': t_import,
       'compile_s': t_compile}
rng = np.random.RandomState(0)
for batch in (8, 32):
    x = rng.randn(batch, 3, 224, 224).astype(theano.config.floatX)
    f(x)                                    # warm-up
    times = []
    for _ in range(REPEATS):
        t = time.time(); f(x); times.append(time.time() - t)
    res['forward_b%d_img_s' % batch] = batch / float(np.median(times))
print('RESULT ' + json.dumps(res))
'''


def run(ldflags, repeats, compiledir=None):
    env = dict(os.environ)
    flags = ['blas.ldflags=%s' % ldflags]
    if compiledir:
        flags.append('base_compiledir=%s' % compiledir)
    env['THEANO_FLAGS'] = ','.join(filter(None, [env.get('THEANO_FLAGS', '')]
                                          + flags))
    out = subprocess.run([sys.executable, '-c',
                          CHILD.replace('REPEATS', str(repeats))],
                         capture_output=True, text=True, env=env)
    for line in out.stdout.splitlines():
        if line.startswith('RESULT '):
            return json.loads(line[7:])
    raise SystemExit('benchmark child failed:\n' + out.stderr[-3000:])


def opts_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.
                                ArgumentDefaultsHelpFormatter)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--out', default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), 'results', 'blas.json'))
    p.add_argument('--cold', action='store_true',
                   help='also time a cold compile (empty compiledir)')
    return p


def main(argv=None):
    args = opts_parser().parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    from lasagne_tagger.runtime import blas
    configs = [('numpy', '')]
    bundled, _ = blas.find_bundled()
    if bundled is not None:
        configs.append((blas.DISTRIBUTION, blas.bundled_ldflags(bundled)))
    results = {'machine': {'cpus': os.cpu_count(),
                           'processor': platform.processor(),
                           'python': platform.python_version()},
               'when': time.strftime('%Y-%m-%d %H:%M:%S'),
               'configs': {}}
    for name, flags in configs:
        run(flags, 1)                       # fill the compile cache
        warm = run(flags, args.repeats)
        entry = {'warm': warm}
        if args.cold:
            with tempfile.TemporaryDirectory() as d:
                entry['cold_compile_s'] = run(flags, 1, d)['compile_s']
        results['configs'][name] = entry
        print(name, json.dumps(entry))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as fh:
        json.dump(results, fh, indent=2)
    print('wrote', args.out)


if __name__ == '__main__':
    main()
