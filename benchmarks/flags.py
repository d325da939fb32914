"""Theano flag settings compared on this machine, interleaved.

Runs ``benchmarks/run.py``'s ``forward`` and ``train`` measurements (one
child process each, warm compile cache) for every setting in turn, for
``--rounds`` rounds, so slow spells of a shared machine hit every setting
alike; reports the median of the rounds per setting and each setting's
speed over the first one.  Writes ``benchmarks/results/flags.json``.

    python benchmarks/flags.py [--rounds 3] [--repeats 3]
        [--setting openmp=False --setting openmp=True ...]

Each setting is a comma-separated ``THEANO_FLAGS`` fragment added after the
environment's own flags (``floatX=float32`` unless the environment sets
``floatX``), optionally followed by ``;VAR=value`` environment variables,
e.g. ``openmp=True;OMP_WAIT_POLICY=PASSIVE``.  The first round also fills
the compile cache of every setting (its compile times are cold there).
"""
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run  # noqa: E402  (benchmarks/run.py: the child measurements)
from common import environment_items, settings_parser  # noqa: E402

MEASURES = ('forward', 'train')
DEFAULT_SETTINGS = ('openmp=False', 'openmp=True')


def parse_setting(text):
    """``'openmp=True;OMP_WAIT_POLICY=PASSIVE'`` -> (THEANO_FLAGS fragment,
    {environment variable: value})."""
    flags, *env = text.split(';')
    return flags, environment_items(text, env)


def measure(settings, rounds, repeats):
    """``{setting: {measure: {key: [value per round]}}}``."""
    base = run.base_theano_flags()
    samples = {s: {m: {} for m in MEASURES} for s in settings}
    for r in range(rounds):
        for setting in settings:
            flags, extra = parse_setting(setting)
            env = dict(os.environ, **extra)
            env['THEANO_FLAGS'] = ','.join(filter(None, [base, flags]))
            for name in MEASURES:
                res = run._run_child(name, {'repeats': repeats}, env)
                print('round %d %s %s %s' % (
                    r + 1, setting, name, ' '.join(
                        '%s=%.2f' % kv for kv in sorted(res.items())
                        if isinstance(kv[1], float))), flush=True)
                for key, value in res.items():
                    samples[setting][name].setdefault(key, []).append(value)
    return base, samples


def summarise(samples):
    """Medians per setting (compile times from the rounds after the first,
    when there are any) and speed ratios over the first setting."""
    medians = {}
    for setting, by_measure in samples.items():
        medians[setting] = {}
        for name, keys in by_measure.items():
            for key, values in keys.items():
                if not all(isinstance(v, (int, float)) for v in values):
                    medians[setting]['%s_%s' % (name, key)] = values[-1]
                    continue                     # e.g. the effective flags
                if key.startswith('compile') and len(values) > 1:
                    values = values[1:]            # warm rounds only
                medians[setting]['%s_%s' % (name, key)] = \
                    statistics.median(values)
    first = next(iter(medians))
    ratios = {s: {k: v / medians[first][k] for k, v in m.items()
                  if k.endswith('img_s')}
              for s, m in medians.items()}
    return medians, ratios, first


def opts_parser():
    p = settings_parser(__doc__, 'THEANO_FLAGS fragment[;VAR=value...]',
                        DEFAULT_SETTINGS, 'flags.json')
    p.add_argument('--repeats', type=int, default=3,
                   help='timed calls per batch size in each child')
    return p


def main(argv=None):
    import json
    import platform
    import time
    args = opts_parser().parse_args(argv)
    settings = args.settings or list(DEFAULT_SETTINGS)
    for s in settings:
        parse_setting(s)                      # fail before measuring
    base, samples = measure(settings, args.rounds, args.repeats)
    medians, ratios, first = summarise(samples)
    result = {'machine': {'cpus': os.cpu_count(),
                          'processor': platform.processor(),
                          'python': platform.python_version()},
              'when': time.strftime('%Y-%m-%d %H:%M:%S'),
              'base_theano_flags': base, 'rounds': args.rounds,
              'repeats': args.repeats, 'settings': settings,
              'medians': medians, 'speed_over_%s' % first: ratios,
              'samples': samples}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as fh:
        json.dump(result, fh, indent=2)
    print(json.dumps({'medians': medians, 'ratios': ratios}, indent=1))
    print('wrote', args.out)


if __name__ == '__main__':
    main()
