"""Tests for lasagne_tagger.evaluation.metrics against hand-computed values."""
import json

import numpy as np
import pytest

from lasagne_tagger.evaluation import metrics
from lasagne_tagger.errors import TaggerError
from lasagne_tagger.evaluation.metrics import (accuracy, classification_report,
                                    confusion_matrix, mean_class_accuracy,
                                    tag_metrics)

# Class 3 never occurs; class 2 is predicted twice but true once.
Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 0, 1, 1, 2, 2]


def test_confusion_matrix():
    cm = confusion_matrix(Y_TRUE, Y_PRED, 4)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, [[2, 1, 0, 0],
                                       [0, 1, 1, 0],
                                       [0, 0, 1, 0],
                                       [0, 0, 0, 0]])
    np.testing.assert_array_equal(
        confusion_matrix(np.array([1, 1]), np.array([0, 0]), 2),
        [[0, 0], [2, 0]])


def test_accuracy_and_mean_class_accuracy():
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(4 / 6)
    # Recalls 2/3, 1/2, 1/1 over the classes present in y_true.
    assert mean_class_accuracy(Y_TRUE, Y_PRED) == pytest.approx(
        (2 / 3 + 1 / 2 + 1) / 3)
    # A class only predicted is not in the mean.
    assert mean_class_accuracy([0, 0], [1, 0]) == pytest.approx(0.5)
    # Balanced vs unbalanced: 9 of 10 right in class 0, 0 of 1 in class 1.
    t, p = [0] * 10 + [1], [0] * 10 + [0]
    p[0] = 1
    assert accuracy(t, p) == pytest.approx(9 / 11)
    assert mean_class_accuracy(t, p) == pytest.approx((9 / 10 + 0) / 2)


def test_classification_report():
    report = classification_report(Y_TRUE, Y_PRED,
                                   ['dress', 'skirt', 'coat', 'hat'])
    assert json.loads(json.dumps(report)) == report
    assert report['count'] == 6
    assert report['accuracy'] == pytest.approx(4 / 6)
    assert report['mean_class_accuracy'] == pytest.approx(13 / 18)
    assert report['class_names'] == ['dress', 'skirt', 'coat', 'hat']
    assert report['confusion'] == confusion_matrix(Y_TRUE, Y_PRED, 4).tolist()
    per = report['per_class']
    assert list(per) == ['dress', 'skirt', 'coat', 'hat']
    assert per['dress'] == {'support': 3, 'predicted': 2, 'correct': 2,
                            'precision': 1.0, 'recall': pytest.approx(2 / 3),
                            'f1': pytest.approx(0.8)}
    assert per['skirt']['precision'] == per['skirt']['recall'] == 0.5
    assert per['coat']['precision'] == 0.5 and per['coat']['recall'] == 1.0
    assert per['coat']['f1'] == pytest.approx(2 / 3)
    assert per['hat'] == {'support': 0, 'predicted': 0, 'correct': 0,
                          'precision': 0.0, 'recall': 0.0, 'f1': 0.0}


@pytest.mark.parametrize('call, message', [
    (lambda: accuracy([], []), 'no labels'),
    (lambda: accuracy([0, 1], [0]), 'y_true has 2 labels but y_pred has 1'),
    (lambda: accuracy([[0, 1]], [[0, 1]]), '1-D'),
    (lambda: accuracy(['a'], ['a']), 'integer class ids'),
    (lambda: confusion_matrix([0, 3], [0, 0], 3), 'y_true: class id 3'),
    (lambda: confusion_matrix([0, 1], [0, -1], 3), 'y_pred: class id -1'),
    (lambda: confusion_matrix([0], [0], 0), 'n_classes'),
    (lambda: classification_report([0, 2], [0, 0], ['a', 'b']), 'class id 2'),
    (lambda: classification_report([0], [0], ['a', 'a']), 'duplicates'),
    (lambda: mean_class_accuracy([0.5], [0]), 'integer class ids'),
])
def test_classification_errors(call, message):
    with pytest.raises(TaggerError, match=message):
        call()


def test_float_labels_that_are_integers_are_accepted():
    assert accuracy(np.array([0.0, 1.0]), np.array([0, 0])) == 0.5


TRUE_SETS = [{'a', 'b'}, {'b'}, {'c'}, set()]
PRED_SETS = [['a'], ('b', 'c'), [], []]


def test_tag_metrics_hand_computed():
    m = tag_metrics(TRUE_SETS, PRED_SETS)
    assert json.loads(json.dumps(m)) == m
    # tp=2 (a, b), fp=1 (c), fn=2 (b, c).
    assert m['count'] == 4
    assert m['micro_precision'] == pytest.approx(2 / 3)
    assert m['micro_recall'] == pytest.approx(1 / 2)
    assert m['micro_f1'] == pytest.approx(4 / 7)
    # Per tag: a (1, 1, 1), b (1, 1/2, 2/3), c (0, 0, 0).
    assert m['per_tag'] == {
        'a': {'tp': 1, 'fp': 0, 'fn': 0, 'precision': 1.0, 'recall': 1.0,
              'f1': 1.0},
        'b': {'tp': 1, 'fp': 0, 'fn': 1, 'precision': 1.0, 'recall': 0.5,
              'f1': pytest.approx(2 / 3)},
        'c': {'tp': 0, 'fp': 1, 'fn': 1, 'precision': 0.0, 'recall': 0.0,
              'f1': 0.0}}
    assert m['macro_precision'] == pytest.approx(2 / 3)
    assert m['macro_recall'] == pytest.approx(1 / 2)
    assert m['macro_f1'] == pytest.approx(5 / 9)
    assert m['exact_match'] == pytest.approx(1 / 4)
    assert m['empty_predictions'] == 2
    assert m['n_tags'] == 3


def test_tag_metrics_duplicates_and_order_ignored():
    m = tag_metrics([['a', 'b']], [['b', 'a', 'a']])
    assert m['exact_match'] == 1.0
    assert m['micro_f1'] == m['macro_f1'] == 1.0


def test_tag_metrics_empty_predictions():
    m = tag_metrics([['a'], ['b', 'c']], [[], []])
    assert m['micro_precision'] == m['micro_recall'] == m['micro_f1'] == 0.0
    assert m['macro_precision'] == m['macro_f1'] == 0.0
    assert m['exact_match'] == 0.0 and m['empty_predictions'] == 2
    assert m['n_tags'] == 3
    m = tag_metrics([[]], [[]])
    assert m['exact_match'] == 1.0 and m['n_tags'] == 0
    assert m['micro_f1'] == m['macro_f1'] == 0.0 and m['per_tag'] == {}


def test_tag_metrics_tags_with_spaces_are_tokens():
    m = tag_metrics([['upper body']], [['upper', 'body']])
    assert set(m['per_tag']) == {'upper body', 'upper', 'body'}
    assert m['micro_precision'] == 0.0


@pytest.mark.parametrize('true_sets, pred_sets, message', [
    ([['a']], [['a'], ['b']], 'true_sets has 1 images but pred_sets has 2'),
    ([], [], 'no images'),
    (['ab'], [['a']], r'true_sets\[0\] is a string'),
    ([['a']], [3], r'pred_sets\[0\] is not a collection'),
])
def test_tag_metrics_errors(true_sets, pred_sets, message):
    with pytest.raises(TaggerError, match=message):
        tag_metrics(true_sets, pred_sets)


def test_accuracy_intervals_match_a_plain_loop_and_are_paired():
    true = np.repeat([0, 0, 1, 1, 1, 2], [8, 2, 1, 5, 4, 3])
    pred = np.repeat([0, 1, 0, 1, 2, 2], [8, 2, 1, 5, 4, 3])
    other = pred.copy()
    other[:3] = 1                            # 3 fewer right, same images
    got = metrics.accuracy_intervals(true, {'a': pred, 'b': other},
                                     resamples=300, seed=4)
    accs, mcas, diffs = [], [], []
    for idx in metrics.bootstrap_indices(len(true), 300, seed=4):
        accs.append(metrics.accuracy(true[idx], pred[idx]))
        mcas.append(metrics.mean_class_accuracy(true[idx], pred[idx]))
        diffs.append(accs[-1] - metrics.accuracy(true[idx], other[idx]))
    assert got['a']['accuracy'] == pytest.approx(
        np.percentile(accs, [2.5, 97.5]))
    assert got['a']['mean_class_accuracy'] == pytest.approx(
        np.percentile(mcas, [2.5, 97.5]))
    assert got['differences']['a - b'] == pytest.approx(
        np.percentile(diffs, [2.5, 97.5]))
    lo, hi = got['a']['accuracy']
    assert lo < metrics.accuracy(true, pred) < hi
    # paired: b is never better than a on any resample
    assert got['differences']['a - b'][0] >= 0 < got['differences']['a - b'][1]
    wide = metrics.accuracy_intervals(true, {'a': pred})['a']['accuracy']
    big = metrics.accuracy_intervals(np.tile(true, 16),
                                     {'a': np.tile(pred, 16)})['a']
    assert big['accuracy'][1] - big['accuracy'][0] < (wide[1] - wide[0]) / 2
    with pytest.raises(TaggerError, match="predictions\\['a'\\] has 5"):
        metrics.accuracy_intervals(true, {'a': pred[:5]})
    with pytest.raises(TaggerError, match='no images'):
        metrics.accuracy_intervals([], {'a': []})


def test_tag_f1_intervals_match_a_plain_loop():
    rng = np.random.RandomState(0)
    tags = ['a', 'b', 'c', 'd']
    truth = [set(rng.choice(tags, 2, replace=False)) for _ in range(40)]
    pred = [set(rng.choice(tags, rng.randint(0, 3), replace=False))
            for _ in range(40)]
    got = metrics.tag_f1_intervals(truth, pred, resamples=200, seed=1)
    f1s = [metrics.tag_metrics([truth[i] for i in idx],
                               [pred[i] for i in idx])['micro_f1']
           for idx in metrics.bootstrap_indices(40, 200, seed=1)]
    assert got['micro_f1'] == pytest.approx(np.percentile(f1s, [2.5, 97.5]))
    point = metrics.tag_metrics(truth, pred)['micro_f1']
    assert got['micro_f1'][0] < point < got['micro_f1'][1]
    with pytest.raises(TaggerError, match='40 images but pred_sets has 39'):
        metrics.tag_f1_intervals(truth, pred[:-1])
