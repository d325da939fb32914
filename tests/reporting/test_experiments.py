"""The experiment scripts (one per blog claim), end to end on a tiny
configuration, and the results report over what they write.

Tiny: the synthetic apparel set at 32 px (6 training and 3 validation
images a class), GoogLeNet at width 1/8 for 1 epoch, a 16-unit tagger for 40
iterations.  The ImageNet sides run on the fake model-zoo pickle of
``conftest.zoo_pickle`` (random weights, made-up synsets).
"""
import importlib.util
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from lasagne_tagger import cli
from lasagne_tagger.reporting import experiments as ex
from lasagne_tagger.reporting import results_report
from lasagne_tagger.errors import TaggerError
from repo import ROOT

REPO = Path(ROOT).resolve()
SCRIPTS = REPO / 'experiments'


def _script(name):
    """Import ``experiments/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location('exp_' + name,
                                                  SCRIPTS / (name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _quiet(*args):
    pass


def _write_config(base, data):
    config = {
        'name': 'tiny', '_note': 'a test configuration',
        'data': os.path.relpath(data, base / 'configs'), 'acs': False,
        'image_size': 32,
        'finetune': {'train_split': 'train', 'val_split': 'validation',
                     'from_scratch': True, 'width': 0.125, 'epochs': 1,
                     'batch_size': 16, 'l2': 1e-4, 'rotate': True,
                     'seed': 1},
        'extra_variants': {'l2+rotation+flip': {
            '_note': 'not the blog\'s', 'flip': True, 'shift': 0.125}},
        'tagger': {'_note': 'tiny tagger', 'cnn_variant': 'l2+rotation',
                   'test_split': 'validation', 'rotations': True,
                   'n_composites': 6, 'control_composites': 12,
                   'settings': {'embed_size': 16, 'hidden_size': 16,
                                'iterations': 40, 'eval_every': 20,
                                'batch_size': 20}},
        'imagenet': {'split': 'validation', 'per_class': 1, 'top': 3,
                     'pairs': [['t-shirt', 'trousers']], 'per_pair': 1},
        'compare': {'split': 'validation', 'per_class': 2,
                    'n_composites': 4, 'top': 3, 'examples': 2}}
    path = base / 'configs' / 'tiny.json'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))
    return path


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """Dataset, config and the fine-tuning ablation (2 variants)."""
    from lasagne_tagger.data import synthetic
    base = tmp_path_factory.mktemp('experiments')
    data = synthetic.render_dataset(
        base / 'data', per_class={'train': 6, 'validation': 3}, size=32,
        seed=5)
    config = _write_config(base, Path(data))
    results = base / 'results' / 'tiny'
    work = base / 'work'
    summary = _script('finetune_ablation').run(
        str(config), str(results / 'finetune_ablation'), str(work),
        ['none', 'l2+rotation', 'l2+rotation+flip'], progress=False)
    return {'base': base, 'config': str(config), 'results': results,
            'work': str(work), 'ablation': summary}


@pytest.fixture(scope='module')
def tagged(tiny):
    """The tagger experiment on the l2+rotation CNN."""
    return _script('tagger_experiment').run(
        tiny['config'], str(tiny['results'] / 'tagger'), tiny['work'],
        progress=False, log=_quiet)


@pytest.fixture(scope='module')
def imagenet_done(tiny, zoo_pickle):
    """Claim 1's script with the fake model-zoo weights."""
    return _script('imagenet_tags').run(
        tiny['config'], str(tiny['results'] / 'imagenet_tags'),
        weights=str(zoo_pickle[0]), progress=False, log=_quiet)


@pytest.fixture(scope='module')
def compare_done(tiny, tagged, zoo_pickle):
    """Claim 5's script without weights (into a side folder), then with the
    fake weights (into the results)."""
    script = _script('compare_tags')
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ex, 'experiment_weights', lambda *a, **k: None)
        partial = script.run(tiny['config'], str(tiny['base'] / 'partial'),
                             tiny['work'], progress=False, log=_quiet)
    full = script.run(tiny['config'], str(tiny['results'] / 'compare_tags'),
                      tiny['work'], weights=str(zoo_pickle[0]),
                      progress=False, log=_quiet)
    return partial, full


@pytest.fixture
def no_weights(monkeypatch):
    """Make the scripts find no model-zoo weights."""
    monkeypatch.setattr(ex, 'experiment_weights', lambda *a, **k: None)


# --- rules, no Theano ---------------------------------------------------------

@pytest.mark.parametrize('synset, tag, names', [
    ('n04370456 jersey, T-shirt, tee shirt', 'T-shirt', True),
    ('n04370456 jersey, T-shirt, tee shirt', 'shirt', True),
    ('n04591157 Windsor tie', 'T-shirt', False),
    ('n04591157 Windsor tie', 'suit', False),
    ('n04120489 running shoe', 'shoes', True),
    ('n03124170 cowboy hat, ten-gallon hat', 'hat', True),
    ('n03770439 miniskirt, mini', 'skirt', True),
    ('n03594734 jean, blue jean, denim', 'pants', False),
    ('n04350905 suit, suit of clothes', 'suit of clothes', True),
    ('n03642806 laptop, laptop computer', 'top', False),     # no compounds
    ('n03877472 pajama, pyjama, pj\'s, jammies', 'upper body', False),
    ('dress', 'dress', True),                                 # no WordNet id
])
def test_synset_names_tag(synset, tag, names):
    assert ex.synset_names_tag(synset, tag) is names


def test_imagenet_tag_sets_use_all_top_synsets():
    tops = [[('n04591157 Windsor tie', 0.6),
             ('n04350905 suit, suit of clothes', 0.2)],
            [('n02099601 golden retriever', 0.9)]]
    tags = ['suit', 'suit of clothes', 'T-shirt']
    assert ex.imagenet_tag_sets(tops, tags) == [
        {'suit', 'suit of clothes'}, set()]
    assert ex.normalise_words('Running-Shoes dress') == [
        'running', 'shoe', 'dress']


def test_tag_curve_summary():
    history = [{'iteration': 100 * (i + 1), 'val_tag_accuracy': a}
               for i, a in enumerate([0.3, 0.82, 0.9, 0.91, 0.9, 0.905])]
    c = results_report.tag_curve_summary(history, tolerance=0.02)
    assert c['stable_from'] == 300 and c['reaches_90pct'] == 200
    assert c['final'] == 0.905 and c['iterations'] == 600


def _variant(gap, val=0.7):
    return {'final': {'train_accuracy': val + gap, 'val_accuracy': val},
            'final_gap': gap, 'best_epoch': 1,
            'best_val_mean_class_accuracy': val}


def test_verdict_rules():
    c2 = results_report.claim2
    assert c2({'variants': {'none': _variant(0.3), 'l2': _variant(0.25),
                            'l2+rotation': _variant(0.1)}})['verdict'] \
        == 'holds'
    assert c2({'variants': {'none': _variant(0.3), 'l2': _variant(0.01),
                            'l2+rotation': _variant(0.1)}})['verdict'] \
        == 'partly'
    assert c2({'variants': {'none': _variant(0.1),
                            'l2+rotation': _variant(0.2)}})['verdict'] \
        == 'does not hold'
    assert c2({'variants': {'l2': _variant(0.1)}})['verdict'] == 'not run'
    # a gap that narrows because validation accuracy fell is said as such
    low = c2({'variants': {'none': _variant(0.2, val=0.6),
                           'l2': _variant(0.15, val=0.64),
                           'l2+rotation': _variant(0.05, val=0.43)}})
    assert low['verdict'] == 'holds'
    assert 'validation accuracy falls by 0.170' in low['why']
    assert 'falls' not in c2({'variants': {
        'none': _variant(0.3), 'l2': _variant(0.25),
        'l2+rotation': _variant(0.1)}})['why']
    assert c2(None)['why'].startswith('no results: run')

    def tagger(values, multi):
        history = [{'iteration': 1000 * (i + 1), 'val_tag_accuracy': a}
                   for i, a in enumerate(values)]
        return {'status': 'ok', 'settings': {},
                'curve_summary': results_report.tag_curve_summary(history),
                'single': {'micro_f1': 0.9}, 'multi': multi}
    m = {'micro_precision': 0.9, 'micro_recall': 0.5, 'micro_f1': 0.64,
         'exact_match': 0.0, 'count': 10}
    assert results_report.claim3(tagger([.5, .9, .95, .95, .95], m))[
        'verdict'] == 'holds'
    assert results_report.claim3(tagger([.5, .6, .7, .8, .9], m))[
        'verdict'] == 'does not hold'
    assert results_report.claim3(tagger([.5, .9], m))['verdict'] == \
        'inconclusive'
    assert results_report.claim4(tagger([.9], m))['verdict'] == 'partly'
    assert results_report.claim4(tagger([.9], dict(m, micro_f1=0.8)))[
        'verdict'] == 'holds'
    assert results_report.claim4(tagger([.9], dict(
        m, micro_precision=0.5)))['verdict'] == 'does not hold'

    side = lambda a, b: {'status': 'ok', 'single': {'micro_f1': a},
                         'multi': {'micro_f1': b}}
    r = {'settings': {'top': 5}, 'dcnn_rnn': side(0.9, 0.6),
         'imagenet': side(0.1, 0.7)}
    assert results_report.claim5(r)['verdict'] == 'partly'
    r['imagenet'] = {'status': ex.NOT_RUN_WEIGHTS}
    row = results_report.claim5(r)
    assert row['verdict'] == 'not run' and 'fetch-weights' in row['why']
    assert results_report.claim1({'status': ex.NOT_RUN_WEIGHTS})[
        'why'] == ex.NOT_RUN_WEIGHTS


def test_confidence_and_control_in_the_verdicts():
    none, l2rot = _variant(0.30, val=0.60), _variant(0.10, val=0.70)
    none['val_accuracy_interval'] = [0.55, 0.65]
    l2rot['val_accuracy_interval'] = [0.65, 0.75]
    result = {'variants': {'none': none, 'l2': _variant(0.25),
                           'l2+rotation': l2rot},
              # val(none) - val(l2+rotation): -0.10, paired interval
              'val_accuracy_differences': {'none - l2+rotation':
                                           [-0.15, -0.05]}}
    row = results_report.claim2(result)
    # train(none) - train(l2+rot) = 0.90 - 0.80 = 0.10; narrowing = 0.10 -
    # (val diff) = 0.20 in [0.15, 0.25]
    assert 'gap narrowing none -> l2+rotation 0.200 [0.150, 0.250]' in \
        row['confidence']
    assert 'within the noise' not in row['confidence']
    assert 'none [0.550, 0.650]' in row['confidence']
    result['val_accuracy_differences']['none - l2+rotation'] = [-0.15, 0.12]
    assert 'includes 0: within the noise' in \
        results_report.claim2(result)['confidence']
    assert results_report.claim2({'variants': {
        'none': _variant(0.3), 'l2+rotation': _variant(0.1)}})[
        'confidence'] == '-'

    iv = {'micro_f1': [0.2, 0.3], 'micro_precision': [0.3, 0.4]}
    multi = {'micro_precision': 0.35, 'micro_recall': 0.2, 'micro_f1': 0.25,
             'exact_match': 0.0, 'count': 100, 'intervals': iv}
    tagged = {'status': 'ok', 'settings': {}, 'single': {'micro_f1': 0.8},
              'multi': multi,
              'control': {'train_composites': 50,
                          'multi': dict(multi, micro_f1=0.45,
                                        intervals=dict(iv, micro_f1=[0.4,
                                                                     0.5]))}}
    row = results_report.claim4(tagged)
    assert row['verdict'] == 'does not hold'
    assert 'control (tagger trained with 50 composites too)' in row['ours']
    assert 'moves the F1 from 0.250 to 0.450: 0.200 of the 0.500 gap' in \
        row['why']
    assert row['confidence'] == ('95% bootstrap over the composites: micro '
                                 'F1 [0.200, 0.300], precision [0.300, '
                                 '0.400]; control micro F1 [0.400, 0.500]')


def test_scripts_have_help_with_defaults(capsys):
    for name in ('tagger_experiment', 'imagenet_tags', 'compare_tags',
                 'screenshot', 'finetune_ablation', 'stand_in_search'):
        with pytest.raises(SystemExit) as done:
            _script(name).main(['--help'])
        assert done.value.code == 0
        assert 'default' in capsys.readouterr().out


def test_bad_config_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / 'bad.json'
    bad.write_text('{"data": "x"}')
    assert _script('tagger_experiment').main([str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count('\n') == 0 and 'bad.json' in err and 'image_size' in err


@pytest.mark.slow
def test_unknown_variant_or_probe_is_one_line_error(tiny, tmp_path, capsys):
    assert _script('finetune_ablation').main(
        [tiny['config'], '--variants', 'none,l3', '--work',
         str(tmp_path / 'w'), '--out', str(tmp_path / 'o')]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count('\n') == 0 and 'unknown variant(s) l3' in err
    assert 'l2+rotation+flip' in err            # the config's extra variant
    search = tmp_path / 'search.json'
    search.write_text(json.dumps({'base': tiny['config'],
                                  'variant': 'l2+rotation', 'probes': []}))
    assert _script('stand_in_search').main(
        [str(search), '--probes', 'nope', '--work', str(tmp_path / 'w')]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count('\n') == 0 and 'unknown probe(s) nope' in err


@pytest.mark.slow
def test_stand_in_search_table(tiny, tmp_path):
    search = tmp_path / 'search.json'
    search.write_text(json.dumps({
        'base': tiny['config'], 'variant': 'l2+rotation',
        'aim': {'val_accuracy': 0.7, 'val_mean_class_accuracy': 0.6},
        'probes': [{'name': 'p1', 'image_size': 32, '_why': 'a | test',
                    'set': {'epochs': 1, 'flip': True, 'shift': 0.1}}]}))
    script = _script('stand_in_search')
    rows = script.run(str(search), str(tmp_path / 'out'),
                      str(tmp_path / 'work'), progress=False)
    assert [r['name'] for r in rows] == ['p1'] and rows[0]['epochs'] == 1
    cfg = json.loads((tmp_path / 'work' / 'p1' / 'l2+rotation' /
                      'config.json').read_text())
    assert cfg['flip'] is True and cfg['shift'] == 0.1 and cfg['epochs'] == 1
    saved = json.loads((tmp_path / 'out' / 'search.json').read_text())
    assert saved['rows'] == json.loads(json.dumps(rows))
    table = (tmp_path / 'out' / 'search.md').read_text()
    assert '| p1 | 32 | epochs=1, flip=True, shift=0.1 | 1 | ' in table
    assert 'a / test' in table and rows[0]['classes'] == 8
    # finished probes are read back, not retrained
    mtime = (tmp_path / 'work' / 'p1' / 'l2+rotation' / 'last.npz').stat()
    again = script.run(str(search), str(tmp_path / 'out'),
                       str(tmp_path / 'work'), progress=False)
    assert again == rows
    assert (tmp_path / 'work' / 'p1' / 'l2+rotation' / 'last.npz').stat() \
        .st_mtime == mtime.st_mtime


def test_tagger_experiment_without_cnn_says_what_to_run(tmp_path, capsys):
    config = _write_config(tmp_path, tmp_path / 'data')
    code = _script('tagger_experiment').main(
        [str(config), '--work', str(tmp_path / 'empty'), '--out',
         str(tmp_path / 'out')])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count('\n') == 0
    assert 'finetune_ablation.py' in err and 'l2+rotation' in err


def test_imagenet_tags_without_weights_is_not_run(tmp_path, no_weights,
                                                  capsys):
    config = _write_config(tmp_path, tmp_path / 'data')
    out = tmp_path / 'out'
    assert _script('imagenet_tags').main([str(config), '--out',
                                          str(out)]) == 0
    assert ex.NOT_RUN_WEIGHTS in capsys.readouterr().out
    result = json.loads((out / 'results.json').read_text())
    assert result['status'] == ex.NOT_RUN_WEIGHTS and 'photos' not in result


# --- the scripts, end to end -------------------------------------------------

@pytest.mark.slow
def test_finetune_ablation_tiny(tiny):
    out = tiny['results'] / 'finetune_ablation'
    result = json.loads((out / 'results.json').read_text())
    assert sorted(result['variants']) == ['l2+rotation', 'l2+rotation+flip',
                                          'none']
    extra = result['variants']['l2+rotation+flip']
    assert extra['flip'] is True and extra['shift'] == 0.125
    assert result['variants']['none']['flip'] is False
    cfg = json.loads((out / 'l2+rotation+flip' / 'config.json').read_text())
    assert cfg['flip'] is True and cfg['rotate'] is True
    for name, v in result['variants'].items():
        lo, hi = v['val_accuracy_interval']
        assert lo <= v['final']['val_accuracy'] <= hi, name
        lo, hi = v['val_mean_class_accuracy_interval']
        assert lo <= v['final']['val_mean_class_accuracy'] <= hi, name
        recalls = v['final_per_class_recall']
        assert len(recalls) == 8 and v['minutes'] > 0
        # the re-evaluated last checkpoint is the last epoch's evaluation
        assert np.mean(list(recalls.values())) == pytest.approx(
            v['final']['val_mean_class_accuracy'], abs=1e-6)
    diffs = result['val_accuracy_differences']
    assert set(diffs) == {'%s - %s' % (a, b) for a in result['variants']
                          for b in result['variants'] if a != b}
    lo, hi = diffs['none - l2+rotation']
    assert lo <= (result['variants']['none']['final']['val_accuracy'] -
                  result['variants']['l2+rotation']['final']['val_accuracy'])\
        <= hi
    assert (out / 'curves.png').stat().st_size > 0
    assert (out / 'none' / 'metrics.jsonl').exists()
    assert os.path.isfile(os.path.join(tiny['work'], 'l2+rotation',
                                       'best.npz'))


@pytest.mark.slow
def test_tagger_experiment(tiny, tagged):
    out = tiny['results'] / 'tagger'
    result = json.loads((out / 'results.json').read_text())
    assert result['status'] == 'ok' and result['claims'] == [3, 4]
    assert [c['iteration'] for c in result['curve']] == [20, 40]
    assert result['settings']['feature_width'] == 128
    assert result['settings']['hidden_size'] == 16
    assert result['single']['count'] == 24 and result['multi']['count'] == 6
    for key in ('micro_precision', 'micro_recall', 'micro_f1', 'macro_f1',
                'exact_match'):
        assert 0 <= result['multi'][key] <= 1
    control = result['control']
    assert control['train_composites'] == 12
    assert control['multi']['count'] == 6 and control['single']['count'] == 24
    assert 'micro_f1' in control['multi']['intervals']
    assert os.path.isfile(os.path.join(tiny['work'], 'tagger-control',
                                       'composites', 'features.h5'))
    assert (out / 'tag_accuracy.png').stat().st_size > 0
    for e in result['single_examples'] + result['multi_examples']:
        assert (out / e['image']).is_file()
    assert not list(Path(out).rglob('*.h5'))      # big files stay in WORK
    # examples take the classes in turn
    assert len({tuple(e['true']) for e in result['single_examples']}) == 8


@pytest.mark.slow
def test_imagenet_tags_with_weights(tiny, imagenet_done):
    out = tiny['results'] / 'imagenet_tags'
    result = imagenet_done
    assert result['status'] == 'ok'
    assert json.loads((out / 'results.json').read_text())['status'] == 'ok'
    s = result['summary']
    assert s['photos'] == 8 and s['composites'] == 1
    assert len(result['photos']) == 9
    composite = result['photos'][-1]
    assert composite['composite'] and sorted(composite['classes']) == \
        ['t-shirt', 'trousers']
    for p in result['photos']:
        assert len(p['top']) == 3 and 'fake synset' in p['top'][0][0]
        assert p['top1_hit'] is False and (out / p['image']).is_file()
    assert s['top1_names_a_true_tag'] == 0.0


@pytest.mark.slow
def test_compare_tags(tiny, compare_done):
    partial, full = compare_done
    assert partial['status'].startswith('partial') and \
        'fetch-weights' in partial['status']
    assert partial['dcnn_rnn']['single']['count'] == 16
    assert partial['dcnn_rnn']['multi']['count'] == 4
    assert (tiny['base'] / 'partial' / 'compare.png').is_file()
    out = tiny['results'] / 'compare_tags'
    assert full['status'] == 'ok'
    # the same photos and composites on both sides
    assert full['dcnn_rnn']['single']['count'] == \
        full['imagenet']['single']['count'] == 16
    assert full['imagenet']['multi']['micro_recall'] == 0.0   # fake synsets
    assert full['dcnn_rnn']['single'] == partial['dcnn_rnn']['single']
    for e in full['examples']:
        assert (out / e['image']).is_file() and len(e['imagenet_top']) == 3


@pytest.mark.slow
def test_report(tiny, tagged, imagenet_done, compare_done, capsys):
    results = tiny['results']
    assert cli.main(['report', str(results)]) == 0
    out = capsys.readouterr().out
    assert out.count('claim ') == 5
    page = (results / 'report.html').read_text()
    md = (results / 'report.md').read_text()
    for claim in range(1, 6):
        assert '<tr><td>%d</td>' % claim in page
        assert '| %d |' % claim in md
    assert 'tagger/tag_accuracy.png' in page
    assert 'finetune_ablation/curves.png' in page
    assert 'a test configuration' in page and 'tiny tagger' in page
    for src in re.findall(r'src="([^"]+)"', page):
        assert (results / src).is_file(), src
    assert '| confidence |' in md and '<th>confidence</th>' in page
    rows = results_report.claim_rows(results_report.load_results(results))
    assert 'gap narrowing none -> l2+rotation' in rows[1]['confidence']
    assert 'l2+rotation+flip val accuracy' in rows[1]['ours']
    assert 'control (tagger trained with 12 composites too)' in \
        rows[3]['ours']
    assert rows[3]['confidence'].startswith('95% bootstrap over the '
                                            'composites: micro F1 [')
    assert rows[0]['verdict'] == 'holds'        # fake synsets name no tags
    assert rows[2]['verdict'] == 'inconclusive'  # 2 evaluations only
    assert rows[4]['verdict'] in ('holds', 'partly', 'does not hold')


def test_report_of_missing_and_not_run_results(tmp_path, no_weights):
    results = tmp_path / 'results'
    config = _write_config(tmp_path, tmp_path / 'data')
    _script('imagenet_tags').run(str(config), str(results / 'imagenet_tags'),
                                 log=_quiet)
    html, md, rows = results_report.write_report(results)
    assert [r['verdict'] for r in rows] == ['not run'] * 5
    assert rows[0]['why'] == ex.NOT_RUN_WEIGHTS
    assert 'tagger_experiment.py' in rows[2]['why']
    assert 'Not run: ' in Path(html).read_text()
    with pytest.raises(TaggerError, match='holds no experiment results'):
        results_report.write_report(tmp_path / 'configs')
    assert cli.main(['report', str(tmp_path / 'nope')]) == 2


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tiny, tagged, imagenet_done,
                                            compare_done, tmp_path):
    shot = _script('screenshot')
    if shot.find_chromium() is None:
        pytest.skip('Chromium is not installed (Debian: apt-get install '
                    'chromium)')
    results = tiny['results']
    if not (results / 'report.html').exists():
        results_report.write_report(results)
    png = shot.screenshot(str(results / 'report.html'),
                          str(tmp_path / 'report.png'), width=1000,
                          height=1600)
    from PIL import Image
    with Image.open(png) as image:
        assert image.size == (1000, 1600)
        pixels = np.asarray(image.convert('RGB'))
    assert not shot.is_blank(png)
    # figures rendered: more than text colours on white
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
