"""The tagger in PyTorch: BVLC GoogLeNet and the peephole LSTM, from a bundle.

Reads the weights and inputs of a reference bundle (:mod:`lasagne_tagger.
bundle`, which documents the layout), runs the same photos through its own
GoogLeNet and its own LSTM, decodes greedily, and writes a bundle in the same
format, so ``lasagne-tagger reference compare REFERENCE.h5 PORT.h5`` checks
it layer by layer::

    python -m lasagne_tagger.ports.torch_port REFERENCE.h5 --out PORT.h5

Written from the Caffe/BVLC definitions and the bundle format, not from the
Theano code, and imports neither Theano nor Lasagne (importing
``lasagne_tagger`` runs ``compat.apply()``, which imports neither either).

* Convolutions: ``torch.nn.functional.conv2d`` is a cross-correlation, which
  is what the bundle's OIHW filters are: they are used unflipped.
* Max pooling: Caffe's ceil-mode rule, padding never selected.
  ``max_pool2d(ceil_mode=True)`` drops a last window that would start in the
  right padding, exactly Caffe's rule, and pads with -inf.
* LRN: Caffe's ACROSS_CHANNELS, written out (:func:`caffe_lrn`).
* The tagger's LSTM is written out (:class:`Tagger`): ``torch.nn.LSTM`` has
  no peepholes.  The output-gate peephole reads the *new* cell inside the
  sigmoid (the fixed maths of Lasagne issue #448, as the reference).

The architecture's widths are read from the weight shapes, so the reduced
variants of ``googlenet.build_model(width=..., image_size=...)`` load too.
"""
import argparse
import json
import os
import platform
import sys
import time
from collections import OrderedDict

import numpy as np

from . import bundle
from ..errors import TaggerError

__all__ = ['INCEPTION_MODULES', 'BRANCHES', 'param_layers', 'preprocess',
           'caffe_max_pool', 'caffe_lrn', 'GoogLeNet', 'Tagger', 'run_port',
           'main']

INCEPTION_MODULES = ('inception_3a', 'inception_3b', 'inception_4a',
                     'inception_4b', 'inception_4c', 'inception_4d',
                     'inception_4e', 'inception_5a', 'inception_5b')
# Branch convolutions of a module: (name, input, kernel, pad).
BRANCHES = (('1x1', 'in', 1, 0), ('3x3_reduce', 'in', 1, 0),
            ('3x3', '3x3_reduce', 3, 1), ('5x5_reduce', 'in', 1, 0),
            ('5x5', '5x5_reduce', 5, 2), ('pool_proj', 'pool', 1, 0))
# Concatenated in this order (BVLC's deploy.prototxt).
CONCAT = ('1x1', '3x3', '5x5', 'pool_proj')
POOL_BEFORE = {'inception_4a': 'pool3/3x3_s2', 'inception_5a': 'pool4/3x3_s2'}
STEM = (('conv1/7x7_s2', 7, 2, 3), ('conv2/3x3_reduce', 1, 1, 0),
        ('conv2/3x3', 3, 1, 1))
CLASSIFIER = 'loss3/classifier'
FEATURE_LAYER = 'pool5/7x7_s1'
BGR_MEAN = (104.0, 117.0, 123.0)
LRN = {'size': 5, 'alpha': 1e-4, 'beta': 0.75, 'k': 1.0}
PAD_ID, START_ID, END_ID = 0, 1, 2
DTYPES = ('float32', 'float64')


def _own(array):
    """A C-ordered copy-if-needed of ``array`` that torch can wrap (torch
    refuses negative strides, which numpy keeps even for "contiguous"
    flips of size-1 axes)."""
    array = np.asarray(array)
    if not array.flags.c_contiguous or any(s < 0 for s in array.strides):
        array = array.copy(order='C')
    return array


def _torch():
    try:
        import torch
    except ImportError:
        raise TaggerError('PyTorch is not installed here: pip install '
                          'torch==2.13.0 (or `make install-port`)') from None
    return torch


def param_layers():
    """Names of the layers with weights, in forward order."""
    names = [name for name, _, _, _ in STEM]
    for module in INCEPTION_MODULES:
        names.extend('%s/%s' % (module, b) for b, _, _, _ in BRANCHES)
    return names + [CLASSIFIER]


def preprocess(crops, dtype='float32'):
    """uint8 RGB crops (N, S, S, 3) -> BGR minus the BGR mean, (N, 3, S, S).

    Computed in float32 (exact: integers minus integers) and cast."""
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
        raise TaggerError('expected uint8 crops (N, S, S, 3), got %s %s'
                          % (crops.dtype, crops.shape))
    bgr = crops[..., ::-1].astype(np.float32) - np.asarray(BGR_MEAN,
                                                           np.float32)
    return np.ascontiguousarray(bgr.transpose(0, 3, 1, 2), dtype=dtype)


def caffe_max_pool(x, kernel, stride, pad=0):
    """Caffe max pooling: ceil-mode output size, padding never selected.

    # note: Caffe computes ceil((size + 2 pad - kernel) / stride) + 1 and
    # drops the last window if it starts inside the right padding;
    # torch's ceil_mode applies the same rule, so no manual padding.
    """
    import torch.nn.functional as F
    return F.max_pool2d(x, kernel, stride, pad, ceil_mode=True)


def caffe_lrn(x, size=LRN['size'], alpha=LRN['alpha'], beta=LRN['beta'],
              k=LRN['k']):
    """Caffe ACROSS_CHANNELS LRN: ``x / (k + alpha / size * sum x^2)^beta``,
    the sum over ``size`` channels centred on each (zeros beyond the ends).
    """
    import torch.nn.functional as F
    half = size // 2
    channels = x.shape[1]
    padded = F.pad(x * x, (0, 0, 0, 0, half, half))
    window = padded[:, 0:channels]
    for i in range(1, size):
        window = window + padded[:, i:i + channels]
    return x / (k + (alpha / size) * window) ** beta


class GoogLeNet(object):
    """BVLC GoogLeNet from neutral weights (see :mod:`bundle`).

    Parameters
    ----------
    weights : mapping of str -> ndarray
        ``<layer>/W`` and ``<layer>/b`` for every layer of
        :func:`param_layers` (conv W as OIHW cross-correlation filters,
        classifier W as [in, out]).
    dtype : {'float32', 'float64'}
    device : str
        A torch device (``'cpu'``, ``'cuda'``).
    channels_last : bool
        Run convolutions in NHWC memory layout (same numbers, maybe faster).
    source : str
        Named in error messages.

    Raises
    ------
    TaggerError
        A missing weight, or a shape that does not chain (one line naming
        the layer and both shapes).
    """

    def __init__(self, weights, dtype='float32', device='cpu',
                 channels_last=False, source='weights'):
        torch = _torch()
        self.dtype = getattr(torch, dtype)
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.params = OrderedDict()
        self._check_and_load(weights, source)

    def _tensor(self, array, conv=False):
        torch = _torch()
        t = torch.as_tensor(_own(array)).to(self.device, self.dtype)
        if conv and self.channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        return t

    def _conv(self, weights, name, in_channels, kernel, source):
        for part in ('W', 'b'):
            if '%s/%s' % (name, part) not in weights:
                raise TaggerError('no weight %s/%s' % (name, part), source)
        W = np.asarray(weights[name + '/W'])
        b = np.asarray(weights[name + '/b'])
        if W.ndim != 4 or W.shape[1:] != (in_channels, kernel, kernel):
            raise TaggerError('%s/W has shape %s, expected (out, %d, %d, %d)'
                              % (name, W.shape, in_channels, kernel, kernel),
                              source)
        if b.shape != (W.shape[0],):
            raise TaggerError('%s/b has shape %s, expected (%d,)'
                              % (name, b.shape, W.shape[0]), source)
        self.params[name] = (self._tensor(W, conv=True), self._tensor(b))
        return W.shape[0]

    def _check_and_load(self, weights, source):
        channels = 3
        for name, kernel, _, _ in STEM:
            channels = self._conv(weights, name, channels, kernel, source)
        for module in INCEPTION_MODULES:
            made = {'in': channels, 'pool': channels}
            for branch, src, kernel, _ in BRANCHES:
                made[branch] = self._conv(weights, '%s/%s' % (module, branch),
                                          made[src], kernel, source)
            channels = sum(made[b] for b in CONCAT)
        for part in ('W', 'b'):
            if '%s/%s' % (CLASSIFIER, part) not in weights:
                raise TaggerError('no weight %s/%s' % (CLASSIFIER, part),
                                  source)
        W = np.asarray(weights[CLASSIFIER + '/W'])
        b = np.asarray(weights[CLASSIFIER + '/b'])
        if W.ndim != 2 or W.shape[0] != channels or b.shape != W.shape[1:]:
            raise TaggerError('%s has W %s and b %s, expected (%d, C) and '
                              '(C,)' % (CLASSIFIER, W.shape, b.shape,
                                        channels), source)
        self.params[CLASSIFIER] = (self._tensor(W), self._tensor(b))
        self.num_classes = W.shape[1]
        self.feature_size = channels

    def weights(self):
        """The weights as used, back in the neutral layout (NumPy)."""
        out = OrderedDict()
        for name, (W, b) in self.params.items():
            out[name + '/W'] = np.ascontiguousarray(W.detach().cpu().numpy())
            out[name + '/b'] = b.detach().cpu().numpy()
        return out

    def _conv_relu(self, x, name, stride=1, pad=0):
        import torch.nn.functional as F
        W, b = self.params[name]
        return F.relu(F.conv2d(x, W, b, stride=stride, padding=pad))

    def forward(self, batch, keep=True):
        """Run a (N, 3, S, S) batch (NumPy or tensor).

        Returns
        -------
        OrderedDict
            Tensors by Caffe layer name in forward order, every named layer
            with ``keep`` (else only ``pool5/7x7_s1``, the classifier and
            ``prob``).
        """
        torch = _torch()
        x = torch.as_tensor(batch).to(self.device, self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        acts = OrderedDict()

        def put(name, value):
            if keep:
                acts[name] = value
            return value

        x = put('conv1/7x7_s2', self._conv_relu(x, 'conv1/7x7_s2', 2, 3))
        x = put('pool1/3x3_s2', caffe_max_pool(x, 3, 2))
        x = put('pool1/norm1', caffe_lrn(x))
        x = put('conv2/3x3_reduce', self._conv_relu(x, 'conv2/3x3_reduce'))
        x = put('conv2/3x3', self._conv_relu(x, 'conv2/3x3', 1, 1))
        x = put('conv2/norm2', caffe_lrn(x))
        x = put('pool2/3x3_s2', caffe_max_pool(x, 3, 2))
        for module in INCEPTION_MODULES:
            if module in POOL_BEFORE:
                x = put(POOL_BEFORE[module], caffe_max_pool(x, 3, 2))
            made = {'in': x}
            made['pool'] = put(module + '/pool', caffe_max_pool(x, 3, 1, 1))
            # the order the reference lists them in
            for branch in ('pool_proj', '1x1', '3x3_reduce', '3x3',
                           '5x5_reduce', '5x5'):
                _, src, kernel, pad = next(b for b in BRANCHES
                                           if b[0] == branch)
                made[branch] = put('%s/%s' % (module, branch),
                                   self._conv_relu(made[src], '%s/%s' % (
                                       module, branch), 1, pad))
            x = put(module + '/output',
                    torch.cat([made[b] for b in CONCAT], dim=1))
        features = acts[FEATURE_LAYER] = x.mean(dim=(2, 3))
        W, b = self.params[CLASSIFIER]
        logits = acts[CLASSIFIER] = torch.addmm(b, features, W)
        acts['prob'] = torch.softmax(logits, dim=1)
        return acts


class Tagger(object):
    """The Show-and-Tell tagger: image embedding, peephole LSTM, greedy.

    Parameters
    ----------
    weights : mapping of str -> ndarray
        ``image_embedding/W`` (F, E), ``image_embedding/b``,
        ``tag_embedding/W`` (V, E), ``lstm/W_in`` (E, 4H), ``lstm/W_hid``
        (H, 4H), ``lstm/b`` (4H,) in gate order input, forget, cell, output,
        ``lstm/w_peephole`` (3, H) (input, forget, output),
        ``lstm/cell_init``, ``lstm/hid_init`` (H,), ``logits/W`` (H, V),
        ``logits/b``.
    max_len : int
        Most tags per image.
    dtype, device : as :class:`GoogLeNet`.
    source : str
        Named in error messages.
    """

    NAMES = ('image_embedding/W', 'image_embedding/b', 'tag_embedding/W',
             'lstm/W_in', 'lstm/W_hid', 'lstm/b', 'lstm/w_peephole',
             'lstm/cell_init', 'lstm/hid_init', 'logits/W', 'logits/b')

    def __init__(self, weights, max_len, dtype='float32', device='cpu',
                 source='weights'):
        torch = _torch()
        for name in self.NAMES:
            if name not in weights:
                raise TaggerError('no tagger weight %s' % name, source)
        a = {k: np.asarray(weights[k]) for k in self.NAMES}
        F, E = a['image_embedding/W'].shape
        V = a['tag_embedding/W'].shape[0]
        H = a['lstm/W_hid'].shape[0]
        want = {'image_embedding/b': (E,), 'tag_embedding/W': (V, E),
                'lstm/W_in': (E, 4 * H), 'lstm/W_hid': (H, 4 * H),
                'lstm/b': (4 * H,), 'lstm/w_peephole': (3, H),
                'lstm/cell_init': (H,), 'lstm/hid_init': (H,),
                'logits/W': (H, V), 'logits/b': (V,)}
        for name, shape in want.items():
            if a[name].shape != shape:
                raise TaggerError('tagger weight %s has shape %s, expected %s'
                                  % (name, a[name].shape, shape), source)
        if V < 4 or int(max_len) < 1:
            raise TaggerError('tagger needs >= 4 ids and max_len >= 1 (got '
                              '%d, %r)' % (V, max_len), source)
        self.dtype = getattr(torch, dtype)
        self.device = torch.device(device)
        self.t = {k: torch.as_tensor(_own(v)).to(self.device, self.dtype)
                  for k, v in a.items()}
        self.feature_size, self.embed_size = F, E
        self.hidden_size, self.vocab_size = H, V
        self.max_len = int(max_len)

    def weights(self):
        """The weights as used (NumPy, neutral layout)."""
        return OrderedDict((k, self.t[k].detach().cpu().numpy())
                           for k in self.NAMES)

    def step(self, x, cell, hid):
        """One LSTM step: ``(new_cell, new_hid)``.

        # note: Lasagne 0.1 added the output-gate peephole after the
        # sigmoid (its issue #448); the reference and this port use the
        # fixed maths, the peephole inside the sigmoid on the new cell.
        """
        torch = _torch()
        t, H = self.t, self.hidden_size
        gates = x @ t['lstm/W_in'] + hid @ t['lstm/W_hid'] + t['lstm/b']
        peep = t['lstm/w_peephole']
        i = torch.sigmoid(gates[:, 0:H] + cell * peep[0])
        f = torch.sigmoid(gates[:, H:2 * H] + cell * peep[1])
        new_cell = f * cell + i * torch.tanh(gates[:, 2 * H:3 * H])
        o = torch.sigmoid(gates[:, 3 * H:4 * H] + new_cell * peep[2])
        return new_cell, o * torch.tanh(new_cell)

    def _probs(self, hid):
        torch = _torch()
        return torch.softmax(hid @ self.t['logits/W'] + self.t['logits/b'],
                             dim=1)

    def greedy(self, features, trace=True):
        """Greedy decoding of (N, F) features.

        At most ``max_len`` tags; each step takes the most probable id
        (ties: the lowest), never ``<pad>``/``<start>`` nor an id already
        emitted for that image; a row stops at ``<end>`` and then emits
        ``<pad>`` with probability 0 (its LSTM keeps running on ``<pad>``,
        as the reference's scan does).

        Returns
        -------
        dict of tensors
            ``tokens`` (N, L) int32, ``token_probs`` (N, L); with ``trace``
            also ``cell``, ``hidden`` (N, L + 2, H), ``probs``
            (N, L + 2, V).
        """
        torch = _torch()
        t = self.t
        feats = torch.as_tensor(features).to(self.device, self.dtype)
        if feats.ndim != 2 or feats.shape[1] != self.feature_size:
            raise TaggerError('the tagger needs (N, %d) features, got %s'
                              % (self.feature_size, tuple(feats.shape)))
        n = feats.shape[0]
        rows = torch.arange(n, device=self.device)
        cell = t['lstm/cell_init'].expand(n, -1)
        hid = t['lstm/hid_init'].expand(n, -1)
        cells, hids, probs_seq = [], [], []

        def advance(x, cell, hid):
            cell, hid = self.step(x, cell, hid)
            probs = self._probs(hid)
            if trace:
                cells.append(cell)
                hids.append(hid)
                probs_seq.append(probs)
            return cell, hid, probs

        emb = feats @ t['image_embedding/W'] + t['image_embedding/b']
        cell, hid, probs = advance(emb, cell, hid)
        start = torch.full((n,), START_ID, dtype=torch.long,
                           device=self.device)
        cell, hid, probs = advance(t['tag_embedding/W'][start], cell, hid)
        blocked = torch.zeros((n, self.vocab_size), dtype=torch.bool,
                              device=self.device)
        blocked[:, PAD_ID] = True
        blocked[:, START_ID] = True
        done = torch.zeros(n, dtype=torch.bool, device=self.device)
        tokens, token_probs = [], []
        for _ in range(self.max_len):
            allowed = torch.where(blocked, torch.full_like(probs, -1.0),
                                  probs)
            token = torch.argmax(allowed, dim=1)
            p = probs[rows, token]
            token = torch.where(done, torch.full_like(token, PAD_ID), token)
            p = torch.where(done, torch.zeros_like(p), p)
            blocked[rows, token] = True
            done = done | (token == END_ID)
            tokens.append(token)
            token_probs.append(p)
            cell, hid, probs = advance(t['tag_embedding/W'][token], cell, hid)
        out = {'tokens': torch.stack(tokens, 1).to(torch.int32),
               'token_probs': torch.stack(token_probs, 1)}
        if trace:
            out.update(cell=torch.stack(cells, 1),
                       hidden=torch.stack(hids, 1),
                       probs=torch.stack(probs_seq, 1))
        return out


def _numpy(t):
    return np.ascontiguousarray(t.detach().cpu().numpy())


def _model_description(reference, net, tagger):
    cnn = dict(reference.model('cnn') or {})
    cnn.update({'architecture': 'bvlc_googlenet',
                'image_size': int(reference.info('inputs/crops')[0][1]),
                'num_classes': int(net.num_classes),
                'param_layers': param_layers(),
                'feature_layer': FEATURE_LAYER})
    info = reference.model('tagger')
    if info is None or tagger is None:
        return {'cnn': cnn, 'tagger': None}
    info = dict(info)
    info.update({'feature_size': tagger.feature_size,
                 'embed_size': tagger.embed_size,
                 'hidden_size': tagger.hidden_size,
                 'gate_order': list(bundle.GATE_ORDER),
                 'peephole_order': list(bundle.PEEPHOLE_ORDER),
                 'special_ids': {'pad': PAD_ID, 'start': START_ID,
                                 'end': END_ID}})
    return {'cnn': cnn, 'tagger': info}


def run_port(reference_path, out_path, dtype='float32', device='cpu',
             channels_last=False, batch_size=8, log=None):
    """Run the port on a reference bundle's inputs and write its bundle.

    Parameters
    ----------
    reference_path : str
        Bundle with the inputs and weights (the Theano export).
    out_path : str
        Bundle to write.
    dtype : {'float32', 'float64', 'auto'}
        Compute dtype; 'auto' takes the reference's.
    device : str
        torch device.
    channels_last : bool
        NHWC convolutions.
    batch_size : int
        Images per forward pass.

    Returns
    -------
    dict
        ``tags`` (list per image) and ``seconds`` (CNN forward, decoding).
    """
    torch = _torch()
    log = log or (lambda *a: None)
    with bundle.open_bundle(reference_path) as ref:
        if dtype == 'auto':
            dtype = str(ref.meta.get('dtype', 'float32'))
        if dtype not in DTYPES:
            raise TaggerError('dtype must be one of %s, got %r'
                              % (', '.join(DTYPES), dtype))
        pre = _check_preprocessing(ref, reference_path)
        crops = ref.array('inputs/crops')
        names = ref.array('inputs/names') if 'inputs/names' in ref else \
            np.array(['image %d' % i for i in range(len(crops))],
                     dtype=object)
        net = GoogLeNet(ref.weights('cnn'), dtype, device, channels_last,
                        source=reference_path)
        tagger, t_info = _port_tagger(ref, dtype, device, reference_path)
        model = _model_description(ref, net, tagger)
        meta = dict(ref.meta)
        ref_digest = meta.get('weights_sha256')
    batch = preprocess(crops, dtype)
    t0 = time.time()
    acts = _forward_all(torch, net, batch, batch_size)
    seconds = {'cnn_forward': time.time() - t0}
    log('port: GoogLeNet forward of %d images in %.2f s'
        % (len(batch), seconds['cnn_forward']))
    arrays = OrderedDict([('inputs/crops', crops), ('inputs/batch', batch),
                          ('inputs/names', names)])
    for key, value in net.weights().items():
        arrays['weights/cnn/' + key] = value
    if tagger is not None:
        for key, value in tagger.weights().items():
            arrays['weights/tagger/' + key] = value
    for name, value in acts.items():
        arrays['activations/cnn/' + name] = value
    tags = []
    if tagger is not None:
        tags, decoded, seconds['decode'] = _decode(
            torch, tagger, acts[FEATURE_LAYER], t_info['vocabulary'])
        arrays.update(decoded)
    port_meta = {
        'producer': 'lasagne_tagger.ports.torch_port (PyTorch %s)'
                    % torch.__version__,
        'framework': 'torch', 'framework_version': torch.__version__,
        'dtype': dtype, 'device': str(device),
        'channels_last': int(bool(channels_last)),
        'torch_threads': torch.get_num_threads(),
        'machine': platform.machine(),
        'reference': os.path.abspath(os.fspath(reference_path)),
        'reference_weights_sha256': ref_digest or '',
        'preprocessing': pre or bundle.PREPROCESSING,
        'seconds': seconds}
    for key in ('cnn_source', 'tagger_source', 'seed'):
        if key in meta:
            port_meta[key] = meta[key]
    bundle.write_bundle(out_path, port_meta, model, arrays)
    return {'tags': list(zip([str(n) for n in names], tags)),
            'seconds': seconds}


def _check_preprocessing(ref, reference_path):
    """The reference bundle's preprocessing (a dict, empty when it names
    none), refused unless it is the one this port implements."""
    pre = ref.meta.get('preprocessing')
    pre = json.loads(pre) if isinstance(pre, str) else (pre or {})
    if pre and (pre.get('channel_order', 'BGR') != 'BGR'
                or tuple(pre.get('mean_bgr', BGR_MEAN)) != BGR_MEAN):
        raise TaggerError('reference preprocessing %s is not the one this '
                          'port implements (BGR minus %s)'
                          % (pre, BGR_MEAN), reference_path)
    return pre


def _port_tagger(ref, dtype, device, reference_path):
    """(the port's tagger, its model description) from the reference
    bundle, or (None, None) when the bundle has no tagger."""
    t_info = ref.model('tagger')
    if t_info is None:
        return None, None
    tagger = Tagger(ref.weights('tagger'), t_info['max_len'], dtype, device,
                    source=reference_path)
    if t_info.get('feature_layer', FEATURE_LAYER) != FEATURE_LAYER:
        raise TaggerError('this port feeds the tagger from %s, the '
                          'reference from %r'
                          % (FEATURE_LAYER, t_info.get('feature_layer')),
                          reference_path)
    return tagger, t_info


def _forward_all(torch, net, batch, batch_size):
    """Every layer's activations for ``batch``, ``batch_size`` images at a
    time, as NumPy arrays in the network's order."""
    acts = OrderedDict()
    with torch.inference_mode():
        for start in range(0, len(batch), batch_size):
            got = net.forward(batch[start:start + batch_size])
            for name, value in got.items():
                acts.setdefault(name, []).append(_numpy(value))
    return OrderedDict((k, np.concatenate(v)) for k, v in acts.items())


def _decode(torch, tagger, feats, vocabulary):
    """(tags per image, the bundle's ``activations/tagger/`` and
    ``decoded/`` arrays, the seconds decoding took): greedy decoding of
    ``feats``."""
    t0 = time.time()
    with torch.inference_mode():
        out = tagger.greedy(feats)
    seconds = time.time() - t0
    tokens = _numpy(out['tokens'])
    tags = bundle.decode_tags(tokens, vocabulary)
    arrays = OrderedDict([('activations/tagger/features', feats)])
    for key in ('cell', 'hidden', 'probs'):
        arrays['activations/tagger/' + key] = _numpy(out[key])
    arrays['activations/tagger/live'] = bundle.live_steps(tokens)
    arrays['decoded/tokens'] = tokens
    arrays['decoded/token_probs'] = _numpy(out['token_probs'])
    arrays['decoded/tags'] = np.array([json.dumps(t) for t in tags],
                                      dtype=object)
    return tags, arrays, seconds


def opts_parser():
    """The command line of ``python -m lasagne_tagger.ports.torch_port``."""
    p = argparse.ArgumentParser(
        prog='python -m lasagne_tagger.ports.torch_port',
        description='Run the PyTorch port on a reference bundle\'s inputs '
                    'and weights; write its own bundle.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('reference', metavar='REFERENCE.h5',
                   help='bundle from `lasagne-tagger reference export`')
    p.add_argument('--out', required=True, help='bundle to write')
    p.add_argument('--dtype', choices=DTYPES + ('auto',), default='float32',
                   help='compute dtype (auto: the reference\'s)')
    p.add_argument('--device', default='cpu', help='torch device')
    p.add_argument('--channels-last', action='store_true',
                   help='NHWC convolutions')
    p.add_argument('--threads', type=int, default=None,
                   help='torch CPU threads (default: torch\'s)')
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--compare', action='store_true',
                   help='then compare with the reference (exit 1 if they '
                        'differ)')
    p.add_argument('--quiet', action='store_true')
    return p


def main(argv=None):
    args = opts_parser().parse_args(argv)
    log = (lambda *a: None) if args.quiet else \
        (lambda msg: print(msg, file=sys.stderr))
    try:
        if args.batch_size < 1:
            raise TaggerError('--batch-size must be >= 1')
        if args.threads is not None:
            if args.threads < 1:
                raise TaggerError('--threads must be >= 1')
            _torch().set_num_threads(args.threads)
        result = run_port(args.reference, args.out, dtype=args.dtype,
                          device=args.device,
                          channels_last=args.channels_last,
                          batch_size=args.batch_size, log=log)
        for name, tags in result['tags']:
            print('%s: %s' % (name, ', '.join(tags) or '(no tags)'))
        print('wrote %s' % args.out, file=sys.stderr)
        if args.compare:
            return bundle.run_compare(args.reference, args.out)
        return 0
    except TaggerError as exc:
        print('error: %s' % exc, file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
