"""Using the whole system: photos in, tags out; and measuring the tags.

* :class:`Pipeline` -- a fine-tuned CNN checkpoint + a tagger checkpoint,
  compiled once: :meth:`Pipeline.tag_crops` and :meth:`Pipeline.tag_files`.
* :func:`evaluate_tags` -- tag precision/recall/F1 (micro, macro) and exact
  match on single-garment images of a store split, and on multi-garment
  composites built from them (truth: the union of their tag sets), as the
  blog's "~80% on images with several garments" claim.
* :func:`render_tags` -- the blog's figure: the photo with its tags.
* :func:`add_training_composites` -- the composites control: the training
  features plus those of composites of training photos, each labelled with
  its combination of classes (tags: the union of theirs).
"""
import os

import numpy as np

from ..atomic import atomic_path
from ..errors import TaggerError

__all__ = ['Pipeline', 'evaluate_tags', 'render_tags',
           'add_training_composites', 'combination_name']


class Pipeline(object):
    """CNN features -> tagger, both from checkpoints, compiled lazily."""

    def __init__(self, cnn_prefix, tagger_prefix):
        from ..training import finetune
        from . import tagger
        from ..model.imagenet import compile_forward
        self.net, self.cnn_meta = finetune.load_classifier(cnn_prefix)
        self.decoder, self.tagger_meta = tagger.load_tagger(tagger_prefix)
        layer = self.tagger_meta['feature_layer']
        width = int(np.prod(self.net[layer].output_shape[1:]))
        if width != self.tagger_meta['feature_width']:
            raise TaggerError('tagger expects %d-d features, the CNN\'s %s '
                              'gives %d' % (self.tagger_meta['feature_width'],
                                            layer, width), tagger_prefix)
        self.image_size = self.cnn_meta['image_size']
        self._forward = compile_forward(self.net, (layer,))

    @property
    def vocabulary(self):
        return self.decoder.vocab

    def features(self, crops, batch_size=32):
        from ..data.preprocess import to_network_input
        out = []
        for start in range(0, len(crops), batch_size):
            batch = to_network_input(crops[start:start + batch_size])
            out.append(self._forward(batch)[0].reshape(len(batch), -1))
        return np.concatenate(out) if out else np.zeros((0, 0))

    def tag_crops(self, crops, beam=None):
        """``[(tag, probability), ...]`` per uint8 crop (greedy or beam)."""
        feats = self.features(crops)
        if beam and beam > 1:
            return self.decoder.beam(feats, beam_width=beam)
        return self.decoder.greedy(feats)

    def tag_files(self, paths, beam=None, upscale=False):
        """Tags per readable photo and ``(path, error)`` per bad one."""
        from ..data.preprocess import load_crops
        if not paths:
            raise TaggerError('no photos given')
        crops, good, bad = load_crops(paths, size=self.image_size,
                                      upscale=upscale)
        tags = self.tag_crops(np.stack(crops), beam=beam) if crops else []
        return list(zip(good, tags)), bad


def _truth_sets(labels, class_tags):
    return [set(class_tags[int(l)]) for l in labels]


def _classes_in_turn(labels, n):
    """Positions of up to ``n`` items taking the classes in turn: the first
    item of each class (in label order), then the second, ..."""
    labels = np.asarray(labels)
    rank = np.zeros(len(labels), dtype=np.int64)
    seen = {}
    for i, label in enumerate(labels.tolist()):
        rank[i] = seen.get(label, 0)
        seen[label] = rank[i] + 1
    return np.lexsort((labels, rank))[:n].tolist()


def evaluate_tags(pipeline, store_path, split, n_composites=200, k=2,
                  beam=None, seed=0, examples=8):
    """Tag metrics on a store split: single garments and composites.

    Returns
    -------
    dict
        ``single`` and ``multi`` tag metrics (see :func:`metrics.tag_metrics`,
        each with the bootstrap ``intervals`` of its micro scores over the
        images, :func:`metrics.tag_f1_intervals`) and a few ``examples``
        (index, predicted and true tags) of each.
    """
    from ..data import composites, store as store_mod
    from ..evaluation import metrics
    vocab = pipeline.vocabulary
    tax = vocab.taxonomy
    classes = pipeline.cnn_meta['classes']
    if tax is None or any(c not in tax for c in classes):
        raise TaggerError('the tagger\'s taxonomy does not cover the CNN\'s '
                          'classes %s' % classes)
    class_tags = [list(tax[c]) for c in classes]
    with store_mod.open_store(store_path) as store:
        if list(store.classes) != list(classes):
            raise TaggerError('store classes %s differ from the CNN\'s %s'
                              % (list(store.classes), classes), store_path)
        rows = store.indices(split)
        if not len(rows):
            raise TaggerError('split %r is empty' % split, store_path)
        crops, labels = store.read(rows)
    predicted = pipeline.tag_crops(crops, beam=beam)
    pred_sets = [set(t for t, _ in p) for p in predicted]
    truth = _truth_sets(labels, class_tags)
    result = {'split': split, 'beam': beam or 1,
              'single': metrics.tag_metrics(truth, pred_sets)}
    result['single']['intervals'] = metrics.tag_f1_intervals(truth, pred_sets)
    result['single_examples'] = [
        {'row': int(rows[i]), 'predicted': predicted[i],
         'true': class_tags[int(labels[i])]}
        for i in _classes_in_turn(labels, examples)]
    if n_composites and len(set(labels.tolist())) >= k:
        images, idx, label_lists = composites.make_composites(
            crops, labels, n_composites, k=k, seed=seed)
        multi_pred = pipeline.tag_crops(images, beam=beam)
        truth = composites.composite_truth(label_lists, class_tags)
        multi_sets = [set(t for t, _ in p) for p in multi_pred]
        result['multi'] = metrics.tag_metrics(truth, multi_sets)
        result['multi']['intervals'] = metrics.tag_f1_intervals(truth,
                                                                multi_sets)
        result['multi']['k'] = k
        result['multi_examples'] = [
            {'sources': [int(rows[j]) for j in idx[i]],
             'predicted': multi_pred[i], 'true': sorted(truth[i])}
            for i in range(min(examples, len(images)))]
        result['_composites'] = images[:examples]
    return result


def combination_name(class_names):
    """The class of a composite: its garments' class names, sorted, joined
    by ``+`` (``'shirt+t-shirt'``)."""
    return '+'.join(sorted(class_names))


def add_training_composites(cnn_prefix, store_path, features_path, taxonomy,
                            out_dir, n, k=2, split='train', seed=1,
                            batch_size=32):
    """Features and taxonomy for a tagger trained with composites too.

    Builds ``n`` ``k``-garment composites of the ``split`` photos
    (:func:`composites.make_composites`), runs them through the CNN at the
    features file's layer and rotations, and writes to ``out_dir``:
    ``features.h5`` (every row of ``features_path`` plus the composites, in
    ``split``, each labelled with a combination class such as
    ``'shirt+t-shirt'``) and ``taxonomy.json`` (the taxonomy's classes plus
    each combination, whose tags are its classes' tags in class-name order,
    each once).  The tagger then learns composites like any other class; the
    evaluation's composites come from another split and seed.

    A finished ``out_dir`` (both files) is returned as it is: the same
    arguments give the same files.

    Returns
    -------
    (str, str)
        The features and taxonomy paths.
    """
    from ..data import composites, datasets, store as store_mod
    from ..training import finetune
    from ..atomic import write_json
    from .features import open_features, rotated_features, write_features
    from ..model.imagenet import compile_forward

    if not isinstance(n, (int, np.integer)) or n < 1:
        raise TaggerError('the number of training composites must be an '
                          'integer >= 1, got %r' % (n,))
    feats_out = os.path.join(out_dir, 'features.h5')
    tax_out = os.path.join(out_dir, 'taxonomy.json')
    if os.path.isfile(feats_out) and os.path.isfile(tax_out):
        return feats_out, tax_out
    table = open_features(features_path)
    tax = datasets.load_taxonomy(taxonomy)
    class_tags = datasets.class_tags(tax, table.classes)
    with store_mod.open_store(store_path) as store:
        if list(store.classes) != table.classes:
            raise TaggerError('store classes %s differ from the features\' '
                              '%s' % (list(store.classes), table.classes),
                              store_path)
        rows = store.indices(split)
        if not len(rows):
            raise TaggerError('split %r is empty' % split, store_path)
        crops, labels = store.read(rows)
    images, _, label_lists = composites.make_composites(
        crops, labels, n, k=k, seed=seed)
    names = [combination_name(table.classes[l] for l in ll)
             for ll in label_lists.tolist()]
    combos = sorted(set(names))
    clash = [c for c in combos if c in tax]
    if clash:
        raise TaggerError('the taxonomy already has classes named %s'
                          % ', '.join(clash), os.fspath(taxonomy))
    combined = dict(tax)
    for combo in combos:
        tags = []
        for part in combo.split('+'):
            tags += [t for t in class_tags[table.classes.index(part)]
                     if t not in tags]
        combined[combo] = tags
    net, _ = finetune.load_classifier(cnn_prefix)
    forward = compile_forward(net, (table.layer,))
    extra = np.concatenate([
        rotated_features(forward, images[i:i + batch_size], table.rotations,
                         table.width)
        for i in range(0, len(images), batch_size)])
    table.rows(split)                    # the split must be in the file
    classes = table.classes + combos
    os.makedirs(out_dir, exist_ok=True)
    write_json(tax_out, {
        'name': 'composites control',
        'description': 'the classes of %s plus the %d-garment combinations '
                       'of %d training composites' % (os.fspath(taxonomy),
                                                      k, n),
        'classes': combined})
    write_features(
        feats_out,
        np.concatenate([table.all_rotations(), extra]),
        np.concatenate([table.labels, [classes.index(c) for c in names]]),
        np.concatenate([table.splits, np.full(
            len(names), table.split_names.index(split))]),
        table.split_names, classes, table.layer,
        '%s + %d composites' % (os.fspath(cnn_prefix), n))
    return feats_out, tax_out


def render_tags(crop_or_path, tags, out_path, title=None, size=None):
    """Draw the photo with its tags beside it (PNG, written atomically)."""
    from PIL import Image, ImageDraw
    from ..data.preprocess import load_image
    if isinstance(crop_or_path, np.ndarray):
        image = Image.fromarray(crop_or_path)
    else:
        image = load_image(crop_or_path)
    side = size or max(224, min(image.size))
    image = image.copy()
    image.thumbnail((side, side))
    line = 16
    panel = max(180, 10 + 8 * max([len(t) + 8 for t, _ in tags] or [10]))
    canvas = Image.new('RGB', (image.width + panel,
                               max(image.height, line * (len(tags) + 2))),
                       'white')
    canvas.paste(image, (0, 0))
    draw = ImageDraw.Draw(canvas)
    y = 6
    if title:
        draw.text((image.width + 8, y), title, fill=(0, 0, 0))
        y += line
    for tag, prob in tags:
        draw.text((image.width + 8, y), '%s  %.0f%%' % (tag, 100 * prob),
                  fill=(20, 20, 120))
        y += line
    with atomic_path(out_path, what='write the image') as tmp:
        canvas.save(tmp, format='PNG')
    return out_path


def run_tagger_stage(out_dir, store_path, cnn_prefix, taxonomy, test_split,
                     tagger_settings=None, rotations=False, beam=None,
                     n_composites=200, progress=True, log=print,
                     timer=None, train_composites=0):
    """Features -> tagger training -> tag evaluation, into ``out_dir``.

    ``train_composites`` > 0 trains the tagger on that many two-garment
    composites of the training photos besides the single garments (the
    composites control, :func:`add_training_composites`).

    Returns a dict with the tagger history, the single- and multi-garment
    tag metrics, and example images written under ``out_dir/examples``.
    ``timer`` (a :class:`lasagne_tagger.runtime.timing.StageTimer`) times the
    stages: extract, train tagger, tag evaluation.
    """
    import dataclasses
    from ..evaluation import plots
    from . import tagger
    from ..config import config_from_dict
    from .features import extract_features
    from ..runtime.timing import StageTimer
    timer = timer or StageTimer()
    settings = dict(tagger_settings or {})
    fixed = sorted(set(settings) & {'features', 'taxonomy', 'use_rotations'})
    if fixed:
        raise TaggerError('tagger settings: %s set by the stage itself, not '
                          'by its settings' % ', '.join(fixed))
    # Strict, before any work: an unknown setting is an error naming it.
    config = config_from_dict(
        tagger.TaggerConfig, dict(settings, taxonomy=taxonomy,
                                  use_rotations=rotations),
        source='tagger settings')

    feats = os.path.join(out_dir, 'features.h5')
    with timer.stage('extract'):
        extract_features(cnn_prefix, store_path, feats, rotations=rotations,
                         progress=progress)
    if train_composites:
        with timer.stage('training composites'):
            feats, taxonomy = add_training_composites(
                cnn_prefix, store_path, feats, taxonomy,
                os.path.join(out_dir, 'composites'), train_composites)
    config = dataclasses.replace(config, features=feats, taxonomy=taxonomy)
    run_dir = os.path.join(out_dir, 'tagger')
    with timer.stage('train tagger'):
        history = tagger.train_tagger(config, run_dir, resume=True,
                                      progress=progress, log=log)
    curve = plots.plot_tag_accuracy(
        [h['iteration'] for h in history],
        [h['val_tag_accuracy'] for h in history],
        os.path.join(run_dir, 'tag_accuracy.png'),
        title='LSTM tag accuracy (validation, teacher-forced)')
    with timer.stage('tag evaluation'):
        pipeline = Pipeline(cnn_prefix, os.path.join(run_dir, 'best'))
        result = evaluate_tags(pipeline, store_path, test_split,
                               n_composites=n_composites, beam=beam)
    examples = os.path.join(out_dir, 'examples')
    os.makedirs(examples, exist_ok=True)
    from PIL import Image
    from ..data.store import open_store
    with open_store(store_path) as store:
        for i, ex in enumerate(result['single_examples']):
            crop, _ = store.read([ex['row']])
            ex['image'] = 'examples/single_%d.png' % i
            Image.fromarray(crop[0]).save(os.path.join(out_dir, ex['image']))
    for i, ex in enumerate(result.get('multi_examples', [])):
        ex['image'] = 'examples/multi_%d.png' % i
        Image.fromarray(result['_composites'][i]).save(
            os.path.join(out_dir, ex['image']))
    result.pop('_composites', None)
    result['history'] = history
    result['tag_accuracy_png'] = curve
    return result
