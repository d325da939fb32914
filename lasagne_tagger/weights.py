"""The model-zoo GoogLeNet weights: download, verify and load safely.

``blvc_googlenet.pkl`` (Lasagne Recipes model zoo) is a Python 2 pickle of
``{'param values': [116 arrays], 'synset words': [1000 str]}``.  Pickles can
run code, so :func:`load_model_zoo_pickle` goes through an unpickler that
admits only what NumPy arrays need (``_reconstruct``, ``ndarray``, ``dtype``
and ``scalar``) and plain containers; anything else (``os.system``,
``builtins.eval``...) is refused with an error naming the file and the
global it tried to import.
"""
import hashlib
import io
import os
import pickle
import sys
import time

import numpy as np

from .errors import TaggerError

__all__ = ['MODEL_ZOO_URL', 'MODEL_ZOO_SIZE', 'MODEL_ZOO_SHA256',
           'default_weights_path', 'fetch', 'load_model_zoo_pickle',
           'RestrictedUnpickler', 'sha256sum', 'find_weights']

MODEL_ZOO_URL = ('https://s3.amazonaws.com/lasagne/recipes/pretrained/'
                 'imagenet/blvc_googlenet.pkl')
MODEL_ZOO_SIZE = 28029725
# note: the SHA-256 of the published file could not be established here (no
# access to the bucket).  Until someone records it, downloads are checked by
# size and by structure (116 arrays of the right shapes, 1000 synsets).  Set
# it here, or pass --sha256, once known.
MODEL_ZOO_SHA256 = None
NUM_SYNSETS = 1000
WEIGHTS_ENV = 'LASAGNE_TAGGER_WEIGHTS'

_ALLOWED_GLOBALS = {
    ('numpy.core.multiarray', '_reconstruct'),
    ('numpy.core.multiarray', 'scalar'),
    ('numpy', 'ndarray'),
    ('numpy', 'dtype'),
    # Python 3 pickles (protocol 2) encode bytes with _codecs.encode.
    ('_codecs', 'encode'),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler admitting NumPy arrays, dtypes, scalars and containers."""

    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            'refused to import %s.%s (only NumPy arrays are allowed)'
            % (module, name))


def default_weights_path():
    """``pretrained/blvc_googlenet.pkl`` in the working directory, or the
    path in ``$LASAGNE_TAGGER_WEIGHTS``."""
    return os.environ.get(WEIGHTS_ENV,
                          os.path.join('pretrained', 'blvc_googlenet.pkl'))


def find_weights(path=None):
    """Return ``path`` (or the default) if the file exists, else None."""
    path = default_weights_path() if path is None else os.fspath(path)
    return path if os.path.isfile(path) else None


def sha256sum(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, 'rb') as fh:
        for block in iter(lambda: fh.read(chunk), b''):
            digest.update(block)
    return digest.hexdigest()


def fetch_instructions(path):
    return ('ImageNet weights not found at %s: run `lasagne-tagger fetch-weights` '
            '(downloads %s, %d bytes) or pass --weights PATH'
            % (path, MODEL_ZOO_URL, MODEL_ZOO_SIZE))


def _progress_line(done, total, start, stream):
    if stream is None:
        return
    rate = done / max(time.time() - start, 1e-6)
    pct = 100.0 * done / total if total else 0.0
    stream.write('\rdownloading: %5.1f%% %d/%s bytes %.1f MB/s'
                 % (pct, done, total or '?', rate / 1e6))
    stream.flush()


def fetch(dest=None, url=MODEL_ZOO_URL, size=MODEL_ZOO_SIZE,
          sha256=MODEL_ZOO_SHA256, timeout=60, progress=sys.stderr,
          opener=None):
    """Download ``url`` to ``dest`` with resume, progress and verification.

    The download goes to ``dest + '.part'``; an existing ``.part`` is
    resumed with an HTTP ``Range`` request (restarted if the server ignores
    it).  When complete the size (and SHA-256, when known) is checked and the
    file is renamed into place atomically.  An existing ``dest`` that
    already verifies is kept.

    Parameters
    ----------
    opener : callable, optional
        ``opener(request, timeout=...)`` returning a response; defaults to
        :func:`urllib.request.urlopen` (tests pass a local one).

    Returns
    -------
    str
        ``dest``.

    Raises
    ------
    TaggerError
        When offline or the server fails (naming the URL and the reason), or
        when the size or checksum is wrong (the bad file is kept as
        ``.part`` for inspection, never at ``dest``).
    """
    import urllib.error
    import urllib.request

    dest = os.fspath(dest or default_weights_path())
    if os.path.isfile(dest):
        _verify(dest, size, sha256)
        return dest
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    part = dest + '.part'
    have = os.path.getsize(part) if os.path.exists(part) else 0
    if size is not None and have > size:
        os.remove(part)
        have = 0
    opener = opener or urllib.request.urlopen
    if size is None or have < size:
        request = urllib.request.Request(url)
        if have:
            request.add_header('Range', 'bytes=%d-' % have)
        try:
            response = opener(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:        # range past the end: done
                response = None
            else:
                raise TaggerError('cannot download %s: HTTP %s %s'
                                  % (url, exc.code, exc.reason)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, 'reason', exc)
            raise TaggerError(
                'cannot download %s (%s); are you offline? Download it '
                'elsewhere and copy it to %s' % (url, reason, dest)) from None
        if response is not None:
            with response:
                status = getattr(response, 'status', 200)
                mode = 'ab' if (have and status == 206) else 'wb'
                done = have if mode == 'ab' else 0
                total = size
                start = time.time()
                try:
                    with open(part, mode) as out:
                        while True:
                            block = response.read(1 << 16)
                            if not block:
                                break
                            out.write(block)
                            done += len(block)
                            _progress_line(done, total, start, progress)
                except OSError as exc:
                    raise TaggerError('download interrupted after %d bytes '
                                      '(%s); run again to resume'
                                      % (done, exc), part) from None
                if progress is not None:
                    progress.write('\n')
    _verify(part, size, sha256)
    os.replace(part, dest)
    return dest


def _verify(path, size, sha256):
    actual = os.path.getsize(path)
    if size is not None and actual != size:
        raise TaggerError('size is %d bytes, expected %d (incomplete or a '
                          'different file)' % (actual, size), path)
    if sha256:
        digest = sha256sum(path)
        if digest != sha256.lower():
            raise TaggerError('SHA-256 is %s, expected %s' % (digest, sha256),
                              path)


def load_model_zoo_pickle(path, sha256=MODEL_ZOO_SHA256):
    """Load and check ``blvc_googlenet.pkl`` without running its code.

    Returns
    -------
    dict
        ``{'param values': list of ndarray, 'synset words': list of str}``
        plus any other plain keys the file holds.

    Raises
    ------
    TaggerError
        Missing file, wrong checksum, not a pickle, a pickle that imports
        anything outside NumPy, or the wrong structure (each named).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise TaggerError(fetch_instructions(path))
    if sha256:
        _verify(path, None, sha256)
    try:
        with open(path, 'rb') as fh:
            data = RestrictedUnpickler(io.BufferedReader(fh),
                                       encoding='latin1').load()
    except pickle.UnpicklingError as exc:
        raise TaggerError('unsafe or invalid pickle: %s' % exc, path) from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, MemoryError) as exc:
        raise TaggerError('not a readable model-zoo pickle (%s: %s)'
                          % (type(exc).__name__, exc), path) from None
    if not isinstance(data, dict) or 'param values' not in data:
        raise TaggerError("expected a dict with 'param values' and 'synset "
                          "words', found %s" % type(data).__name__, path)
    values = data['param values']
    if not isinstance(values, list) or not all(isinstance(v, np.ndarray)
                                               for v in values):
        raise TaggerError("'param values' must be a list of NumPy arrays",
                          path)
    words = data.get('synset words')
    if (not isinstance(words, (list, tuple)) or len(words) != NUM_SYNSETS
            or not all(isinstance(w, str) for w in words)):
        raise TaggerError("'synset words' must be a list of %d strings"
                          % NUM_SYNSETS, path)
    data['synset words'] = list(words)
    return data
