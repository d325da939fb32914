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
    p.add_argument('--variants', default=','.join(VARIANTS),
                   help='comma-separated subset of %s' % ', '.join(VARIANTS))
    p.add_argument('--set', action='append', metavar='KEY=VALUE',
                   help='override a fine-tuning setting for every variant')
    p.add_argument('--quiet', action='store_true')
    return p


def run(config_path, out, work, variants, overrides=(), progress=True):
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    from lasagne_tagger import datasets, finetune, plots, store
    from lasagne_tagger.config import load_config
    from lasagne_tagger.errors import TaggerError

    with open(config_path) as fh:
        exp = json.load(fh)
    base = os.path.dirname(os.path.abspath(config_path))
    data = os.path.normpath(os.path.join(base, exp['data']))
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise TaggerError('unknown variant(s) %s' % ', '.join(unknown))
    os.makedirs(out, exist_ok=True)
    os.makedirs(work, exist_ok=True)
    dataset = datasets.read_acs(data) if exp.get('acs') else \
        datasets.read_folder_dataset(data)
    store_path = os.path.join(work, 'store-%d.h5' % exp['image_size'])
    print(store.prepare(dataset, store_path, size=exp['image_size'],
                        upscale=True, progress=progress))
    results, histories = {}, {}
    for name in variants:
        settings = dict(exp['finetune'], store=store_path, **VARIANTS[name])
        tmp = os.path.join(work, name + '.config.json')
        with open(tmp, 'w') as fh:
            json.dump(settings, fh, indent=2)
        config = load_config(finetune.FinetuneConfig, tmp, overrides or ())
        run_dir = os.path.join(work, name)
        history = finetune.train(config, run_dir, resume=True,
                                 progress=progress)
        histories[name] = history
        last = history[-1]
        best = max(history, key=lambda h: h['val_mean_class_accuracy'])
        results[name] = {'final': last, 'best_epoch': best['epoch'],
                         'best_val_mean_class_accuracy':
                             best['val_mean_class_accuracy'],
                         'final_gap': last['gap'],
                         'l2': config.l2, 'rotate': config.rotate}
        plots.plot_run(run_dir)
        os.makedirs(os.path.join(out, name), exist_ok=True)
        for small in os.listdir(run_dir):
            if small.endswith(('.png', '.jsonl')) or small == 'config.json':
                shutil.copy(os.path.join(run_dir, small),
                            os.path.join(out, name, small))
    plots.plot_curves(histories, os.path.join(out, 'curves.png'),
                      title='%s: L2 and rotation' % exp.get('name', ''))
    summary = {'config': exp, 'variants': results}
    with open(os.path.join(out, 'results.json'), 'w') as fh:
        json.dump(summary, fh, indent=2)
    for name, r in results.items():
        print('%-12s final train acc %.3f val acc %.3f gap %.3f | best val '
              'mean-class acc %.3f (epoch %d)'
              % (name, r['final']['train_accuracy'],
                 r['final']['val_accuracy'], r['final_gap'],
                 r['best_val_mean_class_accuracy'], r['best_epoch']))
    return summary


def main(argv=None):
    args = opts_parser().parse_args(argv)
    name = os.path.splitext(os.path.basename(args.config))[0]
    here = os.path.dirname(os.path.abspath(__file__))
    out = args.out or os.path.join(here, 'results', name, 'finetune_ablation')
    work = args.work or os.path.join(os.path.dirname(here), 'runs',
                                     'experiments', name)
    run(args.config, out, work, args.variants.split(','), args.set,
        progress=not args.quiet)


if __name__ == '__main__':
    main()
