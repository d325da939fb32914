"""Model-zoo weights: restricted unpickling, structure checks, download."""
import os
import pickle

import numpy as np
import pytest

from lasagne_tagger.model import weights
from lasagne_tagger.errors import TaggerError

import py2pickle


def test_python2_pickle_needs_latin1_and_loads(tmp_path):
    arrays = [np.arange(12, dtype=np.float32).reshape(3, 4),
              np.ones(3, np.float32)]
    path = py2pickle.write_model_zoo_pickle(tmp_path / 'w.pkl', arrays)
    with open(path, 'rb') as fh:
        with pytest.raises(UnicodeDecodeError):
            pickle.load(fh)                   # what a naive loader hits
    data = weights.load_model_zoo_pickle(path)
    assert len(data['synset words']) == 1000
    assert all(np.array_equal(a, b)
               for a, b in zip(data['param values'], arrays))


class _Evil:
    def __reduce__(self):
        return (os.system, ('echo pwned',))


def test_pickle_importing_anything_else_is_refused(tmp_path):
    path = tmp_path / 'evil.pkl'
    path.write_bytes(pickle.dumps({'param values': [_Evil()]}, protocol=2))
    with pytest.raises(TaggerError, match=r'evil.pkl: unsafe or invalid '
                                          r'pickle: refused to import '
                                          r'(posix|os)\.system'):
        weights.load_model_zoo_pickle(path)


@pytest.mark.parametrize('content, message', [
    (b'', 'not a readable model-zoo pickle'),
    (b'hello, this is text', 'unsafe or invalid pickle|not a readable'),
    (py2pickle.dumps([1, 2]), "expected a dict with 'param values'"),
    (py2pickle.dumps({'param values': [1], 'synset words': []}),
     'list of NumPy arrays'),
    (py2pickle.dumps({'param values': [], 'synset words': ['a']}),
     'list of 1000 strings'),
])
def test_wrong_files_get_one_line_errors(tmp_path, content, message):
    path = tmp_path / 'bad.pkl'
    path.write_bytes(content)
    with pytest.raises(TaggerError, match=message) as info:
        weights.load_model_zoo_pickle(path)
    assert 'bad.pkl' in str(info.value) and '\n' not in str(info.value)


def test_missing_file_says_how_to_fetch(tmp_path):
    with pytest.raises(TaggerError, match='lasagne-tagger fetch-weights'):
        weights.load_model_zoo_pickle(tmp_path / 'nope.pkl')


def test_sha256_is_checked(tmp_path):
    path = py2pickle.write_model_zoo_pickle(tmp_path / 'w.pkl', [])
    digest = weights.sha256sum(path)
    weights.load_model_zoo_pickle(path, sha256=digest)
    with pytest.raises(TaggerError, match='SHA-256 is'):
        weights.load_model_zoo_pickle(path, sha256='0' * 64)


# The download chain (model zoo over S3 and HTTPS, the BVLC caffemodel), its
# resume and its checks: tests/test_caffemodel.py.
