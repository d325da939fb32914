"""Progress bars (tqdm with the package's defaults): redraws on a terminal,
few lines in a log, silence when disabled, a broken stream not fatal."""
import io

import pytest

from lasagne_tagger.runtime import progress
from lasagne_tagger.runtime.progress import progress_bar


class _TTY(io.StringIO):
    def isatty(self):
        return True


def test_log_stream_gets_whole_lines_and_few_of_them():
    out = io.StringIO()
    with progress_bar(1000, 'work', stream=out) as bar:
        for _ in range(1000):
            bar.update()
    assert bar.mininterval == bar.maxinterval == progress.LOG_INTERVAL
    text = out.getvalue()
    assert '\r' not in text and text.endswith('\n')
    lines = text.splitlines()
    # the first line, and the last: 1000 quick updates drew nothing between
    assert len(lines) == 2, lines
    assert lines[0].startswith('work:   0%') and '0/1000' in lines[0]
    assert lines[-1].startswith('work: 100%') and '1000/1000' in lines[-1]


def test_terminal_redraws_in_place():
    out = _TTY()
    bar = progress_bar(50, 'tty', stream=out, unit='img')
    assert bar.mininterval == progress.TTY_INTERVAL
    bar.update(50)
    bar.close()
    text = out.getvalue()
    assert text.startswith('\r') and text.endswith('\n')
    assert text.count('\n') == 1 and '50/50' in text and 'img' in text


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
    assert out.getvalue().splitlines()[-1].startswith('n: 4it')


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
