"""The real ImageNet weights, proven without the real files: caffemodels of
both encodings and a model-zoo pickle written from the same seeded weights
all install as the same model-zoo pickle; bad files are refused in one
line; the default source chain reports each source's fate."""
import hashlib
import http.server
import io
import os
import pickle
import subprocess
import sys
import threading

import numpy as np
import pytest

import caffe_writer
import numpy_reference
import py2pickle
from lasagne_tagger.model import caffemodel, weights
from lasagne_tagger.errors import TaggerError


@pytest.fixture(scope='module')
def values():
    return numpy_reference.random_params(np.random.RandomState(11))


@pytest.fixture(scope='module')
def files(values, tmp_path_factory):
    """The same weights as a V1 caffemodel, a V2 caffemodel and a model-zoo
    pickle (Python 2 style, the package's synset words)."""
    d = tmp_path_factory.mktemp('weights')
    out = {}
    for encoding in ('v1', 'v2'):
        out[encoding] = caffe_writer.write_caffemodel(
            str(d / ('googlenet_%s.caffemodel' % encoding)), values,
            encoding)
    out['pkl'] = py2pickle.write_model_zoo_pickle(
        str(d / 'blvc_googlenet.pkl'), values, weights.synset_words())
    return out


def _sha1(path):
    return caffemodel.sha1sum(path)


@pytest.mark.parametrize('encoding', ['v1', 'v2'])
def test_both_encodings_read_back_the_same_arrays(files, values, encoding):
    layers = caffemodel.read_caffemodel(files[encoding])
    assert layers['conv1/7x7_s2'][0] == 'Convolution'
    assert layers['loss3/classifier'][0] == 'InnerProduct'
    assert 'loss1/classifier' in layers and 'loss2/conv' in layers
    assert 'data' not in layers            # no blobs: not listed
    got = caffemodel.model_zoo_values(layers, files[encoding])
    assert len(got) == 116
    for a, b in zip(got, values):
        assert a.dtype == np.float32 and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_caffemodels_and_the_pickle_install_as_the_same_pickle(
        files, values, tmp_path):
    outs = {}
    for kind in ('v1', 'v2', 'pkl'):
        dest = str(tmp_path / ('%s.pkl' % kind))
        sha1 = _sha1(files[kind]) if kind != 'pkl' else None
        result = weights.install_from(files[kind], dest, sha1=sha1,
                                      log=lambda line: None)
        assert result['kind'] == ('pickle' if kind == 'pkl' else
                                  'caffemodel')
        outs[kind] = weights.load_model_zoo_pickle(dest)
    # the pickle is copied byte for byte
    assert open(files['pkl'], 'rb').read() == \
        open(tmp_path / 'pkl.pkl', 'rb').read()
    # conversions of both encodings are the same file
    assert open(tmp_path / 'v1.pkl', 'rb').read() == \
        open(tmp_path / 'v2.pkl', 'rb').read()
    for kind in ('v1', 'v2'):
        assert sorted(outs[kind]) == ['param values', 'synset words']
        assert outs[kind]['synset words'] == outs['pkl']['synset words']
        for a, b, c in zip(outs[kind]['param values'],
                           outs['pkl']['param values'], values):
            assert a.dtype == b.dtype == np.float32
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(a, c)
    # readable as any Lasagne user reads the model zoo's file
    with open(tmp_path / 'v1.pkl', 'rb') as fh:
        plain = pickle.load(fh, encoding='latin1')
    assert len(plain['param values']) == 116


def test_the_network_gives_the_same_outputs_from_either_file(
        files, tmp_path):
    """Full size: GoogLeNet's probabilities on embedded photos from the
    converted caffemodel and from the pickle (within 1e-6)."""
    from lasagne_tagger.model import imagenet
    from lasagne_tagger.data import synthetic
    from lasagne_tagger.data.preprocess import to_network_input
    dest = str(tmp_path / 'converted.pkl')
    weights.install_from(files['v1'], dest, sha1=_sha1(files['v1']),
                         log=lambda line: None)
    crops = np.stack([np.asarray(synthetic.render_garment(
        cls, 224, np.random.default_rng(i)))
        for i, cls in enumerate(synthetic.CLASSES[:3])])
    probs = []
    for path in (files['pkl'], dest):
        net, synsets = imagenet.load_imagenet_model(path)
        forward = imagenet.compile_forward(net, ('prob',))
        probs.append(np.asarray(forward(to_network_input(crops))[0]))
        assert synsets == weights.synset_words()
    assert probs[0].shape == (3, 1000)
    np.testing.assert_allclose(probs[0], probs[1], rtol=0, atol=1e-6)


def _edited(values, tmp_path, edit, name='edited.caffemodel'):
    path = str(tmp_path / name)
    caffe_writer.write_caffemodel(path, values, 'v1', edit=edit)
    return path


def test_a_missing_layer_is_one_line_naming_it(values, tmp_path):
    path = _edited(values, tmp_path, lambda ls: [
        l for l in ls if l[0] != 'inception_4c/5x5'])
    with pytest.raises(TaggerError, match=r'edited\.caffemodel: layer '
                       r'inception_4c/5x5 is missing'):
        weights.install_from(path, str(tmp_path / 'o.pkl'),
                             sha1=_sha1(path))
    assert not (tmp_path / 'o.pkl').exists()


def test_a_wrongly_shaped_layer_is_one_line_with_both_shapes(values,
                                                             tmp_path):
    def edit(ls):
        return [(n, k, [a[:, :, :5, :5], a2] if n == 'conv1/7x7_s2' else
                 arrays) for n, k, arrays in ls
                for a, a2 in [(arrays + [None, None])[:2]]]
    path = _edited(values, tmp_path, edit)
    with pytest.raises(TaggerError, match=r'layer conv1/7x7_s2: weights have '
                       r'shape \(64, 3, 5, 5\), GoogLeNet expects '
                       r'\(64, 3, 7, 7\)'):
        weights.install_from(path, str(tmp_path / 'o.pkl'),
                             sha1=_sha1(path))
    # the classifier's shape is reported as Caffe holds it, (out, in)
    def edit_fc(ls):
        return [(n, k, [arrays[0][:500], arrays[1][:500]])
                if n == 'loss3/classifier' else (n, k, arrays)
                for n, k, arrays in ls]
    path = _edited(values, tmp_path, edit_fc, 'fc.caffemodel')
    with pytest.raises(TaggerError, match=r'layer loss3/classifier: weights '
                       r'have shape \(500, 1024\), GoogLeNet expects '
                       r'\(1000, 1024\)'):
        caffemodel.model_zoo_values(caffemodel.read_caffemodel(path), path)


def test_a_layer_of_another_network_is_refused(values, tmp_path):
    path = _edited(values, tmp_path, lambda ls: ls + [
        ('fc6', 'InnerProduct', [np.zeros((4, 4)), np.zeros(4)])])
    with pytest.raises(TaggerError, match='layer fc6 holds weights but is '
                       'not part of GoogLeNet'):
        caffemodel.model_zoo_values(caffemodel.read_caffemodel(path), path)


def test_a_truncated_caffemodel_is_refused(files, tmp_path):
    data = open(files['v2'], 'rb').read()
    cut = tmp_path / 'cut.caffemodel'
    cut.write_bytes(data[:len(data) // 2])
    # by its SHA-1 first (not the original's) ...
    with pytest.raises(TaggerError, match=r'cut\.caffemodel: SHA-1 is [0-9a-f]'
                       r'{40}, not %s \(the BVLC original\'s\); pass --sha1'
                       % caffemodel.BVLC_SHA1):
        weights.install_from(str(cut), str(tmp_path / 'o.pkl'))
    # ... and by its content when the digest is waved through
    with pytest.raises(TaggerError) as err:
        weights.install_from(str(cut), str(tmp_path / 'o.pkl'),
                             sha1=_sha1(str(cut)))
    text = str(err.value)
    assert text.startswith(str(cut)) and '\n' not in text
    assert 'truncated' in text or 'is missing' in text
    assert not (tmp_path / 'o.pkl').exists()


def test_files_that_are_neither_are_refused(tmp_path):
    text = tmp_path / 'notes.txt'
    text.write_text('hello, not weights\n')
    with pytest.raises(TaggerError, match='neither a model-zoo pickle nor a '
                       'Caffe model'):
        weights.install_from(str(text), str(tmp_path / 'o.pkl'))
    bad = tmp_path / 'bad.caffemodel'
    bad.write_bytes(b'\x12\xff\xff\xff\xff\x0fxx')    # field 2, absurd length
    with pytest.raises(TaggerError, match='not a Caffe model'):
        caffemodel.read_caffemodel(str(bad))


def test_a_pickle_of_the_wrong_shapes_is_refused(values, tmp_path):
    wrong = list(values)
    wrong[0] = wrong[0][:, :, :5, :5]
    path = py2pickle.write_model_zoo_pickle(str(tmp_path / 'w.pkl'), wrong)
    with pytest.raises(TaggerError, match=r'parameter 0 \(conv1/7x7_s2 W\) '
                       r'has shape \(64, 3, 5, 5\), GoogLeNet expects'):
        weights.install_from(path, str(tmp_path / 'o.pkl'))


def test_synset_words_ship_with_the_package():
    words = weights.synset_words()
    # 999 different: 'crane' names both a bird and a machine (ILSVRC-2012)
    assert len(words) == 1000 and len(set(words)) == 999
    assert [i for i, w in enumerate(words) if w == 'crane'] == [134, 517]
    assert words[0] == 'tench, Tinca tinca'          # no WordNet id
    assert any('Windsor tie' in w for w in words)
    digest = hashlib.sha256('\n'.join(words).encode()).hexdigest()
    assert digest == SYNSETS_SHA256


# SHA-256 of the 1000 words joined by newlines: Caffe's ILSVRC-2012
# synset_words.txt in its order, each line without its WordNet id (the
# shipped file's own SHA-256 is acf75ef0...2857355).
SYNSETS_SHA256 = 'a40d9be82eb4738becd1dd69991b89f87f309975e860a6f3f45395d8c06a7e0d'


# --- the default chain --------------------------------------------------------

class _Server(http.server.BaseHTTPRequestHandler):
    routes = {}
    requests = []

    def do_GET(self):
        type(self).requests.append((self.path, self.headers.get('Range')))
        status, body = self.routes.get(self.path, (404, b''))
        start = 0
        rng = self.headers.get('Range')
        if status == 200 and rng:
            start = int(rng.split('=')[1].rstrip('-'))
            status = 206
        self.send_response(status)
        self.send_header('Content-Length', str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Server.routes, _Server.requests = {}, []
    httpd = http.server.HTTPServer(('127.0.0.1', 0), _Server)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield 'http://127.0.0.1:%d' % httpd.server_port
    httpd.shutdown()


class _FakeS3(object):
    def __init__(self, payload):
        self.payload, self.calls = payload, []

    def get_object(self, **kwargs):
        self.calls.append(kwargs)
        start = int(kwargs.get('Range', 'bytes=0-').split('=')[1][:-1])
        return {'Body': io.BytesIO(self.payload[start:])}


def test_the_chain_says_each_sources_fate_and_ends_with_bvlc(
        files, server, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'boto3', None)       # not installed
    _Server.routes = {'/zoo.pkl': (403, b'AccessDenied'),
                      '/bvlc.caffemodel': (200, open(files['v1'], 'rb')
                                           .read())}
    lines = []
    dest = str(tmp_path / 'pretrained' / 'blvc_googlenet.pkl')
    out = weights.fetch(dest, url=server + '/zoo.pkl',
                        bvlc_url=server + '/bvlc.caffemodel',
                        bvlc_sha1=_sha1(files['v1']), progress=None,
                        log=lines.append)
    assert out == dest
    assert len(lines) == 3
    assert lines[0].startswith('model zoo (S3 API, requester pays): boto3 '
                               'is not installed')
    assert lines[1].startswith('model zoo (HTTPS): HTTP 403')
    assert 'requester-pays' in lines[1]
    assert ('aws s3 cp s3://lasagne/recipes/pretrained/imagenet/'
            'blvc_googlenet.pkl %s --request-payer requester' % dest) \
        in lines[1]
    assert lines[2].startswith('BVLC caffemodel: got ')
    # the verified original is kept beside the converted pickle
    assert _sha1(str(tmp_path / 'pretrained' /
                     'bvlc_googlenet.caffemodel')) == _sha1(files['v1'])
    ref = weights.load_model_zoo_pickle(files['pkl'])
    got = weights.load_model_zoo_pickle(dest)
    for a, b in zip(got['param values'], ref['param values']):
        np.testing.assert_array_equal(a, b)
    # a second call finds the file and verifies it
    lines.clear()
    weights.fetch(dest, log=lines.append)
    assert lines == ['%s: already here and verified' % dest]


def test_s3_with_credentials_resumes_and_pays_as_requester(files, tmp_path):
    payload = open(files['pkl'], 'rb').read()
    client = _FakeS3(payload)
    dest = str(tmp_path / 'w.pkl')
    with open(dest + '.part', 'wb') as fh:         # an interrupted download
        fh.write(payload[:1000])
    lines = []
    weights.fetch(dest, sources=['s3'], s3_client=client, size=len(payload),
                  progress=None, log=lines.append)
    assert client.calls == [dict(Bucket='lasagne', Key='recipes/pretrained/'
                                 'imagenet/blvc_googlenet.pkl',
                                 RequestPayer='requester',
                                 Range='bytes=1000-')]
    assert open(dest, 'rb').read() == payload
    assert lines == ['model zoo (S3 API, requester pays): got s3://lasagne/'
                     'recipes/pretrained/imagenet/blvc_googlenet.pkl -> %s'
                     % dest]


def test_https_download_resumes_and_checks_what_it_got(files, server,
                                                        tmp_path):
    payload = open(files['pkl'], 'rb').read()
    _Server.routes = {'/zoo.pkl': (200, payload)}
    dest = str(tmp_path / 'w.pkl')
    with open(dest + '.part', 'wb') as fh:
        fh.write(payload[:5000])
    weights.fetch(dest, sources=['https'], url=server + '/zoo.pkl',
                  size=len(payload), progress=None, log=lambda line: None)
    assert _Server.requests[-1] == ('/zoo.pkl', 'bytes=5000-')
    assert open(dest, 'rb').read() == payload
    # a complete download of the right size that is not the network
    junk = b'\x80\x02' + os.urandom(len(payload) - 2)
    _Server.routes = {'/zoo.pkl': (200, junk)}
    lines = []
    with pytest.raises(TaggerError, match='no source gave the weights'):
        weights.fetch(str(tmp_path / 'j.pkl'), sources=['https'],
                      url=server + '/zoo.pkl', size=len(junk), progress=None,
                      log=lines.append)
    assert len(lines) == 1 and 'model zoo (HTTPS)' in lines[0]
    assert not (tmp_path / 'j.pkl').exists()
    assert not (tmp_path / 'j.pkl.part').exists()     # not kept to resume


def test_wrong_sha256_is_refused(files, server, tmp_path):
    payload = open(files['pkl'], 'rb').read()
    _Server.routes = {'/zoo.pkl': (200, payload)}
    with pytest.raises(TaggerError, match='SHA-256 is'):
        weights.fetch(str(tmp_path / 'w.pkl'), sources=['https'],
                      url=server + '/zoo.pkl', size=len(payload),
                      sha256='ab' * 32, progress=None,
                      log=lambda line: None)
    assert not (tmp_path / 'w.pkl').exists()


def test_offline_every_source_says_why(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'boto3', None)
    lines = []
    with pytest.raises(TaggerError) as err:
        weights.fetch(str(tmp_path / 'w.pkl'), url='http://127.0.0.1:9/x',
                      bvlc_url='http://127.0.0.1:9/y', timeout=5,
                      progress=None, log=lines.append)
    assert len(lines) == 3 and all('cannot connect' in l for l in lines[1:])
    assert '--from FILE' in str(err.value)


def test_cli_installs_from_a_file_and_refuses_a_bad_one(files, tmp_path):
    def run(*argv):
        return subprocess.run(
            [sys.executable, '-m', 'lasagne_tagger.cli', 'fetch-weights']
            + list(argv), capture_output=True, text=True, timeout=300)
    dest = str(tmp_path / 'out.pkl')
    ok = run('--from', files['v2'], '--sha1', _sha1(files['v2']),
             '--dest', dest)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == 'weights ready: %s' % dest
    assert 'converted -> %s (model-zoo layout, SHA-256 ' % dest in ok.stderr
    bad = run('--from', files['v2'], '--dest', str(tmp_path / 'b.pkl'))
    assert bad.returncode == 2
    assert [l for l in bad.stderr.splitlines() if l.strip()] == [
        l for l in bad.stderr.splitlines() if l.startswith('error: ')]
    assert 'SHA-1 is' in bad.stderr and 'Traceback' not in bad.stderr


def test_fetch_weights_through_cli_main(files, tmp_path, capsys):
    """``fetch-weights --from`` in this process (``cli.main``): a pickle
    of the model zoo's layout is installed byte for byte; a pickle whose
    SHA-256 is not the expected one is one error line, nothing written."""
    from lasagne_tagger import cli
    digest = weights.sha256sum(files['pkl'])
    dest = tmp_path / 'w.pkl'
    code = cli.main(['fetch-weights', '--from', files['pkl'], '--dest',
                     str(dest), '--sha256', digest, '--quiet'])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.strip() == 'weights ready: %s' % dest
    assert dest.read_bytes() == open(files['pkl'], 'rb').read()
    other = tmp_path / 'other.pkl'
    code = cli.main(['fetch-weights', '--from', files['pkl'], '--dest',
                     str(other), '--sha256', 'ab' * 32, '--quiet'])
    out, err = capsys.readouterr()
    assert code == 2 and not other.exists()
    assert err.count('\n') == 1 and err.startswith('error: ')
    assert files['pkl'] in err and 'SHA-256' in err
