"""Checkpoints: name-keyed, atomic, versioned, shape-checked."""
import json

import numpy as np
import pytest

from lasagne_tagger import checkpoint
from lasagne_tagger.errors import TaggerError


def test_round_trip_and_no_pickles(tmp_path):
    prefix = tmp_path / 'ck' / 'last'
    arrays = {'conv1/7x7_s2/W': np.arange(6.0).reshape(2, 3),
              'opt/000': np.ones(2)}
    checkpoint.save_checkpoint(prefix, arrays, {'epoch': 3})
    back, meta = checkpoint.load_checkpoint(str(prefix) + '.npz')
    assert meta['epoch'] == 3 and meta['format_version'] == 1
    assert 'flipped relative to Caffe' in meta['filter_orientation']
    assert list(back) == sorted(arrays) or set(back) == set(arrays)
    assert np.array_equal(back['conv1/7x7_s2/W'], arrays['conv1/7x7_s2/W'])


def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    prefix = tmp_path / 'last'
    checkpoint.save_checkpoint(prefix, {'a/W': np.zeros(3)}, {'epoch': 1})

    def disk_full(*args, **kwargs):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(np, 'savez', disk_full)
    with pytest.raises(TaggerError, match='No space left on device.*'
                                          'previous checkpoint is intact'):
        checkpoint.save_checkpoint(prefix, {'a/W': np.ones(3)}, {'epoch': 2})
    monkeypatch.undo()
    arrays, meta = checkpoint.load_checkpoint(prefix)
    assert meta['epoch'] == 1 and np.array_equal(arrays['a/W'], np.zeros(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['last.json',
                                                         'last.npz']


def test_version_and_missing_files(tmp_path):
    prefix = tmp_path / 'x'
    checkpoint.save_checkpoint(prefix, {'a/W': np.zeros(1)}, {})
    meta = json.loads((tmp_path / 'x.json').read_text())
    meta['format_version'] = 99
    (tmp_path / 'x.json').write_text(json.dumps(meta))
    with pytest.raises(TaggerError, match='format version 99'):
        checkpoint.load_checkpoint(prefix)
    with pytest.raises(TaggerError, match='checkpoint file missing'):
        checkpoint.load_checkpoint(tmp_path / 'nope')


def test_assign_checks_names_and_shapes():
    import theano
    params = {'a/W': theano.shared(np.zeros((2, 2))),
              'b/b': theano.shared(np.zeros(2))}
    with pytest.raises(TaggerError, match=r"has no array 'b/b'"):
        checkpoint.assign_params(params, {'a/W': np.ones((2, 2))})
    with pytest.raises(TaggerError, match=r"'a/W' has shape \(3,\), the "
                                          r"network expects \(2, 2\)"):
        checkpoint.assign_params(params, {'a/W': np.ones(3),
                                          'b/b': np.ones(2)})
    assert params['a/W'].get_value().sum() == 0     # nothing half-assigned
