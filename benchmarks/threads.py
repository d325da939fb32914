"""How libgomp's and OpenBLAS's idle threads share the cores, interleaved.

On a machine with few cores, Theano's OpenMP loops (convolutions, large
element-wise ops, our Caffe pools) and OpenBLAS's own threads (Theano's
``Dot22``/``Gemm``: the LSTM, the classifier) take turns; after its work
each library's threads spin for a while before they sleep, and what they
spin on is the core the other one needs.  This measures, for each setting
of the environment variables that control the spin, in one child process
per setting and round (warm compile cache), float32:

* ``tagger_ms``: the tagger's training step (128 units, batch 100);
* ``decode_rows_s``: greedy decoding (512 units, batch 200);
* ``forward_b8_img_s`` / ``train_b8_img_s``: GoogLeNet at 224 px, batch 8,
  forward and the fine-tuning step.

Settings alternate within every round, so slow spells of a shared machine
hit them alike; medians over rounds are reported.  Every setting names
both variables, so the package's own defaults (``theano_defaults``) do not
enter.  Writes ``benchmarks/results/threads.json``.

    python benchmarks/threads.py [--rounds 3]
        [--setting 'GOMP_SPINCOUNT=300000;OPENBLAS_THREAD_TIMEOUT=28' ...]
"""
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import environment_items, settings_parser  # noqa: E402
ROOT = os.path.dirname(HERE)

# libgomp's default spin count is 300000, OpenBLAS's thread timeout 2**28
# cycles (the variable holds the exponent, clamped to 4..30)
DEFAULT_SETTINGS = (
    'GOMP_SPINCOUNT=300000;OPENBLAS_THREAD_TIMEOUT=28',
    'GOMP_SPINCOUNT=1000;OPENBLAS_THREAD_TIMEOUT=28',
    'GOMP_SPINCOUNT=300000;OPENBLAS_THREAD_TIMEOUT=28;OPENBLAS_NUM_THREADS=1',
    'GOMP_SPINCOUNT=300000;OPENBLAS_THREAD_TIMEOUT=4',
    'GOMP_SPINCOUNT=20000;OPENBLAS_THREAD_TIMEOUT=4',
    'GOMP_SPINCOUNT=1000;OPENBLAS_THREAD_TIMEOUT=4',
)

CHILD = r'''
import json, sys, time
sys.path.insert(0, ROOT)
import numpy as np
import lasagne_tagger.runtime._theano  # noqa: F401 (prepares Theano)
from lasagne_tagger.runtime import allocator
from lasagne_tagger.training import finetune
from lasagne_tagger.model import googlenet, imagenet
from lasagne_tagger.tagging import tagger
import theano
allocator.tune()
fx = theano.config.floatX
rng = np.random.RandomState(0)


def median_s(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    return float(np.median(times))


res = {}
vocab, length = 27, 5
config = tagger.TaggerConfig(embed_size=128, hidden_size=128)
train = tagger.compile_training(
    tagger.build_tagger(1024, vocab, length, config), config)[0]
args = (rng.randn(100, 1024).astype(fx),
        rng.randint(0, vocab, (100, length)).astype('int32'),
        rng.randint(0, vocab, (100, length)).astype('int32'),
        np.ones((100, length), fx))
res['tagger_ms'] = 1000 * median_s(lambda: train(*args), 30)
greedy = tagger.compile_greedy(tagger.build_tagger(
    1024, vocab, 4, tagger.TaggerConfig(dropout=0.0)), 4)
feats = rng.randn(200, 1024).astype(fx)
res['decode_rows_s'] = 200 / median_s(lambda: greedy(feats), 15)
forward = imagenet.compile_forward(googlenet.build_model(), ('prob',))
x = (rng.randn(8, 3, 224, 224) * 50).astype(fx)
res['forward_b8_img_s'] = 8 / median_s(lambda: forward(x), 5)
config = finetune.FinetuneConfig(from_scratch=True, dropout=0.4)
step = finetune.compile_functions(
    finetune.build_network(config, 15, 224)[0], config)[0]
y = rng.randint(0, 15, 8).astype('int32')
res['train_b8_img_s'] = 8 / median_s(lambda: step(x, y), 4)
print('RESULT ' + json.dumps(res))
'''


def parse_setting(text):
    """``'GOMP_SPINCOUNT=1000;OPENBLAS_THREAD_TIMEOUT=4'`` -> dict."""
    return environment_items(text, text.split(';'))


def _child(env):
    code = CHILD.replace('ROOT', repr(ROOT))
    done = subprocess.run([sys.executable, '-c', code], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith('RESULT '):
            return json.loads(line[7:])
    raise RuntimeError('child failed:\n%s' % done.stderr[-3000:])


def opts_parser():
    return settings_parser(__doc__, 'VAR=value[;VAR=value...]',
                           DEFAULT_SETTINGS, 'threads.json')


def main(argv=None):
    import run
    from common import write_result
    args = opts_parser().parse_args(argv)
    settings = args.settings or list(DEFAULT_SETTINGS)
    envs = [parse_setting(s) for s in settings]      # fail before measuring
    samples = {s: {} for s in settings}
    for r in range(args.rounds):
        for setting, extra in zip(settings, envs):
            env = dict(os.environ, **extra)
            env['THEANO_FLAGS'] = run.base_theano_flags()
            res = _child(env)
            print('round %d %s %s' % (r + 1, setting, ' '.join(
                '%s=%.1f' % kv for kv in sorted(res.items()))), flush=True)
            for key, value in res.items():
                samples[setting].setdefault(key, []).append(value)
    medians = {s: {k: statistics.median(v) for k, v in by.items()}
               for s, by in samples.items()}
    os.environ['THEANO_FLAGS'] = run.base_theano_flags()
    write_result({'rounds': args.rounds, 'settings': settings,
                  'medians': medians, 'samples': samples}, args.out)
    print(json.dumps(medians, indent=1))


if __name__ == '__main__':
    main()
