"""Checkpoints: name-keyed, atomic, versioned, shape-checked."""
import json

import numpy as np
import pytest

from lasagne_tagger.training import checkpoint
from lasagne_tagger.errors import TaggerError


def test_round_trip_and_no_pickles(tmp_path):
    prefix = tmp_path / 'ck' / 'last'
    arrays = {'conv1/7x7_s2/W': np.arange(6.0).reshape(2, 3),
              'opt/000': np.ones(2)}
    checkpoint.save_checkpoint(prefix, arrays, {'epoch': 3})
    back, meta = checkpoint.load_checkpoint(str(prefix) + '.npz')
    assert meta['epoch'] == 3 and meta['format_version'] == 2
    assert 'flipped relative to Caffe' in meta['filter_orientation']
    assert list(back) == sorted(arrays) or set(back) == set(arrays)
    assert np.array_equal(back['conv1/7x7_s2/W'], arrays['conv1/7x7_s2/W'])


def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    prefix = tmp_path / 'last'
    checkpoint.save_checkpoint(prefix, {'a/W': np.zeros(3)}, {'epoch': 1})

    def disk_full(*args, **kwargs):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(checkpoint, 'fsync_path', disk_full, raising=False)
    from lasagne_tagger import atomic
    monkeypatch.setattr(atomic, 'fsync_path', disk_full)
    with pytest.raises(TaggerError, match=r'last\.npz: cannot write the '
                                          r'checkpoint \(disk full\)'):
        checkpoint.save_checkpoint(prefix, {'a/W': np.ones(3)}, {'epoch': 2})
    monkeypatch.undo()
    arrays, meta = checkpoint.load_checkpoint(prefix)
    assert meta['epoch'] == 1 and np.array_equal(arrays['a/W'], np.zeros(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['last.json',
                                                         'last.npz']


def test_version_and_missing_files(tmp_path):
    prefix = tmp_path / 'x'
    checkpoint.save_checkpoint(prefix, {'a/W': np.zeros(1)}, {})
    with np.load(tmp_path / 'x.npz') as data:
        stored = dict(data)
    meta = json.loads(stored['__meta__'].tobytes())
    meta['format_version'] = 99
    stored['__meta__'] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(tmp_path / 'x.npz', **stored)
    with pytest.raises(TaggerError, match='format version 99'):
        checkpoint.load_checkpoint(prefix)
    with pytest.raises(TaggerError, match='checkpoint file missing'):
        checkpoint.load_checkpoint(tmp_path / 'nope')


def test_one_file_holds_arrays_and_metadata(tmp_path):
    """The .json beside it is a copy for people: replacing it with an older
    one (a crash between the two writes) changes nothing a reader sees."""
    prefix = tmp_path / 'last'
    checkpoint.save_checkpoint(prefix, {'a/W': np.zeros(2)}, {'epoch': 1})
    old_json = (tmp_path / 'last.json').read_text()
    checkpoint.save_checkpoint(prefix, {'a/W': np.ones(2)}, {'epoch': 2})
    (tmp_path / 'last.json').write_text(old_json)
    arrays, meta = checkpoint.load_checkpoint(prefix)
    assert meta['epoch'] == 2 and np.array_equal(arrays['a/W'], np.ones(2))
    assert '__meta__' not in arrays


def test_damaged_checkpoints_are_one_line_errors(tmp_path):
    prefix = tmp_path / 'c'
    values = {'a/W': np.arange(4000, dtype=np.float32)}
    checkpoint.save_checkpoint(prefix, values, {'epoch': 1})
    data = (tmp_path / 'c.npz').read_bytes()
    (tmp_path / 'c.npz').write_bytes(data[:len(data) // 2])      # truncated
    with pytest.raises(TaggerError, match=r'c\.npz: damaged or incomplete '
                                          r'checkpoint'):
        checkpoint.load_checkpoint(prefix)
    # one flipped bit inside an array: the zip CRC or the recorded digest
    flipped = bytearray(data)
    at = data.index(np.arange(100, 101, dtype=np.float32).tobytes())
    flipped[at] ^= 0x04
    (tmp_path / 'c.npz').write_bytes(bytes(flipped))
    with pytest.raises(TaggerError, match=r'c\.npz: (damaged or incomplete '
                                          r'checkpoint|arrays do not match)'):
        checkpoint.load_checkpoint(prefix)


def test_version_1_checkpoints_are_still_read(tmp_path):
    np.savez(tmp_path / 'v1.npz', **{'a/W': np.ones(3)})
    (tmp_path / 'v1.json').write_text(json.dumps({'format_version': 1,
                                                  'epoch': 7}))
    arrays, meta = checkpoint.load_checkpoint(tmp_path / 'v1')
    assert meta['epoch'] == 7 and list(arrays) == ['a/W']


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
