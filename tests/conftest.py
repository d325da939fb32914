"""Shared pytest fixtures.

The suite runs Theano: the package's one entry point prepares it before any
test module imports it (importing the package itself no longer does).
"""
import os

import numpy as np
import pytest

import lasagne_tagger.runtime._theano  # noqa: F401 (prepares Theano)


def pytest_report_header(config):
    """Which BLAS the suite links (pytest's header, first lines)."""
    from lasagne_tagger.runtime import blas
    from lasagne_tagger.runtime.compat import user_blas_ldflags
    return blas.describe(user_blas_ldflags() or '')


# ---------------------------------------------------------------------------
# Dataset / store fixtures (tests/test_datasets.py, tests/test_store.py).
# Every fixture in this block is named ds_*; each builds tiny data under
# tmp_path.
# ---------------------------------------------------------------------------

# The labels.json of the ACS archive: Python-dict-like, not JSON.
_DS_ACS_LABELS_TEXT = """{
0:  'blouses',
1:  'cloak',
2:  'coat',
3:  'jacket',
4:  'long dress',
5:  'polo shirt / sport shirt',
6:  'robe',
7:  'shirt',
8:  'short dress',
9:  'suit / suit of clothes',
10:  'sweater',
11:  'jersey / T-shirt / tee shirt',
12:  'undergarment / upper body',
13:  'uniform',
14:  'vest / waistcoat'
}
"""


def _ds_write_image(path, size=(40, 30), seed=0, fmt=None, mode='RGB'):
    """Write a small deterministic image (gradient + noise) to ``path``."""
    from PIL import Image

    w, h = size
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // max(1, w - 1), yy * 255 // max(1, h - 1),
                     np.full_like(xx, (seed * 37) % 256)], axis=-1)
    noise = rng.randint(0, 40, size=(h, w, 3))
    array = np.clip(base + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(array, 'RGB')
    if mode != 'RGB':
        image = image.convert(mode)
    path = str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path, format=fmt)
    return path


@pytest.fixture
def ds_write_image():
    """Factory ``(path, size=(w, h), seed=0, fmt=None, mode='RGB')`` that
    writes a small deterministic image and returns its path."""
    return _ds_write_image


@pytest.fixture
def ds_folder(tmp_path):
    """A tiny ``ROOT/<split>/<class>/*.jpg`` tree: splits train and
    validation, classes bag/cap/coat, plus noise the reader must ignore."""
    root = tmp_path / 'tiny'
    seed = 0
    for split, per_class in (('train', 3), ('validation', 1)):
        for name in ('coat', 'bag', 'cap'):
            for i in range(per_class):
                seed += 1
                ext = '.png' if i == 1 else '.jpg'
                _ds_write_image(root / split / name / ('img%d%s' % (i, ext)),
                                seed=seed)
            (root / split / name / '.DS_Store').write_bytes(b'junk')
            (root / split / name / 'notes.txt').write_text('not an image')
    (root / 'README.md').write_text('readme')
    (root / '.hidden_split' / 'x').mkdir(parents=True)
    (root / 'train' / '.cache').mkdir()
    return root


@pytest.fixture
def ds_build_acs():
    """Factory ``(base, train, test, labels=<ds_acs_labels_text>,
    images=None)`` building the extracted ACS layout under ``base``
    (``base/fashion-data/{images,train.txt,test.txt,labels.json}``).

    ``train``/``test`` are lists of split-file lines (paths relative to
    images/, no extension); every one gets an image unless ``images`` (a
    list of such paths) says which exist.  Returns the fashion-data path.
    """
    def build(base, train, test, labels=_DS_ACS_LABELS_TEXT, images=None):
        root = base / 'fashion-data'
        (root / 'images').mkdir(parents=True, exist_ok=True)
        for k, rel in enumerate(train + test if images is None else images):
            _ds_write_image(root / 'images' / (rel + '.jpg'), seed=100 + k,
                            fmt='JPEG')
        (root / 'train.txt').write_text(''.join(l + '\n' for l in train))
        (root / 'test.txt').write_text(''.join(l + '\n' for l in test))
        if labels is not None:
            (root / 'labels.json').write_text(labels)
        return root

    return build


@pytest.fixture
def ds_acs_labels_text():
    """The text of ACS's labels.json (all 15 classes, not valid JSON)."""
    return _DS_ACS_LABELS_TEXT


@pytest.fixture
def ds_acs_lines():
    """Typical ACS split lines: ``(train, test)``."""
    train = ['0/n02854926/n02854926_1007_0', '0/n02854926/n02854926_1010_1',
             '11/n04370048/n04370048_20_0', '9/n04350905/n04350905_3_0',
             '12/n04508949/n04508949_7_2']
    test = ['11/n04370048/n04370048_99_0', '0/n02854926/n02854926_2000_0']
    return train, test


@pytest.fixture
def ds_store_folder(tmp_path):
    """A folder dataset of 12 tiny images for store tests (crop size 16):
    8 good ones (varied sizes and modes) and 4 bad ones: corrupt
    (truncated JPEG), zero bytes, a text file named .jpg, and too small
    (12x10).  Returns ``(root, bad)`` with ``bad`` = {file name: reason
    fragment}."""
    root = tmp_path / 'storeset'
    good = [('train', 'a', 'g0.jpg', (40, 30), 'RGB'),
            ('train', 'a', 'g1.png', (20, 36), 'RGBA'),
            ('train', 'a', 'g2.png', (16, 16), 'L'),
            ('train', 'b', 'g3.jpg', (50, 20), 'RGB'),
            ('train', 'b', 'g4.png', (33, 41), 'P'),
            ('train', 'b', 'g5.jpg', (24, 24), 'RGB'),
            ('test', 'a', 'g6.jpg', (31, 17), 'RGB'),
            ('test', 'b', 'g7.png', (18, 45), 'RGB')]
    for k, (split, name, fname, size, mode) in enumerate(good):
        _ds_write_image(root / split / name / fname, size=size, seed=k,
                        mode=mode)
    # corrupt: a JPEG cut in half
    full = _ds_write_image(tmp_path / 'full.jpg', size=(64, 64), seed=50)
    data = open(full, 'rb').read()
    (root / 'train' / 'a' / 'b0_truncated.jpg').write_bytes(
        data[:len(data) // 2])
    (root / 'train' / 'b' / 'b1_empty.jpg').write_bytes(b'')
    (root / 'test' / 'a' / 'b2_text.jpg').write_text('hello, not a jpeg\n')
    _ds_write_image(root / 'test' / 'b' / 'b3_small.jpg', size=(12, 10),
                    seed=60)
    bad = {'b0_truncated.jpg': 'corrupt or truncated',
           'b1_empty.jpg': 'empty file',
           'b2_text.jpg': 'not an image',
           'b3_small.jpg': 'smaller than'}
    return root, bad

# ---------------------------------------------------------------------------
# end of the ds_* block
# ---------------------------------------------------------------------------


# --- project-wide fixtures -------------------------------------------------
import os as _os
import sys as _sys

# tests/ holds helper modules (numpy_reference, py2pickle) imported by name.
_sys.path.insert(0, _os.path.dirname(_os.path.abspath(__file__)))


@pytest.fixture(scope='session')
def zoo_pickle(tmp_path_factory):
    """A synthetic blvc_googlenet.pkl with the real file's structure: Python 2
    protocol-2 pickle, latin1 byte strings, 116 float32 arrays in the zoo's
    order and shapes (random values), 1000 synset words."""
    import numpy_reference
    import py2pickle
    params = numpy_reference.random_params(np.random.RandomState(7))
    synsets = ['n%08d fake synset %d' % (i, i) for i in range(1000)]
    path = tmp_path_factory.mktemp('zoo') / 'blvc_googlenet.pkl'
    py2pickle.write_model_zoo_pickle(path, params, synsets)
    return path, params, synsets


# --- reference bundles (tests/test_bundle.py, tests/test_port.py) ----------
# One tiny Theano export per session: Theano's first compile of a graph is
# the slow part, so every bundle test starts from this file (copied).
TINY_REFERENCE = dict(width=0.125, image_size=32, num_classes=10,
                      hidden_size=8, count=4, seed=0)


@pytest.fixture(scope='session')
def tiny_reference(tmp_path_factory):
    """Path of a reference bundle of a tiny random GoogLeNet (width 0.125,
    32 px, 10 classes) and tagger (8 units) on 4 embedded images."""
    from lasagne_tagger.ports.reference import export_reference
    path = tmp_path_factory.mktemp('reference') / 'tiny.h5'
    export_reference(str(path), log=lambda *a: None, **TINY_REFERENCE)
    return path


# --- a tiny trained system (tests/test_pipeline.py, tests/test_faults.py) ---
def _cli_ok(*argv):
    """Run ``lasagne-tagger ARGV`` in this process (``cli.main``); return
    its standard output, failing the test on a non-zero exit."""
    import contextlib
    import io
    from lasagne_tagger import cli
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main([str(a) for a in argv])
    assert code == 0, (argv, code, out.getvalue())
    return out.getvalue()


@pytest.fixture(scope='session')
def tiny_system(tmp_path_factory):
    """A tiny trained system (tests/test_pipeline.py, test_faults.py): a
    width-1/8 GoogLeNet at 32 px (1 epoch) on a rendered set, its
    features with rotations, a small tagger (300 iterations at a rate of
    0.01: the fewest here after which greedy decoding names tags; after 60
    at the default rate it still decodes only the end token).  Built through the command
    line (``cli.main``: prepare, train with ``--set``, evaluate, plot,
    extract, train-tagger), so each of those commands runs in the suite.
    Tests must not change these files (copy them first)."""
    import json
    from pathlib import Path
    from lasagne_tagger.training import finetune
    from lasagne_tagger.data import synthetic
    base = tmp_path_factory.mktemp('pipeline')
    root = Path(synthetic.render_dataset(
        base / 'data', per_class={'train': 6, 'validation': 2, 'test': 2},
        size=32, seed=5))
    store_path = base / 'store.h5'
    _cli_ok('prepare', root, store_path, '--size', 32, '--workers', 1,
            '--quiet')
    _cli_ok('train', '--store', store_path, '--from-scratch',
            '--set', 'width=0.125', '--set', 'epochs=1',
            '--set', 'batch_size=16', '--out', base / 'cnn', '--no-plots',
            '--quiet')
    saved = json.loads((base / 'cnn' / 'config.json').read_text())
    assert (saved['width'], saved['epochs'], saved['batch_size'],
            saved['from_scratch']) == (0.125, 1, 16, True)
    report = json.loads(_cli_ok('evaluate', base / 'cnn' / 'best',
                                store_path, '--split', 'test', '--json'))
    want = finetune.evaluate(str(base / 'cnn' / 'best'), str(store_path),
                             'test')
    assert report['count'] == 16 and report['accuracy'] == want['accuracy']
    plotted = _cli_ok('plot', base / 'cnn').split()
    assert plotted and all(Path(p).is_file() for p in plotted[1::2])
    feats = base / 'features.h5'
    _cli_ok('extract', base / 'cnn' / 'best', store_path, feats,
            '--rotations', '--quiet')
    _cli_ok('train-tagger', '--features', feats,
            '--taxonomy', root / 'taxonomy.json',
            '--set', 'embed_size=16', '--set', 'hidden_size=16',
            '--set', 'iterations=300', '--set', 'eval_every=100',
            '--set', 'batch_size=20', '--set', 'learning_rate=0.01',
            '--out', base / 'tagger', '--quiet')
    return {'base': base, 'root': root, 'store': store_path, 'feats': feats,
            'cnn': base / 'cnn' / 'best', 'tagger': base / 'tagger' / 'best'}
