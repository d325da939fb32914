"""What every benchmark writes with its numbers: the machine and settings."""
import argparse
import json
import os
import platform
import sys
import time


def prepare_process():
    """Set a benchmark process up as the package's programs run: the
    repository importable, ``floatX=float32`` Theano flags
    (``run.base_theano_flags``), Theano prepared through the package's
    entry point and the package's ``malloc`` settings.
    Returns the benchmarks folder."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.dirname(here))
    sys.path.insert(0, here)
    import run
    os.environ['THEANO_FLAGS'] = run.base_theano_flags()   # float32
    import lasagne_tagger.runtime._theano  # noqa: F401 (prepares Theano)
    from lasagne_tagger.runtime import allocator
    allocator.tune()      # as the package's own compiled functions run
    return here


def write_result(result, out):
    """Add the machine, time, load and Theano settings to ``result`` and
    write it as JSON to ``out`` (folders created)."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    import lasagne_tagger.runtime._theano  # noqa: F401 (prepares Theano)
    import theano
    result.update(machine={'cpus': os.cpu_count(),
                           'processor': platform.processor(),
                           'python': platform.python_version()},
                  when=time.strftime('%Y-%m-%d %H:%M:%S'),
                  load_average=os.getloadavg(),
                  theano_flags=os.environ.get('THEANO_FLAGS', ''),
                  floatx=theano.config.floatX,
                  openmp=theano.config.openmp,
                  blas_ldflags=theano.config.blas.ldflags)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, 'w') as fh:
        json.dump(result, fh, indent=2)
    print('wrote', out)


def environment_items(text, items):
    """``['VAR=value', ...]`` (parts of the setting ``text``) -> dict; a
    part that is not ``VAR=value`` ends the program with one line."""
    env = {}
    for item in items:
        name, sep, value = item.partition('=')
        if not sep or not name:
            raise SystemExit('setting %r: %r is not VAR=value' % (text, item))
        env[name] = value
    return env


def settings_parser(doc, setting_help, defaults, out_name):
    """The command line of a benchmark that compares ``--setting``s in
    ``--rounds`` interleaved rounds and writes ``results/<out_name>``."""
    p = argparse.ArgumentParser(
        description=doc.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--setting', action='append', dest='settings',
                   help='%s (repeat; default: %s)'
                        % (setting_help, ', '.join(defaults)))
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--out', default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), 'results', out_name))
    return p
