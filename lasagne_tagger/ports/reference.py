"""Export a reference bundle (:mod:`bundle`) from the Theano model.

:func:`export_reference` runs GoogLeNet and the tagger on a batch of photos
and writes every named activation, the per-step LSTM states, the greedy
tags, the inputs and the weights in the framework-neutral layout.  The
model comes from checkpoints (``--cnn``, ``--tagger``), the model zoo
(``--cnn imagenet``), or seeded random weights; :func:`train_check_tagger`
trains a small tagger on the CNN's own features of a rendered synthetic set,
so that a port can be checked on trained weights without any download.

Random weights are He-scaled, with biases drawn too (a port that drops a
bias must fail); the first two convolutions keep the pixels' scale so that
the LRNs matter, the rest of the network works at unit scale.  The random
tagger's image embedding is fitted to the features' spread so that
different images decode to different tags.
"""
import json
import os
from collections import OrderedDict

import numpy as np

from ..runtime import _theano  # noqa: F401 (prepares Theano)
from .. import atomic
from . import bundle
from ..model import googlenet
from ..errors import TaggerError

__all__ = ['embedded_crops', 'random_cnn', 'random_tagger', 'cnn_weights',
           'tagger_weights', 'set_cnn_weights', 'set_tagger_weights',
           'activation_layers', 'train_check_tagger',
           'export_reference']

DEFAULT_COUNT = 8
CHECK_TAGGER = {'embed_size': 64, 'hidden_size': 64, 'dropout': 0.2,
                'batch_size': 32, 'learning_rate': 0.003,
                'iterations': 300, 'eval_every': 150}
CHECK_PER_CLASS = (('train', 8), ('validation', 2))


def embedded_crops(image_size, count=DEFAULT_COUNT, seed=0):
    """The fixed embedded photo set: ``count`` synthetic garments (classes
    in turn, :mod:`synthetic`), rendered from ``seed`` at ``image_size``.

    Returns
    -------
    crops : ndarray, uint8 (count, image_size, image_size, 3)
    names : list of str
        ``embedded/<i>-<class>``.
    """
    from ..data import synthetic
    from ..data.preprocess import resize_and_crop
    if count < 1:
        raise TaggerError('--count must be >= 1, got %d' % count)
    size = max(int(image_size), synthetic.MIN_SIZE)
    crops, names = [], []
    for i in range(count):
        cls = synthetic.CLASSES[i % len(synthetic.CLASSES)]
        image = synthetic.render_garment(cls, size,
                                         np.random.default_rng([seed, i]))
        crops.append(resize_and_crop(image, image_size, upscale=True))
        names.append('embedded/%d-%s' % (i, cls))
    return np.stack(crops), names


def random_cnn(seed=0, width=1.0, image_size=224, num_classes=1000):
    """GoogLeNet with seeded random weights (see the module docstring).

    Returns
    -------
    net : dict of layers
    info : dict
        The bundle's ``model/cnn`` description and a ``source`` line.
    """
    net = googlenet.build_model(image_size=image_size,
                                num_classes=num_classes, width=width)
    rng = np.random.RandomState(seed)
    values = []
    for name in googlenet.PARAM_LAYERS:
        shape = net[name].W.get_value(borrow=True).shape
        fan_in = int(np.prod(shape[1:])) if len(shape) == 4 else shape[0]
        gain = 2.0 if len(shape) == 4 else 1.0
        std = np.sqrt(gain / fan_in)
        if name == 'conv2/3x3':
            # conv1 and conv2/3x3_reduce keep the pixels' scale (tens), as
            # trained filters do, so that both LRNs act as in the real
            # network (at unit scale they change almost nothing and a
            # port's LRN could be wrong unnoticed); back to unit scale here.
            std /= googlenet.INPUT_STD
        # biases at a tenth of the layer's output scale
        bias_std = 0.1 * (googlenet.INPUT_STD if name in (
            'conv1/7x7_s2', 'conv2/3x3_reduce') else 1.0)
        values.append((rng.standard_normal(shape) * std).astype('float32'))
        values.append((rng.standard_normal(shape[0] if len(shape) == 4
                                           else shape[1]) * bias_std)
                      .astype('float32'))
    googlenet.set_model_zoo_values(net, values)
    source = ('random GoogLeNet (seed %d, width %g, image size %d, %d '
              'classes)' % (seed, width, image_size, num_classes))
    return net, _cnn_info(net, image_size, num_classes, width, source)


def _cnn_info(net, image_size, num_classes, width, source):
    return {'architecture': 'bvlc_googlenet', 'image_size': int(image_size),
            'num_classes': int(num_classes), 'width': float(width),
            'param_layers': list(googlenet.PARAM_LAYERS),
            'layers': activation_layers(net), 'source': source}


def activation_layers(net):
    """Names of the layers whose outputs a bundle holds, in forward order
    (every named layer but the input and dropout)."""
    from lasagne.layers import DropoutLayer, InputLayer
    return [name for name, layer in net.items()
            if not isinstance(layer, (InputLayer, DropoutLayer))]


def _checkpoint_cnn(source):
    if source == 'imagenet':
        from ..model.imagenet import load_imagenet_model
        net, _ = load_imagenet_model()
        return net, _cnn_info(net, 224, 1000, 1.0,
                              'ImageNet model-zoo weights')
    from ..training.finetune import load_classifier
    net, meta = load_classifier(source)
    return net, _cnn_info(net, meta['image_size'], len(meta['classes']),
                          meta['config'].get('width', 1.0),
                          'classifier checkpoint %s' % os.fspath(source))


def random_tagger(feature_size, seed=0, hidden_size=32,
                  feature_layer=googlenet.FEATURE_LAYER, features=None):
    """A tagger over the synthetic taxonomy with seeded random weights.

    With ``features`` (N, feature_size), the image embedding is centred on
    their mean and scaled by their spread, so that different images start
    the LSTM from clearly different states and decode to different tags.

    Returns ``(net, vocab, max_len, info)`` (``info`` as
    :func:`_tagger_info`).
    """
    import lasagne
    from ..data import synthetic
    from ..tagging import tagger
    from ..tagging.vocabulary import Vocabulary
    vocab = Vocabulary.from_taxonomy(
        {c: list(t) for c, t in synthetic.TAXONOMY.items()})
    max_len = max(len(t) for t in synthetic.TAXONOMY.values())
    config = tagger.TaggerConfig(embed_size=hidden_size,
                                 hidden_size=hidden_size, dropout=0.0)
    lasagne.random.set_rng(np.random.RandomState(seed))
    net = tagger.build_tagger(feature_size, vocab.size, max_len, config)
    rng = np.random.RandomState([seed, 17])
    for param in lasagne.layers.get_all_params(net['logits']):
        shape = param.get_value(borrow=True).shape
        name = param.name.rsplit('.', 1)[-1]
        if len(shape) == 2 and name.startswith('W') and shape[0] > 1:
            # dense and gate matrices: 1.5 / sqrt(fan in); embeddings N(0, 1)
            std = 1.0 if name == 'W' and param is net['tag_embedding'].W \
                else 1.5 / np.sqrt(shape[0])
        elif name in ('cell_init', 'hid_init'):
            std = 0.1
        else:
            std = 0.5                     # biases and peepholes
        param.set_value((rng.standard_normal(shape) * std)
                        .astype(param.dtype))
    if features is not None and len(features) > 1:
        features = np.asarray(features, dtype=np.float64)
        spread = float(features.std(axis=0).mean()) or 1.0
        W = rng.standard_normal((feature_size, hidden_size)) * (
            1.5 / (np.sqrt(feature_size) * spread))
        layer = net['image_embedding']
        layer.W.set_value(W.astype(layer.W.dtype))
        layer.b.set_value((-features.mean(axis=0) @ W).astype(layer.b.dtype))
    source = ('random tagger (seed %d, hidden size %d, synthetic taxonomy)'
              % (seed, hidden_size))
    return net, vocab, max_len, _tagger_info(net, vocab, max_len,
                                             feature_layer, source)


def _tagger_info(net, vocab, max_len, feature_layer, source):
    from ..tagging.vocabulary import END_ID, PAD_ID, START_ID
    return {'vocabulary': vocab.to_dict(), 'max_len': int(max_len),
            'feature_layer': feature_layer,
            'feature_size': int(net['image'].shape[1]),
            'embed_size': int(net['image_embedding'].num_units),
            'hidden_size': int(net['lstm'].num_units),
            'gate_order': list(bundle.GATE_ORDER),
            'peephole_order': list(bundle.PEEPHOLE_ORDER),
            'nonlinearities': {'gates': 'sigmoid', 'cell': 'tanh',
                               'hidden': 'tanh'},
            'special_ids': {'pad': PAD_ID, 'start': START_ID, 'end': END_ID},
            'source': source}


def _checkpoint_tagger(prefix):
    from ..tagging.tagger import load_tagger
    decoder, meta = load_tagger(prefix)
    info = _tagger_info(decoder.net, decoder.vocab, decoder.max_len,
                        meta.get('feature_layer', googlenet.FEATURE_LAYER),
                        'tagger checkpoint %s' % os.fspath(prefix))
    return decoder.net, decoder.vocab, decoder.max_len, info


def cnn_weights(net):
    """Neutral CNN weights: ``cnn/<layer>/W`` (Caffe OIHW cross-correlation
    filters; ``loss3/classifier`` as [in, out]) and ``cnn/<layer>/b``."""
    values = googlenet.get_model_zoo_values(net)
    out = OrderedDict()
    for i, name in enumerate(googlenet.PARAM_LAYERS):
        out['cnn/%s/W' % name] = values[2 * i]
        out['cnn/%s/b' % name] = values[2 * i + 1]
    return out


def tagger_weights(net):
    """Neutral tagger weights (gates stacked input, forget, cell, output;
    peepholes input, forget, output), keyed ``tagger/...``."""
    lstm = net['lstm']
    g = lambda p: p.get_value()
    gates = ('ingate', 'forgetgate', 'cell', 'outgate')
    return OrderedDict([
        ('tagger/image_embedding/W', g(net['image_embedding'].W)),
        ('tagger/image_embedding/b', g(net['image_embedding'].b)),
        ('tagger/tag_embedding/W', g(net['tag_embedding'].W)),
        ('tagger/lstm/W_in', np.concatenate(
            [g(getattr(lstm, 'W_in_to_' + k)) for k in gates], axis=1)),
        ('tagger/lstm/W_hid', np.concatenate(
            [g(getattr(lstm, 'W_hid_to_' + k)) for k in gates], axis=1)),
        ('tagger/lstm/b', np.concatenate(
            [g(getattr(lstm, 'b_' + k)) for k in gates])),
        ('tagger/lstm/w_peephole', np.stack(
            [g(lstm.W_cell_to_ingate), g(lstm.W_cell_to_forgetgate),
             g(lstm.W_cell_to_outgate)])),
        ('tagger/lstm/cell_init', g(lstm.cell_init).reshape(-1)),
        ('tagger/lstm/hid_init', g(lstm.hid_init).reshape(-1)),
        ('tagger/logits/W', g(net['logits'].W)),
        ('tagger/logits/b', g(net['logits'].b)),
    ])


def set_cnn_weights(net, weights):
    """Load neutral CNN weights (names as :func:`cnn_weights` without the
    ``cnn/`` prefix) into a network from :func:`googlenet.build_model`."""
    try:
        values = [weights['%s/%s' % (n, k)] for n in googlenet.PARAM_LAYERS
                  for k in ('W', 'b')]
    except KeyError as exc:
        raise TaggerError('no CNN weight %s' % exc) from None
    googlenet.set_model_zoo_values(net, values)


def set_tagger_weights(net, weights):
    """Load neutral tagger weights (names as :func:`tagger_weights` without
    the ``tagger/`` prefix) into a network from :func:`tagger.build_tagger`.
    """
    lstm = net['lstm']
    H = lstm.num_units
    gates = ('ingate', 'forgetgate', 'cell', 'outgate')
    pairs = [(net['image_embedding'].W, weights['image_embedding/W']),
             (net['image_embedding'].b, weights['image_embedding/b']),
             (net['tag_embedding'].W, weights['tag_embedding/W']),
             (net['logits'].W, weights['logits/W']),
             (net['logits'].b, weights['logits/b']),
             (lstm.cell_init, weights['lstm/cell_init'].reshape(1, -1)),
             (lstm.hid_init, weights['lstm/hid_init'].reshape(1, -1))]
    for k, gate in enumerate(gates):
        cols = slice(k * H, (k + 1) * H)
        pairs += [(getattr(lstm, 'W_in_to_' + gate),
                   weights['lstm/W_in'][:, cols]),
                  (getattr(lstm, 'W_hid_to_' + gate),
                   weights['lstm/W_hid'][:, cols]),
                  (getattr(lstm, 'b_' + gate), weights['lstm/b'][cols])]
    for k, gate in enumerate(('ingate', 'forgetgate', 'outgate')):
        pairs.append((getattr(lstm, 'W_cell_to_' + gate),
                      weights['lstm/w_peephole'][k]))
    for param, value in pairs:
        want = param.get_value(borrow=True).shape
        if np.shape(value) != want:
            raise TaggerError('tagger weight for %s has shape %s, expected %s'
                              % (param.name, np.shape(value), want))
    for param, value in pairs:
        param.set_value(np.asarray(value).astype(param.dtype))


def _compile_forward(net, layers):
    from ..model.imagenet import compile_forward
    return compile_forward(net, tuple(layers))


def _run_forward(forward, crops, batch_size):
    from ..data.preprocess import to_network_input
    outs = None
    for start in range(0, len(crops), batch_size):
        got = forward(to_network_input(crops[start:start + batch_size]))
        if outs is None:
            outs = [[] for _ in got]
        for acc, value in zip(outs, got):
            acc.append(np.asarray(value))
    return [np.concatenate(o) for o in outs]


def train_check_tagger(directory, forward, layers, feature_layer, image_size,
                       description, seed=0, batch_size=8, settings=None,
                       log=print):
    """Train a small tagger on the CNN's features of rendered garments.

    ``forward`` is the compiled CNN function returning ``layers``; the set
    is ``CHECK_PER_CLASS`` synthetic images of each class at
    ``image_size``.  Writes ``directory/features.h5`` and
    ``directory/taxonomy.json`` and trains into ``directory/run``
    (resumable: a finished run is reused).

    Returns
    -------
    str
        The prefix of the best tagger checkpoint.

    Raises
    ------
    TaggerError
        If ``directory`` holds features of another CNN.
    """
    import h5py
    from ..tagging import features, tagger
    from ..data import synthetic
    from ..data.preprocess import resize_and_crop
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    feats_path = os.path.join(directory, 'features.h5')
    source = '%s; synthetic check set seed %d' % (description, seed)
    if os.path.exists(feats_path):
        try:
            with h5py.File(feats_path, 'r') as h5:
                old = h5.attrs.get('source')
        except OSError:
            old = None
        if old != source:
            raise TaggerError('holds features of another CNN (%r); choose '
                              'another --train-tagger folder' % (old,),
                              feats_path)
    else:
        crops, labels, splits = [], [], []
        size = max(image_size, synthetic.MIN_SIZE)
        for code, (split, count) in enumerate(CHECK_PER_CLASS):
            for label, cls in enumerate(synthetic.CLASSES):
                for i in range(count):
                    rng = np.random.default_rng([seed, 1000 + code, label, i])
                    image = synthetic.render_garment(cls, size, rng)
                    crops.append(resize_and_crop(image, image_size,
                                                 upscale=True))
                    labels.append(label)
                    splits.append(code)
        log('check tagger: features of %d rendered garments' % len(crops))
        acts = _run_forward(forward, np.stack(crops), batch_size)
        feats = acts[layers.index(feature_layer)].reshape(len(crops), -1)
        features.write_features(
            feats_path, feats[:, None, :], labels, splits,
            [s for s, _ in CHECK_PER_CLASS], synthetic.CLASSES,
            feature_layer, source, store='none (rendered in memory)')
    tax_path = os.path.join(directory, 'taxonomy.json')
    atomic.write_json(tax_path, {'classes': {c: list(t) for c, t in
                                             synthetic.TAXONOMY.items()}},
                      indent=1)
    values = dict(CHECK_TAGGER, **(settings or {}))
    # note: seed + 1: train_tagger seeds its dropout streams with
    # seed * 1000003 + ..., and Theano's MRG streams reject a seed of 0.
    config = tagger.TaggerConfig(features=feats_path, taxonomy=tax_path,
                                 use_rotations=False, seed=seed + 1,
                                 **values)
    run = os.path.join(directory, 'run')
    history = tagger.train_tagger(config, run, resume=True, progress=False,
                                  log=log)
    log('check tagger: validation tag accuracy %.3f after %d iterations'
        % (history[-1]['val_tag_accuracy'], history[-1]['iteration']))
    return os.path.join(run, 'best')


def _theano_meta():
    import lasagne
    import theano
    from .. import __version__
    return {
        'producer': 'lasagne_tagger %s (Theano %s, Lasagne %s)'
                    % (__version__, theano.__version__, lasagne.__version__),
        'framework': 'theano', 'framework_version': theano.__version__,
        'theano_version': theano.__version__,
        'lasagne_version': lasagne.__version__,
        'dtype': theano.config.floatX, 'floatX': theano.config.floatX,
        'theano_flags': os.environ.get('THEANO_FLAGS', ''),
        'blas_ldflags': theano.config.blas.ldflags,
        'device': theano.config.device}


def export_reference(out, photos=None, cnn=None, tagger=None, seed=0,
                     width=1.0, image_size=224, num_classes=1000,
                     hidden_size=32, count=DEFAULT_COUNT, upscale=False,
                     train_tagger_dir=None, batch_size=8, log=print):
    """Run the Theano model and write a reference bundle.

    Parameters
    ----------
    out : str
        Bundle to write.
    photos : list of str, optional
        Photo files; default the embedded set (:func:`embedded_crops`).
    cnn : str, optional
        Classifier checkpoint prefix or ``'imagenet'``; default random
        weights from ``seed``, ``width``, ``image_size``, ``num_classes``.
    tagger : str, optional
        Tagger checkpoint prefix; default random weights (``seed``,
        ``hidden_size``), or one trained into ``train_tagger_dir``.
    count : int
        Size of the embedded set.
    upscale : bool
        Enlarge photos smaller than the crop.
    train_tagger_dir : str, optional
        Train a small tagger there (:func:`train_check_tagger`) and use it.

    Returns
    -------
    results : list of (name, tags)
        Decoded tags per image in the bundle.
    bad : list of (path, message)
        Photos that could not be read (left out of the bundle).

    Raises
    ------
    TaggerError
        Unusable checkpoints, no readable photo, a tagger whose feature
        width does not fit the CNN.
    """
    from ..tagging.tagger import compile_greedy
    if tagger and train_tagger_dir:
        raise TaggerError('give --tagger or --train-tagger, not both')
    if cnn:
        net, cnn_info = _checkpoint_cnn(cnn)
    else:
        net, cnn_info = random_cnn(seed, width, image_size, num_classes)
    size = cnn_info['image_size']
    crops, names, bad = _reference_crops(photos, size, upscale, count, seed)
    layers = cnn_info['layers']
    log('compiling the GoogLeNet forward pass (%d outputs)' % len(layers))
    forward = _compile_forward(net, layers)
    acts = _run_forward(forward, crops, batch_size)

    if train_tagger_dir:
        described = '%s, weights sha256 %s' % (
            cnn_info['source'], bundle.weights_digest(cnn_weights(net)))
        tagger = train_check_tagger(train_tagger_dir, forward, layers,
                                    googlenet.FEATURE_LAYER, size,
                                    described, seed=seed,
                                    batch_size=batch_size, log=log)
    if tagger:
        t_net, vocab, max_len, t_info = _checkpoint_tagger(tagger)
    else:
        width_f = int(np.prod(net[googlenet.FEATURE_LAYER].output_shape[1:]))
        t_net, vocab, max_len, t_info = random_tagger(
            width_f, seed, hidden_size,
            features=acts[layers.index(googlenet.FEATURE_LAYER)].reshape(
                len(crops), -1))
    feats = _tagger_features(acts, layers, t_info, tagger)
    log('compiling the greedy decoder')
    greedy = compile_greedy(t_net, max_len, trace=True)
    tokens, token_probs, cells, hids, probs = greedy(feats)
    tokens = np.asarray(tokens, dtype=np.int32)
    tags = bundle.decode_tags(tokens, vocab.to_dict())

    arrays = _inputs_and_weights(crops, names, net, t_net)
    for name, value in zip(layers, acts):
        arrays['activations/cnn/' + name] = value
    arrays['activations/tagger/features'] = feats
    arrays['activations/tagger/cell'] = cells
    arrays['activations/tagger/hidden'] = hids
    arrays['activations/tagger/probs'] = probs
    arrays['activations/tagger/live'] = bundle.live_steps(tokens)
    arrays['decoded/tokens'] = tokens
    arrays['decoded/token_probs'] = np.asarray(token_probs)
    arrays['decoded/tags'] = np.array([json.dumps(t) for t in tags],
                                      dtype=object)
    meta = _theano_meta()
    meta.update({'cnn_source': cnn_info['source'],
                 'tagger_source': t_info['source'], 'seed': int(seed),
                 'preprocessing': dict(bundle.PREPROCESSING, crop_size=size,
                                       upscale=bool(upscale))})
    cnn_model = {k: v for k, v in cnn_info.items() if k != 'source'}
    cnn_model['feature_layer'] = googlenet.FEATURE_LAYER
    tagger_model = {k: v for k, v in t_info.items() if k != 'source'}
    bundle.write_bundle(out, meta, {'cnn': cnn_model,
                                    'tagger': tagger_model}, arrays)
    return list(zip(names, tags)), bad


def _reference_crops(photos, size, upscale, count, seed):
    """(crops as one uint8 array, names, unreadable photos as (path,
    message)): ``photos`` cropped to ``size``, or the embedded set of
    ``count`` images."""
    if not photos:
        crops, names = embedded_crops(size, count, seed)
        return crops, names, []
    from ..data.preprocess import load_crops
    crops, names, bad = load_crops(photos, size=size, upscale=upscale)
    if not crops:
        raise TaggerError('no readable photo among %d given: %s'
                          % (len(photos), bad[0][1]))
    return np.stack(crops), names, bad


def _tagger_features(acts, layers, t_info, tagger):
    """The tagger's input, one row an image: the activations of the layer
    it reads (``t_info['feature_layer']``), checked to be there and of
    its width (else ``TaggerError`` naming ``tagger``)."""
    feature_layer = t_info['feature_layer']
    if feature_layer not in layers:
        raise TaggerError('the tagger reads layer %r, which the CNN lacks'
                          % feature_layer, tagger)
    act = acts[layers.index(feature_layer)]
    feats = act.reshape(len(act), -1)
    if feats.shape[1] != t_info['feature_size']:
        raise TaggerError('tagger expects %d-d features, the CNN\'s %s gives '
                          '%d' % (t_info['feature_size'], feature_layer,
                                  feats.shape[1]), tagger)
    return feats


def _inputs_and_weights(crops, names, net, t_net):
    """The bundle's ``inputs/`` and ``weights/`` arrays, in order."""
    from ..data.preprocess import to_network_input
    arrays = OrderedDict([
        ('inputs/crops', crops.astype(np.uint8)),
        ('inputs/batch', to_network_input(crops)),
        ('inputs/names', np.array(names, dtype=object))])
    for key, value in cnn_weights(net).items():
        arrays['weights/' + key] = value
    for key, value in tagger_weights(t_net).items():
        arrays['weights/' + key] = value
    return arrays
