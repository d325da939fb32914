"""Which BLAS to ship: GoogLeNet's convolution GEMMs on each candidate.

Runs ``blas_gemm.c`` (built here with gcc and OpenMP) once per library and
round, the libraries in turn, so that each round sees the same machine:
the 57 convolutions of the 224 px GoogLeNet at batch ``--batch``, forward
GEMMs and the two gradient GEMMs, images over OpenMP threads and the BLAS
single-threaded inside, as :class:`lasagne_tagger.ops.conv_op.CorrGemm` runs
them.  Candidates:

- the installed ``scipy-openblas32`` (what ``make install`` brings);
- with ``--download``, ``cmeel-openblas`` and ``mkl`` from PyPI, unpacked
  into a temporary folder (MKL with its sequential layer);
- ``--library NAME=PATH[:PREFIX[:SET_THREADS]]`` for any other (e.g.
  Debian's ``libopenblas0-pthread``, unpacked with ``dpkg -x``), with
  ``--ld-path DIR`` for what it needs.

A library that does not load records why (``libgfortran.so.5: cannot open
shared object file`` is the answer on a machine without gfortran).

    python benchmarks/blas_choice.py [--download] [--rounds 3]

Writes ``benchmarks/results/blas_choice.json``.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
DOWNLOADS = (('cmeel-openblas', 'cmeel-openblas==0.3.31',
              'cmeel.prefix/lib/libopenblas.so', '',
              'openblas_set_num_threads', {}),
             ('mkl', 'mkl==2026.2.0', 'mkl-2026.2.0.data/data/lib/'
              'libmkl_rt.so.3', '', '', {'MKL_THREADING_LAYER':
                                         'SEQUENTIAL'}))


def opts_parser():
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--rounds', type=int, default=3,
                   help='alternating rounds (medians are reported)')
    p.add_argument('--repeats', type=int, default=5,
                   help='calls per layer in a round (best is kept)')
    p.add_argument('--batch', type=int, default=8, help='images per call')
    p.add_argument('--download', action='store_true',
                   help='also cmeel-openblas and mkl from PyPI')
    p.add_argument('--library', action='append', default=[],
                   metavar='NAME=PATH[:PREFIX[:SET_THREADS]]',
                   help='another library to measure')
    p.add_argument('--ld-path', action='append', default=[],
                   help='folder added to LD_LIBRARY_PATH for the libraries')
    p.add_argument('--out', default=os.path.join(HERE, 'results',
                                                 'blas_choice.json'))
    return p


def conv_shapes(path):
    """Write GoogLeNet's convolutions as ``name M K P`` lines."""
    sys.path.insert(0, os.path.dirname(HERE))
    from lasagne_tagger.model.googlenet import build_model
    with open(path, 'w') as fh:
        for name, layer in build_model().items():
            if hasattr(layer, 'filter_size'):
                _, c, _, _ = layer.input_shape
                _, m, oh, ow = layer.output_shape
                kh, kw = layer.filter_size
                fh.write('%s %d %d %d\n' % (name, m, c * kh * kw, oh * ow))


def downloaded(folder):
    """The ``--download`` candidates, unpacked under ``folder``."""
    out = []
    for name, requirement, member, prefix, threads, env in DOWNLOADS:
        target = os.path.join(folder, name)
        subprocess.run([sys.executable, '-m', 'pip', 'download', '-q',
                        '--no-deps', '-d', target, requirement], check=True)
        wheel = [f for f in os.listdir(target) if f.endswith('.whl')][0]
        with zipfile.ZipFile(os.path.join(target, wheel)) as zf:
            zf.extractall(target)
        out.append(dict(name=name, source=requirement,
                        path=os.path.join(target, member), prefix=prefix,
                        set_threads=threads, env=env,
                        wheel_mb=round(os.path.getsize(
                            os.path.join(target, wheel)) / 2 ** 20, 1)))
    return out


def bundled():
    sys.path.insert(0, os.path.dirname(HERE))
    from lasagne_tagger.runtime import blas
    found, why = blas.find_bundled()
    if found is None:
        raise SystemExit(why)
    return dict(name=blas.DISTRIBUTION, source='%s==%s' % (
        blas.DISTRIBUTION, found.version), path=found.library,
        prefix=blas.PREFIX, set_threads=blas.PREFIX +
        'openblas_set_num_threads', env={})


def parse_library(text):
    name, _, spec = text.partition('=')
    parts = spec.split(':') + ['', '']
    return dict(name=name, source=parts[0], path=parts[0], prefix=parts[1],
                set_threads=parts[2], env={})


def run_one(program, lib, shapes, args):
    env = dict(os.environ, **lib['env'])
    if args.ld_path:
        env['LD_LIBRARY_PATH'] = os.pathsep.join(
            args.ld_path + [env.get('LD_LIBRARY_PATH', '')]).rstrip(
                os.pathsep)
    out = subprocess.run([program, lib['path'], lib['prefix'],
                          lib['set_threads'], shapes, str(args.repeats),
                          str(args.batch)], capture_output=True, text=True,
                         env=env)
    if out.returncode != 0:
        return {'error': (out.stderr.strip().splitlines() or
                          ['exit %d' % out.returncode])[0]}
    return json.loads(out.stdout)


def main(argv=None):
    args = opts_parser().parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        program = os.path.join(tmp, 'blas_gemm')
        subprocess.run(['gcc', '-O2', '-fopenmp',
                        os.path.join(HERE, 'blas_gemm.c'), '-o', program,
                        '-ldl'], check=True)
        shapes = os.path.join(tmp, 'shapes.txt')
        conv_shapes(shapes)
        libs = [bundled()] + [parse_library(t) for t in args.library]
        if args.download:
            libs += downloaded(tmp)
        rounds = {lib['name']: [] for lib in libs}
        for r in range(args.rounds):
            for lib in libs:
                got = run_one(program, lib, shapes, args)
                rounds[lib['name']].append(got)
                print('round %d %-18s %s' % (r + 1, lib['name'], got))
    result = {'batch': args.batch, 'repeats': args.repeats,
              'libraries': {}}
    for lib in libs:
        runs = rounds[lib['name']]
        entry = {k: lib[k] for k in ('source', 'prefix', 'env')
                 if lib.get(k)}
        if 'wheel_mb' in lib:
            entry['wheel_mb'] = lib['wheel_mb']
        errors = [r['error'] for r in runs if 'error' in r]
        if errors:
            entry['error'] = errors[0]
        else:
            for key in ('forward_ms', 'backward_ms', 'forward_gflops',
                        'backward_gflops'):
                entry[key] = round(statistics.median(r[key] for r in runs),
                                   2)
            entry['rounds'] = runs
        result['libraries'][lib['name']] = entry
    sys.path.insert(0, HERE)
    from common import write_result
    write_result(result, args.out)


if __name__ == '__main__':
    main()
