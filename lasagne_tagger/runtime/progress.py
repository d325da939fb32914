"""Progress bars: ``tqdm`` with the package's defaults.

Usage::

    with progress_bar(len(items), 'preparing') as bar:
        for item in items:
            work(item)
            bar.update()

On a terminal the bar is redrawn in place (at most every 0.1 s); written
anywhere else (a log file, CI) each redraw is a line of its own, at most
one every 30 s, so a long run logs a handful of lines, and always one
when the bar closes.
``enabled=False`` writes nothing at all.  ``unit='B'`` shows byte counts in
KiB/MiB.  A stream that breaks (a closed pipe) silences the bar, never the
work.
"""
import sys

__all__ = ['progress_bar']

# Seconds between two redraws on a terminal and anywhere else.
TTY_INTERVAL, LOG_INTERVAL = 0.1, 30.0


def progress_bar(total, desc='', enabled=True, unit='it', stream=None):
    """A ``tqdm`` bar of ``total`` steps (None: unknown) labelled ``desc``.

    Parameters
    ----------
    total : int or None
    desc : str
    enabled : bool
        False: the bar writes nothing (``tqdm``'s ``disable``).
    unit : str
        ``'it'``, ``'img'``...; ``'B'`` scales byte counts by 1024.
    stream : file-like, optional
        Where to write (``sys.stderr``, looked up at the call).

    Returns
    -------
    tqdm.tqdm
        Use it as a context manager, or call ``close()``: every way out of
        a loop must close it (the final line).
    """
    from tqdm import tqdm
    stream = sys.stderr if stream is None else stream
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError):
        tty = False
    interval = TTY_INTERVAL if tty else LOG_INTERVAL
    return tqdm(total=total, desc=desc, file=_Stream(stream, tty), disable=not enabled,
                unit=unit, unit_scale=unit == 'B', unit_divisor=1024,
                mininterval=interval, maxinterval=max(interval, 10.0),
                dynamic_ncols=tty, leave=True)


class _Stream(object):
    """``stream`` as ``tqdm`` writes to it: on a terminal as it is; in a
    log each redraw (``\\r`` + text) becomes a line of its own.  A write
    or flush that fails (a broken pipe, a closed file) silences it from
    then on instead of raising."""

    def __init__(self, stream, tty):
        self._stream = stream
        self._tty = tty
        self.broken = False

    def write(self, text):
        if not self._tty:
            text = text.strip('\r\n')
            if not text.strip():      # a bare \r or the bar's final \n
                return
            text += '\n'
        self._call('write', text)

    def flush(self):
        self._call('flush')

    def isatty(self):
        return self._tty and not self.broken

    def _call(self, name, *args):
        if self.broken:
            return
        try:
            getattr(self._stream, name)(*args)
        except (OSError, ValueError):
            self.broken = True
