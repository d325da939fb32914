"""BVLC GoogLeNet exactly as the Lasagne model zoo builds it, on Lasagne 0.1.

The model zoo's ``build_model()`` (Lasagne Recipes, ``modelzoo/googlenet.py``)
targets Lasagne >= 0.2.  This module builds the same graph with the layers
Lasagne 0.1 has, and loads the zoo's ``'param values'`` list unchanged.

Layer names are Caffe's (``conv1/7x7_s2`` ... ``pool5/7x7_s1``,
``loss3/classifier``, ``prob``).  Pools: stride-2 pools are ceil-mode,
inception pools are 3x3 stride 1 pad 1.

# note: the model zoo uses Lasagne's MaxPool2DLayer (Theano's Pool op,
# ignore_border=False for ceil mode).  Its forward pass equals Caffe's, but
# its gradient goes to every tied maximum, and GoogLeNet makes ties (plateaus
# from the stride-1 inception pools reach the stride-2 pools): gradients were
# measured 4x too large at 2x2 plateaus and from-scratch training stalled at
# chance.  pooling.CaffeMaxPool2DLayer gives the same forward values and
# Caffe's gradient (to the first maximum only).  LRN is
Caffe's (alpha 0.0001/5 per element, k 1, n 5, beta 0.75).

Filter orientation: Lasagne 0.1's ``Conv2DLayer`` computes a true
convolution (``theano.tensor.nnet.conv2d`` with ``filter_flip=True``) and has
no ``flip_filters`` switch; the zoo's weights are Caffe cross-correlation
filters.  :func:`set_model_zoo_values` flips every filter once, at load time,
and :func:`get_model_zoo_values` flips back, so files always hold Caffe
(cross-correlation, OIHW) filters and the graph holds Lasagne ones.
"""
from collections import OrderedDict

import numpy as np

from ..runtime import _theano  # noqa: F401 (prepares Theano)
from ..errors import TaggerError

__all__ = ['INCEPTION_FILTERS', 'PARAM_LAYERS', 'NUM_PARAMS', 'build_model',
           'param_layer_names', 'param_shapes', 'set_model_zoo_values',
           'get_model_zoo_values', 'count_params', 'caffe_to_lasagne_filters']

# (pool_proj, 1x1, 3x3_reduce, 3x3, 5x5_reduce, 5x5), the model zoo's order.
INCEPTION_FILTERS = OrderedDict([
    ('inception_3a', (32, 64, 96, 128, 16, 32)),
    ('inception_3b', (64, 128, 128, 192, 32, 96)),
    ('inception_4a', (64, 192, 96, 208, 16, 48)),
    ('inception_4b', (64, 160, 112, 224, 24, 64)),
    ('inception_4c', (64, 128, 128, 256, 24, 64)),
    ('inception_4d', (64, 112, 144, 288, 32, 64)),
    ('inception_4e', (128, 256, 160, 320, 32, 128)),
    ('inception_5a', (128, 256, 160, 320, 32, 128)),
    ('inception_5b', (128, 384, 192, 384, 48, 128)),
])
# Branch order inside a module, as its parameters appear in the pickle (the
# order Lasagne's get_all_layers visits the concat's inputs).
INCEPTION_BRANCHES = ('1x1', '3x3_reduce', '3x3', '5x5_reduce', '5x5',
                      'pool_proj')
FEATURE_LAYER = 'pool5/7x7_s1'
NUM_PARAMS = 6998552          # of the 1000-way model zoo network
# Typical standard deviation of BGR mean-subtracted pixels (0..255 scale).
INPUT_STD = 60.0


def param_layer_names():
    """Names of the layers with parameters, in the zoo pickle's order."""
    names = ['conv1/7x7_s2', 'conv2/3x3_reduce', 'conv2/3x3']
    for module in INCEPTION_FILTERS:
        names.extend('%s/%s' % (module, b) for b in INCEPTION_BRANCHES)
    names.append('loss3/classifier')
    return names


PARAM_LAYERS = tuple(param_layer_names())


def param_shapes(num_classes=1000):
    """``name -> (W shape, b shape)`` of every parameter layer, in the zoo
    pickle's order, as the pickle holds them: convolutions ``(out, in, kh,
    kw)`` (Caffe's), ``loss3/classifier`` ``(in, out)`` (Lasagne's
    DenseLayer).  Pure data: builds no network."""
    shapes = OrderedDict()

    def conv(name, cin, cout, size):
        shapes[name] = ((cout, cin, size, size), (cout,))

    conv('conv1/7x7_s2', 3, 64, 7)
    conv('conv2/3x3_reduce', 64, 64, 1)
    conv('conv2/3x3', 64, 192, 3)
    cin = 192
    for module, (npool, n1, n3r, n3, n5r, n5) in INCEPTION_FILTERS.items():
        branches = {'1x1': (cin, n1, 1), '3x3_reduce': (cin, n3r, 1),
                    '3x3': (n3r, n3, 3), '5x5_reduce': (cin, n5r, 1),
                    '5x5': (n5r, n5, 5), 'pool_proj': (cin, npool, 1)}
        for branch in INCEPTION_BRANCHES:
            conv('%s/%s' % (module, branch), *branches[branch])
        cin = n1 + n3 + n5 + npool
    shapes['loss3/classifier'] = ((cin, num_classes), (num_classes,))
    return shapes


def _scaled(n, width):
    return max(1, int(round(n * width)))


def _inception(net, name, incoming, nfilters, width, Conv2DLayer,
               MaxPool2DLayer, ConcatLayer):
    n = [_scaled(f, width) for f in nfilters]
    net[name + '/pool'] = MaxPool2DLayer(incoming, 3, stride=1, pad=1,
                                         name=name + '/pool')
    net[name + '/pool_proj'] = Conv2DLayer(net[name + '/pool'], n[0], 1,
                                           name=name + '/pool_proj')
    net[name + '/1x1'] = Conv2DLayer(incoming, n[1], 1, name=name + '/1x1')
    net[name + '/3x3_reduce'] = Conv2DLayer(incoming, n[2], 1,
                                            name=name + '/3x3_reduce')
    net[name + '/3x3'] = Conv2DLayer(net[name + '/3x3_reduce'], n[3], 3,
                                     pad=1, name=name + '/3x3')
    net[name + '/5x5_reduce'] = Conv2DLayer(incoming, n[4], 1,
                                            name=name + '/5x5_reduce')
    net[name + '/5x5'] = Conv2DLayer(net[name + '/5x5_reduce'], n[5], 5,
                                     pad=2, name=name + '/5x5')
    net[name + '/output'] = ConcatLayer(
        [net[name + '/1x1'], net[name + '/3x3'], net[name + '/5x5'],
         net[name + '/pool_proj']], name=name + '/output')
    return net[name + '/output']


def build_model(input_var=None, image_size=224, batch_size=None,
                num_classes=1000, dropout=0.0, width=1.0, init='glorot',
                impl='auto', layer_options=None):
    """Build BVLC GoogLeNet as a dict of named Lasagne 0.1 layers.

    Parameters
    ----------
    input_var : theano 4D tensor, optional
        Input variable (BGR, mean-subtracted, ``(N, 3, H, W)``).
    image_size : int or None
        Side of the square input; None leaves it symbolic.  224 for the zoo.
    batch_size : int or None
        Fixed batch size, or None.
    num_classes : int
        Units of ``loss3/classifier`` (1000 for ImageNet, 15 for ACS).
    dropout : float
        If > 0, a ``pool5/drop_7x7_s1`` dropout layer before the classifier.
        # note: BVLC's train_val.prototxt has it (ratio 0.4); the zoo's
        # inference-only build_model() leaves it out.  Fine-tuning adds it.
    width : float
        Multiplies every layer's filter count.  1.0 is GoogLeNet; smaller
        values build a thin copy for CPU tests and the demo.
        # note: not in the model zoo; widths != 1 cannot load its weights.
    init : {'glorot', 'he'}
        How filters are initialised before any weights are loaded: Lasagne's
        default GlorotUniform, or 'he': HeNormal with the ReLU gain, conv1
        scaled down by ``INPUT_STD`` because its input is raw mean-subtracted
        pixels rather than unit-variance activations.
        # note: for from-scratch training only.  With Glorot's gain 1 the
        # signal fades through 22 ReLU layers and training stalls at chance
        # (measured: see lasagne_tagger/training/finetune.py).
    impl : {'auto', 'op', 'graph'}
        The implementation of every layer that has a C op (convolutions,
        their bias + rectifier, LRN, the inception concatenations, max
        pools; see :mod:`lasagne_tagger.model.layers`): the same numbers
        either way; 'auto' picks the C ops on a CPU.
    layer_options : dict, optional
        More constructor arguments per kind of layer, over ``impl``:
        ``{'conv': {...}, 'lrn': {...}, 'concat': {...}, 'pool': {...}}``,
        e.g. ``{'conv': {'unfold_bytes': None}}`` or ``{'lrn': {'impl':
        'lasagne'}}`` (the benchmarks compare implementations this way).

    Returns
    -------
    dict
        Layers keyed by Caffe name, from ``'input'`` to ``'prob'``.

    Raises
    ------
    TaggerError
        If the image size is too small for the network or a size is invalid.
    """
    from lasagne.layers import (DenseLayer, DropoutLayer, GlobalPoolLayer,
                                InputLayer, NonlinearityLayer)
    from lasagne.nonlinearities import linear, softmax

    _check_arguments(image_size, num_classes, dropout, width)
    first_init, other_init = _initializers(init)
    Conv2DLayer, LRN, ConcatLayer, MaxPool2DLayer = _layer_kinds(
        impl, layer_options, other_init)

    net = OrderedDict()
    net['input'] = InputLayer((batch_size, 3, image_size, image_size),
                              input_var=input_var, name='input')
    net['conv1/7x7_s2'] = Conv2DLayer(net['input'], _scaled(64, width), 7,
                                      stride=2, pad=3, W=first_init,
                                      name='conv1/7x7_s2')
    net['pool1/3x3_s2'] = MaxPool2DLayer(net['conv1/7x7_s2'], 3,
                                         stride=2, name='pool1/3x3_s2')
    net['pool1/norm1'] = LRN(net['pool1/3x3_s2'], alpha=0.0001 / 5, k=1,
                             beta=0.75, n=5, name='pool1/norm1')
    net['conv2/3x3_reduce'] = Conv2DLayer(net['pool1/norm1'],
                                          _scaled(64, width), 1,
                                          name='conv2/3x3_reduce')
    net['conv2/3x3'] = Conv2DLayer(net['conv2/3x3_reduce'],
                                   _scaled(192, width), 3, pad=1,
                                   name='conv2/3x3')
    net['conv2/norm2'] = LRN(net['conv2/3x3'], alpha=0.0001 / 5, k=1,
                             beta=0.75, n=5, name='conv2/norm2')
    top = net['pool2/3x3_s2'] = MaxPool2DLayer(
        net['conv2/norm2'], 3, stride=2, name='pool2/3x3_s2')
    for module, nfilters in INCEPTION_FILTERS.items():
        if module == 'inception_4a':
            top = net['pool3/3x3_s2'] = MaxPool2DLayer(
                top, 3, stride=2, name='pool3/3x3_s2')
        elif module == 'inception_5a':
            top = net['pool4/3x3_s2'] = MaxPool2DLayer(
                top, 3, stride=2, name='pool4/3x3_s2')
        top = _inception(net, module, top, nfilters, width, Conv2DLayer,
                         MaxPool2DLayer, ConcatLayer)
    net[FEATURE_LAYER] = GlobalPoolLayer(top, name=FEATURE_LAYER)
    top = net[FEATURE_LAYER]
    if dropout > 0:
        top = net['pool5/drop_7x7_s1'] = DropoutLayer(
            top, p=dropout, name='pool5/drop_7x7_s1')
    net['loss3/classifier'] = DenseLayer(top, num_units=num_classes,
                                         nonlinearity=linear,
                                         name='loss3/classifier')
    net['prob'] = NonlinearityLayer(net['loss3/classifier'],
                                    nonlinearity=softmax, name='prob')
    _check_shapes(net, image_size)
    return net


def _check_arguments(image_size, num_classes, dropout, width):
    """``TaggerError`` for a bad size, class count, dropout or width of
    :func:`build_model`."""
    if image_size is not None and (int(image_size) != image_size
                                   or image_size < 1):
        raise TaggerError('image_size must be a positive integer, got %r'
                          % (image_size,))
    if int(num_classes) != num_classes or num_classes < 2:
        raise TaggerError('num_classes must be an integer >= 2, got %r'
                          % (num_classes,))
    if not 0.0 <= dropout < 1.0:
        raise TaggerError('dropout must be in [0, 1), got %r' % (dropout,))
    if not width > 0:
        raise TaggerError('width must be > 0, got %r' % (width,))


def _initializers(init):
    """(conv1's filter initializer, every other layer's) for
    :func:`build_model`'s ``init``."""
    import lasagne
    if init == 'glorot':
        glorot = lasagne.init.GlorotUniform()
        return glorot, glorot
    if init == 'he':
        return (lasagne.init.HeNormal(gain=np.sqrt(2) / INPUT_STD),
                lasagne.init.HeNormal(gain='relu'))
    raise TaggerError("init must be 'glorot' or 'he', got %r" % (init,))


def _layer_kinds(impl, layer_options, W):
    """The constructors of the four kinds of layer that have a C op
    (convolution with filters initialized by ``W``, LRN, concatenation,
    Caffe max pooling), with ``impl`` and ``layer_options`` bound (see
    :func:`build_model`)."""
    import functools
    from . import layers
    from .pooling import CaffeMaxPool2DLayer
    # note: the model zoo uses Lasagne's Conv2DLayer and LRN layer; ours
    # (lasagne_tagger.model.layers) are subclasses with the same maths and
    # parameters, in graphs Theano runs faster on a CPU.
    options = dict(layer_options or {})
    unknown = set(options) - {'conv', 'lrn', 'concat', 'pool'}
    if unknown:
        raise TaggerError('layer_options: unknown kind(s) %s (conv, lrn, '
                          'concat, pool)' % ', '.join(sorted(unknown)))

    def kind(cls, name, **fixed):
        kwargs = dict(fixed, impl=impl)
        kwargs.update(options.get(name, {}))
        return functools.partial(cls, **kwargs)
    return (kind(layers.Conv2DLayer, 'conv', W=W, bias_relu=impl),
            kind(layers.LRNLayer, 'lrn'),
            kind(layers.ConcatLayer, 'concat'),
            kind(CaffeMaxPool2DLayer, 'pool'))


def _check_shapes(net, image_size):
    for name, layer in net.items():
        shape = layer.output_shape
        if any(s is not None and s < 1 for s in shape):
            raise TaggerError('image_size %s is too small for GoogLeNet: layer '
                              '%s would have output shape %s'
                              % (image_size, name, shape))


def _layer_params(layer):
    """(W, b) shared variables of a conv or dense layer."""
    return layer.W, layer.b


def count_params(net):
    """Number of trainable scalars in the network."""
    return sum(int(np.prod(p.get_value().shape))
               for name in PARAM_LAYERS for p in _layer_params(net[name]))


def caffe_to_lasagne_filters(w):
    """Flip a 4D filter bank in both spatial axes (its own inverse).

    Caffe (and the model zoo) store cross-correlation filters; Lasagne 0.1
    convolves, i.e. flips the filter before sliding it.  Flipping the stored
    filter once makes both compute the same thing.  Non-4D arrays pass.
    """
    w = np.asarray(w)
    if w.ndim != 4:
        return w
    return np.ascontiguousarray(w[:, :, ::-1, ::-1])


def set_model_zoo_values(net, values, layers=PARAM_LAYERS):
    """Load a model-zoo ``'param values'`` list into ``net``.

    Parameters
    ----------
    net : dict
        Layers from :func:`build_model`.
    values : list of ndarray
        ``[W, b]`` per layer in ``layers``, Caffe filter orientation (116
        arrays for the full list).
    layers : sequence of str
        Which layers ``values`` covers, in order (default: all, ending with
        ``loss3/classifier``; fine-tuning passes ``PARAM_LAYERS[:-1]``).

    Raises
    ------
    TaggerError
        On a wrong number of arrays, or an array whose shape does not match
        its layer (the message names the layer, the index and both shapes).
    """
    values = list(values)
    expected = 2 * len(layers)
    if len(values) != expected:
        raise TaggerError('expected %d parameter arrays (W and b for %d '
                          'layers), got %d' % (expected, len(layers),
                                               len(values)))
    pending = []
    for i, name in enumerate(layers):
        for j, (param, kind) in enumerate(zip(_layer_params(net[name]),
                                              ('W', 'b'))):
            index = 2 * i + j
            value = np.asarray(values[index])
            want = param.get_value(borrow=True).shape
            if value.shape != want:
                raise TaggerError(
                    'parameter %d (%s %s) has shape %s, the network expects %s'
                    % (index, name, kind, value.shape, want))
            if not np.all(np.isfinite(value)):
                raise TaggerError('parameter %d (%s %s) holds NaN or inf'
                                  % (index, name, kind))
            pending.append((param, caffe_to_lasagne_filters(value)))
    for param, value in pending:          # all checked: now assign
        param.set_value(value.astype(param.dtype))


def get_model_zoo_values(net, layers=PARAM_LAYERS):
    """The inverse of :func:`set_model_zoo_values` (Caffe orientation)."""
    out = []
    for name in layers:
        for param in _layer_params(net[name]):
            out.append(caffe_to_lasagne_filters(param.get_value()))
    return out
