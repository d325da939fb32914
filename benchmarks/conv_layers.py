"""GoogLeNet's unfolding convolutions one at a time: our ``CorrGemm`` with
its default ``unfold_bytes`` against whole images, forward and both
gradients, timed call by call in turn in one process (float32).  Writes
GFLOP/s per layer to ``benchmarks/results/conv_layers.json``.

    python benchmarks/conv_layers.py [--batch 8 --repeats 12]
"""
import argparse
import json
import os
import time

# (name, input channels, image size, filters, kernel, stride, pad): every
# GoogLeNet geometry that unfolds (the 1x1 layers need no unfolding)
LAYERS = [
    ('conv1/7x7_s2', 3, 224, 64, 7, 2, 3),
    ('conv2/3x3', 64, 56, 192, 3, 1, 1),
    ('inception_3a/3x3', 96, 28, 128, 3, 1, 1),
    ('inception_3b/3x3', 128, 28, 192, 3, 1, 1),
    ('inception_3b/5x5', 32, 28, 96, 5, 1, 2),
    ('inception_4a/3x3', 96, 14, 208, 3, 1, 1),
    ('inception_4e/3x3', 160, 14, 320, 3, 1, 1),
    ('inception_4e/5x5', 32, 14, 128, 5, 1, 2),
    ('inception_5b/3x3', 192, 7, 384, 3, 1, 1),
]


def opts_parser():
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--repeats', type=int, default=12,
                   help='interleaved timed rounds (median kept)')
    p.add_argument('--out', help='default: benchmarks/results/'
                                 'conv_layers.json')
    return p


def measure(batch, repeats, log=print):
    import numpy as np
    import theano
    import theano.tensor as T
    from lasagne_tagger.ops.conv_op import (
        UNFOLD_BYTES, CorrGemm, CorrGemmGradInputs, CorrGemmGradWeights)
    variants = {'blocks': UNFOLD_BYTES, 'whole': None}
    rng = np.random.RandomState(0)
    result = {'batch': batch, 'repeats': repeats,
              'unfold_bytes': UNFOLD_BYTES, 'layers': {}}
    x, w, g = T.ftensor4('x'), T.ftensor4('w'), T.ftensor4('g')
    for name, c, size, m, k, s, p in LAYERS:
        out = (size + 2 * p - k) // s + 1
        xv = rng.randn(batch, c, size, size).astype('float32')
        wv = rng.randn(m, c, k, k).astype('float32')
        gv = rng.randn(batch, m, out, out).astype('float32')
        geo = dict(kernel=k, stride=s, pad=p, flip=True)
        calls = {}
        for v, unfold in variants.items():
            calls[v, 'forward'] = theano.function([x, w], CorrGemm(
                unfold_bytes=unfold, **geo)(x, w)), (xv, wv)
            calls[v, 'grad_inputs'] = theano.function([w, g], (
                CorrGemmGradInputs(unfold_bytes=unfold, **geo)(
                    w, g, [size, size]))), (wv, gv)
            calls[v, 'grad_weights'] = theano.function([x, g], (
                CorrGemmGradWeights(unfold_bytes=unfold, **geo)(x, g))), (
                    xv, gv)
        times = {key: [] for key in calls}
        for key, (f, args) in calls.items():
            f(*args)                                       # warm up
        for _ in range(repeats):
            for key, (f, args) in calls.items():
                t = time.perf_counter()
                f(*args)
                times[key].append(time.perf_counter() - t)
        flops = 2.0 * batch * m * c * k * k * out * out
        row = {'unfolded_bytes_per_image': 4 * c * k * k * out * out}
        for (v, kind), ts in times.items():
            row['%s_%s_gflop_s' % (v, kind)] = (
                flops / float(np.median(ts)) / 1e9)
        for kind in ('forward', 'grad_inputs', 'grad_weights'):
            row[kind + '_speedup'] = (row['blocks_%s_gflop_s' % kind]
                                      / row['whole_%s_gflop_s' % kind])
        result['layers'][name] = row
        log(name + ' ' + json.dumps({key: round(v, 2)
                                     for key, v in row.items()}))
    return result


def main(argv=None):
    args = opts_parser().parse_args(argv)
    from common import prepare_process, write_result
    here = prepare_process()
    result = measure(args.batch, args.repeats)
    write_result(result, args.out or os.path.join(here, 'results',
                                                  'conv_layers.json'))


if __name__ == '__main__':
    main()
