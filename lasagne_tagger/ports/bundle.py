"""Reference bundles: one HDF5 file holding what a model computes, layer by
layer, so that a port (PyTorch, JAX, ...) can be checked against it.

This module needs only NumPy and h5py (no Theano, no Lasagne), so a port's
own environment can read, write and compare bundles with it::

    python -m lasagne_tagger.ports.bundle compare REFERENCE.h5 PORT.h5

Format ``lasagne_tagger.ports.reference-bundle``, version 1
-----------------------------------------------------
``N`` images of side ``S``; tagger with embedding ``E``, ``H`` LSTM units,
vocabulary ``V`` (three special tokens first), ``L = max_len`` tags at most,
``T = L + 2`` LSTM steps.  Float arrays are in the producer's compute dtype
(float32 or float64).

Root attributes
    ``format`` (the string above), ``format_version`` (int), ``complete``
    (1, written last: a bundle without it was not finished), ``order``
    (JSON list of every dataset path in forward order: compare reports the
    first divergence in this order).
``/meta`` attributes
    ``producer``, ``framework`` and ``framework_version``, ``created_utc``,
    ``project_version``, ``python_version``, ``numpy_version``,
    ``h5py_version``, ``dtype`` (compute dtype; ``floatX`` for Theano),
    ``theano_version``, ``lasagne_version``, ``theano_flags`` (Theano
    producers), ``weights_sha256``, ``inputs_sha256`` (see
    :func:`weights_digest`, :func:`inputs_digest`), ``preprocessing``
    (JSON: crop size, resize rule, channel order, BGR mean, layout), and
    whatever else the producer records (sources of the weights, seed...).
    Values that are dicts or lists are stored as JSON strings.
``/model`` attributes
    ``cnn`` (JSON: ``architecture`` ``"bvlc_googlenet"``, ``image_size``,
    ``num_classes``, ``width``, ``param_layers`` in order, ``layers``: every
    activation name in order) and ``tagger`` (JSON or ``"null"``:
    ``vocabulary`` (:meth:`Vocabulary.to_dict`), ``max_len``,
    ``feature_layer`` (the CNN layer the tagger reads), ``feature_size``,
    ``embed_size``, ``hidden_size``, ``gate_order``, ``peephole_order``,
    ``special_ids``).
``/inputs``
    ``crops`` uint8 (N, S, S, 3), RGB, the centre crops;
    ``batch`` float (N, 3, S, S), the network input: BGR, minus the BGR
    mean (104, 117, 123);  ``names`` str (N,).
``/weights/cnn/<layer>/W``, ``/b``
    For the 57 convolutions (``conv1/7x7_s2``, ..., ``inception_5b/
    pool_proj``): ``W`` (out, in, kh, kw) **cross-correlation** filters
    (Caffe's and the model zoo's orientation: ``out[o, y, x] = b[o] +
    sum W[o, i, u, v] in[i, y*s - p + u, x*s - p + v]``), ``b`` (out,).
    ``loss3/classifier``: ``W`` (in, out), ``b`` (out,), ``logits = x W + b``.
``/weights/tagger``
    ``image_embedding/W`` (F, E), ``image_embedding/b`` (E,);
    ``tag_embedding/W`` (V, E);
    ``lstm/W_in`` (E, 4H) and ``lstm/W_hid`` (H, 4H), ``lstm/b`` (4H,):
    gate blocks of H columns in the order **input, forget, cell, output**;
    ``lstm/w_peephole`` (3, H): rows input, forget, output;
    ``lstm/cell_init``, ``lstm/hid_init`` (H,);
    ``logits/W`` (H, V), ``logits/b`` (V,).
``/activations/cnn/<layer>``
    Every named GoogLeNet layer in forward order, as in Caffe:
    ``conv1/7x7_s2`` (after its ReLU), ``pool1/3x3_s2``, ``pool1/norm1``,
    ..., each inception module's ``1x1``, ``3x3_reduce``, ``3x3``,
    ``5x5_reduce``, ``5x5``, ``pool``, ``pool_proj`` and ``output``,
    ``pool5/7x7_s1`` (N, C), ``loss3/classifier`` (the logits) and ``prob``.
``/activations/tagger``
    ``features`` (N, F): the tagger's input (the CNN's ``feature_layer``);
    ``cell``, ``hidden`` (N, T, H) and ``probs`` (N, T, V), the LSTM state
    and the tag distribution after each step: step 0 feeds the image
    embedding, step 1 ``<start>``'s embedding, step ``k + 2`` decoded tag
    ``k`` (``<pad>`` once a row has ended); ``live`` uint8 (N, T): 1 where
    the step fed the image, ``<start>`` or a real tag.  Compare ignores the
    steps that are not live, so a port may stop early.
``/decoded``
    ``tokens`` int32 (N, L): greedy ids, ``<end>`` then ``<pad>``;
    ``token_probs`` float (N, L): each chosen id's probability (0 after the
    end); ``tags`` str (N,): JSON list of the tags of each image.

Greedy decoding: at each of ``L`` steps take the most probable id (ties:
the lowest), never ``<pad>``/``<start>`` nor an id already emitted for that
image; stop a row at ``<end>``.

LSTM step (peepholes inside the sigmoids; Lasagne issue #448 fixed)::

    g = x W_in + h W_hid + b                     # blocks i, f, c, o
    i = sigmoid(g_i + c * w_peephole[0])
    f = sigmoid(g_f + c * w_peephole[1])
    c' = f * c + i * tanh(g_c)
    o = sigmoid(g_o + c' * w_peephole[2])
    h' = o * tanh(c')

Comparison (:func:`compare_bundles`)
------------------------------------
A is the reference, B the candidate.  Integer and string arrays must be
equal.  A float array passes when every element satisfies::

    |b - a| <= atol + rtol * max(|a|, rms(A))

``rms(A)`` is the root mean square of the reference array's nonzero values
(a ReLU's zeros are not typical values).  The floor is there because float32
rounding error of a sum grows with the size of its terms, not of its
result: an activation that is small by cancellation (a convolution output
near zero, a ReLU input just above it) carries the absolute error of the
layer's typical values.  "max rel" in the report is
``max |b - a| / max(|a|, rms(A))``.
"""
import hashlib
import json
import math
import os
import sys
import time
from collections import OrderedDict

import numpy as np

from ..atomic import make_parent, write_bytes
from ..errors import TaggerError

__all__ = ['FORMAT', 'FORMAT_VERSION', 'GATE_ORDER', 'PEEPHOLE_ORDER',
           'DEFAULT_RTOL', 'DEFAULT_ATOL', 'PREPROCESSING', 'BGR_MEAN',
           'weights_digest', 'inputs_digest', 'live_steps', 'decode_tags',
           'write_bundle', 'BundleReader', 'open_bundle', 'compare_bundles',
           'format_report', 'main']

FORMAT = 'lasagne_tagger.ports.reference-bundle'
FORMAT_VERSION = 1
GATE_ORDER = ('input', 'forget', 'cell', 'output')
PEEPHOLE_ORDER = ('input', 'forget', 'output')
PAD_ID, START_ID, END_ID = 0, 1, 2
BGR_MEAN = (104.0, 117.0, 123.0)
PREPROCESSING = {
    'resize': 'short side to crop_size, Pillow BILINEAR; photos smaller '
              'than the crop rejected unless upscale',
    'crop': 'centre crop_size x crop_size',
    'crops_layout': 'NHWC uint8 RGB',
    'batch_layout': 'NCHW',
    'channel_order': 'BGR',
    'mean_bgr': list(BGR_MEAN),
    'scale': 1.0,
}
# Tolerances for float32 (justified in the module docstring and in
# docs/reference-bundles.md):
# float32 rounds at 6e-8 relative; a GoogLeNet layer sums up to 1728 terms
# (3x3 over 192 channels), whose rounding grows like sqrt(terms) when two
# implementations sum in different orders (1e-6 per layer), compounded over
# 22 layers and the softmax, whose relative error is the logits' absolute
# error.  Measured on the full network (random and trained weights): below
# 1e-5 (docs/reference-bundles.md).  1e-4 leaves a 10x margin and still
# catches any real bug (a wrong flip, pad, pool rule or gate order gives
# errors of order 1).
DEFAULT_RTOL = 1e-4
# Only matters for an all-zero reference array (rms 0), e.g. a dead layer.
DEFAULT_ATOL = 1e-6
# The parts of /model a candidate must agree on (the rest is informative).
MODEL_KEYS = {'cnn': ('architecture', 'image_size', 'num_classes',
                      'feature_layer'),
              'tagger': ('vocabulary', 'max_len', 'feature_layer',
                         'feature_size', 'embed_size', 'hidden_size',
                         'gate_order', 'peephole_order', 'special_ids')}
_FLOAT_DTYPES = (np.dtype('float32'), np.dtype('float64'))
_COMPRESS_ABOVE = 1 << 16          # bytes; smaller arrays stay contiguous


# --- digests and helpers ------------------------------------------------------

def _array_digest(h, name, array):
    array = np.ascontiguousarray(array)
    if array.dtype.kind in 'iuf':
        array = array.astype(array.dtype.newbyteorder('<'), copy=False)
    h.update(name.encode('utf-8') + b'\0')
    h.update(('%s%s' % (array.dtype.str, array.shape)).encode('ascii'))
    h.update(array.tobytes())


def weights_digest(weights):
    """SHA-256 (hex) of name-keyed weight arrays.

    For each name in sorted order: the UTF-8 name, a NUL byte, the
    little-endian dtype string and the shape (e.g. ``<f4(64, 3, 7, 7)``),
    then the C-order little-endian bytes.  Names are the paths under
    ``/weights`` (``cnn/conv1/7x7_s2/W``...).
    """
    h = hashlib.sha256()
    for name in sorted(weights):
        _array_digest(h, name, np.asarray(weights[name]))
    return h.hexdigest()


def inputs_digest(crops):
    """SHA-256 (hex) of the uint8 crops, as :func:`weights_digest` hashes
    one array named ``crops``."""
    h = hashlib.sha256()
    _array_digest(h, 'crops', np.asarray(crops, dtype=np.uint8))
    return h.hexdigest()


def live_steps(tokens, end_id=END_ID, pad_id=PAD_ID):
    """(N, L + 2) uint8: 1 where an LSTM step fed the image, ``<start>`` or
    a real tag (see the module docstring)."""
    tokens = np.asarray(tokens)
    real = (tokens != end_id) & (tokens != pad_id)
    # a tag after <end> cannot happen, but never count one as live
    ended = np.cumsum(~real, axis=1) > 0
    live = np.ones((len(tokens), tokens.shape[1] + 2), dtype=np.uint8)
    live[:, 2:] = real & ~ended
    return live


def decode_tags(tokens, vocabulary):
    """Tag lists from greedy ids, given a :meth:`Vocabulary.to_dict` dict
    (stops at ``<end>``, skips ``<pad>``/``<start>``)."""
    names = list(vocabulary['specials']) + list(vocabulary['tags'])
    out = []
    for row in np.asarray(tokens):
        tags = []
        for t in row:
            t = int(t)
            if t == END_ID:
                break
            if t in (PAD_ID, START_ID):
                continue
            if not 0 <= t < len(names):
                raise TaggerError('decoded id %d is outside the vocabulary '
                                  '(%d ids)' % (t, len(names)))
            tags.append(names[t])
        out.append(tags)
    return out


def _jsonable(value):
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    if value is None:
        return 'null'
    if isinstance(value, str):
        return str(value)         # plain str (torch.__version__ is a subclass)
    return value


# --- writing ------------------------------------------------------------------

def write_bundle(path, meta, model, arrays):
    """Write a bundle atomically (temporary file, then renamed).

    Parameters
    ----------
    path : str or path-like
    meta : dict
        ``/meta`` attributes (``producer``, ``framework`` ... ); the digests,
        ``project_version``, ``numpy_version``, ``h5py_version``,
        ``python_version`` and ``created_utc`` are added here.
    model : dict
        ``{'cnn': {...}, 'tagger': {...} or None}`` (``/model`` attributes).
    arrays : OrderedDict of str -> ndarray
        Dataset paths (``inputs/crops``, ``weights/cnn/conv1/7x7_s2/W``,
        ``activations/...``, ``decoded/...``) in forward order.  Arrays of
        Python/NumPy strings are stored as UTF-8 strings.

    Raises
    ------
    TaggerError
        If ``inputs/crops`` is missing or the file cannot be written.
    """
    import h5py
    from .. import __version__
    path = os.fspath(path)
    if 'inputs/crops' not in arrays:
        raise TaggerError('a bundle needs inputs/crops', path)
    weights = {k[len('weights/'):]: v for k, v in arrays.items()
               if k.startswith('weights/')}
    meta = dict(meta)
    meta.update({
        'weights_sha256': weights_digest(weights),
        'inputs_sha256': inputs_digest(arrays['inputs/crops']),
        'project_version': __version__,
        'numpy_version': np.__version__,
        'h5py_version': h5py.__version__,
        'python_version': '%d.%d.%d' % sys.version_info[:3],
        'created_utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
    })
    meta.setdefault('preprocessing', PREPROCESSING)
    make_parent(path)
    # note: the file is built in memory (HDF5's core driver) and written
    # in one go: on a full disk HDF5 itself never sees a failed write (it
    # then printed hundreds of errors and could crash the process); the
    # write is a plain atomic one, whole or not at all.
    try:
        with h5py.File('bundle.h5', 'w', driver='core',
                       backing_store=False) as h5:
            h5.attrs['format'] = FORMAT
            h5.attrs['format_version'] = FORMAT_VERSION
            h5.attrs['order'] = json.dumps(list(arrays))
            group = h5.create_group('meta')
            for key, value in meta.items():
                group.attrs[key] = _jsonable(value)
            group = h5.create_group('model')
            group.attrs['cnn'] = json.dumps(model.get('cnn'))
            group.attrs['tagger'] = json.dumps(model.get('tagger'))
            for key, value in arrays.items():
                _write_array(h5, key, value)
            h5.attrs['complete'] = 1
            h5.flush()
            image = h5.id.get_file_image()
    except (OSError, ValueError, TypeError) as exc:
        raise TaggerError('cannot build the bundle (%s)' % exc, path) \
            from None
    write_bytes(path, image)
    return path


def _write_array(h5, key, value):
    import h5py
    value = np.asarray(value)
    if value.dtype.kind in 'USO':
        h5.create_dataset(key, data=np.array([str(v) for v in value.ravel()],
                                             dtype=object).reshape(
                                                 value.shape),
                          dtype=h5py.string_dtype('utf-8'))
        return
    options = {}
    if value.nbytes > _COMPRESS_ABOVE:
        options = {'compression': 'gzip', 'compression_opts': 1,
                   'shuffle': True}
    h5.create_dataset(key, data=value, **options)


# --- reading ------------------------------------------------------------------

def _describe_h5_error(exc):
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else \
        type(exc).__name__
    if 'truncated' in text:
        return 'truncated HDF5 file (%s)' % text
    if 'signature' in text or 'file format' in text.lower():
        return 'not an HDF5 file (%s)' % text
    return 'unreadable HDF5 file (%s)' % text


class BundleReader(object):
    """An open bundle, checked on opening.  Use as a context manager.

    Parameters
    ----------
    path : str or path-like

    Raises
    ------
    TaggerError
        One line naming the file: missing, not HDF5, truncated, not a
        bundle, a newer or unknown format version, or unfinished.
    """

    def __init__(self, path):
        import h5py
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise TaggerError('no such bundle file', self.path)
        if os.path.isdir(self.path):
            raise TaggerError('is a directory, not a bundle', self.path)
        try:
            self._h5 = h5py.File(self.path, 'r')
        except OSError as exc:
            raise TaggerError(_describe_h5_error(exc), self.path) from None
        try:
            self._check()
            self.order = self._order()
        except BaseException:
            self._h5.close()
            raise

    def _check(self):
        attrs = self._h5.attrs
        fmt = attrs.get('format')
        if isinstance(fmt, bytes):
            fmt = fmt.decode('utf-8', 'replace')
        if fmt != FORMAT:
            raise TaggerError('not a reference bundle (format attribute %r, '
                              'expected %r)' % (fmt, FORMAT), self.path)
        version = attrs.get('format_version')
        if isinstance(version, (bool, np.bool_)) or not isinstance(
                version, (int, np.integer)):
            raise TaggerError('bundle format version %r is not an integer'
                              % (version,), self.path)
        if version > FORMAT_VERSION:
            raise TaggerError('bundle format version %d is newer than this '
                              'reader (reads version %d); upgrade '
                              'lasagne_tagger' % (version, FORMAT_VERSION),
                              self.path)
        if version < 1:
            raise TaggerError('unknown bundle format version %d' % version,
                              self.path)
        if attrs.get('complete') != 1:
            raise TaggerError('incomplete bundle: its writer did not finish',
                              self.path)

    def _order(self):
        raw = self._h5.attrs.get('order')
        try:
            order = json.loads(raw) if raw is not None else None
        except (TypeError, ValueError):
            order = None
        present = set(self.keys())
        if not isinstance(order, list):
            return sorted(present)
        return [k for k in order if isinstance(k, str)] + sorted(
            present - set(order))

    def close(self):
        """Close the file."""
        self._h5.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def keys(self):
        """Every dataset path in the file (unordered)."""
        import h5py
        out = []

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out.append(name)
        try:
            self._h5.visititems(visit)
        except (OSError, RuntimeError, KeyError) as exc:
            raise TaggerError(_describe_h5_error(exc), self.path) from None
        return out

    def __contains__(self, key):
        import h5py
        try:
            return isinstance(self._h5.get(key), h5py.Dataset)
        except (OSError, RuntimeError, KeyError, ValueError):
            return False

    def info(self, key):
        """``(shape, dtype)`` of a dataset without reading it (dtype is
        ``object`` for strings)."""
        ds = self._dataset(key)
        dtype = np.dtype(object) if ds.dtype.kind in 'OSU' else ds.dtype
        return ds.shape, dtype

    def _dataset(self, key):
        if key not in self:
            raise TaggerError('bundle has no dataset %r' % key, self.path)
        return self._h5[key]

    def array(self, key):
        """Read a dataset (strings as a NumPy object array of ``str``)."""
        ds = self._dataset(key)
        try:
            if ds.dtype.kind in 'OSU':
                data = ds.asstr()[()]
                return np.asarray(data, dtype=object)
            return ds[()]
        except (OSError, RuntimeError, ValueError) as exc:
            raise TaggerError('cannot read dataset %r (%s)'
                              % (key, _describe_h5_error(exc)),
                              self.path) from None

    @property
    def meta(self):
        """``/meta`` attributes as a dict (JSON strings left as text)."""
        group = self._h5.get('meta')
        if group is None:
            return {}
        return {k: _attr_value(v) for k, v in group.attrs.items()}

    @property
    def format_version(self):
        return int(self._h5.attrs['format_version'])

    def model(self, part):
        """``'cnn'`` or ``'tagger'`` description (dict, or None)."""
        group = self._h5.get('model')
        raw = None if group is None else group.attrs.get(part)
        if raw is None:
            return None
        try:
            return json.loads(_attr_value(raw))
        except (TypeError, ValueError):
            raise TaggerError('model attribute %r is not JSON' % part,
                              self.path) from None

    def weights(self, part):
        """OrderedDict ``name -> array`` of ``weights/<part>/...``, names
        relative to ``weights/<part>/``, in the bundle's order."""
        prefix = 'weights/%s/' % part
        return OrderedDict((k[len(prefix):], self.array(k))
                           for k in self.order if k.startswith(prefix))


def _attr_value(value):
    if isinstance(value, bytes):
        return value.decode('utf-8', 'replace')
    if isinstance(value, np.generic):
        return value.item()
    return value


def open_bundle(path):
    """Open and check a bundle: a :class:`BundleReader`."""
    return BundleReader(path)


# --- comparison ---------------------------------------------------------------

def _row(key, status, shape='', max_abs=None, max_rel=None, detail=''):
    return {'key': key, 'status': status, 'shape': shape,
            'max_abs': max_abs, 'max_rel': max_rel, 'detail': detail}


def _float_errors(a, b, atol, rtol, mask=None):
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    if mask is not None:
        a64, b64 = a64[mask], b64[mask]
    if a64.size == 0:
        return 0.0, 0.0, True
    diff = np.abs(b64 - a64)
    nonzero = a64[a64 != 0]
    rms = math.sqrt(float(np.mean(np.square(nonzero)))) if nonzero.size \
        else 0.0
    scale = np.maximum(np.abs(a64), rms)
    with np.errstate(divide='ignore', invalid='ignore'):
        rel = np.where(scale > 0, diff / np.where(scale > 0, scale, 1),
                       np.where(diff > 0, np.inf, 0.0))
    ok = bool(np.all(diff <= atol + rtol * scale))
    return float(diff.max()), float(rel.max()), ok


def _tagger_mask(key, live, shape):
    """Boolean mask of the live steps for per-step tagger arrays."""
    if live is None or not key.startswith('activations/tagger/') or \
            key.endswith(('/live', '/features')):
        return None
    if len(shape) < 2 or tuple(shape[:2]) != live.shape:
        return None
    mask = live.astype(bool)
    return np.broadcast_to(mask.reshape(mask.shape + (1,) * (len(shape) - 2)),
                           shape)


def _compare_one(ra, rb, key, atol, rtol, live):
    shape_a, dtype_a = ra.info(key)
    shape_s = str(tuple(int(s) for s in shape_a))
    if key not in rb:
        return _row(key, 'missing', shape_s,
                    detail='missing in B: the candidate has no %s' % key)
    shape_b, dtype_b = rb.info(key)
    if tuple(shape_a) != tuple(shape_b):
        return _row(key, 'shape', shape_s,
                    detail='shape mismatch at %s: A %s, B %s'
                           % (key, tuple(shape_a), tuple(shape_b)))
    kind_a = 'float' if dtype_a in _FLOAT_DTYPES else dtype_a.kind
    kind_b = 'float' if dtype_b in _FLOAT_DTYPES else dtype_b.kind
    if dtype_a.kind == 'f' and dtype_a not in _FLOAT_DTYPES:
        kind_a = 'unsupported float'
    if kind_a != kind_b or (kind_a in 'iu' and dtype_a != dtype_b):
        return _row(key, 'dtype', shape_s,
                    detail='dtype mismatch at %s: A %s, B %s'
                           % (key, dtype_a, dtype_b))
    a, b = ra.array(key), rb.array(key)
    if kind_a == 'float':
        for name, arr in (('A', a), ('B', b)):
            bad = ~np.isfinite(arr)
            mask = _tagger_mask(key, live, arr.shape)
            if mask is not None:
                bad &= mask
            if bad.any():
                what = 'NaN' if np.isnan(arr[bad]).any() else 'inf'
                first = tuple(int(i) for i in np.argwhere(bad)[0])
                return _row(key, 'NaN', shape_s,
                            detail='%s in %s %s (%d values, first at %s)'
                                   % (what, name, key, int(bad.sum()),
                                      first))
        max_abs, max_rel, ok = _float_errors(
            a, b, atol, rtol, _tagger_mask(key, live, a.shape))
        return _row(key, 'ok' if ok else 'DIVERGES', shape_s, max_abs,
                    max_rel, '' if ok else
                    '%s diverges: max abs %.3g, max rel %.3g (rtol %g, '
                    'atol %g)' % (key, max_abs, max_rel, rtol, atol))
    if kind_a in 'iu':
        diff = a.astype(np.int64) != b.astype(np.int64)
        max_abs = float(np.abs(a.astype(np.int64)
                               - b.astype(np.int64)).max()) if a.size else 0.
        if diff.any():
            first = tuple(int(i) for i in np.argwhere(diff)[0])
            return _row(key, 'differs', shape_s, max_abs, None,
                        '%s differs in %d of %d values (first at %s: A %s, '
                        'B %s)' % (key, int(diff.sum()), diff.size, first,
                                   a[first], b[first]))
        return _row(key, 'ok', shape_s, 0.0, 0.0)
    # strings
    diff = [i for i, (x, y) in enumerate(zip(a.ravel(), b.ravel()))
            if x != y]
    if diff:
        i = diff[0]
        return _row(key, 'differs', shape_s, detail='%s differs in %d of %d '
                    'entries (first, entry %d: A %s, B %s)'
                    % (key, len(diff), a.size, i, a.ravel()[i],
                       b.ravel()[i]))
    return _row(key, 'ok', shape_s)


def compare_bundles(path_a, path_b, atol=DEFAULT_ATOL, rtol=DEFAULT_RTOL):
    """Compare candidate bundle B with reference bundle A, dataset by dataset.

    Returns
    -------
    dict
        ``rows`` (one per dataset of A, in A's order: ``key``, ``status``
        one of ok / DIVERGES / differs / missing / shape / dtype / NaN,
        ``shape``, ``max_abs``, ``max_rel``, ``detail``), ``problems``
        (one line each: model mismatches, failed rows), ``notes`` (extra
        datasets in B, different weights digests...), ``first`` (the first
        failing row's key or None), ``tags_equal`` and ``passed``.

    Raises
    ------
    TaggerError
        If either file is not a readable bundle of a supported version.
    """
    if not (rtol >= 0 and atol >= 0):
        raise TaggerError('tolerances must be >= 0 (rtol %r, atol %r)'
                          % (rtol, atol))
    with open_bundle(path_a) as ra, open_bundle(path_b) as rb:
        problems, notes = [], []
        for part in ('cnn', 'tagger'):
            ma, mb = ra.model(part), rb.model(part)
            if ma is not None and mb is not None:
                ma = {k: ma.get(k) for k in MODEL_KEYS[part]}
                mb = {k: mb.get(k) for k in MODEL_KEYS[part]}
            if ma != mb:
                if ma is None or mb is None:
                    problems.append('model %s: %s in %s' % (
                        part, 'absent' if mb is None else 'present',
                        'B' if mb is None else 'B but not in A'))
                else:
                    keys = sorted(k for k in set(ma) | set(mb)
                                  if ma.get(k) != mb.get(k))
                    problems.append('model %s description differs in: %s'
                                    % (part, ', '.join(keys)))
        live = None
        if 'activations/tagger/live' in ra:
            live = ra.array('activations/tagger/live')
        rows = []
        for key in ra.order:
            rows.append(_compare_one(ra, rb, key, atol, rtol, live))
        extra = sorted(set(rb.keys()) - set(ra.keys()))
        if extra:
            notes.append('B has %d datasets A lacks (ignored): %s'
                         % (len(extra), ', '.join(extra[:5])
                            + (' ...' if len(extra) > 5 else '')))
        meta_a, meta_b = ra.meta, rb.meta
        if meta_a.get('weights_sha256') != meta_b.get('weights_sha256'):
            notes.append('weights digests differ (B stores other values or '
                         'another dtype; the weights rows say by how much)')
        if meta_a.get('preprocessing') != meta_b.get('preprocessing'):
            notes.append('preprocessing settings differ: A %s, B %s'
                         % (meta_a.get('preprocessing'),
                            meta_b.get('preprocessing')))
        notes.append('A: %s (%s); B: %s (%s)' % (
            meta_a.get('producer', '?'), meta_a.get('dtype', '?'),
            meta_b.get('producer', '?'), meta_b.get('dtype', '?')))
    failed = [r for r in rows if r['status'] != 'ok']
    problems.extend(r['detail'] for r in failed)
    tag_rows = [r for r in rows if r['key'] in ('decoded/tags',
                                                'decoded/tokens')]
    tags_equal = bool(tag_rows) and all(r['status'] == 'ok'
                                        for r in tag_rows)
    return {'rows': rows, 'problems': problems, 'notes': notes,
            'first': failed[0]['key'] if failed else None,
            'tags_equal': tags_equal, 'passed': not problems,
            'atol': atol, 'rtol': rtol}


def _fmt(x):
    if x is None:
        return '-'
    if x == 0:
        return '0'
    return '%.2e' % x


def format_report(report, path_a='A', path_b='B'):
    """The comparison as text lines: a table, problems, then the verdict."""
    width = max([len(r['key']) for r in report['rows']] + [5])
    swidth = max([len(r['shape']) for r in report['rows']] + [5])
    lines = ['A = %s' % path_a, 'B = %s' % path_b,
             '%-*s  %-*s  %9s  %9s  %s' % (width, 'array', swidth, 'shape',
                                           'max abs', 'max rel', 'status')]
    for r in report['rows']:
        lines.append('%-*s  %-*s  %9s  %9s  %s' % (
            width, r['key'], swidth, r['shape'], _fmt(r['max_abs']),
            _fmt(r['max_rel']), r['status']))
    for note in report['notes']:
        lines.append('note: %s' % note)
    for problem in report['problems']:
        lines.append('FAIL: %s' % problem)
    if report['first']:
        lines.append('first divergence: %s' % report['first'])
    has_tags = any(r['key'] == 'decoded/tags' for r in report['rows'])
    if has_tags:
        lines.append('decoded tags: %s' % ('identical' if report['tags_equal']
                                           else 'DIFFER'))
    if report['passed']:
        lines.append('PASS: %d arrays agree (rtol %g, atol %g)'
                     % (len(report['rows']), report['rtol'], report['atol']))
    else:
        lines.append('FAILED: %d problem(s)' % len(report['problems']))
    return lines


def run_compare(path_a, path_b, atol=DEFAULT_ATOL, rtol=DEFAULT_RTOL,
                as_json=False, out=None):
    """Compare, print the report (text or JSON) and return the exit status:
    0 if B matches A, 1 if not."""
    out = sys.stdout if out is None else out
    report = compare_bundles(path_a, path_b, atol=atol, rtol=rtol)
    if as_json:
        json.dump(dict(report, a=os.fspath(path_a), b=os.fspath(path_b)),
                  out, indent=2)
        out.write('\n')
    else:
        for line in format_report(report, path_a, path_b):
            out.write(line + '\n')
    return 0 if report['passed'] else 1


def add_compare_arguments(parser):
    """The ``compare`` arguments (shared by the CLI and ``python -m``)."""
    parser.add_argument('a', metavar='A.h5', help='reference bundle')
    parser.add_argument('b', metavar='B.h5', help='candidate bundle')
    parser.add_argument('--rtol', type=float, default=DEFAULT_RTOL,
                        help='relative tolerance (see the bundle format)')
    parser.add_argument('--atol', type=float, default=DEFAULT_ATOL,
                        help='absolute tolerance')
    parser.add_argument('--json', action='store_true', help='JSON report')


def main(argv=None):
    """``python -m lasagne_tagger.ports.bundle compare A.h5 B.h5``: the same as
    ``lasagne-tagger reference compare``, without Theano installed."""
    import argparse
    parser = argparse.ArgumentParser(
        prog='python -m lasagne_tagger.ports.bundle',
        description='Compare reference bundles (NumPy and h5py only).')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True
    p = sub.add_parser('compare', help='layer-by-layer comparison',
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_compare_arguments(p)
    args = parser.parse_args(argv)
    try:
        return run_compare(args.a, args.b, atol=args.atol, rtol=args.rtol,
                           as_json=args.json)
    except TaggerError as exc:
        print('error: %s' % exc, file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
