"""What the ImageNet GoogLeNet calls clothing photos (blog claim 1).

The blog's starting point: the model-zoo GoogLeNet, trained on the 1000
ImageNet synsets, labels a photo of two people in a suit and a T-shirt
"Windsor tie".  This runs it on a set of photos: ``"photos"`` listed in the
config's ``"imagenet"`` section and/or the first ``"per_class"`` photos of
every class of the data's ``"split"``, plus two-garment composites of the
class ``"pairs"`` (e.g. suit + T-shirt on ACS), and writes to OUT
``results.json`` (each photo's top-k synsets, which of its clothing tags
they name, summary rates) and ``photos/*.jpg`` (the 224 px crops, small).
How a synset "names" a tag: :mod:`lasagne_tagger.reporting.experiments`.

Needs ``pretrained/blvc_googlenet.pkl`` (``lasagne-tagger fetch-weights``);
without it, ``results.json`` says "not run" and why, and the script exits 0.

    python experiments/imagenet_tags.py experiments/configs/clothing-small.json
"""
import argparse
import collections
import os
import sys
import time

EXPERIMENT = 'imagenet_tags'
SECTION_KEYS = ('_note', 'photos', 'split', 'per_class', 'pairs', 'per_pair',
                'top', 'seed', 'batch_size')


def opts_parser():
    """The command line (defaults shown in ``--help``)."""
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('config', help='experiment JSON with an "imagenet" '
                                  'section')
    p.add_argument('--out', default=None,
                   help='results folder (default: experiments/results/'
                        '<config name>/imagenet_tags)')
    p.add_argument('--weights', default=None,
                   help='blvc_googlenet.pkl (default: $LASAGNE_TAGGER_WEIGHTS'
                        ' or pretrained/blvc_googlenet.pkl)')
    p.add_argument('--quiet', action='store_true')
    return p


def _photos(config, section, taxonomy):
    """``[(path, class name or None), ...]``: the listed photos, then the
    first ``per_class`` of each class of ``split``."""
    from lasagne_tagger.reporting import experiments as ex
    from lasagne_tagger.errors import TaggerError

    chosen = []
    listed = section.get('photos', [])
    if not isinstance(listed, list):
        raise TaggerError('"imagenet" "photos" must be a list', config.path)
    for entry in listed:
        if isinstance(entry, str):
            entry = {'path': entry}
        if not isinstance(entry, dict) or not isinstance(entry.get('path'),
                                                         str):
            raise TaggerError('"imagenet" "photos": each entry is a path or '
                              '{"path": ..., "class": ...}', config.path)
        name = entry.get('class')
        if name is not None and name not in taxonomy:
            raise TaggerError('"imagenet" "photos": class %r is not in the '
                              'taxonomy' % name, config.path)
        chosen.append((os.path.join(os.path.dirname(config.path),
                                    entry['path']), name))
    per_class = int(section.get('per_class', 0))
    if per_class:
        dataset = config.read_dataset()
        items = dataset.split(section.get('split', 'validation'))
        for i in ex.pick_per_class([it.label for it in items], per_class):
            chosen.append((items[i].path, dataset.classes[items[i].label]))
    if not chosen:
        raise TaggerError('"imagenet": no photos (give "photos" or '
                          '"per_class")', config.path)
    return chosen


def run(config_path, out=None, weights=None, progress=True, log=print):
    """Run the experiment; returns the results dict (also in results.json).

    Parameters
    ----------
    config_path : str
        Experiment config with an ``"imagenet"`` section.
    out : str, optional
        Results folder.
    weights : str, optional
        The model-zoo pickle (default: see :func:`opts_parser`).
    progress : bool
        Progress display.
    log : callable
        Receives one line of text at a time.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.dirname(here))
    import lasagne_tagger.runtime._theano  # noqa: F401 (prepares Theano)
    from lasagne_tagger.data import datasets
    from lasagne_tagger.reporting import experiments as ex
    from lasagne_tagger.errors import TaggerError

    t0 = time.time()
    config = ex.load_experiment(config_path)
    section = config.section('imagenet', known=SECTION_KEYS)
    out, _ = ex.default_dirs(config, EXPERIMENT, here, out)
    results_path = os.path.join(out, 'results.json')
    top = int(section.get('top', 5))
    base = {'experiment': EXPERIMENT, 'claims': [1], 'config': config.raw,
            'settings': {'top': top, 'split': section.get('split',
                                                          'validation'),
                         'per_class': section.get('per_class', 0),
                         'pairs': section.get('pairs', []),
                         'per_pair': section.get('per_pair', 1)}}
    path = ex.experiment_weights(weights, repo=os.path.dirname(here))
    if path is None:
        base['status'] = ex.NOT_RUN_WEIGHTS
        ex.write_json(results_path, base)
        log('%s; wrote %s' % (ex.NOT_RUN_WEIGHTS, results_path))
        return base

    from lasagne_tagger.data import composites, preprocess
    from lasagne_tagger.model import imagenet
    from lasagne_tagger.runtime.progress import progress_bar
    import numpy as np

    taxonomy = datasets.load_taxonomy(config.taxonomy())
    tags = datasets.taxonomy_tags(taxonomy)
    photos = _photos(config, section, taxonomy)
    crops, kept, skipped = [], [], []
    for photo, name in photos:
        try:
            crops.append(preprocess.load_crop(photo, size=224, upscale=True))
            kept.append({'source': [photo], 'classes': [name] if name else []})
        except TaggerError as exc:
            skipped.append({'path': photo, 'error': str(exc)})
    if not crops:
        raise TaggerError('no readable photos', config.path)
    single_count = len(crops)
    # Two-garment composites of the configured class pairs: the blog's photo
    # showed two people, one in a suit and one in a T-shirt.
    per_pair = int(section.get('per_pair', 1))
    for pair in section.get('pairs', []):
        if not isinstance(pair, list) or len(pair) != 2 or \
                any(c not in taxonomy for c in pair):
            raise TaggerError('"imagenet" "pairs": %r is not two taxonomy '
                              'classes' % (pair,), config.path)
        idx = [i for i in range(single_count) if kept[i]['classes']
               and kept[i]['classes'][0] in pair]
        labels = [pair.index(kept[i]['classes'][0]) for i in idx]
        if len(set(labels)) < 2:
            raise TaggerError('"imagenet" "pairs": no chosen photos of both '
                              '%s and %s (raise "per_class")' % tuple(pair),
                              config.path)
        images, which, _ = composites.make_composites(
            np.stack([crops[i] for i in idx]), labels, per_pair, k=2,
            size=224, seed=int(section.get('seed', 0)))
        for image, sources in zip(images, which):
            crops.append(image)
            kept.append({'source': [kept[idx[j]]['source'][0]
                                    for j in sources],
                         'classes': [kept[idx[j]]['classes'][0]
                                     for j in sources]})

    log('ImageNet GoogLeNet (%s) on %d photos and %d composites'
        % (path, single_count, len(crops) - single_count))
    net, synsets = imagenet.load_imagenet_model(path)
    forward = imagenet.compile_forward(net)
    batch_size = int(section.get('batch_size', 8))
    bar = progress_bar(len(crops), 'imagenet', enabled=progress, unit='img')
    tops = []
    for start in range(0, len(crops), batch_size):
        batch = preprocess.to_network_input(
            np.stack(crops[start:start + batch_size]))
        tops.extend(imagenet.top_k(forward(batch)[0], synsets, top))
        bar.update(len(batch))
    bar.close()

    photo_dir = os.path.join(out, 'photos')
    os.makedirs(photo_dir, exist_ok=True)
    for name in os.listdir(photo_dir):
        if name.endswith('.jpg'):
            os.remove(os.path.join(photo_dir, name))
    rows = []
    for i, (item, crop, best) in enumerate(zip(kept, crops, tops)):
        truth = sorted(set(t for c in item['classes'] for t in taxonomy[c]))
        named_top1 = ex.synset_tags(best[0][0], tags)
        named = sorted(ex.imagenet_tag_sets([best], tags)[0])
        image = 'photos/%03d.jpg' % i
        ex.save_image(crop, os.path.join(out, image), thumbnail=160)
        rows.append({
            'image': image, 'composite': i >= single_count,
            'source': [os.path.relpath(s, config.data) for s in
                       item['source']],
            'classes': item['classes'], 'true_tags': truth,
            'top': [[s, p] for s, p in best],
            'top1_names': named_top1, 'topk_names': named,
            'top1_hit': bool(truth) and bool(set(named_top1) & set(truth)),
            'topk_hit': bool(truth) and bool(set(named) & set(truth))})

    with_truth = [r for r in rows if r['true_tags']]
    rate = lambda key: (sum(r[key] for r in with_truth) / len(with_truth)
                        if with_truth else None)
    top1 = collections.Counter(r['top'][0][0] for r in rows)
    summary = dict(base, status='ok', weights=os.path.abspath(path),
                   photos=rows, skipped=skipped, summary={
                       'photos': single_count,
                       'composites': len(rows) - single_count,
                       'with_true_tags': len(with_truth),
                       'top1_names_a_true_tag': rate('top1_hit'),
                       'topk_names_a_true_tag': rate('topk_hit'),
                       'top1_names_any_clothing_tag': sum(
                           bool(r['top1_names']) for r in rows) / len(rows),
                       'windsor_tie_in_topk': sum(
                           any('windsor tie' in s.lower() for s, _ in r['top'])
                           for r in rows),
                       'most_common_top1': top1.most_common(5)},
                   wall_s=time.time() - t0)
    ex.write_json(results_path, summary)
    for r in rows:
        log('%-32s top-1: %s' % (' + '.join(r['classes']) or r['source'][0],
                                 r['top'][0][0]))
    s = summary['summary']
    if s['top1_names_a_true_tag'] is not None:
        log('top-1 synset names a true clothing tag on %.0f%% of %d photos; '
            'top-%d on %.0f%%' % (100 * s['top1_names_a_true_tag'],
                                  s['with_true_tags'], top,
                                  100 * s['topk_names_a_true_tag']))
    log('wrote %s' % results_path)
    return summary


def main(argv=None):
    """Command-line entry point; a TaggerError is one ``error:`` line."""
    args = opts_parser().parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    from lasagne_tagger.reporting.experiments import run_script
    return run_script(run, args.config, args.out, args.weights,
                      progress=not args.quiet)


if __name__ == '__main__':
    sys.exit(main())
