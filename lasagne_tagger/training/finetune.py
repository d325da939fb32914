"""Fine-tune GoogLeNet on a prepared store (the blog's ACS classifier).

All layers train; ``loss3/classifier`` is replaced by an N-way dense layer
after a dropout layer (BVLC's train net).  Loss: categorical cross-entropy
+ ``l2`` x sum of squared regularizable weights.  Nesterov momentum SGD, the
learning rate in a ``theano.shared`` following a step schedule, an optional
multiplier for the new head.  Rotation augmentation by 0/90/180/270 degrees.

Resume is exact at epoch boundaries: parameters, momentum buffers and the
epoch counter are checkpointed, the shuffle order comes from (seed, epoch)
and the dropout stream is reseeded from (seed, epoch) at each epoch start.
"""
import dataclasses
from collections import OrderedDict
import math
import os
import time
from typing import Optional

import numpy as np

from ..runtime import _theano  # noqa: F401 (prepares Theano)
from . import checkpoint
from ..runtime import function_cache
from ..model import googlenet
from ..config import check_finite, config_to_dict
from ..atomic import write_json
from ..errors import TaggerError
from .run_folder import open_run, write_metrics
from .loop import Stage, dropout_streams

__all__ = ['FinetuneConfig', 'build_network', 'compile_functions',
           'rotate_batch', 'flip_shift_batch', 'train', 'evaluate', 'load_classifier']


@dataclasses.dataclass
class FinetuneConfig:
    """Hyper-parameters of a fine-tuning run (saved with every checkpoint)."""
    store: str = ''                   # prepared HDF5 store
    train_split: str = 'train'
    val_split: str = 'validation'
    weights: Optional[str] = None     # blvc_googlenet.pkl; None: default path
    from_scratch: bool = False        # must be explicit: never silent
    width: float = 1.0                # 1.0 = GoogLeNet (only 1.0 loads zoo)
    dropout: float = 0.4              # BVLC train_val: pool5/drop_7x7_s1
    l2: float = 2e-4                  # weight of the L2 penalty
    rotate: bool = True               # 0/90/180/270 augmentation
    # note: the blog augments by rotation only.  ``flip`` (random
    # left-right mirror) and ``shift`` (random translation by up to this
    # fraction of the side, edges replicated) are departures for the
    # from-scratch CPU stand-in; experiments run them as a variant of their
    # own beside the blog's, never instead of it.
    flip: bool = False
    shift: float = 0.0
    learning_rate: float = 0.001
    head_lr_mult: float = 10.0        # new classifier learns faster
    # note: conv1 sees raw pixels (std ~60) while every other layer sees
    # O(1) activations, so its gradient is ~60^2 times too large relative to
    # its weights.  A multiplier of 1/60^2 makes SGD behave exactly as if
    # the inputs were unit-variance; needed from scratch (lr 0.003 diverged
    # without it), and harmless to leave at 1.0 when fine-tuning.
    conv1_lr_mult: float = 1.0
    init: str = 'glorot'              # 'he' for from-scratch (googlenet.py)
    # Initial value of every conv bias, from scratch only (the zoo's weights
    # replace them).  BVLC's train_val.prototxt fills them with 0.2 (a small
    # positive bias keeps ReLUs alive while the net is near chance); 0.0 is
    # Lasagne's default.  Measured on the 32 px synthetic demo (width 0.125,
    # He, zero head, lr 0.01, 12 epochs of 12000 images, Caffe pooling):
    # 0.2 -> val 0.975 / test 0.958, 0.0 -> val 0.942 / test 0.958.  With
    # Theano's tie-over-counting pool gradient (before pooling.py) 0.2 was
    # the only bias that kept the features from collapsing to 0.
    conv_bias: float = 0.0
    # How the new N-way classifier starts: 'glorot' (Lasagne's default, as
    # BVLC's xavier filler) or 'zero'.
    # note: 'zero' is not BVLC's; from scratch it makes the first loss
    # exactly ln(N).  With 'glorot' on a He-initialised body the first
    # logits have std ~4 (first loss 7.4 instead of 2.08); measured (32 px,
    # width 0.125, lr 0.01): val 0.18 after epoch 1 vs 0.45 with 'zero'
    # (both ~0.81-0.86 by epoch 4).
    head_init: str = 'glorot'
    momentum: float = 0.9
    # 'step': multiply the rate by ``lr_decay`` every ``lr_step_epochs``
    # epochs (BVLC's quick_solver steps too).  'cosine': half a cosine from
    # ``learning_rate`` towards 0 over the epochs after the warm-up (not
    # the blog's; for the from-scratch stand-in's fixed budget).
    lr_schedule: str = 'step'
    lr_decay: float = 0.1             # multiply the rate by this ...
    lr_step_epochs: int = 10          # ... every this many epochs
    # Epochs whose rate ramps linearly up to ``learning_rate`` (epoch k of
    # w runs at (k + 1) / (w + 1) of it); 0: none.
    warmup_epochs: int = 0
    batch_size: int = 32
    epochs: int = 30
    seed: int = 1

    def validate(self):
        check_finite(self)
        if self.batch_size < 1 or self.epochs < 1:
            raise TaggerError('batch_size and epochs must be >= 1')
        if self.l2 < 0 or self.learning_rate <= 0:
            raise TaggerError('l2 must be >= 0 and learning_rate > 0')
        if not 0 <= self.dropout < 1:
            raise TaggerError('dropout must be in [0, 1)')
        if self.lr_step_epochs < 1:
            raise TaggerError('lr_step_epochs must be >= 1')
        if self.lr_schedule not in ('step', 'cosine'):
            raise TaggerError("lr_schedule must be 'step' or 'cosine', got "
                              "%r" % (self.lr_schedule,))
        if not 0 <= self.warmup_epochs < self.epochs:
            raise TaggerError('warmup_epochs must be in [0, epochs), got %r'
                              % (self.warmup_epochs,))
        if not 0 <= self.shift < 0.5:
            raise TaggerError('shift must be in [0, 0.5), got %r'
                              % (self.shift,))

    def learning_rate_at(self, epoch):
        """The learning rate of (0-based) ``epoch``."""
        if epoch < self.warmup_epochs:
            return self.learning_rate * (epoch + 1) / (self.warmup_epochs + 1)
        if self.lr_schedule == 'cosine':
            done = (epoch - self.warmup_epochs) / (self.epochs -
                                                   self.warmup_epochs)
            return self.learning_rate * 0.5 * (1 + math.cos(math.pi * done))
        return self.learning_rate * self.lr_decay ** (epoch //
                                                      self.lr_step_epochs)


def build_network(config, num_classes, image_size, input_var=None,
                  layer_options=None):
    """GoogLeNet with an N-way head, initialised as the config says
    (``layer_options``: :func:`lasagne_tagger.model.googlenet.build_model`'s,
    for benchmarks; None builds the layers as they ship)."""
    from ..model import weights as zoo
    import lasagne

    lasagne.random.set_rng(np.random.RandomState(config.seed))
    net = googlenet.build_model(input_var=input_var, image_size=image_size,
                                num_classes=num_classes,
                                dropout=config.dropout, width=config.width,
                                init=config.init, layer_options=layer_options)
    head = net['loss3/classifier']
    if config.head_init == 'zero':
        head.W.set_value(np.zeros_like(head.W.get_value()))
    elif config.head_init != 'glorot':
        raise TaggerError("head_init must be 'glorot' or 'zero', got %r"
                          % (config.head_init,))
    if config.from_scratch:
        if config.conv_bias:
            for name in googlenet.PARAM_LAYERS[:-1]:
                b = net[name].b
                b.set_value(np.full_like(b.get_value(), config.conv_bias))
        return net, 'from scratch (--from-scratch)'
    path = config.weights or zoo.default_weights_path()
    if config.width != 1.0:
        raise TaggerError('width %g cannot load the model-zoo weights; pass '
                          'from_scratch=true' % config.width)
    if zoo.find_weights(path) is None:
        raise TaggerError(zoo.fetch_instructions(path) +
                          ', or train with from_scratch=true')
    data = zoo.load_model_zoo_pickle(path)
    try:
        googlenet.set_model_zoo_values(net, data['param values'][:-2],
                                       layers=googlenet.PARAM_LAYERS[:-1])
    except TaggerError as exc:
        raise TaggerError(str(exc), path) from None
    return net, 'ImageNet model-zoo weights (%s)' % path


def _cross_entropy(logits, y):
    """Mean cross-entropy from logits via a stable log-softmax
    (:func:`lasagne_tagger.training.losses.log_softmax`)."""
    import theano.tensor as T
    from .losses import log_softmax
    log_probs = log_softmax(logits, axis=1)
    return -log_probs[T.arange(y.shape[0]), y].mean()


def _compile_eval(net, y):
    """``evaluate(x, y) -> (mean cross-entropy, probabilities)``, no
    dropout."""
    import lasagne
    import theano.tensor as T
    logits = lasagne.layers.get_output(net['loss3/classifier'],
                                       deterministic=True)
    return function_cache.function([net['input'].input_var, y],
                           [_cross_entropy(logits, y), T.nnet.softmax(logits)])


def compile_functions(net, config):
    """Compile ``train(x, y) -> (loss, acc)`` and ``evaluate(x, y) ->
    (loss, probs)``; returns them with the learning-rate shared variable,
    the optimizer's shared state and the dropout random streams."""
    import lasagne
    import theano
    import theano.tensor as T
    from lasagne.regularization import l2, regularize_network_params

    x = net['input'].input_var
    y = T.ivector('y')
    out = net['prob']
    logits = lasagne.layers.get_output(net['loss3/classifier'])
    ce = _cross_entropy(logits, y)
    probs = T.nnet.softmax(logits)
    penalty = regularize_network_params(out, l2)
    loss = ce + config.l2 * penalty
    acc = T.mean(T.eq(T.argmax(probs, axis=1), y))

    lr = theano.shared(np.asarray(config.learning_rate, theano.config.floatX),
                       name='learning_rate')
    head = net['loss3/classifier'].get_params()
    first = net['conv1/7x7_s2'].get_params()
    body = [p for p in lasagne.layers.get_all_params(out, trainable=True)
            if p not in head and p not in first]
    groups = [(body, 1.0), (first, config.conv1_lr_mult),
              (head, config.head_lr_mult)]
    grads = iter(T.grad(loss, body + first + head))
    updates = OrderedDict()
    for group, mult in groups:
        updates.update(lasagne.updates.nesterov_momentum(
            [next(grads) for _ in group], group, lr * mult,
            config.momentum))
    params = set(body + first + head)
    opt_state = [v for v in updates if v not in params]
    train_fn = function_cache.function([x, y], [ce, acc], updates=updates)

    eval_fn = _compile_eval(net, y)
    return train_fn, eval_fn, lr, opt_state, dropout_streams(net)


def rotate_batch(crops, rng):
    """Rotate each square crop by a random multiple of 90 degrees."""
    out = np.empty_like(crops)
    turns = rng.randint(0, 4, size=len(crops))
    for i, k in enumerate(turns):
        out[i] = np.rot90(crops[i], k)
    return out


def flip_shift_batch(crops, rng, flip=True, shift=0.0):
    """Mirror each crop left-right with probability 1/2 (``flip``) and
    translate it by up to ``shift`` x its side in each direction, filling
    with the edge pixels; crops ``(N, H, W, C)``, returns a new array."""
    n, h, w = crops.shape[:3]
    mirror = rng.randint(0, 2, size=n) if flip else np.zeros(n, int)
    my, mx = int(round(shift * h)), int(round(shift * w))
    dy = rng.randint(0, 2 * my + 1, size=n)
    dx = rng.randint(0, 2 * mx + 1, size=n)
    if my or mx:
        padded = np.pad(crops, ((0, 0), (my, my), (mx, mx), (0, 0)),
                        mode='edge')
    else:
        padded = crops
    out = np.empty_like(crops)
    for i in range(n):
        img = padded[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = img[:, ::-1] if mirror[i] else img
    return out


def _evaluate_split(store, split, eval_fn, batch_size, num_classes):
    from ..evaluation import metrics
    from ..data.preprocess import to_network_input
    losses, preds, labels = [], [], []
    for crops, y, _ in store.batches(split, batch_size):
        loss, probs = eval_fn(to_network_input(crops), y.astype(np.int32))
        losses.append(float(loss) * len(y))
        preds.append(np.argmax(probs, axis=1))
        labels.append(y)
    if not labels:
        raise TaggerError('split %r of the store is empty' % split,
                          store.path)
    labels = np.concatenate(labels)
    preds = np.concatenate(preds)
    report = metrics.classification_report(labels, preds, store.classes)
    report['loss'] = sum(losses) / len(labels)
    report['labels'] = labels.tolist()
    report['predictions'] = preds.tolist()
    return report


def train(config, out_dir, resume=False, progress=True, log=print,
          overwrite=False):
    """Fine-tune as ``config`` says, writing everything to ``out_dir``.

    Files: ``last.npz`` (every epoch), ``best.npz`` (best validation mean
    class accuracy), with ``.json`` copies of their metadata,
    ``metrics.jsonl`` (one line per epoch, rewritten from the ``last``
    checkpoint's history), ``config.json``.  A folder that already holds a
    run is refused unless ``resume`` (continue from ``last``) or
    ``overwrite``.  Ctrl-C keeps the last finished epoch and returns; a
    NaN/inf loss stops with a TaggerError, keeping the last good checkpoint
    (the loop: :func:`lasagne_tagger.training.loop.run_rounds`).

    Returns
    -------
    list of dict
        The per-epoch metrics (including earlier epochs when resuming).
    """
    from ..data import store as store_mod
    from .loop import run_rounds

    config.validate()
    resume_from = open_run(out_dir, resume, overwrite, 'training run')
    last = os.path.join(out_dir, 'last')
    with store_mod.open_store(config.store) as store:
        num_classes = len(store.classes)
        net, init = build_network(config, num_classes, store.size)
        train_fn, eval_fn, lr, opt_state, streams = compile_functions(
            net, config)
        state = checkpoint.training_state(net, opt_state)
        history, start_epoch, best = [], 0, -1.0
        if resume_from:
            arrays, meta = checkpoint.load_checkpoint(resume_from)
            if meta.get('classes') != list(store.classes):
                raise TaggerError('checkpoint is for classes %s, the store '
                                  'has %s' % (meta.get('classes'),
                                              list(store.classes)),
                                  last + '.npz')
            checkpoint.assign_params(state, arrays, source=last + '.npz')
            history = meta['history']
            start_epoch = meta['epoch'] + 1
            best = max(h['val_mean_class_accuracy'] for h in history)
            init = meta['init']
            write_metrics(out_dir, history)
            log('resuming after epoch %d' % meta['epoch'])
        write_json(os.path.join(out_dir, 'config.json'),
                   config_to_dict(config))
        log('initialisation: %s' % init)
        stage = _FinetuneStage(config, store, train_fn, eval_fn, lr, init)
        return run_rounds(stage, out_dir, range(start_epoch, config.epochs),
                          state, checkpoint.named_params(net), streams,
                          config.seed, history, best, progress=progress,
                          log=log)


class _FinetuneStage(Stage):
    """Fine-tuning's part of the training loop: a round is an epoch."""

    round_name = 'epoch'
    score = 'val_mean_class_accuracy'
    unit = 'batch'

    def __init__(self, config, store, train_fn, eval_fn, lr, init):
        self.config, self.store = config, store
        self.train_fn, self.eval_fn, self.lr = train_fn, eval_fn, lr
        self.init = init
        self.n_train = store.count(config.train_split)
        self.confusion = None

    def batches(self, epoch):
        config = self.config
        self.lr.set_value(np.asarray(config.learning_rate_at(epoch),
                                     self.lr.dtype))
        aug = np.random.RandomState([config.seed, epoch, 7])
        # own stream: rotation-only runs stay as they were
        aug2 = np.random.RandomState([config.seed, epoch, 11])

        def generate():
            for crops, y, _ in self.store.batches(
                    config.train_split, config.batch_size, shuffle=True,
                    seed=config.seed, epoch=epoch):
                if config.rotate:
                    crops = rotate_batch(crops, aug)
                if config.flip or config.shift:
                    crops = flip_shift_batch(crops, aug2, config.flip,
                                             config.shift)
                yield crops, y
        return (generate(), math.ceil(self.n_train / config.batch_size),
                'epoch %d' % (epoch + 1))

    def step(self, batch):
        from ..data.preprocess import to_network_input
        crops, y = batch
        loss, acc = self.train_fn(to_network_input(crops),
                                  y.astype(np.int32))
        return loss, acc, len(y)

    def finish(self, epoch, totals, train_seconds):
        t0 = time.time()
        config = self.config
        val = _evaluate_split(self.store, config.val_split, self.eval_fn,
                              config.batch_size, len(self.store.classes))
        self.confusion = val['confusion']
        row = {'epoch': epoch + 1,
               'learning_rate': config.learning_rate_at(epoch),
               'train_loss': totals.loss,
               'train_accuracy': totals.accuracy,
               'val_loss': val['loss'],
               'val_accuracy': val['accuracy'],
               'val_mean_class_accuracy': val['mean_class_accuracy'],
               'train_images_per_s': totals.count / train_seconds,
               'seconds': train_seconds + time.time() - t0}
        row['gap'] = row['train_accuracy'] - row['val_accuracy']
        return row

    def metadata(self, epoch, row, history):
        return {'kind': 'googlenet-classifier',
                'config': config_to_dict(self.config), 'epoch': epoch,
                'history': history, 'classes': list(self.store.classes),
                'image_size': self.store.size, 'init': self.init,
                'confusion': self.confusion}

    def describe(self, row):
        return ('epoch %d: train loss %.4f acc %.3f | val loss %.4f acc '
                '%.3f mean-class %.3f | gap %.3f | %.1f img/s'
                % (row['epoch'], row['train_loss'], row['train_accuracy'],
                   row['val_loss'], row['val_accuracy'],
                   row['val_mean_class_accuracy'], row['gap'],
                   row['train_images_per_s']))


def load_classifier(prefix, input_var=None):
    """Rebuild a fine-tuned network from a checkpoint: ``(net, meta)``."""
    arrays, meta = checkpoint.load_checkpoint(prefix)
    if meta.get('kind') != 'googlenet-classifier':
        raise TaggerError('not a GoogLeNet classifier checkpoint (kind %r)'
                          % meta.get('kind'), prefix)
    cfg = meta['config']
    net = googlenet.build_model(input_var=input_var,
                                image_size=meta['image_size'],
                                num_classes=len(meta['classes']),
                                dropout=cfg['dropout'], width=cfg['width'])
    checkpoint.assign_params(checkpoint.named_params(net), arrays,
                             source=prefix)
    return net, meta


def evaluate(prefix, store_path, split, batch_size=32):
    """Metrics of a checkpoint on one split of a store: those of
    :func:`metrics.classification_report`, ``loss``, and per image (store
    order) its ``labels`` and ``predictions``."""
    from ..data import store as store_mod
    import theano.tensor as T

    net, meta = load_classifier(prefix)
    with store_mod.open_store(store_path) as store:
        if list(store.classes) != meta['classes']:
            raise TaggerError('checkpoint classes %s differ from the store\'s '
                              '%s' % (meta['classes'], list(store.classes)),
                              store_path)
        eval_fn = _compile_eval(net, T.ivector('y'))
        return _evaluate_split(store, split, eval_fn, batch_size,
                               len(store.classes))
