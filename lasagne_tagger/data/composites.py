"""Multi-garment test images built from single-garment ones.

The 2016 blog post reports about 80% tag accuracy on unseen images showing
several garments.  :func:`make_composites` builds such images from a set of
single-garment crops: each composite shows ``k`` garments of *different*
classes, each whole (shrunk to fit its cell, never cropped), in a grid on a
neutral background; :func:`composite_truth` gives each composite's true tag
set, the union of its garments' tag sets.

Layout: the square canvas is cut into ``cols = ceil(sqrt(k))`` columns and
``rows = ceil(k / cols)`` rows (k=2: side by side; k=3 and 4: 2 x 2, with
k=3 leaving the last cell empty).  Each source keeps its aspect ratio and is
scaled to the largest size that fits its cell (Pillow ``BOX`` filter, an
exact area average, when shrinking; ``BILINEAR`` when enlarging), then
centred in it.  The background is the network's mean pixel,
:data:`BACKGROUND`, so the letterbox bars are zero after mean subtraction.
"""
import math
from collections.abc import Mapping

import numpy as np

from ..errors import TaggerError
from .preprocess import BGR_MEAN

__all__ = ['BACKGROUND', 'grid_shape', 'cell_boxes', 'make_composites',
           'composite_truth']

# RGB, the rounded BGR mean reversed: (123, 117, 104).
BACKGROUND = tuple(int(round(float(c))) for c in BGR_MEAN[::-1])


def grid_shape(k):
    """``(rows, cols)`` of the grid holding ``k`` garments."""
    cols = int(math.ceil(math.sqrt(k)))
    return int(math.ceil(k / float(cols))), cols


def cell_boxes(k, size):
    """The ``k`` cells of a ``size`` x ``size`` canvas.

    Returns
    -------
    list of tuple
        ``(left, top, right, bottom)`` pixel boxes (right and bottom
        exclusive), row by row.
    """
    rows, cols = grid_shape(k)
    xs = [int(round(j * size / float(cols))) for j in range(cols + 1)]
    ys = [int(round(i * size / float(rows))) for i in range(rows + 1)]
    boxes = [(xs[j], ys[i], xs[j + 1], ys[i + 1])
             for i in range(rows) for j in range(cols)]
    return boxes[:k]


def _fit(image, box):
    """Paste position and resized PIL image of a uint8 (H, W, 3) array
    scaled to fit ``box`` whole, keeping its aspect ratio."""
    from PIL import Image

    left, top, right, bottom = box
    cw, ch = right - left, bottom - top
    h, w = image.shape[:2]
    scale = min(cw / float(w), ch / float(h))
    nw = min(cw, max(1, int(round(w * scale))))
    nh = min(ch, max(1, int(round(h * scale))))
    picture = Image.fromarray(np.ascontiguousarray(image), 'RGB')
    if (nw, nh) != (w, h):
        method = Image.BOX if scale < 1 else Image.BILINEAR
        picture = picture.resize((nw, nh), method)
    return (left + (cw - nw) // 2, top + (ch - nh) // 2), picture


def _is_int(value):
    return isinstance(value, (int, np.integer)) and \
        not isinstance(value, (bool, np.bool_))


def make_composites(images, labels, n, k=2, size=None, seed=0):
    """Build ``n`` images each showing ``k`` garments of different classes.

    Parameters
    ----------
    images : array_like
        uint8 ``(N, H, W, 3)`` RGB single-garment images (e.g. crops).
    labels : array_like
        ``N`` integer class labels.
    n : int
        Number of composites (``>= 0``).
    k : int
        Garments per composite, ``>= 2``; needs at least ``k`` distinct
        labels among ``labels``.
    size : int, optional
        Side of the square composites; default ``max(H, W)``.  Each cell
        must be at least one pixel.
    seed : int
        Seed; the same arguments and seed give identical results.

    Returns
    -------
    composites : numpy.ndarray
        uint8 ``(n, size, size, 3)``.
    indices : numpy.ndarray
        int64 ``(n, k)``: row ``i`` holds the indices into ``images`` of
        composite ``i``'s garments, in cell order (row by row).
    label_lists : numpy.ndarray
        ``(n, k)``, ``labels[indices]``: each row's labels are distinct.

    Raises
    ------
    TaggerError
        Empty or malformed ``images``, ``labels`` of the wrong length or
        type, ``k < 2``, fewer than ``k`` distinct classes, a bad ``n``,
        ``size`` or ``seed``.

    Notes
    -----
    Each composite picks ``k`` distinct classes uniformly at random, then
    one image of each class uniformly; its cell order is random too.
    """
    from PIL import Image

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise TaggerError('expected images of shape (N, H, W, 3), got %s'
                          % (images.shape,))
    if images.shape[0] == 0:
        raise TaggerError('no images to build composites from')
    if images.dtype != np.uint8:
        raise TaggerError('expected uint8 images, got %s' % images.dtype)
    if images.shape[1] == 0 or images.shape[2] == 0:
        raise TaggerError('images are empty (%s)' % (images.shape,))
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise TaggerError('expected %d labels (one per image), got shape %s'
                          % (images.shape[0], labels.shape))
    if labels.dtype.kind not in 'iu':
        raise TaggerError('labels must be integers, got %s' % labels.dtype)
    if not _is_int(k) or k < 2:
        raise TaggerError('k (garments per composite) must be an integer '
                          '>= 2, got %r' % (k,))
    if not _is_int(n) or n < 0:
        raise TaggerError('n (number of composites) must be an integer '
                          '>= 0, got %r' % (n,))
    if not _is_int(seed) or seed < 0:
        raise TaggerError('seed must be an integer >= 0, got %r' % (seed,))
    classes = np.unique(labels)
    if len(classes) < k:
        raise TaggerError('composites of %d garments need %d distinct '
                          'classes, the labels have %d' % (k, k,
                                                           len(classes)))
    if size is None:
        size = max(images.shape[1], images.shape[2])
    rows, cols = grid_shape(k)
    if not _is_int(size) or size < max(rows, cols):
        raise TaggerError('size must be an integer >= %d for k=%d, got %r'
                          % (max(rows, cols), k, size))
    k, n, size = int(k), int(n), int(size)

    members = [np.flatnonzero(labels == c) for c in classes]
    rng = np.random.default_rng(seed)
    boxes = cell_boxes(k, size)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    indices = np.empty((n, k), dtype=np.int64)
    canvas_colour = tuple(BACKGROUND)
    for i in range(n):
        chosen = rng.choice(len(classes), size=k, replace=False)
        for j, c in enumerate(chosen):
            indices[i, j] = members[c][rng.integers(len(members[c]))]
        canvas = Image.new('RGB', (size, size), canvas_colour)
        for j, box in enumerate(boxes):
            corner, picture = _fit(images[indices[i, j]], box)
            canvas.paste(picture, corner)
        out[i] = np.asarray(canvas, dtype=np.uint8)
    return out, indices, labels[indices]


def composite_truth(label_lists, class_tags):
    """The true tag set of each composite: the union of its garments' tags.

    Parameters
    ----------
    label_lists : iterable of iterable of int
        Per composite, its garments' labels (e.g. the third result of
        :func:`make_composites`).
    class_tags : sequence or mapping
        ``class_tags[label]`` is that class's tags (any iterable of
        strings): a list indexed by label, or a dict keyed by label.

    Returns
    -------
    list of set
        One set of tags per composite.

    Raises
    ------
    TaggerError
        A label with no entry in ``class_tags``, or a non-integer label.
    """
    is_mapping = isinstance(class_tags, Mapping)
    truth = []
    for labels in label_lists:
        tags = set()
        for label in np.atleast_1d(np.asarray(labels)).tolist():
            if not _is_int(label):
                raise TaggerError('labels must be integers, got %r'
                                  % (label,))
            if is_mapping:
                found = label in class_tags
            else:
                found = 0 <= label < len(class_tags)
            if not found:
                raise TaggerError('label %d has no tag list (%d classes '
                                  'known)' % (label, len(class_tags)))
            entry = class_tags[label]
            if isinstance(entry, str):
                raise TaggerError('tags of label %d must be a list of '
                                  'strings, not the string %r'
                                  % (label, entry))
            tags.update(entry)
        truth.append(tags)
    return truth
