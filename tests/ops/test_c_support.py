"""How the ops get their C (lasagne_tagger/ops/c_support.py): the C files'
sections, the macros around them, and a check that each op's C uses only
macros that the op or the file defines, with no Python formatting left."""
import ast
import fnmatch
import os
import re

import pytest
from repo import ROOT

import lasagne_tagger.runtime._theano  # noqa: F401 (prepares Theano)
import theano.tensor as T  # noqa: E402

from lasagne_tagger.ops import (bias_relu_op, c_support,  # noqa: E402
                                caffe_pool_op, conv_op, lrn_op)

HERE = c_support.HERE


def _nodes():
    x, g = T.tensor4('x'), T.tensor4('g')
    b, b2 = T.vector('b'), T.vector('b2')
    x2 = T.tensor4('x2')
    w, shape = T.tensor4('w'), T.lvector('shape')
    return [
        caffe_pool_op.CaffeMaxPool(3, 2, 0)(x).owner,
        caffe_pool_op.CaffeMaxPool(3, 1, 1)(x).owner,
        caffe_pool_op.CaffeMaxPoolGrad(3, 1, 1)(x, g).owner,
        caffe_pool_op.CaffeMaxPoolGrad(3, 2, 1)(x, g).owner,
        lrn_op.CaffeLRN(1e-4, 1.0, 0.75, 5)(x).owner,
        lrn_op.CaffeLRNGrad(1e-4, 2.0, 0.5, 3)(x, g).owner,
        bias_relu_op.BiasReLU()(x, b, x2, b2).owner,
        bias_relu_op.BiasReLUGrad()(x, b, x2, b2, g)[0].owner,
        conv_op.CorrGemm(3, flip=True)(x, w).owner,
        conv_op.CorrGemm(1, bias_relu=True)(x, w, b).owner,
        conv_op.CorrGemmGradInputs((3, 3), pad=1)(w, g, shape).owner,
        conv_op.CorrGemmGradWeights((5, 5), stride=2)(x, g).owner,
    ]


def _c_text(node):
    op = node.op
    sub = dict(fail='{ FAILED; }')
    names = ['V%d' % i for i in range(len(node.inputs) + len(node.outputs))]
    code = op.c_code(node, 'node_0', names[:len(node.inputs)],
                     names[len(node.inputs):], sub)
    return op.c_support_code_apply(node, 'node_0') + code


@pytest.mark.parametrize('node', _nodes(),
                         ids=lambda n: '%s-%d' % (type(n.op).__name__,
                                                  len(n.inputs)))
def test_each_macro_the_c_uses_is_defined(node):
    text = _c_text(node)
    files = ''.join(c_support.c_sections(node.op.c_file).values())
    defined = set(re.findall(r'#define (\w+)', text + files)) | set(
        re.findall(r'#define (\w+)', c_support.support_code()))
    used = set(re.findall(r'\b(LT_[A-Z0-9_]+|DTYPE\w*|INPUT_\d+|'
                          r'OUTPUT_\d+)\b', text))
    assert used - defined == set()
    assert '%(' not in text and '%%' not in text
    # every macro defined for the node is undefined after it
    for name in re.findall(r'^#define (\w+)', text, re.M):
        assert '#undef %s' % name in text


def test_the_node_names_reach_the_c():
    node = bias_relu_op.BiasReLUGrad()(T.tensor4(), T.vector(), T.tensor4(),
                                       T.vector(), T.tensor4())[0].owner
    macros = dict(node.op._macros(node, 'n', dict(
        inputs=['A', 'B', 'C', 'D', 'G'], outputs=['E', 'F', 'H', 'I'],
        fail='fail;')))
    assert macros['INPUT_4'] == 'G' and macros['OUTPUT_3'] == 'I'
    assert macros['LT_XS'] == '{INPUT_0, INPUT_2}'
    assert macros['LT_GBS'] == '{&OUTPUT_1, &OUTPUT_3}'
    assert macros['LT_GY'] == 'INPUT_4'
    assert macros['APPLY_SPECIFIC(str)'] == 'str##_n'
    assert macros['DTYPE_INPUT_0'] == 'npy_float64'


def test_openmp_pragmas_only_with_openmp():
    x = T.tensor4()
    on = dict(lrn_op.CaffeLRN(1e-4, 1, 0.75, 5, openmp=True)
              ._macros(lrn_op.CaffeLRN(1e-4, 1, 0.75, 5)(x).owner, 'n'))
    off = dict(lrn_op.CaffeLRN(1e-4, 1, 0.75, 5, openmp=False)
               ._macros(lrn_op.CaffeLRN(1e-4, 1, 0.75, 5)(x).owner, 'n'))
    assert on['LT_OMP(...)'] == '_Pragma(#__VA_ARGS__)'
    assert off['LT_OMP(...)'] == ''


def test_with_macros_continues_multi_line_values():
    text = c_support.with_macros('BODY\n', [('A', 'x\ny'), ('F(v)', True)])
    assert text == '\n#define A x \\\ny\n#define F(v) 1\nBODY\n#undef F\n' \
                   '#undef A\n'


def _sections(tmp_path, monkeypatch, text):
    monkeypatch.setattr(c_support, 'HERE', str(tmp_path))
    (tmp_path / 'op.c').write_text(text)
    c_support.c_sections.cache_clear()
    try:
        return c_support.c_sections('op.c')
    finally:
        c_support.c_sections.cache_clear()


def test_sections_and_inclusion(tmp_path, monkeypatch):
    got = _sections(tmp_path, monkeypatch,
                    '/* a comment\n   over lines */\n#section one\nA\n'
                    '#section two\nB\n#include_section one\nC\n')
    assert got == {'one': 'A\n', 'two': 'B\nA\nC\n'}


@pytest.mark.parametrize('text, message', [
    ('int x;\n#section one\nA\n', 'before the first #section'),
    ('#section one\nA\n#section one\nB\n', "section 'one' twice"),
    ('#section one\n#include_section two\n', "cannot include section 'two'"),
    ('#section one\nA\n#section two\n#include_section one\n#section three\n'
     '#include_section two\n', "cannot include section 'one'"),
])
def test_malformed_files_are_refused(tmp_path, monkeypatch, text, message):
    with pytest.raises(ValueError, match=message) as info:
        _sections(tmp_path, monkeypatch, text)
    assert 'op.c' in str(info.value)


def test_every_c_file_is_package_data():
    with open(os.path.join(ROOT, 'setup.py')) as fh:
        tree = ast.parse(fh.read())
    data = next(ast.literal_eval(k.value) for k in ast.walk(tree)
                if isinstance(k, ast.keyword) and k.arg == 'package_data')
    patterns = data['lasagne_tagger.ops']
    for name in os.listdir(HERE):
        if name.endswith(('.c', '.h')):
            assert any(fnmatch.fnmatch(name, p) for p in patterns), name
    assert {op.c_file for op in (caffe_pool_op.CaffeMaxPool(3, 2, 0),
                                 lrn_op.CaffeLRN(1e-4, 1, 0.75, 5),
                                 bias_relu_op.BiasReLU(), conv_op.CorrGemm(3))
            } == {n for n in os.listdir(HERE) if n.endswith('.c')}
