"""The ``lasagne-tagger`` command line.

Each subcommand parses its arguments and calls one library function; heavy
imports (Theano, Lasagne, h5py) happen inside the handlers, so ``--help`` is
instant.  A :class:`TaggerError` is printed as one ``error: ...`` line and
exits with status 2.
"""
import argparse
import json
import sys

from .errors import TaggerError

__all__ = ['main', 'build_parser']


def _cmd_fetch_weights(args):
    from . import weights
    path = weights.fetch(args.dest, url=args.url, sha256=args.sha256,
                         progress=None if args.quiet else sys.stderr)
    print('weights ready: %s' % path)
    return 0


def _cmd_imagenet_tags(args):
    from . import imagenet, weights
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
    if args.json:
        json.dump({'results': [{'path': r['path'],
                                'top': [{'synset': s, 'probability': p}
                                        for s, p in r['top']]}
                               for r in results],
                   'errors': [{'path': p, 'error': e} for p, e in bad]},
                  sys.stdout, indent=2)
        sys.stdout.write('\n')
    else:
        for r in results:
            print(r['path'])
            for synset, prob in r['top']:
                print('  %6.2f%%  %s' % (100 * prob, synset))
    for _, message in bad:
        print('error: %s' % message, file=sys.stderr)
    if bad and not results:
        return 2
    return 1 if bad else 0


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError('%r is not an integer' % text)
    if value < 1:
        raise argparse.ArgumentTypeError('must be >= 1, got %d' % value)
    return value


def build_parser():
    parser = argparse.ArgumentParser(
        prog='lasagne-tagger',
        description='GoogLeNet + LSTM clothing tagger (Theano/Lasagne).')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True

    p = sub.add_parser('fetch-weights', help='download blvc_googlenet.pkl',
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    from .weights import MODEL_ZOO_URL, MODEL_ZOO_SHA256
    p.add_argument('--dest', default=None,
                   help='where to save (default: pretrained/'
                        'blvc_googlenet.pkl or $LASAGNE_TAGGER_WEIGHTS)')
    p.add_argument('--url', default=MODEL_ZOO_URL, help='source URL')
    p.add_argument('--sha256', default=MODEL_ZOO_SHA256,
                   help='expected SHA-256 (size is always checked)')
    p.add_argument('--quiet', action='store_true', help='no progress')
    p.set_defaults(func=_cmd_fetch_weights)

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
    p.add_argument('--top', type=_positive_int, default=5,
                   help='synsets per photo')
    p.add_argument('--batch-size', type=_positive_int, default=8)
    p.add_argument('--upscale', action='store_true',
                   help='enlarge photos smaller than 224 px instead of '
                        'rejecting them')
    p.add_argument('--json', action='store_true', help='JSON output')
    p.set_defaults(func=_cmd_imagenet_tags)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except TaggerError as exc:
        print('error: %s' % exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
