"""The CPU Theano ops with C code (convolution, bias + rectifier, LRN,
Caffe's max pooling), their shared C pieces (``c_support``) and Caffe's
pooled length (``pool_shape``, NumPy).
"""
