"""Caffe's ACROSS_CHANNELS LRN as one Theano Op with C code (forward and
gradient), for the CPU.

Lasagne 0.1's LRN (and :class:`lasagne_tagger.model.layers.LRNLayer`) is a graph:
square, copy into a zero tensor padded along the channels, ``n`` shifted
slices summed, a power, a division; its gradient is as many nodes again,
each a separate pass over the data: about 12% of GoogLeNet's training step
on 2 cores, for two layers.  Here each direction is one loop nest over
(image, channel) planes, parallel with OpenMP when Theano's ``openmp`` flag
is on.  Within a plane every step is a plain loop over its pixels (one per
channel of the window, then the power and division), which the compiler
vectorizes: 3.2x faster forward and 2.5x faster gradient than one loop over
pixels with the window inside, at GoogLeNet's shapes, same bits:

``y_c = x_c / s_c ** beta``, ``s_c = k + alpha * sum_{j in W(c)} x_j ** 2``,
``W(c) = [c - n // 2, c + n // 2]`` clipped to the channels, summed in the
same order as the graph (``beta = 0.75`` as ``sqrt(s) * sqrt(sqrt(s))``).

``gx_i = gy_i / s_i ** beta - 2 alpha beta x_i sum_{c in W(i)} gy_c x_c /
s_c ** (beta + 1)``.

Both ops have a NumPy ``perform``; the tests compare them with the graph
(values and gradients).  This module imports Theano; import it lazily.
"""
import numpy as np
from ..runtime import _theano  # noqa: F401 (prepares Theano)
import theano.tensor as T
from theano.gof import Apply, OpenMPOp
from theano.gradient import grad_not_implemented

from .c_support import alloc_output, cache_version, grad_apply, plane_loop

__all__ = ['CaffeLRN', 'CaffeLRNGrad']


def _scale(x, alpha, k, n):
    """NumPy ``s`` (see the module docstring), summed as the graph sums."""
    half, channels = n // 2, x.shape[1]
    sqr = np.square(x)
    s = np.full(x.shape, k, dtype=x.dtype)
    for c in range(channels):
        for j in range(c - half, c + half + 1):
            if 0 <= j < channels:
                s[:, c] += x.dtype.type(alpha) * sqr[:, j]
    return s


def _power(s, beta):
    if beta == 0.75:
        root = np.sqrt(s)
        return root * np.sqrt(root)
    return s ** s.dtype.type(beta)


class _LRNBase(OpenMPOp):
    __props__ = ('alpha', 'k', 'beta', 'n')

    def __init__(self, alpha, k, beta, n, openmp=None):
        super(_LRNBase, self).__init__(openmp=openmp)
        self.alpha, self.k, self.beta = float(alpha), float(k), float(beta)
        self.n = int(n)
        if self.n < 1 or self.n % 2 == 0:
            raise ValueError('LRN size n must be odd and positive, got %r'
                             % (n,))

    def c_code_cache_version(self):
        return cache_version(4, self, __file__)

    def _c_setup(self, x):
        """(C dtype name, format values, C lines filling ``S[0:HW]`` with
        plane c of image xb's ``s``) for the input named ``x``."""
        dtype = 'dtype_%s' % x
        parts = self._c_parts(dtype)
        return dtype, parts, self._scale_loop('xb', dtype) % parts

    def _c_parts(self, dtype):
        """Format values shared by both ops' C code (their plane loops:
        :func:`lasagne_tagger.ops.c_support.plane_loop`)."""
        if self.beta == 0.75:
            power = 'ROOT = sqrt(s); P = ROOT * sqrt(ROOT);'
        else:
            power = 'P = pow(s, (%s)%r);' % (dtype, self.beta)
        return dict(half=self.n // 2, alpha=repr(self.alpha),
                    k=repr(self.k), beta=repr(self.beta),
                    power=power)

    @staticmethod
    def _scale_loop(x_ptr, dtype):
        """C lines filling ``S[p]`` for every pixel p of plane c of image
        ``x_ptr``: one pass per channel of the window, in the graph's order,
        each a plain loop over pixels the compiler vectorizes."""
        return ('for (npy_intp p = 0; p < HW; ++p) S[p] = (%(dtype)s)%%(k)s;\n'
                'for (npy_intp j = c - %%(half)s; j <= c + %%(half)s; ++j) {\n'
                '    if (j < 0 || j >= C) continue;\n'
                '    const %(dtype)s* xj = %(x)s + j * HW;\n'
                '    for (npy_intp p = 0; p < HW; ++p)\n'
                '        S[p] += (%(dtype)s)%%(alpha)s * (xj[p] * xj[p]);\n'
                '}\n' % dict(dtype=dtype, x=x_ptr))


class CaffeLRN(_LRNBase):
    """``y = LRN(x)`` over the channel axis of a 4D tensor (see the module
    docstring); ``alpha`` is per element, as in Lasagne 0.1."""

    def make_node(self, x):
        x = T.as_tensor_variable(x)
        if x.ndim != 4:
            raise TypeError('CaffeLRN needs a 4D tensor, got %dD' % x.ndim)
        return Apply(self, [x], [x.type()])

    def infer_shape(self, node, shapes):
        return [shapes[0]]

    def perform(self, node, inputs, outputs):
        x, = inputs
        s = _scale(x, self.alpha, self.k, self.n)
        outputs[0][0] = (x / _power(s, self.beta)).astype(x.dtype)

    def grad(self, inputs, output_grads):
        x, = inputs
        gy, = output_grads
        return [CaffeLRNGrad(self.alpha, self.k, self.beta, self.n,
                             openmp=self.openmp)(x, gy)]

    def c_code(self, node, name, inputs, outputs, sub):
        x, = inputs
        y, = outputs
        dtype, parts, scale = self._c_setup(x)
        loop = plane_loop(self.openmp, [], _FORWARD_PLANE) % dict(
            parts, dtype=dtype, scale=scale)
        return r"""
        {
        PyArrayObject* xc = PyArray_GETCONTIGUOUS(%(x)s);
        if (!xc) { %(fail)s; }
        const npy_intp N = PyArray_DIMS(xc)[0], C = PyArray_DIMS(xc)[1];
        const npy_intp HW = PyArray_DIMS(xc)[2] * PyArray_DIMS(xc)[3];
        %(alloc)s
        const %(dtype)s* xd = (const %(dtype)s*)PyArray_DATA(xc);
        %(dtype)s* yd = (%(dtype)s*)PyArray_DATA(%(y)s);
%(loop)s        Py_DECREF(xc);
        }
        """ % dict(x=x, y=y, dtype=dtype, loop=loop, fail=sub['fail'],
                   alloc=alloc_output(y, 4, 'PyArray_DIMS(xc)', 'xc',
                                      'Py_DECREF(xc);', sub['fail']))


# CaffeLRN, one plane (plane_loop's body)
_FORWARD_PLANE = r'''
            const npy_intp b = plane / C, c = plane %% C;
            const %(dtype)s* xb = xd + b * C * HW;
            const %(dtype)s* xp = xd + plane * HW;
            %(dtype)s* S = yd + plane * HW;   /* s, then y, in place */
            %(scale)s
            for (npy_intp p = 0; p < HW; ++p) {
                const %(dtype)s s = S[p];
                %(dtype)s ROOT, P;  /* P = s ** beta */
                %(power)s
                S[p] = xp[p] / P;
            }
'''

# pass 1 of CaffeLRNGrad, one plane
_GRAD_PASS1 = r'''
            const npy_intp b = plane / C, c = plane %% C;
            const %(dtype)s* xb = xd + b * C * HW;
            const %(dtype)s* xp = xd + plane * HW;
            const %(dtype)s* gp = gd + plane * HW;
            %(dtype)s* S = od + plane * HW;
            %(dtype)s* tp = t + plane * HW;
            %(scale)s
            for (npy_intp p = 0; p < HW; ++p) {
                const %(dtype)s s = S[p];
                %(dtype)s ROOT, P;  /* P = s ** beta */
                %(power)s
                S[p] = (%(dtype)s)1 / P;
                tp[p] = gp[p] * xp[p] / (P * s);
            }
'''

# pass 2 of CaffeLRNGrad, one plane (w: plane_loop's per-thread scratch)
_GRAD_PASS2 = r'''
            const npy_intp b = plane / C, c = plane %% C;
            const %(dtype)s* tb = t + b * C * HW;
            const %(dtype)s* xp = xd + plane * HW;
            const %(dtype)s* gp = gd + plane * HW;
            %(dtype)s* op = od + plane * HW;
            for (npy_intp p = 0; p < HW; ++p) w[p] = 0;
            for (npy_intp j = c - %(half)s; j <= c + %(half)s; ++j) {
                if (j < 0 || j >= C) continue;
                const %(dtype)s* tj = tb + j * HW;
                for (npy_intp p = 0; p < HW; ++p) w[p] += tj[p];
            }
            for (npy_intp p = 0; p < HW; ++p)
                op[p] = gp[p] * op[p] - (%(dtype)s)(2 * %(alpha)s * %(beta)s)
                        * xp[p] * w[p];
'''


class CaffeLRNGrad(_LRNBase):
    """``gx`` for :class:`CaffeLRN` (see the module docstring)."""

    def make_node(self, x, gy):
        return grad_apply(self, x, gy)

    def infer_shape(self, node, shapes):
        return [shapes[0]]

    def perform(self, node, inputs, outputs):
        x, gy = inputs
        s = _scale(x, self.alpha, self.k, self.n)
        p = _power(s, self.beta)
        t = gy * x / (p * s)
        half, channels = self.n // 2, x.shape[1]
        window = np.zeros_like(x)
        for c in range(channels):
            for j in range(c - half, c + half + 1):
                if 0 <= j < channels:
                    window[:, c] += t[:, j]
        gx = gy / p - 2 * self.alpha * self.beta * x * window
        outputs[0][0] = gx.astype(x.dtype)

    def grad(self, inputs, output_grads):
        # note: the second derivative is not needed for training.
        return [grad_not_implemented(self, 0, inputs[0]),
                grad_not_implemented(self, 1, inputs[1])]

    def c_code(self, node, name, inputs, outputs, sub):
        x, gy = inputs
        gx, = outputs
        dtype, parts, scale = self._c_setup(x)
        pass1 = plane_loop(self.openmp, [], _GRAD_PASS1) % dict(
            parts, dtype=dtype, scale=scale)
        pass2 = plane_loop(self.openmp, [(dtype, 'w', 'HW + 1')],
                           _GRAD_PASS2) % dict(parts, dtype=dtype)
        return r"""
        {
        PyArrayObject* xc = PyArray_GETCONTIGUOUS(%(x)s);
        if (!xc) { %(fail)s; }
        PyArrayObject* gc = PyArray_GETCONTIGUOUS(%(gy)s);
        if (!gc) { Py_DECREF(xc); %(fail)s; }
        if (!PyArray_SAMESHAPE(xc, gc)) {
            PyErr_SetString(PyExc_ValueError,
                            "CaffeLRNGrad: gradient shape mismatch");
            Py_DECREF(xc); Py_DECREF(gc);
            %(fail)s;
        }
        const npy_intp N = PyArray_DIMS(xc)[0], C = PyArray_DIMS(xc)[1];
        const npy_intp HW = PyArray_DIMS(xc)[2] * PyArray_DIMS(xc)[3];
        %(alloc)s
        const %(dtype)s* xd = (const %(dtype)s*)PyArray_DATA(xc);
        const %(dtype)s* gd = (const %(dtype)s*)PyArray_DATA(gc);
        %(dtype)s* od = (%(dtype)s*)PyArray_DATA(%(gx)s);
        /* pass 1: gx = 1 / s^beta (kept in the output) and t = gy x /
           s^(beta + 1); pass 2: gx = gy gx - 2 alpha beta x (sum of t over
           the window) */
        %(dtype)s* t = (%(dtype)s*)malloc(sizeof(%(dtype)s) * N * C * HW);
        if (!t) {
            Py_DECREF(xc); Py_DECREF(gc);
            PyErr_NoMemory();
            %(fail)s;
        }
        int failed = 0;
%(pass1)s%(pass2)s        free(t);
        Py_DECREF(xc);
        Py_DECREF(gc);
        if (failed) { PyErr_NoMemory(); %(fail)s; }
        }
        """ % dict(x=x, gy=gy, gx=gx, dtype=dtype, pass1=pass1, pass2=pass2,
                   fail=sub['fail'], alloc=alloc_output(
                       gx, 4, 'PyArray_DIMS(xc)', 'xc',
                       'Py_DECREF(xc); Py_DECREF(gc);', sub['fail']))
