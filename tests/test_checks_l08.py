"""Lesson 08's self-checks accept the reference answers and reject the usual mistakes."""

from __future__ import annotations

import numpy as np
import pytest

from utils import graphs, kge
from utils.checks import l08


def _not_written(*args, **kwargs):
    raise NotImplementedError


# --- Exercise 08.1: TransE score and margin loss ---------------------------------------------------


def _loss(score, hinge):
    def fn(h, r, t, h_neg, t_neg, margin=1.0):
        return hinge(score(h, r, t)[:, None], score(h_neg, r[:, None, :], t_neg), margin)
    return fn


def _l2(a, b, c):
    return -np.sqrt(np.sum((a + b - c) ** 2, axis=-1))


def _hinge(p, n, m):
    return float(np.mean(np.maximum(0.0, m - p + n)))


def _loss_float32(h, r, t, h_neg, t_neg, margin=1.0):
    h, r, t, h_neg, t_neg = (np.asarray(a, dtype=np.float32) for a in (h, r, t, h_neg, t_neg))
    scores = _l2(h, r, t)[:, None], _l2(h_neg, r[:, None, :], t_neg)
    return np.mean(np.maximum(np.float32(0.0), np.float32(margin) - scores[0] + scores[1]))  # a float32 scalar


def _loss_keras(h, r, t, h_neg, t_neg, margin=1.0):
    from keras import ops

    def score(a, b, c):
        return -ops.sqrt(ops.sum(ops.square(ops.convert_to_tensor(a + b - c, "float32")), axis=-1))

    hinge = ops.relu(margin - score(h, r, t)[:, None] + score(h_neg, r[:, None, :], t_neg))
    return float(ops.convert_to_numpy(ops.mean(hinge)))


@pytest.mark.parametrize("fn, words", [
    (_loss(lambda a, b, c: -np.sum((a + b - c) ** 2, axis=-1), _hinge), "squared"),
    (_loss(lambda a, b, c: -np.sum(np.abs(a + b - c), axis=-1), _hinge), "L1"),
    (_loss(lambda a, b, c: np.sqrt(np.sum((a + b - c) ** 2, axis=-1)), _hinge), "sign is flipped"),
    (_loss(lambda a, b, c: -np.sqrt(np.sum((a - b - c) ** 2, axis=-1)), _hinge), "h + r - t"),
    (_loss(_l2, lambda p, n, m: float(np.mean(np.maximum(0.0, m + p - n)))), "sign is flipped"),
    (_loss(_l2, lambda p, n, m: float(np.mean(m - p + n))), "max(0, ...) is missing"),
    (_loss(_l2, lambda p, n, m: float(np.sum(np.maximum(0.0, m - p + n)))), "mean"),
    (_loss(_l2, lambda p, n, m: float(np.mean(np.maximum(0.0, n - p)))), "margin is missing"),
    (_loss(_l2, lambda p, n, m: float(np.mean(np.maximum(0.0, 2 * m - p + n)))), "the margin loss is"),
    (lambda *a: kge.transe_margin_loss_numpy(*a) * (1 + 1e-4), "relative tolerance"),
])
def test_margin_loss_rejects(fn, words: str) -> None:
    result = l08.transe_margin_loss(fn)
    assert result.status == "wrong" and words in result.message, result


def test_margin_loss_accepts_and_not_attempted() -> None:
    assert l08.transe_margin_loss(kge.transe_margin_loss_numpy).passed
    assert l08.transe_margin_loss(_loss(_l2, _hinge)).passed
    assert l08.transe_margin_loss(_loss_float32).passed
    assert l08.transe_margin_loss(_loss_keras).passed
    assert l08.transe_margin_loss(_not_written).status == "not attempted"
    result = l08.transe_margin_loss(lambda *a: float("nan"))
    assert result.status == "wrong" and "finite" in result.message


# --- Exercise 08.2: negative sampling ---------------------------------------------------------------


def _reference_corrupt(triples, n_entities, rng):
    return kge.corrupt_triples(triples, n_entities, 1, seed=int(rng.integers(1 << 30)))[:, 0, :]


def _from_all(triples, n_entities, rng):
    out = triples.copy()
    side = np.where(rng.random(len(out)) < 0.5, 0, 2)
    out[np.arange(len(out)), side] = rng.integers(0, n_entities, len(out))
    return out


def _tails_only(triples, n_entities, rng):
    out = triples.copy()
    draw = rng.integers(0, n_entities - 1, len(out))
    out[:, 2] = draw + (draw >= out[:, 2])
    return out


def _heads_only(triples, n_entities, rng):
    out = triples.copy()
    draw = rng.integers(0, n_entities - 1, len(out))
    out[:, 0] = draw + (draw >= out[:, 0])
    return out


def _both_sides(triples, n_entities, rng):
    out = _heads_only(triples, n_entities, rng)
    return _tails_only(out, n_entities, rng)


def _in_place(triples, n_entities, rng):
    out = _reference_corrupt(triples, n_entities, rng)
    triples[:] = out
    return out


def _not_uniform(triples, n_entities, rng):
    out = triples.copy()
    side = np.where(rng.random(len(out)) < 0.5, 0, 2)
    original = out[np.arange(len(out)), side]
    out[np.arange(len(out)), side] = (original + 1) % n_entities  # always the next entity
    return out


def _relation_changed(triples, n_entities, rng):
    out = _reference_corrupt(triples, n_entities, rng)
    out[:, 1] = (out[:, 1] + 1) % 5
    return out


def _lopsided(triples, n_entities, rng):
    out = triples.copy()
    side = np.where(rng.random(len(out)) < 0.8, 0, 2)
    original = out[np.arange(len(out)), side]
    draw = rng.integers(0, n_entities - 1, len(out))
    out[np.arange(len(out)), side] = draw + (draw >= original)
    return out


@pytest.mark.parametrize("fn, words", [
    (_from_all, "true triple itself"), (_tails_only, "only tails"), (_heads_only, "only heads"),
    (_both_sides, "not both"), (_in_place, "changed the input"), (_not_uniform, "uniform"),
    (_relation_changed, "relation must stay"), (_lopsided, "probability 1/2"),
    (lambda t, n, r: t[:10].copy(), "one corruption per triple"),
])
def test_corrupt_rejects(fn, words: str) -> None:
    result = l08.corrupt(fn)
    assert result.status == "wrong" and words in result.message, result


def _corrupt_by_choice(triples, n_entities, rng):
    out = np.array(triples, copy=True)
    for row in out:
        side = 0 if rng.random() < 0.5 else 2
        row[side] = rng.choice([e for e in range(n_entities) if e != row[side]])
    return out


def test_corrupt_accepts_and_not_attempted() -> None:
    assert l08.corrupt(_reference_corrupt).passed
    assert l08.corrupt(_corrupt_by_choice).passed
    assert l08.corrupt(_not_written).status == "not attempted"


# --- Exercise 08.3: filtered rank ------------------------------------------------------------------


def _no_filter(scores, target, known):
    return graphs.filtered_rank(scores, target, np.array([target]))


def _zero_based(scores, target, known):
    return graphs.filtered_rank(scores, target, known) - 1


def _ties_ignored(scores, target, known):
    keep = np.ones(scores.size, bool)
    keep[known] = False
    return 1.0 + float(np.sum(scores[keep] > scores[target]))


def _ties_full(scores, target, known):
    keep = np.ones(scores.size, bool)
    keep[known] = False
    return 1.0 + float(np.sum(scores[keep] >= scores[target]))


def _lower_first(scores, target, known):
    return graphs.filtered_rank(-scores, target, known)  # as if a lower score (a distance) were better


def _lower_first_unfiltered(scores, target, known):
    return graphs.filtered_rank(-scores, target, np.array([target]))


def _target_tied_with_itself(scores, target, known):
    return graphs.filtered_rank(scores, target, known) + 0.5


def _rank_float32(scores, target, known):
    scores = np.asarray(scores, dtype=np.float32)
    keep = np.ones(len(scores), bool)
    keep[known] = False
    keep[target] = False
    above, ties = np.sum(scores[keep] > scores[target]), np.sum(scores[keep] == scores[target])
    return np.float32(1.0) + above + np.float32(0.5) * ties


def _rank_by_rankdata(scores, target, known):
    from scipy.stats import rankdata

    keep = np.ones(len(scores), bool)
    keep[known] = False
    keep[target] = True
    ranks = rankdata(-scores[keep], method="average")  # 1 = best, ties share the mean of their ranks
    return float(ranks[np.flatnonzero(keep) == target][0])


@pytest.mark.parametrize("fn, words", [
    (_no_filter, "nothing is filtered"), (_zero_based, "start at 1"), (_ties_ignored, "ties are ignored"),
    (_ties_full, "ties count fully"), (lambda s, t, k: 7.0, "the filtered rank is"),
    (_lower_first, "lower scores first"), (_lower_first_unfiltered, "lower scores first"),
    (_target_tied_with_itself, "with itself"), (lambda s, t, k: float("nan"), "finite"),
])
def test_rank_rejects(fn, words: str) -> None:
    result = l08.filtered_rank(fn)
    assert result.status == "wrong" and words in result.message, result


def test_rank_accepts_and_agrees_with_utils() -> None:
    assert l08.filtered_rank(graphs.filtered_rank).passed
    assert l08.filtered_rank(_rank_float32).passed
    assert l08.filtered_rank(_rank_by_rankdata).passed
    assert l08.filtered_rank(_not_written).status == "not attempted"
    # the one-query rank equals utils.graphs.filtered_ranks on that query
    scores = np.array([0.9, 0.2, 0.7, 0.5, 0.7, 0.95, 0.1, 0.7, 0.7, 0.8])

    class Scorer:
        def score_tails(self, heads, relations):
            return scores[None, :].repeat(len(heads), axis=0)

    known = np.array([[0, 0, 2], [0, 0, 5], [0, 0, 9]])
    ranks = graphs.filtered_ranks(Scorer(), known[:1], known, 10, side="tail")
    assert ranks["rank"].iloc[0] == graphs.filtered_rank(scores, 2, np.array([2, 5, 9])) == 3.5
