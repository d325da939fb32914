"""Offline feature extraction: a CNN's hidden layer over a prepared store.

``extract_features`` runs a fine-tuned classifier checkpoint (or the
model-zoo ImageNet network) over every ready image of a store and writes
the chosen layer (default ``pool5/7x7_s1``, 1024-d; ``loss3/classifier`` is
what the Lasagne Recipes captioning example used) to HDF5, optionally for
the four rotations, batched, streamed, with progress, resumable.

File: datasets ``features`` float32 (N, R, F), ``labels`` int32, ``splits``
uint8 codes, ``rows`` (store row of each entry), ``done`` uint8; attributes
``format``, ``format_version``, ``layer``, ``source``, ``classes``,
``split_names``, ``rotations``, ``store``.
"""
import json
import os

import numpy as np

from .errors import TaggerError

__all__ = ['FORMAT', 'FORMAT_VERSION', 'extract_features', 'open_features',
           'FeatureTable']

FORMAT = 'lasagne_tagger.features'
FORMAT_VERSION = 1


def _load_cnn(source):
    """``(net, description)`` for a checkpoint prefix or ``'imagenet'``."""
    if source == 'imagenet':
        from .imagenet import load_imagenet_model
        net, _ = load_imagenet_model()
        return net, 'imagenet model zoo'
    from .finetune import load_classifier
    net, _ = load_classifier(source)
    return net, os.fspath(source)


def extract_features(source, store_path, out_path, layer='pool5/7x7_s1',
                     rotations=False, batch_size=32, progress=True):
    """Write ``layer``'s activations for every ready image of the store.

    Re-running with the same arguments resumes: rows already ``done`` are
    skipped.  An existing file made from another store, layer or source is
    an error (never overwritten).
    """
    import h5py
    from . import store as store_mod
    from .imagenet import compile_forward
    from .preprocess import to_network_input
    from .progress import Progress

    net, description = _load_cnn(source)
    if layer not in net:
        raise TaggerError('no layer %r in the network (try pool5/7x7_s1 or '
                          'loss3/classifier)' % layer)
    forward = compile_forward(net, (layer,))
    n_rot = 4 if rotations else 1
    with store_mod.open_store(store_path) as store:
        rows = store.indices()
        width = int(np.prod(net[layer].output_shape[1:]))
        attrs = {'format': FORMAT, 'format_version': FORMAT_VERSION,
                 'layer': layer, 'source': description,
                 'classes': json.dumps(list(store.classes)),
                 'split_names': json.dumps(list(store.splits)),
                 'rotations': n_rot, 'store': os.path.abspath(store_path)}
        os.makedirs(os.path.dirname(os.path.abspath(out_path)),
                    exist_ok=True)
        mode = 'r+' if os.path.exists(out_path) else 'w-'
        with h5py.File(out_path, mode) as h5:
            if mode == 'w-':
                for k, v in attrs.items():
                    h5.attrs[k] = v
                h5.create_dataset('features', (len(rows), n_rot, width),
                                  dtype='float32', chunks=(1, n_rot, width))
                h5.create_dataset('rows', data=rows)
                h5.create_dataset('labels', data=store.labels[rows]
                                  .astype('int32'))
                h5.create_dataset('splits', data=_split_codes(store, rows))
                h5.create_dataset('done', (len(rows),), dtype='uint8')
            else:
                for k in ('format', 'layer', 'source', 'store', 'rotations'):
                    if h5.attrs.get(k) != attrs[k]:
                        raise TaggerError(
                            'exists with %s=%r, not %r; choose another output'
                            % (k, h5.attrs.get(k), attrs[k]), out_path)
            done = h5['done'][:]
            todo = np.flatnonzero(done == 0)
            bar = Progress(len(todo), 'features', enabled=progress,
                           unit='img')
            for start in range(0, len(todo), batch_size):
                pos = todo[start:start + batch_size]
                crops, _ = store.read(rows[pos])
                out = np.empty((len(pos), n_rot, width), dtype='float32')
                for r in range(n_rot):
                    turned = np.rot90(crops, r, axes=(1, 2))
                    out[:, r] = forward(to_network_input(turned))[0].reshape(
                        len(pos), width)
                try:
                    # features first, flushed, then the done marks: a kill
                    # between the two only costs recomputing this batch.
                    h5['features'][list(pos)] = out
                    h5.flush()
                    h5['done'][list(pos)] = 1
                    h5.flush()
                except OSError as exc:
                    raise TaggerError('write failed (%s); rerun to resume'
                                      % exc, out_path) from None
                bar.update(len(pos))
            bar.close()
    return out_path


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

    def features(self, rows, rotation=0):
        rot = np.broadcast_to(np.asarray(rotation), np.shape(rows))
        return self._features[rows, rot]


def open_features(path):
    """Load a features file (only rows marked done) as a FeatureTable."""
    import h5py
    if not os.path.isfile(path):
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
            done = h5['done'][:] == 1
            return FeatureTable(h5['features'][:][done],
                                h5['labels'][:][done], h5['splits'][:][done],
                                json.loads(h5.attrs['split_names']),
                                json.loads(h5.attrs['classes']),
                                h5.attrs['layer'], source=path)
    except OSError as exc:
        raise TaggerError('unreadable features file (%s)' % exc,
                          path) from None
