"""The network: Lasagne layers (implementation chosen by argument), the
model-zoo GoogLeNet, its weights (model-zoo pickle, BVLC caffemodel) and
the ImageNet head.
"""
