"""LSTM tag accuracy against iterations, and tags of multi-garment images
(blog claims 3 and 4).

Takes the best CNN checkpoint of one ``finetune_ablation.py`` variant
(config ``"tagger": {"cnn_variant": ...}``), extracts its ``pool5/7x7_s1``
features (with the four rotations), trains the LSTM tagger for the
configured iterations, and measures the tags on the test split's single
garments and on two-garment composites built from them
(:func:`lasagne_tagger.tagging.pipeline.run_tagger_stage`).  Writes to OUT:
``results.json`` (the tag-accuracy curve, when it stabilises, tag
precision/recall/F1 micro and macro and exact match on single garments and
on composites, example predictions), ``tag_accuracy.png``,
``metrics.jsonl`` and ``examples/*.png``.  Features and the tagger's
checkpoints go to WORK/tagger.  Resumable: rerunning continues the
features and the tagger where they stopped.

With ``"control_composites": N`` in the section, a second tagger (the
control) trains on the same features plus N two-garment composites of the
training photos, and is measured the same way (``results.json``
``"control"``): how much of the composites' gap is the blog's setup
(single garments only in training) and how much the stand-in.

    python experiments/tagger_experiment.py experiments/configs/clothing-small.json
"""
import argparse
import os
import shutil
import sys
import time

EXPERIMENT = 'tagger'

# Keys of the "tagger" section besides the TaggerConfig "settings".
SECTION_KEYS = ('_note', 'cnn_variant', 'taxonomy', 'test_split', 'rotations',
                'beam', 'n_composites', 'settings', 'control_composites')


def opts_parser():
    """The command line (defaults shown in ``--help``)."""
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('config', help='experiment JSON with a "tagger" section: '
                                  '"cnn_variant", "test_split", "rotations", '
                                  '"n_composites", "beam", "settings" '
                                  '(TaggerConfig fields)')
    p.add_argument('--out', default=None,
                   help='results folder (default: experiments/results/'
                        '<config name>/tagger)')
    p.add_argument('--work', default=None,
                   help='store, checkpoints and features (default: '
                        'runs/experiments/<config name>)')
    p.add_argument('--set', action='append', metavar='KEY=VALUE',
                   help='override a tagger setting (TaggerConfig field)')
    p.add_argument('--quiet', action='store_true', help='no progress bars')
    return p


def _settings(config, section, overrides):
    """The TaggerConfig settings of the section plus overrides, checked."""
    import dataclasses
    from lasagne_tagger.tagging import tagger
    from lasagne_tagger.config import load_config
    from lasagne_tagger.errors import TaggerError

    settings = section.get('settings', {})
    if not isinstance(settings, dict):
        raise TaggerError('"tagger" "settings" must be an object',
                          config.path)
    fields = {f.name for f in dataclasses.fields(tagger.TaggerConfig)}
    bad = sorted(k for k in settings
                 if k not in fields or k in ('features', 'taxonomy',
                                             'use_rotations'))
    if bad:
        raise TaggerError('"tagger" "settings": unknown or fixed key(s) %s'
                          % ', '.join(bad), config.path)
    checked = load_config(tagger.TaggerConfig, None, [
        '%s=%s' % (k, 'null' if v is None else v)
        for k, v in settings.items()] + list(overrides or ()))
    return {k: getattr(checked, k) for k in fields
            if k not in ('features', 'taxonomy', 'use_rotations')}


def run(config_path, out=None, work=None, overrides=(), progress=True,
        log=print):
    """Run the experiment; returns the results dict (also in results.json).

    Parameters
    ----------
    config_path : str
        Experiment config (see ``experiments/configs``).
    out, work : str, optional
        Results and work folders (defaults: see :func:`opts_parser`).
    overrides : sequence of str
        ``KEY=VALUE`` tagger settings.
    progress : bool
        Progress bars.
    log : callable
        Receives one line of text at a time.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.dirname(here))
    import lasagne_tagger.runtime._theano  # noqa: F401 (prepares Theano)
    from lasagne_tagger.reporting import experiments as ex
    from lasagne_tagger.errors import TaggerError
    from lasagne_tagger.reporting.results_report import tag_curve_summary
    from lasagne_tagger.tagging.pipeline import run_tagger_stage

    t0 = time.time()
    config = ex.load_experiment(config_path)
    section = config.section('tagger', known=SECTION_KEYS)
    out, work = ex.default_dirs(config, EXPERIMENT, here, out, work)
    settings = _settings(config, section, overrides)
    cnn = ex.cnn_checkpoint(config, work, section.get('cnn_variant'))
    store = ex.store_path(config, work)
    if not os.path.isfile(store):
        raise TaggerError('prepared store missing: run finetune_ablation.py '
                          'on this config first', store)
    test_split = section.get('test_split', 'validation')
    rotations = bool(section.get('rotations', True))
    stage = os.path.join(work, EXPERIMENT)
    log('tagger on %s features of %s (%s), test split %r'
        % ('rotated' if rotations else 'upright', cnn, config.name,
           test_split))
    result = run_tagger_stage(
        stage, store, cnn, config.taxonomy(), test_split,
        tagger_settings=settings, rotations=rotations,
        beam=section.get('beam'),
        n_composites=int(section.get('n_composites', 200)),
        progress=progress, log=log)

    control = None
    n_control = section.get('control_composites') or 0
    if not isinstance(n_control, int) or n_control < 0:
        raise TaggerError('"tagger" "control_composites" must be an integer '
                          '>= 0, got %r' % (n_control,), config.path)
    if n_control:
        # note: not in the blog; the control trains on composites too
        log('control: the tagger with %d training composites' % n_control)
        controlled = run_tagger_stage(
            os.path.join(work, EXPERIMENT + '-control'), store, cnn,
            config.taxonomy(), test_split, tagger_settings=settings,
            rotations=rotations, beam=section.get('beam'),
            n_composites=int(section.get('n_composites', 200)),
            progress=progress, log=log, train_composites=n_control)
        control = {'train_composites': n_control,
                   'single': controlled['single'],
                   'multi': controlled.get('multi'),
                   'curve_summary': tag_curve_summary(controlled['history'])}

    os.makedirs(os.path.join(out, 'examples'), exist_ok=True)
    for name in os.listdir(os.path.join(out, 'examples')):
        if name.endswith('.png'):               # stale examples of a rerun
            os.remove(os.path.join(out, 'examples', name))
    for name in ('metrics.jsonl', 'tag_accuracy.png'):
        shutil.copy(os.path.join(stage, 'tagger', name),
                    os.path.join(out, name))
    for ex_list in ('single_examples', 'multi_examples'):
        for item in result.get(ex_list, []):
            shutil.copy(os.path.join(stage, item['image']),
                        os.path.join(out, item['image']))
    history = result['history']
    curve = tag_curve_summary(history)
    from lasagne_tagger.training import checkpoint
    _, meta = checkpoint.load_checkpoint(os.path.join(stage, 'tagger',
                                                      'best'))
    summary = {
        'experiment': EXPERIMENT, 'claims': [3, 4], 'status': 'ok',
        'config': config.raw,
        'settings': dict(settings, rotations=rotations, beam=result['beam'],
                         n_composites=section.get('n_composites', 200),
                         cnn_variant=section.get('cnn_variant'),
                         feature_width=meta['feature_width'],
                         test_split=test_split),
        'cnn_checkpoint': os.path.relpath(cnn, work),
        'curve': [{k: h[k] for k in ('iteration', 'train_loss',
                                     'train_tag_accuracy', 'val_loss',
                                     'val_tag_accuracy')} for h in history],
        'curve_summary': curve,
        'single': result['single'], 'multi': result.get('multi'),
        'control': control,
        'single_examples': result['single_examples'],
        'multi_examples': result.get('multi_examples', []),
        'figures': {'tag_accuracy': 'tag_accuracy.png'},
        'wall_s': time.time() - t0}
    ex.write_json(os.path.join(out, 'results.json'), summary)

    log('tag accuracy (validation, teacher-forced): %.3f after %d '
        'iterations; within +-%.2f of it from iteration %s'
        % (curve['final'], curve['iterations'], curve['tolerance'],
           curve['stable_from']))
    for name, label in (('single', 'one garment'), ('multi', 'two garments')):
        m = summary.get(name)
        if m:
            log('tags, %s: micro P %.3f R %.3f F1 %.3f, macro F1 %.3f, '
                'exact match %.3f (%d images)'
                % (label, m['micro_precision'], m['micro_recall'],
                   m['micro_f1'], m['macro_f1'], m['exact_match'],
                   m['count']))
    m = (control or {}).get('multi')
    if m:
        log('control (with %d training composites), two garments: micro P '
            '%.3f R %.3f F1 %.3f' % (n_control, m['micro_precision'],
                                     m['micro_recall'], m['micro_f1']))
    log('wrote %s' % os.path.join(out, 'results.json'))
    return summary


def main(argv=None):
    """Command-line entry point; a TaggerError is one ``error:`` line."""
    args = opts_parser().parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    from lasagne_tagger.reporting.experiments import run_script
    return run_script(run, args.config, args.out, args.work, args.set or (),
                      progress=not args.quiet)


if __name__ == '__main__':
    sys.exit(main())
