"""The tag vocabulary: one mapping between clothing tags and integer ids.

Ids ``0``, ``1`` and ``2`` are the special tokens ``<pad>``, ``<start>`` and
``<end>``; the tags follow from id ``3`` in a fixed order.  A vocabulary built
with :meth:`Vocabulary.from_taxonomy` orders its tags by **first appearance,
visiting the classes in sorted order of class name and each class's tags in
the order given**, so the same taxonomy always gives the same ids whatever
the order of the dict's keys.

A tag is one token even if it contains spaces (``"upper body"``).

The vocabulary is saved as a small JSON file (see :meth:`Vocabulary.save`)::

    {"format": "lasagne_tagger.tagging.vocabulary", "version": 1,
     "specials": ["<pad>", "<start>", "<end>"],
     "tags": ["dress", "upper body", ...],
     "taxonomy": {"dress": ["dress", ...], ...}}      # or null
"""
import json
import os

import numpy as np

from ..errors import TaggerError

__all__ = ['PAD', 'START', 'END', 'PAD_ID', 'START_ID', 'END_ID',
           'SPECIALS', 'FORMAT', 'FORMAT_VERSION', 'Vocabulary']

PAD = '<pad>'
START = '<start>'
END = '<end>'
PAD_ID = 0
START_ID = 1
END_ID = 2
SPECIALS = (PAD, START, END)
FORMAT = 'lasagne_tagger.tagging.vocabulary'
FORMAT_VERSION = 1


def _check_tag(tag, where):
    if not isinstance(tag, str):
        raise TaggerError('%s: tag %r is not a string' % (where, tag))
    if not tag.strip():
        raise TaggerError('%s: empty tag' % where)
    if tag != tag.strip():
        raise TaggerError('%s: tag %r has leading or trailing spaces'
                          % (where, tag))
    if tag in SPECIALS:
        raise TaggerError('%s: tag %r is a reserved token' % (where, tag))
    return tag


def _check_taxonomy(taxonomy):
    """Validate ``taxonomy`` and return a plain ``{str: [str, ...]}`` copy."""
    if not isinstance(taxonomy, dict):
        raise TaggerError('taxonomy must be a dict {class_name: [tag, ...]}, '
                          'not %s' % type(taxonomy).__name__)
    if not taxonomy:
        raise TaggerError('taxonomy has no classes')
    out = {}
    for name in sorted(taxonomy, key=lambda k: (not isinstance(k, str),
                                                str(k))):
        if not isinstance(name, str) or not name.strip():
            raise TaggerError('taxonomy class name %r is not a non-empty '
                              'string' % (name,))
        tags = taxonomy[name]
        if isinstance(tags, (str, bytes)) or not isinstance(tags,
                                                            (list, tuple)):
            raise TaggerError('taxonomy class %r: tags must be a list of '
                              'strings, not %s' % (name, type(tags).__name__))
        out[name] = [_check_tag(t, 'taxonomy class %r' % name) for t in tags]
    return out


def _as_index(value, what):
    """Return ``value`` as a Python int, or raise TaggerError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, np.integer)):
        raise TaggerError('%s %r is not an integer' % (what, value))
    return int(value)


class Vocabulary:
    """Tags <-> ids, with the special tokens ``<pad>``, ``<start>``, ``<end>``.

    Parameters
    ----------
    tags : sequence of str
        The distinct tags, in id order: ``tags[i]`` gets id ``i + 3``.
    taxonomy : dict or None
        Optional ``{class_name: [tag, ...]}`` the tags came from; every tag
        it names must be in ``tags``.  Kept for :attr:`classes` and saved
        with the vocabulary.

    Raises
    ------
    TaggerError
        On a duplicate, empty, non-string or reserved tag, or a taxonomy
        naming a tag that is not in ``tags``.

    Notes
    -----
    Two vocabularies are equal when they have the same tags in the same
    order and the same taxonomy (``None`` included), so a checkpoint's
    vocabulary can be compared with the one a dataset gives.
    """

    def __init__(self, tags, taxonomy=None):
        if isinstance(tags, (str, bytes)):
            raise TaggerError('tags must be a list of strings, not a string')
        try:
            tags = list(tags)
        except TypeError:
            raise TaggerError('tags must be a list of strings, not %s'
                              % type(tags).__name__) from None
        index = {}
        for i, tag in enumerate(tags):
            _check_tag(tag, 'vocabulary')
            if tag in index:
                raise TaggerError('vocabulary: duplicate tag %r' % tag)
            index[tag] = i + len(SPECIALS)
        if taxonomy is not None:
            taxonomy = _check_taxonomy(taxonomy)
            for name, class_tags in taxonomy.items():
                for tag in class_tags:
                    if tag not in index:
                        raise TaggerError('taxonomy class %r: tag %r is not '
                                          'in the vocabulary' % (name, tag))
        self._tags = tuple(tags)
        self._index = index
        self._taxonomy = taxonomy

    # -- construction ------------------------------------------------------
    @classmethod
    def from_taxonomy(cls, taxonomy):
        """Build the vocabulary of a ``{class_name: [tag, ...]}`` taxonomy.

        Distinct tags are collected in order of first appearance, visiting
        the classes in sorted order of class name and each class's tags in
        the given order.  A tag listed under several classes gets one id.

        Raises
        ------
        TaggerError
            If ``taxonomy`` is not such a dict, has no classes, or holds an
            empty, non-string or reserved (``<pad>``...) tag.
        """
        taxonomy = _check_taxonomy(taxonomy)
        seen = {}
        for class_tags in taxonomy.values():       # already class-sorted
            for tag in class_tags:
                seen.setdefault(tag, None)
        return cls(list(seen), taxonomy)

    # -- ids ---------------------------------------------------------------
    @property
    def size(self):
        """Number of ids, the three special tokens included."""
        return len(SPECIALS) + len(self._tags)

    def __len__(self):
        return self.size

    @property
    def pad_id(self):
        """Id of ``<pad>`` (0)."""
        return PAD_ID

    @property
    def start_id(self):
        """Id of ``<start>`` (1)."""
        return START_ID

    @property
    def end_id(self):
        """Id of ``<end>`` (2)."""
        return END_ID

    @property
    def special_ids(self):
        """Ids of ``<pad>``, ``<start>``, ``<end>`` as a tuple."""
        return (PAD_ID, START_ID, END_ID)

    @property
    def tags(self):
        """The tags (no special tokens) in id order, as a new list."""
        return list(self._tags)

    @property
    def taxonomy(self):
        """A copy of the ``{class_name: [tag, ...]}`` taxonomy, or None."""
        if self._taxonomy is None:
            return None
        return {name: list(tags) for name, tags in self._taxonomy.items()}

    @property
    def classes(self):
        """Class names in sorted order (their class ids), or None."""
        if self._taxonomy is None:
            return None
        return list(self._taxonomy)

    def class_id(self, name):
        """Index of class ``name`` in :attr:`classes`.

        Raises
        ------
        TaggerError
            If the vocabulary has no taxonomy or no such class.
        """
        if self._taxonomy is None:
            raise TaggerError('vocabulary has no taxonomy, so no class %r'
                              % (name,))
        for i, known in enumerate(self._taxonomy):
            if known == name:
                return i
        raise TaggerError('unknown class %r' % (name,))

    def __contains__(self, tag):
        return tag in self._index or tag in SPECIALS

    def id(self, tag):
        """Id of ``tag`` (a tag or one of the special tokens).

        Raises
        ------
        TaggerError
            Naming the tag, if it is not in the vocabulary.
        """
        if isinstance(tag, str):
            if tag in self._index:
                return self._index[tag]
            if tag in SPECIALS:
                return SPECIALS.index(tag)
        raise TaggerError('unknown tag %r' % (tag,))

    def tag(self, id):
        """The tag (or special token) with id ``id``.

        Raises
        ------
        TaggerError
            If ``id`` is not an integer in ``[0, size)``.
        """
        i = _as_index(id, 'tag id')
        if not 0 <= i < self.size:
            raise TaggerError('tag id %d out of range [0, %d)'
                              % (i, self.size))
        if i < len(SPECIALS):
            return SPECIALS[i]
        return self._tags[i - len(SPECIALS)]

    def encode(self, tags):
        """Ids of a sequence of tags, as a list of ints (no start/end added).

        Raises
        ------
        TaggerError
            Naming the first unknown tag; also if ``tags`` is a single string.
        """
        if isinstance(tags, (str, bytes)):
            raise TaggerError('expected a list of tags, got the string %r'
                              % (tags,))
        out = []
        for tag in tags:
            if not isinstance(tag, str) or tag not in self._index:
                raise TaggerError('unknown tag %r' % (tag,))
            out.append(self._index[tag])
        return out

    def decode(self, ids):
        """Tags of a sequence of ids: stops at ``<end>``, skips pad/start.

        Raises
        ------
        TaggerError
            If an id (before the first ``<end>``) is out of range.
        """
        if isinstance(ids, np.ndarray):
            ids = ids.ravel().tolist()
        out = []
        for value in ids:
            i = _as_index(value, 'tag id')
            if i == END_ID:
                break
            if i in (PAD_ID, START_ID):
                continue
            out.append(self.tag(i))
        return out

    def encode_batch(self, tag_lists, max_len=None):
        """Teacher-forcing arrays for a batch, in the Show-and-Tell layout.

        The model feeds the image at time step 0 itself; this builds the
        word part.  With ``L = max_len + 1``, row ``i`` for the tags
        ``t1..tn`` is::

            inputs[i]  = [<start>, t1, ..., tn,    <pad>, ...]   # int32
            targets[i] = [t1, ..., tn,    <end>,   <pad>, ...]   # int32
            mask[i]    = [1,  ..., 1,     1,       0,     ...]   # float32

        The LSTM output at time step ``t + 1`` (after seeing the image and
        ``inputs[i, :t + 1]``) predicts ``targets[i, t]``; ``mask`` is 1
        where the target is real (a tag or the end token) and 0 on padding,
        so a row has ``n + 1`` ones.

        Parameters
        ----------
        tag_lists : sequence of sequences of str
            The ordered tags of each image (may be empty).
        max_len : int or None
            Most tags per image; default the longest list in the batch.

        Returns
        -------
        inputs, targets, mask : ndarray, shape (N, max_len + 1)

        Raises
        ------
        TaggerError
            On an unknown tag, a negative ``max_len``, or a list with more
            than ``max_len`` tags.
        """
        if isinstance(tag_lists, (str, bytes)):
            raise TaggerError('expected a list of tag lists, got a string')
        encoded = [self.encode(tags) for tags in tag_lists]
        longest = max((len(e) for e in encoded), default=0)
        if max_len is None:
            max_len = longest
        max_len = _as_index(max_len, 'max_len')
        if max_len < 0:
            raise TaggerError('max_len must be >= 0, got %d' % max_len)
        if longest > max_len:
            row = next(i for i, e in enumerate(encoded) if len(e) > max_len)
            raise TaggerError('tag list %d has %d tags, more than max_len=%d'
                              % (row, len(encoded[row]), max_len))
        n, length = len(encoded), max_len + 1
        inputs = np.full((n, length), PAD_ID, dtype=np.int32)
        targets = np.full((n, length), PAD_ID, dtype=np.int32)
        mask = np.zeros((n, length), dtype=np.float32)
        for i, ids in enumerate(encoded):
            k = len(ids)
            inputs[i, 0] = START_ID
            inputs[i, 1:k + 1] = ids
            targets[i, :k] = ids
            targets[i, k] = END_ID
            mask[i, :k + 1] = 1.0
        return inputs, targets, mask

    # -- persistence -------------------------------------------------------
    def to_dict(self):
        """A JSON-ready dict with the format name and version."""
        return {'format': FORMAT, 'version': FORMAT_VERSION,
                'specials': list(SPECIALS), 'tags': list(self._tags),
                'taxonomy': self.taxonomy}

    @classmethod
    def from_dict(cls, data, source='vocabulary'):
        """Inverse of :meth:`to_dict`.

        Parameters
        ----------
        data : dict
        source : str
            Named in error messages (:meth:`load` passes the file name).

        Raises
        ------
        TaggerError
            On another format or version, or malformed content.
        """
        if not isinstance(data, dict):
            raise TaggerError('not a vocabulary (expected a JSON object)',
                              source)
        if data.get('format') != FORMAT:
            raise TaggerError('not a vocabulary (format %r, expected %r)'
                              % (data.get('format'), FORMAT), source)
        if data.get('version') != FORMAT_VERSION:
            raise TaggerError('vocabulary format version %r, this code reads '
                              'version %d' % (data.get('version'),
                                              FORMAT_VERSION), source)
        if data.get('specials', list(SPECIALS)) != list(SPECIALS):
            raise TaggerError('special tokens %r, expected %r'
                              % (data.get('specials'), list(SPECIALS)), source)
        tags = data.get('tags')
        if not isinstance(tags, list):
            raise TaggerError('vocabulary "tags" must be a list', source)
        taxonomy = data.get('taxonomy')
        try:
            return cls(tags, taxonomy)
        except TaggerError as exc:
            raise TaggerError(str(exc), source) from None

    def save(self, path):
        """Write the vocabulary to ``path`` as JSON (UTF-8).

        Raises
        ------
        TaggerError
            Naming the file, if it cannot be written.
        """
        path = os.fspath(path)
        text = json.dumps(self.to_dict(), indent=1, ensure_ascii=False)
        try:
            with open(path, 'w', encoding='utf-8') as f:
                f.write(text + '\n')
        except OSError as exc:
            raise TaggerError('cannot write vocabulary (%s)'
                              % (exc.strerror or exc), path) from None

    @classmethod
    def load(cls, path):
        """Read a vocabulary written by :meth:`save`.

        Raises
        ------
        TaggerError
            Naming the file: missing, unreadable, not JSON, another format
            version, or malformed content.
        """
        path = os.fspath(path)
        try:
            with open(path, encoding='utf-8') as f:
                data = json.load(f)
        except OSError as exc:
            raise TaggerError('cannot read vocabulary (%s)'
                              % (exc.strerror or exc), path) from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TaggerError('not a JSON vocabulary file (%s)'
                              % str(exc).splitlines()[0], path) from None
        return cls.from_dict(data, path)

    # -- comparison --------------------------------------------------------
    def __eq__(self, other):
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return (self._tags == other._tags
                and self._taxonomy == other._taxonomy)

    def __hash__(self):
        return hash(self._tags)

    def __repr__(self):
        return '<Vocabulary: %d tags%s>' % (
            len(self._tags), '' if self._taxonomy is None
            else ', %d classes' % len(self._taxonomy))
