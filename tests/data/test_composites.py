"""Multi-garment composites: layout, whole garments, truth sets, errors."""
import numpy as np
import pytest

from lasagne_tagger.data import composites
from lasagne_tagger.data.composites import (BACKGROUND, composite_truth,
                                       make_composites)
from lasagne_tagger.errors import TaggerError


def _sources(n_classes=4, per_class=3, h=64, w=64, seed=0):
    """Random (noise) images: any misplaced or resampled pixel shows."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n_classes * per_class, h, w, 3),
                          dtype=np.uint8)
    labels = np.repeat(np.arange(n_classes), per_class)
    return images, labels


def _halve(image):
    """Independent 2x downscale: the mean of each 2 x 2 block."""
    h, w = image.shape[:2]
    blocks = image.reshape(h // 2, 2, w // 2, 2, 3).astype(np.float64)
    return blocks.mean(axis=(1, 3))


def _close(a, b, tol=1.0):
    return np.abs(np.asarray(a, np.float64) - b).max() <= tol


def test_two_side_by_side_each_source_whole():
    images, labels = _sources()
    out, idx, labs = make_composites(images, labels, n=6, k=2, seed=1)
    assert out.shape == (6, 64, 64, 3) and out.dtype == np.uint8
    assert idx.shape == labs.shape == (6, 2)
    for i in range(6):
        for j, (x0, x1) in enumerate(((0, 32), (32, 64))):
            cell = out[i, :, x0:x1]
            # Whole source, shrunk to 32 x 32, centred vertically...
            assert _close(cell[16:48], _halve(images[idx[i, j]]))
            # ...with neutral letterbox bars above and below.
            assert (cell[:16] == BACKGROUND).all()
            assert (cell[48:] == BACKGROUND).all()


def test_four_in_a_grid():
    images, labels = _sources(n_classes=5)
    out, idx, _ = make_composites(images, labels, n=4, k=4, size=64, seed=2)
    for i in range(4):
        for j, (y, x) in enumerate(((0, 0), (0, 32), (32, 0), (32, 32))):
            assert _close(out[i, y:y + 32, x:x + 32],
                          _halve(images[idx[i, j]]))


def test_three_leaves_last_cell_empty():
    images, labels = _sources()
    out, idx, _ = make_composites(images, labels, n=3, k=3, size=64, seed=3)
    assert idx.shape == (3, 3)
    for i in range(3):
        for j, (y, x) in enumerate(((0, 0), (0, 32), (32, 0))):
            assert _close(out[i, y:y + 32, x:x + 32],
                          _halve(images[idx[i, j]]))
        assert (out[i, 32:, 32:] == BACKGROUND).all()


def test_non_square_sources_keep_aspect():
    images, labels = _sources(h=32, w=64)
    out, idx, _ = make_composites(images, labels, n=2, k=2, seed=4)
    assert out.shape == (2, 64, 64, 3)          # size = max(H, W)
    for i in range(2):
        for j, x0 in enumerate((0, 32)):
            cell = out[i, :, x0:x0 + 32]
            assert _close(cell[24:40], _halve(images[idx[i, j]]))
            assert (cell[:24] == BACKGROUND).all()
            assert (cell[40:] == BACKGROUND).all()


def test_larger_canvas_copies_exactly():
    images, labels = _sources()
    out, idx, _ = make_composites(images, labels, n=2, k=2, size=128,
                                  seed=5)
    for i in range(2):
        assert np.array_equal(out[i, 32:96, :64], images[idx[i, 0]])
        assert np.array_equal(out[i, 32:96, 64:], images[idx[i, 1]])


def test_classes_distinct_labels_match_and_all_used():
    images, labels = _sources(n_classes=6, per_class=4)
    labels = labels * 10 + 7                    # any integer labels
    out, idx, labs = make_composites(images, labels, n=60, k=3, seed=6)
    assert np.array_equal(labs, labels[idx])
    for row in labs:
        assert len(set(row.tolist())) == 3
    assert set(labs.ravel().tolist()) == set(labels.tolist())
    assert len(set(idx.ravel().tolist())) > 12  # not always the same image


def test_deterministic_by_seed():
    images, labels = _sources()
    a = make_composites(images, labels, n=5, k=2, seed=9)
    b = make_composites(images, labels, n=5, k=2, seed=9)
    c = make_composites(images, labels, n=5, k=2, seed=10)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    assert not np.array_equal(a[1], c[1])


def test_zero_composites():
    images, labels = _sources()
    out, idx, labs = make_composites(images, labels, n=0, k=2)
    assert out.shape == (0, 64, 64, 3) and idx.shape == labs.shape == (0, 2)


def test_cells_tile_the_canvas():
    for k in range(2, 10):
        boxes = composites.cell_boxes(k, 67)
        assert len(boxes) == k
        rows, cols = composites.grid_shape(k)
        assert rows * cols >= k > (rows - 1) * cols
        area = sum((r - l) * (b - t) for l, t, r, b in boxes)
        assert area <= 67 * 67
        assert all(r > l and b > t for l, t, r, b in boxes)


def test_truth_is_the_union():
    tags = [['T-shirt', 'short sleeves', 'upper body'],
            ['trousers', 'full length', 'lower body'],
            ['shirt', 'long sleeves', 'upper body']]
    truth = composite_truth([[0, 1], [0, 2], np.array([2, 1, 0])], tags)
    assert truth == [
        {'T-shirt', 'short sleeves', 'upper body', 'trousers',
         'full length', 'lower body'},
        {'T-shirt', 'short sleeves', 'upper body', 'shirt', 'long sleeves'},
        set().union(*tags)]
    as_dict = composite_truth(np.array([[10, 30]]),
                              {10: ('a', 'b'), 30: ('b', 'c')})
    assert as_dict == [{'a', 'b', 'c'}]


def test_truth_errors():
    tags = [['a'], ['b']]
    with pytest.raises(TaggerError, match='label 2 has no tag list'):
        composite_truth([[0, 2]], tags)
    with pytest.raises(TaggerError, match='label -1'):
        composite_truth([[-1, 0]], tags)
    with pytest.raises(TaggerError, match='label 5'):
        composite_truth([[5]], {0: ['a']})
    with pytest.raises(TaggerError, match='integers'):
        composite_truth([[0.0, 1.0]], tags)
    with pytest.raises(TaggerError, match='string'):
        composite_truth([[0]], ['abc'])


@pytest.mark.parametrize('change, match', [
    (dict(k=1), 'k'),
    (dict(k=0), 'k'),
    (dict(k=2.0), 'k'),
    (dict(k=5), 'distinct classes'),
    (dict(n=-1), 'n '),
    (dict(n=1.5), 'n '),
    (dict(seed=-2), 'seed'),
    (dict(size=1), 'size'),
    (dict(images=np.zeros((0, 64, 64, 3), np.uint8),
          labels=np.zeros(0, int)), 'no images'),
    (dict(images=np.zeros((12, 64, 64), np.uint8)), 'shape'),
    (dict(images=np.zeros((12, 64, 64, 3), np.float32)), 'uint8'),
    (dict(labels=np.arange(11)), '12 labels'),
    (dict(labels=np.arange(12) * 1.0), 'integers'),
])
def test_errors(change, match):
    images, labels = _sources()
    kwargs = dict(images=images, labels=labels, n=2, k=2)
    kwargs.update(change)
    with pytest.raises(TaggerError, match=match):
        make_composites(**kwargs)


def test_one_class_is_not_enough():
    images, labels = _sources(n_classes=1)
    with pytest.raises(TaggerError, match='need 2 distinct classes'):
        make_composites(images, labels, n=1, k=2)
