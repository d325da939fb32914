"""Preprocessing: every PIL mode to RGB, crop geometry, BGR mean, errors."""
import numpy as np
import pytest
from PIL import Image

from lasagne_tagger.data import preprocess
from lasagne_tagger.errors import TaggerError


def _save(tmp_path, name, image, **kw):
    path = tmp_path / name
    image.save(path, **kw)
    return path


@pytest.mark.parametrize('mode', ['L', 'LA', 'P', 'RGBA', 'CMYK', 'I;16',
                                  'I', 'F', '1', 'RGB'])
def test_any_mode_becomes_rgb(mode):
    rng = np.random.RandomState(0)
    base = Image.fromarray(rng.randint(0, 255, (30, 40, 3), np.uint8))
    if mode == 'I;16':
        image = Image.fromarray((rng.rand(30, 40) * 65535).astype(np.uint16))
        assert image.mode.startswith('I;16')
    elif mode == 'F':
        image = Image.fromarray(rng.rand(30, 40).astype(np.float32), 'F')
    else:
        image = base.convert(mode)
    rgb = preprocess.to_rgb(image)
    assert rgb.mode == 'RGB' and rgb.size == (40, 30)
    a = np.asarray(rgb)
    assert a.std() > 10            # contrast survives (no clipping to 255)


def test_sixteen_bit_is_rescaled_not_clipped():
    image = Image.fromarray(np.full((4, 4), 32768, np.uint16))
    assert np.asarray(preprocess.to_rgb(image))[0, 0, 0] == 128


def test_transparent_pixels_become_white():
    rgba = Image.new('RGBA', (4, 4), (255, 0, 0, 0))
    assert tuple(np.asarray(preprocess.to_rgb(rgba))[0, 0]) == (255, 255, 255)


def test_exif_rotation_is_applied(tmp_path):
    image = Image.new('RGB', (300, 240), (0, 0, 0))
    exif = image.getexif()
    exif[0x0112] = 6                      # rotate 90 degrees on display
    path = _save(tmp_path, 'r.jpg', image, exif=exif.tobytes())
    assert preprocess.load_image(path).size == (240, 300)


def test_crop_geometry_and_network_input(tmp_path):
    a = np.zeros((300, 448, 3), np.uint8)
    a[:, :224] = (255, 0, 0)               # left half red, right half blue
    a[:, 224:] = (0, 0, 255)
    path = _save(tmp_path, 'x.png', Image.fromarray(a))
    crop = preprocess.load_crop(path)
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    # short side 300 -> 224: width 448 -> 334; crop keeps the centre.
    assert tuple(crop[100, 5]) == (255, 0, 0)
    assert tuple(crop[100, 218]) == (0, 0, 255)
    batch = preprocess.to_network_input(crop, dtype='float32')
    assert batch.shape == (1, 3, 224, 224) and batch.dtype == np.float32
    # BGR order, mean subtracted: red pixel -> (0-104, 0-117, 255-123)
    assert np.allclose(batch[0, :, 100, 5], [-104, -117, 132])
    assert np.array_equal(preprocess.from_network_input(batch)[0], crop)


def test_network_input_uses_floatx():
    import theano
    batch = preprocess.to_network_input(np.zeros((2, 8, 8, 3), np.uint8))
    assert batch.dtype == theano.config.floatX


@pytest.mark.parametrize('maker, message', [
    (lambda p: p.write_bytes(b''), 'empty file'),
    (lambda p: p.write_text('not an image at all'), 'not an image file'),
    (lambda p: p.mkdir(), 'is a directory'),
])
def test_bad_files_get_one_line_errors(tmp_path, maker, message):
    path = tmp_path / 'bad.jpg'
    maker(path)
    with pytest.raises(TaggerError, match=message) as info:
        preprocess.load_crop(path)
    assert str(path) in str(info.value) and '\n' not in str(info.value)


def test_truncated_jpeg(tmp_path):
    path = _save(tmp_path, 't.jpg', Image.fromarray(
        np.random.RandomState(0).randint(0, 255, (300, 300, 3), np.uint8)))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 3])
    with pytest.raises(TaggerError, match='t.jpg: corrupt or truncated'):
        preprocess.load_crop(path)


def test_missing_file(tmp_path):
    with pytest.raises(TaggerError, match='cannot read file'):
        preprocess.load_crop(tmp_path / 'nope.jpg')


def test_tiny_image_rejected_unless_upscaled(tmp_path):
    path = _save(tmp_path, 'tiny.png', Image.new('RGB', (100, 60), 'red'))
    with pytest.raises(TaggerError, match=r'100x60, smaller than the '
                                          r'224x224 crop'):
        preprocess.load_crop(path)
    assert preprocess.load_crop(path, upscale=True).shape == (224, 224, 3)


def test_huge_image_rejected_before_decoding(tmp_path):
    path = _save(tmp_path, 'big.png', Image.new('RGB', (400, 300)))
    with pytest.raises(TaggerError, match=r'400x300 = 120000 pixels, over '
                                          r'the limit of 1000'):
        preprocess.load_crop(path, max_pixels=1000)


def test_wrong_batch_shapes():
    with pytest.raises(TaggerError, match=r'\(N, H, W, 3\)'):
        preprocess.to_network_input(np.zeros((2, 3, 8, 8), np.uint8))
    with pytest.raises(TaggerError, match=r'\(N, 3, H, W\)'):
        preprocess.from_network_input(np.zeros((2, 8, 8, 4)))


def test_load_crops_keeps_order_and_collects_bad_files(tmp_path):
    rng = np.random.RandomState(1)
    first = _save(tmp_path, 'a.png', Image.fromarray(
        rng.randint(0, 255, (40, 50, 3), np.uint8)))
    second = _save(tmp_path, 'b.jpg', Image.fromarray(
        rng.randint(0, 255, (60, 40, 3), np.uint8)))
    broken = tmp_path / 'broken.jpg'
    broken.write_bytes(b'not an image')
    missing = tmp_path / 'missing.png'
    crops, good, bad = preprocess.load_crops(
        [first, broken, second, missing], size=32)
    assert good == [str(first), str(second)]
    for crop, path in zip(crops, good):
        assert np.array_equal(crop, preprocess.load_crop(path, size=32))
    assert [p for p, _ in bad] == [str(broken), str(missing)]
    for path, message in bad:
        assert message.startswith(path + ': ') and '\n' not in message
