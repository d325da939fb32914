"""Beam search and greedy decoding over a one-step function (pure NumPy).

The model is seen only through a **step function**::

    log_probs, new_state = step_fn(state, tokens)

* ``state`` is an opaque tuple of arrays whose first axis is the beam axis
  (for the LSTM: ``(cell, hidden)``, each ``(B, units)``);
* ``tokens`` is an int32 array ``(B,)``: the token fed at this step, one per
  row of ``state``;
* ``log_probs`` is ``(B, V)``: the log-probability of each next token after
  ``tokens``; ``new_state`` is the state after them (same layout, ``B``
  rows).

The caller primes the model for one image (image at time step 0, then
``<start>``) and passes the result: ``init_state`` (arrays with first axis
1) and ``init_log_probs`` ``(V,)``, the distribution of the first tag.

Conventions
-----------
* A hypothesis ends when it emits ``end_id`` (whose log-probability is
  added to its score) or when it holds ``max_len`` tags (no end
  log-probability is added then).  A hypothesis that can emit nothing
  (every token banned, repeated or of probability 0) also ends as it is.
* Tokens in ``banned_ids`` (default ``<pad>`` and ``<start>``) are never
  emitted; with ``no_repeat`` a tag already in the hypothesis is not
  emitted again.  Tokens of log-probability ``-inf`` are never emitted.
* Scores are sums of the model's log-probabilities (not renormalised after
  banning).  With ``length_norm`` the finished hypotheses are *ranked* by
  ``log_prob / n ** alpha`` (``n`` = tokens emitted, end token included;
  ``alpha`` = 1 for ``True``), but the score returned is the plain sum.
* At each step the ``beam_width`` best expansions of all live hypotheses
  are kept; those that end leave the beam.  Ties go to the earlier beam
  row, then the lower token id, so ``beam_width=1`` is exactly greedy
  decoding (:func:`greedy_search` is that call).  Without length
  normalisation the search stops as soon as no live hypothesis can beat
  the ``beam_width``-th best finished one.
"""
import collections

import numpy as np

from ..errors import TaggerError
from .vocabulary import END_ID, PAD_ID, START_ID

__all__ = ['Hypothesis', 'beam_search', 'greedy_search', 'beam_search_batch']

Hypothesis = collections.namedtuple('Hypothesis', ['ids', 'log_prob'])
Hypothesis.__doc__ = """A decoded tag sequence.

ids : list of int
    Token ids, the end token not included.
log_prob : float
    Sum of the log-probabilities of the emitted tokens (end included).
"""

# One finished hypothesis inside the search: the ids, the per-step
# log-probabilities (end included when emitted), the sum, the ranking key.
_Done = collections.namedtuple('_Done', ['ids', 'steps', 'log_prob', 'rank'])


def _positive_int(value, name, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, np.integer)) or value < minimum:
        raise TaggerError('%s must be an integer >= %d, got %r'
                          % (name, minimum, value))
    return int(value)


def _check_log_probs(log_probs, rows, vocab_size, what):
    log_probs = np.asarray(log_probs, dtype=np.float64)
    if log_probs.shape != (rows, vocab_size):
        raise TaggerError('%s has shape %s, expected (%d, %d)'
                          % (what, log_probs.shape, rows, vocab_size))
    if np.isnan(log_probs).any():
        raise TaggerError('%s contains NaN' % what)
    return log_probs


def _check_state(state, rows, what):
    if not isinstance(state, (tuple, list)) or not state:
        raise TaggerError('%s must be a non-empty tuple of arrays, not %s'
                          % (what, type(state).__name__))
    state = tuple(np.asarray(a) for a in state)
    for a in state:
        if a.ndim == 0 or a.shape[0] != rows:
            raise TaggerError('%s arrays must have %d row(s) on the first '
                              'axis, got shape %s' % (what, rows, a.shape))
    return state


def _alpha(length_norm):
    if isinstance(length_norm, (bool, np.bool_)):
        return 1.0 if length_norm else 0.0
    try:
        alpha = float(length_norm)
    except (TypeError, ValueError):
        raise TaggerError('length_norm must be a bool or a number >= 0, got '
                          '%r' % (length_norm,)) from None
    if not alpha >= 0:
        raise TaggerError('length_norm must be >= 0, got %r' % (length_norm,))
    return alpha


def _search(step_fn, init_state, init_log_probs, vocab_size, end_id,
            beam_width, max_len, banned_ids, no_repeat, length_norm):
    """The one search loop; returns finished ``_Done`` records, best first."""
    vocab_size = _positive_int(vocab_size, 'vocab_size', 1)
    beam_width = _positive_int(beam_width, 'beam_width', 1)
    max_len = _positive_int(max_len, 'max_len', 1)
    end_id = _positive_int(end_id, 'end_id', 0)
    if end_id >= vocab_size:
        raise TaggerError('end_id %d out of range [0, %d)'
                          % (end_id, vocab_size))
    banned = np.zeros(vocab_size, dtype=bool)
    for b in banned_ids:
        b = _positive_int(b, 'banned id', 0)
        if b >= vocab_size:
            raise TaggerError('banned id %d out of range [0, %d)'
                              % (b, vocab_size))
        banned[b] = True
    alpha = _alpha(length_norm)
    log_probs = _check_log_probs(
        np.asarray(init_log_probs, dtype=np.float64).reshape(1, -1)
        if np.ndim(init_log_probs) == 1 else init_log_probs,
        1, vocab_size, 'init_log_probs')
    state = _check_state(init_state, 1, 'init_state')

    def rank(log_prob, n):
        return log_prob / n ** alpha if alpha and n else log_prob

    # Live beam: parallel lists, row i of ``state``/``log_probs`` is beam i.
    ids, steps, scores = [[]], [[]], [0.0]
    finished = []                  # _Done records, in the order they end

    while ids:
        scores_arr = np.asarray(scores)
        cand = log_probs.copy()
        cand[:, banned] = -np.inf
        if no_repeat:
            for row, prefix in enumerate(ids):
                cand[row, prefix] = -np.inf
        total = scores_arr[:, None] + cand            # (B, V)
        dead = ~np.isfinite(total).any(axis=1)
        for row in np.flatnonzero(dead):              # nothing to emit
            finished.append(_Done(ids[row], steps[row], scores[row],
                                  rank(scores[row], len(steps[row]))))
        flat = total.ravel()
        order = np.argsort(-flat, kind='stable')[:beam_width]
        order = order[np.isfinite(flat[order])]

        new_ids, new_steps, new_scores, parents, tokens = [], [], [], [], []
        for k in order.tolist():
            row, tok = divmod(k, vocab_size)
            step_lp = float(log_probs[row, tok])
            score = float(flat[k])
            if tok == end_id:
                n = len(steps[row]) + 1
                finished.append(_Done(ids[row], steps[row] + [step_lp],
                                      score, rank(score, n)))
            elif len(ids[row]) + 1 >= max_len:
                n = len(steps[row]) + 1
                finished.append(_Done(ids[row] + [tok],
                                      steps[row] + [step_lp],
                                      score, rank(score, n)))
            else:
                new_ids.append(ids[row] + [tok])
                new_steps.append(steps[row] + [step_lp])
                new_scores.append(score)
                parents.append(row)
                tokens.append(tok)

        if new_ids and not alpha and len(finished) >= beam_width:
            # Scores only fall from here: stop if no live one can get in.
            kth = sorted(d.rank for d in finished)[-beam_width]
            if max(new_scores) <= kth:
                new_ids = []
        ids, steps, scores = new_ids, new_steps, new_scores
        if not ids:
            break
        parents = np.asarray(parents, dtype=np.intp)
        gathered = tuple(a[parents] for a in state)
        result = step_fn(gathered, np.asarray(tokens, dtype=np.int32))
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise TaggerError('step_fn must return (log_probs, new_state)')
        log_probs = _check_log_probs(result[0], len(ids), vocab_size,
                                     'step_fn log_probs')
        state = _check_state(result[1], len(ids), 'step_fn new_state')

    # Stable sort: among equal ranks, the one that ended first wins.
    return sorted(finished, key=lambda d: -d.rank)


def beam_search(step_fn, init_state, init_log_probs, vocab_size,
                end_id=END_ID, beam_width=3, max_len=10,
                banned_ids=(PAD_ID, START_ID), no_repeat=True,
                length_norm=False):
    """Beam search for one image.

    Parameters
    ----------
    step_fn : callable
        ``step_fn(state, tokens) -> (log_probs, new_state)``, see the module
        docstring.
    init_state : tuple of ndarray
        The state after the image and ``<start>``; first axis 1.
    init_log_probs : array_like, shape (V,)
        Log-probabilities of the first tag.
    vocab_size : int
        ``V``.
    end_id : int
        The end token (default 2, ``<end>``).
    beam_width : int
        Hypotheses kept per step, and most hypotheses returned.
    max_len : int
        Most tags in a hypothesis (the end token not counted), >= 1.
    banned_ids : sequence of int
        Tokens never emitted (default ``<pad>`` and ``<start>``).
    no_repeat : bool
        Forbid emitting a tag already in the hypothesis.
    length_norm : bool or float
        Rank finished hypotheses by ``log_prob / n ** alpha``; ``True``
        means ``alpha = 1``, ``False`` or 0 ranks by ``log_prob``.

    Returns
    -------
    list of Hypothesis
        At most ``beam_width`` ``(ids, log_prob)`` pairs, best first; ``ids``
        is a list of ints without the end token.

    Raises
    ------
    TaggerError
        On a bad argument, or a step function returning a wrongly shaped
        result or NaN.
    """
    done = _search(step_fn, init_state, init_log_probs, vocab_size, end_id,
                   beam_width, max_len, banned_ids, no_repeat, length_norm)
    return [Hypothesis(d.ids, d.log_prob) for d in done[:beam_width]]


def greedy_search(step_fn, init_state, init_log_probs, vocab_size,
                  end_id=END_ID, max_len=10, banned_ids=(PAD_ID, START_ID),
                  no_repeat=True):
    """Greedy decoding for one image: :func:`beam_search` with width 1.

    Parameters are those of :func:`beam_search`.

    Returns
    -------
    ids : list of int
        The tags emitted, without the end token.
    probs : list of float
        ``probs[i]`` is the model's probability of ``ids[i]`` at its step
        (the end token's probability is not included).
    """
    done = _search(step_fn, init_state, init_log_probs, vocab_size, end_id,
                   1, max_len, banned_ids, no_repeat, False)
    best = done[0]
    probs = [float(np.exp(lp)) for lp in best.steps[:len(best.ids)]]
    return best.ids, probs


def beam_search_batch(step_fn, init_states, init_log_probs, vocab_size,
                      **kwargs):
    """:func:`beam_search` for each image of a batch, one after the other.

    Parameters
    ----------
    init_states : tuple of ndarray
        First axis ``N``: row ``i`` is image ``i``'s initial state.
    init_log_probs : array_like, shape (N, V)
    **kwargs
        Passed to :func:`beam_search`.

    Returns
    -------
    list of list of Hypothesis
        One result list per image.
    """
    init_log_probs = np.asarray(init_log_probs)
    if init_log_probs.ndim != 2:
        raise TaggerError('init_log_probs must be (N, V), got shape %s'
                          % (init_log_probs.shape,))
    n = init_log_probs.shape[0]
    init_states = _check_state(init_states, n, 'init_states')
    return [beam_search(step_fn, tuple(a[i:i + 1] for a in init_states),
                        init_log_probs[i], vocab_size, **kwargs)
            for i in range(n)]
