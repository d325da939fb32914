"""The ImageNet GoogLeNet weights: get them, verify them, load them safely.

``blvc_googlenet.pkl`` (Lasagne Recipes model zoo) is a Python 2 pickle of
``{'param values': [116 arrays], 'synset words': [1000 str]}``.  Pickles can
run code, so :func:`load_model_zoo_pickle` goes through an unpickler that
admits only what NumPy arrays need (``_reconstruct``, ``ndarray``, ``dtype``
and ``scalar``) and plain containers; anything else (``os.system``,
``builtins.eval``...) is refused with an error naming the file and the
global it tried to import.

Where the weights come from (:func:`fetch`, in this order, one line each):

1. the model-zoo object through the S3 API, the requester paying
   (``boto3`` and AWS credentials; ``pip install '.[s3]'``);
2. the same object over plain HTTPS (refused since March 2019: the bucket
   is requester-pays; the line then says so and gives the ``aws s3 cp``
   command that works);
3. BVLC's own ``bvlc_googlenet.caffemodel``, checked against its SHA-1 and
   converted (:mod:`lasagne_tagger.model.caffemodel`).

:func:`install_from` takes a file the user already has, of either kind.
Every way ends in the same file: a model-zoo pickle, checked array by array
against GoogLeNet's shapes before it is renamed into place.
"""
import io
import os
import pickle
import sys
import time

import numpy as np

from ..atomic import describe_os_error, file_digest, install, make_parent, write_bytes
from ..errors import TaggerError

__all__ = ['MODEL_ZOO_URL', 'MODEL_ZOO_SIZE', 'MODEL_ZOO_SHA256', 'SOURCES',
           'default_weights_path', 'fetch', 'install_from',
           'load_model_zoo_pickle', 'write_model_zoo_pickle',
           'check_model_zoo', 'synset_words', 's3_command',
           'RestrictedUnpickler', 'sha256sum', 'find_weights']

MODEL_ZOO_BUCKET = 'lasagne'
MODEL_ZOO_KEY = 'recipes/pretrained/imagenet/blvc_googlenet.pkl'
MODEL_ZOO_URL = 'https://s3.amazonaws.com/%s/%s' % (MODEL_ZOO_BUCKET,
                                                   MODEL_ZOO_KEY)
MODEL_ZOO_SIZE = 28029725
# note: the SHA-256 of the published file could not be established here (no
# access to the bucket).  Until someone records it, downloads are checked by
# size and by structure (116 arrays of the right shapes, 1000 synsets).  Set
# it here, or pass --sha256, once known.
MODEL_ZOO_SHA256 = None
NUM_SYNSETS = 1000
SYNSETS_FILE = 'ilsvrc12_synset_words.txt'
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


def sha256sum(path):
    """SHA-256 of a file, hex."""
    return file_digest(path, 'sha256')


def fetch_instructions(path):
    return ('ImageNet weights not found at %s: run `lasagne-tagger '
            'fetch-weights` (the model zoo, then BVLC\'s caffemodel), or '
            '`lasagne-tagger fetch-weights --from FILE` with a '
            'blvc_googlenet.pkl or bvlc_googlenet.caffemodel you have, or '
            'pass --weights PATH' % path)


def _progress_line(done, total, start, stream):
    if stream is None:
        return
    rate = done / max(time.time() - start, 1e-6)
    pct = 100.0 * done / total if total else 0.0
    stream.write('\rdownloading: %5.1f%% %d/%s bytes %.1f MB/s'
                 % (pct, done, total or '?', rate / 1e6))
    stream.flush()


class SourceUnavailable(Exception):
    """One source cannot provide the weights now (the chain goes on)."""


def _download(url, part, size=None, timeout=60, progress=None, opener=None):
    """GET ``url`` into ``part``, resuming what it holds (HTTP ``Range``;
    restarted if the server ignores it).  Raises
    :class:`SourceUnavailable` for HTTP errors and network failures (the
    partial file is kept, to resume), :class:`TaggerError` for a local
    write error."""
    import urllib.error
    import urllib.request

    have = os.path.getsize(part) if os.path.exists(part) else 0
    if size is not None and have > size:
        os.remove(part)
        have = 0
    if size is not None and have == size:
        return
    opener = opener or urllib.request.urlopen
    request = urllib.request.Request(url)
    if have:
        request.add_header('Range', 'bytes=%d-' % have)
    try:
        response = opener(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:            # range past the end: done
            return
        raise SourceUnavailable('HTTP %s %s' % (exc.code, exc.reason)) \
            from None
    except (urllib.error.URLError, OSError) as exc:
        raise SourceUnavailable('cannot connect (%s)' % (
            getattr(exc, 'reason', exc),)) from None
    with response:
        status = getattr(response, 'status', 200)
        mode = 'ab' if (have and status == 206) else 'wb'
        done = have if mode == 'ab' else 0
        start = time.time()
        try:
            out = open(part, mode)
        except OSError as exc:
            raise TaggerError('cannot write (%s)' % describe_os_error(exc),
                              part) from None
        with out:
            while True:
                try:
                    block = response.read(1 << 16)
                except OSError as exc:
                    raise SourceUnavailable(
                        'interrupted after %d bytes (%s); run again to '
                        'resume' % (done, exc)) from None
                if not block:
                    break
                try:
                    out.write(block)
                except OSError as exc:
                    raise TaggerError('cannot write (%s)'
                                      % describe_os_error(exc), part) \
                        from None
                done += len(block)
                _progress_line(done, size, start, progress)
        if progress is not None:
            progress.write('\n')


def _s3_download(part, size, timeout, progress, client=None):
    """The model-zoo object through the S3 API, the requester paying."""
    if client is None:
        try:
            import boto3
            import botocore.config
        except ImportError:
            raise SourceUnavailable(
                "boto3 is not installed (pip install '.[s3]')") from None
        session = boto3.session.Session()
        if session.get_credentials() is None:
            raise SourceUnavailable('no AWS credentials (aws configure, or '
                                    'AWS_ACCESS_KEY_ID and '
                                    'AWS_SECRET_ACCESS_KEY)')
        client = session.client('s3', config=botocore.config.Config(
            connect_timeout=timeout, read_timeout=timeout))
    have = os.path.getsize(part) if os.path.exists(part) else 0
    if size is not None and have >= size:
        return
    kwargs = dict(Bucket=MODEL_ZOO_BUCKET, Key=MODEL_ZOO_KEY,
                  RequestPayer='requester')
    if have:
        kwargs['Range'] = 'bytes=%d-' % have
    try:
        body = client.get_object(**kwargs)['Body']
    except Exception as exc:              # botocore's ClientError and kin
        raise SourceUnavailable('S3 refused: %s' % (
            str(exc).splitlines()[0] if str(exc) else type(exc).__name__)) \
            from None
    start, done = time.time(), have
    with open(part, 'ab' if have else 'wb') as out:
        for block in iter(lambda: body.read(1 << 16), b''):
            out.write(block)
            done += len(block)
            _progress_line(done, size, start, progress)
    if progress is not None:
        progress.write('\n')


def _from_model_zoo_s3(dest, options):
    part = dest + '.part'
    _s3_download(part, options['size'], options['timeout'],
                 options['progress'], options.get('s3_client'))
    _install_pickle_part(part, dest, options['sha256'], options['size'])
    return 's3://%s/%s' % (MODEL_ZOO_BUCKET, MODEL_ZOO_KEY)


def _from_model_zoo_https(dest, options):
    part = dest + '.part'
    try:
        _download(options.get('url') or MODEL_ZOO_URL, part,
                  options['size'], options['timeout'], options['progress'],
                  options.get('opener'))
    except SourceUnavailable as exc:
        if str(exc).startswith('HTTP 403'):
            raise SourceUnavailable(
                '%s: the bucket is requester-pays since March 2019 (Lasagne/'
                'Recipes issue #115); with AWS credentials: %s' % (
                    exc, s3_command(dest))) from None
        raise
    _install_pickle_part(part, dest, options['sha256'], options['size'])
    return options.get('url') or MODEL_ZOO_URL


def _from_bvlc(dest, options):
    from . import caffemodel
    target = os.path.join(os.path.dirname(os.path.abspath(dest)),
                          'bvlc_googlenet.caffemodel')
    if not os.path.isfile(target):
        part = target + '.part'
        _download(options.get('bvlc_url') or caffemodel.BVLC_URL, part,
                  None, options['timeout'], options['progress'],
                  options.get('opener'))
        expected = options.get('bvlc_sha1') or caffemodel.BVLC_SHA1
        digest = caffemodel.sha1sum(part)
        if digest != expected:
            os.remove(part)
            raise SourceUnavailable('downloaded file has SHA-1 %s, not the '
                                    'BVLC original\'s %s (removed)'
                                    % (digest, expected))
        install(part, target)
    install_from(target, dest, sha1=options.get('bvlc_sha1'),
                 log=lambda line: None)
    return '%s (converted from %s)' % (
        options.get('bvlc_url') or caffemodel.BVLC_URL, target)


# The default chain of `fetch`, in order: (name, label, function).
SOURCES = (
    ('s3', 'model zoo (S3 API, requester pays)', _from_model_zoo_s3),
    ('https', 'model zoo (HTTPS)', _from_model_zoo_https),
    ('bvlc', 'BVLC caffemodel', _from_bvlc),
)


def s3_command(dest):
    """The AWS CLI command that downloads the model-zoo pickle to ``dest``
    (the requester pays the transfer)."""
    return ('aws s3 cp s3://%s/%s %s --request-payer requester'
            % (MODEL_ZOO_BUCKET, MODEL_ZOO_KEY, dest))


def _install_pickle_part(part, dest, sha256, size):
    _verify(part, size, sha256)
    try:
        check_model_zoo(load_model_zoo_pickle(part), part)
    except TaggerError:
        os.remove(part)               # a complete file that is not it
        raise
    install(part, dest)


def fetch(dest=None, sources=None, sha256=MODEL_ZOO_SHA256, timeout=60,
          progress=sys.stderr, log=None, **options):
    """Get ``blvc_googlenet.pkl`` to ``dest`` from the first source that
    has it, saying each source's fate in one line.

    Parameters
    ----------
    dest : str, optional
        Default :func:`default_weights_path`.  A file already there that
        verifies (structure, shapes, SHA-256 when known) is kept.
    sources : sequence of str, optional
        Names from :data:`SOURCES` (default: all, in order: ``s3``,
        ``https``, ``bvlc``).
    sha256 : str, optional
        The pickle's expected SHA-256 (:data:`MODEL_ZOO_SHA256`).
    progress : file, optional
        Download progress (None: silent).
    log : callable, optional
        Receives the one-line reports (default: print to stderr).
    **options
        ``url``, ``bvlc_url``: other addresses (``bvlc_sha1`` with the
        latter: its file's SHA-1); ``size``: the pickle's
        size (default :data:`MODEL_ZOO_SIZE`; None: unchecked);
        ``opener``: a ``urllib.request.urlopen`` stand-in; ``s3_client``:
        a boto3 S3 client stand-in (tests).

    Returns
    -------
    str
        ``dest``.

    Raises
    ------
    TaggerError
        No source could provide verified weights (the message repeats each
        source's reason); or a file already at ``dest`` is damaged.

    Notes
    -----
    Downloads go to ``<file>.part`` and resume from it; a file is renamed
    into place only when complete and verified.
    """
    log = log or (lambda line: print(line, file=sys.stderr))
    dest = os.fspath(dest or default_weights_path())
    if os.path.isfile(dest):
        check_model_zoo(load_model_zoo_pickle(dest, sha256=sha256), dest)
        log('%s: already here and verified' % dest)
        return dest
    make_parent(dest)
    names = [name for name, _, _ in SOURCES]
    wanted = list(sources or names)
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise TaggerError('unknown weight source %r (known: %s)'
                          % (unknown[0], ', '.join(names)))
    options.setdefault('size', MODEL_ZOO_SIZE)
    options.update(sha256=sha256, timeout=timeout, progress=progress)
    fates = []
    for name, label, get in SOURCES:
        if name not in wanted:
            continue
        try:
            where = get(dest, options)
        except SourceUnavailable as exc:
            fates.append('%s: %s' % (label, exc))
            log('%s: %s' % (label, exc))
            continue
        except TaggerError as exc:
            fates.append('%s: %s' % (label, exc))
            log('%s: %s' % (label, exc))
            continue
        log('%s: got %s -> %s' % (label, where, dest))
        return dest
    raise TaggerError('no source gave the weights (%s). Copy '
                      'blvc_googlenet.pkl or bvlc_googlenet.caffemodel here '
                      'and run `lasagne-tagger fetch-weights --from FILE`'
                      % '; '.join(fates), dest)


def install_from(source, dest=None, sha1=None, sha256=MODEL_ZOO_SHA256,
                 log=None):
    """Install weights the user already has: the model-zoo pickle (checked,
    then copied unchanged) or a BVLC ``.caffemodel`` (checked against its
    SHA-1, then converted), as a model-zoo pickle at ``dest``.

    Parameters
    ----------
    source : str
        ``blvc_googlenet.pkl`` or ``bvlc_googlenet.caffemodel``; the kind is
        read from the file's first bytes, not its name.
    dest : str, optional
        Default :func:`default_weights_path`.
    sha1 : str, optional
        The caffemodel's expected SHA-1 (default: the BVLC original's,
        :data:`lasagne_tagger.model.caffemodel.BVLC_SHA1`).
    sha256 : str, optional
        The pickle's expected SHA-256, when known.

    Returns
    -------
    dict
        ``kind`` (``'pickle'`` or ``'caffemodel'``), ``dest``, ``sha256``
        (of the file written).
    """
    from . import caffemodel
    log = log or (lambda line: print(line, file=sys.stderr))
    source = os.fspath(source)
    dest = os.fspath(dest or default_weights_path())
    try:
        with open(source, 'rb') as fh:
            head = fh.read(4)
    except OSError as exc:
        raise TaggerError('cannot read (%s)' % describe_os_error(exc),
                          source) from None
    if head[:1] == b'\x80':                      # a pickle (protocol >= 2)
        data = load_model_zoo_pickle(source, sha256=sha256)
        check_model_zoo(data, source)
        same = os.path.exists(dest) and os.path.samefile(source, dest)
        if not same:
            with open(source, 'rb') as fh:
                write_bytes(dest, fh.read(), verify=lambda tmp: check_model_zoo(
                    load_model_zoo_pickle(tmp), tmp))
        kind = 'pickle'
    elif caffemodel.looks_like_caffemodel(head):
        expected = (sha1 or caffemodel.BVLC_SHA1).lower()
        digest = caffemodel.sha1sum(source)
        if digest != expected:
            raise TaggerError(
                'SHA-1 is %s, not %s%s; pass --sha1 %s to convert this file '
                'anyway' % (digest, expected, ' (the BVLC original\'s)'
                            if sha1 is None else '', digest), source)
        values = caffemodel.model_zoo_values(caffemodel.read_caffemodel(
            source), source)
        write_model_zoo_pickle(dest, values, synset_words())
        kind = 'caffemodel'
    else:
        raise TaggerError('neither a model-zoo pickle nor a Caffe model '
                          '(first bytes %r)' % head, source)
    digest = sha256sum(dest)
    log('%s: %s -> %s (model-zoo layout, SHA-256 %s)' % (
        source, 'checked' if kind == 'pickle' else 'converted', dest,
        digest))
    return {'kind': kind, 'dest': dest, 'sha256': digest}


def write_model_zoo_pickle(path, values, synsets):
    """``{'param values': values, 'synset words': synsets}`` as the model zoo
    stores it: a protocol-2 pickle (readable by Python 2 and 3), float32
    arrays, written atomically and re-read before it is renamed."""
    data = {'param values': [np.ascontiguousarray(v, np.float32)
                             for v in values],
            'synset words': list(synsets)}
    check_model_zoo(data, path)
    write_bytes(path, pickle.dumps(data, protocol=2), verify=lambda tmp:
                check_model_zoo(load_model_zoo_pickle(tmp), tmp))


def check_model_zoo(data, path):
    """Raise TaggerError unless ``data`` has the model zoo's 116 arrays in
    GoogLeNet's shapes and 1000 synset words."""
    from .googlenet import param_shapes
    values = data['param values']
    shapes = [(name, kind, shape) for name, pair in param_shapes().items()
              for kind, shape in zip(('W', 'b'), pair)]
    if len(values) != len(shapes):
        raise TaggerError("'param values' holds %d arrays, GoogLeNet has %d"
                          % (len(values), len(shapes)), path)
    for i, (value, (name, kind, shape)) in enumerate(zip(values, shapes)):
        if tuple(value.shape) != shape:
            raise TaggerError('parameter %d (%s %s) has shape %s, GoogLeNet '
                              'expects %s' % (i, name, kind, value.shape,
                                              shape), path)


def synset_words():
    """The 1000 ILSVRC-2012 synset words shipped with the package, in the
    model-zoo pickle's order and spelling (a caffemodel carries none).

    The file is Caffe's ``data/ilsvrc12/synset_words.txt`` (``n01440764
    tench, Tinca tinca`` ...); the model zoo's pickles hold each line without
    its WordNet id (``tench, Tinca tinca``: the Recipes notebooks print
    ``CLASSES[i]`` as ``golden retriever``), and so does this list.
    """
    from ..resources import resource_path
    path = resource_path(SYNSETS_FILE)
    with open(path, encoding='utf-8') as fh:
        lines = [line.rstrip('\n') for line in fh if line.strip()]
    words = [line.split(' ', 1)[1] for line in lines]
    if len(words) != NUM_SYNSETS:
        raise TaggerError('holds %d synsets, expected %d' % (
            len(words), NUM_SYNSETS), path)
    return words


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
