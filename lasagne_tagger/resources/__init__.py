"""Data files that ship with the package: the taxonomies
(``taxonomy_<name>.json``), the ILSVRC-2012 synset words and the header
that maps Theano's BLAS names onto scipy-openblas32's.  NumPy-free."""
import os

__all__ = ['resource_path', 'resource_names']


def resource_path(name):
    """The absolute path of the packaged file ``name``."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), name)


def resource_names():
    """The names of the packaged data files, sorted."""
    return sorted(n for n in os.listdir(resource_path('.'))
                  if not n.endswith(('.py', '.pyc')) and n != '__pycache__')
