"""Progress bars (tqdm with the package's defaults): redraws on a terminal,
few lines in a log, silence when disabled, a broken stream not fatal."""
import io

import pytest

from lasagne_tagger.runtime import progress
from lasagne_tagger.runtime.progress import progress_bar


class _TTY(io.StringIO):
    def isatty(self):
        return True


def test_log_stream_gets_the_final_line_and_few_redraws():
    out = io.StringIO()
    with progress_bar(1000, 'work', stream=out) as bar:
        for _ in range(1000):
            bar.update()
    assert bar.mininterval == progress.LOG_INTERVAL
    frames = [f for f in out.getvalue().replace('\n', '\r').split('\r') if f]
    # the first frame, and the last: 1000 quick updates drew nothing between
    assert len(frames) == 2, frames
    assert frames[0].startswith('work:   0%') and '0/1000' in frames[0]
    assert frames[-1].startswith('work: 100%') and '1000/1000' in frames[-1]
    assert out.getvalue().endswith('\n')


def test_terminal_redraws_often():
    out = _TTY()
    bar = progress_bar(50, 'tty', stream=out, unit='img')
    assert bar.mininterval == progress.TTY_INTERVAL
    bar.close()
    assert 'img' in out.getvalue()


def test_disabled_writes_nothing():
    for out in (io.StringIO(), _TTY()):
        with progress_bar(5, 'quiet', stream=out, enabled=False) as bar:
            bar.update(3)
        assert out.getvalue() == ''


def test_bytes_are_scaled_by_1024():
    out = io.StringIO()
    with progress_bar(3 * 1024 * 1024, 'extracting', stream=out,
                      unit='B') as bar:
        bar.update(3 * 1024 * 1024)
    assert '3.00M/3.00M' in out.getvalue()


def test_unknown_total():
    out = io.StringIO()
    with progress_bar(None, 'n', stream=out) as bar:
        bar.update(4)
    assert out.getvalue().rstrip().split('\r')[-1].startswith('n: 4it')


class _BrokenPipe(io.StringIO):
    writes = 0

    def write(self, text):
        self.writes += 1
        raise BrokenPipeError(32, 'Broken pipe')


@pytest.mark.parametrize('broken', ['closed', 'pipe'])
def test_broken_stream_is_not_fatal(broken):
    out = io.StringIO() if broken == 'closed' else _BrokenPipe()
    if broken == 'closed':
        out.close()
    bar = progress_bar(10, 'b', stream=out)
    bar.update(5)
    bar.update(5)
    bar.close()
    assert bar.n == 10
    assert bar.fp.broken
    if broken == 'pipe':
        assert out.writes == 1     # after the first failure it stops trying
