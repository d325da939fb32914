"""Write ``.caffemodel`` files with the structure of BVLC's GoogLeNet, from
given weights, in either encoding Caffe has used:

- ``v1``: ``NetParameter.layers`` (field 2) of ``V1LayerParameter``, enum
  layer types, blobs with the legacy num/channels/height/width shape
  (biases ``1x1x1xN``, inner products ``1x1xOUTxIN``): how models were
  saved in 2014, the BVLC GoogLeNet among them;
- ``v2``: ``NetParameter.layer`` (field 100) of ``LayerParameter``, string
  types, blobs with ``BlobShape``.

Like a training net, the file also holds a data layer, layers without
weights (ReLU, pooling, concat, softmax loss) and the auxiliary classifiers
``loss1/*`` and ``loss2/*``.
"""
import numpy as np

from lasagne_tagger.model.caffemodel import message_classes
from lasagne_tagger.model.googlenet import PARAM_LAYERS


def _fill_blob(blob, array, legacy):
    array = np.asarray(array, np.float32)
    if legacy:
        dims = (1,) * (4 - array.ndim) + array.shape
        blob.num, blob.channels, blob.height, blob.width = dims
    else:
        blob.shape.dim.extend(array.shape)
    blob.data.extend(array.ravel().tolist())


def _layers(values, rng):
    """``(name, type, [arrays])`` in a training net's order; the classifier
    as Caffe holds it, (out, in)."""
    out = [('data', 'Data', [])]
    for i, name in enumerate(PARAM_LAYERS):
        w, b = values[2 * i], values[2 * i + 1]
        if name == 'loss3/classifier':
            out.append(('loss3/classifier', 'InnerProduct',
                        [np.asarray(w).T, b]))
            out.append(('loss3/loss3', 'SoftmaxWithLoss', []))
            continue
        out.append((name, 'Convolution', [w, b]))
        out.append((name.replace('/', '/relu_'), 'ReLU', []))
        if name == 'inception_4a/pool_proj':      # loss1 branches off 4a
            out.append(('loss1/ave_pool', 'Pooling', []))
            out.append(('loss1/conv', 'Convolution', [
                rng.standard_normal((128, 512, 1, 1)), np.zeros(128)]))
            out.append(('loss1/fc', 'InnerProduct', [
                rng.standard_normal((1024, 2048)), np.zeros(1024)]))
            out.append(('loss1/classifier', 'InnerProduct', [
                rng.standard_normal((1000, 1024)), np.zeros(1000)]))
        if name == 'inception_4d/pool_proj':
            out.append(('loss2/conv', 'Convolution', [
                rng.standard_normal((128, 528, 1, 1)), np.zeros(128)]))
            out.append(('loss2/classifier', 'InnerProduct', [
                rng.standard_normal((1000, 1024)), np.zeros(1000)]))
        if name.endswith('/pool_proj'):
            out.append((name.split('/')[0] + '/output', 'Concat', []))
    return out


V1_CODES = {'Data': 5, 'Convolution': 4, 'ReLU': 18, 'Pooling': 17,
            'InnerProduct': 14, 'Concat': 3, 'SoftmaxWithLoss': 21}


def caffemodel_bytes(values, encoding='v1', seed=0, edit=None):
    """The serialized NetParameter for model-zoo ``values`` (116 arrays,
    zoo order and orientation).  ``edit(layers)`` may change the
    ``(name, type, arrays)`` list first."""
    rng = np.random.default_rng(seed)
    layers = _layers(values, rng)
    if edit is not None:
        layers = edit(layers)
    classes = message_classes()
    net = classes['NetParameter'](name='GoogleNet')
    for name, kind, arrays in layers:
        if encoding == 'v1':
            layer = net.layers.add(name=name, type=V1_CODES[kind])
        else:
            layer = net.layer.add(name=name, type=kind)
        for array in arrays:
            _fill_blob(layer.blobs.add(), array, legacy=encoding == 'v1')
    return net.SerializeToString()


def write_caffemodel(path, values, encoding='v1', **kw):
    data = caffemodel_bytes(values, encoding, **kw)
    with open(path, 'wb') as fh:
        fh.write(data)
    return path
