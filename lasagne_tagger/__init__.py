"""lasagne_tagger: a Theano + Lasagne reproduction of a 2016 fashion tagger.

Importing the package applies :mod:`lasagne_tagger.compat` (cheap: it sets a
Theano flag if needed and installs import hooks; it imports neither Theano
nor Lasagne), so every submodule can then import Lasagne safely, then the
project's faster Theano defaults (:mod:`lasagne_tagger.theano_defaults`,
``openmp=True`` unless the user set ``openmp``).  (The ``malloc`` settings
of :mod:`lasagne_tagger.allocator` wait until a function is compiled.)
"""
from . import compat as _compat
from . import theano_defaults as _theano_defaults

__version__ = '0.1.0'

_compat.apply()
_theano_defaults.apply()
