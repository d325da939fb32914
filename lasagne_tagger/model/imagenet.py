"""ImageNet tagging with the model-zoo GoogLeNet (the blog's baseline).

The blog's point of comparison: the ImageNet classifier labels a photo of a
suit and a T-shirt "Windsor tie".  :func:`classify_files` reproduces that for
any photos, reporting unreadable ones instead of stopping.
"""
import numpy as np

from ..runtime import _theano  # noqa: F401 (prepares Theano)
from ..runtime import function_cache
from . import googlenet, weights
from ..data import preprocess
from ..errors import TaggerError

__all__ = ['load_imagenet_model', 'compile_forward', 'top_k',
           'classify_files']


def load_imagenet_model(weights_path=None, sha256=weights.MODEL_ZOO_SHA256):
    """Build GoogLeNet and load the model-zoo pickle into it.

    Never falls back to random weights: a missing file is a
    :class:`TaggerError` that says how to fetch it.

    Returns
    -------
    (dict, list of str)
        The layers (see :func:`googlenet.build_model`) and the 1000 synset
        words.
    """
    path = weights.default_weights_path() if weights_path is None \
        else weights_path
    data = weights.load_model_zoo_pickle(path, sha256=sha256)
    net = googlenet.build_model()
    try:
        googlenet.set_model_zoo_values(net, data['param values'])
    except TaggerError as exc:
        raise TaggerError(str(exc), path) from None
    return net, data['synset words']


def compile_forward(net, layers=('prob',)):
    """Compile ``batch -> [outputs of layers]`` (deterministic: no dropout)."""
    import lasagne

    outputs = lasagne.layers.get_output([net[name] for name in layers],
                                        deterministic=True)
    return function_cache.function([net['input'].input_var], outputs)


def top_k(probs, synsets, k=5):
    """The ``k`` most probable ``(synset, probability)`` pairs per row."""
    probs = np.asarray(probs)
    order = np.argsort(-probs, axis=1, kind='stable')[:, :k]
    return [[(synsets[j], float(row[j])) for j in idx]
            for row, idx in zip(probs, order)]


def classify_files(paths, forward, synsets, k=5, batch_size=8,
                   upscale=False):
    """Top-``k`` synsets for each readable photo.

    Returns
    -------
    (list of dict, list of (str, str))
        ``{'path', 'top': [(synset, prob), ...]}`` per readable file, in
        input order, and ``(path, error message)`` for each bad file.
    """
    if k < 1:
        raise TaggerError('--top must be >= 1, got %d' % k)
    crops, good, bad = preprocess.load_crops(paths, upscale=upscale)
    results = []
    for start in range(0, len(crops), batch_size):
        batch = preprocess.to_network_input(crops[start:start + batch_size])
        probs = forward(batch)[0]
        for path, top in zip(good[start:start + batch_size],
                             top_k(probs, synsets, k)):
            results.append({'path': path, 'top': top})
    return results, bad
