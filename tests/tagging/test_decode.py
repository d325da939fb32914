"""Tests for lasagne_tagger.tagging.decode with a fake, table-driven model."""
import itertools
import math

import numpy as np
import pytest

from lasagne_tagger.tagging.decode import (Hypothesis, beam_search, beam_search_batch,
                                   greedy_search)
from lasagne_tagger.errors import TaggerError

# Vocabulary: 0 <pad>, 1 <start>, 2 <end>, tags A=3, B=4, C=5, D=6.
V = 7
END = 2
A, B, C, D = 3, 4, 5, 6


class FakeModel:
    """Next-token probabilities looked up by prefix.

    The state is ``(prefix,)``: an int array ``(rows, t)`` holding each
    row's tokens so far, so a wrongly gathered state gives a wrong lookup.
    A prefix missing from ``table`` ends with probability 1.
    """

    def __init__(self, table):
        self.table = table
        self.calls = []

    def log_probs(self, prefix):
        probs = np.zeros(V)
        for token, p in self.table.get(tuple(prefix), {END: 1.0}).items():
            probs[token] = p
        with np.errstate(divide='ignore'):
            return np.log(probs)

    def init(self):
        return (np.zeros((1, 0), dtype=np.int64),), self.log_probs(())

    def step(self, state, tokens):
        assert tokens.dtype == np.int32 and tokens.shape == (len(state[0]),)
        self.calls.append(tokens.tolist())
        prefix = np.concatenate([state[0], tokens[:, None]], axis=1)
        return (np.stack([self.log_probs(row) for row in prefix.tolist()]),
                (prefix,))


def run(search, model, **kwargs):
    state, init = model.init()
    return search(model.step, state, init, V, END, **kwargs)


# Greedy takes A (0.5), whose continuations are all poor (0.4/0.3/0.3);
# B (0.4) then ends with 0.9.
GARDEN_PATH = {
    (): {A: 0.5, B: 0.4, C: 0.1},
    (A,): {END: 0.4, B: 0.3, C: 0.3},
    (B,): {END: 0.9, A: 0.1},
}


def test_greedy_takes_the_garden_path():
    ids, probs = run(greedy_search, FakeModel(GARDEN_PATH))
    assert ids == [A]
    assert probs == pytest.approx([0.5])


def test_beam_finds_the_better_sequence():
    model = FakeModel(GARDEN_PATH)
    hyps = run(beam_search, model, beam_width=2)
    assert [h.ids for h in hyps] == [[B], [A]]
    assert [h.log_prob for h in hyps] == pytest.approx(
        [math.log(0.4 * 0.9), math.log(0.5 * 0.4)])
    assert isinstance(hyps[0], Hypothesis)
    ids, score = hyps[0]                         # a plain 2-tuple too
    assert (ids, score) == ([B], hyps[0].log_prob)
    # Step 1 feeds A and B; both top candidates of step 2 end: no step 3.
    assert model.calls == [[A, B]]


def test_beam_width_three_hand_computed():
    hyps = run(beam_search, FakeModel(GARDEN_PATH), beam_width=3)
    # Step 2 candidates: B.end .36, A.end .2, A.B .15, A.C .15, C.end .1;
    # A.B and A.C then end with probability 1 (missing prefixes).
    assert [h.ids for h in hyps] == [[B], [A], [A, B]]
    assert [h.log_prob for h in hyps] == pytest.approx(
        [math.log(0.36), math.log(0.2), math.log(0.15)])


def test_width_one_is_greedy_on_garden_path():
    ids, probs = run(greedy_search, FakeModel(GARDEN_PATH))
    (hyp,) = run(beam_search, FakeModel(GARDEN_PATH), beam_width=1)
    assert hyp.ids == ids
    assert hyp.log_prob == pytest.approx(math.log(0.5 * 0.4))


class RandomModel(FakeModel):
    """A deterministic pseudo-random distribution for every prefix."""

    def __init__(self, seed, end_scale=1.0):
        super().__init__({})
        self.seed, self.end_scale = seed, end_scale

    def log_probs(self, prefix):
        rng = np.random.default_rng([self.seed] + list(prefix))
        p = rng.dirichlet(np.ones(V))
        p[END] *= self.end_scale
        return np.log(p / p.sum())


def exhaustive(model, max_len, banned=(0, 1), no_repeat=True, alpha=0.0):
    """Every finished hypothesis by enumeration, best first."""
    allowed = [t for t in range(V) if t not in banned and t != END]
    out = []
    for n in range(max_len + 1):
        seqs = (itertools.permutations(allowed, n) if no_repeat
                else itertools.product(allowed, repeat=n))
        for seq in seqs:
            lp = sum(model.log_probs(seq[:i])[t] for i, t in enumerate(seq))
            steps = n
            if n < max_len:
                lp += model.log_probs(seq)[END]
                steps += 1
            out.append((list(seq), lp, lp / steps ** alpha if alpha else lp))
    out.sort(key=lambda x: -x[2])
    return out


@pytest.mark.parametrize('seed', range(6))
def test_width_one_equals_greedy_on_random_models(seed):
    model = RandomModel(seed, end_scale=0.3)
    ids, probs = run(greedy_search, model, max_len=4)
    (hyp,) = run(beam_search, model, beam_width=1, max_len=4)
    assert hyp.ids == ids
    # Greedy by hand: argmax of the allowed tokens at each step.
    prefix, expected_probs = [], []
    while len(prefix) < 4:
        lp = model.log_probs(prefix)
        lp[[0, 1] + prefix] = -np.inf
        tok = int(np.argmax(lp))
        if tok == END:
            break
        prefix.append(tok)
        expected_probs.append(math.exp(lp[tok]))
    assert ids == prefix
    assert probs == pytest.approx(expected_probs)


@pytest.mark.parametrize('seed', range(4))
@pytest.mark.parametrize('no_repeat', [True, False])
@pytest.mark.parametrize('alpha', [0.0, 1.0])
def test_wide_beam_is_exhaustive(seed, no_repeat, alpha):
    model = RandomModel(seed, end_scale=0.5)
    truth = exhaustive(model, 3, no_repeat=no_repeat, alpha=alpha)
    hyps = run(beam_search, model, beam_width=len(truth), max_len=3,
               no_repeat=no_repeat, length_norm=bool(alpha))
    assert [h.ids for h in hyps] == [t[0] for t in truth]
    assert [h.log_prob for h in hyps] == pytest.approx([t[1] for t in truth])
    # A narrow beam returns a prefix of the ranking or worse, never better.
    narrow = run(beam_search, model, beam_width=2, max_len=3,
                 no_repeat=no_repeat, length_norm=bool(alpha))
    assert len(narrow) == 2
    if not alpha:
        assert narrow[0].log_prob <= truth[0][1] + 1e-12


def test_no_repeat():
    table = {(): {A: 0.9, B: 0.1}, (A,): {A: 0.6, B: 0.3, END: 0.1},
             (A, B): {END: 1.0}, (A, A): {END: 1.0}}
    ids, probs = run(greedy_search, FakeModel(table))
    assert ids == [A, B]
    assert probs == pytest.approx([0.9, 0.3])
    ids, probs = run(greedy_search, FakeModel(table), no_repeat=False)
    assert ids == [A, A]
    for width in (1, 3):
        for hyp in run(beam_search, FakeModel(table), beam_width=width):
            assert len(set(hyp.ids)) == len(hyp.ids)


def test_banned_ids_never_emitted():
    table = {(): {0: 0.3, 1: 0.3, B: 0.25, A: 0.15},
             (B,): {1: 0.5, C: 0.3, END: 0.2}, (A,): {END: 1.0}}
    ids, probs = run(greedy_search, FakeModel(table))
    assert ids == [B, C]
    assert probs == pytest.approx([0.25, 0.3])
    hyps = run(beam_search, FakeModel(table), beam_width=5)
    assert all(not {0, 1} & set(h.ids) for h in hyps)
    hyps = run(beam_search, FakeModel(table), beam_width=3,
               banned_ids=(0, 1, B))
    assert [h.ids for h in hyps] == [[A]]
    assert hyps[0].log_prob == pytest.approx(math.log(0.15))


def test_max_len_stops_without_end():
    # Never ends: each prefix spreads over the unused tags.
    table = {(): {A: 0.7, B: 0.3}, (A,): {B: 0.6, C: 0.4},
             (A, B): {C: 1.0}, (A, C): {B: 1.0}, (B,): {A: 1.0},
             (B, A): {C: 1.0}}
    ids, probs = run(greedy_search, FakeModel(table), max_len=2)
    assert ids == [A, B] and probs == pytest.approx([0.7, 0.6])
    hyps = run(beam_search, FakeModel(table), beam_width=3, max_len=2)
    assert [h.ids for h in hyps] == [[A, B], [B, A], [A, C]]
    assert [h.log_prob for h in hyps] == pytest.approx(
        [math.log(0.42), math.log(0.3), math.log(0.28)])
    hyps = run(beam_search, FakeModel(table), beam_width=1, max_len=3)
    assert hyps[0].ids == [A, B, C]
    (hyp,) = run(beam_search, FakeModel(table), beam_width=1, max_len=1)
    assert hyp.ids == [A] and hyp.log_prob == pytest.approx(math.log(0.7))


def test_end_first_gives_empty_sequence():
    table = {(): {END: 0.6, A: 0.4}}
    model = FakeModel(table)
    assert run(greedy_search, model) == ([], [])
    assert model.calls == []
    hyps = run(beam_search, FakeModel(table), beam_width=2)
    assert [h.ids for h in hyps] == [[], [A]]
    assert [h.log_prob for h in hyps] == pytest.approx(
        [math.log(0.6), math.log(0.4)])


def test_dead_end_finishes_as_is():
    # After A and B nothing is allowed (end has probability 0).
    table = {(): {A: 1.0}, (A,): {B: 1.0}, (A, B): {A: 0.5, B: 0.5}}
    ids, probs = run(greedy_search, FakeModel(table), max_len=5)
    assert ids == [A, B] and probs == [1.0, 1.0]
    model = FakeModel({(): {0: 1.0}})
    assert run(beam_search, model) == [([], 0.0)]


def test_length_norm_changes_ranking():
    table = {(): {END: 0.3, A: 0.7},
             (A,): {END: 0.35, B: 0.35, C: 0.3},
             (A, B): {END: 0.9, C: 0.1}}
    plain = run(beam_search, FakeModel(table), beam_width=3)
    assert [h.ids for h in plain] == [[], [A], [A, B]]
    assert [h.log_prob for h in plain] == pytest.approx(
        [math.log(0.3), math.log(0.245), math.log(0.2205)])
    # Ranked by log_prob / n: [A, B] -0.504, [A, C] -0.520, [A] -0.703.
    normed = run(beam_search, FakeModel(table), beam_width=3,
                 length_norm=True)
    assert [h.ids for h in normed] == [[A, B], [A, C], [A]]
    assert [h.log_prob for h in normed] == pytest.approx(
        [math.log(0.2205), math.log(0.21), math.log(0.245)])


def test_batch_matches_single():
    models = [RandomModel(s, end_scale=0.5) for s in range(3)]

    class Mixed(RandomModel):
        """One step function for all images: row i's prefix starts with i."""

        def log_probs(self, prefix):
            return models[prefix[0]].log_probs(prefix[1:])

    mixed = Mixed(0)
    init_states = (np.arange(3)[:, None],)
    init_lp = np.stack([m.log_probs(()) for m in models])
    batch = beam_search_batch(mixed.step, init_states, init_lp, V,
                              end_id=END, beam_width=2, max_len=3)
    assert len(batch) == 3
    for m, got in zip(models, batch):
        assert got == run(beam_search, m, beam_width=2, max_len=3)
    with pytest.raises(TaggerError, match='first axis'):
        beam_search_batch(mixed.step, (np.zeros((2, 1)),), init_lp, V)


def test_bad_arguments():
    model = FakeModel(GARDEN_PATH)
    state, init = model.init()
    with pytest.raises(TaggerError, match='beam_width'):
        beam_search(model.step, state, init, V, END, beam_width=0)
    with pytest.raises(TaggerError, match='max_len'):
        beam_search(model.step, state, init, V, END, max_len=0)
    with pytest.raises(TaggerError, match='init_log_probs has shape'):
        beam_search(model.step, state, init[:5], V, END)
    with pytest.raises(TaggerError, match='NaN'):
        beam_search(model.step, state, np.full(V, np.nan), V, END)
    with pytest.raises(TaggerError, match='init_state'):
        beam_search(model.step, (np.zeros((2, 0)),), init, V, END)
    with pytest.raises(TaggerError, match='init_state'):
        beam_search(model.step, np.zeros((1, 0)), init, V, END)
    with pytest.raises(TaggerError, match='end_id'):
        beam_search(model.step, state, init, V, V)
    with pytest.raises(TaggerError, match='banned id'):
        beam_search(model.step, state, init, V, END, banned_ids=(V,))

    def bad_step(state, tokens):
        return np.zeros((len(tokens), V + 1)), state

    with pytest.raises(TaggerError, match='step_fn log_probs has shape'):
        beam_search(bad_step, state, init, V, END)


def test_early_stop_only_when_nothing_live_can_win():
    # [] .4 and [A] .27 finish first, but the live [A, B] (.33) still wins.
    table = {(): {END: 0.4, A: 0.6}, (A,): {END: 0.45, B: 0.55},
             (A, B): {END: 1.0}}
    model = FakeModel(table)
    hyps = run(beam_search, model, beam_width=2)
    assert [h.ids for h in hyps] == [[], [A, B]]
    assert [h.log_prob for h in hyps] == pytest.approx(
        [math.log(0.4), math.log(0.33)])
    assert model.calls == [[A], [B]]
    # Here the live [A, B] (.03) cannot beat [A] (.27): no call feeds B.
    table = {(): {END: 0.5, A: 0.3, B: 0.2}, (A,): {END: 0.9, B: 0.1}}
    model = FakeModel(table)
    hyps = run(beam_search, model, beam_width=2)
    assert [h.ids for h in hyps] == [[], [A]]
    assert model.calls == [[A]]
