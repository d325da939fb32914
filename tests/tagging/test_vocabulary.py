"""Tests for lasagne_tagger.tagging.vocabulary (pure NumPy, no Theano)."""
import json

import numpy as np
import pytest

from lasagne_tagger.errors import TaggerError
from lasagne_tagger.tagging.vocabulary import FORMAT_VERSION, Vocabulary

# Deliberately not in sorted key order; "upper body" is one token and
# "cotton" appears under two classes.
TAXONOMY = {
    'skirt': ['skirt', 'lower body', 'cotton'],
    'dress': ['dress', 'upper body', 'cotton'],
    'coat': ['coat', 'upper body', 'wool'],
}
# Classes visited sorted (coat, dress, skirt), tags by first appearance.
EXPECTED_TAGS = ['coat', 'upper body', 'wool', 'dress', 'cotton', 'skirt',
                 'lower body']


@pytest.fixture
def vocab():
    return Vocabulary.from_taxonomy(TAXONOMY)


def test_from_taxonomy_order_and_specials(vocab):
    assert vocab.tags == EXPECTED_TAGS
    assert (vocab.pad_id, vocab.start_id, vocab.end_id) == (0, 1, 2)
    assert vocab.size == 3 + len(EXPECTED_TAGS) == len(vocab)
    assert [vocab.id(t) for t in EXPECTED_TAGS] == list(range(3, 10))
    assert vocab.id('upper body') == 4
    assert [vocab.tag(i) for i in range(3)] == ['<pad>', '<start>', '<end>']
    assert vocab.tag(np.int64(9)) == 'lower body'
    assert vocab.classes == ['coat', 'dress', 'skirt']
    assert vocab.class_id('skirt') == 2


def test_order_does_not_depend_on_dict_order():
    reordered = dict(reversed(list(TAXONOMY.items())))
    assert Vocabulary.from_taxonomy(reordered) == Vocabulary.from_taxonomy(
        TAXONOMY)


def test_tags_property_is_a_copy(vocab):
    vocab.tags.append('hat')
    assert 'hat' not in vocab.tags
    with pytest.raises(TaggerError, match="unknown tag 'hat'"):
        vocab.id('hat')


def test_encode_and_decode(vocab):
    ids = vocab.encode(['dress', 'upper body', 'cotton'])
    assert ids == [6, 4, 7]
    assert vocab.decode([1] + ids + [2, 5, 0]) == ['dress', 'upper body',
                                                    'cotton']
    assert vocab.decode(np.array([1, 6, 0, 4, 2, 9], dtype=np.int32)) == [
        'dress', 'upper body']
    assert vocab.decode([]) == []
    with pytest.raises(TaggerError, match="unknown tag 'denim'"):
        vocab.encode(['dress', 'denim'])
    with pytest.raises(TaggerError, match='string'):
        vocab.encode('dress')
    with pytest.raises(TaggerError, match='out of range'):
        vocab.decode([3, 99])
    with pytest.raises(TaggerError, match='out of range'):
        vocab.tag(-1)


def test_encode_batch_layout(vocab):
    inputs, targets, mask = vocab.encode_batch(
        [['dress', 'upper body', 'cotton'], ['coat'], []])
    assert inputs.dtype == np.int32 and targets.dtype == np.int32
    assert mask.dtype == np.float32
    np.testing.assert_array_equal(inputs, [[1, 6, 4, 7],
                                           [1, 3, 0, 0],
                                           [1, 0, 0, 0]])
    np.testing.assert_array_equal(targets, [[6, 4, 7, 2],
                                            [3, 2, 0, 0],
                                            [2, 0, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1, 1],
                                         [1, 1, 0, 0],
                                         [1, 0, 0, 0]])


def test_encode_batch_max_len(vocab):
    inputs, targets, mask = vocab.encode_batch([['coat']], max_len=3)
    assert inputs.shape == targets.shape == mask.shape == (1, 4)
    np.testing.assert_array_equal(targets, [[3, 2, 0, 0]])
    with pytest.raises(TaggerError, match='tag list 1 has 2 tags, more than '
                                          'max_len=1'):
        vocab.encode_batch([['coat'], ['coat', 'wool']], max_len=1)
    with pytest.raises(TaggerError, match='max_len'):
        vocab.encode_batch([['coat']], max_len=-1)
    with pytest.raises(TaggerError, match="unknown tag 'hat'"):
        vocab.encode_batch([['coat'], ['hat']])


@pytest.mark.parametrize('taxonomy, message', [
    ([('a', ['x'])], 'must be a dict'),
    ({}, 'no classes'),
    ({'a': 'x'}, 'list of strings'),
    ({'a': ['x', '']}, 'empty tag'),
    ({'a': ['x', 3]}, 'not a string'),
    ({'a': ['<end>']}, 'reserved'),
    ({'a': [' x']}, 'spaces'),
    ({1: ['x']}, 'class name'),
])
def test_bad_taxonomy(taxonomy, message):
    with pytest.raises(TaggerError, match=message):
        Vocabulary.from_taxonomy(taxonomy)


def test_constructor_rejects_duplicates():
    with pytest.raises(TaggerError, match="duplicate tag 'x'"):
        Vocabulary(['x', 'y', 'x'])
    with pytest.raises(TaggerError, match="'z' is not in the vocabulary"):
        Vocabulary(['x'], {'c': ['x', 'z']})


def test_equality(vocab):
    assert vocab == Vocabulary.from_taxonomy(TAXONOMY)
    assert vocab != Vocabulary(EXPECTED_TAGS)          # taxonomy differs
    assert vocab != Vocabulary.from_taxonomy({**TAXONOMY, 'hat': ['hat']})
    assert Vocabulary(['a', 'b']) != Vocabulary(['b', 'a'])
    assert Vocabulary(['a', 'b']) == Vocabulary(('a', 'b'))
    assert hash(Vocabulary(['a', 'b'])) == hash(Vocabulary(['a', 'b']))
    assert vocab != EXPECTED_TAGS


def test_dict_and_file_round_trip(vocab, tmp_path):
    data = vocab.to_dict()
    assert data['version'] == FORMAT_VERSION
    assert json.loads(json.dumps(data)) == data
    assert Vocabulary.from_dict(data) == vocab
    path = tmp_path / 'vocab.json'
    vocab.save(path)
    loaded = Vocabulary.load(path)
    assert loaded == vocab
    assert loaded.tags == EXPECTED_TAGS
    assert loaded.id('upper body') == vocab.id('upper body')
    plain = Vocabulary(['a', 'b c'])
    plain.save(tmp_path / 'plain.json')
    assert Vocabulary.load(tmp_path / 'plain.json') == plain
    assert Vocabulary.load(tmp_path / 'plain.json').taxonomy is None


def _write(path, data):
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_load_errors_name_the_file(vocab, tmp_path):
    good = vocab.to_dict()
    cases = {
        'version.json': ({**good, 'version': FORMAT_VERSION + 1}, 'version'),
        'format.json': ({**good, 'format': 'other'}, 'not a vocabulary'),
        'list.json': ([1, 2], 'not a vocabulary'),
        'tags.json': ({**good, 'tags': 'coat'}, '"tags" must be a list'),
        'dup.json': ({**good, 'tags': ['a', 'a'], 'taxonomy': None},
                     'duplicate'),
        'tax.json': ({**good, 'taxonomy': {'c': ['nope']}}, "'nope'"),
        'specials.json': ({**good, 'specials': ['<s>']}, 'special tokens'),
        'garbage.json': ('{not json', 'not a JSON'),
    }
    for name, (data, message) in cases.items():
        path = _write(tmp_path / name, data)
        with pytest.raises(TaggerError, match=message) as info:
            Vocabulary.load(path)
        assert str(info.value).startswith(str(path) + ': ')
        assert '\n' not in str(info.value)
    missing = tmp_path / 'missing.json'
    with pytest.raises(TaggerError, match='cannot read') as info:
        Vocabulary.load(missing)
    assert str(missing) in str(info.value)
