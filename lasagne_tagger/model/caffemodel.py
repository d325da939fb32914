"""Read BVLC Caffe ``.caffemodel`` files and convert GoogLeNet's to the
model-zoo layout, without Caffe.

A ``.caffemodel`` is one binary protobuf ``NetParameter``.  The schema
here declares only the messages and fields the weights need, with the
field numbers of Caffe's ``src/caffe/proto/caffe.proto``; protobuf keeps
everything else as unknown fields and ignores it:

========================  ==============================================
message                   fields read (number)
========================  ==============================================
``NetParameter``          ``name`` (1), ``layers`` (2, V1, deprecated),
                          ``layer`` (100)
``LayerParameter``        ``name`` (1), ``type`` (2, a string such as
                          ``"Convolution"``), ``blobs`` (7)
``V1LayerParameter``      ``name`` (4), ``type`` (5, enum ``LayerType``),
                          ``blobs`` (6)
``BlobProto``             ``num``/``channels``/``height``/``width``
                          (1-4, legacy 4D shape), ``data`` (5, packed
                          float), ``shape`` (7), ``double_data`` (8)
``BlobShape``             ``dim`` (1, packed int64)
========================  ==============================================

Models saved before Caffe's 2015 layer rewrite (the BVLC GoogLeNet among
them) use ``layers`` (V1) with 4D blob shapes: a convolution's bias is
``(1, 1, 1, N)``, an inner product's weights ``(1, 1, out, in)``.  Later
ones use ``layer`` and ``shape``.  Both are read.

:func:`model_zoo_values` turns the BVLC GoogLeNet's layers into the model
zoo's ``'param values'``: the 57 convolutions' ``(W, b)`` as Caffe holds
them (cross-correlation ``(out, in, kh, kw)`` filters, which is also the
model zoo's orientation), then ``loss3/classifier`` with ``W`` transposed
to Lasagne's ``(in, out)``.  The training net's auxiliary classifiers
(``loss1/*``, ``loss2/*``) are skipped by name.
"""
import functools
import os
from collections import OrderedDict

import numpy as np

from ..errors import TaggerError

__all__ = ['BVLC_URL', 'BVLC_SHA1', 'BVLC_SIZE', 'message_classes',
           'read_caffemodel', 'model_zoo_values', 'sha1sum',
           'looks_like_caffemodel', 'V1_TYPES']

# BVLC/caffe models/bvlc_googlenet/readme.md: the published weights.
BVLC_URL = 'http://dl.caffe.berkeleyvision.org/bvlc_googlenet.caffemodel'
BVLC_SHA1 = '405fc5acd08a3bb12de8ee5e23a96bec22f08204'
BVLC_SIZE = None         # not recorded upstream; the SHA-1 decides
SKIPPED_PREFIXES = ('loss1/', 'loss2/')

# V1LayerParameter.LayerType (caffe.proto), as the layer type strings of
# LayerParameter name them.
V1_TYPES = OrderedDict([
    ('NONE', (0, '')), ('ABSVAL', (35, 'AbsVal')),
    ('ACCURACY', (1, 'Accuracy')), ('ARGMAX', (30, 'ArgMax')),
    ('BNLL', (2, 'BNLL')), ('CONCAT', (3, 'Concat')),
    ('CONTRASTIVE_LOSS', (37, 'ContrastiveLoss')),
    ('CONVOLUTION', (4, 'Convolution')), ('DATA', (5, 'Data')),
    ('DECONVOLUTION', (39, 'Deconvolution')), ('DROPOUT', (6, 'Dropout')),
    ('DUMMY_DATA', (32, 'DummyData')),
    ('EUCLIDEAN_LOSS', (7, 'EuclideanLoss')), ('ELTWISE', (25, 'Eltwise')),
    ('EXP', (38, 'Exp')), ('FLATTEN', (8, 'Flatten')),
    ('HDF5_DATA', (9, 'HDF5Data')), ('HDF5_OUTPUT', (10, 'HDF5Output')),
    ('HINGE_LOSS', (28, 'HingeLoss')), ('IM2COL', (11, 'Im2col')),
    ('IMAGE_DATA', (12, 'ImageData')),
    ('INFOGAIN_LOSS', (13, 'InfogainLoss')),
    ('INNER_PRODUCT', (14, 'InnerProduct')), ('LRN', (15, 'LRN')),
    ('MEMORY_DATA', (29, 'MemoryData')),
    ('MULTINOMIAL_LOGISTIC_LOSS', (16, 'MultinomialLogisticLoss')),
    ('MVN', (34, 'MVN')), ('POOLING', (17, 'Pooling')),
    ('POWER', (26, 'Power')), ('RELU', (18, 'ReLU')),
    ('SIGMOID', (19, 'Sigmoid')),
    ('SIGMOID_CROSS_ENTROPY_LOSS', (27, 'SigmoidCrossEntropyLoss')),
    ('SILENCE', (36, 'Silence')), ('SOFTMAX', (20, 'Softmax')),
    ('SOFTMAX_LOSS', (21, 'SoftmaxWithLoss')), ('SPLIT', (22, 'Split')),
    ('SLICE', (33, 'Slice')), ('TANH', (23, 'TanH')),
    ('WINDOW_DATA', (24, 'WindowData')), ('THRESHOLD', (31, 'Threshold')),
])


def _field(message, name, number, kind, label='optional', type_name=None,
           packed=False):
    from google.protobuf import descriptor_pb2 as d
    f = message.field.add(name=name, number=number, type=getattr(
        d.FieldDescriptorProto, 'TYPE_' + kind.upper()), label=getattr(
        d.FieldDescriptorProto, 'LABEL_' + label.upper()))
    if type_name:
        f.type_name = type_name
    if packed:
        f.options.packed = True


@functools.lru_cache(maxsize=None)
def message_classes():
    """The schema's message classes: ``{'NetParameter': cls, ...}``.

    Built from a ``FileDescriptorProto`` (no ``protoc`` needed), in a
    descriptor pool of its own (package ``lasagne_tagger.caffe``), so it
    cannot clash with a real ``caffe_pb2`` in the same process.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool
    from google.protobuf import message_factory
    pkg = 'lasagne_tagger.caffe'
    fp = descriptor_pb2.FileDescriptorProto(
        name='lasagne_tagger_caffe.proto', package=pkg, syntax='proto2')
    shape = fp.message_type.add(name='BlobShape')
    _field(shape, 'dim', 1, 'int64', 'repeated', packed=True)
    blob = fp.message_type.add(name='BlobProto')
    for name, number in (('num', 1), ('channels', 2), ('height', 3),
                         ('width', 4)):
        _field(blob, name, number, 'int64')
    _field(blob, 'data', 5, 'float', 'repeated', packed=True)
    _field(blob, 'shape', 7, 'message', type_name='.%s.BlobShape' % pkg)
    _field(blob, 'double_data', 8, 'double', 'repeated', packed=True)
    layer = fp.message_type.add(name='LayerParameter')
    _field(layer, 'name', 1, 'string')
    _field(layer, 'type', 2, 'string')
    _field(layer, 'blobs', 7, 'message', 'repeated',
           type_name='.%s.BlobProto' % pkg)
    v1 = fp.message_type.add(name='V1LayerParameter')
    enum = v1.enum_type.add(name='LayerType')
    for name, (number, _) in V1_TYPES.items():
        enum.value.add(name=name, number=number)
    _field(v1, 'name', 4, 'string')
    _field(v1, 'type', 5, 'enum',
           type_name='.%s.V1LayerParameter.LayerType' % pkg)
    _field(v1, 'blobs', 6, 'message', 'repeated',
           type_name='.%s.BlobProto' % pkg)
    net = fp.message_type.add(name='NetParameter')
    _field(net, 'name', 1, 'string')
    _field(net, 'layers', 2, 'message', 'repeated',
           type_name='.%s.V1LayerParameter' % pkg)
    _field(net, 'layer', 100, 'message', 'repeated',
           type_name='.%s.LayerParameter' % pkg)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fp)
    return {m.name: message_factory.GetMessageClass(
        pool.FindMessageTypeByName('%s.%s' % (pkg, m.name)))
        for m in fp.message_type}


def sha1sum(path):
    """SHA-1 of a file, hex (BVLC publishes its models' SHA-1)."""
    from ..atomic import file_digest
    return file_digest(path, 'sha1')


def looks_like_caffemodel(head):
    """Whether a file's first bytes can start a ``NetParameter``: a
    length-delimited field 1 (name), 2 (``layers``) or 100 (``layer``)."""
    return bool(head) and (head[:1] in (b'\x0a', b'\x12') or
                           head[:2] == b'\xa2\x06')


def _blob_array(blob, where):
    if blob.shape.dim:
        shape = tuple(int(d) for d in blob.shape.dim)
    else:
        shape = tuple(int(d) for d in (blob.num, blob.channels, blob.height,
                                       blob.width))
    values = blob.data if len(blob.data) else blob.double_data
    count = int(np.prod(shape)) if shape else 0
    if count != len(values) or any(d < 0 for d in shape):
        raise TaggerError('%s: a blob of shape %s holds %d values'
                          % (where, shape, len(values)))
    return np.asarray(values, dtype=np.float32).reshape(shape)


def read_caffemodel(path):
    """The layers of a ``.caffemodel`` that hold weights.

    Parameters
    ----------
    path : str
        A binary ``NetParameter`` (``layer`` or legacy V1 ``layers``).

    Returns
    -------
    collections.OrderedDict
        ``name -> (type, [float32 arrays])`` in file order, for every layer
        with blobs (the first, if a name repeats).

    Raises
    ------
    TaggerError
        The file is missing, not a Caffe model, or holds a damaged blob.
    """
    from google.protobuf.message import DecodeError
    path = os.fspath(path)
    try:
        with open(path, 'rb') as fh:
            data = fh.read()
    except OSError as exc:
        raise TaggerError('cannot read (%s)' % (exc.strerror or exc),
                          path) from None
    net = message_classes()['NetParameter']()
    try:
        net.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise TaggerError('not a Caffe model, or a truncated one (protobuf: '
                          '%s)' % (str(exc) or type(exc).__name__),
                          path) from None
    enum = {number: kind for number, kind in V1_TYPES.values()}
    out = OrderedDict()
    layers = [(l.name, l.type, l.blobs) for l in net.layer] + \
        [(l.name, enum.get(l.type, str(l.type)), l.blobs) for l in net.layers]
    if not layers:
        raise TaggerError('not a Caffe model: no layers', path)
    for name, kind, blobs in layers:
        if blobs and name not in out:
            out[name] = (kind, [_blob_array(b, '%s: layer %s blob %d'
                                             % (path, name, i))
                                for i, b in enumerate(blobs)])
    return out


def model_zoo_values(layers, path='caffemodel'):
    """The 116 model-zoo ``'param values'`` from a BVLC GoogLeNet's layers.

    Parameters
    ----------
    layers : mapping
        :func:`read_caffemodel`'s result.
    path : str
        Named in errors.

    Returns
    -------
    list of numpy.ndarray
        float32, in :data:`lasagne_tagger.model.googlenet.PARAM_LAYERS` order,
        ``W`` then ``b``; convolutions ``(out, in, kh, kw)`` as in Caffe,
        the classifier's ``W`` ``(in, out)``.

    Raises
    ------
    TaggerError
        A layer is missing, of another type, without its two blobs, or of
        the wrong shape (the message names the layer and both shapes).
    """
    from .googlenet import param_shapes
    shapes = param_shapes()
    for name in layers:
        if name not in shapes and not name.startswith(SKIPPED_PREFIXES):
            raise TaggerError('layer %s holds weights but is not part of '
                              'GoogLeNet (another network?)' % name, path)
    values = []
    for name, (w_shape, b_shape) in shapes.items():
        if name not in layers:
            raise TaggerError('layer %s is missing (a GoogLeNet caffemodel '
                              'has it)' % name, path)
        kind, blobs = layers[name]
        dense = name == 'loss3/classifier'
        want_kind = 'InnerProduct' if dense else 'Convolution'
        if kind != want_kind:
            raise TaggerError('layer %s is a %s layer, GoogLeNet\'s is %s'
                              % (name, kind or 'typeless', want_kind), path)
        if len(blobs) != 2:
            raise TaggerError('layer %s has %d blobs, expected 2 (weights '
                              'and bias)' % (name, len(blobs)), path)
        w, b = blobs
        # legacy 4D shapes: biases (1, 1, 1, N), inner products (1, 1, O, I)
        b = b.reshape(-1) if b.ndim == 4 and b.shape[:3] == (1, 1, 1) else b
        if dense:
            if w.ndim == 4 and w.shape[:2] == (1, 1):
                w = w.reshape(w.shape[2:])
            w = w.T                        # Caffe (out, in) -> Lasagne
        for blob, want, what in ((w, w_shape, 'weights'),
                                 (b, b_shape, 'bias')):
            if blob.shape != want:
                raise TaggerError(
                    'layer %s: %s have shape %s, GoogLeNet expects %s'
                    % (name, what, _caffe_shape(blob, dense and what ==
                                                'weights'),
                       _caffe_shape(np.empty(want), dense and what ==
                                    'weights')), path)
            if not np.all(np.isfinite(blob)):
                raise TaggerError('layer %s: %s hold NaN or inf'
                                  % (name, what), path)
        values.extend([np.ascontiguousarray(w, np.float32),
                       np.ascontiguousarray(b, np.float32)])
    return values


def _caffe_shape(array, transposed):
    """A shape as the caffemodel holds it (inner products: (out, in))."""
    shape = array.shape
    return tuple(reversed(shape)) if transposed else shape
