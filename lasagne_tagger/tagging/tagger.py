"""The Show-and-Tell tag generator (the blog's LSTM stage).

Model (as the blog and the Lasagne Recipes captioning code it follows): the
image feature (``pool5/7x7_s1``, 1024-d) goes through a dense embedding and
is fed once, as time step 0; the tags go through an embedding layer; the
sequence ``[image, <start>, t1, ..., tn]`` passes dropout, an ``LSTMLayer``
(peepholes, gradient clipping, a mask for variable length), dropout, and a
softmax over the vocabulary.  The output after step ``t + 1`` predicts
``targets[t]`` (see :meth:`Vocabulary.encode_batch`).  Loss: masked
cross-entropy over tag positions; Adam with a total-norm constraint; the CNN
is frozen (features are precomputed by :mod:`features`).

Decoding:

* :func:`compile_greedy` -- one compiled Theano ``scan`` carrying (cell,
  hidden) step to step, batched, deterministic.
  # note: the Recipes notebook left dropout on when generating; here every
  # decoding graph is built with ``deterministic=True``.
* :func:`slow_greedy` -- the Recipes method: rerun the whole network on the
  growing prefix at every step.  Kept as the reference the scan must equal.
* :meth:`TagDecoder.beam` -- beam search (:mod:`decode`) over a compiled
  one-step function (:func:`compile_step`).

All decoders stop at ``<end>`` or after ``max_len`` tags, never emit
``<pad>``/``<start>`` and never emit a tag twice for one image.
"""
import dataclasses
import math
import os
from collections import OrderedDict

import numpy as np

from ..runtime import _theano  # noqa: F401 (prepares Theano)
import lasagne

from ..training import checkpoint
from ..runtime import function_cache
from ..config import check_finite, config_to_dict
from ..errors import TaggerError
from ..training.run_folder import open_run, write_metrics
from ..training.loop import Stage, dropout_streams, run_rounds
from .vocabulary import Vocabulary

__all__ = ['TaggerConfig', 'build_tagger', 'compile_training',
           'compile_greedy', 'compile_step', 'slow_greedy',
           'train_tagger', 'load_tagger', 'TagDecoder', 'PeepholeLSTMLayer']


@dataclasses.dataclass
class TaggerConfig:
    """Hyper-parameters of the tagger (saved with every checkpoint)."""
    features: str = ''               # HDF5 from `lasagne-tagger extract`
    taxonomy: str = ''               # taxonomy file or packaged name
    train_split: str = 'train'
    val_split: str = 'validation'
    embed_size: int = 512
    hidden_size: int = 512
    dropout: float = 0.5
    grad_clip: float = 5.0
    max_norm: float = 15.0
    learning_rate: float = 0.001
    batch_size: int = 100
    iterations: int = 20000          # the blog: accuracy stable after ~20k
    eval_every: int = 500
    use_rotations: bool = True       # sample one of the extracted rotations
    seed: int = 1

    def validate(self):
        check_finite(self)
        for name in ('embed_size', 'hidden_size', 'batch_size', 'iterations',
                     'eval_every'):
            if getattr(self, name) < 1:
                raise TaggerError('%s must be >= 1' % name)
        if not 0 <= self.dropout < 1:
            raise TaggerError('dropout must be in [0, 1)')
        if self.learning_rate <= 0:
            raise TaggerError('learning_rate must be > 0')
        if self.seed < 1:
            # Theano's MRG random streams refuse the seed 0, which the
            # first dropout stream would get (seed * 1000003 + ...).
            raise TaggerError('seed must be >= 1, got %r' % (self.seed,))


def build_tagger(feature_size, vocab_size, max_len, config):
    """Build the tagger's layers (a dict keyed by name).

    Inputs: ``'image'`` (N, feature_size) floats, ``'tags'`` (N, max_len+1)
    int32 input tokens, ``'mask'`` (N, max_len+2) for the LSTM (the image
    step included).  ``'logits'`` is (N * (max_len+2), vocab_size); use
    :func:`sequence_probs` for the (N, max_len+1, V) predictions.
    """
    import theano.tensor as T
    from lasagne.layers import (ConcatLayer, DenseLayer, DropoutLayer,
                                EmbeddingLayer, InputLayer, ReshapeLayer)

    if feature_size < 1 or vocab_size < 4 or max_len < 1:
        raise TaggerError('bad tagger sizes: feature_size %s, vocab_size %s, '
                          'max_len %s' % (feature_size, vocab_size, max_len))
    steps = max_len + 1
    E, H = config.embed_size, config.hidden_size
    net = OrderedDict()
    net['image'] = InputLayer((None, feature_size), name='image')
    net['image_embedding'] = DenseLayer(net['image'], E, nonlinearity=None,
                                        name='image_embedding')
    net['image_step'] = ReshapeLayer(net['image_embedding'], ([0], 1, E),
                                     name='image_step')
    net['tags'] = InputLayer((None, steps), input_var=T.imatrix('tags'),
                             name='tags')
    net['tag_embedding'] = EmbeddingLayer(net['tags'], vocab_size, E,
                                          name='tag_embedding')
    net['sequence'] = ConcatLayer([net['image_step'], net['tag_embedding']],
                                  axis=1, name='sequence')
    net['sequence_dropout'] = DropoutLayer(net['sequence'], config.dropout,
                                           name='sequence_dropout')
    net['mask'] = InputLayer((None, steps + 1), name='mask')
    net['lstm'] = PeepholeLSTMLayer(net['sequence_dropout'], H,
                                     peepholes=True,
                                     grad_clipping=config.grad_clip,
                                     mask_input=net['mask'], name='lstm')
    net['lstm_dropout'] = DropoutLayer(net['lstm'], config.dropout,
                                       name='lstm_dropout')
    net['flat'] = ReshapeLayer(net['lstm_dropout'], (-1, H), name='flat')
    net['logits'] = DenseLayer(net['flat'], vocab_size, nonlinearity=None,
                               name='logits')
    return net


def sequence_logits(net, deterministic, inputs=None):
    """(N, steps, V) logits for predictions 1..steps (the image step's output
    predicts nothing and is dropped)."""
    import lasagne
    logits = lasagne.layers.get_output(net['logits'], inputs,
                                       deterministic=deterministic)
    tags = (inputs or {}).get(net['tags'], net['tags'].input_var)
    steps = tags.shape[1]          # symbolic: prefixes may be shorter
    shaped = logits.reshape((-1, steps + 1, logits.shape[-1]))
    return shaped[:, 1:]


def _masked_loss(logits, targets, mask):
    """Mean cross-entropy and token accuracy over the real tag positions."""
    import theano.tensor as T
    from ..training.losses import log_softmax
    log_probs = log_softmax(logits)
    V = logits.shape[-1]
    flat = log_probs.reshape((-1, V))
    picked = flat[T.arange(flat.shape[0]), targets.flatten()]
    m = mask.flatten()
    loss = -(picked * m).sum() / m.sum()
    hits = T.eq(T.argmax(flat, axis=1), targets.flatten())
    acc = (hits * m).sum() / m.sum()
    return loss, acc


def _lstm_mask(mask):
    """LSTM mask (N, steps+1) from the target mask (N, steps)."""
    import theano.tensor as T
    return T.concatenate([T.ones_like(mask[:, :1]), mask], axis=1)


def compile_training(net, config):
    """``train(image, inputs, targets, mask) -> (loss, acc)`` (Adam, norm
    constraint) and ``evaluate(...) -> (loss, acc)`` without dropout; plus
    the optimizer's shared state and the dropout random streams."""
    import lasagne
    import theano.tensor as T

    image = T.matrix('image')
    inputs = net['tags'].input_var
    targets = T.imatrix('targets')
    mask = T.matrix('mask')
    feed = {net['image']: image, net['tags']: inputs,
            net['mask']: _lstm_mask(mask)}
    loss, acc = _masked_loss(sequence_logits(net, False, feed), targets, mask)
    params = lasagne.layers.get_all_params(net['logits'], trainable=True)
    grads = T.grad(loss, params)
    grads = lasagne.updates.total_norm_constraint(grads, config.max_norm)
    updates = lasagne.updates.adam(grads, params, config.learning_rate)
    opt_state = [v for v in updates if v not in set(params)]
    train_fn = function_cache.function([image, inputs, targets, mask],
                                       [loss, acc], updates=updates)
    det_loss, det_acc = _masked_loss(sequence_logits(net, True, feed),
                                     targets, mask)
    eval_fn = function_cache.function([image, inputs, targets, mask],
                                      [det_loss, det_acc])
    return train_fn, eval_fn, opt_state, dropout_streams(net)


# --- decoding ----------------------------------------------------------------

class PeepholeLSTMLayer(lasagne.layers.LSTMLayer):
    """``LSTMLayer`` with the output-gate peephole inside the sigmoid.

    # note: Lasagne 0.1 adds the output gate's peephole *after* the sigmoid
    # (Lasagne issue #448, fixed by PR #449 in October 2015, after 0.1), so
    # its hidden state can leave (-1, 1).  The 2016 system ran Lasagne's
    # development version, which has the fix; this subclass does the same
    # maths as that version, through :func:`_lstm_cell`, the one LSTM step
    # that training and every decoder share.
    """

    def get_output_for(self, inputs, **kwargs):
        import theano
        import theano.tensor as T
        sequence = inputs[0]
        n = sequence.shape[0]
        if len(inputs) > 1:
            mask = inputs[1]
        else:
            mask = T.ones((n, sequence.shape[1]))
        cell0 = T.dot(T.ones((n, 1)), self.cell_init)
        hid0 = T.dot(T.ones((n, 1)), self.hid_init)

        def step(x, m, cell, hid):
            new_cell, new_hid = _lstm_cell(self, x, cell, hid)
            m = m.dimshuffle(0, 'x')
            return [new_cell * m + cell * (1 - m),
                    new_hid * m + hid * (1 - m)]

        (_, hid), _ = theano.scan(
            step, sequences=[sequence.dimshuffle(1, 0, 2),
                             mask.dimshuffle(1, 0)],
            outputs_info=[cell0, hid0],
            truncate_gradient=self.gradient_steps)
        return hid.dimshuffle(1, 0, 2)


def _lstm_cell(lstm, x, cell, hid):
    """One LSTM step on explicit states: stacked gates, gradient clipping,
    peepholes from the previous cell to the input and forget gates and from
    the new cell to the output gate, all inside their sigmoids."""
    import theano
    import theano.tensor as T
    H = lstm.num_units
    W_in = T.concatenate([lstm.W_in_to_ingate, lstm.W_in_to_forgetgate,
                          lstm.W_in_to_cell, lstm.W_in_to_outgate], axis=1)
    W_hid = T.concatenate([lstm.W_hid_to_ingate, lstm.W_hid_to_forgetgate,
                           lstm.W_hid_to_cell, lstm.W_hid_to_outgate], axis=1)
    b = T.concatenate([lstm.b_ingate, lstm.b_forgetgate, lstm.b_cell,
                       lstm.b_outgate], axis=0)
    gates = T.dot(x, W_in) + b + T.dot(hid, W_hid)
    if lstm.grad_clipping is not False:
        gates = theano.gradient.grad_clip(gates, -lstm.grad_clipping,
                                          lstm.grad_clipping)
    ingate = gates[:, 0 * H:1 * H]
    forgetgate = gates[:, 1 * H:2 * H]
    cell_input = gates[:, 2 * H:3 * H]
    outgate = gates[:, 3 * H:4 * H]
    if lstm.peepholes:
        ingate += cell * lstm.W_cell_to_ingate
        forgetgate += cell * lstm.W_cell_to_forgetgate
    ingate = lstm.nonlinearity_ingate(ingate)
    forgetgate = lstm.nonlinearity_forgetgate(forgetgate)
    cell_input = lstm.nonlinearity_cell(cell_input)
    new_cell = forgetgate * cell + ingate * cell_input
    if lstm.peepholes:
        outgate += new_cell * lstm.W_cell_to_outgate
    outgate = lstm.nonlinearity_outgate(outgate)
    return new_cell, outgate * lstm.nonlinearity(new_cell)


def _tag_probs(net, hid):
    import theano.tensor as T
    layer = net['logits']
    return T.nnet.softmax(T.dot(hid, layer.W) + layer.b)


def _prime(net, image, trace=False):
    """States and first-tag probabilities after the image and <start>
    (with ``trace``, the states after the image step come first)."""
    import lasagne
    import theano.tensor as T
    from .vocabulary import START_ID
    lstm = net['lstm']
    n = image.shape[0]
    emb = lasagne.layers.get_output(net['image_embedding'],
                                    {net['image']: image}, deterministic=True)
    cell = T.tile(lstm.cell_init, (n, 1))
    hid = T.tile(lstm.hid_init, (n, 1))
    cell, hid = _lstm_cell(lstm, emb, cell, hid)
    image_cell, image_hid = cell, hid
    start = T.fill(T.zeros((n,), dtype='int32'), START_ID)
    cell, hid = _lstm_cell(lstm, net['tag_embedding'].W[start], cell, hid)
    if trace:
        return image_cell, image_hid, cell, hid, _tag_probs(net, hid)
    return cell, hid, _tag_probs(net, hid)


def _pick(probs, emitted, banned):
    """Greedy choice among allowed tokens (ties: lowest id, as argmax)."""
    import theano.tensor as T
    allowed = T.switch(T.gt(emitted + banned, 0), -1.0, probs)
    token = T.argmax(allowed, axis=1).astype('int32')
    return token, probs[T.arange(probs.shape[0]), token]


def _banned_row(vocab_size):
    from .vocabulary import PAD_ID, START_ID
    row = np.zeros(vocab_size, dtype='float32')
    row[[PAD_ID, START_ID]] = 1
    return row


def compile_greedy(net, max_len, trace=False):
    """Compile ``greedy(image) -> (tokens, probs)``, each (N, max_len).

    With ``trace``, the function also returns every LSTM step's cell and
    hidden state (N, max_len + 2, H) and tag distribution
    (N, max_len + 2, V): step 0 fed the image, step 1 ``<start>``, step
    ``k + 2`` token ``k`` (the reference bundle's layout, :mod:`bundle`).

    At most ``max_len`` tags; a row that reaches it without ``<end>`` just
    stops (as in :func:`decode.beam_search`).  One Theano ``scan`` over
    ``max_len`` steps carries (cell, hidden),
    the next-tag probabilities, the set of tags already emitted and a done
    flag per image; each step picks a tag, feeds it to the LSTM and computes
    the next probabilities.  After ``<end>`` an image emits ``<pad>`` with
    probability 0.
    """
    import theano
    import theano.tensor as T
    from .vocabulary import END_ID, PAD_ID

    image = T.matrix('image')
    vocab_size = net['logits'].num_units
    banned = T.constant(_banned_row(vocab_size)).dimshuffle('x', 0)
    if trace:
        image_cell, image_hid, cell, hid, probs = _prime(net, image, True)
    else:
        cell, hid, probs = _prime(net, image)
    n = image.shape[0]
    rows = T.arange(n)

    def step(cell, hid, probs, emitted, done, W_emb):
        token, p = _pick(probs, emitted, banned)
        token = T.switch(done, PAD_ID, token).astype('int32')
        p = T.switch(done, 0.0, p)
        emitted = T.set_subtensor(emitted[rows, token], 1.0)
        done = T.or_(done, T.eq(token, END_ID).astype('int8'))
        cell, hid = _lstm_cell(net['lstm'], W_emb[token], cell, hid)
        return [cell, hid, _tag_probs(net, hid), emitted, done, token, p]

    outputs, _ = theano.scan(
        step, non_sequences=[net['tag_embedding'].W], n_steps=max_len,
        outputs_info=[cell, hid, probs,
                      T.zeros((n, vocab_size), dtype=probs.dtype),
                      T.zeros((n,), dtype='int8'), None, None])
    if not trace:
        return function_cache.function([image], [outputs[5].T, outputs[6].T])

    def steps(first, second, rest):
        return T.concatenate([first.dimshuffle('x', 0, 1),
                              second.dimshuffle('x', 0, 1), rest],
                             axis=0).dimshuffle(1, 0, 2)

    return function_cache.function([image], [
        outputs[5].T, outputs[6].T, steps(image_cell, cell, outputs[0]),
        steps(image_hid, hid, outputs[1]),
        steps(_tag_probs(net, image_hid), probs, outputs[2])])


def compile_step(net):
    """Compile ``prime(image) -> (log_probs, cell, hid)`` and
    ``step(cell, hid, tokens) -> (log_probs, cell, hid)`` for beam search."""
    import theano.tensor as T
    image = T.matrix('image')
    cell, hid, probs = _prime(net, image)
    prime = function_cache.function([image], [T.log(probs), cell, hid])
    c, h = T.matrix('cell'), T.matrix('hid')
    tokens = T.ivector('tokens')
    c2, h2 = _lstm_cell(net['lstm'], net['tag_embedding'].W[tokens], c, h)
    step = function_cache.function([c, h, tokens],
                           [T.log(_tag_probs(net, h2)), c2, h2])
    return prime, step


def compile_sequence_probs(net):
    """``probs(image, inputs) -> (N, steps, V)`` through the full network
    (no dropout), the image step included: the Recipes way."""
    import theano.tensor as T
    image = T.matrix('image')
    inputs = net['tags'].input_var
    ones = T.ones((inputs.shape[0], inputs.shape[1] + 1))
    logits = sequence_logits(net, True, {net['image']: image,
                                         net['tags']: inputs,
                                         net['mask']: ones})
    flat = logits.reshape((-1, logits.shape[-1]))
    probs = T.nnet.softmax(flat).reshape(logits.shape)
    return function_cache.function([image, inputs], probs)


def slow_greedy(seq_probs, image, max_len, vocab_size):
    """Greedy decoding by rerunning the network on the growing prefix.

    ``seq_probs`` is :func:`compile_sequence_probs`'s function.  Same rules
    and output as :func:`compile_greedy`'s function.
    """
    from .vocabulary import END_ID, PAD_ID, START_ID
    n = len(image)
    banned = _banned_row(vocab_size)[None, :]
    emitted = np.zeros((n, vocab_size), dtype='float32')
    done = np.zeros(n, dtype=bool)
    tokens = np.full((n, max_len), PAD_ID, dtype='int32')
    probs_out = np.zeros((n, max_len))
    prefix = np.full((n, 1), START_ID, dtype='int32')
    for t in range(max_len):
        probs = seq_probs(image, prefix)[:, -1]
        allowed = np.where(emitted + banned > 0, -1.0, probs)
        token = np.argmax(allowed, axis=1).astype('int32')
        p = probs[np.arange(n), token]
        token[done] = PAD_ID
        p[done] = 0.0
        tokens[:, t] = token
        probs_out[:, t] = p
        emitted[np.arange(n), token] = 1.0
        done |= token == END_ID
        if done.all():
            break
        prefix = np.concatenate([prefix, token[:, None]], axis=1)
    return tokens, probs_out


class TagDecoder(object):
    """Decodes tags for feature rows with a trained tagger (compiled once)."""

    def __init__(self, net, vocab, max_len):
        self.net, self.vocab, self.max_len = net, vocab, max_len
        self.feature_width = net['image'].shape[1]
        self._greedy = None
        self._step = None

    def _check(self, features):
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[1] != self.feature_width:
            raise TaggerError('features of shape %s; the tagger expects '
                              '(N, %d)' % (features.shape,
                                           self.feature_width))
        return features

    def greedy(self, features, batch_size=100):
        """List of ``[(tag, probability), ...]`` per row (greedy scan)."""
        features = self._check(features)
        if self._greedy is None:
            self._greedy = compile_greedy(self.net, self.max_len)
        out = []
        for start in range(0, len(features), batch_size):
            tokens, probs = self._greedy(_floatx(features[start:
                                                          start + batch_size]))
            out.extend(self._to_tags(tokens, probs))
        return out

    def beam(self, features, beam_width=3):
        """Best beam hypothesis per row, as ``[(tag, probability), ...]``."""
        from . import decode
        features = self._check(features)
        if self._step is None:
            self._step = compile_step(self.net)
        prime, step = self._step
        out = []
        for row in _floatx(features):
            log_probs, cell, hid = prime(row[None])
            hyps = decode.beam_search(
                lambda state, tokens: _beam_step(step, state, tokens),
                (cell, hid), log_probs[0], self.vocab.size,
                end_id=self.vocab.end_id, beam_width=beam_width,
                max_len=self.max_len)
            ids = list(hyps[0][0])
            # per-tag probability along the chosen path
            out.append(self._path_probs(prime, step, row, ids))
        return out

    def _path_probs(self, prime, step, row, ids):
        log_probs, cell, hid = prime(row[None])
        tags = []
        for token in ids:
            tags.append((self.vocab.tag(token),
                         float(np.exp(log_probs[0, token]))))
            log_probs, cell, hid = step(cell, hid,
                                        np.array([token], dtype='int32'))
        return tags

    def _to_tags(self, tokens, probs):
        out = []
        for row_t, row_p in zip(tokens, probs):
            tags = []
            for token, p in zip(row_t, row_p):
                if token == self.vocab.end_id or token == self.vocab.pad_id:
                    break
                tags.append((self.vocab.tag(int(token)), float(p)))
            out.append(tags)
        return out


def _beam_step(step, state, tokens):
    log_probs, cell, hid = step(state[0], state[1],
                                np.asarray(tokens, dtype='int32'))
    return log_probs, (cell, hid)


def _floatx(a):
    import theano
    return np.asarray(a, dtype=theano.config.floatX)


# --- training ----------------------------------------------------------------

def _class_sequences(vocab, classes, taxonomy):
    from ..data.datasets import class_tags
    tags = class_tags(taxonomy, classes)
    max_len = max(len(t) for t in tags)
    inputs, targets, mask = vocab.encode_batch(tags, max_len)
    return inputs, targets, mask, max_len


def train_tagger(config, out_dir, resume=False, progress=True, log=print,
                 overwrite=False):
    """Train the tagger on precomputed features; returns the eval history.

    Every ``eval_every`` iterations: validation loss and tag (token)
    accuracy, teacher-forced, checkpoints ``best`` and ``last`` and
    ``metrics.jsonl`` (rewritten from ``last``'s history).  Resume is exact
    at those boundaries (Adam state saved; batches and dropout reseeded
    from (seed, chunk)).  A folder that already holds a run is refused
    unless ``resume`` or ``overwrite``.  The loop:
    :func:`lasagne_tagger.training.loop.run_rounds`.
    """
    from ..data import datasets
    from . import features as feats

    config.validate()
    resume_from = open_run(out_dir, resume, overwrite, 'tagger run')
    table = feats.open_features(config.features)
    taxonomy = datasets.load_taxonomy(config.taxonomy)
    vocab = Vocabulary.from_taxonomy(
        OrderedDict((c, taxonomy[c]) for c in table.classes)
        if all(c in taxonomy for c in table.classes) else taxonomy)
    inputs, targets, mask, max_len = _class_sequences(vocab, table.classes,
                                                       taxonomy)
    train_rows = table.rows(config.train_split)
    val_rows = table.rows(config.val_split)
    if not len(train_rows) or not len(val_rows):
        raise TaggerError('features have no %r or %r rows'
                          % (config.train_split, config.val_split),
                          config.features)
    import lasagne
    lasagne.random.set_rng(np.random.RandomState(config.seed))
    net = build_tagger(table.width, vocab.size, max_len, config)
    train_fn, eval_fn, opt_state, streams = compile_training(net, config)
    state = checkpoint.training_state(net, opt_state)
    last = os.path.join(out_dir, 'last')
    history, start_chunk, best = [], 0, -1.0
    if resume_from:
        arrays, meta = checkpoint.load_checkpoint(resume_from)
        if Vocabulary.from_dict(meta['vocabulary']) != vocab:
            raise TaggerError('checkpoint vocabulary differs from the '
                              'taxonomy\'s', last + '.npz')
        checkpoint.assign_params(state, arrays, source=last + '.npz')
        history = meta['history']
        start_chunk = meta['iteration'] // config.eval_every
        best = max(h['val_tag_accuracy'] for h in history)
        write_metrics(out_dir, history)
        log('resuming after iteration %d' % meta['iteration'])
    stage = _TaggerStage(config, table, train_rows, val_rows, vocab,
                         max_len, train_fn, eval_fn, inputs, targets, mask)
    n_chunks = math.ceil(config.iterations / config.eval_every)
    return run_rounds(stage, out_dir, range(start_chunk, n_chunks), state,
                      checkpoint.named_params(net), streams, config.seed,
                      history, best, progress=progress, log=log)


class _TaggerStage(Stage):
    """The tagger's part of the training loop: a round is ``eval_every``
    iterations (the last one may be shorter)."""

    round_name = 'iterations'
    score = 'val_tag_accuracy'
    unit = 'it'

    def __init__(self, config, table, train_rows, val_rows, vocab, max_len,
                 train_fn, eval_fn, inputs, targets, mask):
        self.config, self.table, self.vocab = config, table, vocab
        self.train_rows, self.max_len = train_rows, max_len
        self.train_fn, self.eval_fn = train_fn, eval_fn
        self.inputs, self.targets, self.mask = inputs, targets, mask
        self.val_feats = table.features(val_rows, rotation=0)
        self.val_labels = table.labels[val_rows]
        self.steps = 0

    def batches(self, chunk):
        config, table = self.config, self.table
        rng = np.random.RandomState([config.seed, chunk, 11])
        first = chunk * config.eval_every
        self.steps = min(config.eval_every, config.iterations - first)

        def generate():
            for _ in range(self.steps):
                rows = self.train_rows[rng.randint(
                    0, len(self.train_rows), config.batch_size)]
                rot = rng.randint(0, table.rotations, len(rows)) \
                    if config.use_rotations else np.zeros(len(rows), int)
                yield table.features(rows, rot), table.labels[rows]
        return (generate(), self.steps,
                'iterations %d-%d' % (first + 1, first + self.steps))

    def step(self, batch):
        feats, labels = batch
        loss, acc = self.train_fn(_floatx(feats), self.inputs[labels],
                                  self.targets[labels],
                                  _floatx(self.mask[labels]))
        return loss, acc, len(labels)

    def finish(self, chunk, totals, train_seconds):
        labels = self.val_labels
        v_loss, v_acc = self.eval_fn(_floatx(self.val_feats),
                                     self.inputs[labels],
                                     self.targets[labels],
                                     _floatx(self.mask[labels]))
        # note: iterations/s of training alone (it included the
        # validation pass before the loops were one)
        return {'iteration': chunk * self.config.eval_every + self.steps,
                'train_loss': totals.loss,
                'train_tag_accuracy': totals.accuracy,
                'val_loss': float(v_loss), 'val_tag_accuracy': float(v_acc),
                'iterations_per_s': self.steps / train_seconds}

    def metadata(self, chunk, row, history):
        table = self.table
        return {'kind': 'tagger', 'config': config_to_dict(self.config),
                'iteration': row['iteration'], 'history': history,
                'vocabulary': self.vocab.to_dict(), 'max_len': self.max_len,
                'feature_width': table.width, 'classes': table.classes,
                'feature_layer': table.layer}

    def describe(self, row):
        return ('iteration %d: train loss %.4f tag acc %.3f | val loss %.4f '
                'tag acc %.3f' % (row['iteration'], row['train_loss'],
                                  row['train_tag_accuracy'], row['val_loss'],
                                  row['val_tag_accuracy']))


def load_tagger(prefix):
    """``(TagDecoder, meta)`` from a tagger checkpoint."""
    arrays, meta = checkpoint.load_checkpoint(prefix)
    if meta.get('kind') != 'tagger':
        raise TaggerError('not a tagger checkpoint (kind %r)'
                          % meta.get('kind'), prefix)
    config = TaggerConfig(**meta['config'])
    vocab = Vocabulary.from_dict(meta['vocabulary'], source=os.fspath(prefix))
    net = build_tagger(meta['feature_width'], vocab.size, meta['max_len'],
                       config)
    checkpoint.assign_params(checkpoint.named_params(net), arrays,
                             source=os.fspath(prefix))
    return TagDecoder(net, vocab, meta['max_len']), meta
