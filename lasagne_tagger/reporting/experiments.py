"""What the experiment scripts in ``experiments/`` share (one per blog claim).

Each script takes one experiment config, ``experiments/configs/<name>.json``:
a JSON object with the dataset (``"data"``, relative to the config file;
``"acs"``; ``"image_size"``) and one section per experiment (``"finetune"``,
``"tagger"``, ``"imagenet"``, ``"compare"``).  Small results (JSON, PNG) go
to ``experiments/results/<name>/<experiment>/`` and are committed; large
ones (the prepared store, checkpoints, features) to
``runs/experiments/<name>/``.

Scoring ImageNet synsets against clothing tags (claims 1 and 5)
---------------------------------------------------------------
The ImageNet network names synsets ("n04370456 jersey, T-shirt, tee
shirt"), the tagger names taxonomy tags ("T-shirt", "upper body").  A synset
*names* a tag when one of its synonyms (the text after the WordNet id,
split at ", ") contains the tag's words as a run of whole words, after both
are normalised the same way: lower case, split at blanks, hyphens and
slashes, and a final "s" dropped from words of four or more letters not
ending in "ss" ("shoes" -> "shoe", "pants" -> "pant", "dress" stays).  A
one-word tag of four or more letters also matches a compound word ending in
it ("miniskirt" names "skirt", "sweatshirt" names "shirt").  So "jersey,
T-shirt, tee shirt" names "T-shirt" and "shirt", "running shoe" names
"shoes", "cowboy hat" names "hat", "Windsor tie" names nothing.  The tags an
ImageNet prediction gives a photo are the tags named by its top-k synsets;
they are scored with the same set metrics as the tagger's tags
(:func:`lasagne_tagger.evaluation.metrics.tag_metrics`).
# note: the blog compared the two systems by eye on a few photos; this rule
# is ours, and lenient towards ImageNet (any of the top k synsets may name a
# tag; compounds count).
"""
import json
import os
import re

import numpy as np

from ..atomic import atomic_path, make_parent
from ..atomic import write_json as atomic_write_json
from ..errors import TaggerError

__all__ = ['NOT_RUN_WEIGHTS', 'ExperimentConfig', 'load_experiment',
           'default_dirs', 'cnn_checkpoint', 'tagger_checkpoint',
           'store_path', 'experiment_weights', 'write_json', 'read_json',
           'normalise_words', 'synset_synonyms', 'synset_names_tag',
           'synset_tags', 'imagenet_tag_sets', 'pick_per_class',
           'save_image', 'plot_bars', 'run_script']

#: The status of a result that needs the model-zoo weights when they are
#: absent (the scripts then write it instead of numbers and exit 0).
NOT_RUN_WEIGHTS = ('not run: needs the model-zoo weights (lasagne-tagger '
                   'fetch-weights)')

# The experiment (results folder) names of the scripts.
FINETUNE = 'finetune_ablation'
TAGGER = 'tagger'


class ExperimentConfig(object):
    """An experiment config file, read and checked.

    Attributes
    ----------
    path : str
        The config file (absolute).
    stem : str
        Its name without ``.json``: the results and work folder name.
    name : str
        The ``"name"`` field (the stem when absent).
    data : str
        The dataset folder, absolute (``"data"`` is relative to the file).
    acs : bool
        ACS layout instead of a class-per-folder dataset.
    image_size : int
        Crop side of the prepared store.
    raw : dict
        The whole decoded file.
    """

    def __init__(self, path):
        self.path = os.path.abspath(os.fspath(path))
        try:
            with open(self.path, encoding='utf-8') as fh:
                raw = json.load(fh)
        except FileNotFoundError:
            raise TaggerError('no such experiment config', self.path) \
                from None
        except (OSError, UnicodeDecodeError) as exc:
            raise TaggerError('cannot read (%s)' % exc, self.path) from None
        except ValueError as exc:
            raise TaggerError('not valid JSON (%s)' % exc, self.path) \
                from None
        if not isinstance(raw, dict):
            raise TaggerError('an experiment config must be a JSON object',
                              self.path)
        for key, kind in (('data', str), ('image_size', int)):
            if not isinstance(raw.get(key), kind) or isinstance(
                    raw.get(key), bool):
                raise TaggerError('needs "%s" (%s)' % (key, kind.__name__),
                                  self.path)
        if raw['image_size'] < 1:
            raise TaggerError('"image_size" must be >= 1', self.path)
        self.raw = raw
        self.stem = os.path.splitext(os.path.basename(self.path))[0]
        self.name = str(raw.get('name') or self.stem)
        self.data = os.path.normpath(os.path.join(
            os.path.dirname(self.path), raw['data']))
        self.acs = bool(raw.get('acs', False))
        self.image_size = raw['image_size']

    def section(self, name, known=None):
        """The ``name`` section (a dict); TaggerError naming the file if it
        is missing or not an object, or (given ``known``, the allowed keys)
        if it has a key not in ``known``."""
        value = self.raw.get(name)
        if not isinstance(value, dict):
            raise TaggerError('no "%s" section (a JSON object)' % name,
                              self.path)
        unknown = sorted(k for k in value if known is not None
                         and k not in known)
        if unknown:
            raise TaggerError('"%s" section: unknown key(s) %s (known: %s)'
                              % (name, ', '.join(unknown), ', '.join(known)),
                              self.path)
        return value

    def read_dataset(self):
        """The dataset (:class:`lasagne_tagger.data.datasets.Dataset`)."""
        from ..data import datasets
        if not os.path.isdir(self.data):
            raise TaggerError('data folder %s does not exist (from "data")'
                              % self.data, self.path)
        return datasets.read_acs(self.data) if self.acs else \
            datasets.read_folder_dataset(self.data)

    def taxonomy(self):
        """The taxonomy for the tags: the ``"taxonomy"`` of the ``"tagger"``
        section, else ``DATA/taxonomy.json``, else the packaged taxonomy
        named like the data folder (``clothing-small``)."""
        from ..data import datasets
        tagger = self.raw.get('tagger')
        if isinstance(tagger, dict) and tagger.get('taxonomy'):
            value = tagger['taxonomy']
            candidate = os.path.join(os.path.dirname(self.path), value)
            return candidate if os.path.exists(candidate) else value
        path = os.path.join(self.data, 'taxonomy.json')
        if os.path.isfile(path):
            return path
        name = os.path.basename(os.path.normpath(self.data))
        if name in datasets.taxonomy_names():
            return name
        raise TaggerError('no taxonomy: set "taxonomy" in the "tagger" '
                          'section (a file or one of %s)'
                          % ', '.join(datasets.taxonomy_names()), self.path)


def load_experiment(path):
    """Read an experiment config (see :class:`ExperimentConfig`)."""
    return ExperimentConfig(path)


def default_dirs(config, experiment, scripts_dir, out=None, work=None):
    """``(out, work)``: the results folder of ``experiment`` and the work
    folder of the config, unless given.

    Parameters
    ----------
    config : ExperimentConfig
    experiment : str
        Results folder name, e.g. ``'tagger'``.
    scripts_dir : str
        The ``experiments/`` folder; the repository is its parent.
    """
    scripts_dir = os.path.abspath(scripts_dir)
    out = out or os.path.join(scripts_dir, 'results', config.stem,
                              experiment)
    work = work or os.path.join(os.path.dirname(scripts_dir), 'runs',
                                'experiments', config.stem)
    return os.path.abspath(out), os.path.abspath(work)


def store_path(config, work):
    """The prepared store ``finetune_ablation.py`` writes into ``work``."""
    return os.path.join(work, 'store-%d.h5' % config.image_size)


def _require(prefix, what, command):
    if not os.path.isfile(prefix + '.json') or \
            not os.path.isfile(prefix + '.npz'):
        raise TaggerError('no %s checkpoint: run `%s` first' % (what, command),
                          prefix)
    return prefix


def cnn_checkpoint(config, work, variant):
    """The ``best`` checkpoint of a fine-tuning variant; a one-line
    TaggerError saying to run ``finetune_ablation.py`` when missing."""
    if not isinstance(variant, str) or not variant:
        raise TaggerError('"cnn_variant" must name a finetune_ablation '
                          'variant', config.path)
    return _require(os.path.join(work, variant, 'best'),
                    'CNN (variant %s)' % variant,
                    'python experiments/finetune_ablation.py %s --variants %s'
                    % (os.path.relpath(config.path), variant))


def tagger_checkpoint(config, work):
    """The tagger's ``best`` checkpoint written by ``tagger_experiment.py``."""
    return _require(os.path.join(work, TAGGER, 'tagger', 'best'), 'tagger',
                    'python experiments/tagger_experiment.py %s'
                    % os.path.relpath(config.path))


def experiment_weights(path=None, repo=None):
    """The model-zoo weights for an experiment script: ``path`` if given
    (it must exist: a TaggerError otherwise), else
    :func:`lasagne_tagger.model.weights.find_weights` (``$LASAGNE_TAGGER_WEIGHTS``
    or ``pretrained/blvc_googlenet.pkl`` in the working directory), else
    ``pretrained/blvc_googlenet.pkl`` in ``repo``; None when none exists."""
    from ..model import weights
    if path:
        if not os.path.isfile(path):
            raise TaggerError('weights file does not exist', path)
        return path
    found = weights.find_weights()
    if found is None and repo is not None:
        found = weights.find_weights(os.path.join(repo, 'pretrained',
                                                  'blvc_googlenet.pkl'))
    return found


def _plain(value):
    """JSON-ready copy: NumPy scalars and arrays to Python, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_json(path, data):
    """Write ``data`` as indented JSON, atomically; returns ``path``."""
    make_parent(path)
    atomic_write_json(path, _plain(data))
    return path


def read_json(path):
    """A JSON file's object; TaggerError naming the file if unreadable."""
    try:
        with open(path, encoding='utf-8') as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise TaggerError('no such file', path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TaggerError('cannot read (%s)' % exc, path) from None
    except ValueError as exc:
        raise TaggerError('not valid JSON (%s)' % exc, path) from None
    if not isinstance(data, dict):
        raise TaggerError('expected a JSON object', path)
    return data


# --- ImageNet synsets against clothing tags ----------------------------------

_WNID = re.compile(r'^n\d{8}\s+')
_SPLIT = re.compile(r'[\s/\-]+')


def normalise_words(text):
    """Lower-case words of ``text`` with the plural rule of the module
    docstring: ``'Running-Shoes'`` -> ``['running', 'shoe']``."""
    words = []
    for word in _SPLIT.split(text.lower()):
        if not word:
            continue
        if len(word) >= 4 and word.endswith('s') and not word.endswith('ss'):
            word = word[:-1]
        words.append(word)
    return words


def synset_synonyms(synset):
    """``'n04370456 jersey, T-shirt, tee shirt'`` -> ``['jersey',
    'T-shirt', 'tee shirt']`` (the WordNet id is optional)."""
    text = _WNID.sub('', synset.strip())
    return [s.strip() for s in text.split(',') if s.strip()]


def synset_names_tag(synset, tag):
    """Whether ``synset`` names ``tag`` (the rule of the module docstring)."""
    want = normalise_words(tag)
    if not want:
        return False
    for synonym in synset_synonyms(synset):
        words = normalise_words(synonym)
        n = len(want)
        for i in range(len(words) - n + 1):
            if words[i:i + n] == want:
                return True
        if n == 1 and len(want[0]) >= 4 and any(
                w.endswith(want[0]) and w != want[0] for w in words):
            return True
    return False


def synset_tags(synset, tags):
    """The tags of ``tags`` that ``synset`` names, in ``tags`` order."""
    return [t for t in tags if synset_names_tag(synset, t)]


def imagenet_tag_sets(tops, tags):
    """Per photo, the set of ``tags`` named by its top synsets.

    Parameters
    ----------
    tops : list of list of (str, float)
        Each photo's top-k ``(synset, probability)`` (as
        :func:`lasagne_tagger.model.imagenet.top_k` returns).
    tags : list of str
        The taxonomy's tags.
    """
    return [set(t for synset, _ in top for t in synset_tags(synset, tags))
            for top in tops]


# --- data and figures --------------------------------------------------------

def pick_per_class(labels, per_class):
    """Positions of the first ``per_class`` items of every label, in label
    then position order (deterministic)."""
    labels = np.asarray(labels)
    if per_class < 1:
        raise TaggerError('per_class must be >= 1, got %r' % (per_class,))
    picked = []
    for label in np.unique(labels):
        picked.extend(np.flatnonzero(labels == label)[:per_class].tolist())
    return picked


def save_image(array, path, enlarge_to=None, thumbnail=None):
    """Save a uint8 (H, W, 3) image (PNG or JPEG by the file name).

    ``enlarge_to``: scale up (nearest neighbour) to this many pixels on the
    long side when smaller; ``thumbnail``: scale down (Pillow's thumbnail)
    when larger.  Written atomically; returns ``path``.
    """
    from PIL import Image
    image = Image.fromarray(np.asarray(array, dtype=np.uint8))
    if enlarge_to and max(image.size) < enlarge_to:
        scale = enlarge_to / float(max(image.size))
        image = image.resize((int(round(image.width * scale)),
                              int(round(image.height * scale))),
                             Image.NEAREST)
    if thumbnail:
        image.thumbnail((thumbnail, thumbnail))
    make_parent(path)
    ext = os.path.splitext(path)[1].lower()
    with atomic_path(path, what='write the image') as tmp:
        if ext in ('.jpg', '.jpeg'):
            image.save(tmp, format='JPEG', quality=85)
        else:
            image.save(tmp, format='PNG')
    return path


def plot_bars(groups, series, out_png, title=None, ylabel='score'):
    """Grouped bar chart: ``groups`` (x labels), ``series`` a dict of
    label -> one value per group (None for a missing bar).  Returns
    ``out_png``."""
    from matplotlib.figure import Figure
    from ..evaluation.plots import _save

    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.subplots()
    n = max(len(series), 1)
    width = 0.8 / n
    for k, (label, values) in enumerate(series.items()):
        xs = [i + (k - (n - 1) / 2.0) * width for i in range(len(groups))]
        ys = [float('nan') if v is None else v for v in values]
        bars = ax.bar(xs, ys, width=width, label=label, color='C%d' % k)
        for bar, v in zip(bars, values):
            if v is not None:
                ax.annotate('%.2f' % v, (bar.get_x() + bar.get_width() / 2,
                                         v), ha='center', va='bottom',
                            fontsize='small')
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis='y', alpha=0.3)
    ax.legend(loc='upper right', fontsize='small')
    if title:
        ax.set_title(title)
    return _save(fig, out_png)


def run_script(function, *args, **kwargs):
    """Call an experiment script's ``run``; a TaggerError becomes one
    ``error:`` line on stderr and the exit status 2 (else 0)."""
    import sys
    try:
        function(*args, **kwargs)
    except TaggerError as exc:
        print('error: %s' % exc, file=sys.stderr)
        return 2
    return 0
