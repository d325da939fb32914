"""Fine-tuning with and without L2 and rotation augmentation (blog claim 2).

Prepares the dataset once, trains one run per variant ({no L2, L2} x {no
rotation, rotation}), and writes the small results to OUT:
``results.json`` (per-variant final and best metrics, the train/val gap),
``curves.png`` (all variants on one figure) and each variant's
``<variant>/metrics.jsonl``, ``config.json``, ``curves.png`` and
``confusion.png``.  The
prepared store and the checkpoints go to WORK (large; not for the
repository).  Resumable: rerunning continues every unfinished run.

    python experiments/finetune_ablation.py experiments/configs/clothing-small.json
"""
import argparse
import json
import os
import shutil
import sys

VARIANTS = {
    'none': {'l2': 0.0, 'rotate': False},
    'l2': {'rotate': False},
    'rotation': {'l2': 0.0},
    'l2+rotation': {},
}
# note: a config's "extra_variants" ({name: {setting: value}}) adds variants
# beside these four (e.g. flips and shifts, which the blog did not use);
# they never replace the blog's.


def opts_parser():
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('config', help='experiment JSON: "data", "acs" (bool), '
                                  '"image_size", "finetune" settings')
    p.add_argument('--out', default=None,
                   help='results folder (default: experiments/results/'
                        '<config name>/finetune_ablation)')
    p.add_argument('--work', default=None,
                   help='store and checkpoints (default: runs/experiments/'
                        '<config name>)')
    p.add_argument('--variants', default=None,
                   help='comma-separated subset of %s and the config\'s '
                        '"extra_variants" (default: all of them)'
                        % ', '.join(VARIANTS))
    p.add_argument('--set', action='append', metavar='KEY=VALUE',
                   help='override a fine-tuning setting for every variant')
    p.add_argument('--quiet', action='store_true')
    return p


def variant_table(exp, source):
    """The blog's four variants plus the config's "extra_variants"."""
    from lasagne_tagger.errors import TaggerError
    extra = exp.get('extra_variants', {})
    if not isinstance(extra, dict) or not all(
            isinstance(v, dict) for v in extra.values()):
        raise TaggerError('"extra_variants" must map names to objects of '
                          'fine-tuning settings', source)
    clash = sorted(set(extra) & set(VARIANTS))
    if clash:
        raise TaggerError('"extra_variants" may not redefine %s'
                          % ', '.join(clash), source)
    table = dict(VARIANTS)
    table.update((k, {f: v for f, v in s.items() if not f.startswith('_')})
                 for k, s in extra.items())
    return table


def run(config_path, out, work, variants, overrides=(), progress=True):
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    from lasagne_tagger.data import datasets, store
    from lasagne_tagger.training import finetune
    from lasagne_tagger.evaluation import metrics, plots
    from lasagne_tagger.reporting import experiments as ex
    from lasagne_tagger.config import load_config
    from lasagne_tagger.errors import TaggerError

    with open(config_path) as fh:
        exp = json.load(fh)
    base = os.path.dirname(os.path.abspath(config_path))
    data = os.path.normpath(os.path.join(base, exp['data']))
    table = variant_table(exp, config_path)
    variants = list(variants or table)
    unknown = [v for v in variants if v not in table]
    if unknown:
        raise TaggerError('unknown variant(s) %s (have %s)'
                          % (', '.join(unknown), ', '.join(table)))
    os.makedirs(out, exist_ok=True)
    os.makedirs(work, exist_ok=True)
    dataset = datasets.read_acs(data) if exp.get('acs') else \
        datasets.read_folder_dataset(data)
    store_path = os.path.join(work, 'store-%d.h5' % exp['image_size'])
    print(store.prepare(dataset, store_path, size=exp['image_size'],
                        upscale=True, progress=progress))
    results, histories, predictions, labels = {}, {}, {}, None
    for name in variants:
        settings = dict(exp['finetune'], store=store_path, **table[name])
        tmp = os.path.join(work, name + '.config.json')
        ex.write_json(tmp, settings)
        config = load_config(finetune.FinetuneConfig, tmp, overrides or ())
        run_dir = os.path.join(work, name)
        history = finetune.train(config, run_dir, resume=True,
                                 progress=progress)
        histories[name] = history
        last = history[-1]
        best = max(history, key=lambda h: h['val_mean_class_accuracy'])
        final = finetune.evaluate(os.path.join(run_dir, 'last'), store_path,
                                  config.val_split)
        labels = final['labels']
        predictions[name] = final['predictions']
        results[name] = {'final': last, 'best_epoch': best['epoch'],
                         'best_val_mean_class_accuracy':
                             best['val_mean_class_accuracy'],
                         'final_gap': last['gap'],
                         'final_per_class_recall': {
                             c: r['recall']
                             for c, r in final['per_class'].items()},
                         'l2': config.l2, 'rotate': config.rotate,
                         'flip': config.flip, 'shift': config.shift,
                         'minutes': sum(h['seconds'] for h in history) / 60}
        plots.plot_run(run_dir)
        os.makedirs(os.path.join(out, name), exist_ok=True)
        for small in os.listdir(run_dir):
            if small.endswith(('.png', '.jsonl')) or small == 'config.json':
                shutil.copy(os.path.join(run_dir, small),
                            os.path.join(out, name, small))
    plots.plot_curves(histories, os.path.join(out, 'curves.png'),
                      title='%s: L2 and rotation' % exp.get('name', ''))
    # note: the blog gives no intervals; these are paired percentile
    # bootstrap intervals over the validation photos (metrics.py).
    intervals = metrics.accuracy_intervals(labels, predictions)
    for name in results:
        results[name]['val_accuracy_interval'] = intervals[name]['accuracy']
        results[name]['val_mean_class_accuracy_interval'] = \
            intervals[name]['mean_class_accuracy']
    summary = {'config': exp, 'variants': results,
               'val_accuracy_differences': intervals['differences'],
               'interval_level': intervals['level'],
               'interval_resamples': intervals['resamples']}
    ex.write_json(os.path.join(out, 'results.json'), summary)
    for name, r in results.items():
        print('%-12s final train acc %.3f val acc %.3f gap %.3f | best val '
              'mean-class acc %.3f (epoch %d)'
              % (name, r['final']['train_accuracy'],
                 r['final']['val_accuracy'], r['final_gap'],
                 r['best_val_mean_class_accuracy'], r['best_epoch']))
    return summary


def main(argv=None):
    """Command-line entry point; a TaggerError is one ``error:`` line."""
    args = opts_parser().parse_args(argv)
    name = os.path.splitext(os.path.basename(args.config))[0]
    here = os.path.dirname(os.path.abspath(__file__))
    out = args.out or os.path.join(here, 'results', name, 'finetune_ablation')
    work = args.work or os.path.join(os.path.dirname(here), 'runs',
                                     'experiments', name)
    sys.path.insert(0, os.path.dirname(here))
    from lasagne_tagger.reporting.experiments import run_script
    return run_script(run, args.config, out, work,
                      args.variants.split(',') if args.variants else None,
                      args.set, progress=not args.quiet)


if __name__ == '__main__':
    sys.exit(main())
