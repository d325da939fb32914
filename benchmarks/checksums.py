"""What HDF5's Fletcher-32 checksums cost: on ``prepare`` and on a training
epoch's reads.

The same real photos are prepared into two stores, with checksums (the
default) and without, in alternating rounds (medians); then a full
shuffled pass over each store's split is timed as a training epoch reads
it (streamed, batch 32: splits over ``store.MEMORY_BYTES`` are not held in
memory), and compared with the fine-tuning step's own time per image
(``--train-images-per-s``, default from ``benchmarks/results/all.json``).

    python benchmarks/checksums.py [--photos ../shared/data/clothing-small]
        [--images 400] [--rounds 3]

Writes ``benchmarks/results/checksums.json``.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def opts_parser():
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--photos', default=os.path.join(
        HERE, '..', '..', 'shared', 'data', 'clothing-small'))
    p.add_argument('--images', type=int, default=400,
                   help='photos of the train split to prepare')
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--train-images-per-s', type=float, default=None,
                   help='fine-tuning images/s to relate the read cost to '
                        '(default: all.json, train batch 32)')
    p.add_argument('--out', default=os.path.join(HERE, 'results',
                                                 'checksums.json'))
    return p


def _train_rate(given):
    if given:
        return given, 'given'
    path = os.path.join(HERE, 'results', 'all.json')
    with open(path) as fh:
        train = json.load(fh)['results']['train']
    return float(train['b32_img_s']), 'benchmarks/results/all.json'


def main(argv=None):
    args = opts_parser().parse_args(argv)
    sys.path.insert(0, os.path.dirname(HERE))
    from lasagne_tagger.data import datasets, store
    dataset = datasets.read_folder_dataset(args.photos)
    dataset.items = [i for i in dataset.items if i.split == 'train'][
        :args.images]
    rate, rate_source = _train_rate(args.train_images_per_s)
    times = {True: {'prepare': [], 'read': []},
             False: {'prepare': [], 'read': []}}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for checksums in (True, False):
                path = os.path.join(tmp, 'r%d-%d.h5' % (r, checksums))
                start = time.perf_counter()
                store.prepare(dataset, path, size=args.size, progress=False,
                              checksums=checksums)
                times[checksums]['prepare'].append(time.perf_counter() -
                                                   start)
                old, store.MEMORY_BYTES = store.MEMORY_BYTES, 0
                try:
                    with store.open_store(path) as st:
                        start = time.perf_counter()
                        for _ in st.batches('train', 32, shuffle=True,
                                            seed=1, epoch=r):
                            pass
                        times[checksums]['read'].append(
                            time.perf_counter() - start)
                finally:
                    store.MEMORY_BYTES = old
                os.remove(path)
                print('round %d checksums=%s prepare %.2f s read %.3f s'
                      % (r + 1, checksums, times[checksums]['prepare'][-1],
                         times[checksums]['read'][-1]), flush=True)
    n = len(dataset.items)
    med = {k: {m: statistics.median(v) for m, v in d.items()}
           for k, d in times.items()}
    epoch_s = n / rate
    result = {
        'images': n, 'size': args.size, 'rounds': args.rounds,
        'prepare_images_per_s': {'checksums': n / med[True]['prepare'],
                                 'none': n / med[False]['prepare']},
        'prepare_cost': med[True]['prepare'] / med[False]['prepare'] - 1,
        'read_ms_per_image': {'checksums': 1e3 * med[True]['read'] / n,
                              'none': 1e3 * med[False]['read'] / n},
        'train_images_per_s': rate, 'train_rate_source': rate_source,
        'epoch_cost': (med[True]['read'] - med[False]['read']) / epoch_s,
        'seconds': {('checksums' if k else 'none'): v
                    for k, v in times.items()}}
    print(json.dumps({k: result[k] for k in ('prepare_cost', 'epoch_cost',
                                             'read_ms_per_image')}))
    sys.path.insert(0, HERE)
    from common import write_result
    write_result(result, args.out)


if __name__ == '__main__':
    main()
