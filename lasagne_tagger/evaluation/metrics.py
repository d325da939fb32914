"""Evaluation metrics: clothing-class accuracy and tag-set scores (NumPy).

Conventions
-----------
* Any ratio whose denominator is 0 (precision of a class or tag never
  predicted, recall of one never true, F1 when precision and recall are
  both 0) is **0**.  ``support`` / ``tp``/``fp``/``fn`` are reported next to
  each ratio so such zeros can be told apart.
* :func:`mean_class_accuracy` averages per-class recall over the classes
  present in ``y_true`` only; this is the "average accuracy" of the ACS
  protocol.
* Macro tag scores average the per-tag precision, recall and F1 over every
  tag that appears in the truth or in a prediction; macro F1 is the mean of
  per-tag F1 (not the F1 of macro precision and recall).
* Every function returns plain Python numbers, lists and dicts (JSON-ready).
* Confidence intervals (:func:`accuracy_intervals`,
  :func:`tag_f1_intervals`) are percentile bootstrap intervals over the
  evaluated images: resample the images with replacement, recompute the
  score, take the central ``level`` of the resampled scores.
"""
import numpy as np

from ..errors import TaggerError

__all__ = ['confusion_matrix', 'accuracy', 'mean_class_accuracy',
           'classification_report', 'tag_metrics', 'bootstrap_indices',
           'accuracy_intervals', 'tag_f1_intervals']


def _ratio(num, den):
    return float(num) / float(den) if den else 0.0


def _f1(precision, recall):
    total = precision + recall
    return 2.0 * precision * recall / total if total else 0.0


def _labels(y, name, n_classes=None):
    """``y`` as a 1-D int64 array of class ids (checked against n_classes)."""
    a = np.asarray(y)
    if a.ndim != 1:
        raise TaggerError('%s must be 1-D, got shape %s' % (name, a.shape))
    if a.size == 0:
        return a.astype(np.int64)
    if a.dtype.kind not in 'iu':
        if a.dtype.kind == 'f' and np.all(np.isfinite(a)) and np.all(
                a == np.round(a)):
            a = a.astype(np.int64)
        else:
            raise TaggerError('%s must hold integer class ids, got dtype %s'
                              % (name, a.dtype))
    a = a.astype(np.int64)
    bad = a < 0
    if n_classes is not None:
        bad |= a >= n_classes
    if bad.any():
        raise TaggerError('%s: class id %d out of range [0, %s)'
                          % (name, a[bad][0], n_classes if n_classes
                             is not None else 'inf'))
    return a


def _pair(y_true, y_pred, n_classes=None):
    t = _labels(y_true, 'y_true', n_classes)
    p = _labels(y_pred, 'y_pred', n_classes)
    if t.shape != p.shape:
        raise TaggerError('y_true has %d labels but y_pred has %d'
                          % (t.size, p.size))
    if t.size == 0:
        raise TaggerError('no labels to score')
    return t, p


def confusion_matrix(y_true, y_pred, n_classes):
    """Counts ``C[i, j]`` of samples of true class ``i`` predicted ``j``.

    Parameters
    ----------
    y_true, y_pred : array_like of int, shape (N,)
    n_classes : int

    Returns
    -------
    ndarray of int64, shape (n_classes, n_classes)

    Raises
    ------
    TaggerError
        On empty or mismatched inputs, or a class id outside
        ``[0, n_classes)``.
    """
    if isinstance(n_classes, bool) or not isinstance(
            n_classes, (int, np.integer)) or n_classes < 1:
        raise TaggerError('n_classes must be an integer >= 1, got %r'
                          % (n_classes,))
    t, p = _pair(y_true, y_pred, int(n_classes))
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def accuracy(y_true, y_pred):
    """Fraction of samples whose prediction equals the truth.

    Raises
    ------
    TaggerError
        On empty or mismatched inputs.
    """
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p))


def mean_class_accuracy(y_true, y_pred):
    """Mean over the classes present in ``y_true`` of per-class recall.

    Classes that never occur in ``y_true`` are left out of the mean (a
    class only predicted lowers the recall of the classes it was confused
    with, not the mean's denominator).

    Raises
    ------
    TaggerError
        On empty or mismatched inputs.
    """
    t, p = _pair(y_true, y_pred)
    present = np.unique(t)
    return float(np.mean([np.mean(p[t == c] == c) for c in present]))


def classification_report(y_true, y_pred, class_names):
    """Accuracy, mean class accuracy, per-class scores and the confusion.

    Parameters
    ----------
    y_true, y_pred : array_like of int, shape (N,)
        Class ids, indices into ``class_names``.
    class_names : sequence of str
        Distinct names, one per class id.

    Returns
    -------
    dict
        ``count``, ``accuracy``, ``mean_class_accuracy``, ``class_names``,
        ``per_class`` (``{name: {support, predicted, correct, precision,
        recall, f1}}`` in class-id order) and ``confusion`` (list of lists,
        rows = true class, columns = predicted).

    Raises
    ------
    TaggerError
        On empty or mismatched inputs, a class id without a name, or
        duplicate names.
    """
    if isinstance(class_names, (str, bytes)):
        raise TaggerError('class_names must be a list of names, not a string')
    names = [str(n) for n in class_names]
    if len(set(names)) != len(names):
        raise TaggerError('class_names has duplicates')
    if not names:
        raise TaggerError('class_names is empty')
    cm = confusion_matrix(y_true, y_pred, len(names))
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    correct = np.diag(cm)
    per_class = {}
    for i, name in enumerate(names):
        precision = _ratio(correct[i], predicted[i])
        recall = _ratio(correct[i], support[i])
        per_class[name] = {'support': int(support[i]),
                           'predicted': int(predicted[i]),
                           'correct': int(correct[i]),
                           'precision': precision, 'recall': recall,
                           'f1': _f1(precision, recall)}
    present = support > 0
    return {'count': int(cm.sum()),
            'accuracy': _ratio(correct.sum(), cm.sum()),
            'mean_class_accuracy': float(np.mean(
                correct[present] / support[present])),
            'class_names': names,
            'per_class': per_class,
            'confusion': cm.tolist()}


def _tag_set(tags, name, i):
    if isinstance(tags, (str, bytes)):
        raise TaggerError('%s[%d] is a string, expected a collection of tags'
                          % (name, i))
    try:
        return set(tags)
    except TypeError:
        raise TaggerError('%s[%d] is not a collection of tags' % (name, i)) \
            from None


def _tag_pairs(true_sets, pred_sets):
    """Both lists of tag sets, checked: same length, at least one image."""
    true_sets = [_tag_set(s, 'true_sets', i) for i, s in enumerate(true_sets)]
    pred_sets = [_tag_set(s, 'pred_sets', i) for i, s in enumerate(pred_sets)]
    if len(true_sets) != len(pred_sets):
        raise TaggerError('true_sets has %d images but pred_sets has %d'
                          % (len(true_sets), len(pred_sets)))
    if not true_sets:
        raise TaggerError('no images to score')
    return true_sets, pred_sets


def tag_metrics(true_sets, pred_sets):
    """Set-based tag scores over images.

    Parameters
    ----------
    true_sets, pred_sets : sequence of collections of str
        The true and predicted tags of each image (order and duplicates
        ignored; an empty prediction is allowed).

    Returns
    -------
    dict
        ``count`` (images), ``micro_precision``, ``micro_recall``,
        ``micro_f1`` (from the summed true positives, false positives and
        false negatives), ``macro_precision``, ``macro_recall``,
        ``macro_f1`` (means over the tags seen in truth or prediction),
        ``exact_match`` (fraction of images whose predicted set equals the
        true set), ``empty_predictions`` (images with no predicted tag),
        ``n_tags`` (tags averaged over) and ``per_tag`` (``{tag: {tp, fp, fn,
        precision, recall, f1}}``, tags sorted).  Zero denominators give 0.

    Raises
    ------
    TaggerError
        On inputs of different lengths, no images, or an item that is a
        string rather than a collection of tags.
    """
    true_sets, pred_sets = _tag_pairs(true_sets, pred_sets)
    counts = {}
    for truth, pred in zip(true_sets, pred_sets):
        for tag in truth | pred:
            c = counts.setdefault(tag, [0, 0, 0])    # tp, fp, fn
            if tag in truth and tag in pred:
                c[0] += 1
            elif tag in pred:
                c[1] += 1
            else:
                c[2] += 1
    tp = sum(c[0] for c in counts.values())
    fp = sum(c[1] for c in counts.values())
    fn = sum(c[2] for c in counts.values())
    micro_p, micro_r = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    per_tag = {}
    for tag in sorted(counts, key=str):
        t, f_p, f_n = counts[tag]
        p, r = _ratio(t, t + f_p), _ratio(t, t + f_n)
        per_tag[tag] = {'tp': t, 'fp': f_p, 'fn': f_n, 'precision': p,
                        'recall': r, 'f1': _f1(p, r)}
    rows = list(per_tag.values())

    def mean(key):
        return float(np.mean([r[key] for r in rows])) if rows else 0.0

    return {'count': len(true_sets),
            'micro_precision': micro_p, 'micro_recall': micro_r,
            'micro_f1': _f1(micro_p, micro_r),
            'macro_precision': mean('precision'),
            'macro_recall': mean('recall'), 'macro_f1': mean('f1'),
            'exact_match': _ratio(sum(t == p for t, p in
                                      zip(true_sets, pred_sets)),
                                  len(true_sets)),
            'empty_predictions': sum(not p for p in pred_sets),
            'n_tags': len(rows),
            'per_tag': per_tag}


def bootstrap_indices(n, resamples=2000, seed=0):
    """``(resamples, n)`` int64 indices: ``n`` items drawn with replacement,
    once per resample (``np.random.RandomState(seed)``)."""
    if n < 1 or resamples < 1:
        raise TaggerError('bootstrap needs n >= 1 and resamples >= 1, got '
                          'n=%r resamples=%r' % (n, resamples))
    return np.random.RandomState(seed).randint(0, n, size=(resamples, n))


def _percentiles(values, level):
    if not 0 < level < 1:
        raise TaggerError('level must be in (0, 1), got %r' % (level,))
    tail = 100.0 * (1 - level) / 2
    lo, hi = np.percentile(values, [tail, 100.0 - tail])
    return [float(lo), float(hi)]


def accuracy_intervals(y_true, predictions, resamples=2000, level=0.95,
                       seed=0):
    """Paired bootstrap intervals of accuracy and mean-class accuracy.

    Parameters
    ----------
    y_true : array_like
        The true class of each image.
    predictions : dict
        Name -> the predicted class of each image (same images, same
        order), e.g. one entry per trained variant.
    resamples, level, seed
        See :func:`bootstrap_indices`; every name is scored on the same
        resamples, so differences between names are paired.

    Returns
    -------
    dict
        Per name: ``accuracy`` and ``mean_class_accuracy`` (``[low,
        high]``); ``differences``: for each ordered pair of names ``'a - b'``
        the interval of ``accuracy(a) - accuracy(b)``; ``level``,
        ``resamples``, ``count``.  A resample's mean-class accuracy averages
        over the classes it holds, as :func:`mean_class_accuracy` does.
    """
    true = _labels(y_true, 'y_true')
    if not len(true):
        raise TaggerError('no images to score')
    if not predictions:
        raise TaggerError('no predictions to score')
    idx = bootstrap_indices(len(true), resamples, seed)
    k = int(true.max()) + 1
    t = true[idx]
    rows = np.repeat(np.arange(len(idx)), len(true))
    support = np.zeros((len(idx), k))
    np.add.at(support, (rows, t.ravel()), 1)
    present = support > 0
    out, accs = {}, {}
    for name, pred in predictions.items():
        pred = _labels(pred, 'predictions[%r]' % (name,))
        if len(pred) != len(true):
            raise TaggerError('predictions[%r] has %d images, y_true %d'
                              % (name, len(pred), len(true)))
        right = (pred == true)[idx]
        hits = np.zeros((len(idx), k))
        np.add.at(hits, (rows, t.ravel()), right.ravel())
        recall = np.where(present, hits / np.maximum(support, 1), 0.0)
        accs[name] = right.mean(axis=1)
        out[name] = {
            'accuracy': _percentiles(accs[name], level),
            'mean_class_accuracy': _percentiles(
                recall.sum(axis=1) / present.sum(axis=1), level)}
    out['differences'] = {'%s - %s' % (a, b): _percentiles(accs[a] - accs[b],
                                                           level)
                          for a in accs for b in accs if a != b}
    out.update(level=level, resamples=int(resamples), count=len(true))
    return out


def tag_f1_intervals(true_sets, pred_sets, resamples=2000, level=0.95,
                     seed=0):
    """Bootstrap intervals of the micro precision, recall and F1 of
    :func:`tag_metrics`, resampling the images.

    Returns
    -------
    dict
        ``micro_precision``, ``micro_recall``, ``micro_f1``: ``[low, high]``;
        ``level``, ``resamples``, ``count``.
    """
    true_sets, pred_sets = _tag_pairs(true_sets, pred_sets)
    counts = np.array([[len(t & p), len(p - t), len(t - p)]
                       for t, p in zip(true_sets, pred_sets)], dtype=float)
    idx = bootstrap_indices(len(counts), resamples, seed)
    tp, fp, fn = counts[idx].sum(axis=1).T
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
    recall = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
    total = precision + recall
    f1 = np.where(total > 0, 2 * precision * recall / np.where(
        total > 0, total, 1), 0.0)
    return {'micro_precision': _percentiles(precision, level),
            'micro_recall': _percentiles(recall, level),
            'micro_f1': _percentiles(f1, level),
            'level': level, 'resamples': int(resamples),
            'count': len(true_sets)}
