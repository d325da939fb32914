"""Theano reference vs the PyTorch port, on the same machine, in one run.

GoogLeNet forward and training-step images/s at 224 px (batch 8 and 32;
the port also with channels_last) and greedy decoding (tags/s and
images/s) with a full-size tagger (512 units).  Both sides use the same seeded random weights: the
Theano side exports them in a one-image reference bundle, which the port
reads.  Each side runs in its own process, the two alternating for
``--rounds`` rounds (the port in ``.venv-port`` unless ``--port-python``
says otherwise); medians are kept, and ``best_port_layout_over_theano``
compares Theano with the port's faster layout (NCHW or channels_last).
Writes ``benchmarks/results/port_speed.json``.

    python benchmarks/port_speed.py [--repeats 5] [--rounds 3]
        [--decode-rows 200] [--float {float32,float64}] [--quick]

``--quick`` is a smoke run (batch 2, one repeat, 20 rows): its numbers
mean nothing.
"""
import argparse
import json
import os
import platform
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

THEANO_CHILD = r'''
import json, sys, time
import numpy as np
import lasagne_tagger.runtime._theano  # noqa: F401 (prepares Theano)
from lasagne_tagger.runtime import allocator
from lasagne_tagger.ports import bundle, reference
from lasagne_tagger.model import googlenet, imagenet
from lasagne_tagger.tagging import tagger
import theano
cfg = json.loads(sys.argv[1])
# the package's malloc settings (compiling would apply them anyway), as on
# the port's side
res = {'floatX': theano.config.floatX,
       'blas_ldflags': theano.config.blas.ldflags,
       'malloc_tuning': allocator.tune()}
# the weights the port reads too
with bundle.open_bundle(cfg['bundle']) as r:
    cnn_w, tag_w = r.weights('cnn'), r.weights('tagger')
    info = r.model('tagger')
net = googlenet.build_model()
reference.set_cnn_weights(net, cnn_w)
t = time.time()
forward = imagenet.compile_forward(net, ('prob',))
res['compile_forward_s'] = time.time() - t
rng = np.random.RandomState(0)
for batch in cfg['batches']:
    x = rng.randn(batch, 3, 224, 224).astype(theano.config.floatX) * 50
    forward(x)
    times = []
    for _ in range(cfg['repeats']):
        t = time.time(); forward(x); times.append(time.time() - t)
    res['forward_b%d_img_s' % batch] = batch / float(np.median(times))
if cfg['train']:
    # the fine-tuning step the project trains with (finetune.compile_
    # functions: 15-way head, dropout 0.4, L2, Nesterov momentum SGD)
    from lasagne_tagger.training import finetune
    config = finetune.FinetuneConfig(from_scratch=True, dropout=0.4)
    tnet, _ = finetune.build_network(config, 15, 224)
    t = time.time()
    train = finetune.compile_functions(tnet, config)[0]
    res['compile_train_s'] = time.time() - t
    for batch in cfg['batches']:
        x = rng.randn(batch, 3, 224, 224).astype(theano.config.floatX) * 50
        y = rng.randint(0, 15, batch).astype('int32')
        train(x, y)
        times = []
        for _ in range(cfg['repeats']):
            t = time.time(); train(x, y); times.append(time.time() - t)
        res['train_b%d_img_s' % batch] = batch / float(np.median(times))
feats = np.load(cfg['features']).astype(theano.config.floatX)
max_len = info['max_len']
t_net = tagger.build_tagger(
    info['feature_size'], len(info['vocabulary']['tags']) + 3, max_len,
    tagger.TaggerConfig(embed_size=info['embed_size'],
                        hidden_size=info['hidden_size'], dropout=0.0))
reference.set_tagger_weights(t_net, tag_w)
t = time.time()
greedy = tagger.compile_greedy(t_net, max_len)
res['compile_decode_s'] = time.time() - t
greedy(feats[:2])
times = []
for _ in range(cfg['repeats']):
    t = time.time(); tokens, _ = greedy(feats); times.append(time.time() - t)
tags = int(((tokens != 0) & (tokens != 2)).sum())
res['decode_rows'] = len(feats)
res['decode_tags'] = tags
res['decode_img_s'] = len(feats) / float(np.median(times))
res['decode_tags_s'] = tags / float(np.median(times))
res['tokens'] = tokens.tolist()
print('RESULT ' + json.dumps(res))
'''

PORT_CHILD = r'''
import json, sys, time
import numpy as np
import torch
from lasagne_tagger.runtime import allocator
from lasagne_tagger.ports import bundle
from lasagne_tagger.ports import torch_port as p
cfg = json.loads(sys.argv[1])
# the same glibc malloc settings as the Theano side
res = {'torch': torch.__version__, 'threads': torch.get_num_threads(),
       'dtype': cfg['dtype'], 'device': cfg['device'],
       'malloc_tuning': allocator.tune()}
with bundle.open_bundle(cfg['bundle']) as r:
    cnn_w, tag_w = r.weights('cnn'), r.weights('tagger')
    max_len = r.model('tagger')['max_len']
rng = np.random.RandomState(0)
for channels_last in (False, True):
    net = p.GoogLeNet(cnn_w, cfg['dtype'], cfg['device'], channels_last)
    suffix = '_channels_last' if channels_last else ''
    for batch in cfg['batches']:
        x = torch.as_tensor(rng.randn(batch, 3, 224, 224) * 50).to(
            cfg['device'], getattr(torch, cfg['dtype']))
        with torch.inference_mode():
            net.forward(x, keep=False)
            times = []
            for _ in range(cfg['repeats']):
                if cfg['device'] != 'cpu': torch.cuda.synchronize()
                t = time.time(); net.forward(x, keep=False)
                if cfg['device'] != 'cpu': torch.cuda.synchronize()
                times.append(time.time() - t)
        res['forward_b%d%s_img_s' % (batch, suffix)] = \
            batch / float(np.median(times))
# the same training step: 15-way head, dropout 0.4 before it, cross-
# entropy + L2 (SGD weight decay on every weight and bias: what Lasagne's
# regularize_network_params covers is the weights only, a negligible
# difference in work), Nesterov momentum
for channels_last in (False, True) if cfg['train'] else ():
    net = p.GoogLeNet(cnn_w, cfg['dtype'], cfg['device'], channels_last)
    net.params[p.CLASSIFIER] = (
        net._tensor(rng.randn(net.feature_size, 15) * 0.01),
        net._tensor(np.zeros(15)))
    params = [t.requires_grad_() for pair in net.params.values()
              for t in pair]
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9, nesterov=True,
                          weight_decay=1e-4)
    W, b = net.params[p.CLASSIFIER]
    suffix = '_channels_last' if channels_last else ''

    def step(x, y):
        opt.zero_grad()
        feats = net.forward(x, keep=False)[p.FEATURE_LAYER]
        logits = torch.addmm(b, torch.nn.functional.dropout(
            feats, 0.4, training=True), W)
        loss = torch.nn.functional.cross_entropy(logits, y)
        loss.backward()
        opt.step()
        if cfg['device'] != 'cpu': torch.cuda.synchronize()
    for batch in cfg['batches']:
        x = torch.as_tensor(rng.randn(batch, 3, 224, 224) * 50).to(
            cfg['device'], getattr(torch, cfg['dtype']))
        y = torch.as_tensor(rng.randint(0, 15, batch)).to(cfg['device'])
        step(x, y)
        times = []
        for _ in range(cfg['repeats']):
            t = time.time(); step(x, y); times.append(time.time() - t)
        res['train_b%d%s_img_s' % (batch, suffix)] = \
            batch / float(np.median(times))
feats = np.load(cfg['features'])
tagger = p.Tagger(tag_w, max_len, cfg['dtype'], cfg['device'])
with torch.inference_mode():
    tagger.greedy(feats[:2], trace=False)
    times = []
    for _ in range(cfg['repeats']):
        t = time.time(); out = tagger.greedy(feats, trace=False)
        tokens = out['tokens'].cpu().numpy(); times.append(time.time() - t)
tags = int(((tokens != 0) & (tokens != 2)).sum())
res['decode_rows'] = len(feats)
res['decode_tags'] = tags
res['decode_img_s'] = len(feats) / float(np.median(times))
res['decode_tags_s'] = tags / float(np.median(times))
res['tokens'] = tokens.tolist()
print('RESULT ' + json.dumps(res))
'''


def _medians(rounds):
    """Per key, the median over rounds of numeric results (other values
    from the first round)."""
    out = {}
    for key, value in rounds[0].items():
        if isinstance(value, (int, float)):
            values = sorted(r[key] for r in rounds)
            out[key] = values[len(values) // 2]
        else:
            out[key] = value
    return out


def _child(python, code, cfg, env=None):
    full_env = dict(os.environ, **(env or {}))
    full_env['PYTHONPATH'] = ROOT
    done = subprocess.run([python, '-c', code, json.dumps(cfg)], cwd=ROOT,
                          capture_output=True, text=True, env=full_env)
    for line in done.stdout.splitlines():
        if line.startswith('RESULT '):
            return json.loads(line[7:])
    raise SystemExit('benchmark child failed:\n' + done.stderr[-3000:])


def opts_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.
                                ArgumentDefaultsHelpFormatter)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--rounds', type=int, default=3,
                   help='Theano and port children, alternately; medians')
    p.add_argument('--decode-rows', type=int, default=200,
                   help='images decoded per timed call')
    p.add_argument('--hidden', type=int, default=512,
                   help='tagger embedding and LSTM units')
    p.add_argument('--float', dest='dtype', default='float32',
                   choices=['float32', 'float64'],
                   help='floatX of the Theano side and the port\'s dtype')
    p.add_argument('--port-python', default=os.path.join(
        ROOT, '.venv-port', 'bin', 'python'))
    p.add_argument('--device', default='cpu', help='torch device')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--no-train', dest='train', action='store_false',
                   help='skip the training-step measurement')
    p.add_argument('--quick', action='store_true', help='smoke run')
    p.add_argument('--out', default=os.path.join(
        ROOT, 'benchmarks', 'results', 'port_speed.json'))
    return p


def main(argv=None):
    args = opts_parser().parse_args(argv)
    batches = [2] if args.quick else [8, 32]
    repeats = 1 if args.quick else args.repeats
    rows = 20 if args.quick else args.decode_rows
    rounds = 1 if args.quick else args.rounds
    theano_env = {'THEANO_FLAGS': ','.join(filter(None, [
        'floatX=%s' % args.dtype, os.environ.get('THEANO_FLAGS', '')]))}
    with tempfile.TemporaryDirectory() as tmp:
        ref_path = os.path.join(tmp, 'weights.h5')
        feats_path = os.path.join(tmp, 'features.npy')
        # one image: the bundle only carries the weights across
        subprocess.run(
            [os.path.join(ROOT, '.venv', 'bin', 'lasagne-tagger'),
             'reference', 'export', '--count', '1', '--seed',
             str(args.seed), '--hidden-size', str(args.hidden), '--out',
             ref_path, '--quiet'], cwd=ROOT, check=True,
            env=dict(os.environ, **theano_env), stdout=subprocess.DEVNULL)
        import numpy as np
        rng = np.random.RandomState(1)
        # pool5-like features: non-negative, varied per image
        np.save(feats_path, np.abs(rng.randn(rows, 1024)).astype(args.dtype))
        cfg = {'seed': args.seed, 'batches': batches, 'repeats': repeats,
               'features': feats_path, 'hidden': args.hidden,
               'bundle': ref_path, 'dtype': args.dtype,
               'train': args.train,
               'device': args.device}
        samples = {'theano': [], 'torch_port': []}
        for _ in range(rounds):        # interleaved: slow spells hit both
            samples['theano'].append(_child(
                os.path.join(ROOT, '.venv', 'bin', 'python'), THEANO_CHILD,
                cfg, theano_env))
            samples['torch_port'].append(_child(args.port_python,
                                                PORT_CHILD, cfg))
    same = all(r.pop('tokens') == samples['theano'][0]['tokens']
               for r in samples['theano'][1:] + samples['torch_port'])
    samples['theano'][0].pop('tokens')
    theano_res, port_res = (_medians(samples[side])
                            for side in ('theano', 'torch_port'))
    ratios, best = {}, {}
    for key, value in port_res.items():
        base = key.replace('_channels_last', '')
        if key.endswith('_s') and base in theano_res:
            ratios[key] = value / theano_res[base]
            best[base] = max(best.get(base, 0.0), ratios[key])
    results = {'machine': {'cpus': os.cpu_count(),
                           'processor': platform.processor(),
                           'python': platform.python_version()},
               'when': time.strftime('%Y-%m-%d %H:%M:%S'),
               'quick': args.quick, 'dtype': args.dtype,
               'rounds': rounds, 'theano': theano_res,
               'torch_port': port_res, 'port_over_theano': ratios,
               'best_port_layout_over_theano': best, 'same_tokens': same,
               'samples': samples,
               'note': 'Medians of %d rounds; each round runs Theano, then '
                       'the port, on this machine.' % rounds}
    print(json.dumps(results, indent=2))
    if not args.quick or args.out != opts_parser().get_default('out'):
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, 'w') as fh:
            json.dump(results, fh, indent=2)
        print('wrote', args.out)


if __name__ == '__main__':
    main()
