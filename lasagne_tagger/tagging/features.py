"""Offline feature extraction: a CNN's hidden layer over a prepared store.

``extract_features`` runs a fine-tuned classifier checkpoint (or the
model-zoo ImageNet network) over every ready image of a store and writes
the chosen layer (default ``pool5/7x7_s1``, 1024-d; ``loss3/classifier`` is
what the Lasagne Recipes captioning example used) to HDF5, optionally for
the four rotations, batched, streamed, with progress, resumable.

File: datasets ``features`` float32 (N, R, F, Fletcher-32 checksummed
chunks), ``labels`` int32, ``splits`` uint8 codes, ``rows`` (store row of
each entry), ``done`` uint8, ``crc32`` uint32 (of each row's features,
checked on every open); attributes
``format``, ``format_version``, ``layer``, ``source``, ``classes``,
``split_names``, ``rotations``, ``store``.
"""
import json
import os
import shutil
import zlib

import numpy as np

from ..atomic import atomic_path, describe_os_error, install
from ..errors import TaggerError

__all__ = ['FORMAT', 'FORMAT_VERSION', 'extract_features', 'open_features',
           'partial_path', 'rotated_features', 'row_crc', 'write_features',
           'FeatureTable']

FORMAT = 'lasagne_tagger.tagging.features'
FORMAT_VERSION = 1


def _load_cnn(source):
    """``(net, description)`` for a checkpoint prefix or ``'imagenet'``."""
    if source == 'imagenet':
        from ..model.imagenet import load_imagenet_model
        net, _ = load_imagenet_model()
        return net, 'imagenet model zoo'
    from ..training.finetune import load_classifier
    net, _ = load_classifier(source)
    return net, os.fspath(source)


def partial_path(out_path):
    """Where an unfinished extraction into ``out_path`` lives."""
    return os.fspath(out_path) + '.partial'


def extract_features(source, store_path, out_path, layer='pool5/7x7_s1',
                     rotations=False, batch_size=32, progress=True,
                     resume=True, overwrite=False):
    """Write ``layer``'s activations for every ready image of the store.

    The work goes to ``out_path + '.partial'`` (an HDF5 file with a done
    mark and a CRC-32 per row, HDF5's Fletcher-32 checksum on every
    chunk); when every row is done it is closed, re-opened and checked row
    by row, and only then renamed to ``out_path``.  So ``out_path`` is
    always a whole, verified file, and a disk that fills up (HDF5 may then
    drop writes without an error) ends in one error line, never in a file
    of zeros marked done.

    Parameters
    ----------
    resume : bool
        Continue an unfinished ``.partial`` made with the same arguments
        (else it is an error to find one).  A finished ``out_path`` made
        with the same arguments is returned as it is.
    overwrite : bool
        Start afresh: remove an earlier ``out_path`` and ``.partial``.

    Raises
    ------
    TaggerError
        Another file is at ``out_path`` (other store, layer, source or
        rotations), an unfinished one is found without ``resume``, the disk
        has no room for the file, or it does not read back.
    """
    from ..data import store as store_mod
    from ..model.imagenet import compile_forward

    out_path = os.fspath(out_path)
    partial = partial_path(out_path)
    if overwrite:
        for path in (out_path, partial):
            if os.path.exists(path):
                os.remove(path)
    net, description = _load_cnn(source)
    if layer not in net:
        raise TaggerError('no layer %r in the network (try pool5/7x7_s1 or '
                          'loss3/classifier)' % layer)
    n_rot = 4 if rotations else 1
    with store_mod.open_store(store_path) as store:
        rows = store.indices()
        width = int(np.prod(net[layer].output_shape[1:]))
        attrs = _attrs(layer, description, store.classes, store.splits,
                       n_rot, os.path.abspath(store_path))
        if os.path.exists(out_path):
            _check_same(out_path, attrs)
            return out_path
        if os.path.exists(partial) and not resume:
            raise TaggerError('an unfinished extraction is here; pass '
                              '--resume to continue it or --overwrite to '
                              'start afresh', partial)
        folder = os.path.dirname(os.path.abspath(out_path))
        os.makedirs(folder, exist_ok=True)
        need = len(rows) * (n_rot * width * 4 + 64)
        if not os.path.exists(partial):
            _check_room(folder, need, out_path)
        forward = compile_forward(net, (layer,))
        try:
            _extract_into(partial, attrs, store, rows, width, n_rot, forward,
                          batch_size, progress)
            _verify_file(partial)
        except OSError as exc:
            raise TaggerError('cannot write the features (%s); rerun with '
                              '--resume to continue' % describe_os_error(exc),
                              partial) from None
        except TaggerError as exc:
            if 'do not read back' in str(exc) and os.path.exists(partial):
                os.remove(partial)   # nothing in it can be trusted
            raise
        install(partial, out_path)
    return out_path


def _check_room(folder, need, out_path):
    free = shutil.disk_usage(folder).free
    if free < need:
        raise TaggerError('disk full: the features need %.1f MB, %.1f MB '
                          'are free' % (need / 1e6, free / 1e6), out_path)


def _check_same(path, attrs):
    import h5py
    try:
        with h5py.File(path, 'r') as h5:
            found = {k: h5.attrs.get(k) for k in
                     ('format', 'layer', 'source', 'store', 'rotations')}
    except OSError as exc:
        raise TaggerError('unreadable features file (%s)' % exc,
                          path) from None
    for k, v in found.items():
        if v != attrs[k]:
            raise TaggerError('exists with %s=%r, not %r; choose another '
                              'output or pass --overwrite' % (k, v, attrs[k]),
                              path)


def _extract_into(path, attrs, store, rows, width, n_rot, forward,
                  batch_size, progress):
    import h5py
    from ..runtime.progress import progress_bar
    mode = 'r+' if os.path.exists(path) else 'w-'
    with h5py.File(path, mode) as h5:
        if mode == 'w-':
            _create(h5, attrs, rows, store.labels[rows],
                    _split_codes(store, rows), (len(rows), n_rot, width))
        else:
            for k in ('format', 'layer', 'source', 'store', 'rotations'):
                if h5.attrs.get(k) != attrs[k]:
                    raise TaggerError(
                        'an unfinished extraction with %s=%r, not %r, is '
                        'here; pass --overwrite to start afresh'
                        % (k, h5.attrs.get(k), attrs[k]), path)
        done = h5['done'][:]
        todo = np.flatnonzero(done == 0)
        with progress_bar(len(todo), 'features', enabled=progress,
                          unit='img') as bar:
            _extract_batches(h5, store, rows, todo, n_rot, width, forward,
                             batch_size, bar)


def _extract_batches(h5, store, rows, todo, n_rot, width, forward,
                     batch_size, bar):
    for start in range(0, len(todo), batch_size):
        pos = todo[start:start + batch_size]
        crops, _ = store.read(rows[pos])
        out = rotated_features(forward, crops, n_rot, width)
        # features and their CRCs first, flushed, then the done marks:
        # a kill between the two only costs recomputing this batch.
        h5['features'][list(pos)] = out
        h5['crc32'][list(pos)] = [row_crc(o) for o in out]
        h5.flush()
        h5['done'][list(pos)] = 1
        h5.flush()
        bar.update(len(pos))


def rotated_features(forward, crops, n_rot, width):
    """``(N, n_rot, width)`` float32 activations of uint8 crops turned by
    0, 90, ... degrees (``forward``: from :func:`imagenet.compile_forward`
    with one layer)."""
    from ..data.preprocess import to_network_input
    out = np.empty((len(crops), n_rot, width), dtype='float32')
    for r in range(n_rot):
        turned = np.rot90(crops, r, axes=(1, 2))
        out[:, r] = forward(to_network_input(turned))[0].reshape(
            len(crops), width)
    return out


def row_crc(values):
    """CRC-32 of one row's float32 features (all rotations)."""
    return zlib.crc32(np.ascontiguousarray(values, np.float32).tobytes())


def _verify_file(path):
    """Re-open a finished file and check every row against its CRC."""
    import h5py
    try:
        with h5py.File(path, 'r') as h5:
            if not np.all(h5['done'][:] == 1):
                raise TaggerError('rows are missing', path)
            _check_rows(h5, path)
    except OSError as exc:
        raise TaggerError('the written features do not read back (%s); the '
                          'disk may be full' % exc, path) from None


def _check_rows(h5, path, block=4096):
    features, crcs = h5['features'], h5['crc32'][:]
    for start in range(0, len(crcs), block):
        values = features[start:start + block]
        for i, row in enumerate(values):
            if row_crc(row) != crcs[start + i]:
                raise TaggerError('the written features do not read back '
                                  '(row %d differs from its CRC-32: the disk '
                                  'may be full, or the file is damaged)'
                                  % (start + i), path)


def write_features(path, features, labels, splits, split_names, classes,
                   layer, source, store='none'):
    """Write a complete features file from arrays in memory (atomically,
    with the CRC-32 of every row, re-read before it is renamed).

    ``features`` is ``(N, R, F)`` float32; the other arguments are those of
    the file's datasets and attributes (see the module docstring).
    """
    import h5py
    values = np.asarray(features, np.float32)
    if values.ndim != 3:
        raise TaggerError('features must be (N, rotations, width), got %s'
                          % (values.shape,), path)
    attrs = _attrs(layer, source, classes, split_names, values.shape[1],
                   store)
    with atomic_path(path, verify=_verify_file) as tmp:
        with h5py.File(tmp, 'w') as h5:
            _create(h5, attrs, np.arange(len(values)), labels, splits,
                    values.shape, values)
    return path


def _attrs(layer, source, classes, split_names, rotations, store):
    """The file's attributes (see the module docstring)."""
    return {'format': FORMAT, 'format_version': FORMAT_VERSION,
            'layer': layer, 'source': source,
            'classes': json.dumps(list(classes)),
            'split_names': json.dumps(list(split_names)),
            'rotations': int(rotations), 'store': store}


def _create(h5, attrs, rows, labels, splits, shape, values=None):
    """The one layout of a features file, in an open HDF5 file ``h5``.

    ``values`` given: every row written, with its CRC-32, marked done;
    None: the ``(N, R, F)`` ``shape`` allocated, rows to be filled and
    marked done later (:func:`_extract_into`).
    """
    for k, v in attrs.items():
        h5.attrs[k] = v
    n = shape[0]
    h5.create_dataset('features', shape, dtype='float32', data=values,
                      chunks=(1,) + tuple(shape[1:]), fletcher32=True)
    h5.create_dataset('rows', data=np.asarray(rows))
    h5.create_dataset('labels', data=np.asarray(labels).astype('int32'))
    h5.create_dataset('splits', data=np.asarray(splits).astype('uint8'))
    if values is None:
        h5.create_dataset('done', (n,), dtype='uint8')
        h5.create_dataset('crc32', (n,), dtype='uint32')
    else:
        h5.create_dataset('done', data=np.ones(n, 'uint8'))
        h5.create_dataset('crc32', data=np.asarray(
            [row_crc(v) for v in values], 'uint32'))


def _split_codes(store, rows):
    names = list(store.splits)
    codes = np.empty(len(rows), dtype='uint8')
    for name in names:
        codes[np.isin(rows, store.indices(name))] = names.index(name)
    return codes


class FeatureTable(object):
    """Features in memory (small: N x R x F float32) with their labels."""

    def __init__(self, features, labels, splits, split_names, classes, layer,
                 source='memory'):
        self._features = np.asarray(features, dtype='float32')
        if self._features.ndim != 3:
            raise TaggerError('features must be (N, rotations, width), got %s'
                              % (self._features.shape,), source)
        self.labels = np.asarray(labels, dtype='int64')
        self.splits = np.asarray(splits)
        self.split_names = list(split_names)
        self.classes = list(classes)
        self.layer = layer
        self.rotations = self._features.shape[1]
        self.width = self._features.shape[2]

    def rows(self, split):
        if split not in self.split_names:
            raise TaggerError('no split %r in features (have %s)'
                              % (split, ', '.join(self.split_names)))
        return np.flatnonzero(self.splits == self.split_names.index(split))

    def all_rotations(self, rows=None):
        """``(len(rows), rotations, width)`` features (every row: None)."""
        return self._features if rows is None else self._features[rows]

    def features(self, rows, rotation=0):
        rot = np.broadcast_to(np.asarray(rotation), np.shape(rows))
        return self._features[rows, rot]


def open_features(path):
    """Load a features file (only rows marked done) as a FeatureTable,
    every row checked against its CRC-32 (files that carry them)."""
    import h5py
    if not os.path.isfile(path):
        if os.path.isfile(partial_path(path)):
            raise TaggerError('the extraction did not finish (run `lasagne-'
                              'tagger extract ... --resume`)', path)
        raise TaggerError('features file missing (run `lasagne-tagger '
                          'extract`)', path)
    try:
        with h5py.File(path, 'r') as h5:
            if h5.attrs.get('format') != FORMAT:
                raise TaggerError('not a features file (format %r)'
                                  % h5.attrs.get('format'), path)
            if h5.attrs.get('format_version') != FORMAT_VERSION:
                raise TaggerError('features format version %r, expected %d'
                                  % (h5.attrs.get('format_version'),
                                     FORMAT_VERSION), path)
            if 'crc32' in h5:
                _check_rows(h5, path)
            done = h5['done'][:] == 1
            return FeatureTable(h5['features'][:][done],
                                h5['labels'][:][done], h5['splits'][:][done],
                                json.loads(h5.attrs['split_names']),
                                json.loads(h5.attrs['classes']),
                                h5.attrs['layer'], source=path)
    except OSError as exc:
        raise TaggerError('unreadable features file (%s)' % exc,
                          path) from None
