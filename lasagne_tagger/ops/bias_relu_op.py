"""A convolution's bias and Lasagne's ``rectify`` as one Theano Op with C
code (forward and gradient), for the CPU; optionally several of them and
the concatenation of their results along the channel axis (an inception
module's branches and its ``ConcatLayer``).

Lasagne 0.1 computes ``rectify(conv + b.dimshuffle('x', 0, 'x', 'x'))``
with ``rectify(s) = 0.5 * (s + abs(s))``.  In a training graph Theano keeps
the pre-activation ``s`` for the gradient, so the forward pass is two
passes over the data (the addition, then the rectifier), and the backward
pass another two: ``0.5 * g + 0.5 * g * sgn(s)``, then the bias gradient,
a single-threaded ``Sum`` over the image, row and column axes: together
about 7% of GoogLeNet's training step on 2 cores.  An inception module
then copies its four branches into one tensor (``Join``), and its gradient
copies them out again (``Split``): another 2% of a training step.

:class:`BiasReLU` computes ``y`` in one pass, straight into the
concatenated output when given several ``(x, b)`` pairs;
:class:`BiasReLUGrad` recomputes ``s = x + b`` (the same rounding, so the
same ``s``) and gives each input gradient and, in the same pass, each bias
gradient, summed in float64 per (image, channel) plane and then over
images in order.  Both loop over planes in parallel with OpenMP when
Theano's ``openmp`` flag is on.  The values are Lasagne's: ``y`` is
``0.5 * (s + |s|)`` computed as Lasagne computes it (so ``+0`` below zero,
NaN for NaN and for ``-inf``), the input gradient is
``0.5 * g + 0.5 * g * sgn(s)`` bit for bit (``g / 2`` where ``s == 0``, as
Lasagne's), and the bias gradient is the same float64 sum in another
order.  Both ops have a NumPy ``perform``; the tests compare them with the
Lasagne graph.  This module imports Theano; import it lazily.
"""
import numpy as np
from ..runtime import _theano  # noqa: F401 (prepares Theano)
import theano.tensor as T
from theano.gof import Apply, OpenMPOp
from theano.gradient import grad_not_implemented

from .c_support import alloc_output, cache_version, plane_loop

__all__ = ['BiasReLU', 'BiasReLUGrad']


def _pairs(name, args):
    """``args`` as ``[(x, b), ...]``: 4D ``x``, 1D ``b`` cast to the first
    ``x``'s dtype."""
    if not args or len(args) % 2:
        raise TypeError('%s needs (x, b) pairs, got %d inputs'
                        % (name, len(args)))
    pairs = []
    for x, b in zip(args[0::2], args[1::2]):
        x, b = T.as_tensor_variable(x), T.as_tensor_variable(b)
        if x.ndim != 4 or b.ndim != 1:
            raise TypeError('%s needs a 4D tensor and a 1D bias, got %dD '
                            'and %dD' % (name, x.ndim, b.ndim))
        dtype = pairs[0][0].dtype if pairs else x.dtype
        pairs.append((x if x.dtype == dtype else T.cast(x, dtype),
                      b if b.dtype == dtype else T.cast(b, dtype)))
    return pairs


def _preactivation(x, b):
    return x + b[None, :, None, None]


class _Base(OpenMPOp):
    __props__ = ()

    def c_code_cache_version(self):
        return cache_version(5, self, __file__)


def _inputs_c(name, xs, bs, fail):
    """C lines taking contiguous copies of the ``(x, b)`` inputs into the
    arrays ``xc``/``bc`` and their data into ``xd``/``bd``, checking that
    they agree (images, rows, columns, one bias per channel); ``N``,
    ``HW``, each pair's channels ``cs`` and offsets ``off`` into the
    concatenated channels, ``CT`` the total.  ``LT_BR_RELEASE`` drops the
    copies."""
    k = len(xs)
    lines = [r"""
        PyArrayObject* xc[%(k)d] = {0};
        PyArrayObject* bc[%(k)d] = {0};
        #define LT_BR_RELEASE for (int i_ = 0; i_ < %(k)d; ++i_) \
            { Py_XDECREF(xc[i_]); Py_XDECREF(bc[i_]); }
""" % dict(k=k)]
    for i, (x, b) in enumerate(zip(xs, bs)):
        lines.append(r"""
        xc[%(i)d] = PyArray_GETCONTIGUOUS(%(x)s);
        bc[%(i)d] = PyArray_GETCONTIGUOUS(%(b)s);
        if (!xc[%(i)d] || !bc[%(i)d]) { LT_BR_RELEASE %(fail)s; }
""" % dict(i=i, x=x, b=b, fail=fail))
    lines.append(r"""
        const npy_intp N = PyArray_DIMS(xc[0])[0];
        const npy_intp H = PyArray_DIMS(xc[0])[2], W = PyArray_DIMS(xc[0])[3];
        const npy_intp HW = H * W;
        npy_intp cs[%(k)d], off[%(k)d + 1];
        const dtype_%(x0)s* xd[%(k)d];
        const dtype_%(x0)s* bd[%(k)d];
        off[0] = 0;
        for (int i = 0; i < %(k)d; ++i) {
            cs[i] = PyArray_DIMS(xc[i])[1];
            off[i + 1] = off[i] + cs[i];
            if (PyArray_DIMS(xc[i])[0] != N || PyArray_DIMS(xc[i])[2] != H
                    || PyArray_DIMS(xc[i])[3] != W) {
                PyErr_Format(PyExc_ValueError, "%(name)s: input %%d is "
                             "(%%ld, %%ld, %%ld, %%ld), input 0 has %%ld "
                             "images of %%ld x %%ld", i,
                             (long)PyArray_DIMS(xc[i])[0], (long)cs[i],
                             (long)PyArray_DIMS(xc[i])[2],
                             (long)PyArray_DIMS(xc[i])[3], (long)N, (long)H,
                             (long)W);
                LT_BR_RELEASE %(fail)s;
            }
            if (PyArray_DIMS(bc[i])[0] != cs[i]) {
                PyErr_Format(PyExc_ValueError, "%(name)s: %%ld channels but "
                             "%%ld biases", (long)cs[i],
                             (long)PyArray_DIMS(bc[i])[0]);
                LT_BR_RELEASE %(fail)s;
            }
            xd[i] = (const dtype_%(x0)s*)PyArray_DATA(xc[i]);
            bd[i] = (const dtype_%(x0)s*)PyArray_DATA(bc[i]);
        }
        const npy_intp CT = off[%(k)d];
""" % dict(k=k, x0=xs[0], name=name, fail=fail))
    return ''.join(lines)


# the start of one (image, concatenated channel) plane: which pair it comes
# from (i), its channel there (c), its bias and input plane
_PLANE = r"""
            const npy_intp n = plane / CT, ct = plane %% CT;
            int i = 0;
            while (ct >= off[i + 1]) ++i;
            const npy_intp c = ct - off[i];
            const dtype_%(x)s bias = bd[i][c];
            const npy_intp src = (n * cs[i] + c) * HW;
            const dtype_%(x)s* xp = xd[i] + src;
"""


class BiasReLU(_Base):
    """``y = rectify(x + b[c])`` for a 4D ``x`` and a bias per channel;
    given several pairs ``(x1, b1, x2, b2, ...)`` (the same images, rows
    and columns), their results concatenated along the channel axis."""

    def make_node(self, *args):
        pairs = _pairs('BiasReLU', args)
        x = pairs[0][0]
        out = x.type() if len(pairs) == 1 else T.TensorType(
            x.dtype, (x.broadcastable[0], False, False, False))()
        return Apply(self, [v for pair in pairs for v in pair], [out])

    def infer_shape(self, node, shapes):
        n, _, h, w = shapes[0]
        channels = shapes[0][1]
        for shape in shapes[2::2]:
            channels = channels + shape[1]
        return [(n, channels, h, w)]

    def perform(self, node, inputs, outputs):
        ys = []
        for x, b in zip(inputs[0::2], inputs[1::2]):
            s = _preactivation(x, b)
            ys.append((s.dtype.type(0.5) * (s + np.abs(s))).astype(x.dtype))
        outputs[0][0] = ys[0] if len(ys) == 1 else np.concatenate(ys, 1)

    def grad(self, inputs, output_grads):
        gy, = output_grads
        return BiasReLUGrad(openmp=self.openmp)(*(list(inputs) + [gy]))

    def c_code(self, node, name, inputs, outputs, sub):
        y, = outputs
        xs, bs = inputs[0::2], inputs[1::2]
        body = _PLANE + r"""
            dtype_%(x)s* yp = yd + plane * HW;
            for (npy_intp p = 0; p < HW; ++p) {
                const dtype_%(x)s s = xp[p] + bias;
                /* Lasagne's rectify, 0.5 * (s + |s|), literally: the same
                   bits for every s, infinities and NaN included */
                yp[p] = (dtype_%(x)s)0.5 * (s + (dtype_%(x)s)fabs(s));
            }
        """
        return r"""
        {
        """ + _inputs_c('BiasReLU', xs, bs, sub['fail']) + (r"""
        npy_intp dims[4] = {N, CT, H, W};
        """ + alloc_output(y, 4, 'dims', 'xc[0]', 'LT_BR_RELEASE',
                           '%(fail)s') + r"""
        dtype_%(x)s* yd = (dtype_%(x)s*)PyArray_DATA(%(y)s);
        int failed = 0;
        """ + plane_loop(self.openmp, [], body, count='N * CT')
            + r"""
        LT_BR_RELEASE
        #undef LT_BR_RELEASE
        }
        """) % dict(x=xs[0], y=y, fail=sub['fail'])


class BiasReLUGrad(_Base):
    """``(gx1, gb1, gx2, gb2, ...)`` of :class:`BiasReLU` from
    ``(x1, b1, x2, b2, ..., gy)``."""

    def make_node(self, *args):
        pairs = _pairs('BiasReLUGrad', args[:-1])
        gy = T.as_tensor_variable(args[-1])
        if gy.ndim != 4:
            raise TypeError('BiasReLUGrad: gy must be 4D, got %dD'
                            % gy.ndim)
        dtype = pairs[0][0].dtype
        if gy.dtype != dtype:
            gy = T.cast(gy, dtype)
        inputs = [v for pair in pairs for v in pair]
        return Apply(self, inputs + [gy], [v.type() for v in inputs])

    def infer_shape(self, node, shapes):
        return list(shapes[:-1])

    def perform(self, node, inputs, outputs):
        gy, start = inputs[-1], 0
        for i, (x, b) in enumerate(zip(inputs[0:-1:2], inputs[1:-1:2])):
            g = gy[:, start:start + x.shape[1]]
            start += x.shape[1]
            s = _preactivation(x, b)
            half = x.dtype.type(0.5)
            gx = (half * g + half * g * np.sign(s)).astype(x.dtype)
            outputs[2 * i][0] = gx
            outputs[2 * i + 1][0] = gx.sum(
                axis=(0, 2, 3), dtype=np.float64).astype(x.dtype)

    def grad(self, inputs, output_grads):
        # note: the second derivative is not needed for training.
        return [grad_not_implemented(self, i, v)
                for i, v in enumerate(inputs)]

    def c_code(self, node, name, inputs, outputs, sub):
        xs, bs, gy = inputs[0:-1:2], inputs[1:-1:2], inputs[-1]
        gxs, gbs = outputs[0::2], outputs[1::2]
        k = len(xs)
        release = 'LT_BR_RELEASE Py_DECREF(gc);'
        allocs = ''.join(
            alloc_output(gx, 4, 'PyArray_DIMS(xc[%d])' % i, 'xc[0]',
                         release, '%(fail)s')
            + alloc_output(gb, 1, 'PyArray_DIMS(bc[%d])' % i, 'xc[0]',
                           release, '%(fail)s')
            + '        od[%d] = (dtype_%%(x)s*)PyArray_DATA(%s);\n'
              '        bo[%d] = (dtype_%%(x)s*)PyArray_DATA(%s);\n'
            % (i, gx, i, gb)
            for i, (gx, gb) in enumerate(zip(gxs, gbs)))
        body = _PLANE + r"""
            const dtype_%(x)s* gp = gd + plane * HW;
            dtype_%(x)s* op = od[i] + src;
            double acc = 0;
            for (npy_intp p = 0; p < HW; ++p) {
                const dtype_%(x)s s = xp[p] + bias;
                const dtype_%(x)s sg = (dtype_%(x)s)((s > 0) - (s < 0));
                const dtype_%(x)s h = (dtype_%(x)s)0.5 * gp[p];
                /* Lasagne's 0.5 * g + 0.5 * g * sgn(s); NaN s gives NaN */
                const dtype_%(x)s v = s != s ? s : h + h * sg;
                op[p] = v;
                acc += (double)v;
            }
            partial[plane] = acc;
        """
        return r"""
        {
        """ + _inputs_c('BiasReLUGrad', xs, bs, sub['fail']) + (r"""
        PyArrayObject* gc = PyArray_GETCONTIGUOUS(%(gy)s);
        if (!gc) { LT_BR_RELEASE %(fail)s; }
        if (PyArray_NDIM(gc) != 4 || PyArray_DIMS(gc)[0] != N
                || PyArray_DIMS(gc)[1] != CT || PyArray_DIMS(gc)[2] != H
                || PyArray_DIMS(gc)[3] != W) {
            PyErr_SetString(PyExc_ValueError,
                            "BiasReLUGrad: gradient shape mismatch");
            LT_BR_RELEASE Py_DECREF(gc);
            %(fail)s;
        }
        dtype_%(x)s* od[%(k)d];
        dtype_%(x)s* bo[%(k)d];
        """ + allocs + r"""
        const dtype_%(x)s* gd = (const dtype_%(x)s*)PyArray_DATA(gc);
        double* partial = (double*)malloc(sizeof(double) * (N * CT + 1));
        if (!partial) {
            LT_BR_RELEASE Py_DECREF(gc);
            PyErr_NoMemory();
            %(fail)s;
        }
        int failed = 0;
        """ + plane_loop(self.openmp, [], body, count='N * CT')
            + r"""
        /* each bias gradient: per channel, the planes' float64 sums over
           images in order */
        for (npy_intp ct = 0; ct < CT; ++ct) {
            int i = 0;
            while (ct >= off[i + 1]) ++i;
            double acc = 0;
            for (npy_intp n = 0; n < N; ++n) acc += partial[n * CT + ct];
            bo[i][ct - off[i]] = (dtype_%(x)s)acc;
        }
        free(partial);
        LT_BR_RELEASE
        #undef LT_BR_RELEASE
        Py_DECREF(gc);
        }
        """) % dict(x=xs[0], gy=gy, k=k, fail=sub['fail'])
