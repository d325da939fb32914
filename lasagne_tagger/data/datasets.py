"""Image datasets (class folders, ACS) and the class -> tags taxonomies.

Two on-disk layouts are read into the same record, a :class:`Dataset`:

**Folder datasets** (:func:`read_folder_dataset`), ImageFolder style::

    ROOT/<split>/<class>/<image>.jpg      e.g. clothing-small/train/hat/x.jpg

**ACS**, "Apparel Classification with Style" (Bossard et al., ACCV 2012),
distributed as ``fashion-data.tar.bz2`` (:func:`extract_acs` unpacks it,
:func:`read_acs` reads the result)::

    fashion-data/
        images/<class id>/<ImageNet synset folder>/<name>.jpg
        train.txt      one image per line, relative to images/, no extension:
        test.txt           0/n02854926/n02854926_1007_0
        labels.json    NOT JSON: lines such as ``0:  'blouses',``

The class id of an ACS image is the first component of its path.

**Taxonomies** map each class name to its ordered list of tags; the tagger's
LSTM learns to emit these tags.  On disk a taxonomy is a JSON file::

    {
      "name": "acs",
      "description": "free text (optional)",
      "classes": {
        "blouses": ["blouses"],
        "jersey / T-shirt / tee shirt": ["jersey", "T-shirt", "tee shirt"]
      }
    }

A bare ``{"class": ["tag", ...]}`` object (no ``"classes"`` key) is
accepted too.  In memory a taxonomy is a plain ``dict`` class -> list of
tags, in file order.  Tags are non-empty strings without commas (the tagger
prints them joined by ``", "``), distinct within a class; a tag may be
shared by several classes (``"upper body"``).  The packaged taxonomies
``'acs'`` and ``'clothing-small'`` live in ``lasagne_tagger/resources/``.
"""
import collections
import json
import os
import re
import shutil
import tarfile
import tempfile

from ..errors import TaggerError

__all__ = ['IMAGE_EXTENSIONS', 'ACS_CLASSES', 'ACS_SPLIT_FILES', 'Item',
           'Dataset', 'list_splits', 'read_folder_dataset', 'read_acs',
           'find_acs_root', 'parse_acs_labels', 'extract_acs',
           'read_dataset', 'derive_acs_taxonomy', 'load_taxonomy',
           'parse_taxonomy', 'taxonomy_names', 'check_taxonomy',
           'taxonomy_tags', 'class_tags', 'dataset_fingerprint']

#: File name endings (lower case) taken as images in folder datasets.
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff',
                    '.webp', '.ppm', '.pgm')

#: The 15 ACS classes, by class id (as in the archive's labels.json).
ACS_CLASSES = ('blouses', 'cloak', 'coat', 'jacket', 'long dress',
               'polo shirt / sport shirt', 'robe', 'shirt', 'short dress',
               'suit / suit of clothes', 'sweater',
               'jersey / T-shirt / tee shirt', 'undergarment / upper body',
               'uniform', 'vest / waistcoat')

#: ACS split names and the files that list them, in order.
ACS_SPLIT_FILES = (('train', 'train.txt'), ('test', 'test.txt'))

Item = collections.namedtuple('Item', 'path label split')
Item.__doc__ = """One image: ``path`` (absolute file path), ``label`` (class
id, an index into ``Dataset.classes``) and ``split`` (e.g. ``'train'``)."""


class Dataset(object):
    """A labelled image set: class names and the items of every split.

    Attributes
    ----------
    name : str
        A short name (the root folder's name, or ``'acs'``).
    root : str
        Absolute path of the folder item paths are relative to.
    classes : list of str
        Class names in class-id order.
    items : list of Item
        Every image, in a deterministic order (split, then class/file
        order for folders, split-file order for ACS).
    kind : str
        ``'folder'`` or ``'acs'``.
    skipped : list of str
        One line per split entry that was skipped (``missing='skip'``,
        duplicates), saying where and why.
    """

    def __init__(self, name, root, classes, items, kind='folder',
                 skipped=None):
        self.name = name
        self.root = os.path.abspath(os.fspath(root))
        self.classes = list(classes)
        self.items = list(items)
        self.kind = kind
        self.skipped = list(skipped or [])

    @property
    def splits(self):
        """Split names, in order of first appearance (:func:`list_splits`)."""
        return list_splits(self)

    def split(self, name):
        """The items of split ``name`` (a list; error if there is none)."""
        found = [item for item in self.items if item.split == name]
        if not found:
            raise TaggerError('dataset has no split %r (splits: %s)'
                              % (name, ', '.join(self.splits) or 'none'),
                              self.root)
        return found

    def relpath(self, item):
        """``item.path`` relative to :attr:`root`, with ``/`` separators."""
        prefix = os.path.join(self.root, '')
        if item.path.startswith(prefix):          # fast path
            rel = item.path[len(prefix):]
        else:
            rel = os.path.relpath(item.path, self.root)
        return rel.replace(os.sep, '/') if os.sep != '/' else rel

    def counts(self):
        """``{split: number of items}`` in split order."""
        counts = collections.OrderedDict((s, 0) for s in self.splits)
        for item in self.items:
            counts[item.split] += 1
        return dict(counts)

    def __len__(self):
        return len(self.items)

    def __repr__(self):
        return ('Dataset(%r, %d classes, %s)'
                % (self.name, len(self.classes),
                   ', '.join('%s=%d' % kv for kv in self.counts().items())))


def list_splits(dataset):
    """Names of the splits of ``dataset``, in order of first appearance."""
    seen = []
    for item in dataset.items:
        if item.split not in seen:
            seen.append(item.split)
    return seen


def is_storable(text):
    """Whether a file name is valid UTF-8 (Python keeps undecodable bytes
    as surrogates, which no UTF-8 file can hold)."""
    try:
        str(text).encode('utf-8')
    except UnicodeEncodeError:
        return False
    return True


def storable_name(text):
    """``text`` as valid UTF-8: undecodable bytes of a file name written
    as ``\\xNN`` escapes (for stores, rejects files and messages)."""
    text = str(text)
    if is_storable(text):
        return text
    return text.encode('utf-8', 'surrogateescape').decode('utf-8',
                                                          'backslashreplace')


def dataset_fingerprint(dataset):
    """A SHA-256 hex digest of the class names and every (relative path,
    label, split): equal for the same dataset read from another place."""
    import hashlib

    digest = hashlib.sha256()
    digest.update(json.dumps(list(dataset.classes)).encode('utf-8'))
    for item in dataset.items:
        digest.update(json.dumps([storable_name(dataset.relpath(item)),
                                  int(item.label), item.split])
                      .encode('utf-8'))
    return digest.hexdigest()


# -- folder datasets -------------------------------------------------------

def _visible_dirs(path):
    try:
        with os.scandir(path) as entries:
            return sorted(e.name for e in entries
                          if not e.name.startswith('.') and e.is_dir())
    except OSError as exc:
        raise TaggerError('cannot list folder (%s)' % (exc.strerror or exc),
                          path) from None


def _image_files(path, extensions):
    try:
        with os.scandir(path) as entries:
            return sorted(e.name for e in entries
                          if not e.name.startswith('.')
                          and e.name.lower().endswith(extensions)
                          and e.is_file())
    except OSError as exc:
        raise TaggerError('cannot list folder (%s)' % (exc.strerror or exc),
                          path) from None


def read_folder_dataset(root, extensions=IMAGE_EXTENSIONS):
    """Read a ``ROOT/<split>/<class>/<image>`` tree.

    Parameters
    ----------
    root : str or path-like
        The dataset folder, e.g. ``/work/shared/data/clothing-small``.
    extensions : tuple of str
        Lower-case file name endings counted as images.

    Returns
    -------
    Dataset
        Classes sorted by name (class id = position); items ordered by
        split name, class id, then file name.

    Raises
    ------
    TaggerError
        The root is missing or has no split folders; a split has no class
        folders, or a class folder another split lacks (the message names
        the split and the extra or missing classes); a class folder holds
        no images.

    Notes
    -----
    Hidden entries (names starting with ``.``) are ignored, and so are
    files directly in ``ROOT`` or a split folder (README, LICENSE), files
    with other endings, and folders nested inside class folders.
    """
    root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root):
        raise TaggerError('dataset folder not found' if not
                          os.path.exists(root) else 'not a folder', root)
    extensions = tuple(e.lower() for e in extensions)
    splits = _visible_dirs(root)
    if not splits:
        raise TaggerError('no split folders found (expected ROOT/<split>/'
                          '<class>/<image>, e.g. train/hat/1.jpg)', root)
    classes = None
    first = None
    per_split = []
    for split in splits:
        split_dir = os.path.join(root, split)
        names = _visible_dirs(split_dir)
        if not names:
            raise TaggerError('split %r has no class folders (expected %s/'
                              '<class>/<image>)' % (split, split), split_dir)
        if classes is None:
            classes, first = names, split
        elif names != classes:
            extra = sorted(set(names) - set(classes))
            missing = sorted(set(classes) - set(names))
            problems = []
            if extra:
                problems.append('has class folder(s) %s that split %r lacks'
                                % (', '.join(map(repr, extra)), first))
            if missing:
                problems.append('lacks class folder(s) %s that split %r has'
                                % (', '.join(map(repr, missing)), first))
            raise TaggerError('split %r %s; every split needs the same '
                              'classes' % (split, ' and '.join(problems)),
                              root)
        per_split.append((split, split_dir))
    items = []
    for split, split_dir in per_split:
        for label, name in enumerate(classes):
            class_dir = os.path.join(split_dir, name)
            files = _image_files(class_dir, extensions)
            if not files:
                raise TaggerError('empty class folder: no images (%s)'
                                  % '/'.join(extensions), class_dir)
            items.extend(Item(os.path.join(class_dir, f), label, split)
                         for f in files)
    return Dataset(os.path.basename(root), root, classes, items,
                   kind='folder')


# -- ACS -------------------------------------------------------------------

def find_acs_root(root):
    """The folder that holds ``images/``: ``root`` or ``root/fashion-data``.

    Raises
    ------
    TaggerError
        Neither has an ``images`` folder; the message lists what was found.
    """
    root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root):
        raise TaggerError('ACS folder not found' if not os.path.exists(root)
                          else 'not a folder', root)
    for candidate in (root, os.path.join(root, 'fashion-data')):
        if os.path.isdir(os.path.join(candidate, 'images')):
            return candidate
    try:
        found = sorted(os.listdir(root))
    except OSError:
        found = []
    shown = ', '.join(found[:8]) + (', ...' if len(found) > 8 else '')
    raise TaggerError('expected the extracted ACS layout (images/, '
                      'train.txt, test.txt, labels.json) here or in '
                      'fashion-data/; found: %s' % (shown or 'nothing'), root)


# One ``id: 'name',`` entry of ACS's labels.json (keys may be quoted).
_LABEL_ENTRY = (r"""\s*(?P<q>['"]?)(?P<id>-?\d+)(?P=q)\s*:\s*"""
                r"""(?P<quote>['"])(?P<name>.*?)(?P=quote)\s*,?\s*""")


def parse_acs_labels(text, path='labels.json'):
    """Parse ACS ``labels.json`` text into the list of class names by id.

    The file is a Python-dict-like listing, not JSON: one ``id: 'name',``
    per line, optionally inside braces.  Valid JSON (``{"0": "blouses"}``)
    and several entries on one line are accepted too.

    Raises
    ------
    TaggerError
        Naming ``path`` and the line: a line that is not ``id: 'name'``,
        an id given twice, ids that are not exactly 0..K-1, no entries.
    """
    entry_re = re.compile(_LABEL_ENTRY)
    entries = {}
    where = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith('{'):
            line = line[1:]
        if line.endswith('}'):
            line = line[:-1]
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        pos = 0
        while pos < len(line):
            match = entry_re.match(line, pos)
            if match is None or match.end() == pos:
                raise TaggerError(
                    "line %d: expected \"<class id>: '<name>',\", found %r"
                    % (lineno, raw.strip()[:80]), path)
            class_id = int(match.group('id'))
            name = match.group('name').strip()
            if class_id in entries:
                raise TaggerError('line %d: class id %d given twice (first '
                                  'on line %d)' % (lineno, class_id,
                                                   where[class_id]), path)
            if not name:
                raise TaggerError('line %d: class %d has an empty name'
                                  % (lineno, class_id), path)
            entries[class_id] = name
            where[class_id] = lineno
            pos = match.end()
    if not entries:
        raise TaggerError("no class entries found (expected lines like "
                          "\"0:  'blouses',\")", path)
    expected = list(range(len(entries)))
    if sorted(entries) != expected:
        bad = sorted(set(entries) - set(expected))
        raise TaggerError('line %d: class id %d out of range: %d classes '
                          'need ids 0..%d' % (where[bad[0]], bad[0],
                                              len(entries), len(entries) - 1),
                          path)
    return [entries[i] for i in expected]


def _read_text(path):
    try:
        with open(path, 'r', encoding='utf-8-sig', errors='strict') as fh:
            return fh.read()
    except FileNotFoundError:
        raise TaggerError('file not found', path) from None
    except UnicodeDecodeError as exc:
        raise TaggerError('not UTF-8 text (%s)' % exc.reason, path) from None
    except OSError as exc:
        raise TaggerError('cannot read (%s)' % (exc.strerror or exc),
                          path) from None


def read_acs(root, missing='error', labels_required=True):
    """Read the extracted ACS dataset.

    Parameters
    ----------
    root : str or path-like
        The folder holding ``images/`` (``fashion-data``) or its parent.
    missing : {'error', 'skip'}
        What to do with a split entry whose image does not exist: raise
        (default), or leave it out and note it in ``Dataset.skipped``.
    labels_required : bool
        If false, a missing ``labels.json`` falls back to
        :data:`ACS_CLASSES`; by default it is an error.

    Returns
    -------
    Dataset
        ``kind='acs'``, ``name='acs'``, ``root`` = the ``images`` folder,
        class names from ``labels.json`` by id, splits ``'train'`` then
        ``'test'`` each in split-file order.

    Raises
    ------
    TaggerError
        With the file and line: missing split or labels file, malformed
        labels line, a split line that is not ``<class id>/.../<name>``,
        a class id out of range, an entry naming a missing image.

    Notes
    -----
    A split line is looked up as ``images/<line>.jpg``; ``.jpeg``/``.png``
    (any case) and lines that already carry an extension are accepted too.
    An entry listed twice in one split file is kept once (noted in
    ``skipped``); an image listed in both splits is kept in both.
    """
    if missing not in ('error', 'skip'):
        raise TaggerError("missing must be 'error' or 'skip', not %r"
                          % (missing,))
    base = find_acs_root(root)
    images = os.path.join(base, 'images')
    labels_path = os.path.join(base, 'labels.json')
    classes = _acs_classes(labels_path, labels_required)
    items, skipped = [], []
    for split, filename in ACS_SPLIT_FILES:
        split_path = os.path.join(base, filename)
        if not os.path.isfile(split_path):
            raise TaggerError(
                'missing ACS split file (expected %s next to images/, '
                'listing paths like 0/n02854926/n02854926_1007_0)'
                % ' and '.join(f for _, f in ACS_SPLIT_FILES), split_path)
        seen = {}
        for lineno, entry, label in _acs_split_lines(split_path, classes,
                                                     labels_path):
            # note: the raw split files are used as given, except that an
            # entry repeated within one file is kept once (a repeat would
            # only weight that image twice per epoch).
            if entry in seen:
                skipped.append('%s line %d: duplicate of line %d (%s)'
                               % (split_path, lineno, seen[entry], entry))
                continue
            seen[entry] = lineno
            # note: the 2016 scripts appended '.jpg' and failed later, at
            # decode time, on a missing file; we check up front and name
            # the split file and line.
            path = _find_image(images, entry)
            if path is None:
                if missing == 'skip':
                    skipped.append('%s line %d: no image images/%s.jpg'
                                   % (split_path, lineno, entry))
                    continue
                raise TaggerError(
                    'line %d names %s, but images/%s.jpg does not exist '
                    "(read_acs(..., missing='skip') leaves such entries out)"
                    % (lineno, entry, entry), split_path)
            items.append(Item(path, label, split))
        if not seen:
            raise TaggerError('split file lists no images', split_path)
    return Dataset('acs', images, classes, items, kind='acs',
                   skipped=skipped)


def _acs_classes(labels_path, labels_required):
    """The class names from ``labels.json``; :data:`ACS_CLASSES` when the
    file is missing and not ``labels_required``."""
    if os.path.exists(labels_path) or labels_required:
        if not os.path.exists(labels_path):
            raise TaggerError('missing ACS labels file (expected labels.json '
                              "with lines like \"0:  'blouses',\" next to "
                              'images/)', labels_path)
        return parse_acs_labels(_read_text(labels_path), labels_path)
    return list(ACS_CLASSES)


def _acs_split_lines(split_path, classes, labels_path):
    """``(line number, entry, class id)`` for each entry of an ACS split
    file (blank and ``#`` lines skipped), each checked to be a relative
    path ``<class id>/.../<name>`` with a class id in range."""
    for lineno, raw in enumerate(_read_text(split_path).splitlines(), 1):
        entry = raw.strip().replace('\\', '/')
        if not entry or entry.startswith('#'):
            continue
        parts = entry.split('/')
        if (len(parts) < 2 or entry.startswith('/')
                or any(p in ('', '.', '..') for p in parts)):
            raise TaggerError('line %d: expected a path relative to '
                              'images/ like <class id>/<synset>/<name>, '
                              'found %r' % (lineno, entry[:80]), split_path)
        if not re.fullmatch(r'\d+', parts[0]):
            raise TaggerError('line %d: the first path component must be '
                              'the class id, found %r in %r'
                              % (lineno, parts[0], entry[:80]), split_path)
        label = int(parts[0])
        if label >= len(classes):
            raise TaggerError('line %d: class id %d out of range (%s has %d '
                              'classes, ids 0..%d)'
                              % (lineno, label, os.path.basename(labels_path),
                                 len(classes), len(classes) - 1),
                              split_path)
        yield lineno, entry, label


def _find_image(images, entry):
    stem = os.path.join(images, *entry.split('/'))
    for ext in ('.jpg', '.jpeg', '.JPG', '.JPEG', '.png', '.PNG'):
        if os.path.isfile(stem + ext):
            return stem + ext
    if entry.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(stem):
        return stem
    return None


def _check_member(member, archive):
    """Raise unless ``member`` extracts strictly inside the destination."""
    name = member.name.replace('\\', '/')
    parts = [p for p in name.split('/') if p not in ('', '.')]
    if name.startswith('/') or re.match(r'^[A-Za-z]:', name):
        raise TaggerError('refusing to extract: member %r has an absolute '
                          'path' % member.name, archive)
    if '..' in parts:
        raise TaggerError('refusing to extract: member %r contains "..".'
                          % member.name, archive)
    if member.issym() or member.islnk():
        target = member.linkname.replace('\\', '/')
        if member.issym():
            base = parts[:-1]
        else:                            # hard links are relative to root
            base = []
        if target.startswith('/'):
            raise TaggerError('refusing to extract: link %r points to the '
                              'absolute path %r' % (member.name,
                                                    member.linkname), archive)
        depth = list(base)
        for part in target.split('/'):
            if part in ('', '.'):
                continue
            if part == '..':
                if not depth:
                    raise TaggerError('refusing to extract: link %r points '
                                      'outside the archive (%r)'
                                      % (member.name, member.linkname),
                                      archive)
                depth.pop()
            else:
                depth.append(part)
    elif not (member.isfile() or member.isdir()):
        raise TaggerError('refusing to extract: member %r is a device, '
                          'FIFO or other special file' % member.name, archive)


def extract_acs(archive, dest, progress=True):
    """Safely unpack ``fashion-data.tar.bz2`` (any tar) into ``dest``.

    The archive is extracted into a hidden temporary folder inside
    ``dest`` and renamed into place only when complete, so ``dest`` never
    holds a half-extracted dataset.  An archive with a single top-level
    folder (``fashion-data/``) becomes ``dest/fashion-data``; otherwise its
    contents go to ``dest/<archive name without .tar.*>``.  If that target
    already exists it is returned as is (extraction is all or nothing, so
    an existing target is a finished one) and the archive is not read.

    Parameters
    ----------
    archive : str or path-like
        The ``.tar.bz2`` (``.tar``, ``.tar.gz``, ``.tar.xz`` work too).
    dest : str or path-like
        Folder to extract into (created if needed).
    progress : bool
        Show progress on stderr (in compressed bytes read).

    Returns
    -------
    str
        The extracted dataset folder; pass it to :func:`read_acs`.

    Raises
    ------
    TaggerError
        Missing or unreadable archive, not a tar file, a member with an
        absolute path or ``..``, a link pointing outside, a device file,
        or a write error (disk full); the temporary folder is removed.
    """
    from ..runtime.progress import progress_bar

    archive = os.path.abspath(os.fspath(archive))
    dest = os.path.abspath(os.fspath(dest))
    if not os.path.isfile(archive):
        raise TaggerError('archive not found', archive)
    name = os.path.basename(archive)
    stem = re.sub(r'\.(tar(\.(bz2|gz|xz))?|tbz2?|tgz|txz)$', '', name) \
        or 'fashion-data'
    if os.path.isdir(os.path.join(dest, stem)):
        return os.path.join(dest, stem)
    try:
        os.makedirs(dest, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix='.%s.extract-' % stem, dir=dest)
    except OSError as exc:
        raise TaggerError('cannot create the destination folder (%s)'
                          % (exc.strerror or exc), dest) from None
    try:
        total = os.path.getsize(archive)
        with open(archive, 'rb') as raw, \
                progress_bar(total, 'extracting %s' % name, enabled=progress,
                         unit='B') as bar:
            _extract_members(raw, archive, tmp, bar, total)
        return _move_into_place(tmp, dest, stem, archive)
    except OSError as exc:
        raise TaggerError('extraction failed (%s); nothing was left in %s'
                          % (exc.strerror or exc, dest), archive) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _extract_members(raw, archive, tmp, bar, total):
    """Extract the tar stream ``raw`` (of ``archive``) into ``tmp``,
    member by member, each checked first; ``bar`` counts compressed bytes
    read, of ``total``."""
    try:
        tar = tarfile.open(fileobj=raw, mode='r|*')
    except tarfile.TarError as exc:
        raise TaggerError('not a readable tar archive (%s)' % exc,
                          archive) from None
    with tar:
        done = 0
        try:
            for member in tar:
                _check_member(member, archive)
                tar.extract(member, tmp, set_attrs=False, filter='data')
                pos = raw.tell()
                bar.update(pos - done)
                done = pos
            bar.update(max(0, total - done))
        except tarfile.FilterError as exc:
            raise TaggerError('refusing to extract (%s)' % exc,
                              archive) from None
        except (tarfile.TarError, EOFError) as exc:
            raise TaggerError('corrupt or truncated archive (%s)' % exc,
                              archive) from None


def _move_into_place(tmp, dest, stem, archive):
    """Rename what ``archive`` extracted into ``tmp`` to its place in
    ``dest``: its single top-level folder as it is named, or everything
    as ``dest/<stem>``; returns that folder."""
    top = os.listdir(tmp)
    if len(top) == 1 and os.path.isdir(os.path.join(tmp, top[0])):
        source, target = os.path.join(tmp, top[0]), os.path.join(dest,
                                                                 top[0])
    else:
        source, target = tmp, os.path.join(dest, stem)
    if not top:
        raise TaggerError('archive is empty', archive)
    if os.path.exists(target):
        raise TaggerError('extracted folder %s already exists; remove it '
                          'or extract elsewhere' % target, archive)
    os.rename(source, target)
    return target


def read_dataset(root, missing='error'):
    """Read ``root`` as ACS if it has the ACS layout, else as a folder
    dataset (see :func:`read_acs`, :func:`read_folder_dataset`)."""
    root = os.path.abspath(os.fspath(root))
    for candidate in (root, os.path.join(root, 'fashion-data')):
        if os.path.isdir(os.path.join(candidate, 'images')) and \
                os.path.isfile(os.path.join(candidate, 'train.txt')):
            return read_acs(candidate, missing=missing)
    return read_folder_dataset(root)


# -- taxonomies ------------------------------------------------------------

def derive_acs_taxonomy(names=ACS_CLASSES):
    """Tags of each ACS class: its name split on ``' / '``.

    ``'jersey / T-shirt / tee shirt'`` gives ``['jersey', 'T-shirt',
    'tee shirt']``; multi-word tags such as ``'upper body'`` stay one tag.
    """
    # note: the blog's tagger printed e.g. "jersey, T-shirt, upper body, suit
    # of clothes": the ACS class names are WordNet synonym lists, and each
    # synonym is one tag.  We derive the tags the same way.
    return collections.OrderedDict(
        (name, [t.strip() for t in name.split(' / ') if t.strip()])
        for name in names)


def taxonomy_names():
    """Names of the packaged taxonomies (``'acs'``, ``'clothing-small'``)."""
    from ..resources import resource_names
    return sorted(f[len('taxonomy_'):-len('.json')] for f in resource_names()
                  if f.startswith('taxonomy_') and f.endswith('.json'))


def load_taxonomy(path_or_name):
    """Load a taxonomy file, or a packaged one by name.

    Parameters
    ----------
    path_or_name : str or path-like
        A JSON file (see the module docstring), or the name of a packaged
        taxonomy (``'acs'``, ``'clothing-small'``).  A string without a
        path separator or ``.json`` ending that is not an existing file is
        taken as a name.

    Returns
    -------
    dict
        Class name -> list of tags, in file order; checked as by
        :func:`check_taxonomy` (without a class list).
    """
    text = os.fspath(path_or_name)
    is_name = (not os.path.exists(text) and os.sep not in text
               and '/' not in text and not text.endswith('.json'))
    if is_name:
        from ..resources import resource_path
        path = resource_path('taxonomy_%s.json' % text)
        if not os.path.isfile(path):
            raise TaggerError('no packaged taxonomy %r (packaged: %s; or '
                              'give a path to a .json file)'
                              % (text, ', '.join(taxonomy_names())))
    else:
        path = text
    raw = _read_text(path)
    try:
        data = json.loads(raw, object_pairs_hook=collections.OrderedDict)
    except ValueError as exc:
        raise TaggerError('not valid JSON (%s)' % exc, path) from None
    return parse_taxonomy(data, path)


def parse_taxonomy(data, source=None):
    """Turn decoded taxonomy JSON into the in-memory ``dict`` and check it.

    ``data`` is ``{"classes": {class: [tags]}, ...}`` or a bare
    ``{class: [tags]}``; ``source`` names the file in error messages.
    """
    if not isinstance(data, dict):
        raise TaggerError('a taxonomy must be a JSON object, found %s'
                          % type(data).__name__, source)
    if isinstance(data.get('classes'), dict):
        data = data['classes']
    taxonomy = collections.OrderedDict(data)
    check_taxonomy(taxonomy, source=source)
    return taxonomy


def check_taxonomy(taxonomy, classes=None, source=None):
    """Check a taxonomy, and that it covers ``classes``.

    Parameters
    ----------
    taxonomy : dict
        Class name -> list of tags.
    classes : list of str, optional
        Class names that must all be present (extra taxonomy classes are
        allowed).
    source : str, optional
        The taxonomy's file, named in error messages.

    Raises
    ------
    TaggerError
        Naming the class: missing from the taxonomy, no tags, a tag that is
        not a non-empty string, has surrounding blanks or a comma, or is
        given twice for the class.
    """
    if not isinstance(taxonomy, dict) or not taxonomy:
        raise TaggerError('taxonomy has no classes', source)
    for name, tags in taxonomy.items():
        if not isinstance(tags, (list, tuple)):
            raise TaggerError('class %r: tags must be a list of strings, '
                              'found %s' % (name, type(tags).__name__),
                              source)
        if not tags:
            raise TaggerError('class %r has an empty tag list' % (name,),
                              source)
        seen = set()
        for tag in tags:
            if not isinstance(tag, str):
                raise TaggerError('class %r: tag %r is not a string'
                                  % (name, tag), source)
            if not tag.strip() or tag != tag.strip():
                raise TaggerError('class %r: tag %r is empty or has '
                                  'surrounding blanks' % (name, tag), source)
            if ',' in tag:
                raise TaggerError('class %r: tag %r contains a comma (tags '
                                  'are printed joined by ", ")'
                                  % (name, tag), source)
            if tag in seen:
                raise TaggerError('class %r lists tag %r twice'
                                  % (name, tag), source)
            seen.add(tag)
    if classes is not None:
        missing = [c for c in classes if c not in taxonomy]
        if missing:
            raise TaggerError('taxonomy has no tags for class(es) %s'
                              % ', '.join(map(repr, missing)), source)


def taxonomy_tags(taxonomy, classes=None):
    """All distinct tags, in order of first appearance.

    Classes are visited in ``classes`` order if given (e.g. a dataset's
    class-id order), else in the taxonomy's own order; each class's tags in
    their listed order.
    """
    order = list(taxonomy) if classes is None else list(classes)
    tags = []
    seen = set()
    for name in order:
        for tag in taxonomy[name]:
            if tag not in seen:
                seen.add(tag)
                tags.append(tag)
    return tags


def class_tags(taxonomy, classes):
    """The tag list of each class in ``classes`` order (checked first)."""
    check_taxonomy(taxonomy, classes)
    return [list(taxonomy[name]) for name in classes]
