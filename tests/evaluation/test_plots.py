"""Tests for lasagne_tagger.evaluation.plots (tiny fake runs; no Theano)."""
import json
import os

import numpy as np
import pytest

from lasagne_tagger.evaluation import plots
from lasagne_tagger.errors import TaggerError

# matplotlib 3.9 calls pyparsing APIs that pyparsing 3.3 deprecates; the
# warnings are theirs, not ours.
pytestmark = pytest.mark.filterwarnings(
    'ignore::DeprecationWarning:matplotlib.*')

CLASSES = ['blouses', 'coat', 'jersey / T-shirt / tee shirt']


def _history(n_epochs=4, shift=0.0):
    rows = []
    for e in range(1, n_epochs + 1):
        train_acc = min(1.0, 0.4 + 0.12 * e + shift)
        val_acc = min(1.0, 0.35 + 0.08 * e + shift)
        rows.append({'epoch': e, 'learning_rate': 0.01 * 0.5 ** (e // 2),
                     'train_loss': 1.5 / e, 'train_accuracy': train_acc,
                     'val_loss': 1.6 / e + 0.1, 'val_accuracy': val_acc,
                     'val_mean_class_accuracy': val_acc - 0.03,
                     'gap': train_acc - val_acc,
                     'train_images_per_s': 50.0, 'seconds': 12.5})
    return rows


def _write_run(run_dir, history=None, confusion=None, classes=CLASSES,
               epoch=3):
    os.makedirs(str(run_dir), exist_ok=True)
    history = _history() if history is None else history
    with open(os.path.join(str(run_dir), 'metrics.jsonl'), 'w') as fh:
        for row in history:
            fh.write(json.dumps(row) + '\n')
    meta = {'classes': classes, 'epoch': epoch}
    if confusion is not None:
        meta['confusion'] = confusion
    with open(os.path.join(str(run_dir), 'last.json'), 'w') as fh:
        json.dump(meta, fh)
    return run_dir


def _png(path):
    """Open ``path`` with PIL, check it is a sane PNG, return its pixels."""
    from PIL import Image

    with Image.open(str(path)) as image:
        assert image.format == 'PNG'
        width, height = image.size
        assert 200 <= width <= 4000 and 200 <= height <= 4000
        return np.asarray(image.convert('RGB'))


def _no_tmp_files(folder):
    return not [f for f in os.listdir(str(folder)) if f.endswith('.tmp')]


def test_plot_run_writes_curves_and_confusion(tmp_path):
    run = _write_run(tmp_path / 'run1',
                     confusion=[[5, 1, 0], [2, 7, 1], [0, 0, 4]])
    paths = plots.plot_run(run)
    assert paths == [str(run / 'curves.png'), str(run / 'confusion.png')]
    curves, confusion = _png(paths[0]), _png(paths[1])
    assert curves.std() > 0 and confusion.std() > 0  # not blank
    assert _no_tmp_files(run)


def test_plot_run_without_confusion_only_curves(tmp_path):
    run = _write_run(tmp_path / 'run', confusion=None)
    assert plots.plot_run(run) == [str(run / 'curves.png')]
    assert not (run / 'confusion.png').exists()
    os.remove(str(run / 'last.json'))
    assert plots.plot_run(run) == [str(run / 'curves.png')]


def test_confusion_plot_depends_on_matrix(tmp_path):
    a = plots.plot_confusion([[9, 1], [0, 10]], ['cap', 'coat'],
                             tmp_path / 'a.png')
    b = plots.plot_confusion([[1, 9], [8, 2]], ['cap', 'coat'],
                             tmp_path / 'b.png')
    pa, pb = _png(a), _png(b)
    assert pa.shape != pb.shape or np.any(pa != pb)
    # counts (normalize=False) render too, and a zero row is allowed
    c = plots.plot_confusion(np.array([[3, 0], [0, 0]]), ['cap', 'coat'],
                             tmp_path / 'sub' / 'c.png', title='counts',
                             normalize=False)
    _png(c)


@pytest.mark.parametrize('n, annotated', [(20, True), (21, False)])
def test_confusion_cells_annotated_up_to_twenty_classes(tmp_path,
                                                        monkeypatch, n,
                                                        annotated):
    figures = []
    real_save = plots._save

    def keep(fig, out_png):
        figures.append(fig)
        return real_save(fig, out_png)
    monkeypatch.setattr(plots, '_save', keep)
    rng = np.random.RandomState(0)
    cm = rng.randint(0, 5, size=(n, n)) + np.eye(n, dtype=int) * 20
    path = plots.plot_confusion(cm, ['class %d' % k for k in range(n)],
                                tmp_path / 'big.png')
    _png(path)
    ax = figures[0].axes[0]
    cells = [t.get_text() for t in ax.texts]
    assert len(cells) == (n * n if annotated else 0)
    if annotated:            # row-normalised values, row by row
        want = cm[0, 0] / cm[0].sum()
        assert cells[0] == '%.2f' % want
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ['class %d' % k for k in range(n)]


@pytest.mark.parametrize('confusion, names, fragment', [
    ([[1, 2, 3], [4, 5, 6]], ['a', 'b'], 'square'),
    ([[1, 2], [3, 4]], ['a', 'b', 'c'], '3 class names'),
    ([[1, -2], [3, 4]], ['a', 'b'], 'negative'),
    ([[1, 2], [3]], ['a', 'b'], 'confusion matrix'),
])
def test_confusion_bad_input(tmp_path, confusion, names, fragment):
    out = tmp_path / 'bad.png'
    with pytest.raises(TaggerError) as info:
        plots.plot_confusion(confusion, names, out)
    message = str(info.value)
    assert fragment in message and 'bad.png' in message
    assert '\n' not in message
    assert not out.exists() and _no_tmp_files(tmp_path)


def test_plot_run_bad_confusion_names_last_json(tmp_path):
    run = _write_run(tmp_path / 'run', confusion=[[1, 2], [3, 4]])
    with pytest.raises(TaggerError, match='last.json'):
        plots.plot_run(run)


def test_read_history_sorted_and_deduplicated(tmp_path):
    rows = _history(3)
    redo = dict(rows[1], val_accuracy=0.99)
    _write_run(tmp_path, history=rows + [redo], confusion=None)
    with open(str(tmp_path / 'metrics.jsonl'), 'a') as fh:
        fh.write('\n')  # blank lines are skipped
    history = plots.read_history(tmp_path)
    assert [h['epoch'] for h in history] == [1, 2, 3]
    assert history[1]['val_accuracy'] == 0.99


def test_read_history_malformed_line_named(tmp_path):
    rows = _history(3)
    path = tmp_path / 'metrics.jsonl'
    path.write_text(json.dumps(rows[0]) + '\n' + json.dumps(rows[1]) + '\n'
                    + '{"epoch": 3, "train_loss": \n')
    with pytest.raises(TaggerError) as info:
        plots.read_history(tmp_path)
    message = str(info.value)
    assert 'metrics.jsonl' in message and 'line 3' in message
    assert '\n' not in message

    path.write_text(json.dumps(rows[0]) + '\n[1, 2]\n')
    with pytest.raises(TaggerError, match='line 2'):
        plots.read_history(tmp_path)
    path.write_text('{"train_loss": 1.0}\n')
    with pytest.raises(TaggerError, match='line 1.*epoch'):
        plots.read_history(tmp_path)
    path.write_text('\n')
    with pytest.raises(TaggerError, match='no epochs'):
        plots.read_history(tmp_path)


def test_read_history_missing_file(tmp_path):
    with pytest.raises(TaggerError, match='metrics.jsonl'):
        plots.read_history(tmp_path / 'nowhere')
    with pytest.raises(TaggerError, match='metrics.jsonl'):
        plots.plot_run(tmp_path)


def test_plot_curves_several_runs(tmp_path):
    one = plots.plot_curves({'no L2, no rotation': _history(5)},
                            tmp_path / 'one.png')
    two = plots.plot_curves({'no L2, no rotation': _history(5),
                             'L2 + rotation': _history(3, shift=0.1)},
                            tmp_path / 'two.png', title='ACS fine-tuning')
    p1, p2 = _png(one), _png(two)
    assert p1.shape != p2.shape or np.any(p1 != p2)
    # a bare list is one run; a single epoch and missing keys still plot
    rows = [{'epoch': 1, 'train_loss': 0.9, 'train_accuracy': 0.5}]
    _png(plots.plot_curves(rows, tmp_path / 'single.png'))
    assert _no_tmp_files(tmp_path)


def test_plot_curves_bad_histories(tmp_path):
    for bad in ({}, {'run': []}, {'run': [1, 2]}, 'nonsense'):
        with pytest.raises(TaggerError, match='x.png'):
            plots.plot_curves(bad, tmp_path / 'x.png')


def test_plot_curves_replaces_existing_png(tmp_path):
    out = tmp_path / 'curves.png'
    out.write_bytes(b'old junk')
    assert plots.plot_curves({'a': _history(2)}, out) == str(out)
    _png(out)


def test_plot_tag_accuracy(tmp_path):
    its = [0, 500, 1000, 1500, 2000]
    path = plots.plot_tag_accuracy(its, [0.1, 0.3, 0.45, 0.5, 0.52],
                                   tmp_path / 'tags.png', title='LSTM')
    _png(path)
    with pytest.raises(TaggerError, match='tags2.png'):
        plots.plot_tag_accuracy(its, [0.1], tmp_path / 'tags2.png')
    with pytest.raises(TaggerError, match='tags2.png'):
        plots.plot_tag_accuracy([], [], tmp_path / 'tags2.png')


def test_unwritable_destination(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('not a folder')
    with pytest.raises(TaggerError, match='cannot (write|create the folder)'):
        plots.plot_tag_accuracy([1, 2], [0.1, 0.2],
                                blocker / 'sub' / 'x.png')
