"""The prepared store: contents, rejects, resume after a kill, streaming."""
import os
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from lasagne_tagger.data import store as store_mod
from lasagne_tagger.data.datasets import read_folder_dataset
from lasagne_tagger.errors import TaggerError
from lasagne_tagger.data.preprocess import load_crop
from lasagne_tagger.data.store import (FORMAT, FORMAT_VERSION, open_store,
                                  prepare, read_rejects, rejects_path)

SIZE = 16


@pytest.fixture
def ds(ds_store_folder):
    return read_folder_dataset(ds_store_folder[0])


def _expected(ds):
    """row -> load_crop output, or None for images it rejects."""
    out = []
    for item in ds.items:
        try:
            out.append(load_crop(item.path, size=SIZE))
        except TaggerError:
            out.append(None)
    return out


def _check_store(path, ds, complete=True):
    """Every servable row equals load_crop; return the servable rows."""
    want = _expected(ds)
    with open_store(path) as st:
        assert st.classes == ds.classes and st.size == SIZE
        assert len(st) == len(ds.items)
        rows = st.indices()
        for row in rows:
            assert want[row] is not None
        if complete:
            assert [int(r) for r in rows] == \
                [i for i, w in enumerate(want) if w is not None]
            assert st.complete and st.remaining == 0
        crops, labels = st.read(rows)
        for row, crop in zip(rows, crops):
            np.testing.assert_array_equal(crop, want[row])
        assert list(labels) == [ds.items[r].label for r in rows]
    return [int(r) for r in rows]


def _count_calls(monkeypatch):
    calls = []
    real = store_mod._crop_one

    def counting(path, size, upscale):
        calls.append(path)
        return real(path, size, upscale)

    monkeypatch.setattr(store_mod, '_crop_one', counting)
    return calls


@pytest.mark.parametrize('workers, chunk', [(1, 1), (2, 4)])
def test_prepare_contents_and_rejects(tmp_path, ds, ds_store_folder,
                                      workers, chunk):
    _, bad = ds_store_folder
    out = tmp_path / 'out' / 'set.h5'
    summary = prepare(ds, out, size=SIZE, workers=workers, progress=False,
                      chunk=chunk)
    assert (summary.total, summary.done, summary.rejected,
            summary.remaining) == (12, 8, 4, 0)
    assert summary.processed == 12 and summary.already_done == 0
    assert summary.images_per_second > 0 and 'rejects listed' in str(summary)
    rows = _check_store(out, ds)
    assert len(rows) == 8
    # the rejects file: one line per bad image, with its reason
    rejects = read_rejects(out)
    assert summary.rejects_path == rejects_path(str(out)) == \
        str(out) + '.rejects.tsv'
    assert sorted(os.path.basename(p) for p, _ in rejects) == sorted(bad)
    for path, reason in rejects:
        assert os.path.isabs(path)
        assert bad[os.path.basename(path)] in reason, reason
        assert path not in reason                  # reason only
    lines = open(summary.rejects_path).read().splitlines()
    assert all(line.count('\t') == 1 for line in lines) and len(lines) == 4
    # the file layout
    with h5py.File(out, 'r') as h5:
        assert h5.attrs['format'] == FORMAT
        assert h5.attrs['format_version'] == FORMAT_VERSION == 1
        assert h5.attrs['size'] == SIZE
        images = h5['images']
        assert images.dtype == np.uint8 and images.shape == (12, 16, 16, 3)
        assert images.chunks == (chunk, 16, 16, 3)
        assert h5['labels'].dtype == np.int32
        assert list(h5['labels'][:]) == [i.label for i in ds.items]
        assert list(h5['paths'].asstr()[:]) == [ds.relpath(i)
                                                for i in ds.items]
        assert list(h5['done'][:] + 2 * h5['rejected'][:]) == \
            [1 if w is not None else 2 for w in _expected(ds)]
    with open_store(out) as st:
        assert st.splits == ['test', 'train']
        assert st.count('train') == 6 and st.count('test') == 2
        assert st.rejected_count == 4
        assert [os.path.basename(p) for p in st.paths(st.indices('test'))] \
            == ['g6.jpg', 'g7.png']


def test_rerun_is_a_no_op_and_rejects_are_not_retried(tmp_path, ds,
                                                      monkeypatch,
                                                      ds_write_image):
    out = tmp_path / 's.h5'
    prepare(ds, out, size=SIZE, workers=1, progress=False)
    before = open(rejects_path(str(out))).read()
    calls = _count_calls(monkeypatch)
    summary = prepare(ds, out, size=SIZE, workers=1, progress=False)
    assert calls == [] and summary.processed == 0
    assert summary.already_done == 8 and summary.rejected == 4
    # a run killed after logging rejects but before marking them: the
    # images are retried, the rejects file gets no duplicate lines
    with h5py.File(out, 'r+') as h5:
        h5['rejected'][...] = 0
    summary = prepare(ds, out, size=SIZE, workers=1, progress=False)
    assert len(calls) == 4 and summary.rejected_now == 4
    assert open(rejects_path(str(out))).read() == before
    summary = prepare(ds, out, size=SIZE, workers=1, progress=False,
                      retry_rejects=True)
    assert len(calls) == 8 and summary.rejected == 4
    assert open(rejects_path(str(out))).read() == before
    _check_store(out, ds)
    # fix one bad image, retry: it is prepared and leaves the rejects file
    empty = [i.path for i in ds.items if i.path.endswith('b1_empty.jpg')][0]
    ds_write_image(empty, size=(20, 20), seed=5, fmt='JPEG')
    summary = prepare(ds, out, size=SIZE, workers=1, progress=False,
                      retry_rejects=True)
    assert (summary.done, summary.rejected, summary.processed) == (9, 3, 4)
    assert len(calls) == 12
    assert sorted(p for p, _ in read_rejects(out)) == sorted(
        l.split('\t')[0] for l in before.splitlines() if empty not in l)
    _check_store(out, ds)


def test_resume_after_limit_recomputes_nothing(tmp_path, ds, monkeypatch):
    ref = tmp_path / 'ref.h5'
    prepare(ds, ref, size=SIZE, workers=1, progress=False)
    out = tmp_path / 'part.h5'
    calls = _count_calls(monkeypatch)
    first = prepare(ds, out, size=SIZE, workers=1, progress=False, limit=5)
    assert first.processed == 5 and first.remaining == 7
    assert calls == [i.path for i in ds.items[:5]]
    with open_store(out) as st:
        assert not st.complete and st.remaining == 7
        assert all(r < 5 for r in st.indices())
    del calls[:]
    second = prepare(ds, out, size=SIZE, workers=2, progress=False)
    assert sorted(calls) == sorted(i.path for i in ds.items[5:])
    assert second.already_done + second.written == 8
    _check_store(out, ds)
    with h5py.File(ref, 'r') as a, h5py.File(out, 'r') as b:
        ready = a['done'][:].astype(bool)
        np.testing.assert_array_equal(a['done'][:], b['done'][:])
        np.testing.assert_array_equal(a['rejected'][:], b['rejected'][:])
        np.testing.assert_array_equal(a['images'][ready], b['images'][ready])
    assert sorted(read_rejects(ref)) == sorted(read_rejects(out))


def test_interrupt_keeps_what_was_written(tmp_path, ds, monkeypatch):
    real = store_mod._crop_one
    seen = []

    def interrupted(path, size, upscale):
        if len(seen) == 7:
            raise KeyboardInterrupt
        seen.append(path)
        return real(path, size, upscale)

    monkeypatch.setattr(store_mod, '_crop_one', interrupted)
    out = tmp_path / 's.h5'
    with pytest.raises(KeyboardInterrupt):
        prepare(ds, out, size=SIZE, workers=1, progress=False,
                flush_interval=1e9, task_size=3)
    # the interrupted task (rows 6-8) is lost, the two before it are kept
    rows = _check_store(out, ds, complete=False)
    assert rows == [r for r in range(6) if _expected(ds)[r] is not None]
    monkeypatch.setattr(store_mod, '_crop_one', real)
    calls = _count_calls(monkeypatch)
    prepare(ds, out, size=SIZE, workers=1, progress=False)
    assert calls == [i.path for i in ds.items[6:]]
    _check_store(out, ds)


_KILL_SCRIPT = textwrap.dedent('''
    import sys, time
    from lasagne_tagger.data import store
    from lasagne_tagger.data.datasets import read_folder_dataset
    real = store._crop_one
    def slow(path, size, upscale):
        out = real(path, size, upscale)
        print(path, flush=True)
        time.sleep(0.2)
        return out
    store._crop_one = slow
    store.prepare(read_folder_dataset(sys.argv[1]), sys.argv[2], size=16,
                  workers=1, progress=False, flush_interval=0, task_size=1)
    print('finished', flush=True)
''')


@pytest.mark.skipif(not hasattr(signal, 'SIGKILL'), reason='needs SIGKILL')
def test_sigkill_then_resume(tmp_path, ds, ds_store_folder, monkeypatch):
    out = tmp_path / 'killed.h5'
    proc = subprocess.Popen(
        [sys.executable, '-c', _KILL_SCRIPT, str(ds_store_folder[0]),
         str(out)], stdout=subprocess.PIPE, text=True)
    try:
        started = [proc.stdout.readline().strip() for _ in range(7)]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert 'finished' not in started and proc.returncode == -signal.SIGKILL
    assert started == [i.path for i in ds.items[:7]]
    with open_store(out) as st:
        kept = int(st.count() + st.rejected_count)
    assert 6 <= kept <= 8          # rows 0-5 were committed before row 6
    _check_store(out, ds, complete=False)
    calls = _count_calls(monkeypatch)
    prepare(ds, out, size=SIZE, workers=1, progress=False)
    assert len(calls) == 12 - kept
    _check_store(out, ds)
    assert len(read_rejects(out)) == 4


def test_write_error_is_clear_and_store_stays_valid(tmp_path, ds,
                                                   monkeypatch):
    real_setitem = h5py.Dataset.__setitem__
    writes = []

    def disk_full(self, key, value):
        if self.name == '/images':
            if len(writes) == 3:
                raise OSError(28, 'No space left on device')
            writes.append(key)
        return real_setitem(self, key, value)

    monkeypatch.setattr(h5py.Dataset, '__setitem__', disk_full)
    out = tmp_path / 'full.h5'
    with pytest.raises(TaggerError) as err:
        prepare(ds, out, size=SIZE, workers=1, progress=False,
                flush_interval=1e9)
    msg = str(err.value)
    assert msg.startswith(str(out) + ': write failed')
    assert 'No space left' in msg and 'rerun prepare to resume' in msg
    monkeypatch.setattr(h5py.Dataset, '__setitem__', real_setitem)
    rows = _check_store(out, ds, complete=False)
    assert rows == writes and len(rows) == 3
    prepare(ds, out, size=SIZE, workers=1, progress=False)
    _check_store(out, ds)


def test_batches_stream_and_shuffle_deterministically(tmp_path, ds,
                                                      monkeypatch):
    out = tmp_path / 's.h5'
    prepare(ds, out, size=SIZE, workers=1, progress=False)
    want = _expected(ds)
    # a split too large to hold in memory streams batch by batch
    monkeypatch.setattr(store_mod, 'MEMORY_BYTES', 0)
    with open_store(out) as st:
        train = list(st.indices('train'))
        assert len(train) == 6
        read_sizes = []
        real = st._images.read_direct

        def spy(dest, source_sel=None, dest_sel=None):
            read_sizes.append(source_sel.stop - source_sel.start)
            return real(dest, source_sel=source_sel, dest_sel=dest_sel)

        monkeypatch.setattr(st._images, 'read_direct', spy, raising=False)
        batches = list(st.batches('train', 4))
        assert [len(b[2]) for b in batches] == [4, 2]     # last partial
        assert max(read_sizes) <= 4 and sum(read_sizes) == 6
        assert [int(r) for b in batches for r in b[2]] == train
        for crops, labels, rows in batches:
            assert crops.dtype == np.uint8 and crops.shape[1:] == (16, 16, 3)
            assert labels.dtype == np.int32
            for crop, label, row in zip(crops, labels, rows):
                np.testing.assert_array_equal(crop, want[row])
                assert label == ds.items[row].label

        def order(**kw):
            return [int(r) for b in st.batches('train', 4, shuffle=True, **kw)
                    for r in b[2]]

        a = order(seed=3, epoch=0)
        assert sorted(a) == train and a != train
        assert order(seed=3, epoch=0) == a
        assert order(seed=3, epoch=1) != a
        assert order(seed=4, epoch=0) != a
        assert [len(b[2]) for b in st.batches(None, 5)] == [5, 3]
        # read: any order, repeats
        crops, labels = st.read([train[3], train[0], train[3]])
        np.testing.assert_array_equal(crops[0], want[train[3]])
        np.testing.assert_array_equal(crops[1], want[train[0]])
        np.testing.assert_array_equal(crops[2], want[train[3]])
        assert st.read([])[0].shape == (0, 16, 16, 3)
        bad_row = [i for i, w in enumerate(want) if w is None][0]
        with pytest.raises(TaggerError, match='not prepared or was rejected'):
            st.read([bad_row])
        with pytest.raises(TaggerError, match='out of range'):
            st.read([99])
        with pytest.raises(TaggerError, match="no split 'val'"):
            st.indices('val')
        with pytest.raises(TaggerError, match='batch_size'):
            next(st.batches('train', 0))
        with pytest.raises(TaggerError, match='seed'):
            next(st.batches('train', 2, shuffle=True, seed=-1))


def test_small_splits_are_read_once_and_served_from_memory(tmp_path, ds,
                                                          monkeypatch):
    out = tmp_path / 's.h5'
    prepare(ds, out, size=SIZE, workers=1, progress=False)
    with open_store(out) as st:
        streamed = [(c.copy(), l.copy(), r.copy()) for c, l, r in
                    _streamed(st, monkeypatch)]
    with open_store(out) as st:
        reads = []
        real = st.read
        monkeypatch.setattr(st, 'read', lambda rows: reads.append(
            len(rows)) or real(rows))
        for epoch in (0, 1):
            got = list(st.batches('train', 4, shuffle=True, seed=3,
                                  epoch=epoch))
            if epoch == 0:
                for (c, l, r), (c2, l2, r2) in zip(got, streamed):
                    np.testing.assert_array_equal(c, c2)
                    np.testing.assert_array_equal(l, l2)
                    np.testing.assert_array_equal(r, r2)
        assert reads == [6]          # the whole split, once, for both epochs
        assert sum(len(b[2]) for b in st.batches('test', 4)) == \
            st.count('test')
        assert reads == [6, st.count('test')]


def _streamed(st, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(store_mod, 'MEMORY_BYTES', 0)
        return list(st.batches('train', 4, shuffle=True, seed=3, epoch=0))


def test_wrong_files_and_versions(tmp_path, ds):
    with pytest.raises(TaggerError, match='store not found'):
        open_store(tmp_path / 'nope.h5')
    text = tmp_path / 'notes.h5'
    text.write_text('hello')
    with pytest.raises(TaggerError, match='not an HDF5 file') as err:
        open_store(text)
    assert str(text) in str(err.value)
    with pytest.raises(TaggerError, match='not an HDF5 file'):
        prepare(ds, text, size=SIZE, workers=1, progress=False)
    assert text.read_text() == 'hello'                  # never overwritten
    other = tmp_path / 'other.h5'
    with h5py.File(other, 'w') as h5:
        h5['x'] = [1, 2]
    with pytest.raises(TaggerError, match="not a lasagne_tagger store "
                                          r"\(format attribute: expected"):
        open_store(other)
    out = tmp_path / 's.h5'
    prepare(ds, out, size=SIZE, workers=1, progress=False, limit=2)
    with h5py.File(out, 'r+') as h5:
        h5.attrs['format_version'] = 2
    for call in (lambda: open_store(out),
                 lambda: prepare(ds, out, size=SIZE, workers=1,
                                 progress=False)):
        with pytest.raises(TaggerError) as err:
            call()
        assert str(err.value).startswith(str(out) + ': store format version')
        assert 'version 2, expected 1' in str(err.value)


def test_other_dataset_or_size_is_refused(tmp_path, ds, ds_store_folder,
                                          ds_write_image):
    out = tmp_path / 's.h5'
    prepare(ds, out, size=SIZE, workers=1, progress=False)
    before = open(out, 'rb').read()
    ds_write_image(ds_store_folder[0] / 'train' / 'a' / 'new.jpg', seed=9)
    changed = read_folder_dataset(ds_store_folder[0])
    with pytest.raises(TaggerError) as err:
        prepare(changed, out, size=SIZE, workers=1, progress=False)
    msg = str(err.value)
    assert msg.startswith(str(out) + ': existing store holds another dataset')
    assert 'pick another output path' in msg
    with pytest.raises(TaggerError, match='has 16x16 crops, not 24x24'):
        prepare(ds, out, size=24, workers=1, progress=False)
    with pytest.raises(TaggerError, match='upscale=False, not True'):
        prepare(ds, out, size=SIZE, workers=1, progress=False, upscale=True)
    assert open(out, 'rb').read() == before
    # the same dataset read from a moved copy resumes fine (relative paths)
    import shutil
    moved = tmp_path / 'moved'
    shutil.copytree(ds_store_folder[0], moved)
    os.unlink(moved / 'train' / 'a' / 'new.jpg')
    summary = prepare(read_folder_dataset(moved), out, size=SIZE, workers=1,
                      progress=False)
    assert summary.processed == 0 and summary.done == 8


def test_bad_arguments(tmp_path, ds):
    for kwargs, message in ((dict(workers=0), 'workers'),
                            (dict(size=0), 'size'),
                            (dict(chunk=0), 'chunk'),
                            (dict(limit=-1), 'limit')):
        with pytest.raises(TaggerError, match=message):
            prepare(ds, tmp_path / 'x.h5', progress=False, **kwargs)
    assert not (tmp_path / 'x.h5').exists()


def test_progress_is_shown(tmp_path, ds, capsys):
    prepare(ds, tmp_path / 's.h5', size=SIZE, workers=1, progress=True)
    err = capsys.readouterr().err
    assert 'preparing storeset: 100%' in err and '12/12' in err
