"""The search for the CPU stand-in's fine-tuning settings, re-runnable.

Each probe of the search config is one fine-tuning run of one variant
(``finetune_ablation.py`` with ``--variants VARIANT``) at the probe's image
size and settings over the base experiment config.  Writes to OUT
``search.json`` and ``search.md``: per probe its settings, final and best
validation accuracy and mean-class accuracy, the smallest per-class recall
(0: a class never recalled), its training minutes and images/s, so the
chosen settings can be checked against the others.  Resumable: finished
probes are read back, unfinished ones continue.

    python experiments/stand_in_search.py experiments/configs/clothing-small-search.json
"""
import argparse
import importlib.util
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def opts_parser():
    """The command line (defaults shown in ``--help``)."""
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('search', help='search JSON: "base" (an experiment '
                                  'config, relative to this file), '
                                  '"variant", "probes" [{"name", '
                                  '"image_size", "set": {...}, "_why"}]')
    p.add_argument('--out', default=None,
                   help='results folder (default: experiments/results/'
                        '<base config name>)')
    p.add_argument('--work', default=None,
                   help='one folder per probe (default: runs/search/'
                        '<base config name>)')
    p.add_argument('--probes', default=None,
                   help='comma-separated probe names (default: all)')
    p.add_argument('--quiet', action='store_true', help='no progress bars')
    return p


def _ablation():
    spec = importlib.util.spec_from_file_location(
        'finetune_ablation', os.path.join(HERE, 'finetune_ablation.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(probe, variant, result):
    v = result['variants'][variant]
    final = v['final']
    recalls = v['final_per_class_recall']
    worst = min(recalls, key=recalls.get)
    return {'name': probe['name'], 'image_size': probe['image_size'],
            'set': probe.get('set', {}), 'why': probe.get('_why', ''),
            'epochs': final['epoch'],
            'val_accuracy': final['val_accuracy'],
            'val_accuracy_interval': v['val_accuracy_interval'],
            'val_mean_class_accuracy': final['val_mean_class_accuracy'],
            'best_val_mean_class_accuracy': v['best_val_mean_class_accuracy'],
            'train_accuracy': final['train_accuracy'], 'gap': v['final_gap'],
            'min_class_recall': recalls[worst], 'worst_class': worst,
            'classes_recalled': sum(r > 0 for r in recalls.values()),
            'classes': len(recalls), 'minutes': v['minutes'],
            'train_images_per_s': final['train_images_per_s']}


def table_markdown(rows, variant, aim):
    """The search as a Markdown table."""
    lines = ['# Stand-in search (%s)' % variant, '',
             'Aim: validation accuracy >= %.2f and mean-class accuracy >= '
             '%.2f with every class recalled.  Final epoch; minutes of '
             'training and validation (compiles excluded).' % (
                 aim['val_accuracy'], aim['val_mean_class_accuracy']), '',
             '| probe | px | settings | epochs | val acc [95%] | mean-class '
             '| worst class recall | gap | minutes | img/s | why |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append(
            '| %s | %d | %s | %d | %.3f [%.3f, %.3f] | %.3f | %s %.2f | %.3f '
            '| %.1f | %.0f | %s |' % (
                r['name'], r['image_size'],
                ', '.join('%s=%s' % kv for kv in sorted(r['set'].items())),
                r['epochs'], r['val_accuracy'],
                r['val_accuracy_interval'][0], r['val_accuracy_interval'][1],
                r['val_mean_class_accuracy'], r['worst_class'],
                r['min_class_recall'], r['gap'], r['minutes'],
                r['train_images_per_s'], r['why'].replace('|', '/')))
    return '\n'.join(lines) + '\n'


def run(search_path, out=None, work=None, probes=None, progress=True):
    """Run (or read back) the probes and write the table; returns rows."""
    sys.path.insert(0, os.path.dirname(HERE))
    import lasagne_tagger.runtime._theano  # noqa: F401 (prepares Theano)
    from lasagne_tagger.reporting import experiments as ex
    from lasagne_tagger.errors import TaggerError

    search = ex.read_json(search_path)
    for key in ('base', 'variant', 'probes'):
        if key not in search:
            raise TaggerError('missing key %r' % key, search_path)
    base_path = os.path.normpath(os.path.join(
        os.path.dirname(os.path.abspath(search_path)), search['base']))
    base = ex.read_json(base_path)
    name = os.path.splitext(os.path.basename(base_path))[0]
    out = out or os.path.join(HERE, 'results', name)
    work = work or os.path.join(os.path.dirname(HERE), 'runs', 'search', name)
    chosen = [p for p in search['probes']
              if probes is None or p.get('name') in probes]
    if probes is not None and len(chosen) != len(probes):
        raise TaggerError('unknown probe(s) %s' % ', '.join(
            sorted(set(probes) - {p.get('name') for p in chosen})),
            search_path)
    ablation = _ablation()
    rows = []
    for probe in chosen:
        if not isinstance(probe.get('name'), str) or \
                not isinstance(probe.get('image_size'), int):
            raise TaggerError('each probe needs a "name" and an integer '
                              '"image_size", got %r' % (probe,), search_path)
        folder = os.path.join(work, probe['name'])
        exp = dict(base, image_size=probe['image_size'],
                   data=os.path.normpath(os.path.join(
                       os.path.dirname(base_path), base['data'])))
        config = ex.write_json(os.path.join(folder, 'experiment.json'), exp)
        result = ablation.run(
            config, os.path.join(folder, 'out'), folder, [search['variant']],
            ['%s=%s' % (k, json.dumps(v) if isinstance(v, bool) else v)
             for k, v in sorted(probe.get('set', {}).items())],
            progress=progress)
        rows.append(_row(probe, search['variant'], result))
        ex.write_json(os.path.join(out, 'search.json'),
                      {'search': search, 'rows': rows})
    aim = search.get('aim', {'val_accuracy': 0.70,
                             'val_mean_class_accuracy': 0.60})
    with open(os.path.join(out, 'search.md'), 'w') as fh:
        fh.write(table_markdown(rows, search['variant'], aim))
    return rows


def main(argv=None):
    """Command-line entry point; a TaggerError is one ``error:`` line."""
    args = opts_parser().parse_args(argv)
    sys.path.insert(0, os.path.dirname(HERE))
    from lasagne_tagger.reporting.experiments import run_script
    return run_script(run, args.search, args.out, args.work,
                      args.probes.split(',') if args.probes else None,
                      progress=not args.quiet)


if __name__ == '__main__':
    sys.exit(main())
