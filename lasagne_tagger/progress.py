"""A tiny, dependency-free progress bar for long loops.

Usage::

    with Progress(len(items), 'preparing') as bar:
        for item in items:
            work(item)
            bar.update()

On a terminal the line is redrawn in place with ``\\r`` (at most every
``min_interval`` seconds, plus once when it closes).  Anywhere else (a log
file, CI) it prints a whole line only when another tenth of the work is
done, so a run logs at most about a dozen lines.  ``enabled=False`` prints
nothing at all.  Each line shows ``count/total``, the percentage, the rate
and the estimated time left, e.g.::

    preparing:  450/1000  45%  123.4 it/s  ETA 0:04
"""
import sys
import time

__all__ = ['Progress', 'format_duration', 'format_count']


def format_duration(seconds):
    """``seconds`` as ``M:SS`` or ``H:MM:SS``; ``?`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0 \
            or seconds == float('inf'):
        return '?'
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return '%d:%02d:%02d' % (hours, minutes, secs)
    return '%d:%02d' % (minutes, secs)


def format_count(n, unit=''):
    """``n`` as a short string; byte counts (``unit='B'``) as KiB/MiB/GiB."""
    if unit != 'B':
        return '%d' % n
    value = float(n)
    for prefix in ('B', 'KiB', 'MiB', 'GiB'):
        if value < 1024 or prefix == 'GiB':
            break
        value /= 1024.0
    return ('%d %s' % (value, prefix) if prefix == 'B'
            else '%.1f %s' % (value, prefix))


class Progress(object):
    """Progress of ``total`` steps, written to ``stream``.

    Parameters
    ----------
    total : int or None
        Number of steps expected; ``None`` when unknown (then no percentage
        or ETA is shown, and a non-terminal stream only gets the final line).
    desc : str
        Label printed before the counts.
    stream : file-like, optional
        Where to write; ``sys.stderr`` (looked up when the bar is created).
    enabled : bool
        ``False`` makes every method a no-op that writes nothing.
    unit : str
        ``'it'`` (default) for items; ``'B'`` shows byte counts as KiB/MiB.
    min_interval : float
        Smallest time between two redraws on a terminal, in seconds.
    clock : callable
        Returns the time in seconds (``time.monotonic``); for tests.

    Notes
    -----
    Whether ``stream`` is a terminal is decided once, by its ``isatty()``.
    Counting past ``total`` is allowed (the percentage is then capped at
    100).  Use it as a context manager, or call :meth:`close`, so the final
    line is written and a terminal line is ended with a newline.
    """

    def __init__(self, total, desc='', stream=None, enabled=True, unit='it',
                 min_interval=0.1, clock=time.monotonic):
        self.total = None if total is None else max(0, int(total))
        self.desc = desc
        self.stream = sys.stderr if stream is None else stream
        self.enabled = bool(enabled)
        self.unit = unit
        self.min_interval = float(min_interval)
        self.clock = clock
        self.count = 0
        self.closed = False
        self.start = clock()
        self._last_draw = None
        self._last_decile = 0
        self._width = 0
        try:
            self.tty = bool(self.stream.isatty())
        except (AttributeError, ValueError):
            self.tty = False
        if self.enabled and self.tty:
            self._draw(self.start)

    # -- public API -------------------------------------------------------
    def update(self, n=1):
        """Record ``n`` more steps done and redraw if it is time to."""
        self.count += n
        if not self.enabled or self.closed:
            return
        now = self.clock()
        if self.tty:
            if (self._last_draw is None
                    or now - self._last_draw >= self.min_interval):
                self._draw(now)
        elif self.total:
            decile = min(10, self.count * 10 // self.total)
            if decile > self._last_decile and decile < 10:
                self._last_decile = decile
                self._draw(now)

    def close(self):
        """Write the final line (once); later calls do nothing."""
        if self.closed:
            return
        self.closed = True
        if not self.enabled:
            return
        self._draw(self.clock(), final=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False

    # -- formatting -------------------------------------------------------
    def elapsed(self, now=None):
        """Seconds since the bar was created."""
        return (self.clock() if now is None else now) - self.start

    def rate(self, now=None):
        """Steps per second so far (0.0 before any time has passed)."""
        elapsed = self.elapsed(now)
        return self.count / elapsed if elapsed > 0 else 0.0

    def line(self, now=None, final=False):
        """The text of the progress line (no ``\\r`` or newline)."""
        now = self.clock() if now is None else now
        rate = self.rate(now)
        parts = []
        count = format_count(self.count, self.unit)
        if self.total is not None:
            count += '/' + format_count(self.total, self.unit)
            percent = (100.0 if self.total == 0
                       else min(100.0, 100.0 * self.count / self.total))
            parts.append('%s  %3d%%' % (count, percent))
        else:
            parts.append(count)
        if self.unit == 'B':
            parts.append('%s/s' % format_count(rate, 'B'))
        else:
            parts.append('%.1f %s/s' % (rate, self.unit))
        if final:
            parts.append('in %s' % format_duration(self.elapsed(now)))
        elif self.total is not None:
            left = max(0, self.total - self.count)
            eta = left / rate if rate > 0 else (0 if left == 0 else None)
            parts.append('ETA %s' % format_duration(eta))
        prefix = '%s: ' % self.desc if self.desc else ''
        return prefix + '  '.join(parts)

    def _draw(self, now, final=False):
        text = self.line(now, final=final)
        try:
            if self.tty:
                # pad so a shorter line fully covers the previous one
                padded = text.ljust(self._width)
                self._width = len(text)
                self.stream.write('\r' + padded + ('\n' if final else ''))
            else:
                self.stream.write(text + '\n')
            self.stream.flush()
        except (OSError, ValueError):    # closed or broken stream: not fatal
            self.enabled = False
        self._last_draw = now
