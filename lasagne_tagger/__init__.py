"""lasagne_tagger: a Theano + Lasagne reproduction of a 2016 fashion tagger.

Importing the package does nothing but define ``__version__``: Theano is
prepared by the modules that use it, through one entry point
(:mod:`lasagne_tagger.runtime._theano`).

The map, lowest layer first; each module imports only from its own layer
or the ones above it in this list (``tests/test_layout.py`` checks it):

``errors``, ``config``, ``atomic``
    The package's error type, strict config dataclasses from JSON, the one
    way files are written (temporary file, fsync, check, rename).
``resources/``
    Data files: taxonomies, ILSVRC-2012 synset words, the BLAS names
    header.
``runtime/``
    Theano as this package runs it: the compatibility patches (``compat``),
    speed defaults, the BLAS from PyPI, the GPU settings, flag checks,
    parallel and precompiled-header compiles, the cache of compiled
    functions, the allocator, timing and progress bars.
``ops/``
    The CPU Theano ops with C code: convolution, bias + rectifier, LRN,
    Caffe's max pooling (and its output length, ``pool_shape``); each op's
    C in a ``.c`` file beside its module, read by ``c_support``.
``data/``
    Datasets (ACS, folders), the prepared HDF5 store, preprocessing as the
    2016 code did it, the synthetic apparel set, composites.  NumPy only.
``model/``
    Lasagne layers (implementation chosen by argument), the model-zoo
    GoogLeNet, its weights (model zoo pickle, BVLC caffemodel) and the
    ImageNet head.
``evaluation/``
    Metrics (with bootstrap intervals) and plots.  NumPy and matplotlib.
``training/``
    The one training loop (``loop``) both stages drive, fine-tuning,
    checkpoints, run folders, losses.
``tagging/``
    The tag vocabulary, decoding (NumPy), the LSTM tagger, offline
    features and the photo-to-tags pipeline.
``reporting/``
    The demo's HTML report, the experiments' helpers and their results
    report.
``ports/``
    Reference bundles (NumPy + h5py), their export from Theano, the
    PyTorch port and the GPU check.
``demo``, ``cli``
    The demo pipeline and the command line (``lasagne-tagger``).
"""
__version__ = '0.1.0'
