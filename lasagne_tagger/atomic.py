"""One way to write a file: whole or not at all.

:func:`atomic_path` hands out a temporary name in the target's folder; the
caller writes it by any means (a file handle, h5py, PIL, NumPy); on leaving
the block the file is flushed to disk (``fsync``), optionally checked
(``verify``: an HDF5 file re-opened, a pickle re-read), and renamed over the
target, so a reader sees the old file or the new one, never half of one.
On any error the temporary file is removed and the error becomes one
:class:`~lasagne_tagger.errors.TaggerError` line naming the target and the
cause (``disk full`` for ``ENOSPC``).  The folder is synced after the
rename, so the new name survives a power cut too.
"""
import contextlib
import errno
import hashlib
import json
import os
import tempfile

from .errors import TaggerError

__all__ = ['atomic_path', 'install', 'write_bytes', 'write_text',
           'write_json', 'describe_os_error', 'fsync_path', 'make_parent',
           'file_digest']


def describe_os_error(exc):
    """A short cause for an OSError: ``disk full``, ``permission denied``,
    else its strerror."""
    code = getattr(exc, 'errno', None)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return 'disk full'
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return 'permission denied' if code != errno.EROFS else \
            'read-only file system'
    return getattr(exc, 'strerror', None) or str(exc) or type(exc).__name__


def make_parent(path):
    """Create the folder of ``path`` (and above); returns it, or raises
    one TaggerError line naming it."""
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise TaggerError('cannot create the folder (%s)'
                          % describe_os_error(exc), folder) from None
    return folder


def file_digest(path, algorithm='sha256', chunk=1 << 20):
    """Hex digest of a file's bytes (``hashlib`` algorithm name)."""
    digest = hashlib.new(algorithm)
    with open(path, 'rb') as fh:
        for block in iter(lambda: fh.read(chunk), b''):
            digest.update(block)
    return digest.hexdigest()


def fsync_path(path, directory=False):
    """``fsync`` a file (or a folder, for the names in it)."""
    flags = os.O_RDONLY | (getattr(os, 'O_DIRECTORY', 0) if directory else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path, verify=None, what='write'):
    """Write ``path`` through a temporary name; rename it into place only
    when the block succeeds (and ``verify(tmp)`` returns).

    Parameters
    ----------
    path : str or os.PathLike
        The target; its folder must exist (it is not created).
    verify : callable, optional
        Called with the temporary path after it is synced: raise to refuse
        the file (the error's text becomes the cause).
    what : str
        Named in the error (``cannot write``...).

    Yields
    ------
    str
        The temporary path (``.<name>.<random>.tmp`` beside the target).

    Raises
    ------
    TaggerError
        ``<path>: cannot write (<cause>)``, after removing the temporary
        file; the target is left as it was.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path),
                                   suffix='.tmp', dir=folder)
        os.close(fd)
    except OSError as exc:
        raise TaggerError('cannot %s (%s)' % (what, describe_os_error(exc)),
                          path) from None
    try:
        yield tmp
        fsync_path(tmp)
        if verify is not None:
            verify(tmp)
        _rename(tmp, path, replace=True)
    except BaseException as exc:
        try:
            os.remove(tmp)
        except OSError:
            pass
        if isinstance(exc, TaggerError):
            raise
        if isinstance(exc, OSError):
            raise TaggerError('cannot %s (%s)' % (what, describe_os_error(
                exc)), path) from None
        if isinstance(exc, (KeyboardInterrupt, SystemExit, MemoryError)):
            raise
        raise TaggerError('cannot %s (%s: %s)' % (
            what, type(exc).__name__, str(exc).splitlines()[0]
            if str(exc) else ''), path) from None
    _sync_folder(folder)


def _sync_folder(folder):
    try:
        fsync_path(folder, directory=True)
    except OSError:
        pass            # the rename is done; some file systems refuse this


def _rename(tmp, path, replace):
    if replace:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)              # fails if path exists
    except FileExistsError:
        raise TaggerError('file exists (created meanwhile?); pick another '
                          'output path', path) from None
    except OSError:                     # no hard links here: plain rename
        if os.path.exists(path):
            raise TaggerError('file exists; pick another output path',
                              path) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def install(tmp, path, replace=True):
    """Move a finished file (a download's ``.part``, a resumable partial
    file) into place: ``fsync`` it, rename it over ``path`` and sync the
    folder, as :func:`atomic_path` does for a block.

    Parameters
    ----------
    tmp : str
        The finished file, in the target's folder.
    path : str
        The target.
    replace : bool
        False: never overwrite an existing ``path`` (a hard link, so a file
        that appears meanwhile is not lost); a TaggerError instead.

    Raises
    ------
    TaggerError
        ``<path>: cannot write (<cause>)``; ``tmp`` is left as it was, so
        a resumable partial file can be resumed.
    """
    try:
        fsync_path(tmp)
        _rename(tmp, path, replace)
    except OSError as exc:
        raise TaggerError('cannot write (%s)' % describe_os_error(exc),
                          path) from None
    _sync_folder(os.path.dirname(os.path.abspath(path)))


def write_bytes(path, data, verify=None):
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path, verify=verify) as tmp:
        with open(tmp, 'wb') as fh:
            fh.write(data)


def write_text(path, text, verify=None):
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes(path, text.encode('utf-8'), verify=verify)


def write_json(path, obj, indent=2):
    """Write ``obj`` as JSON (with a final newline) atomically."""
    write_text(path, json.dumps(obj, indent=indent) + '\n')
