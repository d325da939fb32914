"""Fine-tuning on a tiny GoogLeNet (width 1/8, 32 px) and a synthetic store."""
import json

import numpy as np
import pytest

from lasagne_tagger import checkpoint, finetune
from lasagne_tagger.errors import TaggerError


@pytest.fixture(scope='module')
def tiny_store(tmp_path_factory):
    from lasagne_tagger import datasets, store, synthetic
    base = tmp_path_factory.mktemp('ft')
    root = synthetic.render_dataset(
        base / 'data', per_class={'train': 8, 'validation': 3, 'test': 2},
        size=32, seed=3)
    path = base / 'store.h5'
    store.prepare(datasets.read_folder_dataset(root), path, size=32,
                  workers=1, progress=False)
    return path


def _config(store, **kw):
    base = dict(store=str(store), from_scratch=True, width=0.125,
                batch_size=16, learning_rate=0.001, head_lr_mult=2.0,
                lr_step_epochs=2, epochs=3, seed=5)
    base.update(kw)
    return finetune.FinetuneConfig(**base)


def test_rotation_is_a_multiple_of_90_degrees():
    crops = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    out = finetune.rotate_batch(crops, np.random.RandomState(0))
    for a, b in zip(crops, out):
        assert any(np.array_equal(np.rot90(a, k), b) for k in range(4))


def test_training_lowers_loss_and_resume_is_exact(tiny_store, tmp_path):
    full = finetune.train(_config(tiny_store), tmp_path / 'full',
                          progress=False, log=lambda *a: None)
    assert len(full) == 3
    assert full[-1]['train_loss'] < full[0]['train_loss']
    assert full[2]['learning_rate'] == pytest.approx(0.0001)
    lines = (tmp_path / 'full' / 'metrics.jsonl').read_text().splitlines()
    assert [json.loads(l)['epoch'] for l in lines] == [1, 2, 3]

    finetune.train(_config(tiny_store, epochs=2), tmp_path / 'split',
                   progress=False, log=lambda *a: None)
    resumed = finetune.train(_config(tiny_store), tmp_path / 'split',
                             resume=True, progress=False, log=lambda *a: None)
    assert [h['epoch'] for h in resumed] == [1, 2, 3]
    a, meta = checkpoint.load_checkpoint(tmp_path / 'full' / 'last')
    b, _ = checkpoint.load_checkpoint(tmp_path / 'split' / 'last')
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-7,
                                   err_msg=name)
    assert resumed[-1]['val_loss'] == pytest.approx(full[-1]['val_loss'],
                                                    rel=1e-6)
    assert meta['classes'] and meta['config']['width'] == 0.125
    assert (tmp_path / 'full' / 'best.npz').exists()

    report = finetune.evaluate(tmp_path / 'full' / 'last', tiny_store,
                               'validation')
    assert report['loss'] == pytest.approx(full[-1]['val_loss'], rel=1e-5)
    assert report['confusion'] == meta['confusion']


def test_nan_loss_stops_with_a_clear_message(tiny_store, tmp_path):
    with pytest.raises(TaggerError, match='loss became (nan|inf) in epoch 1'):
        finetune.train(_config(tiny_store, learning_rate=50.0, epochs=1),
                       tmp_path / 'nan', progress=False, log=lambda *a: None)


def test_zoo_weights_must_exist_unless_from_scratch(tiny_store, tmp_path):
    cfg = _config(tiny_store, from_scratch=False, width=1.0,
                  weights=str(tmp_path / 'missing.pkl'))
    with pytest.raises(TaggerError, match='fetch-weights.*from_scratch=true'):
        finetune.build_network(cfg, 8, 32)
    with pytest.raises(TaggerError, match='width 0.5 cannot load'):
        finetune.build_network(_config(tiny_store, from_scratch=False,
                                       width=0.5), 8, 32)


def test_zoo_weights_initialise_all_but_the_head(zoo_pickle, tiny_store):
    from lasagne_tagger import googlenet
    path, params, _ = zoo_pickle
    cfg = _config(tiny_store, from_scratch=False, width=1.0,
                  weights=str(path))
    net, init = finetune.build_network(cfg, 8, 32)
    assert 'model-zoo' in init
    got = googlenet.get_model_zoo_values(net, googlenet.PARAM_LAYERS[:-1])
    assert all(np.array_equal(a, b) for a, b in zip(got, params[:-2]))
    assert net['loss3/classifier'].W.get_value().shape == (1024, 8)
