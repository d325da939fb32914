"""An independent NumPy implementation of BVLC GoogLeNet, written from Caffe's
definitions (not from Theano or Lasagne), used to prove the Theano network
faithful.  Weights are taken in the model-zoo pickle's layout: Caffe
cross-correlation filters (O, I, kH, kW), dense as (in, out)."""
import numpy as np


def conv2d(x, w, b, stride=1, pad=0):
    """Caffe convolution (cross-correlation) + bias, float64."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    oh = (h - kh) // stride + 1
    ow = (wd - kw) // stride + 1
    cols = np.lib.stride_tricks.as_strided(
        x, shape=(n, c, kh, kw, oh, ow),
        strides=x.strides[:2] + x.strides[2:] + (x.strides[2] * stride,
                                                 x.strides[3] * stride))
    out = np.einsum('ncijyx,ocij->noyx', cols, w, optimize=True)
    return out + b[None, :, None, None]


def relu(x):
    return np.maximum(x, 0)


def max_pool(x, k, stride, pad=0):
    """Caffe max pooling: ceil-mode output size, padding never selected."""
    n, c, h, w = x.shape

    def out_len(size):
        length = int(np.ceil((size + 2 * pad - k) / float(stride))) + 1
        if pad and (length - 1) * stride >= size + pad:
            length -= 1
        return length

    oh, ow = out_len(h), out_len(w)
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    for y in range(oh):
        y0 = max(y * stride - pad, 0)
        y1 = min(y * stride - pad + k, h)
        for z in range(ow):
            z0 = max(z * stride - pad, 0)
            z1 = min(z * stride - pad + k, w)
            out[:, :, y, z] = x[:, :, y0:y1, z0:z1].max(axis=(2, 3))
    return out


def lrn(x, local_size=5, alpha=1e-4, beta=0.75, k=1.0):
    """Caffe ACROSS_CHANNELS LRN: x / (k + alpha/n * sum x^2)^beta."""
    half = local_size // 2
    sq = np.pad(x ** 2, ((0, 0), (half, half), (0, 0), (0, 0)))
    c = x.shape[1]
    window = sum(sq[:, i:i + c] for i in range(local_size))
    return x / (k + alpha / local_size * window) ** beta


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


INCEPTION = [  # name, 1x1, 3x3_reduce, 3x3, 5x5_reduce, 5x5, pool_proj
    ('inception_3a', 64, 96, 128, 16, 32, 32),
    ('inception_3b', 128, 128, 192, 32, 96, 64),
    ('inception_4a', 192, 96, 208, 16, 48, 64),
    ('inception_4b', 160, 112, 224, 24, 64, 64),
    ('inception_4c', 128, 128, 256, 24, 64, 64),
    ('inception_4d', 112, 144, 288, 32, 64, 64),
    ('inception_4e', 256, 160, 320, 32, 128, 128),
    ('inception_5a', 256, 160, 320, 32, 128, 128),
    ('inception_5b', 384, 192, 384, 48, 128, 128),
]


def random_params(rng, num_classes=1000):
    """Random weights in the pickle's layout and order (116 arrays), scaled
    so activations stay O(1) through the whole network."""
    params = []

    def conv(cin, cout, size):
        std = np.sqrt(2.0 / (cin * size * size))
        params.append((rng.standard_normal((cout, cin, size, size)) * std)
                      .astype(np.float32))
        params.append((rng.standard_normal(cout) * 0.1).astype(np.float32))

    conv(3, 64, 7)
    conv(64, 64, 1)
    conv(64, 192, 3)
    cin = 192
    for _, n1, n3r, n3, n5r, n5, npool in INCEPTION:
        conv(cin, n1, 1)
        conv(cin, n3r, 1)
        conv(n3r, n3, 3)
        conv(cin, n5r, 1)
        conv(n5r, n5, 5)
        conv(cin, npool, 1)
        cin = n1 + n3 + n5 + npool
    params.append((rng.standard_normal((cin, num_classes))
                   * np.sqrt(1.0 / cin)).astype(np.float32))
    params.append((rng.standard_normal(num_classes) * 0.1).astype(np.float32))
    return params


def googlenet_forward(x, params):
    """Forward pass; returns a dict of float64 activations by Caffe name."""
    p = iter([np.asarray(a, dtype=np.float64) for a in params])
    acts = {}
    x = np.asarray(x, dtype=np.float64)
    x = acts['conv1/7x7_s2'] = relu(conv2d(x, next(p), next(p), 2, 3))
    x = acts['pool1/3x3_s2'] = max_pool(x, 3, 2)
    x = acts['pool1/norm1'] = lrn(x)
    x = acts['conv2/3x3_reduce'] = relu(conv2d(x, next(p), next(p)))
    x = acts['conv2/3x3'] = relu(conv2d(x, next(p), next(p), 1, 1))
    x = acts['conv2/norm2'] = lrn(x)
    x = acts['pool2/3x3_s2'] = max_pool(x, 3, 2)
    for name, *_ in INCEPTION:
        if name == 'inception_4a':
            x = acts['pool3/3x3_s2'] = max_pool(x, 3, 2)
        if name == 'inception_5a':
            x = acts['pool4/3x3_s2'] = max_pool(x, 3, 2)
        b1 = relu(conv2d(x, next(p), next(p)))
        b3 = relu(conv2d(relu(conv2d(x, next(p), next(p))), next(p), next(p),
                         1, 1))
        b5 = relu(conv2d(relu(conv2d(x, next(p), next(p))), next(p), next(p),
                         1, 2))
        bp = relu(conv2d(max_pool(x, 3, 1, 1), next(p), next(p)))
        x = acts[name + '/output'] = np.concatenate([b1, b3, b5, bp], axis=1)
    x = acts['pool5/7x7_s1'] = x.mean(axis=(2, 3))
    logits = acts['loss3/classifier'] = x @ next(p) + next(p)
    acts['prob'] = softmax(logits)
    return acts
