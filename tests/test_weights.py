"""Model-zoo weights: restricted unpickling, structure checks, download."""
import http.server
import io
import os
import pickle
import threading

import numpy as np
import pytest

from lasagne_tagger import weights
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


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    payload = b''
    fail_after = None       # bytes served before the connection drops
    requests = []

    def do_GET(self):
        start = 0
        rng = self.headers.get('Range')
        type(self).requests.append(rng)
        if rng:
            start = int(rng.split('=')[1].rstrip('-'))
            self.send_response(206)
        else:
            self.send_response(200)
        body = self.payload[start:]
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if self.fail_after is not None:
            body = body[:self.fail_after]
            type(self).fail_after = None
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _RangeHandler.payload = os.urandom(300000)
    _RangeHandler.requests = []
    httpd = http.server.HTTPServer(('127.0.0.1', 0), _RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, 'http://127.0.0.1:%d/blvc_googlenet.pkl' % httpd.server_port
    httpd.shutdown()


def test_fetch_resumes_verifies_and_writes_atomically(tmp_path, server):
    _, url = server
    payload = _RangeHandler.payload
    dest = tmp_path / 'w.pkl'
    _RangeHandler.fail_after = 100000          # connection drops mid-way
    with pytest.raises(TaggerError, match='size is 100000 bytes, expected '
                                          '300000|interrupted'):
        weights.fetch(dest, url=url, size=len(payload), progress=None)
    assert not dest.exists()                   # never a partial file there
    assert (tmp_path / 'w.pkl.part').stat().st_size == 100000
    digest = __import__('hashlib').sha256(payload).hexdigest()
    out = weights.fetch(dest, url=url, size=len(payload), sha256=digest,
                        progress=io.StringIO())
    assert out == str(dest) and dest.read_bytes() == payload
    assert _RangeHandler.requests[-1] == 'bytes=100000-'
    assert not (tmp_path / 'w.pkl.part').exists()


def test_fetch_rejects_wrong_checksum(tmp_path, server):
    _, url = server
    dest = tmp_path / 'w.pkl'
    with pytest.raises(TaggerError, match='SHA-256 is'):
        weights.fetch(dest, url=url, size=None, sha256='ab' * 32,
                      progress=None)
    assert not dest.exists()


def test_fetch_offline_error_is_clear(tmp_path):
    with pytest.raises(TaggerError, match=r'cannot download http://127\.0\.0'
                                          r'\.1:9/x\.pkl .*offline'):
        weights.fetch(tmp_path / 'w.pkl', url='http://127.0.0.1:9/x.pkl',
                      progress=None, timeout=5)
