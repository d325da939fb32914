"""The prepared store: every image of a dataset decoded and cropped once.

:func:`prepare` runs :func:`lasagne_tagger.data.preprocess.load_crop` on every
item of a :class:`~lasagne_tagger.data.datasets.Dataset` (in parallel) and keeps
the uint8 crops in one chunked HDF5 file; :func:`open_store` reads it back
in batches without ever loading a whole split (ACS is about 13 GB of
224 x 224 crops).

File format (``format = 'lasagne_tagger.data.store'``, ``format_version = 1``)
---------------------------------------------------------------------------
Datasets, one row per dataset item, in the dataset's item order:

``images``    uint8 ``(N, size, size, 3)`` RGB crops, chunked ``chunk``
              images per chunk (default 1), space allocated when the file is
              created (rows not yet prepared hold garbage: see ``done``)
``labels``    int32 ``(N,)`` class ids
``paths``     variable-length UTF-8 ``(N,)``, relative to the ``root`` attr
              with ``/`` separators
``splits``    uint8 ``(N,)`` split codes; attr ``names`` = JSON list
``done``      uint8 ``(N,)`` 1 once the row's crop is written and flushed
``rejected``  uint8 ``(N,)`` 1 if the image could not be used (see the
              ``<store>.rejects.tsv`` file for why); never retried unless
              ``retry_rejects=True``

File attributes: ``format``, ``format_version`` (int), ``size``,
``upscale`` (0/1), ``chunk``, ``count`` (N), ``classes`` and ``split_names``
(JSON lists), ``root`` (the dataset root when prepared), ``dataset_name``,
``dataset_kind``, ``fingerprint`` (:func:`~lasagne_tagger.data.datasets.
dataset_fingerprint`: identifies the dataset for resuming), ``created``
(ISO time) and ``lasagne_tagger_version``.

Only rows with ``done == 1`` and ``rejected == 0`` are ever served.

# note: the store keeps uint8 RGB crops, not the float32 BGR mean-subtracted
# network input the 2016 pipeline fed GoogLeNet: 4x smaller on disk, and
# :func:`~lasagne_tagger.data.preprocess.to_network_input` is cheap per batch.

Crash safety
------------
The store is created complete (all metadata, all chunk space) under a
temporary name and moved into place, so later writes only overwrite image
bytes in place.  Crops are written first; the file is flushed; only then
are their ``done`` marks written (and flushed again).  A killed run
therefore loses at most the crops since the last flush, and rerunning
:func:`prepare` with the same dataset and path redoes only those.
"""
import datetime
import json
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from ..atomic import install, write_text
from ..errors import TaggerError

__all__ = ['FORMAT', 'FORMAT_VERSION', 'PrepareSummary', 'prepare',
           'rejects_path', 'read_rejects', 'open_store', 'Store',
           'remove_store']

FORMAT = 'lasagne_tagger.data.store'
FORMAT_VERSION = 1
_ROW_DATASETS = ('labels', 'paths', 'splits', 'done', 'rejected')
# note: Store.batches reads a split of at most this many pixel bytes once
# and serves its batches from memory: 32 scattered rows read one call each
# cost 3.7 ms a batch (the demo's 32 px store), as long as the demo CNN's
# whole training step; from memory 0.05 ms.  Larger splits (224 px photos:
# 150 KB a row) stream from the file as before.
MEMORY_BYTES = 512 << 20


@dataclass
class PrepareSummary(object):
    """What :func:`prepare` did.

    Attributes
    ----------
    path, rejects_path : str
        The store and its rejects file (which may not exist: no rejects).
    total : int
        Items in the dataset (rows in the store).
    done, rejected, remaining : int
        Rows usable / rejected / still to prepare, after this run.
    processed : int
        Items this run decoded (written + rejected now).
    written, rejected_now : int
        Of those, crops written / images rejected.
    already_done : int
        Rows that were done before this run started (resume).
    seconds, images_per_second : float
        Wall time of this run and ``processed / seconds``.
    """

    path: str
    rejects_path: str
    total: int
    done: int
    rejected: int
    remaining: int
    processed: int
    written: int
    rejected_now: int
    already_done: int
    seconds: float
    images_per_second: float

    def __str__(self):
        text = ('%s: %d/%d images ready, %d rejected, %d remaining; this run '
                '%d processed (%d new rejects) in %.1f s, %.1f images/s'
                % (self.path, self.done, self.total, self.rejected,
                   self.remaining, self.processed, self.rejected_now,
                   self.seconds, self.images_per_second))
        if self.rejected:
            text += '; rejects listed in %s' % self.rejects_path
        return text


def rejects_path(store_path):
    """The rejects file of a store: ``<store>.rejects.tsv``."""
    return os.fspath(store_path) + '.rejects.tsv'


def _escape(text):
    from .datasets import storable_name
    return (storable_name(text).replace('\t', '\\t').replace('\n', '\\n')
            .replace('\r', '\\r'))


def read_rejects(store_path):
    """``[(path, reason), ...]`` from the store's rejects file, in file
    order (empty if there is none).  Tabs and newlines inside paths and
    reasons are written escaped as ``\\t``, ``\\n``."""
    return _read_rejects_file(rejects_path(store_path))


def _read_rejects_file(path):
    if not os.path.exists(path):
        return []
    out = []
    try:
        with open(path, 'r', encoding='utf-8', errors='replace') as fh:
            for line in fh:
                line = line.rstrip('\n')
                if line:
                    name, _, reason = line.partition('\t')
                    out.append((name, reason))
    except OSError as exc:
        raise TaggerError('cannot read (%s)' % (exc.strerror or exc),
                          path) from None
    return out


# -- workers ----------------------------------------------------------------

def _crop_one(path, size, upscale):
    """``(crop, None)`` or ``(None, reason)`` for one image file."""
    from .datasets import is_storable
    from .preprocess import load_crop

    if not is_storable(path):
        return None, ('file name is not valid UTF-8 (a store holds UTF-8 '
                      'names); rename the file')
    try:
        return load_crop(path, size=size, upscale=upscale), None
    except TaggerError as exc:
        text = str(exc)
        prefix = '%s: ' % (exc.path,) if exc.path is not None else ''
        if prefix and text.startswith(prefix):
            text = text[len(prefix):]
        return None, text
    except MemoryError:
        raise
    except Exception as exc:     # a decoder bug on one odd file: skip it
        return None, 'unexpected %s while decoding: %s' % (
            type(exc).__name__, str(exc).splitlines()[0] if str(exc) else '')


def _crop_task(task):
    """Worker entry point: ``(size, upscale, [(row, path), ...])`` ->
    ``[(row, crop or None, reason or None), ...]``."""
    size, upscale, rows = task
    out = []
    for row, path in rows:
        stamp = _stamp(path)
        crop, reason = _crop_one(path, size, upscale)
        out.append((row, crop, reason, stamp))
    return out


def _stamp(path):
    """``(size, mtime_ns)`` of a source file, or ``(-1, -1)``."""
    try:
        st = os.stat(path)
    except OSError:
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)


def _worker_init():
    """Workers ignore Ctrl-C (the main process stops them cleanly) and,
    on Linux, end with it if it is killed (no orphans writing broken-pipe
    tracebacks)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith('linux'):
        import ctypes
        try:
            ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        if os.getppid() == 1:           # the parent is already gone
            os._exit(1)


def _bounded_map(pool, tasks, inflight):
    """``pool.imap(_crop_task, tasks)`` in order, but with at most
    ``inflight`` tasks queued or done-and-unread, so memory stays bounded
    when writing is slower than decoding."""
    import collections

    pending = collections.deque()
    for task in tasks:
        pending.append(pool.apply_async(_crop_task, (task,)))
        if len(pending) >= inflight:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


# -- creating / checking ------------------------------------------------------

def _attr_str(value):
    if isinstance(value, bytes):
        return value.decode('utf-8', 'replace')
    if isinstance(value, np.ndarray) and value.shape == ():
        return _attr_str(value[()])
    return value


def _validate_file(h5, path):
    """Check format/version/datasets of an open store; return attrs."""
    attrs = {k: _attr_str(v) for k, v in h5.attrs.items()}
    found = attrs.get('format')
    if found != FORMAT:
        raise TaggerError('HDF5 file is not a lasagne_tagger store (format '
                          'attribute: expected %r, found %r)'
                          % (FORMAT, found), path)
    version = attrs.get('format_version')
    try:
        version = int(version)
    except (TypeError, ValueError):
        pass
    if version != FORMAT_VERSION:
        raise TaggerError('store format version %r, expected %d (it was '
                          'written by another lasagne_tagger version: '
                          'prepare the dataset again into a new file)'
                          % (version, FORMAT_VERSION), path)
    try:
        count = int(attrs['count'])
        size = int(attrs['size'])
        attrs['classes'] = json.loads(attrs['classes'])
        attrs['split_names'] = json.loads(attrs['split_names'])
    except (KeyError, TypeError, ValueError) as exc:
        raise TaggerError('store is damaged: bad or missing attribute (%s)'
                          % exc, path) from None
    expected = {'images': (count, size, size, 3)}
    expected.update((name, (count,)) for name in _ROW_DATASETS)
    for name, shape in expected.items():
        if name not in h5:
            raise TaggerError('store is damaged: dataset %r missing' % name,
                              path)
        if tuple(h5[name].shape) != shape:
            raise TaggerError('store is damaged: dataset %r has shape %s, '
                              'expected %s' % (name, tuple(h5[name].shape),
                                               shape), path)
    attrs['count'], attrs['size'] = count, size
    return attrs


def _open_h5(path, mode, **kwargs):
    import h5py

    if not os.path.exists(path):
        raise TaggerError('store not found (create it with prepare)', path)
    if os.path.isdir(path):
        raise TaggerError('is a folder, not a store file', path)
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError:
        is_hdf5 = False
    if not is_hdf5:
        raise TaggerError('not an HDF5 file (expected a lasagne_tagger '
                          'store made by prepare)', path)
    try:
        return h5py.File(path, mode, **kwargs)
    except OSError as exc:
        text = str(exc)
        if 'unable to lock file' in text.lower():
            raise TaggerError('store is in use by another process (is '
                              'prepare still writing it?)', path) from None
        if 'truncated file' in text.lower():
            raise TaggerError('the file is truncated (%s); prepare it again '
                              'into a new store' % text.splitlines()[0],
                              path) from None
        raise TaggerError('cannot open store, damaged? (%s)'
                          % text.splitlines()[0], path) from None


def _remove_stale_creating(directory, base):
    """Remove ``.<base>.<pid>.*.creating`` files of processes that are
    gone (a prepare killed while it created the store)."""
    import re
    pattern = re.compile(r'^\.%s\.(\d+)\..*\.creating$' % re.escape(base))
    for name in os.listdir(directory):
        m = pattern.match(name)
        if not m:
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue                         # still running
        except ProcessLookupError:
            pass
        except OSError:
            continue                         # alive, another user's
        try:
            os.remove(os.path.join(directory, name))
        except OSError:
            pass


def _create(path, dataset, fingerprint, size, upscale, chunk,
            checksums=True):
    """Write a new, complete-but-empty store to ``path`` atomically."""
    import tempfile

    import h5py
    from h5py import h5d, h5p, h5s, h5t

    from .. import __version__
    from .datasets import storable_name

    n = len(dataset.items)
    split_names = []
    for item in dataset.items:
        if item.split not in split_names:
            split_names.append(item.split)
    if len(split_names) > 255:
        raise TaggerError('dataset has %d splits; the store holds at most '
                          '255' % len(split_names), dataset.root)
    directory = os.path.dirname(path) or '.'
    try:
        os.makedirs(directory, exist_ok=True)
        _remove_stale_creating(directory, os.path.basename(path))
        fd, tmp = tempfile.mkstemp(prefix='.%s.%d.' % (
            os.path.basename(path), os.getpid()), suffix='.creating',
            dir=directory)
        os.close(fd)
    except OSError as exc:
        raise TaggerError('cannot create the store (%s)'
                          % (exc.strerror or exc), path) from None
    try:
        with h5py.File(tmp, 'w') as h5:
            h5.attrs['format'] = FORMAT
            h5.attrs['format_version'] = np.int64(FORMAT_VERSION)
            h5.attrs['size'] = np.int64(size)
            h5.attrs['upscale'] = np.int64(bool(upscale))
            h5.attrs['chunk'] = np.int64(chunk)
            h5.attrs['count'] = np.int64(n)
            h5.attrs['classes'] = json.dumps(list(dataset.classes))
            h5.attrs['split_names'] = json.dumps(split_names)
            h5.attrs['root'] = dataset.root
            h5.attrs['dataset_name'] = str(dataset.name)
            h5.attrs['dataset_kind'] = str(getattr(dataset, 'kind', ''))
            h5.attrs['fingerprint'] = fingerprint
            h5.attrs['created'] = datetime.datetime.now(
                datetime.timezone.utc).isoformat(timespec='seconds')
            h5.attrs['lasagne_tagger_version'] = __version__
            # Chunk space allocated now, never filled: later writes change
            # no HDF5 metadata, so a killed run cannot corrupt the index.
            dcpl = h5p.create(h5p.DATASET_CREATE)
            dcpl.set_chunk((min(chunk, n), size, size, 3))
            # every chunk carries HDF5's Fletcher-32 checksum, checked on
            # each read (measured cost: benchmarks/results/checksums.json)
            if checksums:
                dcpl.set_fletcher32()
            dcpl.set_alloc_time(h5d.ALLOC_TIME_EARLY)
            dcpl.set_fill_time(h5d.FILL_TIME_NEVER)
            space = h5s.create_simple((n, size, size, 3))
            h5d.create(h5.id, b'images', h5t.STD_U8LE, space, dcpl=dcpl)
            h5.create_dataset('labels', data=np.array(
                [item.label for item in dataset.items], dtype=np.int32))
            h5.create_dataset('paths', data=[storable_name(
                dataset.relpath(item)) for item in dataset.items],
                dtype=h5py.string_dtype('utf-8'))
            codes = h5.create_dataset('splits', data=np.array(
                [split_names.index(item.split) for item in dataset.items],
                dtype=np.uint8))
            codes.attrs['names'] = json.dumps(split_names)
            h5.create_dataset('done', data=np.zeros(n, np.uint8))
            h5.create_dataset('rejected', data=np.zeros(n, np.uint8))
            # each source file's size and mtime when it was prepared: a
            # rerun notices a file replaced under the same name
            h5.create_dataset('file_size', data=np.full(n, -1, np.int64))
            h5.create_dataset('file_mtime_ns',
                              data=np.full(n, -1, np.int64))
        install(tmp, path, replace=False)   # never over another's store
    except OSError as exc:
        raise TaggerError('cannot create the store (%s)' % str(exc)
                          .splitlines()[0], path) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _check_unchanged(dataset, done, sizes, mtimes, path):
    """Raise if a prepared row's source file was replaced since (another
    size or mtime); a file since deleted is fine: its crop is stored."""
    for row in np.flatnonzero(done & (sizes >= 0)):
        item = dataset.items[row]
        now = _stamp(item.path)
        if now != (-1, -1) and now != (sizes[row], mtimes[row]):
            from .datasets import storable_name
            raise TaggerError('%s changed since it was prepared (size or '
                              'modification time differ); prepare into a '
                              'new store, or pass --overwrite to prepare '
                              'it again' % storable_name(item.path), path)


def remove_store(path):
    """Remove a store and its rejects file (``prepare --overwrite``)."""
    for name in (os.fspath(path), rejects_path(path)):
        try:
            os.remove(name)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise TaggerError('cannot remove (%s)' % (exc.strerror or exc),
                              name) from None


def _check_matches(attrs, path, dataset, fingerprint, size, upscale):
    """Raise unless the existing store was made for the same inputs."""
    pick = ('; pick another output path (or delete this file to start '
            'over): it is never overwritten')
    if attrs['size'] != size:
        raise TaggerError('existing store has %dx%d crops, not %dx%d%s'
                          % (attrs['size'], attrs['size'], size, size, pick),
                          path)
    if bool(int(attrs.get('upscale', 0))) != bool(upscale):
        raise TaggerError('existing store was prepared with upscale=%s, not '
                          '%s%s' % (bool(int(attrs.get('upscale', 0))),
                                    bool(upscale), pick), path)
    if attrs.get('fingerprint') != fingerprint:
        raise TaggerError('existing store holds another dataset (%r, %d '
                          'items, from %s) than the one being prepared (%r, '
                          '%d items, from %s)%s'
                          % (attrs.get('dataset_name'), attrs['count'],
                             attrs.get('root'), dataset.name,
                             len(dataset.items), dataset.root, pick), path)


# -- prepare ------------------------------------------------------------------

def prepare(dataset, out_path, size=224, workers=None, upscale=False,
            progress=True, chunk=1, task_size=8, flush_interval=5.0,
            limit=None, retry_rejects=False, checksums=True):
    """Decode, convert and crop every image of ``dataset`` once, into one
    HDF5 store (see the module docstring for the format).

    Parameters
    ----------
    dataset : lasagne_tagger.data.datasets.Dataset
        What to prepare; rows follow ``dataset.items``.
    out_path : str or path-like
        The store file.  If it exists and holds this same dataset (same
        fingerprint, size and upscale) preparation resumes: only rows not
        yet done (nor rejected) are processed.  A store of anything else is
        an error; it is never overwritten.
    size : int
        Crop side (224 for GoogLeNet).
    workers : int, optional
        Processes decoding images (default ``os.cpu_count()``); 1 decodes
        in this process.  Only this process writes the file.
    upscale : bool
        Enlarge images smaller than ``size`` instead of rejecting them.
    progress : bool
        Show a progress bar on stderr.
    chunk : int
        Images per HDF5 chunk (1: each read touches only what it needs).
    task_size : int
        Images per work unit sent to a worker.
    flush_interval : float
        Seconds between flushes that make written crops count as done;
        at most this much work is redone after a kill.
    limit : int, optional
        Process at most this many pending rows, then return (the rest is
        left for a later call).
    retry_rejects : bool
        Clear earlier rejections and try those images again.
    checksums : bool
        A new store's chunks carry HDF5's Fletcher-32 checksum, checked on
        every read (the default; ``False`` only for measuring its cost).

    Returns
    -------
    PrepareSummary

    Raises
    ------
    TaggerError
        Bad arguments, an existing store for something else, an unreadable
        store, or an ``OSError`` while writing (e.g. disk full): the message
        names the file; rows done before the error stay valid and a rerun
        resumes.

    Notes
    -----
    Images :func:`~lasagne_tagger.data.preprocess.load_crop` cannot use
    (corrupt, truncated, empty, not an image, smaller than ``size``
    without ``upscale``) are marked rejected and appended, once, to
    ``<out_path>.rejects.tsv`` as ``path<TAB>reason`` lines.
    """
    from .datasets import dataset_fingerprint
    from ..runtime.progress import progress_bar

    workers = _check_prepare_args(dataset, size, chunk, task_size, workers,
                                  limit, flush_interval)
    out_path = os.path.abspath(os.fspath(out_path))
    reject_file = rejects_path(out_path)
    started = time.monotonic()
    fingerprint = dataset_fingerprint(dataset)
    if not os.path.exists(out_path):
        _create(out_path, dataset, fingerprint, size, upscale, chunk,
                checksums)
    done, rejected = _read_marks(out_path, dataset, fingerprint, size,
                                 upscale)
    if retry_rejects:
        rejected[:] = False
    already_done = int(done.sum())
    todo = np.flatnonzero(~done & ~rejected)
    if limit is not None:
        todo = todo[:limit]
    items = dataset.items
    tasks = [(int(size), bool(upscale),
              [(int(row), items[row].path) for row in todo[i:i + task_size]])
             for i in range(0, len(todo), task_size)]
    known_rejects = set(p for p, _ in read_rejects(out_path))
    written = rejected_now = 0
    if tasks:
        written, rejected_now = _run(
            tasks, items, workers, out_path, reject_file, done, rejected,
            known_rejects, retry_rejects, flush_interval, chunk, size,
            progress_bar(len(todo), 'preparing %s' % dataset.name,
                     enabled=progress))
    elif retry_rejects:
        with _open_h5(out_path, 'r+') as h5:
            h5['rejected'][...] = rejected.astype(np.uint8)
    if retry_rejects:
        _prune_rejects(reject_file, set(items[row].path
                                        for row in np.flatnonzero(rejected)))
    seconds = time.monotonic() - started
    processed = written + rejected_now
    return PrepareSummary(
        path=out_path, rejects_path=reject_file, total=len(items),
        done=int(done.sum()), rejected=int(rejected.sum()),
        remaining=int((~done & ~rejected).sum()), processed=processed,
        written=written, rejected_now=rejected_now,
        already_done=already_done, seconds=seconds,
        images_per_second=processed / seconds if seconds > 0 else 0.0)


def _check_prepare_args(dataset, size, chunk, task_size, workers, limit,
                        flush_interval):
    """Check :func:`prepare`'s arguments (``TaggerError`` naming the bad
    one); returns ``workers``, ``os.cpu_count()`` when None."""
    for name, value, low in (('size', size, 1), ('chunk', chunk, 1),
                             ('task_size', task_size, 1)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise TaggerError('%s must be an integer >= %d, not %r'
                              % (name, low, value))
    if workers is None:
        workers = os.cpu_count() or 1
    if not isinstance(workers, (int, np.integer)) or workers < 1:
        raise TaggerError('workers must be an integer >= 1, not %r'
                          % (workers,))
    if limit is not None and (not isinstance(limit, (int, np.integer))
                              or limit < 0):
        raise TaggerError('limit must be an integer >= 0, not %r' % (limit,))
    if not isinstance(flush_interval, (int, float)) or flush_interval < 0:
        raise TaggerError('flush_interval must be a number >= 0, not %r'
                          % (flush_interval,))
    if not getattr(dataset, 'items', None):
        raise TaggerError('dataset has no images', getattr(dataset, 'root',
                                                           None))
    return workers


def _read_marks(out_path, dataset, fingerprint, size, upscale):
    """(done, rejected) bool arrays of the store at ``out_path``, after
    checking that it is a valid store of ``dataset`` at these settings
    and that no done image's file changed since."""
    with _open_h5(out_path, 'r') as h5:
        attrs = _validate_file(h5, out_path)
        _check_matches(attrs, out_path, dataset, fingerprint, size, upscale)
        done = h5['done'][:].astype(bool)
        rejected = h5['rejected'][:].astype(bool)
        if 'file_size' in h5:
            _check_unchanged(dataset, done, h5['file_size'][:],
                             h5['file_mtime_ns'][:], out_path)
    return done, rejected


def _run(tasks, items, workers, out_path, reject_file, done, rejected,
         known_rejects, retry_rejects, flush_interval, chunk, size, bar):
    """Feed ``tasks`` to workers; write crops, rejects and marks.

    ``done`` and ``rejected`` (bool arrays) are updated in place to what
    is on disk when this returns or raises.  Returns (crops written,
    images rejected).
    """
    pool, results = _start_workers(tasks, workers)
    writer, ok = None, False
    try:
        chunk_bytes = chunk * size * size * 3
        writer = _StoreWriter(
            _open_h5(out_path, 'r+', rdcc_nbytes=max(4 << 20,
                                                     4 * chunk_bytes)),
            out_path, items, reject_file, done, rejected, known_rejects,
            marks_dirty=retry_rejects)
        with bar:
            for result in results:
                for row, crop, reason, stamp in result:
                    writer.add(row, crop, reason, stamp)
                    bar.update()
                writer.commit_every(flush_interval)
        ok = True
    finally:
        if pool is not None:
            if ok:
                pool.close()
            else:
                pool.terminate()
            pool.join()
        if writer is not None:
            writer.close(ok)
    return writer.written, writer.rejected_now


def _start_workers(tasks, workers):
    """(a process pool or None, an iterator over the tasks' results): a
    pool of up to ``workers`` processes when there is more than one worker
    and more than one task; otherwise the tasks run here, lazily."""
    if workers > 1 and len(tasks) > 1:
        import multiprocessing

        workers = min(workers, len(tasks))
        pool = multiprocessing.Pool(workers, initializer=_worker_init)
        return pool, _bounded_map(pool, tasks, 4 * workers)
    return None, (_crop_task(task) for task in tasks)


class _StoreWriter(object):
    """Writes crops and rejections into the open store ``h5``; a crop
    counts as done (its mark written) only after a flush (:meth:`commit`).

    ``done`` and ``rejected`` (bool arrays) are updated in place;
    ``known_rejects`` (paths already in the rejects file) too.
    """

    def __init__(self, h5, out_path, items, reject_file, done, rejected,
                 known_rejects, marks_dirty=False):
        self.h5, self.out_path, self.items = h5, out_path, items
        self.images = h5['images']
        self.reject_file, self.rejects_fh = reject_file, None
        self.done, self.rejected = done, rejected
        self.known_rejects = known_rejects
        self.pending = []          # written, not yet flushed and marked
        self.stamps = {}           # row -> (size, mtime_ns) of its file
        self.marks_dirty = marks_dirty
        self.written = self.rejected_now = 0
        self.last = time.monotonic()

    def add(self, row, crop, reason, stamp):
        """Write the crop of ``row``, or record its rejection (``crop`` is
        None) with ``reason``."""
        if crop is None:
            self._reject(row, reason)
            return
        try:
            self.images[row] = crop
        except OSError as exc:
            raise _write_error(exc, self.out_path, row) from None
        self.pending.append(row)
        self.stamps[row] = stamp
        self.written += 1

    def _reject(self, row, reason):
        path = _escape(self.items[row].path)
        if path not in self.known_rejects:
            if self.rejects_fh is None:
                self.rejects_fh = _open_rejects(self.reject_file)
            try:
                self.rejects_fh.write('%s\t%s\n' % (path, _escape(reason)))
                self.rejects_fh.flush()
            except OSError as exc:
                raise TaggerError('cannot write the rejects file (%s)'
                                  % (exc.strerror or exc),
                                  self.reject_file) from None
            self.known_rejects.add(path)
        self.rejected[row] = True
        self.marks_dirty = True
        self.rejected_now += 1

    def commit_every(self, interval):
        """:meth:`commit` if ``interval`` seconds have passed since the
        last one."""
        if time.monotonic() - self.last >= interval:
            try:
                self.commit()
            except OSError as exc:
                raise _write_error(exc, self.out_path) from None

    def commit(self):
        """Flush crops, then record their done marks (and rejections)."""
        if not self.pending and not self.marks_dirty:
            return
        h5 = self.h5
        h5.flush()
        if self.stamps and 'file_size' in h5:
            rows = sorted(self.stamps)
            h5['file_size'][rows] = [self.stamps[r][0] for r in rows]
            h5['file_mtime_ns'][rows] = [self.stamps[r][1] for r in rows]
            self.stamps.clear()
        self.done[self.pending] = True
        del self.pending[:]
        h5['done'][...] = self.done.astype(np.uint8)
        h5['rejected'][...] = self.rejected.astype(np.uint8)
        h5.flush()
        self.marks_dirty = False
        self.last = time.monotonic()

    def close(self, ok):
        """Close the rejects file, keep what was written (even on ^C: a
        last commit), close the store.  After a failure (``ok`` false) the
        errors of the commit and close are swallowed, the first one
        propagating."""
        if self.rejects_fh is not None:
            self.rejects_fh.close()
        try:
            self.commit()
        except OSError as exc:
            if ok:
                raise _write_error(exc, self.out_path) from None
        finally:
            try:
                self.h5.close()
            except OSError:
                if ok:
                    raise


def _prune_rejects(path, keep):
    """Drop lines of the rejects file whose path is not in ``keep``
    (images that a retry prepared after all), atomically."""
    lines = _read_rejects_file(path)
    keep = set(_escape(k) for k in keep)
    kept = [(p, r) for p, r in lines if p in keep]
    if len(kept) == len(lines):
        return
    write_text(path, ''.join('%s\t%s\n' % line for line in kept))


def _open_rejects(path):
    try:
        return open(path, 'a', encoding='utf-8')
    except OSError as exc:
        raise TaggerError('cannot write the rejects file (%s)'
                          % (exc.strerror or exc), path) from None


def _write_error(exc, path, row=None):
    where = '' if row is None else ' (row %d)' % row
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return TaggerError('write failed%s: %s; the images done so far are kept: '
                       'free some space and rerun prepare to resume'
                       % (where, first), path)


# -- reading ------------------------------------------------------------------

def open_store(path):
    """Open a prepared store for reading (see :class:`Store`)."""
    return Store(path)


class Store(object):
    """Read access to a prepared store; a context manager.

    Attributes
    ----------
    path : str
    classes : list of str
        Class names in class-id order.
    size : int
        Crop side.
    splits : list of str
        Split names in dataset order.
    root : str
        The dataset root when it was prepared.
    labels : numpy.ndarray
        int32 class id of every row.
    remaining : int
        Rows not yet prepared (0 for a finished store).

    Notes
    -----
    ``len(store)`` is the number of rows (dataset items), prepared or not;
    :meth:`count` and :meth:`indices` count and list the servable ones.
    The done/rejected marks are read when the store is opened.  An open
    store must not be shared between processes (HDF5 handles do not
    survive ``fork``): open one in each process.
    """

    def __init__(self, path):
        self.path = os.path.abspath(os.fspath(path))
        self._h5 = _open_h5(self.path, 'r')
        try:
            attrs = _validate_file(self._h5, self.path)
            h5 = self._h5
            self.attrs = attrs
            self.classes = list(attrs['classes'])
            self.size = attrs['size']
            self.splits = list(attrs['split_names'])
            self.root = attrs.get('root')
            self.name = attrs.get('dataset_name')
            self.fingerprint = attrs.get('fingerprint')
            self.labels = h5['labels'][:].astype(np.int32)
            self._codes = h5['splits'][:]
            done = h5['done'][:].astype(bool)
            rejected = h5['rejected'][:].astype(bool)
            self._ready = done & ~rejected
            self.rejected_count = int(rejected.sum())
            self.remaining = int((~done & ~rejected).sum())
            self._images = h5['images']
            self._memory = {}
        except BaseException:
            self._h5.close()
            raise

    # -- bookkeeping --------------------------------------------------------
    def __len__(self):
        return len(self.labels)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False

    def __repr__(self):
        return '<Store %s: %d rows, %d ready, size %d>' % (
            self.path, len(self), int(self._ready.sum()), self.size)

    def close(self):
        """Close the file (batch generators stop working)."""
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    @property
    def complete(self):
        """True when no row is left to prepare."""
        return self.remaining == 0

    def _split_code(self, split):
        if split not in self.splits:
            raise TaggerError('store has no split %r (splits: %s)'
                              % (split, ', '.join(self.splits)), self.path)
        return self.splits.index(split)

    def indices(self, split=None):
        """Sorted int64 rows of ``split`` (all splits if None) that are
        prepared and not rejected."""
        mask = self._ready
        if split is not None:
            mask = mask & (self._codes == self._split_code(split))
        return np.flatnonzero(mask).astype(np.int64)

    def count(self, split=None):
        """Number of servable rows in ``split`` (all splits if None)."""
        return len(self.indices(split))

    def paths(self, indices):
        """Image paths (``root`` joined with the stored relative paths)."""
        rel = self._h5['paths'].asstr()
        return [os.path.join(self.root or '', *rel[int(i)].split('/'))
                for i in np.asarray(indices, dtype=np.int64).ravel()]

    # -- data -----------------------------------------------------------------
    def read(self, indices):
        """Crops and labels of the given rows, in the given order.

        Parameters
        ----------
        indices : sequence of int
            Servable rows (from :meth:`indices`); any order, repeats allowed.

        Returns
        -------
        crops : numpy.ndarray
            uint8 ``(len(indices), size, size, 3)``.
        labels : numpy.ndarray
            int32 ``(len(indices),)``.
        """
        if self._h5 is None:
            raise TaggerError('store is closed', self.path)
        idx = np.asarray(indices)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in 'iu'):
            raise TaggerError('indices must be a 1-D sequence of integers, '
                              'got shape %s dtype %s' % (idx.shape, idx.dtype),
                              self.path)
        idx = idx.astype(np.int64)
        s = self.size
        if idx.size == 0:
            return (np.empty((0, s, s, 3), np.uint8),
                    np.empty((0,), np.int32))
        bad = idx[(idx < 0) | (idx >= len(self))]
        if bad.size:
            raise TaggerError('row %d out of range (store has %d rows)'
                              % (bad[0], len(self)), self.path)
        unready = idx[~self._ready[idx]]
        if unready.size:
            raise TaggerError('row %d is not prepared or was rejected'
                              % unready[0], self.path)
        uniq, inverse = np.unique(idx, return_inverse=True)
        buf = np.empty((len(uniq), s, s, 3), np.uint8)
        # read runs of consecutive rows with one call each
        breaks = np.flatnonzero(np.diff(uniq) != 1) + 1
        starts = np.concatenate([[0], breaks])
        ends = np.concatenate([breaks, [len(uniq)]])
        for a, b in zip(starts, ends):
            try:
                self._images.read_direct(
                    buf, source_sel=np.s_[uniq[a]:uniq[b - 1] + 1],
                    dest_sel=np.s_[a:b])
            except OSError as exc:
                raise TaggerError(
                    'damaged store: rows %d-%d do not read back (%s)'
                    % (uniq[a], uniq[b - 1], str(exc).splitlines()[0]),
                    self.path) from None
        crops = buf if np.array_equal(uniq, idx) else buf[inverse]
        return crops, self.labels[idx]

    def batches(self, split, batch_size, shuffle=False, seed=None, epoch=0):
        """Stream a split in batches, reading one batch at a time.

        Parameters
        ----------
        split : str or None
            Split name; None for every servable row.
        batch_size : int
        shuffle : bool
            Visit rows in a random order; with the same ``seed`` and
            ``epoch`` it is the same order (``seed=None``: unpredictable).
        seed : int, optional
            Non-negative shuffle seed.
        epoch : int
            Mixed into the seed, so each epoch gets its own order.

        Yields
        ------
        crops : numpy.ndarray
            uint8 ``(B, size, size, 3)``, ``B = batch_size`` except maybe
            for the last batch.
        labels : numpy.ndarray
            int32 ``(B,)``.
        indices : numpy.ndarray
            int64 ``(B,)`` store rows.
        """
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise TaggerError('batch_size must be an integer >= 1, not %r'
                              % (batch_size,))
        order = self.indices(split)
        if shuffle:
            order = np.random.default_rng(_seed_sequence(seed, epoch)) \
                .permutation(order)
        read = self._in_memory(split) or self.read
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            crops, labels = read(rows)
            yield crops, labels, rows

    def _in_memory(self, split):
        """A ``read`` over the split held in memory (read once, in order),
        or None for a split over :data:`MEMORY_BYTES`."""
        cached = self._memory.get(split)
        if cached is None:
            rows = self.indices(split)
            if len(rows) * self.size * self.size * 3 > MEMORY_BYTES:
                return None
            crops, labels = self.read(rows)
            where = np.full(len(self), -1, np.int64)
            where[rows] = np.arange(len(rows))
            cached = self._memory[split] = (crops, labels, where)
        crops, labels, where = cached

        def read(indices):
            at = where[np.asarray(indices, np.int64)]
            return crops[at], labels[at]
        return read


def _seed_sequence(seed, epoch):
    if seed is None:
        return np.random.SeedSequence()
    for name, value in (('seed', seed), ('epoch', epoch)):
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise TaggerError('%s must be an integer >= 0, not %r'
                              % (name, value))
    return np.random.SeedSequence([int(seed), int(epoch)])
