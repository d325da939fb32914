"""A small apparel dataset the project renders itself: the demo's default.

Eight garment classes are drawn as silhouettes with Pillow polygons, so the
classes differ clearly in shape:

==============  ============================================
class           silhouette
==============  ============================================
``t-shirt``     torso with short sleeves pointing outwards
``long-sleeve`` torso with long sleeves hanging beside it
``dress``       fitted bodice flaring to a long skirt
``skirt``       trapezoid under a waistband
``trousers``    waistband over two long legs
``shorts``      waistband over two short, flared legs
``hat``         crown over a wide brim
``shoe``        side view: sole under a sloping upper
==============  ============================================

Each image has random garment colours and texture (solid, stripes, dots or
checks), size (55-90% of the image side), position, a slight rotation, and
a random background (solid, gradient or noise).  Everything derives from
one integer seed: the same seed gives byte-identical PNG files, and image
``i`` of a class and split does not depend on how many others are drawn.

:func:`render_dataset` writes the same folder layout as a real dataset::

    ROOT/taxonomy.json
    ROOT/<split>/<class>/<i>.png

with ``taxonomy.json`` holding ``{"name": "synthetic-apparel", "classes":
{class: [tag, ...]}}``: ordered tag lists in the style of the ACS tags,
specific first, with general tags ("upper body", "lower body",
"accessory", ...) shared between classes and every class's tag *set*
unique.
"""
import colorsys
import json
import math
import os
import re
import sys
import types
import zlib

import numpy as np

from ..atomic import write_json
from ..errors import TaggerError

__all__ = ['CLASSES', 'TAXONOMY', 'DATASET_NAME', 'DEFAULT_PER_CLASS',
           'DEFAULT_SIZE', 'MIN_SIZE', 'render_garment', 'render_dataset']

DATASET_NAME = 'synthetic-apparel'

CLASSES = ('t-shirt', 'long-sleeve', 'dress', 'skirt', 'trousers', 'shorts',
           'hat', 'shoe')

# Read-only view: class -> ordered tag tuple (specific -> general).
TAXONOMY = types.MappingProxyType({
    't-shirt': ('T-shirt', 'short sleeves', 'upper body'),
    'long-sleeve': ('shirt', 'long sleeves', 'upper body'),
    'dress': ('dress', 'full length', 'one piece'),
    'skirt': ('skirt', 'knee length', 'lower body'),
    'trousers': ('trousers', 'full length', 'lower body'),
    'shorts': ('shorts', 'short length', 'lower body'),
    'hat': ('hat', 'headwear', 'accessory'),
    'shoe': ('shoe', 'footwear', 'accessory'),
})

# About 150 images a class; the demo trains at 64 x 64.
DEFAULT_PER_CLASS = types.MappingProxyType(
    {'train': 120, 'validation': 15, 'test': 15})
DEFAULT_SIZE = 64
MIN_SIZE = 32

_MARKER = '.synthetic-apparel-incomplete'
_IMAGE_NAME = re.compile(r'^[0-9]+\.png$')
_TEXTURES = ('solid', 'stripes', 'dots', 'checks')
_BACKGROUNDS = ('solid', 'gradient', 'noise')


# --------------------------------------------------------------------------
# Silhouettes, in a canonical frame (x right, y down, about unit size).
# Each returns (body polygons, detail polygons); details (waistbands, cuffs,
# soles, ...) are drawn on top of the body in a second colour.

def _arc(cx, cy, rx, ry, t0, t1, n=12):
    """Points on an ellipse, angle t0 -> t1 (radians, y down)."""
    t = np.linspace(t0, t1, n)
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in t]


def _mirror(right):
    """Close a right half (top centre, clockwise, to bottom centre)."""
    return list(right) + [(1.0 - x, y) for x, y in reversed(right)]


def _band(y0, y1, left, right):
    """Quadrilateral between heights y0 and y1 of two side edges, given as
    functions y -> x."""
    return [(left(y0), y0), (right(y0), y0), (right(y1), y1), (left(y1), y1)]


def _edge(p, q):
    """The line through points p and q as a function y -> x."""
    (x0, y0), (x1, y1) = p, q
    return lambda y: x0 + (x1 - x0) * (y - y0) / (y1 - y0)


def _neck_trim(nw, nd, w):
    outer = _arc(0.5, 0.0, nw + w, nd + w, math.pi, 0.0)
    inner = _arc(0.5, 0.0, nw, nd, 0.0, math.pi)
    return outer + inner


def _top(rng, long_sleeves):
    tw = rng.uniform(0.25, 0.31)            # torso half width
    hem = rng.uniform(0.85, 1.0)
    nw, nd = rng.uniform(0.08, 0.11), rng.uniform(0.05, 0.11)
    shoulder = (0.5 + tw + 0.03, 0.07)
    armpit_y = rng.uniform(0.27, 0.33)
    right = [(0.5, nd)] + _arc(0.5, 0.0, nw, nd, math.pi / 2, 0.0, 6)[1:]
    right.append(shoulder)
    details = [_neck_trim(nw, nd, 0.035)]
    if long_sleeves:
        cuff_y = hem * rng.uniform(0.72, 0.85)
        outer = (0.5 + tw + rng.uniform(0.17, 0.23), cuff_y)
        inner = (outer[0] - rng.uniform(0.10, 0.13), cuff_y + 0.03)
        right += [outer, inner, (0.5 + tw, armpit_y + 0.03)]
        up = _edge(shoulder, outer)
        lo = _edge((0.5 + tw, armpit_y + 0.03), inner)
        c0 = cuff_y - 0.08
        cuff = [(up(c0), c0), outer, inner,
                (lo(c0 + 0.03), c0 + 0.03)]
        details += [cuff, [(1.0 - x, y) for x, y in cuff]]
    else:
        length = rng.uniform(0.17, 0.24)
        d = np.array([1.0, rng.uniform(0.45, 0.75)])
        d /= np.hypot(*d)
        end = (shoulder[0] + length * d[0], shoulder[1] + length * d[1])
        opening = rng.uniform(0.13, 0.17)
        cuff = (end[0] - opening * d[1], end[1] + opening * d[0])
        right += [end, cuff, (0.5 + tw, armpit_y)]
    flare = rng.uniform(0.0, 0.03)
    right += [(0.5 + tw + flare, hem), (0.5, hem)]
    return [_mirror(right)], details


def _dress(rng):
    bw = rng.uniform(0.13, 0.17)            # bodice half width
    ww = bw * rng.uniform(0.78, 0.9)        # waist half width
    wy = rng.uniform(0.33, 0.40)
    hw = rng.uniform(0.36, 0.5)             # hem half width
    hem = rng.uniform(1.2, 1.45)
    nd = rng.uniform(0.07, 0.14)
    waist = (0.5 + ww, wy)
    hem_side = (0.5 + hw, hem)
    right = [(0.5, nd), (0.5 + 0.06, 0.0), (0.5 + 0.11, 0.0),
             (0.5 + bw * 0.92, 0.11), (0.5 + bw, 0.17), waist, hem_side]
    # A gently curved hem.
    right += [(0.5 + hw * f, hem + 0.04 * (1 - f * f)) for f in (0.66, 0.33)]
    right.append((0.5, hem + 0.04))
    side = _edge(waist, hem_side)
    belt = _band(wy - 0.035, wy + 0.035, lambda y: 1.0 - side(y) + 0.01,
                 lambda y: side(y) - 0.01)
    return [_mirror(right)], [belt]


def _skirt(rng):
    ww = rng.uniform(0.2, 0.26)
    hw = rng.uniform(0.38, 0.48)
    hem = rng.uniform(0.65, 0.85)
    band = rng.uniform(0.07, 0.1)
    right = [(0.5, 0.0), (0.5 + ww, 0.0), (0.5 + ww + 0.01, band),
             (0.5 + hw, hem), (0.5 + hw * 0.5, hem + 0.025),
             (0.5, hem + 0.03)]
    return ([_mirror(right)],
            [[(0.5 - ww, 0.0), (0.5 + ww, 0.0), (0.5 + ww + 0.01, band),
              (0.5 - ww - 0.01, band)]])


def _legs(rng, short):
    ww = rng.uniform(0.2, 0.25)             # waist half width
    band = rng.uniform(0.05, 0.07)
    if short:
        hem = rng.uniform(0.45, 0.6)
        crotch = rng.uniform(0.27, 0.33)
        outer = ww + rng.uniform(0.04, 0.09)
        leg = rng.uniform(0.19, 0.23)
    else:
        hem = rng.uniform(1.25, 1.45)
        crotch = rng.uniform(0.32, 0.4)
        outer = ww + rng.uniform(0.0, 0.05)
        leg = rng.uniform(0.15, 0.18)
    leg = min(leg, outer - 0.05)            # keep a gap between the legs
    right = [(0.5, 0.0), (0.5 + ww, 0.0), (0.5 + ww + 0.005, band),
             (0.5 + outer, hem), (0.5 + outer - leg, hem), (0.5, crotch)]
    return ([_mirror(right)],
            [[(0.5 - ww, 0.0), (0.5 + ww, 0.0), (0.5 + ww + 0.005, band),
              (0.5 - ww - 0.005, band)]])


def _hat(rng):
    cw = rng.uniform(0.21, 0.29)            # crown half width at the base
    ch = rng.uniform(0.3, 0.45)             # crown height
    bw = rng.uniform(0.42, 0.55)            # brim half width
    bt = rng.uniform(0.05, 0.09)            # brim half thickness
    if rng.random() < 0.5:                  # dome (bowler, cap)
        crown = _arc(0.5, ch, cw, ch, math.pi, 2 * math.pi, 16)
    else:                                   # tapered with a dented top
        top = cw * rng.uniform(0.75, 0.95)
        crown = [(0.5 - cw, ch), (0.5 - top, 0.06), (0.5 - top * 0.5, 0.0),
                 (0.5, 0.05), (0.5 + top * 0.5, 0.0), (0.5 + top, 0.06),
                 (0.5 + cw, ch)]
    brim = _arc(0.5, ch, bw, bt, 0.0, 2 * math.pi, 24)
    h = min(0.09, ch * 0.3)
    inset = cw * (1 - math.sqrt(max(0.0, 1 - (h / ch) ** 2))) + 0.01
    band = [(0.5 - cw + inset, ch - h), (0.5 + cw - inset, ch - h),
            (0.5 + cw, ch), (0.5 - cw, ch)]
    return [crown, brim], [band]


def _shoe(rng):
    sb = rng.uniform(0.42, 0.5)             # bottom of the sole
    st = rng.uniform(0.05, 0.08)            # sole thickness
    collar = rng.uniform(0.04, 0.16)        # lower y: higher ankle (boot)
    instep = rng.uniform(0.15, 0.22)
    toe = rng.uniform(0.13, 0.18)           # toe height above the sole
    upper = [(0.02, sb - st * 0.5), (0.03, collar),
             (0.3, collar + rng.uniform(0.03, 0.08)),
             (0.55, collar + instep), (0.78, sb - toe - 0.05)]
    upper += _arc(0.84, sb - st, 0.15, toe, -math.pi / 2, 0.0, 8)[1:]
    upper += [(0.97, sb - st * 0.5)]
    sole = [(0.0, sb - st), (0.98, sb - st), (1.0, sb - st * 0.4),
            (0.97, sb), (0.02, sb)]
    return [upper, sole], [sole]


_SHAPES = types.MappingProxyType({
    't-shirt': lambda rng: _top(rng, long_sleeves=False),
    'long-sleeve': lambda rng: _top(rng, long_sleeves=True),
    'dress': _dress,
    'skirt': _skirt,
    'trousers': lambda rng: _legs(rng, short=False),
    'shorts': lambda rng: _legs(rng, short=True),
    'hat': _hat,
    'shoe': _shoe,
})


# --------------------------------------------------------------------------
# Colours, textures, backgrounds.

def _colour(rng):
    """A random RGB colour (float, 0..255); one in four is greyish."""
    sat = rng.uniform(0.0, 0.15) if rng.random() < 0.25 else \
        rng.uniform(0.35, 1.0)
    rgb = colorsys.hsv_to_rgb(rng.random(), sat, rng.uniform(0.12, 1.0))
    return np.array(rgb, dtype=np.float32) * 255.0


def _background(rng, size, yy, xx):
    kind = _BACKGROUNDS[rng.integers(len(_BACKGROUNDS))]
    c1 = _colour(rng)
    if kind == 'solid':
        image = np.broadcast_to(c1, (size, size, 3)).astype(np.float32)
    elif kind == 'gradient':
        c2 = _colour(rng)
        angle = rng.uniform(0, 2 * math.pi)
        t = (xx * math.cos(angle) + yy * math.sin(angle)) / size
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
        image = c1 + t[..., None] * (c2 - c1)
    else:
        from PIL import Image
        coarse = rng.normal(0.0, 30.0, size=(4, 4, 3))
        planes = [np.asarray(Image.fromarray(coarse[..., c].astype(np.float32),
                                             'F').resize((size, size),
                                                         Image.BILINEAR))
                  for c in range(3)]
        grain = rng.random(size=(size, size, 3), dtype=np.float32)
        image = c1 + np.stack(planes, axis=-1) + 24.0 * (grain - 0.5)
    return image.astype(np.float32), c1


def _texture(rng, kind, base, u, v, period):
    """Garment pattern in garment coordinates ``u``, ``v`` (pixels)."""
    if kind == 'solid':
        return np.broadcast_to(base, u.shape + (3,))
    second = _colour(rng)
    if np.abs(second - base).sum() < 120:   # keep the pattern visible
        second = 255.0 - base
    if kind == 'stripes':
        w = (u, v, (u + v) * math.sqrt(0.5))[rng.integers(3)]
        on = (w % period) < period * rng.uniform(0.3, 0.6)
    elif kind == 'dots':
        du = (u % period) - period / 2
        dv = (v % period) - period / 2
        on = du * du + dv * dv < (period * rng.uniform(0.2, 0.35)) ** 2
    else:
        on = ((np.floor(u / period) + np.floor(v / period)) % 2) == 1
    return np.where(on[..., None], second, base)


# --------------------------------------------------------------------------

def _check_class(cls):
    if cls not in _SHAPES:
        raise TaggerError('unknown synthetic class %r (expected one of %s)'
                          % (cls, ', '.join(CLASSES)))


def _check_size(size):
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) \
            or size < MIN_SIZE:
        raise TaggerError('image size must be an integer >= %d, got %r'
                          % (MIN_SIZE, size))
    return int(size)


def render_garment(cls, size=DEFAULT_SIZE, rng=None, with_mask=False):
    """Draw one random garment of class ``cls``.

    Parameters
    ----------
    cls : str
        One of :data:`CLASSES`.
    size : int
        Side of the square image in pixels, at least :data:`MIN_SIZE`.
    rng : numpy.random.Generator or int or None
        Source of randomness (an int is a seed); the image is a function of
        the generator's state.
    with_mask : bool
        Also return the garment's silhouette.

    Returns
    -------
    image : PIL.Image.Image
        RGB, ``size`` x ``size``.
    mask : numpy.ndarray
        Only with ``with_mask``: float32 ``(size, size)`` coverage of the
        garment, 0 (background) to 1 (garment), antialiased.
    """
    from PIL import Image, ImageDraw

    _check_class(cls)
    size = _check_size(size)
    rng = np.random.default_rng(rng)

    bodies, details = _SHAPES[cls](rng)
    if cls == 'shoe' and rng.random() < 0.5:           # facing left
        bodies = [[(1.0 - x, y) for x, y in p] for p in bodies]
        details = [[(1.0 - x, y) for x, y in p] for p in details]

    # Place: rotate about the centre, then scale the rotated bounding box to
    # 55-90% of the image side and put it anywhere it fits.
    pts = np.concatenate([np.asarray(p, dtype=np.float64) for p in bodies])
    centre = (pts.min(axis=0) + pts.max(axis=0)) / 2
    angle = math.radians(rng.uniform(-12.0, 12.0))
    rot = np.array([[math.cos(angle), -math.sin(angle)],
                    [math.sin(angle), math.cos(angle)]])
    turned = (pts - centre) @ rot.T
    lo, hi = turned.min(axis=0), turned.max(axis=0)
    scale = rng.uniform(0.55, 0.9) * size / float((hi - lo).max())
    extent = (hi - lo) * scale
    offset = np.array([rng.uniform(0, size - extent[0]),
                       rng.uniform(0, size - extent[1])]) - lo * scale

    def place(poly, ss):
        xy = ((np.asarray(poly, dtype=np.float64) - centre) @ rot.T * scale
              + offset) * ss
        return [tuple(p) for p in xy]

    ss = 4 if size <= 96 else 2 if size <= 512 else 1     # supersampling
    big = (size * ss, size * ss)
    layers = []
    for polys, outline in ((bodies + details, False), (details, False),
                           (bodies, True)):
        canvas = Image.new('L', big, 0)
        draw = ImageDraw.Draw(canvas)
        for poly in polys:
            xy = place(poly, ss)
            if outline:
                draw.line(xy + xy[:1], fill=255, joint='curve',
                          width=max(1, int(round(ss * size / 64.0))))
            else:
                draw.polygon(xy, fill=255)
        small = canvas.reduce(ss) if ss > 1 else canvas     # box average
        layers.append(np.asarray(small, dtype=np.float32)[..., None] / 255.0)
    body, detail, edge = layers
    edge = edge * body

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    background, bg_colour = _background(rng, size, yy, xx)
    colour = _colour(rng)
    for _ in range(16):                     # contrast with the background
        if np.abs(colour - bg_colour).sum() >= 150:
            break
        colour = _colour(rng)
    u = xx * math.cos(angle) + yy * math.sin(angle)
    v = -xx * math.sin(angle) + yy * math.cos(angle)
    period = max(3.0, rng.uniform(0.08, 0.16) * float(extent.max()))
    kind = _TEXTURES[rng.integers(len(_TEXTURES))]
    garment = _texture(rng, kind, colour, u, v, period)
    # Soft light from a random side.
    lx, ly = rng.uniform(-0.12, 0.12, size=2) / size
    ramp = np.arange(size, dtype=np.float32) - size / 2.0
    light = 1.0 + (ly * ramp)[:, None, None] + (lx * ramp)[None, :, None]
    garment = garment * light.astype(np.float32)
    if cls == 'shoe':
        trim = np.array(((235, 235, 230), (30, 30, 30),
                         (180, 130, 80))[rng.integers(3)], np.float32)
    else:
        trim = colour * (0.6 if colour.sum() > 200 else 1.8) + 10.0
    dark = colour * 0.45

    image = background + body * (garment - background)
    image += detail * (trim - image)
    image += edge * (dark - image)
    out = Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8),
                          'RGB')
    if with_mask:
        return out, body[..., 0].copy()
    return out


def _image_seed(seed, split, cls, index):
    """Each image's own seed: independent of the other images' counts."""
    return np.random.SeedSequence(
        [seed, zlib.crc32(split.encode('utf-8')),
         zlib.crc32(cls.encode('utf-8')), index])


def _check_per_class(per_class):
    if per_class is None:
        per_class = DEFAULT_PER_CLASS
    if not hasattr(per_class, 'items'):
        raise TaggerError('per_class must map split names to image counts, '
                          'e.g. {"train": 120, "test": 15}, got %r'
                          % (per_class,))
    checked = {}
    for split, count in per_class.items():
        if not isinstance(split, str) or not split or split in ('.', '..') \
                or '/' in split or '\\' in split or split.startswith('.'):
            raise TaggerError('split name %r is not a plain folder name'
                              % (split,))
        if isinstance(count, bool) or \
                not isinstance(count, (int, np.integer)) or count < 0:
            raise TaggerError('per_class[%r] must be an integer >= 0, got %r'
                              % (split, count))
        checked[split] = int(count)
    if not checked or sum(checked.values()) == 0:
        raise TaggerError('per_class asks for no images at all')
    return checked


def _is_ours(root):
    if os.path.exists(os.path.join(root, _MARKER)):
        return True
    try:
        with open(os.path.join(root, 'taxonomy.json'), encoding='utf-8') as fh:
            return json.load(fh).get('name') == DATASET_NAME
    except (OSError, ValueError, AttributeError):
        return False


def _clear_previous(root):
    """Remove the images of an earlier synthetic render (only those)."""
    for split in os.listdir(root):
        for cls in CLASSES:
            folder = os.path.join(root, split, cls)
            if not os.path.isdir(folder):
                continue
            for name in os.listdir(folder):
                if _IMAGE_NAME.match(name):
                    os.remove(os.path.join(folder, name))
            if not os.listdir(folder):
                os.rmdir(folder)
        split_dir = os.path.join(root, split)
        if os.path.isdir(split_dir) and not os.listdir(split_dir):
            os.rmdir(split_dir)


def _render_folder(task):
    """Render one class folder of one split (each image from its own
    seed, so any order of folders gives the same files)."""
    root, split, cls, count, size, seed = task
    folder = os.path.join(root, split, cls)
    for i in range(count):
        rng = np.random.default_rng(_image_seed(seed, split, cls, i))
        render_garment(cls, size, rng).save(
            os.path.join(folder, '%04d.png' % i), format='PNG')
    return split, cls, count


def _map_tasks(fn, tasks):
    """``fn`` over ``tasks`` in order, on every CPU this process may use
    (worker processes; one CPU: in this process)."""
    try:
        workers = min(len(os.sched_getaffinity(0)), len(tasks))
    except (AttributeError, OSError):
        workers = min(os.cpu_count() or 1, len(tasks))
    if workers < 2:
        return [fn(t) for t in tasks]
    import multiprocessing
    with multiprocessing.get_context('fork').Pool(workers) as pool:
        return pool.map(fn, tasks, chunksize=1)


def render_dataset(root, per_class=None, size=DEFAULT_SIZE, seed=0,
                   progress=False):
    """Render the synthetic apparel dataset into the folder ``root``.

    Parameters
    ----------
    root : str or os.PathLike
        Output folder: created if missing; it must be empty or hold an
        earlier render of this dataset (whose images are then replaced).
    per_class : mapping of str to int, optional
        Images per class for each split, e.g. ``{'train': 120,
        'validation': 15, 'test': 15}`` (the default,
        :data:`DEFAULT_PER_CLASS`).
    size : int
        Image side in pixels (at least :data:`MIN_SIZE`; default 64).
    seed : int
        Non-negative seed: the same seed gives byte-identical files.
    progress : bool
        Print one line per split to standard error.

    Returns
    -------
    str
        ``root``, holding ``taxonomy.json`` and
        ``<split>/<class>/<i>.png`` (``i`` zero-padded to 4 digits).

    Raises
    ------
    TaggerError
        Bad arguments, or ``root`` is a file or a non-empty folder that is
        not a synthetic render.
    """
    per_class = _check_per_class(per_class)
    size = _check_size(size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) \
            or seed < 0:
        raise TaggerError('seed must be an integer >= 0, got %r' % (seed,))
    seed = int(seed)
    root = os.fspath(root)
    if os.path.exists(root):
        if not os.path.isdir(root):
            raise TaggerError('exists and is not a folder', root)
        if os.listdir(root):
            if not _is_ours(root):
                raise TaggerError('folder is not empty and holds no '
                                  'synthetic dataset; choose an empty or '
                                  'new folder', root)
            _clear_previous(root)
    try:
        os.makedirs(root, exist_ok=True)
        # Marks a render in progress, so an interrupted one can be redone.
        open(os.path.join(root, _MARKER), 'w').close()
        tasks = [(root, split, cls, count, size, seed)
                 for split, count in per_class.items() for cls in CLASSES]
        for split, count in per_class.items():
            for cls in CLASSES:
                os.makedirs(os.path.join(root, split, cls), exist_ok=True)
        for split, cls, count in _map_tasks(_render_folder, tasks):
            if progress and cls == CLASSES[-1]:
                print('synthetic: rendered %s, %d images of each of %d '
                      'classes (%dx%d)' % (split, count, len(CLASSES), size,
                                           size), file=sys.stderr)
        info = {'name': DATASET_NAME,
                'classes': {cls: list(TAXONOMY[cls]) for cls in CLASSES},
                'render': {'size': size, 'seed': seed,
                           'per_class': dict(per_class)}}
        write_json(os.path.join(root, 'taxonomy.json'), info)
        os.remove(os.path.join(root, _MARKER))
    except OSError as exc:
        raise TaggerError('cannot write the synthetic dataset (%s)'
                          % (exc.strerror or exc), root) from None
    return root
