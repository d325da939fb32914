"""Greedy tag decoding: the compiled scan against the slow reference.

The scan (:func:`lasagne_tagger.tagging.tagger.compile_greedy`) carries the LSTM
state from step to step; the reference (:func:`~lasagne_tagger.tagging.tagger.
slow_greedy`, the Recipes way) reruns the whole network on the growing
prefix.  Both decode the same feature rows at batch 1 and batch 100; the
tags must be identical (checked) and the speeds are written to
``benchmarks/results/decode.json``.

    python benchmarks/decode.py [--tagger CKPT] [--repeats 3]

Without ``--tagger`` the tagger has the blog's sizes (1024-d features, 512
embedding and hidden units) and random (seeded) weights over the ACS
vocabulary; with it, a trained checkpoint and random feature rows of its
width.  "Tags/s" counts the tags emitted (the end token excluded); images/s
is also given.
"""
import argparse
import os
import sys
import time


def opts_parser():
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--tagger', default=None,
                   help='trained tagger checkpoint prefix (default: blog '
                        'sizes, random weights)')
    p.add_argument('--batches', default='1,100',
                   help='comma-separated batch sizes')
    p.add_argument('--repeats', type=int, default=3,
                   help='timed runs per measurement (median kept)')
    p.add_argument('--out', default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), 'results',
        'decode.json'))
    return p


def _tagger(prefix):
    """``(net, vocab, max_len, description)``."""
    from lasagne_tagger.data import datasets
    from lasagne_tagger.tagging import tagger
    from lasagne_tagger.tagging.vocabulary import Vocabulary
    if prefix:
        decoder, meta = tagger.load_tagger(prefix)
        return decoder.net, decoder.vocab, decoder.max_len, \
            'trained checkpoint %s' % prefix
    vocab = Vocabulary.from_taxonomy(datasets.load_taxonomy('acs'))
    max_len = max(len(t) for t in vocab.taxonomy.values()) + 1
    net = tagger.build_tagger(1024, vocab.size, max_len, tagger.TaggerConfig())
    return net, vocab, max_len, 'blog sizes (1024/512/512), random weights'


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2], out


def measure(prefix=None, batches=(1, 100), repeats=3, log=print):
    """Time both decoders; returns the results dict."""
    import numpy as np
    import theano
    from lasagne_tagger.tagging import tagger
    from lasagne_tagger.tagging.vocabulary import END_ID, PAD_ID

    net, vocab, max_len, what = _tagger(prefix)
    feature_size = net['image'].shape[1]
    t = time.perf_counter()
    greedy = tagger.compile_greedy(net, max_len)
    compile_scan = time.perf_counter() - t
    t = time.perf_counter()
    seq_probs = tagger.compile_sequence_probs(net)
    compile_slow = time.perf_counter() - t
    rng = np.random.RandomState(0)
    result = {'tagger': what, 'vocab_size': vocab.size, 'max_len': max_len,
              'compile_s': {'scan': compile_scan, 'slow': compile_slow},
              'batches': {}}
    for batch in batches:
        # note: random features scaled like ReLU pool5 activations (>= 0)
        x = np.abs(rng.randn(batch, feature_size)).astype(
            theano.config.floatX)
        greedy(x)                                      # warm-up
        s_scan, (tok_scan, p_scan) = _median_time(lambda: greedy(x), repeats)
        tagger.slow_greedy(seq_probs, x, max_len, vocab.size)
        s_slow, (tok_slow, p_slow) = _median_time(
            lambda: tagger.slow_greedy(seq_probs, x, max_len, vocab.size),
            repeats)
        if not np.array_equal(tok_scan, tok_slow):
            raise SystemExit('batch %d: the scan and the slow reference '
                             'decoded different tags' % batch)
        tags = int(np.sum((tok_scan != END_ID) & (tok_scan != PAD_ID)))
        entry = {'tags': tags,
                 'scan_s': s_scan, 'slow_s': s_slow,
                 'scan_tags_per_s': tags / s_scan,
                 'slow_tags_per_s': tags / s_slow,
                 'scan_images_per_s': batch / s_scan,
                 'slow_images_per_s': batch / s_slow,
                 'speedup': s_slow / s_scan,
                 'max_abs_prob_diff': float(np.max(np.abs(p_scan - p_slow)))}
        result['batches'][str(batch)] = entry
        log('batch %3d: %d tags; scan %.1f tags/s, slow reference %.1f '
            'tags/s (x%.1f); identical tags'
            % (batch, tags, entry['scan_tags_per_s'],
               entry['slow_tags_per_s'], entry['speedup']))
    return result


def main(argv=None):
    args = opts_parser().parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    import lasagne_tagger.runtime._theano  # noqa: F401 (prepares Theano)
    result = measure(args.tagger, [int(b) for b in args.batches.split(',')],
                     args.repeats)
    from common import write_result
    write_result(result, args.out)


if __name__ == '__main__':
    main()
