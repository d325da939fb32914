"""A training run's folder: never overwritten by accident, its metrics
always those of its checkpoints.

Both training loops (fine-tuning and the tagger) keep ``last`` and ``best``
checkpoints and ``metrics.jsonl`` in one folder.  :func:`open_run` refuses
a folder that already holds a run unless the caller resumes it or asks to
overwrite it; :func:`write_metrics` rewrites ``metrics.jsonl`` from the
history saved inside the ``last`` checkpoint, so a crash between the two
can never leave a metrics row without its checkpoint (or twice after a
resume).
"""
import json
import os

from . import checkpoint
from ..atomic import describe_os_error, write_text
from ..errors import TaggerError

__all__ = ['open_run', 'write_metrics', 'RUN_FILES']

RUN_FILES = ('last.npz', 'last.json', 'best.npz', 'best.json',
             'metrics.jsonl')


def open_run(out_dir, resume=False, overwrite=False, what='run'):
    """Make ``out_dir`` ready for a run; returns the ``last`` checkpoint's
    prefix if the run is to resume from it, else None.

    Parameters
    ----------
    out_dir : str
    resume : bool
        Continue the run in the folder (from ``last``; a folder without one
        starts afresh).
    overwrite : bool
        Remove an earlier run's checkpoints and metrics first.
    what : str
        Named in the error (``training run``, ``tagger run``).

    Raises
    ------
    TaggerError
        The folder holds a run and neither ``resume`` nor ``overwrite`` is
        set; or it cannot be created.
    """
    out_dir = os.fspath(out_dir)
    if resume and overwrite:
        raise TaggerError('--resume and --overwrite exclude each other')
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise TaggerError('cannot create the run folder (%s)'
                          % describe_os_error(exc), out_dir) from None
    if not os.access(out_dir, os.W_OK):
        raise TaggerError('cannot write in the run folder (permission '
                          'denied)', out_dir)
    present = [f for f in RUN_FILES
               if os.path.exists(os.path.join(out_dir, f))]
    last = os.path.join(out_dir, 'last')
    if resume:
        return last if checkpoint.exists(last) else None
    if present and not overwrite:
        raise TaggerError('holds a %s already (%s); pass --resume to '
                          'continue it or --overwrite to start afresh'
                          % (what, ', '.join(present)), out_dir)
    for name in present:
        try:
            os.remove(os.path.join(out_dir, name))
        except OSError as exc:
            raise TaggerError('cannot remove the earlier run (%s)'
                              % describe_os_error(exc),
                              os.path.join(out_dir, name)) from None
    return None


def write_metrics(out_dir, history):
    """``metrics.jsonl``: one JSON line per entry of ``history`` (the rows
    saved in the last checkpoint), written atomically."""
    write_text(os.path.join(out_dir, 'metrics.jsonl'),
               ''.join(json.dumps(row) + '\n' for row in history))
