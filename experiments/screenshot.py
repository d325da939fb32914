"""Render an HTML page (the results report) to a PNG with headless Chromium.

Checks that ``report.html`` renders in a real browser: Debian's
``chromium`` (``apt-get install chromium``) runs headless with a new, empty
profile and no network features, and writes a full-width screenshot.  The
script fails if Chromium fails or the PNG is blank (one colour).

    python experiments/screenshot.py experiments/results/clothing-small/report.html
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

# Where Chromium may be, in order (Debian's first).
CANDIDATES = ('/usr/bin/chromium', 'chromium', 'chromium-browser',
              'google-chrome', 'google-chrome-stable')


def opts_parser():
    """The command line (defaults shown in ``--help``)."""
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('html', help='the page, e.g. RESULTS_DIR/report.html')
    p.add_argument('--out', default=None,
                   help='PNG to write (default: the page\'s name + .png)')
    p.add_argument('--width', type=int, default=1200, help='window width')
    p.add_argument('--height', type=int, default=3000, help='window height')
    p.add_argument('--chromium', default=None,
                   help='browser executable (default: the first of %s)'
                        % ', '.join(CANDIDATES))
    p.add_argument('--timeout', type=float, default=120.0,
                   help='seconds before giving up on the browser')
    return p


def find_chromium(explicit=None):
    """The Chromium executable, or None when none is installed."""
    for name in ([explicit] if explicit else CANDIDATES):
        path = shutil.which(name)
        if path:
            return path
    return None


def is_blank(png, tolerance=2.0):
    """Whether the PNG is (almost) one colour: every channel's standard
    deviation below ``tolerance``."""
    import numpy as np
    from PIL import Image
    with Image.open(png) as image:
        pixels = np.asarray(image.convert('RGB'), dtype=np.float64)
    return bool(pixels.reshape(-1, 3).std(axis=0).max() < tolerance)


def screenshot(html_path, png_path=None, width=1200, height=3000,
               chromium=None, timeout=120.0):
    """Render ``html_path`` with headless Chromium into ``png_path``.

    Parameters
    ----------
    html_path : str
        A local HTML file.
    png_path : str, optional
        Output PNG (default: ``html_path`` with ``.png``).
    width, height : int
        Window size in pixels (the screenshot's size).
    chromium : str, optional
        Browser executable (default: :func:`find_chromium`).
    timeout : float
        Seconds before the browser is stopped.

    Returns
    -------
    str
        ``png_path``.

    Raises
    ------
    TaggerError
        No browser, the page is missing, the browser fails or times out,
        writes no PNG or a blank one.
    """
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    from lasagne_tagger.errors import TaggerError

    if not os.path.isfile(html_path):
        raise TaggerError('no such page', html_path)
    browser = find_chromium(chromium)
    if browser is None:
        raise TaggerError('Chromium not found (apt-get install chromium, or '
                          'give --chromium)')
    png_path = os.path.abspath(png_path or
                               os.path.splitext(html_path)[0] + '.png')
    if os.path.exists(png_path):
        os.remove(png_path)
    url = 'file://' + os.path.abspath(html_path)
    with tempfile.TemporaryDirectory(prefix='chromium-profile-') as profile:
        command = [browser, '--headless', '--no-sandbox', '--disable-gpu',
                   '--disable-background-networking',
                   '--disable-component-update', '--disable-sync',
                   '--no-first-run', '--hide-scrollbars',
                   '--user-data-dir=%s' % profile,
                   '--window-size=%d,%d' % (width, height),
                   '--screenshot=%s' % png_path, url]
        try:
            done = subprocess.run(command, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TaggerError('Chromium took more than %.0f s' % timeout,
                              html_path) from None
    if done.returncode != 0 or not os.path.isfile(png_path):
        tail = done.stdout.decode('utf-8', 'replace').strip().splitlines()
        raise TaggerError('Chromium failed (exit %d): %s' % (
            done.returncode, tail[-1] if tail else 'no output'), html_path)
    if is_blank(png_path):
        raise TaggerError('the screenshot is blank', png_path)
    return png_path


def main(argv=None):
    """Command-line entry point; a TaggerError is one ``error:`` line."""
    args = opts_parser().parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    from lasagne_tagger.errors import TaggerError
    try:
        path = screenshot(args.html, args.out, args.width, args.height,
                          args.chromium, args.timeout)
    except TaggerError as exc:
        print('error: %s' % exc, file=sys.stderr)
        return 2
    print('wrote %s' % path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
