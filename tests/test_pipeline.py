"""Features, the tag command and tag evaluation on a tiny trained system:
a width-1/8 GoogLeNet at 32 px (1 epoch) and a small tagger."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lasagne_tagger import cli, features, tagging
from lasagne_tagger.errors import TaggerError


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
    taxonomy = json.loads((system['root'] / 'taxonomy.json').read_text())
    all_tags = set(t for tags in taxonomy['classes'].values() for t in tags)
    for r in result['results']:
        tags = [t['tag'] for t in r['tags']]    # may be empty: tiny model
        assert len(tags) == len(set(tags)) and set(tags) <= all_tags
        assert all(0 < t['probability'] <= 1 for t in r['tags'])
    assert len(list((tmp_path / 'out').glob('*.tags.png'))) == 2
    code = cli.main(['tag', str(photos[0]), '--cnn', str(system['cnn']),
                     '--tagger', str(system['tagger']), '--beam', '3'])
    assert code == 0
    assert capsys.readouterr().out.startswith(str(photos[0]) + ': ')


def test_evaluate_tags_single_and_composites(system):
    pipe = tagging.Pipeline(system['cnn'], system['tagger'])
    result = tagging.evaluate_tags(pipe, system['store'], 'test',
                                   n_composites=6, k=2, examples=3)
    assert result['single']['count'] == 16
    assert result['multi']['count'] == 6 and result['multi']['k'] == 2
    for ex in result['multi_examples']:
        assert len(ex['sources']) == 2 and len(ex['true']) >= 3
    for key in ('micro_f1', 'macro_f1', 'exact_match'):
        assert 0 <= result['single'][key] <= 1


def test_tagger_with_wrong_feature_width_is_refused(system, tmp_path):
    import shutil
    from lasagne_tagger import checkpoint
    arrays, meta = checkpoint.load_checkpoint(system['tagger'])
    meta['feature_width'] = 77
    checkpoint.save_checkpoint(tmp_path / 't', arrays, meta)
    with pytest.raises(TaggerError):
        tagging.Pipeline(system['cnn'], tmp_path / 't')
    with pytest.raises(TaggerError, match='no photos given'):
        tagging.Pipeline(system['cnn'], system['tagger']).tag_files([])
    del shutil


def test_evaluate_tags_gives_bootstrap_intervals(system):
    pipe = tagging.Pipeline(system['cnn'], system['tagger'])
    result = tagging.evaluate_tags(pipe, system['store'], 'test',
                                   n_composites=6, k=2, examples=1)
    for part in ('single', 'multi'):
        iv = result[part]['intervals']
        assert iv['count'] == result[part]['count'] and iv['level'] == 0.95
        for key in ('micro_precision', 'micro_recall', 'micro_f1'):
            lo, hi = iv[key]
            assert lo <= result[part][key] + 1e-12 and \
                result[part][key] <= hi + 1e-12, (part, key)


def test_training_composites_control(system, tmp_path):
    from lasagne_tagger import composites, datasets, store, tagger
    taxonomy = str(system['root'] / 'taxonomy.json')
    with pytest.raises(TaggerError, match='integer >= 1'):
        tagging.add_training_composites(
            system['cnn'], system['store'], system['feats'], taxonomy,
            tmp_path / 'c', 0)
    feats, tax = tagging.add_training_composites(
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
    pipe = tagging.Pipeline(system['cnn'], system['tagger'])
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
    assert tagging.add_training_composites(
        system['cnn'], system['store'], system['feats'], taxonomy,
        tmp_path / 'c', 10, seed=3) == (feats, tax)
    cfg = tagger.TaggerConfig(features=feats, taxonomy=tax, embed_size=16,
                              hidden_size=16, iterations=30, eval_every=30,
                              batch_size=20)
    tagger.train_tagger(cfg, tmp_path / 'tagger', progress=False,
                        log=lambda *a: None)
    pipe = tagging.Pipeline(system['cnn'], tmp_path / 'tagger' / 'best')
    result = tagging.evaluate_tags(pipe, system['store'], 'test',
                                   n_composites=4, k=2, examples=0)
    assert result['multi']['count'] == 4
