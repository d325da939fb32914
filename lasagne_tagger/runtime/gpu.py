"""Theano's CUDA back end (``device=cuda*``) set up for today's CUDA.

Theano 1.0.5's GPU back end is libgpuarray/pygpu 0.7.6.  What it needs
from the CUDA of today, in code rather than in prose:

- **cuDNN.**  Theano 1.0.5's cuDNN code calls
  ``cudnnGetConvolutionForwardAlgorithm`` and friends, which cuDNN 8
  removed, and knows cuDNN 5.1-7 only (``theano/gpuarray/dnn.py``,
  ``cudnn_defs.py``).  Where the user asks for a GPU and leaves
  ``dnn.enabled`` unset, :func:`configure` sets ``dnn.enabled=False``
  unless a cuDNN older than 8 is found (:func:`cudnn_version`); the
  convolutions then run as ``GpuCorrMM`` on cuBLAS and the pools as
  Theano's GPU pooling or our Caffe pooling's element-wise graph.
- **Our own C ops stay on the CPU.**  On a GPU device the layers build the
  stock Lasagne/Theano graph (:mod:`lasagne_tagger.model.layers` decides by
  :func:`on_gpu`), which Theano's optimizer moves to the device, and
  ``lasagne.layers.dnn`` is never imported by this package (on a CPU it
  would fail; on a GPU Theano's own optimizer picks cuDNN or not).
- **One line saying what runs** (:func:`describe`).

Nothing here imports Theano except :func:`describe` and :func:`on_gpu`.
"""
import ctypes
import ctypes.util
import os

__all__ = ['GPU_PREFIXES', 'wants_gpu', 'cudnn_version', 'configure',
           'theano_device', 'on_gpu', 'describe', 'THEANO_CUDNN_MAX']

GPU_PREFIXES = ('cuda', 'gpu', 'opencl')
# note: Theano 1.0.5 supports cuDNN v5.1 to v7 (cudnn_defs.get_definitions);
# v8 removed the algorithm-query calls its convolution code makes.
THEANO_CUDNN_MAX = 7999


def wants_gpu(device):
    """Whether a Theano ``device`` value names a GPU."""
    return bool(device) and device.strip().startswith(GPU_PREFIXES)


def _cudnn_candidates(library_path=None):
    names = ['libcudnn.so'] + ['libcudnn.so.%d' % v for v in
                               (9, 8, 7, 6, 5)]
    paths = []
    for folder in filter(None, [library_path] + os.environ.get(
            'LD_LIBRARY_PATH', '').split(os.pathsep)):
        paths.extend(os.path.join(folder, n) for n in names)
    found = ctypes.util.find_library('cudnn')
    return paths + ([found] if found else []) + names


def cudnn_version(library_path=None, loader=ctypes.CDLL):
    """``cudnnGetVersion()`` of the first cuDNN the loader finds (e.g.
    7605, 8902, 90100), or None without one.

    Parameters
    ----------
    library_path : str, optional
        Theano's ``dnn.library_path`` (searched first).
    loader : callable
        ``ctypes.CDLL`` (tests pass a stand-in).
    """
    for candidate in _cudnn_candidates(library_path):
        try:
            lib = loader(candidate)
            get = lib.cudnnGetVersion
        except (OSError, AttributeError):
            continue
        get.restype = ctypes.c_size_t
        return int(get())
    return None


def configure(environ=None, version_of=cudnn_version):
    """Before Theano is imported: on a requested GPU, turn cuDNN off unless
    the user set ``dnn.enabled`` or a cuDNN Theano 1.0.5 can use (< 8) is
    there.  Returns ``(flag value set or None, why)``.
    """
    from .compat import add_theano_flag, user_theano_flag
    environ = os.environ if environ is None else environ
    if not wants_gpu(user_theano_flag('device', environ)):
        return None, 'no GPU requested'
    if user_theano_flag('dnn.enabled', environ) is not None:
        return None, 'dnn.enabled set by the user'
    version = version_of(user_theano_flag('dnn.library_path', environ))
    if version is not None and version <= THEANO_CUDNN_MAX:
        return None, 'cuDNN %d: usable by Theano 1.0.5' % version
    add_theano_flag(environ, 'dnn.enabled', 'False')
    return 'False', ('no cuDNN found' if version is None else
                     'cuDNN %d: Theano 1.0.5 supports only v5-v7' % version)


def theano_device():
    """Theano's ``device`` in this process (imports Theano)."""
    import theano
    return str(theano.config.device)


def on_gpu():
    """Whether Theano runs on a GPU in this process (its device, once
    pygpu is active)."""
    if not wants_gpu(theano_device()):
        return False
    try:
        from theano import gpuarray
    except ImportError:
        return False
    return bool(getattr(gpuarray, 'pygpu_activated', False))


def describe():
    """One line: where Theano runs and which convolution and pooling it
    uses."""
    import theano
    if not on_gpu():
        return ('device: %s; convolutions: lasagne_tagger CorrGemm (CPU, '
                'BLAS); pooling: lasagne_tagger CaffeMaxPool (C op)'
                % theano.config.device)
    dnn = theano.config.dnn.enabled
    if dnn == 'False':
        conv = 'GpuCorrMM (cuBLAS; cuDNN off)'
        pool = 'Caffe max pooling as GPU element-wise ops, Theano GpuPool'
    else:
        conv = 'cuDNN if Theano can use it (dnn.enabled=%s), else GpuCorrMM' \
            % dnn
        pool = 'cuDNN pooling or Theano GpuPool'
    return 'device: %s; convolutions: %s; pooling: %s' % (
        theano.config.device, conv, pool)
