"""Checkpoints: name-keyed ``.npz`` arrays + a JSON metadata file.

A checkpoint ``PREFIX`` is two files, ``PREFIX.npz`` (arrays keyed by
``layer/param``, e.g. ``conv1/7x7_s2/W``, plus optimizer state under
``opt/...``) and ``PREFIX.json`` (config, epoch, metrics, classes...).  No
pickled objects: ``np.load(..., allow_pickle=False)``.  Both files are
written to temporary names and renamed into place, the JSON last, so a
crash or a full disk never leaves a half-written checkpoint under the real
name (the previous one stays valid).

Conv filters are stored as the network holds them (Lasagne 0.1 convolution
orientation); the metadata says so under ``filter_orientation``.
"""
import json
import os
from collections import OrderedDict

import numpy as np

from .errors import TaggerError

__all__ = ['named_params', 'training_state', 'save_checkpoint',
           'load_checkpoint', 'assign_params', 'FORMAT_VERSION']

FORMAT_VERSION = 1
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


def _atomic_write(path, write):
    tmp = '%s.tmp-%d' % (path, os.getpid())
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise TaggerError('could not write checkpoint (%s); the previous '
                          'checkpoint is intact' % (exc.strerror or exc),
                          path) from None


def save_checkpoint(prefix, arrays, meta):
    """Write ``prefix.npz`` and ``prefix.json`` atomically.

    Parameters
    ----------
    arrays : dict of str -> ndarray or shared variable
    meta : dict
        JSON-serialisable metadata (config, epoch, metrics...).
    """
    prefix = os.fspath(prefix)
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    values = OrderedDict(
        (k, v.get_value() if hasattr(v, 'get_value') else np.asarray(v))
        for k, v in arrays.items())
    meta = dict(meta, format_version=FORMAT_VERSION,
                filter_orientation=FILTER_ORIENTATION,
                arrays=sorted(values))

    def write_npz(tmp):
        with open(tmp, 'wb') as fh:
            np.savez(fh, **values)
            fh.flush()
            os.fsync(fh.fileno())

    def write_json(tmp):
        with open(tmp, 'w') as fh:
            json.dump(meta, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())

    _atomic_write(prefix + '.npz', write_npz)
    _atomic_write(prefix + '.json', write_json)


def load_checkpoint(prefix):
    """Return ``(arrays, meta)``; ``prefix`` may end in .npz or .json."""
    prefix = os.fspath(prefix)
    for ext in ('.npz', '.json'):
        if prefix.endswith(ext):
            prefix = prefix[:-len(ext)]
    for ext in ('.json', '.npz'):
        if not os.path.isfile(prefix + ext):
            raise TaggerError('checkpoint file missing', prefix + ext)
    try:
        with open(prefix + '.json') as fh:
            meta = json.load(fh)
    except (ValueError, OSError) as exc:
        raise TaggerError('not a checkpoint metadata file (%s)' % exc,
                          prefix + '.json') from None
    if meta.get('format_version') != FORMAT_VERSION:
        raise TaggerError('checkpoint format version %r, this version reads %d'
                          % (meta.get('format_version'), FORMAT_VERSION),
                          prefix + '.json')
    try:
        with np.load(prefix + '.npz', allow_pickle=False) as data:
            arrays = OrderedDict((k, data[k]) for k in data.files)
    except (ValueError, OSError) as exc:
        raise TaggerError('unreadable checkpoint arrays (%s)' % exc,
                          prefix + '.npz') from None
    return arrays, meta


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
