"""The ``lasagne-tagger`` command line.

Each subcommand parses its arguments and calls one library function; heavy
imports (Theano, Lasagne, h5py) happen inside the handlers, so ``--help`` is
instant.  An expected failure (a :class:`TaggerError`, a file system error,
an unusable Theano configuration) is printed as one ``error: ...`` line and
exits with status 2; anything else is a bug, reported as one line that says
so (status 3).  ``--debug`` (or ``LASAGNE_TAGGER_DEBUG=1``) adds the
traceback.
"""
import argparse
import json
import os
import sys

from .errors import TaggerError

__all__ = ['main', 'build_parser']


def _cmd_fetch_weights(args):
    from .model import weights
    if args.from_file:
        result = weights.install_from(args.from_file, args.dest,
                                      sha1=args.sha1, sha256=args.sha256)
        path = result['dest']
    else:
        path = weights.fetch(args.dest, sources=args.source, url=args.url,
                             sha256=args.sha256,
                             progress=None if args.quiet else sys.stderr)
    print('weights ready: %s' % path)
    return 0


def _finish_batch(args, results, bad, as_json, as_text):
    """Print per-file results (JSON or text) and the bad files; the exit
    status is 0 if all went well, 1 if some files were bad, 2 if all were."""
    if args.json:
        json.dump({'results': [as_json(r) for r in results],
                   'errors': [{'path': p, 'error': e} for p, e in bad]},
                  sys.stdout, indent=2)
        sys.stdout.write('\n')
    else:
        for r in results:
            print(as_text(r))
    for _, message in bad:
        print('error: %s' % message, file=sys.stderr)
    if bad and not results:
        return 2
    return 1 if bad else 0


def _cmd_imagenet_tags(args):
    from .model import imagenet, weights
    path = args.weights or weights.default_weights_path()
    if weights.find_weights(path) is None:
        # Never silently use random weights.
        raise TaggerError(weights.fetch_instructions(path))
    net, synsets = imagenet.load_imagenet_model(path, sha256=args.sha256)
    forward = imagenet.compile_forward(net)
    results, bad = imagenet.classify_files(args.photos, forward, synsets,
                                           k=args.top,
                                           batch_size=args.batch_size,
                                           upscale=args.upscale)
    return _finish_batch(
        args, results, bad,
        lambda r: {'path': r['path'], 'top': [
            {'synset': s, 'probability': p} for s, p in r['top']]},
        lambda r: '\n'.join([r['path']] + ['  %6.2f%%  %s' % (100 * p, s)
                                           for s, p in r['top']]))


def _add_resume_overwrite(p, what):
    """--resume / --overwrite: an existing output is never replaced or
    continued unless asked."""
    group = p.add_mutually_exclusive_group()
    group.add_argument('--resume', action='store_true',
                       help='continue the %s already in the output' % what)
    group.add_argument('--overwrite', action='store_true',
                       help='replace the %s already in the output' % what)


def _refuse_existing(path, args, what, also=()):
    """Raise unless ``path`` (or one of ``also``) is absent or the user
    passed --resume / --overwrite."""
    found = [p for p in (path,) + tuple(also) if os.path.exists(p)]
    if found and not (args.resume or args.overwrite):
        raise TaggerError('holds a %s already; pass --resume to continue it '
                          'or --overwrite to replace it' % what, found[0])


def _cmd_prepare(args):
    from .data import datasets, store
    _refuse_existing(args.out, args, 'store')
    if args.acs:
        dataset = datasets.read_acs(args.root, missing=args.missing)
    else:
        dataset = datasets.read_folder_dataset(args.root)
    if args.overwrite:
        store.remove_store(args.out)
    summary = store.prepare(dataset, args.out, size=args.size,
                            workers=args.workers, upscale=args.upscale,
                            progress=not args.quiet)
    print(summary)
    return 0


def _cmd_train(args):
    from .training import finetune
    from .config import load_config
    overrides = list(args.set or [])
    if args.store:
        overrides.append('store=%s' % args.store)
    if args.from_scratch:
        overrides.append('from_scratch=true')
    config = load_config(finetune.FinetuneConfig, args.config, overrides)
    if not config.store:
        raise TaggerError('no store given: pass --store PATH or set "store" '
                          'in the config')
    finetune.train(config, args.out, resume=args.resume,
                   overwrite=args.overwrite, progress=not args.quiet)
    if not args.no_plots:
        from .evaluation import plots
        for path in plots.plot_run(args.out):
            print('wrote %s' % path)
    return 0


def _cmd_evaluate(args):
    from .training import finetune
    report = finetune.evaluate(args.checkpoint, args.store, args.split,
                               batch_size=args.batch_size)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write('\n')
    else:
        print('%s on %s/%s: loss %.4f, accuracy %.4f, mean class accuracy '
              '%.4f (%d images)' % (args.checkpoint, args.store, args.split,
                                     report['loss'], report['accuracy'],
                                     report['mean_class_accuracy'],
                                     report['count']))
    return 0


def _cmd_plot(args):
    from .evaluation import plots
    for path in plots.plot_run(args.run):
        print('wrote %s' % path)
    return 0


def _cmd_extract(args):
    from .tagging.features import extract_features, partial_path
    _refuse_existing(args.out, args, 'features file',
                     also=(partial_path(args.out),))
    if args.resume and os.path.exists(args.out):
        raise TaggerError('is finished already: nothing to resume (pass '
                          '--overwrite to extract again)', args.out)
    path = extract_features(args.cnn, args.store, args.out, layer=args.layer,
                            rotations=args.rotations,
                            batch_size=args.batch_size,
                            progress=not args.quiet, resume=args.resume,
                            overwrite=args.overwrite)
    print('wrote %s' % path)
    return 0


def _cmd_train_tagger(args):
    from .tagging import tagger
    from .config import load_config
    overrides = list(args.set or [])
    for key in ('features', 'taxonomy'):
        if getattr(args, key):
            overrides.append('%s=%s' % (key, getattr(args, key)))
    config = load_config(tagger.TaggerConfig, args.config, overrides)
    if not config.features or not config.taxonomy:
        raise TaggerError('give --features and --taxonomy (or set them in '
                          'the config)')
    history = tagger.train_tagger(config, args.out, resume=args.resume,
                                  overwrite=args.overwrite,
                                  progress=not args.quiet)
    from .evaluation import plots
    plots.plot_tag_accuracy([h['iteration'] for h in history],
                            [h['val_tag_accuracy'] for h in history],
                            os.path.join(args.out, 'tag_accuracy.png'))
    return 0


def _cmd_tag(args):
    from .tagging.pipeline import Pipeline, render_tags
    pipeline = Pipeline(args.cnn, args.tagger)
    results, bad = pipeline.tag_files(args.photos, beam=args.beam,
                                      upscale=args.upscale)
    if args.render:
        os.makedirs(args.render, exist_ok=True)
        for path, tags in results:
            name = os.path.splitext(os.path.basename(path))[0] + '.tags.png'
            render_tags(path, tags, os.path.join(args.render, name))
    return _finish_batch(
        args, results, bad,
        lambda r: {'path': r[0], 'tags': [{'tag': t, 'probability': q}
                                          for t, q in r[1]]},
        lambda r: '%s: %s' % (r[0], ', '.join('%s (%.0f%%)' % (t, 100 * q)
                                              for t, q in r[1])))


def _cmd_demo(args):
    from .demo import run_demo
    run_demo(args.out, data=args.data, epochs=args.epochs,
             progress=not args.quiet)
    return 0


def _cmd_report(args):
    from .reporting.results_report import write_report
    html_path, md_path, rows = write_report(args.results_dir)
    for row in rows:
        print('claim %d: %s (%s)' % (row['claim'], row['verdict'],
                                     row['why']))
    print('wrote %s and %s' % (html_path, md_path))
    return 0


def _cmd_reference_export(args):
    from .ports.reference import export_reference
    log = (lambda *a: None) if args.quiet else \
        (lambda msg: print(msg, file=sys.stderr))
    results, bad = export_reference(
        args.out, photos=args.photos, cnn=args.cnn, tagger=args.tagger,
        seed=args.seed, width=args.width, image_size=args.image_size,
        num_classes=args.num_classes, hidden_size=args.hidden_size,
        count=args.count, upscale=args.upscale,
        train_tagger_dir=args.train_tagger, batch_size=args.batch_size,
        log=log)
    print('wrote %s (%d images)' % (args.out, len(results)),
          file=sys.stderr)
    return _finish_batch(
        args, results, bad,
        lambda r: {'path': r[0], 'tags': r[1]},
        lambda r: '%s: %s' % (r[0], ', '.join(r[1]) or '(no tags)'))


def _cmd_reference_compare(args):
    from .ports.bundle import run_compare
    return run_compare(args.a, args.b, atol=args.atol, rtol=args.rtol,
                       as_json=args.json)


def _nonnegative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError('%r is not an integer' % text)
    if value < 0:
        raise argparse.ArgumentTypeError('must be >= 0, got %d' % value)
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError('%r is not a number' % text)
    if not value > 0:
        raise argparse.ArgumentTypeError('must be > 0, got %s' % text)
    return value


def _positive_int_arg(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError('%r is not an integer' % text)
    if value < 1:
        raise argparse.ArgumentTypeError('must be >= 1, got %d' % value)
    return value


def build_parser():
    """The ``lasagne-tagger`` command line: one sub-command per
    ``_add_*`` function below."""
    parser = argparse.ArgumentParser(
        prog='lasagne-tagger',
        description='GoogLeNet + LSTM clothing tagger (Theano/Lasagne).')
    parser.add_argument('--debug', action='store_true',
                        help='print the traceback of an error (also: '
                             '%s=1)' % DEBUG_ENV)
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True
    fmt = argparse.ArgumentDefaultsHelpFormatter
    for add in (_add_fetch_weights, _add_imagenet_tags, _add_prepare,
                _add_train, _add_evaluate, _add_plot, _add_extract,
                _add_train_tagger, _add_tag, _add_demo, _add_report,
                _add_reference):
        add(sub, fmt)
    return parser


def _add_fetch_weights(sub, fmt):
    p = sub.add_parser('fetch-weights',
                       help='get the ImageNet weights (model zoo, BVLC '
                            'caffemodel, or a file you have)',
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    from .model.caffemodel import BVLC_SHA1
    from .model.weights import MODEL_ZOO_URL, MODEL_ZOO_SHA256, SOURCES
    p.add_argument('--from', dest='from_file', default=None, metavar='PATH',
                   help='install a blvc_googlenet.pkl (checked, copied) or '
                        'a bvlc_googlenet.caffemodel (checked, converted) '
                        'instead of downloading')
    p.add_argument('--dest', default=None,
                   help='where to save (default: pretrained/'
                        'blvc_googlenet.pkl or $LASAGNE_TAGGER_WEIGHTS)')
    p.add_argument('--source', action='append', default=None,
                   choices=[name for name, _, _ in SOURCES],
                   help='try only these sources, in the default order '
                        '(repeatable; default: all)')
    p.add_argument('--url', default=MODEL_ZOO_URL,
                   help='the model zoo\'s HTTPS address')
    p.add_argument('--sha256', default=MODEL_ZOO_SHA256,
                   help='expected SHA-256 of the pickle (its size and '
                        'shapes are always checked)')
    p.add_argument('--sha1', default=None,
                   help='expected SHA-1 of a --from caffemodel (default: '
                        'the BVLC original\'s, %s)' % BVLC_SHA1)
    p.add_argument('--quiet', action='store_true', help='no progress')
    p.set_defaults(func=_cmd_fetch_weights)

def _add_imagenet_tags(sub, fmt):
    from .model.weights import MODEL_ZOO_SHA256
    p = sub.add_parser('imagenet-tags',
                       help='top-k ImageNet synsets per photo (the blog\'s '
                            '"Windsor tie" baseline)',
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('photos', nargs='+', metavar='PHOTO')
    p.add_argument('--weights', default=None,
                   help='blvc_googlenet.pkl (default: pretrained/'
                        'blvc_googlenet.pkl or $LASAGNE_TAGGER_WEIGHTS)')
    p.add_argument('--sha256', default=MODEL_ZOO_SHA256,
                   help='expected SHA-256 of the weights')
    p.add_argument('--top', type=_positive_int_arg, default=5,
                   help='synsets per photo')
    p.add_argument('--batch-size', type=_positive_int_arg, default=8)
    p.add_argument('--upscale', action='store_true',
                   help='enlarge photos smaller than 224 px instead of '
                        'rejecting them')
    p.add_argument('--json', action='store_true', help='JSON output')
    p.set_defaults(func=_cmd_imagenet_tags)

def _add_prepare(sub, fmt):
    p = sub.add_parser('prepare', formatter_class=fmt,
                       help='decode and crop a dataset once into an HDF5 '
                            'store (resumable)')
    p.add_argument('root', help='folder dataset ROOT/<split>/<class>/*.jpg, '
                                'or the extracted ACS folder with --acs')
    p.add_argument('out', help='store to write, e.g. runs/acs.h5')
    p.add_argument('--acs', action='store_true', help='ACS layout')
    p.add_argument('--missing', choices=['error', 'skip'], default='error',
                   help='ACS split entries naming missing images')
    p.add_argument('--size', type=_positive_int_arg, default=224,
                   help='crop side in pixels')
    p.add_argument('--workers', type=_positive_int_arg, default=None,
                   help='processes (default: all cores)')
    p.add_argument('--upscale', action='store_true',
                   help='enlarge images smaller than --size')
    _add_resume_overwrite(p, 'store')
    p.add_argument('--quiet', action='store_true')
    p.set_defaults(func=_cmd_prepare)

def _add_train(sub, fmt):
    p = sub.add_parser('train', formatter_class=fmt,
                       help='fine-tune GoogLeNet on a prepared store')
    p.add_argument('--config', default=None,
                   help='JSON config (e.g. experiments/configs/*.json)')
    p.add_argument('--set', action='append', metavar='KEY=VALUE',
                   help='override a config value (repeatable)')
    p.add_argument('--store', default=None, help='prepared store')
    p.add_argument('--from-scratch', action='store_true',
                   help='random initialisation instead of ImageNet weights')
    p.add_argument('--out', default='runs/finetune', help='run folder')
    _add_resume_overwrite(p, 'run (from OUT/last)')
    p.add_argument('--no-plots', action='store_true')
    p.add_argument('--quiet', action='store_true')
    p.set_defaults(func=_cmd_train)

def _add_evaluate(sub, fmt):
    p = sub.add_parser('evaluate', formatter_class=fmt,
                       help='metrics of a checkpoint on a split of a store')
    p.add_argument('checkpoint', help='checkpoint prefix, e.g. runs/x/best')
    p.add_argument('store')
    p.add_argument('--split', default='validation')
    p.add_argument('--batch-size', type=_positive_int_arg, default=32)
    p.add_argument('--json', action='store_true')
    p.set_defaults(func=_cmd_evaluate)

def _add_plot(sub, fmt):
    p = sub.add_parser('plot', formatter_class=fmt,
                       help='draw curves.png and confusion.png of a run')
    p.add_argument('run', help='run folder (holds metrics.jsonl)')
    p.set_defaults(func=_cmd_plot)

def _add_extract(sub, fmt):
    p = sub.add_parser('extract', formatter_class=fmt,
                       help='CNN features of every image of a store (HDF5)')
    p.add_argument('cnn', help='classifier checkpoint prefix (runs/x/best) '
                               'or "imagenet" for the model-zoo network')
    p.add_argument('store')
    p.add_argument('out', help='features file to write, e.g. runs/f.h5')
    p.add_argument('--layer', default='pool5/7x7_s1',
                   help='layer to extract (e.g. loss3/classifier)')
    p.add_argument('--rotations', action='store_true',
                   help='also the 90/180/270 degree rotations')
    p.add_argument('--batch-size', type=_positive_int_arg, default=32)
    _add_resume_overwrite(p, 'unfinished extraction (OUT.partial)')
    p.add_argument('--quiet', action='store_true')
    p.set_defaults(func=_cmd_extract)

def _add_train_tagger(sub, fmt):
    p = sub.add_parser('train-tagger', formatter_class=fmt,
                       help='train the LSTM tag generator on features')
    p.add_argument('--config', default=None, help='JSON config')
    p.add_argument('--set', action='append', metavar='KEY=VALUE',
                   help='override a config value (repeatable)')
    p.add_argument('--features', default=None, help='from `extract`')
    p.add_argument('--taxonomy', default=None,
                   help='taxonomy JSON or a packaged name (acs, '
                        'clothing-small)')
    p.add_argument('--out', default='runs/tagger', help='run folder')
    _add_resume_overwrite(p, 'run (from OUT/last)')
    p.add_argument('--quiet', action='store_true')
    p.set_defaults(func=_cmd_train_tagger)

def _add_tag(sub, fmt):
    p = sub.add_parser('tag', formatter_class=fmt,
                       help='tags for photos (fine-tuned CNN + tagger)')
    p.add_argument('photos', nargs='+', metavar='PHOTO')
    p.add_argument('--cnn', required=True, help='classifier checkpoint')
    p.add_argument('--tagger', required=True, help='tagger checkpoint')
    p.add_argument('--beam', type=_positive_int_arg, default=None,
                   help='beam width (default: greedy scan)')
    p.add_argument('--upscale', action='store_true')
    p.add_argument('--json', action='store_true')
    p.add_argument('--render', default=None, metavar='DIR',
                   help='also draw each photo with its tags into DIR')
    p.set_defaults(func=_cmd_tag)

def _add_demo(sub, fmt):
    p = sub.add_parser('demo', formatter_class=fmt,
                       help='the whole pipeline on the embedded synthetic '
                            'apparel set (or --data ROOT)')
    p.add_argument('--out', default='runs/demo', help='output folder')
    p.add_argument('--data', default=None,
                   help='folder dataset instead of the synthetic set')
    p.add_argument('--epochs', type=_positive_int_arg, default=None,
                   help='override the demo\'s epoch count')
    p.add_argument('--quiet', action='store_true')
    p.set_defaults(func=_cmd_demo)

def _add_report(sub, fmt):
    p = sub.add_parser('report', formatter_class=fmt,
                       help='the blog\'s claims beside the experiments\' '
                            'results: RESULTS_DIR/report.html and report.md')
    p.add_argument('results_dir', metavar='RESULTS_DIR',
                   help='one config\'s results, e.g. experiments/results/'
                        'clothing-small')
    p.set_defaults(func=_cmd_report)

def _add_reference(sub, fmt):
    p = sub.add_parser('reference',
                       help='reference bundles for checking ports: export, '
                            'compare')
    ref = p.add_subparsers(dest='reference_command', metavar='ACTION')
    ref.required = True
    p = ref.add_parser('export', formatter_class=fmt,
                       help='run the Theano model on photos and write every '
                            'layer, the weights and the tags to a bundle')
    p.add_argument('photos', nargs='*', metavar='PHOTO',
                   help='photos (default: the embedded synthetic set)')
    p.add_argument('--out', required=True, help='bundle to write (.h5)')
    p.add_argument('--cnn', default=None,
                   help='classifier checkpoint prefix or "imagenet" '
                        '(default: random weights from --seed)')
    p.add_argument('--tagger', default=None,
                   help='tagger checkpoint prefix (default: random weights '
                        'from --seed)')
    p.add_argument('--train-tagger', default=None, metavar='DIR',
                   help='train a small tagger on the CNN\'s features of '
                        'rendered garments into DIR and use it')
    p.add_argument('--seed', type=_nonnegative_int, default=0,
                   help='seed of the random weights and the embedded set')
    p.add_argument('--width', type=_positive_float, default=1.0,
                   help='random CNN: filter-count multiplier')
    p.add_argument('--image-size', type=_positive_int_arg, default=224,
                   help='random CNN: input side')
    p.add_argument('--num-classes', type=_positive_int_arg, default=1000,
                   help='random CNN: classifier units')
    p.add_argument('--hidden-size', type=_positive_int_arg, default=32,
                   help='random tagger: embedding and LSTM units')
    p.add_argument('--count', type=_positive_int_arg, default=8,
                   help='images of the embedded set')
    p.add_argument('--upscale', action='store_true',
                   help='enlarge photos smaller than the crop')
    p.add_argument('--batch-size', type=_positive_int_arg, default=8)
    p.add_argument('--json', action='store_true',
                   help='print the decoded tags as JSON')
    p.add_argument('--quiet', action='store_true')
    p.set_defaults(func=_cmd_reference_export)

    p = ref.add_parser('compare', formatter_class=fmt,
                       help='layer-by-layer comparison of bundle B (a port) '
                            'with reference A; exit 1 if they differ')
    from .ports.bundle import add_compare_arguments
    add_compare_arguments(p)
    p.set_defaults(func=_cmd_reference_compare)

# Subcommands that compile Theano functions: Theano's configuration is
# checked (theano_check.import_theano) before they start.
_THEANO_COMMANDS = {'imagenet-tags', 'train', 'evaluate', 'extract',
                    'train-tagger', 'tag', 'demo', 'reference export'}
DEBUG_ENV = 'LASAGNE_TAGGER_DEBUG'


def _command_name(args):
    name = args.command
    if name == 'reference':
        name += ' ' + args.reference_command
    return name


def _expected_error(exc):
    """The one-line text of an expected failure that reached the top
    unconverted (a file system error, memory), or None for a bug."""
    from .atomic import describe_os_error
    if isinstance(exc, OSError):
        name = exc.filename or getattr(exc, 'filename2', None)
        text = describe_os_error(exc)
        return '%s: %s' % (name, text) if name else text
    if isinstance(exc, MemoryError):
        return 'out of memory'
    return None


def main(argv=None):
    import warnings
    # Lasagne 0.1 calls conv2d with a keyword Theano 1.0 renamed; harmless.
    warnings.filterwarnings('ignore', message='The `image_shape` keyword')
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get(DEBUG_ENV, '') not in ('', '0')
    try:
        name = _command_name(args)
        if name in _THEANO_COMMANDS:
            if name == 'demo':
                from .runtime.theano_defaults import prefer_float32
                prefer_float32()    # before Theano is imported; a user's wins
            from .runtime.theano_check import import_theano
            import_theano()
        return args.func(args)
    except TaggerError as exc:
        if debug:
            import traceback
            traceback.print_exc()
        print('error: %s' % exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
    except Exception as exc:
        text = _expected_error(exc)
        if debug:
            import traceback
            traceback.print_exc()
        if text is not None:
            print('error: %s' % text, file=sys.stderr)
            return 2
        line = str(exc).splitlines()[0] if str(exc) else ''
        print('error: internal error (a bug in lasagne_tagger; please report '
              'it): %s%s%s' % (type(exc).__name__, ': ' if line else '',
                               line) + ('' if debug else
                                        '; run again with --debug (or %s=1) '
                                        'for the traceback' % DEBUG_ENV),
              file=sys.stderr)
        return 3


if __name__ == '__main__':
    sys.exit(main())
