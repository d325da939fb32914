"""Max-pool implementations in GoogLeNet: the C op against the switch graph.

Builds the project's GoogLeNet with ``pool_impl='op'`` and ``'graph'``
(:class:`lasagne_tagger.pooling.CaffeMaxPool2DLayer`), compiles a forward
and an SGD training step for each, checks they compute the same loss, and
times them interleaved (so a busy machine slows both alike).  Writes
``benchmarks/results/pooling.json``.

    python benchmarks/pooling.py [--image-size 64 --width 0.25 --batch 32]
"""
import argparse
import json
import os
import sys
import time


def opts_parser():
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--image-size', type=int, default=64)
    p.add_argument('--width', type=float, default=0.25)
    p.add_argument('--batch', type=int, default=32)
    p.add_argument('--repeats', type=int, default=5,
                   help='interleaved timed rounds (median kept)')
    p.add_argument('--out', default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), 'results',
        'pooling.json'))
    return p


def _compile(impl, image_size, width):
    import lasagne
    import theano
    import theano.tensor as T
    from lasagne_tagger import googlenet
    x, y = T.tensor4('x'), T.ivector('y')
    net = googlenet.build_model(x, image_size=image_size, width=width,
                                num_classes=10, pool_impl=impl)
    lasagne.random.get_rng().seed(1)
    params = lasagne.layers.get_all_params(net['prob'], trainable=True)
    rng = __import__('numpy').random.RandomState(0)
    for p in params:                    # the same weights for both
        v = p.get_value()
        p.set_value((rng.randn(*v.shape) * 0.05).astype(v.dtype))
    prob = lasagne.layers.get_output(net['prob'])
    loss = T.nnet.categorical_crossentropy(prob, y).mean()
    t = time.perf_counter()
    forward = theano.function([x], prob)
    t_fwd = time.perf_counter() - t
    t = time.perf_counter()
    train = theano.function([x, y], loss, updates=lasagne.updates.sgd(
        loss, params, 0.0))            # lr 0: weights stay comparable
    t_train = time.perf_counter() - t
    return forward, train, {'compile_forward_s': t_fwd,
                            'compile_train_s': t_train}


def measure(image_size, width, batch, repeats, log=print):
    import numpy as np
    import theano
    rng = np.random.RandomState(0)
    x = (rng.randn(batch, 3, image_size, image_size) * 50).astype(
        theano.config.floatX)
    y = rng.randint(0, 10, batch).astype('int32')
    fns, result = {}, {'image_size': image_size, 'width': width,
                       'batch': batch, 'impls': {}}
    for impl in ('op', 'graph'):
        forward, train, info = _compile(impl, image_size, width)
        fns[impl] = forward, train
        result['impls'][impl] = info
    losses = {impl: float(fns[impl][1](x, y)) for impl in fns}
    probs = {impl: fns[impl][0](x) for impl in fns}
    result['max_abs_prob_diff'] = float(np.max(np.abs(probs['op']
                                                      - probs['graph'])))
    result['losses'] = losses
    times = {(impl, kind): [] for impl in fns for kind in (0, 1)}
    for _ in range(repeats):
        for impl in fns:
            for kind, args in ((0, (x,)), (1, (x, y))):
                t = time.perf_counter()
                fns[impl][kind](*args)
                times[impl, kind].append(time.perf_counter() - t)
    for (impl, kind), ts in times.items():
        key = ('forward' if kind == 0 else 'train') + '_img_s'
        result['impls'][impl][key] = batch / float(np.median(ts))
    for key in ('forward_img_s', 'train_img_s'):
        result[key.replace('img_s', 'speedup')] = (
            result['impls']['op'][key] / result['impls']['graph'][key])
    log(json.dumps(result, indent=1))
    return result


def main(argv=None):
    args = opts_parser().parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    import lasagne_tagger  # noqa: F401
    result = measure(args.image_size, args.width, args.batch, args.repeats)
    from common import write_result
    write_result(result, args.out)


if __name__ == '__main__':
    main()
