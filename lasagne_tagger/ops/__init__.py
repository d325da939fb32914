"""The CPU Theano ops with C code (convolution, bias + rectifier, LRN,
Caffe's max pooling), each op's C in a ``.c`` file beside its module, how
the ops read it (``c_support``, with the C they share in ``c_support.h``),
and Caffe's pooled length (``pool_shape``, NumPy).
"""
