"""Image preprocessing as the 2016 code did it, for any PIL image.

Pipeline (:func:`load_crop` then :func:`to_network_input`):

1. open with Pillow, apply the EXIF orientation, convert any mode to RGB
   (alpha composited on white, 16-bit and float greyscale rescaled);
2. resize so the short side is ``size`` (224) with Pillow's BILINEAR
   filter, which antialiases when shrinking;
   # note: the Recipes code used skimage.transform.resize (order 1); Pillow's
   # bilinear is the same interpolation with antialiasing, and avoids a
   # scikit-image dependency.  Differences are below one grey level.
3. centre crop ``size`` x ``size``; this uint8 ``(H, W, 3)`` RGB crop is
   what the prepared store keeps;
4. channels first, RGB -> BGR, subtract the BGR mean (104, 117, 123), cast to
   ``floatX``: the network input.

:func:`from_network_input` inverts step 4 for display.
"""
import os
import warnings

import numpy as np

from ..errors import TaggerError

__all__ = ['BGR_MEAN', 'CROP_SIZE', 'MAX_PIXELS', 'load_image', 'to_rgb',
           'resize_and_crop', 'load_crop', 'load_crops', 'to_network_input',
           'from_network_input']

BGR_MEAN = np.array([104.0, 117.0, 123.0], dtype=np.float32)
CROP_SIZE = 224
# Pillow's own decompression-bomb limit (about 89 megapixels).
MAX_PIXELS = 89478485


def _describe(exc):
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def load_image(path, max_pixels=MAX_PIXELS):
    """Open ``path`` as an RGB ``PIL.Image``, EXIF orientation applied.

    Raises
    ------
    TaggerError
        Naming the file: missing, a directory, unreadable, empty, not an
        image, truncated or corrupt, or larger than ``max_pixels``.
    """
    from PIL import Image, ImageOps

    path = os.fspath(path)
    if os.path.isdir(path):
        raise TaggerError('is a directory, not an image', path)
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise TaggerError('cannot read file (%s)' % (exc.strerror or exc),
                          path) from None
    if size == 0:
        raise TaggerError('empty file (0 bytes)', path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('error', Image.DecompressionBombWarning)
            with open(path, 'rb') as fh:
                image = Image.open(fh)
                width, height = image.size
                if width * height > max_pixels:
                    raise TaggerError(
                        'image is %dx%d = %d pixels, over the limit of %d '
                        '(decompression bomb?)' % (width, height,
                                                   width * height,
                                                   max_pixels), path)
                image.load()
    except TaggerError:
        raise
    except (Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise TaggerError('image too large (%s)' % _describe(exc),
                          path) from None
    except Image.UnidentifiedImageError:
        raise TaggerError('not an image file Pillow can read', path) from None
    except PermissionError:
        raise TaggerError('permission denied', path) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise TaggerError('corrupt or truncated image (%s)' % _describe(exc),
                          path) from None
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:            # broken EXIF: keep the stored orientation
        pass
    return to_rgb(image)


def to_rgb(image):
    """Convert a PIL image of any mode to 8-bit RGB.

    Alpha (LA, RGBA, PA, P with transparency) is composited on white.
    16/32-bit integer and float greyscale (``I;16``, ``I``, ``F``) are
    rescaled to 0..255 from their type's range (``F`` from 0..1 if it fits,
    else from its min..max).
    """
    from PIL import Image

    if image.mode == 'RGB':
        return image
    if image.mode == 'P':
        image = image.convert('RGBA' if 'transparency' in image.info
                              else 'RGB')
    if image.mode in ('I;16', 'I;16B', 'I;16L', 'I;16N', 'I', 'F'):
        a = np.asarray(image, dtype=np.float64)
        if image.mode.startswith('I;16'):
            a = a / 257.0
        elif image.mode == 'I':
            a = a / 257.0 if a.max(initial=0) > 255 else a
        elif a.min(initial=0) >= 0 and a.max(initial=0) <= 1:
            a = a * 255.0
        else:
            lo, hi = a.min(initial=0), a.max(initial=0)
            a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else a * 0
        image = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8),
                                'L')
    if image.mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La'):
        rgba = image.convert('RGBA')
        background = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert('RGB')
    return image.convert('RGB')


def resize_and_crop(image, size=CROP_SIZE, upscale=False, name=None):
    """Short side to ``size`` (BILINEAR), then a centre ``size`` crop.

    Returns a uint8 ``(size, size, 3)`` array.  Images whose short side is
    below ``size`` are an error unless ``upscale`` is true.
    """
    from PIL import Image

    width, height = image.size
    if min(width, height) < size and not upscale:
        raise TaggerError('image is %dx%d, smaller than the %dx%d crop '
                          '(use --upscale to enlarge small images)'
                          % (width, height, size, size), name)
    if width <= height:
        new = (size, max(size, int(round(height * size / float(width)))))
    else:
        new = (max(size, int(round(width * size / float(height)))), size)
    if new != (width, height):
        image = image.resize(new, Image.BILINEAR)
    left = (new[0] - size) // 2
    top = (new[1] - size) // 2
    crop = image.crop((left, top, left + size, top + size))
    return np.asarray(crop, dtype=np.uint8).reshape(size, size, 3)


def load_crop(path, size=CROP_SIZE, upscale=False, max_pixels=MAX_PIXELS):
    """Open ``path`` and return its uint8 ``(size, size, 3)`` RGB crop."""
    return resize_and_crop(load_image(path, max_pixels=max_pixels), size,
                           upscale=upscale, name=os.fspath(path))


def load_crops(paths, size=CROP_SIZE, upscale=False, max_pixels=MAX_PIXELS):
    """:func:`load_crop` over many files, collecting the bad ones.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
    size, upscale, max_pixels
        As for :func:`load_crop`.

    Returns
    -------
    crops : list of ndarray
        uint8 ``(size, size, 3)`` per readable file, in input order.
    good : list of str
        The readable files' paths, parallel to ``crops``.
    bad : list of (str, str)
        ``(path, one-line error naming it)`` per unreadable or odd file.
    """
    crops, good, bad = [], [], []
    for path in paths:
        try:
            crops.append(load_crop(path, size=size, upscale=upscale,
                                   max_pixels=max_pixels))
            good.append(os.fspath(path))
        except TaggerError as exc:
            bad.append((os.fspath(path), str(exc)))
    return crops, good, bad


def to_network_input(crops, dtype=None):
    """uint8 RGB crops ``(N, H, W, 3)`` (or one ``(H, W, 3)``) to the
    network's BGR mean-subtracted ``(N, 3, H, W)`` ``floatX`` batch."""
    crops = np.asarray(crops)
    if crops.ndim == 3:
        crops = crops[np.newaxis]
    if crops.ndim != 4 or crops.shape[-1] != 3:
        raise TaggerError('expected crops of shape (N, H, W, 3), got %s'
                          % (crops.shape,))
    if dtype is None:
        from ..runtime import _theano  # noqa: F401 (prepares Theano)
        import theano
        dtype = theano.config.floatX
    batch = crops[..., ::-1].astype(np.float32) - BGR_MEAN
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=dtype)


def from_network_input(batch):
    """Inverse of :func:`to_network_input`: uint8 RGB ``(N, H, W, 3)``."""
    batch = np.asarray(batch, dtype=np.float32)
    if batch.ndim == 3:
        batch = batch[np.newaxis]
    if batch.ndim != 4 or batch.shape[1] != 3:
        raise TaggerError('expected a batch of shape (N, 3, H, W), got %s'
                          % (batch.shape,))
    rgb = (batch.transpose(0, 2, 3, 1) + BGR_MEAN)[..., ::-1]
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
