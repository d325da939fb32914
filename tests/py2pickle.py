"""Write pickles the way Python 2's cPickle (protocol 2) wrote the model zoo's
``blvc_googlenet.pkl``: every ``str`` and ``bytes`` (array data included) is
a Python 2 byte string (``BINSTRING``), which Python 3 reads back only with
``encoding='latin1'``."""
import io
import pickle
import struct

import numpy as np


class Py2Pickler(pickle._Pickler):
    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        data = obj.encode('latin1') if isinstance(obj, str) else bytes(obj)
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack('<i', len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str


def dumps(obj):
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def write_model_zoo_pickle(path, param_values, synsets=None):
    """A file with the real blvc_googlenet.pkl's structure."""
    if synsets is None:
        synsets = ['n%08d synset %d' % (i, i) for i in range(1000)]
    data = {'param values': [np.asarray(v, dtype=np.float32)
                             for v in param_values],
            'synset words': list(synsets)}
    with open(path, 'wb') as fh:
        fh.write(dumps(data))
    return path
