"""PNG plots of training runs: learning curves, confusion matrices and the
LSTM stage's tag accuracy.

Every plot is drawn on a fresh :class:`matplotlib.figure.Figure` attached to
an Agg canvas (no display needed, no pyplot figure registry, nothing kept
between calls) and written atomically: to a temporary file in the target
folder, then moved over the target with :func:`os.replace`, so a reader never
sees half a PNG.  Matplotlib is imported inside the functions, so importing
this module costs nothing.

Usage::

    from lasagne_tagger.evaluation import plots
    plots.plot_run('runs/acs-l2-rot')          # curves.png, confusion.png
    plots.plot_curves({'no L2, no rotation': plots.read_history('runs/a'),
                       'L2 + rotation': plots.read_history('runs/b')},
                      'compare.png', title='ACS fine-tuning')
"""
import json
import math
import os

from ..atomic import atomic_path, make_parent
from ..errors import TaggerError

__all__ = ['read_history', 'plot_curves', 'plot_confusion',
           'plot_tag_accuracy', 'plot_run']

# Line styles of the learning-curve series: (key, label, linestyle).
_LOSS_SERIES = (('train_loss', 'train', '-'),
                ('val_loss', 'validation', '--'))
_ACCURACY_SERIES = (('train_accuracy', 'train', '-'),
                    ('val_accuracy', 'validation', '--'),
                    ('val_mean_class_accuracy', 'validation mean class', ':'))

# Markers are drawn on the curves while there are at most this many points
# (so a one-epoch run still shows up).
_MARKER_LIMIT = 40

# Cell values are written on confusion matrices up to this many classes.
_ANNOTATE_LIMIT = 20

# Class names are written on the axes up to this many classes.
_TICK_LABEL_LIMIT = 60


def read_history(run_dir):
    """Read the per-epoch metrics of a training run.

    Parameters
    ----------
    run_dir : str or path-like
        The run's output folder; ``run_dir/metrics.jsonl`` holds one JSON
        object per epoch (keys ``epoch``, ``learning_rate``, ``train_loss``,
        ``train_accuracy``, ``val_loss``, ``val_accuracy``,
        ``val_mean_class_accuracy``, ``gap``, ``train_images_per_s``,
        ``seconds``), as written by :func:`lasagne_tagger.training.finetune.train`.

    Returns
    -------
    list of dict
        One dict per epoch, sorted by ``epoch``.  Blank lines are skipped;
        when an epoch appears twice (a resumed run that redid it) the later
        line wins.

    Raises
    ------
    TaggerError
        The file is missing or unreadable, a line is not a JSON object with
        a numeric ``epoch`` (the message names the file and the line
        number), or it holds no epochs.
    """
    path = os.path.join(os.fspath(run_dir), 'metrics.jsonl')
    try:
        with open(path, encoding='utf-8') as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        raise TaggerError('no such file (not a training run folder?)', path)
    except (OSError, UnicodeDecodeError) as exc:
        raise TaggerError('cannot read: %s' % _reason(exc), path)
    rows = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise TaggerError('line %d: not valid JSON (%s)' % (number, exc),
                              path)
        if not isinstance(row, dict):
            raise TaggerError('line %d: expected a JSON object, got %s'
                              % (number, type(row).__name__), path)
        epoch = row.get('epoch')
        if isinstance(epoch, bool) or not isinstance(epoch, (int, float)) \
                or not math.isfinite(epoch):
            raise TaggerError('line %d: no numeric "epoch" (got %r)'
                              % (number, epoch), path)
        rows[epoch] = row
    if not rows:
        raise TaggerError('holds no epochs', path)
    return [rows[epoch] for epoch in sorted(rows)]


def plot_curves(histories, out_png, title=None):
    """Plot loss and accuracy against epoch for one or several runs.

    Parameters
    ----------
    histories : dict of str -> list of dict
        Run label -> its per-epoch metrics (as from :func:`read_history`),
        e.g. ``{'no L2, no rotation': [...], 'L2 + rotation': [...]}``.  A
        bare list of epoch dicts is taken as one unlabelled run.
    out_png : str or path-like
        The PNG to write (its folder is created if needed).
    title : str, optional
        Figure title.

    Returns
    -------
    str
        ``out_png``.

    Notes
    -----
    Two panels: loss (train solid, validation dashed) and accuracy (train
    solid, validation dashed, validation mean class dotted).  Each run has
    one colour in both panels; the loss panel's legend names the runs (when
    there are several, or the one run has a label), the accuracy panel's
    legend explains the line styles.  Missing or non-numeric values leave
    gaps.

    Raises
    ------
    TaggerError
        ``histories`` is empty or a run is not a non-empty list of dicts
        (the message names ``out_png``), or the PNG cannot be written.
    """
    out_png = os.fspath(out_png)
    runs = _check_histories(histories, out_png)
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11.0, 4.2))
    ax_loss, ax_acc = fig.subplots(1, 2)
    accuracies = []
    for k, (label, rows) in enumerate(runs):
        colour = 'C%d' % (k % 10)
        epochs = [_number(row.get('epoch')) for row in rows]
        marker = '.' if len(rows) <= _MARKER_LIMIT else None
        for ax, series in ((ax_loss, _LOSS_SERIES),
                           (ax_acc, _ACCURACY_SERIES)):
            for key, _, style in series:
                values = [_number(row.get(key)) for row in rows]
                if ax is ax_acc:
                    accuracies.extend(v for v in values if v == v)
                ax.plot(epochs, values, color=colour, linestyle=style,
                        marker=marker, linewidth=1.6)
    ax_loss.set_title('loss')
    ax_loss.set_ylabel('cross-entropy loss')
    ax_acc.set_title('accuracy')
    ax_acc.set_ylabel('accuracy')
    if accuracies and min(accuracies) >= 0.0 and max(accuracies) <= 1.0:
        ax_acc.set_ylim(-0.02, 1.02)
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel('epoch')
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    if len(runs) > 1 or runs[0][0]:
        ax_loss.legend([Line2D([], [], color='C%d' % (k % 10), linewidth=3)
                        for k in range(len(runs))],
                       [label for label, _ in runs], loc='best',
                       fontsize='small', title='run')
    ax_acc.legend([Line2D([], [], color='0.2', linestyle=style)
                   for _, _, style in _ACCURACY_SERIES],
                  [name for _, name, _ in _ACCURACY_SERIES], loc='best',
                  fontsize='small')
    if title:
        fig.suptitle(title)
    return _save(fig, out_png)


def plot_confusion(confusion, class_names, out_png, title=None,
                   normalize=True):
    """Draw a confusion matrix as an image.

    Parameters
    ----------
    confusion : array-like, shape (n, n)
        Counts; row ``i`` is the true class, column ``j`` the predicted one
        (as :func:`lasagne_tagger.evaluation.metrics.confusion_matrix` returns).
    class_names : sequence of str
        The ``n`` class names, in class-id order.
    out_png : str or path-like
        The PNG to write (its folder is created if needed).
    title : str, optional
        Figure title; the overall and mean class accuracy of ``confusion``
        are added below it.
    normalize : bool
        Divide each row by its sum (rows that sum to 0 stay 0), so a cell is
        the fraction of a true class predicted as each class.

    Returns
    -------
    str
        ``out_png``.

    Notes
    -----
    Column labels are rotated; cell values are written in the cells when
    there are at most 20 classes; class names are left off beyond 60.

    Raises
    ------
    TaggerError
        ``confusion`` is not a square matrix of finite non-negative numbers,
        ``class_names`` does not match it (the message names ``out_png``),
        or the PNG cannot be written.
    """
    import numpy as np

    out_png = os.fspath(out_png)
    counts, names = _check_confusion(confusion, class_names, out_png)
    n = counts.shape[0]
    row_sums = counts.sum(axis=1)
    total = row_sums.sum()
    seen = row_sums > 0
    summary = ''
    if total > 0:
        summary = 'accuracy %.3f, mean class accuracy %.3f' % (
            np.trace(counts) / total,
            np.mean(np.diag(counts)[seen] / row_sums[seen]))
    if normalize:
        values = np.zeros_like(counts)
        values[seen] = counts[seen] / row_sums[seen, None]
        vmax = 1.0
    else:
        values = counts
        vmax = max(float(values.max()), 1.0)

    from matplotlib.figure import Figure

    side = min(4.0 + 0.45 * n, 30.0)
    fig = Figure(figsize=(side + 1.5, side))
    ax = fig.subplots()
    image = ax.imshow(values, cmap='Blues', vmin=0.0, vmax=vmax,
                      interpolation='nearest', aspect='equal')
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04,
                 label='fraction of the true class' if normalize
                 else 'count')
    if n <= _TICK_LABEL_LIMIT:
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
        ax.set_xticklabels(names, rotation=45, ha='right',
                           rotation_mode='anchor')
        ax.set_yticklabels(names)
    ax.set_xlabel('predicted')
    ax.set_ylabel('true')
    if n <= _ANNOTATE_LIMIT:
        _annotate_cells(ax, values, normalize, vmax)
    heading = [line for line in (title, summary) if line]
    if heading:
        ax.set_title('\n'.join(heading))
    return _save(fig, out_png)


def _annotate_cells(ax, values, normalize, vmax):
    """Write each cell's value in it: fractions to 2 decimals, whole
    counts as integers, white on dark cells."""
    import numpy as np
    n = values.shape[0]
    size = 'small' if n <= 10 else 'x-small'
    for (i, j), value in np.ndenumerate(values):
        if normalize:
            text = '%.2f' % value
        elif value == int(value):
            text = '%d' % value
        else:
            text = '%.3g' % value
        ax.text(j, i, text, ha='center', va='center', fontsize=size,
                color='white' if value > 0.5 * vmax else 'black')


def plot_tag_accuracy(iterations, accuracies, out_png, title=None):
    """Plot tag accuracy against training iterations (the LSTM stage).

    Parameters
    ----------
    iterations : sequence of number
        Training iteration of each measurement.
    accuracies : sequence of number
        Tag accuracy at each of ``iterations``.
    out_png : str or path-like
        The PNG to write (its folder is created if needed).
    title : str, optional
        Figure title.

    Returns
    -------
    str
        ``out_png``.

    Raises
    ------
    TaggerError
        The sequences are empty, of different lengths or not numeric (the
        message names ``out_png``), or the PNG cannot be written.
    """
    import numpy as np

    out_png = os.fspath(out_png)
    try:
        x = np.asarray(iterations, dtype=np.float64).ravel()
        y = np.asarray(accuracies, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise TaggerError('iterations and accuracies must be numbers',
                          out_png)
    if len(x) == 0 or len(x) != len(y):
        raise TaggerError('need as many accuracies as iterations (got %d '
                          'and %d, at least 1)' % (len(x), len(y)), out_png)

    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    ax.plot(x, y, color='C0', linewidth=1.6,
            marker='.' if len(x) <= _MARKER_LIMIT else None)
    finite = y[np.isfinite(y)]
    if len(finite) and finite.min() >= 0.0 and finite.max() <= 1.0:
        ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel('training iteration')
    ax.set_ylabel('tag accuracy')
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)
    return _save(fig, out_png)


def plot_run(run_dir):
    """Plot a training run folder: ``curves.png`` and ``confusion.png``.

    Parameters
    ----------
    run_dir : str or path-like
        A folder written by :func:`lasagne_tagger.training.finetune.train`: it needs
        ``metrics.jsonl``; ``last.json`` (keys ``classes`` and
        ``confusion``, the last epoch's validation confusion matrix) is
        optional.

    Returns
    -------
    list of str
        The PNGs written: ``run_dir/curves.png``, then
        ``run_dir/confusion.png`` when ``last.json`` exists and holds a
        confusion matrix.

    Raises
    ------
    TaggerError
        ``metrics.jsonl`` is missing or malformed, ``last.json`` is not a
        JSON object or its confusion matrix is malformed, or a PNG cannot be
        written.
    """
    run_dir = os.fspath(run_dir)
    name = os.path.basename(os.path.normpath(os.path.abspath(run_dir)))
    history = read_history(run_dir)
    paths = [plot_curves({name: history}, os.path.join(run_dir, 'curves.png'),
                         title=name)]
    last = os.path.join(run_dir, 'last.json')
    if not os.path.exists(last):
        return paths
    try:
        with open(last, encoding='utf-8') as fh:
            meta = json.load(fh)
    except (OSError, UnicodeDecodeError) as exc:
        raise TaggerError('cannot read: %s' % _reason(exc), last)
    except ValueError as exc:
        raise TaggerError('not valid JSON (%s)' % exc, last)
    if not isinstance(meta, dict):
        raise TaggerError('expected a JSON object', last)
    confusion = meta.get('confusion')
    if not confusion:
        return paths
    if not isinstance(confusion, list):
        raise TaggerError('"confusion" is not a list of lists', last)
    classes = meta.get('classes')
    if classes is None:
        classes = [str(k) for k in range(len(confusion))]
    _check_confusion(confusion, classes, last)
    title = name
    if isinstance(meta.get('epoch'), int):
        # checkpoints count epochs from 0, metrics.jsonl from 1
        title = '%s: validation, epoch %d' % (name, meta['epoch'] + 1)
    paths.append(plot_confusion(confusion, classes,
                                os.path.join(run_dir, 'confusion.png'),
                                title=title))
    return paths


# --- helpers -----------------------------------------------------------------

def _reason(exc):
    """A short one-line reason for an I/O or decoding error."""
    return getattr(exc, 'strerror', None) or str(exc)


def _number(value):
    """``value`` as a float; NaN (a gap in a plot) when it is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return float('nan')
    return float(value)


def _check_confusion(confusion, class_names, where):
    """``(counts, names)``: the matrix as float64 and the names as str.

    TaggerError naming ``where`` unless ``confusion`` is a non-empty square
    matrix of finite non-negative numbers with one name per row.
    """
    import numpy as np

    try:
        counts = np.asarray(confusion, dtype=np.float64)
    except (TypeError, ValueError):
        raise TaggerError('confusion matrix is not a numeric matrix', where)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] \
            or counts.shape[0] == 0:
        raise TaggerError('confusion matrix must be square and non-empty, '
                          'got shape %s' % (counts.shape,), where)
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise TaggerError('confusion matrix has negative or non-finite '
                          'entries', where)
    if isinstance(class_names, str):
        class_names = [class_names]
    try:
        names = [str(name) for name in class_names]
    except TypeError:
        raise TaggerError('class names must be a list of strings', where)
    if len(names) != counts.shape[0]:
        raise TaggerError('%d class names for a %dx%d confusion matrix'
                          % (len(names), counts.shape[0], counts.shape[0]),
                          where)
    return counts, names


def _check_histories(histories, out_png):
    """``histories`` as a list of ``(label, rows)``; TaggerError if bad."""
    if isinstance(histories, (list, tuple)):
        histories = {'': histories}
    if not isinstance(histories, dict) or not histories:
        raise TaggerError('no runs to plot (histories must be a non-empty '
                          'dict of label -> list of epoch dicts)', out_png)
    runs = []
    for label, rows in histories.items():
        if not isinstance(rows, (list, tuple)) or not rows \
                or not all(isinstance(row, dict) for row in rows):
            raise TaggerError('run %r is not a non-empty list of epoch dicts'
                              % (label,), out_png)
        runs.append((str(label), list(rows)))
    return runs


def _save(fig, out_png, dpi=100):
    """Render ``fig`` to ``out_png`` atomically and return the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    make_parent(out_png)
    with atomic_path(out_png, what='write the PNG') as tmp:
        with open(tmp, 'wb') as fh:
            fig.savefig(fh, format='png', dpi=dpi, bbox_inches='tight')
    return out_png
