"""Our C ops' cache versions carry a digest of their module's source and
of their C file, so Theano never reuses a module compiled from an older
edit of an op."""
import hashlib
import os
import sys

import pytest

import lasagne_tagger.runtime._theano  # noqa: F401 (prepares Theano)

from lasagne_tagger.ops import bias_relu_op, caffe_pool_op, conv_op, lrn_op
from lasagne_tagger.ops.c_support import HERE, source_version  # noqa: E402

OPS = [caffe_pool_op.CaffeMaxPool(3, 2, 0),
       caffe_pool_op.CaffeMaxPoolGrad(3, 1, 1),
       lrn_op.CaffeLRN(1e-4, 1.0, 0.75, 5),
       lrn_op.CaffeLRNGrad(1e-4, 1.0, 0.75, 5),
       bias_relu_op.BiasReLU(), bias_relu_op.BiasReLUGrad(),
       conv_op.CorrGemm(3), conv_op.CorrGemmGradInputs(3),
       conv_op.CorrGemmGradWeights(3)]


@pytest.mark.parametrize('op', OPS, ids=lambda op: type(op).__name__)
def test_version_carries_the_source_digests(op):
    def digest(path):
        with open(path, 'rb') as fh:
            return hashlib.sha256(fh.read()).hexdigest()[:16]
    version = op.c_code_cache_version()
    assert version[-1] == digest(sys.modules[type(op).__module__].__file__)
    assert digest(os.path.join(HERE, op.c_file)) in version
    assert digest(os.path.join(HERE, 'c_support.h')) in version
    assert op.openmp in version


def test_an_edit_changes_the_digest(tmp_path):
    a, b = tmp_path / 'a.py', tmp_path / 'b.py'
    a.write_text('X = 1\n')
    b.write_text('X = 2\n')
    assert source_version(str(a)) != source_version(str(b))
    assert source_version(str(a)) == source_version(str(a))
