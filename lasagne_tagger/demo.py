"""The README's first command: the pipeline on an embedded default.

Renders the seeded synthetic apparel set (:mod:`synthetic`), prepares it
into a store, fine-tunes GoogLeNet on it (model-zoo weights when present,
else from scratch at a reduced size, and says which), evaluates on the
test split and draws the curves and the confusion matrix.  ``data=ROOT``
runs the same on a folder dataset such as ``../shared/data/clothing-small``.

# note: the LSTM tagger stage is not part of the demo yet (see the open
# tagger issue); the demo stops at the fine-tuned classifier.
"""
import dataclasses
import json
import os
import time

from .errors import TaggerError

__all__ = ['DEMO_DEFAULTS', 'run_demo']

# Reduced size for 2 CPU cores: 64 px inputs, a quarter of GoogLeNet's
# filters, trained from scratch (no ImageNet weights on this machine).
DEMO_DEFAULTS = dict(image_size=64, width=0.25, epochs=8, batch_size=32,
                     learning_rate=0.002, head_lr_mult=1.0, lr_step_epochs=6,
                     lr_decay=0.1, l2=1e-4, dropout=0.4, rotate=False,
                     seed=1)


def run_demo(out_dir='runs/demo', data=None, epochs=None, progress=True,
             log=print):
    """Run the demo pipeline; returns the summary dict (also JSON-written).

    The synthetic garments are always upright, so rotation augmentation is
    off by default here (it is on for ACS).
    """
    from . import datasets, finetune, store, synthetic, weights
    from .config import config_to_dict

    t0 = time.time()
    settings = dict(DEMO_DEFAULTS)
    if epochs is not None:
        settings['epochs'] = int(epochs)
    os.makedirs(out_dir, exist_ok=True)
    if data is None:
        root = os.path.join(out_dir, 'data')
        if not os.path.exists(os.path.join(root, 'taxonomy.json')):
            log('rendering the synthetic apparel set into %s' % root)
            synthetic.render_dataset(root, size=settings['image_size'],
                                     seed=0, progress=progress)
        test_split = 'test'
    else:
        root = os.fspath(data)
        test_split = 'validation'
    dataset = datasets.read_folder_dataset(root)
    if 'train' not in dataset.splits or test_split not in dataset.splits:
        raise TaggerError('needs train and %s splits, found %s'
                          % (test_split, ', '.join(dataset.splits)), root)
    zoo = weights.find_weights()
    size = 224 if zoo else settings['image_size']
    store_path = os.path.join(out_dir, 'store-%d.h5' % size)
    summary = store.prepare(dataset, store_path, size=size,
                            upscale=True, progress=progress)
    log(str(summary))
    fields = {f.name for f in dataclasses.fields(finetune.FinetuneConfig)}
    config = finetune.FinetuneConfig(
        store=store_path, from_scratch=zoo is None,
        val_split='validation',
        **{k: v for k, v in settings.items() if k in fields})
    if zoo:
        config = dataclasses.replace(config, width=1.0, weights=zoo)
        log('using the ImageNet model-zoo weights from %s' % zoo)
    else:
        log('no ImageNet weights found: training from scratch at %d px, '
            'width %g' % (size, config.width))
    run_dir = os.path.join(out_dir, 'classifier')
    history = finetune.train(config, run_dir, resume=True,
                             progress=progress, log=log)
    report = finetune.evaluate(os.path.join(run_dir, 'best'), store_path,
                               test_split, batch_size=config.batch_size)
    figures = []
    try:
        from . import plots
        figures = plots.plot_run(run_dir)
    except ImportError:
        pass
    result = {'data': root, 'test_split': test_split,
              'init': 'model-zoo' if zoo else 'from scratch',
              'config': config_to_dict(config),
              'epochs': len(history),
              'test_accuracy': report['accuracy'],
              'test_mean_class_accuracy': report['mean_class_accuracy'],
              'final_train_accuracy': history[-1]['train_accuracy'],
              'figures': figures,
              'prepare_images_per_s': summary.images_per_second,
              'wall_s': time.time() - t0}
    with open(os.path.join(out_dir, 'summary.json'), 'w') as fh:
        json.dump(result, fh, indent=2)
    log('test accuracy %.3f, mean class accuracy %.3f (%s split); wall '
        'time %.0f s; results in %s'
        % (result['test_accuracy'], result['test_mean_class_accuracy'],
           test_split, result['wall_s'], out_dir))
    return result
