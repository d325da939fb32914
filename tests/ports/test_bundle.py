"""Reference bundles: the Theano export's content and layout (checked against
the independent NumPy GoogLeNet and a NumPy LSTM written from the format's
documentation), and `reference compare` on good and bad candidates."""
import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from lasagne_tagger.ports import bundle
from lasagne_tagger import cli
from lasagne_tagger.model import googlenet
from lasagne_tagger.data import preprocess

import numpy_reference as ref

from repo import ROOT


def _copy(src, tmp_path, name='b.h5'):
    dst = tmp_path / name
    shutil.copyfile(src, dst)
    return dst


def _compare(capsys, a, b, *extra):
    code = cli.main(['reference', 'compare', str(a), str(b)] + list(extra))
    out, err = capsys.readouterr()
    return code, out, err


# --- the export ---------------------------------------------------------------

def test_export_holds_inputs_weights_activations_and_metadata(
        tiny_reference):
    with bundle.open_bundle(tiny_reference) as r:
        assert r.format_version == bundle.FORMAT_VERSION
        meta = r.meta
        for key in ('theano_version', 'lasagne_version', 'numpy_version',
                    'project_version', 'floatX', 'theano_flags',
                    'weights_sha256', 'inputs_sha256', 'preprocessing'):
            assert key in meta, key
        assert meta['theano_version'] == '1.0.5'
        pre = json.loads(meta['preprocessing'])
        assert pre['mean_bgr'] == [104.0, 117.0, 123.0]
        assert pre['crop_size'] == 32 and pre['channel_order'] == 'BGR'
        crops = r.array('inputs/crops')
        assert crops.dtype == np.uint8 and crops.shape == (4, 32, 32, 3)
        np.testing.assert_array_equal(
            r.array('inputs/batch'),
            preprocess.to_network_input(crops, r.info('inputs/batch')[1]))
        assert meta['inputs_sha256'] == bundle.inputs_digest(crops)
        weights = {k[len('weights/'):]: r.array(k) for k in r.order
                   if k.startswith('weights/')}
        assert meta['weights_sha256'] == bundle.weights_digest(weights)
        assert len(r.weights('cnn')) == 2 * len(googlenet.PARAM_LAYERS)
        assert r.weights('cnn')['conv1/7x7_s2/W'].shape == (8, 3, 7, 7)
        assert r.weights('cnn')['loss3/classifier/W'].shape == (128, 10)
        cnn = r.model('cnn')
        layers = [k[len('activations/cnn/'):] for k in r.order
                  if k.startswith('activations/cnn/')]
        assert layers == cnn['layers']
        assert layers[0] == 'conv1/7x7_s2' and layers[-1] == 'prob'
        for name in ('pool1/norm1', 'inception_4a/5x5_reduce',
                     'inception_5b/output', 'pool5/7x7_s1',
                     'loss3/classifier'):
            assert name in layers
        tagger = r.model('tagger')
        assert tagger['gate_order'] == ['input', 'forget', 'cell', 'output']
        L, H = tagger['max_len'], tagger['hidden_size']
        assert r.info('activations/tagger/cell')[0] == (4, L + 2, H)
        tags = [json.loads(t) for t in r.array('decoded/tags')]
        assert len({tuple(t) for t in tags}) > 1        # images differ
        assert r.order.index('activations/cnn/prob') < \
            r.order.index('activations/tagger/cell')


def test_weights_are_caffe_layout_by_the_numpy_googlenet(tiny_reference):
    """The independent NumPy network (Caffe's definitions) fed the bundle's
    weights in the documented layout reproduces the bundle's activations."""
    with bundle.open_bundle(tiny_reference) as r:
        w = r.weights('cnn')
        params = [w['%s/%s' % (n, k)] for n in googlenet.PARAM_LAYERS
                  for k in ('W', 'b')]
        acts = ref.googlenet_forward(r.array('inputs/batch'), params)
        for name in ('conv1/7x7_s2', 'pool1/norm1', 'inception_3a/output',
                     'inception_5b/output', 'pool5/7x7_s1', 'prob'):
            np.testing.assert_allclose(
                r.array('activations/cnn/' + name), acts[name], rtol=1e-5,
                atol=1e-6 * np.abs(acts[name]).max(), err_msg=name)


def _numpy_greedy(w, feats, max_len):
    """Greedy decoding from the format's documentation alone."""
    sig = lambda z: 1 / (1 + np.exp(-z))
    H = w['lstm/W_hid'].shape[0]
    peep = w['lstm/w_peephole']

    def step(x, c, h):
        g = x @ w['lstm/W_in'] + h @ w['lstm/W_hid'] + w['lstm/b']
        i = sig(g[:, :H] + c * peep[0])
        f = sig(g[:, H:2 * H] + c * peep[1])
        c = f * c + i * np.tanh(g[:, 2 * H:3 * H])
        o = sig(g[:, 3 * H:] + c * peep[2])
        h = o * np.tanh(c)
        z = h @ w['logits/W'] + w['logits/b']
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return c, h, e / e.sum(axis=1, keepdims=True)

    n = len(feats)
    c = np.tile(w['lstm/cell_init'], (n, 1))
    h = np.tile(w['lstm/hid_init'], (n, 1))
    c, h, p = step(feats @ w['image_embedding/W'] + w['image_embedding/b'],
                   c, h)
    hids = [h]
    c, h, p = step(w['tag_embedding/W'][np.full(n, 1)], c, h)
    hids.append(h)
    blocked = np.zeros(p.shape, bool)
    blocked[:, :2] = True
    done = np.zeros(n, bool)
    tokens = []
    for _ in range(max_len):
        tok = np.argmax(np.where(blocked, -1, p), axis=1)
        tok[done] = 0
        blocked[np.arange(n), tok] = True
        done |= tok == 2
        tokens.append(tok)
        c, h, p = step(w['tag_embedding/W'][tok], c, h)
        hids.append(h)
    return np.stack(tokens, 1), np.stack(hids, 1)


def test_tagger_layout_by_a_numpy_lstm(tiny_reference):
    with bundle.open_bundle(tiny_reference) as r:
        w = r.weights('tagger')
        max_len = r.model('tagger')['max_len']
        tokens, hids = _numpy_greedy(
            w, r.array('activations/tagger/features'), max_len)
        np.testing.assert_array_equal(tokens, r.array('decoded/tokens'))
        live = r.array('activations/tagger/live').astype(bool)
        np.testing.assert_allclose(r.array('activations/tagger/hidden')[live],
                                   hids[live], rtol=1e-6, atol=1e-9)
        np.testing.assert_array_equal(live, bundle.live_steps(tokens))
        vocab = r.model('tagger')['vocabulary']
        assert [json.loads(t) for t in r.array('decoded/tags')] == \
            bundle.decode_tags(tokens, vocab)


def test_export_cli_with_photos_reports_a_bad_one(tmp_path, capsys):
    from PIL import Image
    rng = np.random.RandomState(0)
    good = tmp_path / 'photo.png'
    Image.fromarray(rng.randint(0, 255, (50, 40, 3), np.uint8)).save(good)
    bad = tmp_path / 'broken.jpg'
    bad.write_bytes(b'\xff\xd8 not a jpeg')
    out_path = tmp_path / 'photos.h5'
    code = cli.main(['reference', 'export', str(good), str(bad), '--out',
                     str(out_path), '--width', '0.125', '--image-size', '32',
                     '--num-classes', '10', '--hidden-size', '8', '--quiet',
                     '--json'])
    out, err = capsys.readouterr()
    assert code == 1
    assert 'broken.jpg' in err and 'error:' in err
    assert [r['path'] for r in json.loads(out)['results']] == [str(good)]
    with bundle.open_bundle(out_path) as r:
        assert list(r.array('inputs/names')) == [str(good)]
        assert r.array('inputs/crops').shape == (1, 32, 32, 3)


# --- compare ------------------------------------------------------------------

def test_identical_bundles_pass(tiny_reference, tmp_path, capsys):
    code, out, _ = _compare(capsys, tiny_reference,
                            _copy(tiny_reference, tmp_path))
    assert code == 0
    assert 'decoded tags: identical' in out
    assert 'PASS' in out and 'FAIL' not in out
    header = [l for l in out.splitlines() if l.startswith('array')][0]
    assert 'max abs' in header and 'max rel' in header and 'shape' in header
    assert any(l.startswith('activations/cnn/inception_4a/3x3 ')
               and '(4, 26, 2, 2)' in l for l in out.splitlines())


def _edit(path, key, change):
    with h5py.File(path, 'r+') as h5:
        data = h5[key][()]
        del h5[key]
        h5[key] = change(data)


def test_perturbed_layer_is_named_first_divergence(tiny_reference, tmp_path,
                                                   capsys):
    b = _copy(tiny_reference, tmp_path)
    rng = np.random.RandomState(0)
    # a real divergence in one mid layer, and a later one
    for key in ('activations/cnn/inception_4a/3x3', 'activations/cnn/prob'):
        _edit(b, key, lambda a: a + 0.01 * np.abs(a).max()
              * rng.standard_normal(a.shape))
    code, out, _ = _compare(capsys, tiny_reference, b)
    assert code == 1
    assert 'first divergence: activations/cnn/inception_4a/3x3' in out
    row = [l for l in out.splitlines()
           if l.startswith('activations/cnn/inception_4a/3x3 ')][0]
    assert row.endswith('DIVERGES')
    assert 'FAILED: 2 problem(s)' in out


def test_float32_sized_noise_passes_and_tolerances_apply(tiny_reference,
                                                         tmp_path, capsys):
    b = _copy(tiny_reference, tmp_path)
    key = 'activations/cnn/inception_4a/output'
    _edit(b, key, lambda a: (a * (1 + 3e-6)).astype(np.float32))
    assert _compare(capsys, tiny_reference, b)[0] == 0
    code, out, _ = _compare(capsys, tiny_reference, b, '--rtol', '1e-7')
    assert code == 1 and 'first divergence: %s' % key in out


@pytest.mark.parametrize('case, expect', [
    ('missing', 'missing in B: the candidate has no '
                'activations/cnn/inception_3b/5x5'),
    ('nan', 'NaN in B activations/cnn/inception_3b/5x5'),
    ('shape', 'shape mismatch at activations/cnn/inception_3b/5x5'),
    ('dtype', 'dtype mismatch at decoded/tokens: A int32, B float64'),
])
def test_structural_problems_are_named_not_numeric(tiny_reference, tmp_path,
                                                   capsys, case, expect):
    b = _copy(tiny_reference, tmp_path)
    key = 'activations/cnn/inception_3b/5x5'
    if case == 'missing':
        with h5py.File(b, 'r+') as h5:
            del h5[key]
    elif case == 'nan':
        def poison(a):
            a = a.copy()
            a[0, 0, 0, 0] = np.nan
            return a
        _edit(b, key, poison)
    elif case == 'shape':
        _edit(b, key, lambda a: a[:, :-1])
    else:
        _edit(b, 'decoded/tokens', lambda a: a.astype(np.float64))
    code, out, _ = _compare(capsys, tiny_reference, b)
    assert code == 1
    fails = [l for l in out.splitlines() if l.startswith('FAIL: ')]
    assert any(expect in l for l in fails), out
    assert len(fails) == 1
    if case != 'dtype':
        assert 'first divergence: %s' % key in out


def test_different_tags_fail(tiny_reference, tmp_path, capsys):
    b = _copy(tiny_reference, tmp_path)
    _edit(b, 'decoded/tags', lambda a: np.array(
        [json.dumps(['hat'])] + [x.decode() for x in a[1:]],
        dtype=h5py.string_dtype()))
    code, out, _ = _compare(capsys, tiny_reference, b)
    assert code == 1
    assert 'decoded tags: DIFFER' in out
    assert 'decoded/tags differs in 1 of 4 entries' in out


def _attr(path, key, value):
    with h5py.File(path, 'r+') as h5:
        if value is None:
            del h5.attrs[key]
        else:
            h5.attrs[key] = value


@pytest.mark.parametrize('case, expect', [
    ('newer', 'bundle format version 2 is newer than this reader'),
    ('truncated', 'truncated HDF5 file'),
    ('incomplete', 'incomplete bundle: its writer did not finish'),
    ('foreign', 'not a reference bundle'),
    ('text', 'not an HDF5 file'),
    ('absent', 'no such bundle file'),
])
def test_unreadable_bundles_are_one_clear_error(tiny_reference, tmp_path,
                                                capsys, case, expect):
    b = _copy(tiny_reference, tmp_path)
    if case == 'newer':
        _attr(b, 'format_version', 2)
    elif case == 'truncated':
        data = open(b, 'rb').read()
        open(b, 'wb').write(data[:len(data) // 2])
    elif case == 'incomplete':
        _attr(b, 'complete', None)
    elif case == 'foreign':
        _attr(b, 'format', 'something.else')
    elif case == 'text':
        b.write_text('hello\n')
    else:
        b = tmp_path / 'nothing.h5'
    code, out, err = _compare(capsys, tiny_reference, b)
    assert code == 2
    assert err.count('\n') == 1 and err.startswith('error: %s: ' % b)
    assert expect in err
    assert 'Traceback' not in err


def test_bundle_module_runs_without_theano(tiny_reference, tmp_path):
    b = _copy(tiny_reference, tmp_path)
    code = ("import sys; sys.modules['theano'] = None; "
            "sys.modules['lasagne'] = None\n"
            "from lasagne_tagger.ports import bundle\n"
            "code = bundle.main(['compare', %r, %r])\n"
            "assert 'theano' not in [m for m in sys.modules "
            "if sys.modules[m] is not None]\n"
            "sys.exit(code)" % (str(tiny_reference), str(b)))
    done = subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert 'PASS' in done.stdout


def test_write_bundle_is_atomic_and_checks_inputs(tmp_path):
    from lasagne_tagger.errors import TaggerError
    with pytest.raises(TaggerError, match='inputs/crops'):
        bundle.write_bundle(tmp_path / 'x.h5', {}, {}, {'a': np.zeros(2)})
    assert os.listdir(tmp_path) == []


def test_neutral_weights_load_back_into_theano(tiny_reference):
    """set_cnn_weights / set_tagger_weights invert cnn_weights /
    tagger_weights (how a port's own weights get into the reference)."""
    from lasagne_tagger.ports import reference
    from lasagne_tagger.tagging import tagger
    with bundle.open_bundle(tiny_reference) as r:
        cnn_w, tag_w = r.weights('cnn'), r.weights('tagger')
        info = r.model('tagger')
    net = googlenet.build_model(image_size=32, num_classes=10, width=0.125)
    reference.set_cnn_weights(net, cnn_w)
    for key, value in reference.cnn_weights(net).items():
        np.testing.assert_array_equal(value, cnn_w[key[len('cnn/'):]])
    t_net = tagger.build_tagger(
        info['feature_size'], len(info['vocabulary']['tags']) + 3,
        info['max_len'], tagger.TaggerConfig(embed_size=info['embed_size'],
                                             hidden_size=info['hidden_size']))
    reference.set_tagger_weights(t_net, tag_w)
    for key, value in reference.tagger_weights(t_net).items():
        np.testing.assert_array_equal(value, tag_w[key[len('tagger/'):]])
