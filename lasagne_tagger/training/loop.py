"""The one training loop both stages drive (fine-tuning and the tagger).

A run is a sequence of *rounds* (an epoch of fine-tuning, ``eval_every``
iterations of the tagger).  Each stage supplies what is its own: the
batches of a round, the training step, the evaluation that turns a round
into a metrics row, and the checkpoint metadata.  The loop owns what must
not drift between them:

* the dropout streams reseeded from ``(seed, round)`` before each round,
  so a resumed run draws what the uninterrupted one would have;
* a progress bar per round, closed on every way out;
* a NaN or infinite loss: one TaggerError naming the round and the last
  good checkpoint (nothing of the round is saved);
* Ctrl-C: the unfinished round is discarded, the last one kept, the loop
  returns (the previous SIGINT handler is restored on every way out);
* after each round ``best`` (when the score improves), then ``last``, then
  ``metrics.jsonl`` rewritten from ``last``'s history
  (:func:`lasagne_tagger.training.run_folder.write_metrics`), so a resume never
  repeats a best round and no metrics row exists without its checkpoint.
"""
import os
import signal
import time

import numpy as np

from . import checkpoint
from ..errors import TaggerError
from .run_folder import write_metrics

__all__ = ['Stage', 'dropout_streams', 'reseed', 'run_rounds']

# The reseed formula every checkpoint so far was trained with: changing it
# would change what a resumed run draws.
_SEED_BASE, _SEED_ROUND, _SEED_STREAM = 1000003, 101, 1


def dropout_streams(net):
    """The random streams of a network's dropout layers, in layer order.

    Lasagne 0.1 keeps each ``DropoutLayer``'s stream in the private
    attribute ``_srng`` (an MRG or shared random stream with ``seed()``);
    this is the one place that reads it.
    """
    return [layer._srng for layer in net.values() if hasattr(layer, '_srng')]


def reseed(streams, seed, round_index):
    """Seed each stream from ``(seed, round_index, its position)``."""
    for k, stream in enumerate(streams):
        stream.seed(seed * _SEED_BASE + round_index * _SEED_ROUND
                    + k * _SEED_STREAM)


class Stage(object):
    """What a training stage supplies to :func:`run_rounds`.

    Subclass it (or set the attributes) and define:

    ``round_name`` : str
        Names a round in messages (``'epoch'``, ``'iterations'``).
    ``score`` : str
        The metrics key whose improvement writes ``best``.
    ``batches(r)``
        Returns ``(iterable of step arguments, number of steps, bar
        title)`` for round ``r`` (0-based); may also set per-round state
        (the learning rate).
    ``step(batch)``
        Trains on one batch; returns ``(loss, accuracy, count)``.
    ``finish(r, totals, train_seconds)``
        The round's metrics row (a dict with ``score``); ``totals`` has
        ``loss``, ``accuracy`` (count-weighted means) and ``count``.
    ``metadata(r, row, history)``
        The checkpoint metadata after round ``r``.
    ``describe(row)``
        The round's log line.
    """
    round_name = 'round'
    score = 'score'
    unit = 'it'

    def batches(self, r):
        raise NotImplementedError

    def step(self, batch):
        raise NotImplementedError

    def finish(self, r, totals, train_seconds):
        raise NotImplementedError

    def metadata(self, r, row, history):
        raise NotImplementedError

    def describe(self, row):
        return ' '.join('%s %s' % kv for kv in sorted(row.items()))


class Totals(object):
    """Count-weighted running means of a round's training loss and
    accuracy."""

    def __init__(self):
        self._loss = self._accuracy = 0.0
        self.count = 0

    def add(self, loss, accuracy, count):
        self._loss += float(loss) * count
        self._accuracy += float(accuracy) * count
        self.count += count

    @property
    def loss(self):
        return self._loss / self.count

    @property
    def accuracy(self):
        return self._accuracy / self.count


def run_rounds(stage, out_dir, rounds, state, params, streams, seed,
               history=None, best=-np.inf, progress=True, log=print):
    """Train ``stage`` over ``rounds``, checkpointing after each.

    Parameters
    ----------
    stage : Stage
    out_dir : str
        The run folder (made ready by :func:`run_folder.open_run`).
    rounds : iterable of int
        The rounds still to run (0-based; a resume starts later).
    state : OrderedDict
        Everything ``last`` saves (parameters and optimizer state,
        :func:`checkpoint.training_state`).
    params : OrderedDict
        What ``best`` saves (:func:`checkpoint.named_params`).
    streams : list
        Dropout streams (:func:`dropout_streams`), reseeded each round.
    seed : int
        The run's seed.
    history : list of dict, optional
        Earlier rows (a resume); extended in place and returned.
    best : float
        The best score so far (a resume).

    Returns
    -------
    list of dict
        Every metrics row, earlier ones included.

    Raises
    ------
    TaggerError
        A loss became NaN or infinite (the last good checkpoint stays).
    """
    history = [] if history is None else history
    last = os.path.join(out_dir, 'last')
    interrupted = []
    old_handler = signal.signal(signal.SIGINT,
                                lambda *a: interrupted.append(True))
    try:
        for r in rounds:
            reseed(streams, seed, r)
            totals, title, seconds = _train_round(stage, r, last, progress,
                                                  interrupted)
            if interrupted:
                log('interrupted: %s discarded, %s kept' % (title, last))
                break
            row = stage.finish(r, totals, seconds)
            history.append(row)
            meta = stage.metadata(r, row, history)
            if row[stage.score] > best:
                best = row[stage.score]
                checkpoint.save_checkpoint(os.path.join(out_dir, 'best'),
                                           params, meta)
            # last after best: a resume never repeats a best round
            checkpoint.save_checkpoint(last, state, meta)
            write_metrics(out_dir, history)
            log(stage.describe(row))
    finally:
        signal.signal(signal.SIGINT, old_handler)
    return history


def _train_round(stage, r, last, progress, interrupted):
    """The training steps of round ``r`` under a progress bar; returns
    ``(Totals, bar title, seconds they took)``.  Stops early once ``interrupted`` (Ctrl-C)
    holds anything; a NaN or infinite loss is a TaggerError naming
    ``last``, the last good checkpoint, if there is one."""
    from ..runtime.progress import progress_bar
    batches, n_steps, title = stage.batches(r)
    t0 = time.time()
    totals = Totals()
    with progress_bar(n_steps, title, enabled=progress,
                      unit=stage.unit) as bar:
        for batch in batches:
            loss, accuracy, count = stage.step(batch)
            if not np.isfinite(loss):
                raise TaggerError(
                    'loss became %s in %s; stopped (lower learning_rate?). '
                    '%s' % (loss, title, 'The last good checkpoint is '
                            '%s.npz' % last if checkpoint.exists(last)
                            else 'No checkpoint was written yet.'))
            totals.add(loss, accuracy, count)
            bar.update()
            if interrupted:
                break
    return totals, title, time.time() - t0
