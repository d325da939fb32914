"""The rendered apparel dataset: layout, determinism, distinct classes."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from lasagne_tagger.data import synthetic
from lasagne_tagger.errors import TaggerError

SPLITS = {'train': 3, 'validation': 2, 'test': 1}


def _files(root):
    """Relative path -> bytes of every file under root."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, 'rb') as fh:
                out[os.path.relpath(path, root)] = fh.read()
    return out


def _shape_descriptor(mask, cells=16):
    """The silhouette cropped to its bounding box and resized to a fixed
    grid (position and scale invariant), plus its log aspect ratio
    (weighted up: it alone tells trousers from shorts once cropped)."""
    on = mask > 0.5
    rows, cols = np.flatnonzero(on.any(axis=1)), np.flatnonzero(on.any(axis=0))
    crop = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    small = Image.fromarray((crop * 255).astype(np.uint8), 'L').resize(
        (cells, cells), Image.BOX)
    aspect = np.log(crop.shape[0] / float(crop.shape[1]))
    return np.append(np.asarray(small, np.float64).ravel() / 255.0,
                     4.0 * aspect)


def test_layout_counts_and_sizes(tmp_path):
    root = tmp_path / 'data'
    assert synthetic.render_dataset(root, SPLITS, size=32) == str(root)
    assert sorted(os.listdir(root)) == sorted(list(SPLITS) +
                                              ['taxonomy.json'])
    for split, count in SPLITS.items():
        assert sorted(os.listdir(root / split)) == sorted(synthetic.CLASSES)
        for cls in synthetic.CLASSES:
            names = sorted(os.listdir(root / split / cls))
            assert names == ['%04d.png' % i for i in range(count)]
            for name in names:
                with Image.open(root / split / cls / name) as image:
                    assert image.format == 'PNG'
                    assert image.mode == 'RGB'
                    assert image.size == (32, 32)
    with open(root / 'taxonomy.json', encoding='utf-8') as fh:
        info = json.load(fh)
    assert info['name'] == 'synthetic-apparel'
    assert list(info['classes']) == list(synthetic.CLASSES)
    for cls, tags in info['classes'].items():
        assert tags == list(synthetic.TAXONOMY[cls])


def test_same_seed_byte_identical_other_seed_differs(tmp_path):
    a = synthetic.render_dataset(tmp_path / 'a', SPLITS, size=32, seed=3)
    b = synthetic.render_dataset(tmp_path / 'b', SPLITS, size=32, seed=3)
    c = synthetic.render_dataset(tmp_path / 'c', SPLITS, size=32, seed=4)
    fa, fb, fc = _files(a), _files(b), _files(c)
    assert fa == fb
    pngs = [name for name in fa if name.endswith('.png')]
    assert len(pngs) == 8 * sum(SPLITS.values())
    assert all(fa[name] != fc[name] for name in pngs)
    # Every image in a render is different from every other.
    assert len({fa[name] for name in pngs}) == len(pngs)


def test_image_does_not_depend_on_counts(tmp_path):
    small = _files(synthetic.render_dataset(tmp_path / 's', {'train': 2},
                                            size=32))
    large = _files(synthetic.render_dataset(tmp_path / 'l',
                                            {'train': 4, 'test': 1},
                                            size=32))
    for name, data in small.items():
        if name.endswith('.png'):
            assert large[name] == data


def test_rerender_replaces_an_earlier_render(tmp_path):
    root = tmp_path / 'data'
    synthetic.render_dataset(root, {'train': 4, 'test': 2}, size=32)
    synthetic.render_dataset(root, {'train': 2}, size=32, seed=1)
    assert sorted(os.listdir(root)) == ['taxonomy.json', 'train']
    assert sorted(os.listdir(root / 'train' / 'hat')) == ['0000.png',
                                                          '0001.png']
    fresh = synthetic.render_dataset(tmp_path / 'fresh', {'train': 2},
                                     size=32, seed=1)
    assert _files(root) == _files(fresh)


def test_refuses_foreign_folders(tmp_path):
    foreign = tmp_path / 'photos'
    foreign.mkdir()
    (foreign / 'holiday.png').write_bytes(b'not ours')
    with pytest.raises(TaggerError, match='not empty'):
        synthetic.render_dataset(foreign, SPLITS, size=32)
    assert os.listdir(foreign) == ['holiday.png']
    with pytest.raises(TaggerError, match='not a folder'):
        synthetic.render_dataset(foreign / 'holiday.png', SPLITS, size=32)


@pytest.mark.parametrize('kwargs, match', [
    (dict(size=31), 'size'),
    (dict(size=64.0), 'size'),
    (dict(size=True), 'size'),
    (dict(seed=-1), 'seed'),
    (dict(seed=1.5), 'seed'),
    (dict(per_class={'train': -1}), 'per_class'),
    (dict(per_class={'train': 2.0}), 'per_class'),
    (dict(per_class={'../up': 1}), 'folder name'),
    (dict(per_class={'': 1}), 'folder name'),
    (dict(per_class={'train': 0}), 'no images'),
    (dict(per_class=[('train', 1)]), 'per_class'),
    (dict(per_class=5), 'per_class'),
])
def test_bad_arguments(tmp_path, kwargs, match):
    kwargs.setdefault('per_class', SPLITS)
    with pytest.raises(TaggerError, match=match):
        synthetic.render_dataset(tmp_path / 'x', **kwargs)
    assert not (tmp_path / 'x').exists()


def test_render_garment_errors():
    with pytest.raises(TaggerError, match='unknown synthetic class'):
        synthetic.render_garment('sock', 64, 0)
    with pytest.raises(TaggerError, match='size'):
        synthetic.render_garment('hat', 16, 0)


@pytest.mark.parametrize('size', [32, 45, 64, 224])
def test_render_garment_any_size(size):
    for cls in synthetic.CLASSES:
        image, mask = synthetic.render_garment(cls, size, 7, with_mask=True)
        assert image.mode == 'RGB' and image.size == (size, size)
        assert mask.shape == (size, size) and mask.dtype == np.float32
        assert 0.0 <= mask.min() and mask.max() <= 1.0
        # 55-90% of the side for the larger bounding-box side (antialiased
        # edges and rounding allow a pixel or two either way).
        on = mask > 0.5
        height = np.flatnonzero(on.any(axis=1)).ptp() + 1
        width = np.flatnonzero(on.any(axis=0)).ptp() + 1
        assert 0.55 * size - 2 <= max(height, width) <= 0.9 * size + 2
        # The garment is drawn where its mask is, in a colour that differs
        # from the background around it.
        pixels = np.asarray(image, np.float64)
        inside = pixels[mask > 0.99].mean(axis=0)
        outside = pixels[mask < 0.01].mean(axis=0)
        assert np.abs(inside - outside).sum() > 20


def test_render_garment_deterministic():
    one = synthetic.render_garment('dress', 64, np.random.default_rng(11))
    two = synthetic.render_garment('dress', 64, 11)
    other = synthetic.render_garment('dress', 64, 12)
    assert np.array_equal(np.asarray(one), np.asarray(two))
    assert not np.array_equal(np.asarray(one), np.asarray(other))


def test_classes_have_distinct_silhouettes():
    """Nearest-centroid on scale/position-free silhouettes separates the
    classes on held-out samples, and all class centroids are far apart
    (two classes drawn alike would fail both)."""
    per_class, fit = 32, 20
    features = {cls: np.array([
        _shape_descriptor(synthetic.render_garment(
            cls, 64, 1000 * c + i, with_mask=True)[1])
        for i in range(per_class)]) for c, cls in enumerate(synthetic.CLASSES)}
    centroids = np.array([features[cls][:fit].mean(axis=0)
                          for cls in synthetic.CLASSES])
    for a in range(len(centroids)):
        for b in range(a + 1, len(centroids)):
            gap = np.abs(centroids[a] - centroids[b]).mean()
            assert gap > 0.08, (synthetic.CLASSES[a], synthetic.CLASSES[b],
                                gap)
    correct = []
    for c, cls in enumerate(synthetic.CLASSES):
        guesses = [np.argmin(((centroids - x) ** 2).sum(axis=1))
                   for x in features[cls][fit:]]
        correct.append(np.mean(np.equal(guesses, c)))
        assert correct[-1] >= 0.75, (cls, correct[-1])
    assert np.mean(correct) >= 0.9


def test_taxonomy():
    assert tuple(synthetic.TAXONOMY) == synthetic.CLASSES
    assert len(synthetic.CLASSES) == 8
    sets = [frozenset(tags) for tags in synthetic.TAXONOMY.values()]
    assert len(set(sets)) == len(sets)          # each tag set is unique
    for tags in synthetic.TAXONOMY.values():
        assert len(tags) == len(set(tags)) >= 2
        assert all(isinstance(t, str) and t.strip() == t and t
                   for t in tags)
    counts = {}
    for tags in synthetic.TAXONOMY.values():
        for tag in tags:
            counts[tag] = counts.get(tag, 0) + 1
    for general in ('upper body', 'lower body', 'accessory'):
        assert counts[general] >= 2
    assert set(synthetic.TAXONOMY['t-shirt']) & \
        set(synthetic.TAXONOMY['long-sleeve'])
    with pytest.raises(TypeError):
        synthetic.TAXONOMY['hat'] = ('cap',)
