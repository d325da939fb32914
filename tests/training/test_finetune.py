"""Fine-tuning on a tiny GoogLeNet (width 1/8, 32 px) and a synthetic store."""
import json

import numpy as np
import pytest

from lasagne_tagger.training import checkpoint, finetune
from lasagne_tagger.errors import TaggerError


@pytest.fixture(scope='module')
def tiny_store(tmp_path_factory):
    from lasagne_tagger.data import datasets, store, synthetic
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


@pytest.mark.slow
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
    from lasagne_tagger.model import googlenet
    path, params, _ = zoo_pickle
    cfg = _config(tiny_store, from_scratch=False, width=1.0,
                  weights=str(path))
    net, init = finetune.build_network(cfg, 8, 32)
    assert 'model-zoo' in init
    got = googlenet.get_model_zoo_values(net, googlenet.PARAM_LAYERS[:-1])
    assert all(np.array_equal(a, b) for a, b in zip(got, params[:-2]))
    assert net['loss3/classifier'].W.get_value().shape == (1024, 8)


def test_flip_and_shift_move_pixels_without_inventing_them():
    rng = np.random.RandomState(0)
    crops = rng.randint(0, 256, size=(64, 8, 8, 3)).astype(np.uint8)
    flipped = finetune.flip_shift_batch(crops, np.random.RandomState(1),
                                        flip=True, shift=0.0)
    mirrored = [np.array_equal(b, a[:, ::-1]) for a, b in zip(crops, flipped)]
    same = [np.array_equal(b, a) for a, b in zip(crops, flipped)]
    assert all(m or s for m, s in zip(mirrored, same))
    assert 16 < sum(mirrored) < 48          # about half are mirrored
    shifted = finetune.flip_shift_batch(crops, np.random.RandomState(2),
                                        flip=False, shift=0.25)
    assert shifted.shape == crops.shape and shifted.dtype == np.uint8
    moved = 0
    for a, b in zip(crops, shifted):
        padded = np.pad(a, ((2, 2), (2, 2), (0, 0)), mode='edge')
        hits = [(dy, dx) for dy in range(5) for dx in range(5)
                if np.array_equal(padded[dy:dy + 8, dx:dx + 8], b)]
        assert hits, 'a shifted crop is not a window of the padded crop'
        moved += (2, 2) not in hits
    assert moved > 32
    untouched = finetune.flip_shift_batch(crops, np.random.RandomState(3),
                                          flip=False, shift=0.0)
    np.testing.assert_array_equal(untouched, crops)


def test_learning_rate_schedules():
    step = finetune.FinetuneConfig(learning_rate=0.1, lr_decay=0.5,
                                   lr_step_epochs=2, epochs=6)
    assert [step.learning_rate_at(e) for e in range(6)] == pytest.approx(
        [0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    cos = finetune.FinetuneConfig(learning_rate=0.1, lr_schedule='cosine',
                                  warmup_epochs=3, epochs=7)
    cos.validate()
    rates = [cos.learning_rate_at(e) for e in range(7)]
    assert rates[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert rates[5] == pytest.approx(0.05)          # half-way down
    assert all(a > b > 0 for a, b in zip(rates[3:], rates[4:]))
    for bad, match in [(dict(lr_schedule='linear'), 'lr_schedule'),
                       (dict(warmup_epochs=7), 'warmup_epochs'),
                       (dict(shift=0.5), 'shift')]:
        with pytest.raises(TaggerError, match=match):
            finetune.FinetuneConfig(epochs=7, **bad).validate()
