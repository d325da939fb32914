"""Features, the tag command and tag evaluation on a tiny trained system:
a width-1/8 GoogLeNet at 32 px (1 epoch) and a small tagger."""
import json

import numpy as np
import pytest

from lasagne_tagger import cli
from lasagne_tagger.tagging import features, pipeline
from lasagne_tagger.errors import TaggerError

pytestmark = pytest.mark.slow   # the tiny trained system


@pytest.fixture(scope='module')
def system(tiny_system):
    return tiny_system


def test_features_file_and_resume(system):
    table = features.open_features(system['feats'])
    assert table.rotations == 4 and table.width == 128   # 1024 / 8
    assert len(table.rows('train')) == 48 and len(table.rows('test')) == 16
    before = table.features(np.arange(3), 0)
    # rerun: everything is done, nothing recomputed or changed
    features.extract_features(system['cnn'], system['store'], system['feats'],
                              rotations=True, progress=False)
    assert np.array_equal(features.open_features(system['feats'])
                          .features(np.arange(3), 0), before)
    # a rotated image gives different features from the upright one
    assert not np.allclose(table.features(np.arange(3), 1), before)
    with pytest.raises(TaggerError, match='exists with layer'):
        features.extract_features(system['cnn'], system['store'],
                                  system['feats'], layer='loss3/classifier',
                                  rotations=True, progress=False)


def test_tag_cli_round_trip(system, tmp_path, capsys):
    photos = sorted((system['root'] / 'test' / 'hat').glob('*.png'))[:2]
    bad = tmp_path / 'bad.jpg'
    bad.write_text('nope')
    code = cli.main(['tag', str(photos[0]), str(bad), str(photos[1]),
                     '--cnn', str(system['cnn']), '--tagger',
                     str(system['tagger']), '--json', '--render',
                     str(tmp_path / 'out')])
    out, err = capsys.readouterr()
    assert code == 1 and 'bad.jpg' in err
    result = json.loads(out)
    assert [r['path'] for r in result['results']] == [str(p) for p in photos]
    # the command prints exactly what the library decodes for these files
    pipe = pipeline.Pipeline(system['cnn'], system['tagger'])
    want, bad_files = pipe.tag_files([str(p) for p in photos])
    assert bad_files == []
    for r, (path, tags) in zip(result['results'], want):
        assert r['path'] == path
        assert [t['tag'] for t in r['tags']] == [t for t, _ in tags]
        np.testing.assert_allclose([t['probability'] for t in r['tags']],
                                   [p for _, p in tags], rtol=1e-6)
    # and what it decodes is a greedy decode of the trained tagger: tags of
    # the taxonomy, each once, at the probabilities the tagger gives them
    taxonomy = json.loads((system['root'] / 'taxonomy.json').read_text())
    all_tags = set(t for tags in taxonomy['classes'].values() for t in tags)
    decoded = [t for r in result['results'] for t in r['tags']]
    assert decoded, 'the tiny tagger decoded no tag at all'
    for r in result['results']:
        tags = [t['tag'] for t in r['tags']]
        assert len(tags) == len(set(tags)) and set(tags) <= all_tags
        assert all(0 < t['probability'] <= 1 for t in r['tags'])
    assert len(list((tmp_path / 'out').glob('*.tags.png'))) == 2
    code = cli.main(['tag', str(photos[0]), '--cnn', str(system['cnn']),
                     '--tagger', str(system['tagger']), '--beam', '3'])
    assert code == 0
    assert capsys.readouterr().out.startswith(str(photos[0]) + ': ')


def test_evaluate_tags_single_and_composites(system):
    pipe = pipeline.Pipeline(system['cnn'], system['tagger'])
    result = pipeline.evaluate_tags(pipe, system['store'], 'test',
                                   n_composites=6, k=2, examples=3)
    assert result['single']['count'] == 16
    assert result['multi']['count'] == 6 and result['multi']['k'] == 2
    for ex in result['multi_examples']:
        assert len(ex['sources']) == 2 and len(ex['true']) >= 3
    # the scores, recomputed by hand from the same photos and composites
    from lasagne_tagger.data import composites, store
    tax = pipe.vocabulary.taxonomy
    class_tags = [list(tax[c]) for c in pipe.cnn_meta['classes']]
    with store.open_store(system['store']) as st:
        rows = st.indices('test')
        crops, labels = st.read(rows)
    images, _, pairs = composites.make_composites(crops, labels, 6, k=2,
                                                  seed=0)
    for part, inputs, truth in (
            ('single', crops, [set(class_tags[l]) for l in labels]),
            ('multi', images, [set(class_tags[a]) | set(class_tags[b])
                               for a, b in pairs.tolist()])):
        pred = [set(t for t, _ in p) for p in pipe.tag_crops(inputs)]
        tp = sum(len(p & t) for p, t in zip(pred, truth))
        n_pred, n_true = sum(map(len, pred)), sum(map(len, truth))
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_true
        f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
        got = result[part]
        assert got['micro_precision'] == pytest.approx(precision), part
        assert got['micro_recall'] == pytest.approx(recall), part
        assert got['micro_f1'] == pytest.approx(f1), part
        assert got['exact_match'] == pytest.approx(
            np.mean([p == t for p, t in zip(pred, truth)])), part
        assert got['empty_predictions'] == sum(not p for p in pred), part


def test_tagger_with_wrong_feature_width_is_refused(system, tmp_path):
    # a well-formed tagger trained on 77-d features (another CNN's), paired
    # with this 128-d CNN: refused up front, naming both widths
    from lasagne_tagger.training import checkpoint
    arrays, meta = checkpoint.load_checkpoint(system['tagger'])
    meta['feature_width'] = 77
    embed = arrays['image_embedding/W']
    arrays['image_embedding/W'] = np.resize(embed, (77, embed.shape[1]))
    checkpoint.save_checkpoint(tmp_path / 't', arrays, meta)
    with pytest.raises(TaggerError, match="tagger expects 77-d features, "
                       "the CNN's .* gives 128"):
        pipeline.Pipeline(system['cnn'], tmp_path / 't')
    with pytest.raises(TaggerError, match='no photos given'):
        pipeline.Pipeline(system['cnn'], system['tagger']).tag_files([])


def test_evaluate_tags_gives_bootstrap_intervals(system):
    pipe = pipeline.Pipeline(system['cnn'], system['tagger'])
    result = pipeline.evaluate_tags(pipe, system['store'], 'test',
                                   n_composites=6, k=2, examples=1)
    for part in ('single', 'multi'):
        iv = result[part]['intervals']
        assert iv['count'] == result[part]['count'] and iv['level'] == 0.95
        for key in ('micro_precision', 'micro_recall', 'micro_f1'):
            lo, hi = iv[key]
            assert lo <= result[part][key] + 1e-12 and \
                result[part][key] <= hi + 1e-12, (part, key)


def test_training_composites_control(system, tmp_path):
    from lasagne_tagger.data import composites, datasets, store
    from lasagne_tagger.tagging import tagger
    taxonomy = str(system['root'] / 'taxonomy.json')
    with pytest.raises(TaggerError, match='integer >= 1'):
        pipeline.add_training_composites(
            system['cnn'], system['store'], system['feats'], taxonomy,
            tmp_path / 'c', 0)
    feats, tax = pipeline.add_training_composites(
        system['cnn'], system['store'], system['feats'], taxonomy,
        tmp_path / 'c', 10, seed=3)
    base = features.open_features(system['feats'])
    table = features.open_features(feats)
    n = len(base.labels)
    assert len(table.labels) == n + 10
    assert table.classes[:len(base.classes)] == base.classes
    np.testing.assert_array_equal(table.all_rotations(np.arange(n)),
                                  base.all_rotations())
    assert len(table.rows('train')) == len(base.rows('train')) + 10
    assert len(table.rows('test')) == len(base.rows('test'))
    combined = datasets.load_taxonomy(tax)
    single = datasets.load_taxonomy(taxonomy)
    with store.open_store(system['store']) as st:
        crops, labels = st.read(st.indices('train'))
    images, _, label_lists = composites.make_composites(crops, labels, 10,
                                                         k=2, seed=3)
    pipe = pipeline.Pipeline(system['cnn'], system['tagger'])
    np.testing.assert_allclose(table.features(np.arange(n, n + 10), 0),
                               pipe.features(images), rtol=1e-4, atol=1e-5)
    for row, pair in zip(range(n, n + 10), label_lists.tolist()):
        name = table.classes[table.labels[row]]
        parts = sorted(base.classes[l] for l in pair)
        assert name == '+'.join(parts)
        want = []
        for part in parts:
            want += [t for t in single[part] if t not in want]
        assert combined[name] == want
    # finished: returned as it is
    assert pipeline.add_training_composites(
        system['cnn'], system['store'], system['feats'], taxonomy,
        tmp_path / 'c', 10, seed=3) == (feats, tax)
    cfg = tagger.TaggerConfig(features=feats, taxonomy=tax, embed_size=16,
                              hidden_size=16, iterations=30, eval_every=30,
                              batch_size=20)
    tagger.train_tagger(cfg, tmp_path / 'tagger', progress=False,
                        log=lambda *a: None)
    pipe = pipeline.Pipeline(system['cnn'], tmp_path / 'tagger' / 'best')
    result = pipeline.evaluate_tags(pipe, system['store'], 'test',
                                   n_composites=4, k=2, examples=0)
    assert result['multi']['count'] == 4
