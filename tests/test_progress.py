"""The tiny progress bar: terminal redraws, short logs, silence."""
import io

import pytest

from lasagne_tagger.progress import Progress, format_count, format_duration


class _Clock(object):
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class _TTY(io.StringIO):
    def isatty(self):
        return True


def test_non_tty_prints_at_most_a_line_per_tenth():
    out, clock = io.StringIO(), _Clock()
    with Progress(1000, 'work', stream=out, clock=clock) as bar:
        for _ in range(1000):
            clock.now += 0.01
            bar.update()
    lines = out.getvalue().splitlines()
    assert '\r' not in out.getvalue()
    assert 2 <= len(lines) <= 11
    assert lines[0].startswith('work: 100/1000   10%')
    assert lines[-1].startswith('work: 1000/1000  100%')
    assert '100.0 it/s' in lines[-1] and 'in 0:10' in lines[-1]
    assert 'ETA 0:09' in lines[0]         # 900 left at 100 it/s


def test_big_jumps_do_not_repeat_lines():
    out = io.StringIO()
    bar = Progress(10, 'x', stream=out, clock=_Clock())
    bar.update(7)
    bar.update(1)
    bar.update(2)
    bar.close()
    bar.close()                            # idempotent
    lines = out.getvalue().splitlines()
    assert [l.split()[1] for l in lines] == ['7/10', '8/10', '10/10']


def test_tty_redraws_in_place_throttled():
    out, clock = _TTY(), _Clock()
    bar = Progress(50, 'tty', stream=out, clock=clock, min_interval=1.0)
    for _ in range(50):
        clock.now += 0.1
        bar.update()
    bar.close()
    text = out.getvalue()
    assert text.endswith('\n') and text.count('\n') == 1
    frames = text.split('\r')[1:]
    assert 4 <= len(frames) <= 8           # initial + ~1/s + final
    assert frames[-1].startswith('tty: 50/50  100%')
    assert all(f.startswith('tty: ') for f in frames)


def test_disabled_prints_nothing_but_counts():
    out = _TTY()
    with Progress(5, 'quiet', stream=out, enabled=False) as bar:
        bar.update(3)
    assert out.getvalue() == ''
    assert bar.count == 3


def test_unknown_total_and_zero_total():
    out = io.StringIO()
    with Progress(None, 'n', stream=out, clock=_Clock()) as bar:
        bar.update(4)
    assert out.getvalue().splitlines() == [bar.line(final=True)]
    assert out.getvalue().startswith('n: 4  ')
    out = io.StringIO()
    with Progress(0, 'z', stream=out, clock=_Clock()):
        pass
    assert out.getvalue().startswith('z: 0/0  100%')


class _BrokenPipe(io.StringIO):
    writes = 0

    def write(self, text):
        self.writes += 1
        raise BrokenPipeError(32, 'Broken pipe')


@pytest.mark.parametrize('broken', ['closed', 'pipe'])
def test_broken_stream_is_not_fatal(broken):
    out = io.StringIO() if broken == 'closed' else _BrokenPipe()
    bar = Progress(10, 'b', stream=out, clock=_Clock())
    if broken == 'closed':
        out.close()
    bar.update(5)              # a tenth done: draws, fails, stops drawing
    bar.update(5)
    bar.close()
    assert bar.count == 10 and bar.closed and not bar.enabled
    if broken == 'pipe':
        assert out.writes == 1     # after the first failure it stops trying


@pytest.mark.parametrize('seconds, text', [
    (0, '0:00'), (59.6, '1:00'), (61, '1:01'), (3600 * 2 + 5, '2:00:05'),
    (None, '?'), (float('inf'), '?'), (-1, '?')])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_format_count_bytes():
    assert format_count(12) == '12'
    assert format_count(512, 'B') == '512 B'
    assert format_count(3 * 1024 * 1024, 'B') == '3.0 MiB'
