"""DCNN-RNN tags against ImageNet GoogLeNet tags, on the same photos (blog
claim 5).

Takes the first ``"per_class"`` photos of every class of the ``"compare"``
section's ``"split"`` and ``"n_composites"`` two-garment composites built
from them, and tags each twice: with the fine-tuned CNN + LSTM tagger of
``tagger_experiment.py`` (at the store's crop size), and with the
model-zoo ImageNet GoogLeNet (224 px crops of the same files; the tags its
top-k synsets name, see :mod:`lasagne_tagger.reporting.experiments`).  Both are scored
against the taxonomy tags with the same precision/recall/F1.  Writes to OUT
``results.json``, ``compare.png`` and ``examples/*.png``.

Without the model-zoo weights the DCNN-RNN side still runs and
``results.json`` says the ImageNet side was not run, and why.

    python experiments/compare_tags.py experiments/configs/clothing-small.json
"""
import argparse
import os
import sys
import time

EXPERIMENT = 'compare_tags'
SECTION_KEYS = ('_note', 'split', 'per_class', 'n_composites', 'top', 'seed',
                'examples', 'batch_size')


def opts_parser():
    """The command line (defaults shown in ``--help``)."""
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('config', help='experiment JSON with "tagger" and '
                                  '"compare" sections')
    p.add_argument('--out', default=None,
                   help='results folder (default: experiments/results/'
                        '<config name>/compare_tags)')
    p.add_argument('--work', default=None,
                   help='store and checkpoints (default: runs/experiments/'
                        '<config name>)')
    p.add_argument('--weights', default=None,
                   help='blvc_googlenet.pkl (default: $LASAGNE_TAGGER_WEIGHTS'
                        ' or pretrained/blvc_googlenet.pkl)')
    p.add_argument('--quiet', action='store_true')
    return p


def _imagenet_side(path, crops224, top, batch_size, progress):
    """Top-k synsets of every 224 px crop."""
    import numpy as np
    from lasagne_tagger.model import imagenet
    from lasagne_tagger.data import preprocess
    from lasagne_tagger.runtime.progress import progress_bar

    net, synsets = imagenet.load_imagenet_model(path)
    forward = imagenet.compile_forward(net)
    tops = []
    bar = progress_bar(len(crops224), 'imagenet', enabled=progress, unit='img')
    for start in range(0, len(crops224), batch_size):
        batch = preprocess.to_network_input(
            np.asarray(crops224[start:start + batch_size]))
        tops.extend(imagenet.top_k(forward(batch)[0], synsets, top))
        bar.update(len(batch))
    bar.close()
    return tops


def run(config_path, out=None, work=None, weights=None, progress=True,
        log=print):
    """Run the experiment; returns the results dict (also in results.json).

    Parameters
    ----------
    config_path : str
        Experiment config with ``"tagger"`` and ``"compare"`` sections.
    out, work : str, optional
        Results and work folders.
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
    import numpy as np
    from lasagne_tagger.data import composites, datasets, preprocess
    from lasagne_tagger.evaluation import metrics
    from lasagne_tagger.reporting import experiments as ex
    from lasagne_tagger.data import store as store_mod
    from lasagne_tagger.errors import TaggerError
    from lasagne_tagger.tagging.pipeline import Pipeline

    t0 = time.time()
    config = ex.load_experiment(config_path)
    section = config.section('compare', known=SECTION_KEYS)
    out, work = ex.default_dirs(config, EXPERIMENT, here, out, work)
    variant = config.section('tagger').get('cnn_variant')
    cnn = ex.cnn_checkpoint(config, work, variant)
    tagger = ex.tagger_checkpoint(config, work)
    store_path = ex.store_path(config, work)
    split = section.get('split', 'validation')
    top = int(section.get('top', 5))
    n_comp = int(section.get('n_composites', 100))
    seed = int(section.get('seed', 0))
    settings = {'split': split, 'per_class': section.get('per_class', 10),
                'n_composites': n_comp, 'top': top, 'seed': seed,
                'cnn_variant': variant, 'image_size': config.image_size}

    pipeline = Pipeline(cnn, tagger)
    classes = pipeline.cnn_meta['classes']
    taxonomy = pipeline.vocabulary.taxonomy
    if taxonomy is None or any(c not in taxonomy for c in classes):
        raise TaggerError('the tagger\'s taxonomy does not cover the CNN\'s '
                          'classes', tagger)
    class_tags = [list(taxonomy[c]) for c in classes]
    tags = datasets.taxonomy_tags(taxonomy, classes)
    with store_mod.open_store(store_path) as store:
        rows = store.indices(split)
        if not len(rows):
            raise TaggerError('split %r is empty' % split, store_path)
        picked = rows[ex.pick_per_class(store.labels[rows],
                                        int(settings['per_class']))]
        crops, labels = store.read(picked)
        paths = store.paths(picked)
    truth = [set(class_tags[int(l)]) for l in labels]
    comp, comp_idx, comp_labels = composites.make_composites(
        crops, labels, n_comp, k=2, seed=seed)
    comp_truth = composites.composite_truth(comp_labels, class_tags)

    log('DCNN-RNN tags for %d photos and %d composites'
        % (len(crops), len(comp)))
    dcnn = pipeline.tag_crops(crops)
    dcnn_multi = pipeline.tag_crops(comp)
    result = {'experiment': EXPERIMENT, 'claims': [5], 'config': config.raw,
              'settings': settings, 'tags': tags,
              'dcnn_rnn': {
                  'single': metrics.tag_metrics(
                      truth, [set(t for t, _ in p) for p in dcnn]),
                  'multi': metrics.tag_metrics(
                      comp_truth, [set(t for t, _ in p) for p in dcnn_multi]),
                  'top1_hit': _top1(dcnn, truth),
                  'top1_hit_multi': _top1(dcnn_multi, comp_truth)}}

    path = ex.experiment_weights(weights, repo=os.path.dirname(here))
    tops = tops_multi = None
    if path is None:
        result['status'] = 'partial: ImageNet side ' + ex.NOT_RUN_WEIGHTS
        result['imagenet'] = {'status': ex.NOT_RUN_WEIGHTS}
        log('ImageNet side %s' % ex.NOT_RUN_WEIGHTS)
    else:
        crops224 = np.stack([preprocess.load_crop(p, size=224, upscale=True)
                             for p in paths])
        comp224, idx224, _ = composites.make_composites(
            crops224, labels, n_comp, k=2, size=224, seed=seed)
        if not np.array_equal(idx224, comp_idx):
            raise TaggerError('composites differ between image sizes '
                              '(internal error)', store_path)
        log('ImageNet GoogLeNet (%s) on the same photos at 224 px' % path)
        all_tops = _imagenet_side(path, list(crops224) + list(comp224), top,
                                  int(section.get('batch_size', 8)),
                                  progress)
        tops, tops_multi = all_tops[:len(crops224)], all_tops[len(crops224):]
        result['status'] = 'ok'
        result['imagenet'] = {
            'status': 'ok', 'weights': os.path.abspath(path),
            'single': metrics.tag_metrics(truth,
                                          ex.imagenet_tag_sets(tops, tags)),
            'multi': metrics.tag_metrics(
                comp_truth, ex.imagenet_tag_sets(tops_multi, tags)),
            'top1_hit': _synset_top1(tops, truth, tags),
            'top1_hit_multi': _synset_top1(tops_multi, comp_truth, tags)}

    # Figure and examples.
    groups, series = [], {'DCNN-RNN': [], 'ImageNet GoogLeNet': []}
    for part, label in (('single', 'one'), ('multi', 'two')):
        for key, short in (('micro_precision', 'P'), ('micro_recall', 'R'),
                           ('micro_f1', 'F1')):
            groups.append('%s %s' % (label, short))
            series['DCNN-RNN'].append(result['dcnn_rnn'][part][key])
            series['ImageNet GoogLeNet'].append(
                result['imagenet'][part][key]
                if result['imagenet']['status'] == 'ok' else None)
    if path is None:
        del series['ImageNet GoogLeNet']
    ex.plot_bars(groups, series, os.path.join(out, 'compare.png'),
                 title='tags on %s: one garment / two-garment composites'
                 % config.name, ylabel='micro-averaged tag score')
    result['figures'] = {'compare': 'compare.png'}
    ex_dir = os.path.join(out, 'examples')
    os.makedirs(ex_dir, exist_ok=True)
    for name in os.listdir(ex_dir):
        if name.endswith('.png'):
            os.remove(os.path.join(ex_dir, name))
    n_ex = int(section.get('examples', 6))
    examples = []
    shown = [('single', i) for i in range(0, len(crops),
                                          max(1, len(crops) // n_ex))][:n_ex]
    shown += [('multi', i) for i in range(min(n_ex // 2, len(comp)))]
    for kind, i in shown:
        image = 'examples/%s_%d.png' % (kind, i)
        ex.save_image(crops[i] if kind == 'single' else comp[i],
                      os.path.join(out, image), enlarge_to=96)
        item = {'image': image, 'kind': kind,
                'true': sorted(truth[i] if kind == 'single'
                               else comp_truth[i]),
                'dcnn_rnn': (dcnn if kind == 'single' else dcnn_multi)[i]}
        if tops is not None:
            tp = (tops if kind == 'single' else tops_multi)[i]
            item['imagenet_top'] = tp
            item['imagenet_tags'] = sorted(ex.imagenet_tag_sets([tp],
                                                                tags)[0])
        examples.append(item)
    result['examples'] = examples
    result['wall_s'] = time.time() - t0
    results_path = os.path.join(out, 'results.json')
    ex.write_json(results_path, result)
    for side in ('dcnn_rnn', 'imagenet'):
        r = result[side]
        if 'single' in r:
            log('%-9s one garment micro F1 %.3f | two garments micro F1 %.3f'
                % (side, r['single']['micro_f1'], r['multi']['micro_f1']))
    log('wrote %s' % results_path)
    return result


def _top1(predicted, truth):
    """Fraction of images whose first predicted tag is a true tag."""
    hits = [bool(p) and p[0][0] in t for p, t in zip(predicted, truth)]
    return sum(hits) / float(len(hits)) if hits else None


def _synset_top1(tops, truth, tags):
    """Fraction of images whose top-1 synset names a true tag."""
    from lasagne_tagger.reporting.experiments import synset_tags
    hits = [bool(set(synset_tags(tp[0][0], tags)) & t)
            for tp, t in zip(tops, truth)]
    return sum(hits) / float(len(hits)) if hits else None


def main(argv=None):
    """Command-line entry point; a TaggerError is one ``error:`` line."""
    args = opts_parser().parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    from lasagne_tagger.reporting.experiments import run_script
    return run_script(run, args.config, args.out, args.work, args.weights,
                      progress=not args.quiet)


if __name__ == '__main__':
    sys.exit(main())
