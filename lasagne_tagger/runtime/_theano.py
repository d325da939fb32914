"""The one entry point to Theano: importing this module prepares it.

Every module of the package that imports Theano or Lasagne imports this
one first (``from ..runtime import _theano  # noqa: F401``), so the
patches of :mod:`lasagne_tagger.runtime.compat` (Theano 1.0.5 and
Lasagne 0.1 on Python 3.11, hash-seed-free C-module cache keys, the BLAS
from PyPI, cuDNN on today's CUDA) and the speed defaults of
:mod:`lasagne_tagger.runtime.theano_defaults` are in place before Theano
loads.  Importing the package itself, or any NumPy-only module
(vocabulary, decoding, metrics, datasets, bundles, the PyTorch port),
does neither: ``THEANO_FLAGS``, ``sys.meta_path`` and the allocator stay
as they were.

Code of yours that imports Theano or Lasagne before any of the package's
Theano modules does the same first::

    import lasagne_tagger.runtime._theano  # noqa: F401
    import theano

Both steps are cheap and idempotent (a flag set where the user set none,
import hooks installed once; neither imports Theano) and respect the
user's ``THEANO_FLAGS`` and ``.theanorc``.  ``LASAGNE_TAGGER_NO_COMPAT``
and ``LASAGNE_TAGGER_NO_DEFAULTS`` turn them off.  :data:`APPLIED` says
what this process's first import changed.
"""
from . import compat, theano_defaults

__all__ = ['APPLIED']

#: ``{'compat': ..., 'defaults': ...}``: what :func:`compat.apply` and
#: :func:`theano_defaults.apply` changed when this module was first
#: imported (a later import is a no-op: Python imports a module once).
APPLIED = {'compat': compat.apply(), 'defaults': theano_defaults.apply()}
