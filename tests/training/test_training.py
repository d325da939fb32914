"""The one training loop of both stages (lasagne_tagger/training/loop.py), driven
by a fake stage: no Theano, every rule of the loop checked directly."""
import json
import os
import signal
from collections import OrderedDict

import numpy as np
import pytest

from lasagne_tagger.training import checkpoint
from lasagne_tagger.errors import TaggerError
from lasagne_tagger.training.loop import Stage, dropout_streams, reseed, run_rounds


class FakeStream(object):
    def __init__(self):
        self.seeds = []

    def seed(self, value):
        self.seeds.append(value)


class FakeStage(Stage):
    """Round r trains ``steps`` batches; its score comes from ``scores``."""

    round_name = 'round'
    score = 'score'

    def __init__(self, scores, steps=3, losses=None, on_step=None):
        self.scores, self.steps = scores, steps
        self.losses = losses or {}
        self.on_step = on_step
        self.weights = OrderedDict(w=np.zeros(2))
        self.trained = []

    def batches(self, r):
        return ([(r, i) for i in range(self.steps)], self.steps,
                'round %d' % (r + 1))

    def step(self, batch):
        self.trained.append(batch)
        if self.on_step:
            self.on_step(batch)
        self.weights['w'] += 1
        return self.losses.get(batch, 0.5), 0.25, 4

    def finish(self, r, totals, train_seconds):
        assert train_seconds >= 0
        return {'round': r + 1, 'train_loss': totals.loss,
                'train_accuracy': totals.accuracy, 'count': totals.count,
                'score': self.scores[r]}

    def metadata(self, r, row, history):
        return {'round': r, 'history': history}


def _run(stage, out, rounds, **kwargs):
    os.makedirs(out, exist_ok=True)
    return run_rounds(stage, str(out), rounds, stage.weights, stage.weights,
                      kwargs.pop('streams', []), 7, progress=False,
                      log=kwargs.pop('log', lambda line: None), **kwargs)


def _metrics(out):
    with open(os.path.join(str(out), 'metrics.jsonl')) as fh:
        return [json.loads(line) for line in fh]


def test_rounds_write_last_every_time_and_best_on_improvement(tmp_path):
    stage = FakeStage(scores=[0.2, 0.5, 0.4])
    lines = []
    history = _run(stage, tmp_path, range(3), log=lines.append)
    assert [h['round'] for h in history] == [1, 2, 3]
    assert history[0]['train_loss'] == 0.5 and history[0]['count'] == 12
    assert _metrics(tmp_path) == history
    _, last = checkpoint.load_checkpoint(str(tmp_path / 'last'))
    _, best = checkpoint.load_checkpoint(str(tmp_path / 'best'))
    assert last['round'] == 2 and best['round'] == 1     # 0.5 beat 0.4
    arrays, _ = checkpoint.load_checkpoint(str(tmp_path / 'best'))
    assert np.array_equal(arrays['w'], [6, 6])           # after round 2
    assert len(lines) == 3


def test_a_resume_continues_history_and_keeps_the_better_best(tmp_path):
    stage = FakeStage(scores=[0.9, 0.1, 0.3])
    history = _run(stage, tmp_path, range(1))
    history = _run(stage, tmp_path, range(1, 3), history=history, best=0.9)
    assert [h['round'] for h in history] == [1, 2, 3]
    assert _metrics(tmp_path) == history
    _, best = checkpoint.load_checkpoint(str(tmp_path / 'best'))
    assert best['round'] == 0


def test_streams_are_reseeded_from_seed_and_round():
    streams = [FakeStream(), FakeStream()]
    reseed(streams, 7, 3)
    assert streams[0].seeds == [7 * 1000003 + 3 * 101]
    assert streams[1].seeds == [7 * 1000003 + 3 * 101 + 1]


def test_the_loop_reseeds_before_each_round(tmp_path):
    streams = [FakeStream()]
    _run(FakeStage(scores=[0, 0, 0]), tmp_path, range(1, 3), streams=streams)
    assert streams[0].seeds == [7 * 1000003 + 101, 7 * 1000003 + 202]


def test_dropout_streams_are_the_layers_with_one():
    class Layer(object):
        pass
    with_stream, without = Layer(), Layer()
    with_stream._srng = FakeStream()
    net = OrderedDict(a=without, b=with_stream)
    assert dropout_streams(net) == [with_stream._srng]


@pytest.mark.parametrize('bad', [float('nan'), float('inf')])
def test_a_bad_loss_stops_and_saves_nothing_of_its_round(tmp_path, bad):
    stage = FakeStage(scores=[0.3, 0.4], losses={(1, 1): bad})
    with pytest.raises(TaggerError, match=r'loss became %s in round 2; '
                       r'stopped .*The last good checkpoint is .*last\.npz'
                       % bad):
        _run(stage, tmp_path, range(2))
    _, last = checkpoint.load_checkpoint(str(tmp_path / 'last'))
    assert last['round'] == 0 and len(_metrics(tmp_path)) == 1


def test_a_bad_loss_in_the_first_round_says_no_checkpoint(tmp_path):
    stage = FakeStage(scores=[0.3], losses={(0, 0): float('nan')})
    with pytest.raises(TaggerError, match='No checkpoint was written yet'):
        _run(stage, tmp_path, range(1))
    assert not os.path.exists(str(tmp_path / 'metrics.jsonl'))


def test_ctrl_c_discards_the_round_keeps_the_last_and_restores_the_handler(
        tmp_path):
    def interrupt(batch):
        if batch == (1, 0):
            os.kill(os.getpid(), signal.SIGINT)

    stage = FakeStage(scores=[0.3, 0.4, 0.5], on_step=interrupt)
    before = signal.getsignal(signal.SIGINT)
    lines = []
    history = _run(stage, tmp_path, range(3), log=lines.append)
    assert signal.getsignal(signal.SIGINT) is before
    assert [h['round'] for h in history] == [1]
    assert (1, 1) not in stage.trained           # stopped inside round 2
    assert lines[-1].startswith('interrupted: round 2 discarded')
    _, last = checkpoint.load_checkpoint(str(tmp_path / 'last'))
    assert last['round'] == 0 and _metrics(tmp_path) == history


def test_the_handler_is_restored_after_an_error(tmp_path):
    before = signal.getsignal(signal.SIGINT)

    def fail(batch):
        raise RuntimeError('boom')
    with pytest.raises(RuntimeError):
        _run(FakeStage(scores=[0.1], on_step=fail), tmp_path, range(1))
    assert signal.getsignal(signal.SIGINT) is before
