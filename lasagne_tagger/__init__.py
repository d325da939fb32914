"""lasagne_tagger: a Theano + Lasagne reproduction of a 2016 fashion tagger.

Importing the package applies :mod:`lasagne_tagger.compat` (cheap: it sets a
Theano flag if needed and installs two import hooks; it imports neither
Theano nor Lasagne), so every submodule can then import Lasagne safely.
"""
from . import compat as _compat

__version__ = '0.1.0'

_compat.apply()
