"""Where a run's time goes: wall time per stage, and how much of it went
to compiling Theano functions.

:func:`lasagne_tagger.runtime.function_cache.function` reports every function it
makes (compiled, or loaded from its cache) to the :class:`StageTimer`
whose :meth:`StageTimer.stage` block is running, if any; nothing is
recorded outside such a block.

>>> timer = StageTimer()
>>> with timer.stage('fine-tune'):
...     pass                                 # doctest: +SKIP
>>> print(timer.table())                     # doctest: +SKIP
"""
import contextlib
import contextvars
import time

__all__ = ['StageTimer', 'record_function']

_ACTIVE = contextvars.ContextVar('lasagne_tagger_stage', default=None)


def record_function(seconds, from_cache):
    """Count one function made in ``seconds`` (loaded from the function
    cache if ``from_cache``) against the running stage, if any."""
    stage = _ACTIVE.get()
    if stage is not None:
        key = 'loaded' if from_cache else 'compiled'
        stage[key] += 1
        stage[key + '_s'] += seconds


class StageTimer(object):
    """Per-stage wall, compile and run seconds, in the order run."""

    def __init__(self):
        self.rows = []

    @contextlib.contextmanager
    def stage(self, name):
        row = dict(stage=name, wall_s=0.0, compiled=0, compiled_s=0.0,
                   loaded=0, loaded_s=0.0)
        token = _ACTIVE.set(row)
        start = time.time()
        try:
            yield row
        finally:
            row['wall_s'] = time.time() - start
            _ACTIVE.reset(token)
            row['compile_s'] = row['compiled_s'] + row['loaded_s']
            row['run_s'] = max(row['wall_s'] - row['compile_s'], 0.0)
            self.rows.append(row)

    def as_json(self):
        """The rows, seconds rounded to 0.1 s."""
        return [{k: round(v, 1) if isinstance(v, float) else v
                 for k, v in row.items()} for row in self.rows]

    def table(self):
        """A plain-text table: stage, wall, compiling (functions compiled /
        loaded from the cache), the rest; a total line."""
        lines = ['%-18s %7s %9s %9s  %s' % ('stage', 'wall s', 'compile s',
                                           'run s', 'functions')]
        for r in self.rows:
            lines.append('%-18s %7.1f %9.1f %9.1f  %d compiled, %d cached'
                         % (r['stage'], r['wall_s'], r['compile_s'],
                            r['run_s'], r['compiled'], r['loaded']))
        total = {k: sum(r[k] for r in self.rows)
                 for k in ('wall_s', 'compile_s', 'run_s', 'compiled',
                           'loaded')}
        lines.append('%-18s %7.1f %9.1f %9.1f  %d compiled, %d cached'
                     % ('total', total['wall_s'], total['compile_s'],
                        total['run_s'], total['compiled'], total['loaded']))
        return '\n'.join(lines)
