"""The LSTM tagger on tiny sizes: masking, a training step, scan greedy ==
the slow Recipes reference, training end to end, checkpoint round trip."""
import json
from collections import OrderedDict

import numpy as np
import pytest

from lasagne_tagger.tagging import tagger
from lasagne_tagger.errors import TaggerError
from lasagne_tagger.tagging.vocabulary import Vocabulary

TAXONOMY = OrderedDict([
    ('coat', ['coat', 'long sleeves', 'upper body']),
    ('shorts', ['shorts', 'lower body']),
    ('tee', ['T-shirt', 'short sleeves', 'upper body']),
])
WIDTH = 6


def _config(**kw):
    base = dict(embed_size=8, hidden_size=16, dropout=0.5, batch_size=12,
                learning_rate=0.01, iterations=240, eval_every=80, seed=3)
    base.update(kw)
    return tagger.TaggerConfig(**base)


def _vocab_and_batch():
    vocab = Vocabulary.from_taxonomy(TAXONOMY)
    inputs, targets, mask = vocab.encode_batch(list(TAXONOMY.values()))
    return vocab, inputs, targets, mask


@pytest.fixture(scope='module')
def random_net():
    import lasagne
    lasagne.random.set_rng(np.random.RandomState(0))
    vocab, inputs, targets, mask = _vocab_and_batch()
    net = tagger.build_tagger(WIDTH, vocab.size, inputs.shape[1] - 1,
                              _config())
    # Larger random weights so decoding paths differ between images.
    rng = np.random.RandomState(1)
    for p in lasagne.layers.get_all_params(net['logits'], trainable=True):
        p.set_value((rng.randn(*p.get_value().shape) * 0.8)
                    .astype(p.dtype))
    return net, vocab, inputs.shape[1] - 1


def test_greedy_scan_equals_slow_reference(random_net):
    net, vocab, max_len = random_net
    feats = np.random.RandomState(2).randn(40, WIDTH)
    fast = tagger.compile_greedy(net, max_len)
    slow = tagger.compile_sequence_probs(net)
    tokens, probs = fast(feats)
    ref_tokens, ref_probs = tagger.slow_greedy(slow, feats, max_len,
                                               vocab.size)
    assert tokens.shape == (40, max_len)
    np.testing.assert_array_equal(tokens, ref_tokens)
    np.testing.assert_allclose(probs, ref_probs, rtol=1e-6, atol=1e-9)
    assert len({tuple(t) for t in tokens}) > 3        # not a constant output
    for row in tokens:
        real = [t for t in row if t not in (vocab.pad_id, vocab.end_id)]
        assert len(real) == len(set(real))             # never twice
        assert vocab.start_id not in row
        ends = list(row).index(vocab.end_id) if vocab.end_id in row else None
        if ends is not None:
            assert all(t == vocab.pad_id for t in row[ends + 1:])


def test_beam_width_one_equals_greedy(random_net):
    net, vocab, max_len = random_net
    feats = np.random.RandomState(4).randn(6, WIDTH)
    dec = tagger.TagDecoder(net, vocab, max_len)
    greedy = dec.greedy(feats)
    beam1 = dec.beam(feats, beam_width=1)
    assert [[t for t, _ in g] for g in greedy] == \
        [[t for t, _ in b] for b in beam1]
    for g, b in zip(greedy, beam1):
        np.testing.assert_allclose([p for _, p in g], [p for _, p in b],
                                   rtol=1e-6)


def test_mask_ignores_padding_and_a_step_lowers_the_loss():
    import lasagne
    lasagne.random.set_rng(np.random.RandomState(0))
    vocab, inputs, targets, mask = _vocab_and_batch()
    cfg = _config(dropout=0.0)
    net = tagger.build_tagger(WIDTH, vocab.size, inputs.shape[1] - 1, cfg)
    train_fn, eval_fn, _, _ = tagger.compile_training(net, cfg)
    feats = np.eye(3, WIDTH)
    m = mask.astype('float64')
    before = eval_fn(feats, inputs, targets, m)
    garbage = targets.copy()
    garbage[mask == 0] = vocab.id('coat')      # change only padded targets
    assert np.allclose(eval_fn(feats, inputs, garbage, m), before)
    for _ in range(5):
        train_fn(feats, inputs, targets, m)
    after = eval_fn(feats, inputs, targets, m)
    assert after[0] < before[0]


def _write_features(path, per_class=20, rotations=2, seed=0):
    """A features file in the documented format, classes separable."""
    from lasagne_tagger.tagging import features
    rng = np.random.RandomState(seed)
    labels = np.repeat(np.arange(3), per_class)
    feats = (np.eye(3, WIDTH)[labels][:, None, :] * 3
             + rng.randn(len(labels), rotations, WIDTH) * 0.3)
    splits = np.tile(np.r_[np.zeros(per_class - 5), np.ones(5)], 3)
    return features.write_features(
        str(path), feats, labels, splits, ['train', 'validation'],
        TAXONOMY, 'pool5/7x7_s1', 'test')


@pytest.mark.slow
def test_training_end_to_end_and_checkpoint_round_trip(tmp_path):
    feats_path = _write_features(tmp_path / 'f.h5')
    tax = tmp_path / 'tax.json'
    tax.write_text(json.dumps({'classes': TAXONOMY}))
    cfg = _config(features=str(feats_path), taxonomy=str(tax))
    history = tagger.train_tagger(cfg, tmp_path / 'run', progress=False,
                                  log=lambda *a: None)
    assert [h['iteration'] for h in history] == [80, 160, 240]
    assert history[-1]['val_tag_accuracy'] > 0.95
    assert history[-1]['val_loss'] < history[0]['val_loss']
    decoder, meta = tagger.load_tagger(tmp_path / 'run' / 'best')
    assert meta['feature_layer'] == 'pool5/7x7_s1'
    probe = np.eye(3, WIDTH) * 3
    tags = [[t for t, _ in row] for row in decoder.greedy(probe)]
    assert tags == list(TAXONOMY.values())
    assert [[t for t, _ in r] for r in decoder.beam(probe, 3)] == tags

    # resume: 160 + 80 iterations == 240 uninterrupted
    cut = _config(features=str(feats_path), taxonomy=str(tax),
                  iterations=160)
    tagger.train_tagger(cut, tmp_path / 'split', progress=False,
                        log=lambda *a: None)
    resumed = tagger.train_tagger(cfg, tmp_path / 'split', resume=True,
                                  progress=False, log=lambda *a: None)
    assert resumed[-1]['val_loss'] == pytest.approx(history[-1]['val_loss'],
                                                    rel=1e-6)


def test_bad_sizes_are_named():
    with pytest.raises(TaggerError, match='bad tagger sizes: feature_size 0'):
        tagger.build_tagger(0, 10, 3, _config())


@pytest.mark.parametrize('shape', [(2, WIDTH + 1), (WIDTH,), (2, 1, WIDTH)])
def test_wrong_feature_width_is_named(random_net, shape):
    net, vocab, max_len = random_net
    dec = tagger.TagDecoder(net, vocab, max_len)
    message = r'features of shape \(%s\); the tagger expects \(N, %d\)' % (
        ', '.join(map(str, shape)) + (',' if len(shape) == 1 else ''), WIDTH)
    for decode in (dec.greedy, dec.beam):
        with pytest.raises(TaggerError, match=message):
            decode(np.zeros(shape))
    assert dec._greedy is None and dec._step is None    # refused up front


def _numpy_lstm_step(P, x, c, h):
    sig = lambda z: 1 / (1 + np.exp(-z))
    g = lambda name: x @ P['W_in_to_' + name] + h @ P['W_hid_to_' + name] \
        + P['b_' + name]
    i = sig(g('ingate') + c * P['W_cell_to_ingate'])
    f = sig(g('forgetgate') + c * P['W_cell_to_forgetgate'])
    c = f * c + i * np.tanh(g('cell'))
    o = sig(g('outgate') + c * P['W_cell_to_outgate'])
    return c, o * np.tanh(c)


def test_lstm_fixes_lasagne_01_outgate_peephole():
    """Lasagne 0.1 adds the out-gate peephole after the sigmoid (its issue
    #448); our layer matches the textbook step and stays in (-1, 1)."""
    import lasagne
    import theano
    import theano.tensor as T
    x = T.tensor3('x')
    l_in = lasagne.layers.InputLayer((4, 3, 5), input_var=x)
    rng = np.random.RandomState(1)
    data = rng.randn(4, 3, 5)
    outs = {}
    for name, cls in [('ours', tagger.PeepholeLSTMLayer),
                      ('lasagne01', lasagne.layers.LSTMLayer)]:
        layer = cls(l_in, 6)
        vals = np.random.RandomState(2)
        for p in layer.get_params(trainable=True):
            p.set_value(vals.randn(*p.get_value().shape) * 1.5)
        outs[name] = theano.function([x], lasagne.layers.get_output(layer))(
            data)
        P = {p.name: p.get_value() for p in layer.get_params()}
    c = h = np.zeros((4, 6))
    expected = []
    for t in range(3):
        c, h = _numpy_lstm_step(P, data[:, t], c, h)
        expected.append(h)
    expected = np.stack(expected, axis=1)
    np.testing.assert_allclose(outs['ours'], expected, rtol=1e-6, atol=1e-9)
    assert np.abs(outs['ours']).max() < 1
    assert np.abs(outs['lasagne01'] - expected).max() > 0.05


@pytest.mark.parametrize('field, value, message', [
    ('seed', 0, 'seed must be >= 1'), ('dropout', 1.0, 'dropout'),
    ('hidden_size', 0, 'hidden_size')])
def test_config_validation_names_the_field(field, value, message):
    config = tagger.TaggerConfig(**{field: value})
    with pytest.raises(TaggerError, match=message):
        config.validate()
