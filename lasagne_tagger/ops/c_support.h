/* C shared by the package's ops (lasagne_tagger/ops/c_support.py puts it in
   each op's support code; Theano includes identical support code once).

   Each op's own C lies beside its module (lrn_op.c, ...), in sections that
   c_support.c_sections() reads.  Python formats none of it: every value that
   varies (the node's variable names, its dtype, the op's parameters) reaches
   the C as a macro, defined before a section and undefined after it:

     INPUT_i, OUTPUT_i       the node's i-th input/output (PyArrayObject*)
     DTYPE_INPUT_i, ...      their C element types (npy_float32, ...)
     FAIL                    Theano's failure code, as one statement
     APPLY_SPECIFIC(name)    name, made unique to the node
     LT_OMP(pragma...)       _Pragma(pragma) when the op runs with OpenMP,
                             nothing otherwise
     LT_...                  the op's own parameters (see each op's module)
*/
#ifndef LT_C_SUPPORT_H
#define LT_C_SUPPORT_H

/* Makes *out a C-contiguous array of nd dims `dims` and type `typenum`,
   reusing it when it already is one with those dims.  0 on success; -1
   with a Python error set. */
static int lt_alloc_output(PyArrayObject** out, int nd, const npy_intp* dims,
                           int typenum)
{
    PyArrayObject* o = *out;
    if (o && PyArray_IS_C_CONTIGUOUS(o) && PyArray_NDIM(o) == nd) {
        int same = 1;
        for (int i = 0; i < nd; ++i)
            same = same && PyArray_DIMS(o)[i] == dims[i];
        if (same) return 0;
    }
    Py_XDECREF(o);
    *out = (PyArrayObject*)PyArray_EMPTY(nd, (npy_intp*)dims, typenum, 0);
    return *out ? 0 : -1;
}

/* A per-thread scratch buffer of `count` elements of type `type`, declared
   as `name` inside an `LT_OMP(omp parallel)` block and allocated once per
   thread rather than once per plane; if it cannot be allocated the int
   `failed` (declared by the op) is set and the thread's planes are to be
   skipped (`if (!name) continue;`).  Freed with free(name). */
#define LT_SCRATCH(type, name, count) \
    type* name = (type*)malloc(sizeof(type) * (count)); \
    if (!name) failed = 1

#endif
