"""Checkpoints: name-keyed arrays and their metadata in one ``.npz`` file.

A checkpoint ``PREFIX`` is one file, ``PREFIX.npz``: the arrays keyed by
``layer/param`` (e.g. ``conv1/7x7_s2/W``, optimizer state under
``opt/...``) and, under ``__meta__``, the metadata (config, epoch,
metrics, classes...) as UTF-8 JSON bytes, with the SHA-256 of every array
(``arrays_sha256``).  No pickled objects: ``np.load(...,
allow_pickle=False)``.  The file is written to a temporary name, synced
and renamed into place (:mod:`lasagne_tagger.atomic`), so a crash or a full
disk never leaves a half-written checkpoint, and the arrays and metadata
always belong together.  ``PREFIX.json`` is a copy of the metadata written
after it, for people and plots; readers trust only the ``.npz``.  A file
whose arrays do not match their recorded digest, or that is not a whole
zip, is an error naming the file.

Version 1 checkpoints (arrays in ``PREFIX.npz``, metadata only in
``PREFIX.json``, no digest) are still read.

Conv filters are stored as the network holds them (Lasagne 0.1 convolution
orientation); the metadata says so under ``filter_orientation``.
"""
import hashlib
import io
import json
import os
from collections import OrderedDict

import numpy as np

from ..atomic import atomic_path, write_text
from ..errors import TaggerError

__all__ = ['named_params', 'training_state', 'save_checkpoint',
           'load_checkpoint', 'assign_params', 'exists', 'arrays_digest',
           'FORMAT_VERSION']

FORMAT_VERSION = 2
FILTER_ORIENTATION = ('lasagne-0.1 convolution (flipped relative to Caffe '
                      'cross-correlation)')


def named_params(layers, prefix=''):
    """``{'<layer name>/<param>': shared variable}`` for a dict of layers.

    Parameter names drop Lasagne's ``layer.`` prefix; layers are visited in
    the dict's order and a shared variable appears once.
    """
    out = OrderedDict()
    seen = set()
    for layer in layers.values():
        for param in layer.get_params():
            if param in seen:
                continue
            seen.add(param)
            short = (param.name or 'param').rsplit('.', 1)[-1]
            out['%s%s/%s' % (prefix, layer.name, short)] = param
    return out


def training_state(layers, opt_state):
    """Parameters (:func:`named_params`) plus the optimizer's shared
    state under ``opt/NNN``: everything an exact resume needs."""
    arrays = named_params(layers)
    for i, var in enumerate(opt_state):
        arrays['opt/%03d' % i] = var
    return arrays


META_KEY = '__meta__'


def arrays_digest(values):
    """SHA-256 over every array's name, dtype, shape and bytes, in name
    order."""
    digest = hashlib.sha256()
    for name in sorted(values):
        value = np.ascontiguousarray(values[name])
        digest.update(('%s|%s|%s|' % (name, value.dtype.str,
                                      value.shape)).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def exists(prefix):
    """Whether a checkpoint (either version) is at ``prefix``."""
    prefix = _strip(prefix)
    return os.path.isfile(prefix + '.npz')


def _strip(prefix):
    prefix = os.fspath(prefix)
    for ext in ('.npz', '.json'):
        if prefix.endswith(ext):
            return prefix[:-len(ext)]
    return prefix


def save_checkpoint(prefix, arrays, meta):
    """Write the checkpoint ``prefix.npz`` (arrays + metadata) atomically,
    then the readable copy ``prefix.json``.

    Parameters
    ----------
    arrays : dict of str -> ndarray or shared variable
    meta : dict
        JSON-serialisable metadata (config, epoch, metrics...).

    Raises
    ------
    TaggerError
        ``PREFIX.npz: cannot write (disk full)``...; the previous checkpoint
        is intact.
    """
    prefix = _strip(prefix)
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    values = OrderedDict(
        (k, v.get_value() if hasattr(v, 'get_value') else np.asarray(v))
        for k, v in arrays.items())
    if META_KEY in values:
        raise TaggerError('%r is reserved for the metadata' % META_KEY)
    meta = dict(meta, format_version=FORMAT_VERSION,
                filter_orientation=FILTER_ORIENTATION,
                arrays=sorted(values), arrays_sha256=arrays_digest(values))
    text = json.dumps(meta, indent=2, sort_keys=True)
    stored = dict(values)
    stored[META_KEY] = np.frombuffer(text.encode('utf-8'), np.uint8)
    # note: assembled in memory, then written in one go: np.savez into a
    # file that hits a full disk leaves a ZipFile that raises again when
    # it is collected (a second traceback after the error line).
    buf = io.BytesIO()
    np.savez(buf, **stored)
    with atomic_path(prefix + '.npz', what='write the checkpoint') as tmp:
        with open(tmp, 'wb') as fh:
            fh.write(buf.getbuffer())
    write_text(prefix + '.json', text + '\n')


def _damaged(path, exc):
    return TaggerError('damaged or incomplete checkpoint (%s: %s)' % (
        type(exc).__name__, str(exc).splitlines()[0] if str(exc) else ''),
        path)


def load_checkpoint(prefix):
    """Return ``(arrays, meta)``; ``prefix`` may end in .npz or .json.

    Raises
    ------
    TaggerError
        Missing file, a damaged or truncated file, arrays that do not match
        their recorded SHA-256, or an unknown format version (each names
        the file).
    """
    import zipfile
    import zlib
    prefix = _strip(prefix)
    path = prefix + '.npz'
    if not os.path.isfile(path):
        raise TaggerError('checkpoint file missing', path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = OrderedDict((k, data[k]) for k in data.files)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile,
            zlib.error, KeyError) as exc:
        raise _damaged(path, exc) from None
    if META_KEY in arrays:
        try:
            meta = json.loads(arrays.pop(META_KEY).tobytes().decode('utf-8'))
        except (ValueError, UnicodeDecodeError) as exc:
            raise _damaged(path, exc) from None
    else:
        meta = _version_1_meta(prefix)
    if meta.get('format_version') not in (1, FORMAT_VERSION):
        raise TaggerError('checkpoint format version %r, this version reads '
                          '1 and %d' % (meta.get('format_version'),
                                        FORMAT_VERSION), path)
    expected = meta.get('arrays_sha256')
    if expected is not None and arrays_digest(arrays) != expected:
        raise TaggerError('arrays do not match the SHA-256 recorded with '
                          'them: the file is damaged', path)
    return arrays, meta


def _version_1_meta(prefix):
    path = prefix + '.json'
    try:
        with open(path) as fh:
            meta = json.load(fh)
    except (ValueError, OSError) as exc:
        raise TaggerError('not a checkpoint metadata file (%s)' % exc,
                          path) from None
    if not isinstance(meta, dict) or meta.get('format_version') != 1:
        raise TaggerError('a version-1 checkpoint needs its metadata here',
                          path)
    return meta


def assign_params(params, arrays, source='checkpoint', allow_missing=()):
    """Set shared variables from name-keyed arrays, checking every shape.

    Names in ``params`` missing from ``arrays`` are an error unless they
    start with one of ``allow_missing``.
    """
    pending = []
    for name, param in params.items():
        if name not in arrays:
            if any(name.startswith(p) for p in allow_missing):
                continue
            raise TaggerError('%s has no array %r' % (source, name))
        value = arrays[name]
        want = param.get_value(borrow=True).shape
        if value.shape != want:
            raise TaggerError('%s array %r has shape %s, the network expects '
                              '%s' % (source, name, value.shape, want))
        pending.append((param, value))
    for param, value in pending:
        param.set_value(value.astype(param.dtype))
