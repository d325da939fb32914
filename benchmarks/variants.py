"""Two builds of the project's GoogLeNet, same maths, timed interleaved.

``--compare pool``: max pooling as the C op against the ``switch`` graph
(``layer_options={'pool': {'impl': 'op' / 'graph'}}``,
:mod:`lasagne_tagger.model.pooling`).
``--compare layers``: our convolution and LRN layers
(:mod:`lasagne_tagger.model.layers`) against Lasagne 0.1's own.
``--compare conv``: convolutions as :mod:`lasagne_tagger.ops.conv_op` against
Theano's ``CorrMM``.
``--compare bias_relu``: biases and rectifiers as
:mod:`lasagne_tagger.ops.bias_relu_op` against Theano's graph.
``--compare unfold``: large images unfolded in blocks of rows
(:data:`lasagne_tagger.ops.conv_op.UNFOLD_BYTES`) against whole.
``--compare concat``: inception outputs rectified straight into the
concatenation (:func:`lasagne_tagger.model.layers.ConcatLayer`) against a
``BiasReLU`` per branch and Theano's ``Join``.
``--compare epilogue``: a layer's bias and rectifier inside the
convolution's loop in the compiled forward graph
(:func:`lasagne_tagger.ops.conv_op.fuse_bias_relu`) against a ``BiasReLU``.

Compiles a forward pass and an SGD training step (learning rate 0, so the
weights stay equal) for each, checks they compute the same outputs, and
times them call by call in turn, in one process, so a busy machine slows
both alike, in ``floatX=float32`` unless ``THEANO_FLAGS`` sets ``floatX``.
Writes ``benchmarks/results/<compare>.json``.

    python benchmarks/variants.py [--compare layers] [--image-size 224
        --width 1 --batch 8 --repeats 10]
"""
import argparse
import json
import os
import time


def opts_parser():
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--compare', choices=sorted(VARIANTS), default='layers')
    p.add_argument('--image-size', type=int, default=224)
    p.add_argument('--width', type=float, default=1.0)
    p.add_argument('--batch', type=int, action='append', dest='batches',
                   help='batch size (repeat for several; default 8 and 32)')
    p.add_argument('--repeats', type=int, default=10,
                   help='interleaved timed rounds (median kept)')
    p.add_argument('--out', help='default: benchmarks/results/'
                                 '<compare>.json')
    return p


# {comparison: {variant: (pool impl, run.layer_options name[, excluded
# optimization])}};
# the first variant is the one that ships, ``speedup`` is its speed over
# the second's.
VARIANTS = {
    'pool': {'op': ('op', 'ours'), 'graph': ('graph', 'ours')},
    'layers': {'ours': ('auto', 'ours'), 'lasagne': ('auto', 'lasagne')},
    'conv': {'conv_op': ('auto', 'ours'), 'corrmm': ('auto', 'corrmm')},
    'bias_relu': {'bias_relu_op': ('auto', 'ours'),
                  'graph': ('auto', 'graph-bias-relu')},
    'concat': {'fused': ('auto', 'ours'), 'join': ('auto', 'join')},
    'unfold': {'blocks': ('auto', 'ours'), 'whole': ('auto', 'unblocked')},
    'epilogue': {'fused': ('auto', 'ours'),
                 'apart': ('auto', 'ours', 'lasagne_tagger_conv_bias_relu')},
}


def _compile(variant, image_size, width):
    import lasagne
    import numpy as np
    import theano
    import theano.tensor as T
    import run
    from lasagne_tagger.model import googlenet
    pool_impl, which_layers = variant[:2]
    mode = theano.compile.mode.get_default_mode()
    if len(variant) > 2:
        mode = mode.excluding(variant[2])
    options = dict(run.layer_options(which_layers))
    options['pool'] = dict(options.get('pool', {}), impl=pool_impl)
    x, y = T.tensor4('x'), T.ivector('y')
    net = googlenet.build_model(x, image_size=image_size, width=width,
                                num_classes=10, layer_options=options)
    lasagne.random.get_rng().seed(1)
    params = lasagne.layers.get_all_params(net['prob'], trainable=True)
    rng = np.random.RandomState(0)
    for p in params:                    # the same weights for both
        v = p.get_value()
        p.set_value((rng.randn(*v.shape) * 0.05).astype(v.dtype))
    prob = lasagne.layers.get_output(net['prob'])
    loss = T.nnet.categorical_crossentropy(prob, y).mean()
    t = time.perf_counter()
    forward = theano.function([x], prob, mode=mode)
    t_fwd = time.perf_counter() - t
    t = time.perf_counter()
    # lr 0 keeps the weights equal between variants; a shared variable, so
    # the optimizer cannot fold the gradient away (a constant 0 would).
    lr = theano.shared(np.asarray(0.0, theano.config.floatX), name='lr')
    train = theano.function([x, y], loss, updates=lasagne.updates.sgd(
        loss, params, lr), mode=mode)
    t_train = time.perf_counter() - t
    return forward, train, {'compile_forward_s': t_fwd,
                            'compile_train_s': t_train}


def measure(compare, image_size, width, batches, repeats, log=print):
    import numpy as np
    import theano
    variants = VARIANTS[compare]
    names = list(variants)
    fns, result = {}, {'compare': compare, 'image_size': image_size,
                       'width': width, 'repeats': repeats, 'variants': {}}
    for name in names:
        forward, train, info = _compile(variants[name], image_size, width)
        fns[name] = forward, train
        result['variants'][name] = info
    rng = np.random.RandomState(0)
    for batch in batches:
        x = (rng.randn(batch, 3, image_size, image_size) * 50).astype(
            theano.config.floatX)
        y = rng.randint(0, 10, batch).astype('int32')
        losses = {n: float(fns[n][1](x, y)) for n in names}  # also warms up
        probs = {n: fns[n][0](x) for n in names}
        result['b%d_max_abs_prob_diff' % batch] = float(
            np.max(np.abs(probs[names[0]] - probs[names[1]])))
        result['b%d_losses' % batch] = losses
        times = {(n, kind): [] for n in names for kind in (0, 1)}
        for _ in range(repeats):
            for n in names:
                for kind, args in ((0, (x,)), (1, (x, y))):
                    t = time.perf_counter()
                    fns[n][kind](*args)
                    times[n, kind].append(time.perf_counter() - t)
        for (n, kind), ts in times.items():
            key = 'b%d_%s_img_s' % (batch, 'forward' if kind == 0
                                    else 'train')
            result['variants'][n][key] = batch / float(np.median(ts))
        for kind in ('forward', 'train'):
            key = 'b%d_%s_img_s' % (batch, kind)
            result['b%d_%s_speedup' % (batch, kind)] = (
                result['variants'][names[0]][key]
                / result['variants'][names[1]][key])
        log(json.dumps({k: v for k, v in result.items()
                        if k.startswith('b%d_' % batch)}))
    return result


def main(argv=None):
    args = opts_parser().parse_args(argv)
    from common import prepare_process, write_result
    here = prepare_process()
    result = measure(args.compare, args.image_size, args.width,
                     args.batches or [8, 32], args.repeats)
    write_result(result, args.out or os.path.join(
        here, 'results', args.compare + '.json'))


if __name__ == '__main__':
    main()
