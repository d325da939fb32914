"""Cold compiles with and without the package's compile speed-ups.

Each variant compiles, in a fresh process with an empty Theano compiledir
and no function cache, the demo's fine-tuning functions (GoogLeNet width
1/8 at 32 px: training step and evaluation) and the tagger's training
functions (128 units: a scan and its gradient), in float32:

- ``serial``: Theano's own loop (``LASAGNE_TAGGER_NO_PARALLEL_COMPILE=1``,
  ``LASAGNE_TAGGER_NO_PCH=1``);
- ``parallel``: the modules compiled side by side (no precompiled header);
- ``parallel+pch``: side by side, against precompiled headers (the
  default).

Rounds alternate the variants; medians are reported.

    python benchmarks/compile_speed.py [--rounds 2]

Writes ``benchmarks/results/compile.json``.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = (('serial', {'LASAGNE_TAGGER_NO_PARALLEL_COMPILE': '1',
                        'LASAGNE_TAGGER_NO_PCH': '1'}),
            ('parallel', {'LASAGNE_TAGGER_NO_PCH': '1'}),
            ('parallel+pch', {}))

CHILD = r'''
import json, os, time
import lasagne_tagger.runtime._theano  # noqa: F401 (prepares Theano)
from lasagne_tagger.training import finetune
from lasagne_tagger.tagging import tagger
import theano
out = {}
t = time.time()
cfg = finetune.FinetuneConfig(store='x', from_scratch=True, width=0.125,
                              batch_size=32)
net, _ = finetune.build_network(cfg, 8, 32)
finetune.compile_functions(net, cfg)
out['finetune_s'] = time.time() - t
t = time.time()
tcfg = tagger.TaggerConfig(features='x', taxonomy='x', embed_size=128,
                           hidden_size=128)
tagger.compile_training(tagger.build_tagger(128, 30, 5, tcfg), tcfg)
out['tagger_s'] = time.time() - t
out['modules'] = len([d for d in os.listdir(theano.config.compiledir)
                      if d.startswith('tmp')])
print('RESULT ' + json.dumps(out))
'''


def opts_parser():
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--rounds', type=int, default=2)
    p.add_argument('--out', default=os.path.join(HERE, 'results',
                                                 'compile.json'))
    return p


def main(argv=None):
    args = opts_parser().parse_args(argv)
    root = os.path.dirname(HERE)
    runs = {name: [] for name, _ in VARIANTS}
    for r in range(args.rounds):
        for name, extra in VARIANTS:
            with tempfile.TemporaryDirectory() as tmp:
                env = dict(os.environ, LASAGNE_TAGGER_NO_FUNCTION_CACHE='1',
                           THEANO_FLAGS='floatX=float32,base_compiledir='
                           + tmp, PYTHONPATH=root, **extra)
                out = subprocess.run([sys.executable, '-c', CHILD], env=env,
                                     capture_output=True, text=True)
                if out.returncode != 0:
                    raise SystemExit(out.stderr[-3000:])
                line = [l for l in out.stdout.splitlines()
                        if l.startswith('RESULT ')][-1]
                got = json.loads(line[len('RESULT '):])
                runs[name].append(got)
                print('round %d %-13s %s' % (r + 1, name, got), flush=True)
    result = {'rounds': args.rounds, 'variants': {}}
    for name, _ in VARIANTS:
        rows = runs[name]
        result['variants'][name] = {
            key: statistics.median(row[key] for row in rows)
            for key in ('finetune_s', 'tagger_s', 'modules')}
        result['variants'][name]['runs'] = rows
    base = result['variants']['serial']
    result['speedup'] = {
        name: {key: base[key] / v[key] for key in ('finetune_s', 'tagger_s')}
        for name, v in result['variants'].items()}
    sys.path.insert(0, HERE)
    from common import write_result
    write_result(result, args.out)


if __name__ == '__main__':
    main()
