"""The demo pipeline end to end, at a tiny size (lasagne_tagger/demo.py)."""
import json
import os

import pytest

from lasagne_tagger import demo
from lasagne_tagger.errors import TaggerError

TINY = dict(epochs=1, batch_size=8, lr_step_epochs=1)
TINY_TAGGER = dict(iterations=20, eval_every=10, batch_size=8,
                   embed_size=16, hidden_size=16)
TINY_IMAGES = {'train': 4, 'validation': 2, 'test': 2}


def test_demo_runs_whole_pipeline_and_writes_report(tmp_path):
    out = str(tmp_path / 'demo')
    lines = []
    result = demo.run_demo(out, progress=False, log=lines.append,
                           overrides=TINY, tagger_overrides=TINY_TAGGER,
                           images=TINY_IMAGES)
    # says how it initialised (no model-zoo weights in the test environment)
    assert result['init'] == 'from scratch'
    assert any('training from scratch' in line for line in lines)
    n_classes = len(os.listdir(os.path.join(out, 'data', 'train')))
    assert result['epochs'] == 1
    assert 0.0 <= result['test_accuracy'] <= 1.0
    assert result['tags_single']['count'] == n_classes * TINY_IMAGES['test']
    assert result['tags_multi']['count'] > 0
    with open(os.path.join(out, 'summary.json')) as fh:
        saved = json.load(fh)
    assert saved['config']['epochs'] == 1
    assert saved['tags_single'] == result['tags_single']
    html = open(result['report']).read()
    assert 'Two-garment composites' in html
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
