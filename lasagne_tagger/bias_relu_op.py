"""A convolution's bias and Lasagne's ``rectify`` as one Theano Op with C
code (forward and gradient), for the CPU.

Lasagne 0.1 computes ``rectify(conv + b.dimshuffle('x', 0, 'x', 'x'))``
with ``rectify(s) = 0.5 * (s + abs(s))``.  In a training graph Theano keeps
the pre-activation ``s`` for the gradient, so the forward pass is two
passes over the data (the addition, then the rectifier), and the backward
pass another two: ``0.5 * g + 0.5 * g * sgn(s)``, then the bias gradient,
a single-threaded ``Sum`` over the image, row and column axes: together
about 7% of GoogLeNet's training step on 2 cores.

:class:`BiasReLU` computes ``y`` in one pass; :class:`BiasReLUGrad`
recomputes ``s = x + b`` (the same rounding, so the same ``s``) and gives
the input gradient and, in the same pass, the bias gradient, summed in
float64 per (image, channel) plane and then over images in order.  Both
loop over planes in parallel with OpenMP when Theano's ``openmp`` flag is
on.  The values are Lasagne's: ``y`` is ``0.5 * (s + |s|)`` computed as
Lasagne computes it (so ``+0`` below zero, NaN for NaN and for ``-inf``),
the input gradient is
``0.5 * g + 0.5 * g * sgn(s)`` bit for bit (``g / 2`` where ``s == 0``, as
Lasagne's), and the bias gradient is the same float64 sum in another
order.  Both ops have a NumPy ``perform``; the tests compare them with the
Lasagne graph.  This module imports Theano; import it lazily.
"""
import numpy as np
import theano.tensor as T
from theano.gof import Apply, OpenMPOp
from theano.gradient import grad_not_implemented

from .c_support import alloc_output, cache_version, plane_loop

__all__ = ['BiasReLU', 'BiasReLUGrad']


def _check(x, b):
    x, b = T.as_tensor_variable(x), T.as_tensor_variable(b)
    if x.ndim != 4 or b.ndim != 1:
        raise TypeError('BiasReLU needs a 4D tensor and a 1D bias, got '
                        '%dD and %dD' % (x.ndim, b.ndim))
    if b.dtype != x.dtype:
        b = T.cast(b, x.dtype)
    return x, b


def _preactivation(x, b):
    return x + b[None, :, None, None]


class _Base(OpenMPOp):
    __props__ = ()

    def c_code_cache_version(self):
        return cache_version(4, self, __file__)


# C lines shared by both ops: contiguous x and b, checked against each other.
_INPUTS = r"""
        PyArrayObject* xc = PyArray_GETCONTIGUOUS(%(x)s);
        if (!xc) { %(fail)s; }
        PyArrayObject* bc = PyArray_GETCONTIGUOUS(%(b)s);
        if (!bc) { Py_DECREF(xc); %(fail)s; }
        const npy_intp N = PyArray_DIMS(xc)[0], C = PyArray_DIMS(xc)[1];
        const npy_intp HW = PyArray_DIMS(xc)[2] * PyArray_DIMS(xc)[3];
        if (PyArray_DIMS(bc)[0] != C) {
            PyErr_Format(PyExc_ValueError, "%(name)s: %%ld channels but "
                         "%%ld biases", (long)C, (long)PyArray_DIMS(bc)[0]);
            Py_DECREF(xc); Py_DECREF(bc);
            %(fail)s;
        }
        const dtype_%(x)s* xd = (const dtype_%(x)s*)PyArray_DATA(xc);
        const dtype_%(x)s* bd = (const dtype_%(x)s*)PyArray_DATA(bc);
"""


class BiasReLU(_Base):
    """``y = rectify(x + b[c])`` for a 4D ``x`` and a bias per channel."""

    def make_node(self, x, b):
        x, b = _check(x, b)
        return Apply(self, [x, b], [x.type()])

    def infer_shape(self, node, shapes):
        return [shapes[0]]

    def perform(self, node, inputs, outputs):
        s = _preactivation(*inputs)
        outputs[0][0] = (s.dtype.type(0.5) * (s + np.abs(s))).astype(
            inputs[0].dtype)

    def grad(self, inputs, output_grads):
        x, b = inputs
        gy, = output_grads
        gx, gb = BiasReLUGrad(openmp=self.openmp)(x, b, gy)
        return [gx, gb]

    def c_code(self, node, name, inputs, outputs, sub):
        x, b = inputs
        y, = outputs
        body = r"""
            const npy_intp c = plane %% C;
            const dtype_%(x)s bias = bd[c];
            const dtype_%(x)s* xp = xd + plane * HW;
            dtype_%(x)s* yp = yd + plane * HW;
            for (npy_intp p = 0; p < HW; ++p) {
                const dtype_%(x)s s = xp[p] + bias;
                /* Lasagne's rectify, 0.5 * (s + |s|), literally: the same
                   bits for every s, infinities and NaN included */
                yp[p] = (dtype_%(x)s)0.5 * (s + (dtype_%(x)s)fabs(s));
            }
        """
        return (r"""
        {
        """ + _INPUTS + alloc_output(y, 4, 'PyArray_DIMS(xc)', 'xc',
                                     'Py_DECREF(xc); Py_DECREF(bc);',
                                     '%(fail)s')
            + r"""
        dtype_%(x)s* yd = (dtype_%(x)s*)PyArray_DATA(%(y)s);
        int failed = 0;
        """ + plane_loop(self.openmp, [], body) + r"""
        Py_DECREF(xc);
        Py_DECREF(bc);
        }
        """) % dict(x=x, b=b, y=y, fail=sub['fail'], name='BiasReLU')


class BiasReLUGrad(_Base):
    """``(gx, gb)`` of :class:`BiasReLU` from ``(x, b, gy)``."""

    def make_node(self, x, b, gy):
        x, b = _check(x, b)
        gy = T.as_tensor_variable(gy)
        if gy.ndim != 4:
            raise TypeError('BiasReLUGrad: gy must be 4D, got %dD'
                            % gy.ndim)
        if gy.dtype != x.dtype:
            gy = T.cast(gy, x.dtype)
        return Apply(self, [x, b, gy], [x.type(), b.type()])

    def infer_shape(self, node, shapes):
        return [shapes[0], shapes[1]]

    def perform(self, node, inputs, outputs):
        x, b, gy = inputs
        s = _preactivation(x, b)
        half = x.dtype.type(0.5)
        gx = (half * gy + half * gy * np.sign(s)).astype(x.dtype)
        outputs[0][0] = gx
        outputs[1][0] = gx.sum(axis=(0, 2, 3), dtype=np.float64).astype(
            x.dtype)

    def grad(self, inputs, output_grads):
        # note: the second derivative is not needed for training.
        return [grad_not_implemented(self, i, v)
                for i, v in enumerate(inputs)]

    def c_code(self, node, name, inputs, outputs, sub):
        x, b, gy = inputs
        gx, gb = outputs
        release = 'Py_DECREF(xc); Py_DECREF(bc); Py_DECREF(gc);'
        body = r"""
            const npy_intp c = plane %% C;
            const dtype_%(x)s bias = bd[c];
            const dtype_%(x)s* xp = xd + plane * HW;
            const dtype_%(x)s* gp = gd + plane * HW;
            dtype_%(x)s* op = od + plane * HW;
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
        return (r"""
        {
        """ + _INPUTS + r"""
        PyArrayObject* gc = PyArray_GETCONTIGUOUS(%(gy)s);
        if (!gc) { Py_DECREF(xc); Py_DECREF(bc); %(fail)s; }
        if (!PyArray_SAMESHAPE(xc, gc)) {
            PyErr_SetString(PyExc_ValueError,
                            "BiasReLUGrad: gradient shape mismatch");
            Py_DECREF(xc); Py_DECREF(bc); Py_DECREF(gc);
            %(fail)s;
        }
        """ + alloc_output(gx, 4, 'PyArray_DIMS(xc)', 'xc', release,
                           '%(fail)s')
            + alloc_output(gb, 1, 'PyArray_DIMS(bc)', 'xc', release,
                           '%(fail)s') + r"""
        const dtype_%(x)s* gd = (const dtype_%(x)s*)PyArray_DATA(gc);
        dtype_%(x)s* od = (dtype_%(x)s*)PyArray_DATA(%(gx)s);
        dtype_%(x)s* bo = (dtype_%(x)s*)PyArray_DATA(%(gb)s);
        double* partial = (double*)malloc(sizeof(double) * (N * C + 1));
        if (!partial) {
            Py_DECREF(xc); Py_DECREF(bc); Py_DECREF(gc);
            PyErr_NoMemory();
            %(fail)s;
        }
        int failed = 0;
        """ + plane_loop(self.openmp, [], body) + r"""
        /* the bias gradient: per channel, the planes' float64 sums over
           images in order */
        for (npy_intp c = 0; c < C; ++c) {
            double acc = 0;
            for (npy_intp n = 0; n < N; ++n) acc += partial[n * C + c];
            bo[c] = (dtype_%(x)s)acc;
        }
        free(partial);
        Py_DECREF(xc);
        Py_DECREF(bc);
        Py_DECREF(gc);
        }
        """) % dict(x=x, b=b, gy=gy, gx=gx, gb=gb, fail=sub['fail'],
                    name='BiasReLUGrad')
