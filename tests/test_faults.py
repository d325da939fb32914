"""Faults lose nothing and end in one line (issue 17): full disks, damaged
files, overwrites, bad flags.  Each case runs the command a user would
(``lasagne-tagger ...`` in a fresh process) on the tiny trained system of
conftest.py, copied first, and checks: a non-zero exit, one ``error:`` line
(no traceback, no segfault) and no file a later step would trust.

Full disks are real where the tests run as root (a small tmpfs in a mount
namespace of the command's own, ``unshare -m``), injected otherwise."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import pytest

from lasagne_tagger.training import checkpoint
from lasagne_tagger.tagging import features
from lasagne_tagger.errors import TaggerError

pytestmark = pytest.mark.slow   # the tiny trained system, full disks, kills


def _cli(*argv, env=None, prefix=(), timeout=600):
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run(list(prefix) + [sys.executable, '-m',
                                          'lasagne_tagger.cli'] + list(argv),
                          capture_output=True, text=True, env=full,
                          timeout=timeout)


def _one_error_line(out, match=None):
    """Exit 2, stderr's only meaningful line ``error: ...`` (no traceback);
    returns it."""
    assert out.returncode == 2, (out.returncode, out.stderr[-3000:])
    assert 'Traceback' not in out.stderr, out.stderr[-3000:]
    errors = [l for l in out.stderr.splitlines() if l.startswith('error: ')]
    assert len(errors) == 1, out.stderr[-3000:]
    if match is not None:
        assert match in errors[0], errors[0]
    return errors[0]


def _copy(src, dst):
    src, dst = str(src), str(dst)
    if os.path.isdir(src):
        shutil.copytree(src, dst)
    else:
        shutil.copy(src, dst)
    return dst


def _can_mount():
    return os.geteuid() == 0 and shutil.which('unshare') and \
        subprocess.run(['unshare', '-m', 'true']).returncode == 0


def _in_small_tmpfs(folder, size):
    """A command prefix that runs it with ``folder`` on an empty tmpfs of
    ``size`` (its own mount namespace)."""
    return ['unshare', '-m', 'sh', '-c',
            'mount -t tmpfs -o size=%s lasagne-tagger-full "%s" && exec "$@"'
            % (size, folder), 'sh']


needs_root = pytest.mark.skipif(not _can_mount(),
                                reason='a real full disk needs root (tmpfs)')


# --- 1. silent corruption on a full disk -----------------------------------

def test_features_lost_by_hdf5_are_caught_not_trusted(tiny_system, tmp_path,
                                                      monkeypatch):
    """HDF5 can drop chunk writes on a full disk without raising: every row
    is then marked done and reads back as zeros.  The CRC-32 per row
    catches it, and no features file appears."""
    real = h5py.Dataset.__setitem__
    calls = []

    def dropping(self, key, value):
        if self.name == '/features':
            calls.append(1)
            if len(calls) % 2 == 0:          # every other batch is lost
                return
        return real(self, key, value)
    monkeypatch.setattr(h5py.Dataset, '__setitem__', dropping)
    out = tmp_path / 'f.h5'
    with pytest.raises(TaggerError, match='do not read back'):
        features.extract_features(tiny_system['cnn'], tiny_system['store'],
                                  out, rotations=True, batch_size=8,
                                  progress=False)
    assert not out.exists() and not os.path.exists(
        features.partial_path(out))
    monkeypatch.undo()
    # a damaged finished file is refused by every reader
    good = _copy(tiny_system['feats'], tmp_path / 'g.h5')
    with h5py.File(good, 'r+') as h5:
        h5['features'][3] = 0.0
    with pytest.raises(TaggerError, match='row 3 differs from its CRC-32'):
        features.open_features(good)


@needs_root
def test_extract_into_a_full_disk(tiny_system, tmp_path):
    full = tmp_path / 'full'
    full.mkdir()
    out = _cli('extract', str(tiny_system['cnn']), str(tiny_system['store']),
               str(full / 'f.h5'), '--rotations',
               prefix=_in_small_tmpfs(full, '64k'))
    _one_error_line(out, 'disk full')


# --- 2. finished work is never destroyed without asking ---------------------

def test_train_refuses_an_existing_run_folder(tiny_system, tmp_path):
    run = _copy(tiny_system['cnn'].parent, tmp_path / 'cnn')
    before = open(os.path.join(run, 'best.npz'), 'rb').read()
    out = _cli('train', '--store', str(tiny_system['store']),
               '--from-scratch', '--set', 'width=0.125', '--set', 'epochs=1',
               '--out', run, '--quiet', '--no-plots')
    _one_error_line(out, 'holds a training run already')
    assert open(os.path.join(run, 'best.npz'), 'rb').read() == before
    for command in (['train-tagger', '--features',
                     str(tiny_system['feats']), '--taxonomy',
                     str(tiny_system['root'] / 'taxonomy.json'),
                     '--out', _copy(tiny_system['tagger'].parent,
                                    tmp_path / 'tagger')],
                    ['extract', str(tiny_system['cnn']),
                     str(tiny_system['store']), str(tiny_system['feats'])],
                    ['prepare', str(tiny_system['root']),
                     str(tiny_system['store']), '--size', '32']):
        out = _cli(*command)
        _one_error_line(out, 'pass --resume')


# --- 3/4. damaged files: one line naming the file ----------------------------

def test_damaged_checkpoints_are_refused_by_every_command(tiny_system,
                                                          tmp_path):
    run = _copy(tiny_system['cnn'].parent, tmp_path / 'cnn')
    npz = os.path.join(run, 'best.npz')
    data = open(npz, 'rb').read()
    for damage, name in ((data[:len(data) // 2], 'truncated'),
                         (data[:600] + bytes([data[600] ^ 1]) + data[601:],
                          'one bit')):
        with open(npz, 'wb') as fh:
            fh.write(damage)
        for argv in (['evaluate', os.path.join(run, 'best'),
                      str(tiny_system['store'])],
                     ['tag', str(next((tiny_system['root'] / 'test' / 'hat')
                                      .glob('*.png'))),
                      '--cnn', os.path.join(run, 'best'),
                      '--tagger', str(tiny_system['tagger'])]):
            line = _one_error_line(_cli(*argv))
            assert npz in line, (name, line)


def _chunk_offset(path, row):
    with h5py.File(path, 'r') as h5:
        info = h5['images'].id.get_chunk_info_by_coord((row, 0, 0, 0))
        return info.byte_offset, info.size


def test_damaged_stores_are_one_line_errors(tiny_system, tmp_path):
    # pixels changed in place: HDF5's Fletcher-32 checksum refuses them
    damaged = _copy(tiny_system['store'], tmp_path / 'damaged.h5')
    from lasagne_tagger.data.store import open_store
    with open_store(damaged) as st:
        row = int(st.indices('train')[5])
    offset, size = _chunk_offset(damaged, row)
    with open(damaged, 'r+b') as fh:
        fh.seek(offset + size // 2)
        byte = fh.read(1)
        fh.seek(offset + size // 2)
        fh.write(bytes([byte[0] ^ 0x10]))
    line = _one_error_line(_cli('evaluate', str(tiny_system['cnn']),
                                damaged, '--split', 'train'))
    assert 'damaged store' in line and damaged in line
    # truncated: not "in use by another process"
    cut = tmp_path / 'cut.h5'
    data = open(tiny_system['store'], 'rb').read()
    cut.write_bytes(data[:len(data) // 2])
    line = _one_error_line(_cli('evaluate', str(tiny_system['cnn']),
                                str(cut)))
    assert 'truncated' in line and 'in use' not in line


# --- 5. full disks elsewhere -------------------------------------------------

@needs_root
def test_prepare_train_and_export_on_a_full_disk(tiny_system, tmp_path):
    full = tmp_path / 'full'
    full.mkdir()
    out = _cli('prepare', str(tiny_system['root']), str(full / 's.h5'),
               '--size', '32', '--workers', '1',
               prefix=_in_small_tmpfs(full, '48k'))
    _one_error_line(out)
    assert out.returncode != -signal.SIGSEGV
    out = _cli('reference', 'export', '--width', '0.125', '--image-size',
               '32', '--count', '2', '--out', str(full / 'r.h5'),
               prefix=_in_small_tmpfs(full, '40k'))
    _one_error_line(out)
    out = _cli('train', '--store', str(tiny_system['store']),
               '--from-scratch', '--set', 'width=0.125', '--set', 'epochs=2',
               '--set', 'batch_size=16', '--out', str(full / 'run'),
               '--quiet', '--no-plots', prefix=_in_small_tmpfs(full, '24k'))
    _one_error_line(out, 'disk full')
    assert 'ZipFile' not in out.stderr


def test_an_interrupted_epoch_leaves_no_metrics_row_behind(tiny_system,
                                                           tmp_path):
    """A failed checkpoint write after an epoch (as on a full disk: here a
    folder that cannot be written); then a resume: metrics.jsonl holds each
    epoch once, as the checkpoint does."""
    code = r'''
import sys, numpy as np, lasagne_tagger
from lasagne_tagger.training import checkpoint, finetune
real = checkpoint.atomic_path
calls = []
def failing(path, *args, **kwargs):
    calls.append(1)
    if len(calls) == 3:          # epoch 2's first checkpoint write
        return real('/proc/lasagne-tagger-full/x', *args, **kwargs)
    return real(path, *args, **kwargs)
checkpoint.atomic_path = failing
cfg = finetune.FinetuneConfig(store=sys.argv[1], from_scratch=True,
                              width=0.125, epochs=3, batch_size=16)
try:
    finetune.train(cfg, sys.argv[2], progress=False, log=lambda *a: None)
except Exception as exc:
    print('stopped:', exc)
'''
    run = str(tmp_path / 'run')
    out = subprocess.run([sys.executable, '-c', code,
                          str(tiny_system['store']), run],
                         capture_output=True, text=True, timeout=600)
    assert 'stopped:' in out.stdout and 'cannot write the checkpoint' in \
        out.stdout, out
    rows = [json.loads(l) for l in open(os.path.join(run, 'metrics.jsonl'))]
    assert [r['epoch'] for r in rows] == [1]
    out = _cli('train', '--store', str(tiny_system['store']),
               '--from-scratch', '--set', 'width=0.125', '--set', 'epochs=3',
               '--set', 'batch_size=16', '--out', run, '--resume', '--quiet',
               '--no-plots')
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(l) for l in open(os.path.join(run, 'metrics.jsonl'))]
    assert [r['epoch'] for r in rows] == [1, 2, 3]
    _, meta = checkpoint.load_checkpoint(os.path.join(run, 'last'))
    assert [h['epoch'] for h in meta['history']] == [1, 2, 3]


# --- 6. odd file names --------------------------------------------------------

def test_a_file_name_that_is_not_utf8_is_skipped_and_listed(tiny_system,
                                                            tmp_path):
    root = _copy(tiny_system['root'], tmp_path / 'data')
    folder = os.path.join(root, 'train', 'hat')
    good = sorted(os.listdir(folder))[0]
    odd = os.path.join(folder.encode(), b'caf\xe9.png')   # Latin-1 bytes
    shutil.copy(os.path.join(folder, good).encode(), odd)
    store = str(tmp_path / 's.h5')
    out = _cli('prepare', root, store, '--size', '32', '--workers', '1')
    assert out.returncode == 0, out.stderr[-2000:]
    rejects = open(store + '.rejects.tsv', encoding='utf-8').read()
    assert 'caf\\xe9.png\tfile name is not valid UTF-8' in rejects


# --- 7/8. flags and folders the package cannot use ----------------------------

@pytest.mark.parametrize('flags, match', [
    ('device=cuda', 'no usable GPU'),
    ('floatX=float16', 'THEANO_FLAGS floatX=float16: not supported'),
    ('floatX=banana', 'THEANO_FLAGS floatX=banana: Invalid value'),
    ('mode=NOPE', 'THEANO_FLAGS mode=NOPE: not a Theano mode'),
    ('compiledir=/proc/no-such-dir', 'cannot create its compile folder'),
])
def test_theano_flags_it_cannot_honour(tiny_system, flags, match):
    out = _cli('evaluate', str(tiny_system['cnn']), str(tiny_system['store']),
               env={'THEANO_FLAGS': flags})
    _one_error_line(out, match)


def test_unwritable_outputs(tiny_system):
    # (under /proc nothing can be created, not even by root)
    nowhere = '/proc/lasagne-tagger-nowhere'
    for argv, match in (
            (['train', '--store', str(tiny_system['store']),
              '--from-scratch', '--out', nowhere], nowhere),
            (['extract', str(tiny_system['cnn']), str(tiny_system['store']),
              nowhere + '/f.h5'], nowhere),
            (['tag', str(next((tiny_system['root'] / 'test' / 'hat')
                              .glob('*.png'))), '--cnn',
              str(tiny_system['cnn']), '--tagger', str(tiny_system['tagger']),
              '--render', nowhere], nowhere)):
        _one_error_line(_cli(*argv), match)


# --- 9. the smaller ones ----------------------------------------------------

def test_a_nan_learning_rate_is_refused(tiny_system, tmp_path):
    out = _cli('train', '--store', str(tiny_system['store']),
               '--from-scratch', '--set', 'learning_rate=nan', '--out',
               str(tmp_path / 'run'))
    _one_error_line(out, 'learning_rate must be a finite number')


def test_a_replaced_image_is_noticed_on_rerun(tiny_system, tmp_path):
    root = _copy(tiny_system['root'], tmp_path / 'data')
    store = str(tmp_path / 's.h5')
    assert _cli('prepare', root, store, '--size', '32',
                '--workers', '1').returncode == 0
    folder = os.path.join(root, 'train', 'shoe')
    a, b = sorted(os.listdir(folder))[:2]
    shutil.copy(os.path.join(folder, b), os.path.join(folder, a))
    out = _cli('prepare', root, store, '--size', '32', '--resume')
    _one_error_line(out, 'changed since it was prepared')


def test_stale_creating_files_are_cleaned(tiny_system, tmp_path):
    stale = tmp_path / '.s.h5.999999999.abc.creating'
    stale.write_bytes(b'half a store')
    out = _cli('prepare', str(tiny_system['root']), str(tmp_path / 's.h5'),
               '--size', '32', '--workers', '1')
    assert out.returncode == 0, out.stderr[-2000:]
    assert not stale.exists()


def test_killed_prepare_leaves_no_worker_tracebacks(tiny_system, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, '-m', 'lasagne_tagger.cli', 'prepare',
         str(tiny_system['root']), str(tmp_path / 's.h5'), '--size', '32',
         '--workers', '2'], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / 's.h5').exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.kill()
    _, err = proc.communicate(timeout=60)
    time.sleep(1)
    assert 'Traceback' not in err and 'BrokenPipe' not in err, err
