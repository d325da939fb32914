"""The demo pipeline end to end, at a tiny size (lasagne_tagger/demo.py)."""
import json
import os

import pytest

from lasagne_tagger import demo
from lasagne_tagger.errors import TaggerError

pytestmark = pytest.mark.slow   # the whole demo pipeline

TINY = dict(epochs=1, batch_size=8, lr_step_epochs=1)
TINY_TAGGER = dict(iterations=20, eval_every=10, batch_size=8,
                   embed_size=16, hidden_size=16)
TINY_IMAGES = {'train': 4, 'validation': 2, 'test': 2}


def test_demo_runs_whole_pipeline_and_writes_report(tmp_path, monkeypatch,
                                                    capsys):
    """``lasagne-tagger demo`` through ``cli.main``, at a tiny size (the
    module defaults patched: the command has no size flags)."""
    from lasagne_tagger import cli
    from lasagne_tagger.training import finetune
    monkeypatch.setattr(demo, 'DEMO_DEFAULTS', dict(demo.DEMO_DEFAULTS,
                                                    **TINY))
    monkeypatch.setattr(demo, 'TAGGER_DEFAULTS', dict(demo.TAGGER_DEFAULTS,
                                                      **TINY_TAGGER))
    monkeypatch.setattr(demo, 'DEMO_IMAGES', TINY_IMAGES)
    out = str(tmp_path / 'demo')
    assert cli.main(['demo', '--out', out, '--epochs', '1', '--quiet']) == 0
    lines = capsys.readouterr().out.splitlines()
    with open(os.path.join(out, 'summary.json')) as fh:
        result = json.load(fh)
    # says how it initialised (no model-zoo weights in the test environment)
    assert result['init'] == 'from scratch'
    assert any('training from scratch' in line for line in lines)
    n_classes = len(os.listdir(os.path.join(out, 'data', 'train')))
    assert result['epochs'] == 1 and result['config']['epochs'] == 1
    assert result['config']['batch_size'] == TINY['batch_size']
    # the reported accuracy is the best checkpoint's on the test split
    report = finetune.evaluate(os.path.join(out, 'classifier', 'best'),
                               os.path.join(out, 'store-32.h5'), 'test',
                               batch_size=TINY['batch_size'])
    assert result['test_accuracy'] == report['accuracy']
    assert result['test_mean_class_accuracy'] == \
        report['mean_class_accuracy']
    assert result['tags_single']['count'] == n_classes * TINY_IMAGES['test']
    assert result['tags_multi']['count'] > 0
    html = open(result['report']).read()
    assert 'Two-garment composites' in html
    assert result['figures']
    for fig in result['figures']:
        assert os.path.getsize(fig) > 0
    # the last line is the summary with the wall time and the report
    assert lines[-1].startswith('wall time')


def test_demo_data_without_test_split_is_an_error(tmp_path, ds_write_image):
    root = tmp_path / 'photos'
    ds_write_image(root / 'train' / 'dress' / 'a.jpg')
    with pytest.raises(TaggerError, match='validation'):
        demo.run_demo(str(tmp_path / 'out'), data=str(root), progress=False,
                      log=lambda s: None, overrides=TINY,
                      tagger_overrides=TINY_TAGGER)


@pytest.mark.parametrize('overrides, tagger_overrides, bad', [
    ({'epoch': 3}, None, 'epoch'),
    (None, {'hiden_size': 8}, 'hiden_size'),
])
def test_demo_unknown_setting_is_an_error_before_any_work(
        tmp_path, overrides, tagger_overrides, bad):
    out = tmp_path / 'out'
    with pytest.raises(TaggerError, match='unknown setting.*%s' % bad):
        demo.run_demo(str(out), progress=False, log=lambda s: None,
                      overrides=overrides, tagger_overrides=tagger_overrides)
    assert not (out / 'data').exists()      # nothing rendered first


@pytest.mark.parametrize('settings, match', [
    ({'hiden_size': 8}, 'unknown setting.*hiden_size'),
    ({'features': 'x.h5'}, 'features set by the stage itself'),
])
def test_tagger_stage_checks_its_settings_before_any_work(tmp_path, settings,
                                                          match):
    from lasagne_tagger.tagging.pipeline import run_tagger_stage
    with pytest.raises(TaggerError, match=match):
        run_tagger_stage(str(tmp_path / 'stage'), str(tmp_path / 'none.h5'),
                         str(tmp_path / 'cnn'), 'clothing-small',
                         'validation', tagger_settings=settings,
                         progress=False, log=lambda s: None)
    assert not (tmp_path / 'stage').exists()
