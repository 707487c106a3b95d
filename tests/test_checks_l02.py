"""Lesson 02's self-checks accept the reference answers and reject the usual mistakes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from utils import metrics
from utils.checks import l02


def _not_written(*args, **kwargs):
    raise NotImplementedError


# -- 02.1 group AUC ----------------------------------------------------------------------------------------

def _gauc(labels, scores, users):
    return metrics.group_auc(labels, scores, users)


def _gauc_loop_float32(labels, scores, users):
    """The notebook's loop, on float32 scores, returning a float32."""
    frame = pd.DataFrame({"y": labels, "s": np.asarray(scores, np.float32), "u": users})
    kept = [(metrics.auc(g.y, g.s), len(g)) for _, g in frame.groupby("u") if g.y.nunique() == 2]
    values, weights = zip(*kept)
    return np.float32(np.average(values, weights=weights))


def _gauc_sklearn(labels, scores, users):
    from sklearn.metrics import roc_auc_score

    total = weight = 0.0
    for user in np.unique(users):
        rows = users == user
        if len(set(labels[rows])) == 2:
            total += rows.sum() * roc_auc_score(labels[rows], scores[rows])
            weight += rows.sum()
    return total / weight


def _per_user_aucs(labels, scores, users):
    frame = pd.DataFrame({"y": labels, "s": scores, "u": users})
    rows = []
    for _, g in frame.groupby("u"):
        rows.append((metrics.auc(g.y, g.s), len(g), g.y.sum()))
    return pd.DataFrame(rows, columns=["auc", "n", "clicks"])


def _gauc_uniform(labels, scores, users):
    return metrics.group_auc(labels, scores, users, weight="uniform")


def _gauc_global(labels, scores, users):
    return metrics.auc(labels, scores)


def _gauc_no_skip(labels, scores, users):
    table = _per_user_aucs(labels, scores, users)
    return float(np.average(table.auc, weights=table.n))


def _gauc_clicks(labels, scores, users):
    table = _per_user_aucs(labels, scores, users).dropna()
    return float(np.average(table.auc, weights=table.clicks))


def _gauc_pairs(labels, scores, users):
    table = _per_user_aucs(labels, scores, users).dropna()
    return float(np.average(table.auc, weights=table.clicks * (table.n - table.clicks)))


def _gauc_half_for_one_class(labels, scores, users):
    table = _per_user_aucs(labels, scores, users).fillna(0.5)
    return float(np.average(table.auc, weights=table.n))


def _gauc_total_impressions(labels, scores, users):
    table = _per_user_aucs(labels, scores, users).dropna()
    return float(np.sum(table.auc * table.n) / len(labels))


def _gauc_runs(labels, scores, users):
    """Groups consecutive rows only, as if each user's rows were next to each other."""
    cuts = np.flatnonzero(np.diff(users)) + 1
    parts = [(metrics.auc(y, s), len(y)) for y, s in zip(np.split(labels, cuts), np.split(scores, cuts))]
    parts = [(a, n) for a, n in parts if np.isfinite(a)]
    return float(np.average([a for a, _ in parts], weights=[n for _, n in parts]))


@pytest.mark.parametrize("fn, words", [(_gauc_uniform, "equally"), (_gauc_global, "global AUC"),
                                       (_gauc_no_skip, "skip users"), (_gauc_clicks, "by their clicks"),
                                       (_gauc_pairs, "pairs"), (_gauc_half_for_one_class, "0.5"),
                                       (_gauc_total_impressions, "users you kept"),
                                       (_gauc_runs, "impression-weighted group AUC")])
def test_group_auc_rejects(fn, words: str) -> None:
    result = l02.group_auc(fn)
    assert result.status == "wrong" and words in result.message, result


@pytest.mark.parametrize("fn", [_gauc, _gauc_loop_float32, _gauc_sklearn])
def test_group_auc_accepts(fn) -> None:
    result = l02.group_auc(fn)
    assert result.passed, result


def test_group_auc_not_attempted() -> None:
    assert l02.group_auc(_not_written).status == "not attempted"


def test_group_auc_fixture_separates_the_weightings() -> None:
    labels, scores, users = l02._groups_fixture()
    aucs, n, clicks, _ = l02._per_user(labels, scores, users)
    impressions = np.average(aucs, weights=n)
    assert impressions == pytest.approx(metrics.group_auc(labels, scores, users))
    for other in (np.average(aucs, weights=clicks), aucs.mean(), metrics.auc(labels, scores)):
        assert abs(other - impressions) > 1e-3


# -- 02.2 NDCG@K -------------------------------------------------------------------------------------------

def _ndcg(relevance, k):
    return l02._ndcg_reference(np.asarray(relevance, float), k)


def _ndcg_float32_natural_log(relevance, k):
    """Natural-log discounts (the base cancels in the ratio), all in float32."""
    r = np.asarray(relevance, np.float32)
    discount = (1.0 / np.log(np.arange(2, k + 2, dtype=np.float32)))
    top, ideal = r[:k], np.sort(r)[::-1][:k]
    idcg = np.sum(ideal * discount[: len(ideal)])
    return np.float32(np.sum(top * discount[: len(top)]) / idcg) if idcg > 0 else np.float32(0.0)


def _ndcg_sklearn(relevance, k):
    from sklearn.metrics import ndcg_score

    r = np.asarray(relevance, float)
    if not r.any():
        return 0.0
    return float(ndcg_score(r[None, :], -np.arange(len(r), dtype=float)[None, :], k=k))


def _dcg_only(relevance, k):
    r = np.asarray(relevance, float)[:k]
    return float(np.sum(r / np.log2(np.arange(2, len(r) + 2))))


def _ideal_over_all(relevance, k):
    r = np.asarray(relevance, float)
    ideal = np.sort(r)[::-1]
    return _dcg_only(r, k) / float(np.sum(ideal / np.log2(np.arange(2, len(r) + 2))))


def _ideal_of_top_k(relevance, k):
    r = np.asarray(relevance, float)
    idcg = _dcg_only(np.sort(r[:k])[::-1], k)
    return _dcg_only(r, k) / idcg if idcg > 0 else 0.0


def _exponential_gain(relevance, k):
    return l02._ndcg_reference(np.asarray(relevance, float), k, gain="exponential")


def _sorted_first(relevance, k):
    return _ndcg(np.sort(np.asarray(relevance, float))[::-1], k)


def _discount_from_zero(relevance, k):
    r = np.asarray(relevance, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        discount = 1.0 / np.log2(np.arange(1, k + 1))
        return float(np.sum(r[:k] * discount) / np.sum(np.sort(r)[::-1][:k] * discount))


def _discount_shifted(relevance, k):
    r = np.asarray(relevance, float)
    discount = 1.0 / np.log2(np.arange(3, k + 3))
    idcg = np.sum(np.sort(r)[::-1][:k] * discount[: min(k, len(r))])
    return float(np.sum(r[:k] * discount[: min(k, len(r))]) / idcg) if idcg > 0 else 0.0


@pytest.mark.parametrize("fn, words", [(_dcg_only, "ideal DCG"), (_ideal_over_all, "stop at rank k"),
                                       (_ideal_of_top_k, "whole list"), (_exponential_gain, "linear gain"),
                                       (_sorted_first, "do not sort"), (_discount_from_zero, "divide by zero"),
                                       (_discount_shifted, "r = 1 for the top item")])
def test_ndcg_rejects(fn, words: str) -> None:
    result = l02.ndcg_at_k(fn)
    assert result.status == "wrong" and words in result.message, result


@pytest.mark.parametrize("fn", [_ndcg, _ndcg_float32_natural_log, _ndcg_sklearn])
def test_ndcg_accepts(fn) -> None:
    result = l02.ndcg_at_k(fn)
    assert result.passed, result


def test_ndcg_reference_matches_library() -> None:
    ranked = np.array([1, 2, 0, 1, 0, 1, 3, 1, 2])
    scores = -np.arange(len(ranked))[None, :]  # the list's order is the model's ranking
    assert _ndcg(ranked, 5) == pytest.approx(metrics.ndcg_at_k(scores, ranked[None, :], 5))
    assert _exponential_gain(ranked, 5) == pytest.approx(
        metrics.ndcg_at_k(scores, ranked[None, :], 5, gain="exponential"))


# -- 02.3 expected calibration error -----------------------------------------------------------------------

def _ece(y, p, n_bins=10):
    return metrics.expected_calibration_error(y, p, n_bins=n_bins)


def _ece_by_index(index, y, p, n_bins):
    y, p = np.asarray(y, float), np.asarray(p)
    total = 0.0
    for b in range(n_bins):
        rows = index == b
        if rows.any():
            total += rows.sum() * abs(y[rows].mean() - p[rows].mean())
    return total / len(p)


def _ece_digitize_left(y, p, n_bins=10):
    edges = np.linspace(0, 1, n_bins + 1)
    return _ece_by_index(np.clip(np.digitize(p, edges[1:-1], right=False), 0, n_bins - 1), y, p, n_bins)


def _ece_floor_float32(y, p, n_bins=10):
    p = np.asarray(p, np.float32)
    index = np.clip(np.floor(p * n_bins).astype(int), 0, n_bins - 1)
    return np.float32(_ece_by_index(index, y, p, n_bins))


def _ece_pandas_cut(y, p, n_bins=10):
    frame = pd.DataFrame({"y": y, "p": p})
    frame["bin"] = pd.cut(frame.p, np.linspace(0, 1, n_bins + 1), include_lowest=True)
    table = frame.groupby("bin", observed=True).agg(y=("y", "mean"), p=("p", "mean"), n=("y", "size"))
    return float(np.sum(table.n * (table.y - table.p).abs()) / table.n.sum())


def _ece_unweighted(y, p, n_bins=10):
    table = metrics.calibration_curve(y, p, n_bins=n_bins)
    return float(np.mean(np.abs(table.observed_rate - table.mean_predicted)))


def _ece_signed(y, p, n_bins=10):
    table = metrics.calibration_curve(y, p, n_bins=n_bins)
    return float(abs(np.average(table.observed_rate - table.mean_predicted, weights=table["count"])))


def _ece_midpoints(y, p, n_bins=10):
    table = metrics.calibration_curve(y, p, n_bins=n_bins)
    midpoints = (table["bin"] + 0.5) / n_bins
    return float(np.average(np.abs(table.observed_rate - midpoints), weights=table["count"]))


def _ece_quantile(y, p, n_bins=10):
    return metrics.expected_calibration_error(y, p, n_bins=n_bins, strategy="quantile")


def _ece_empty_bins_nan(y, p, n_bins=10):
    y, p = np.asarray(y, float), np.asarray(p, float)
    index = np.clip(np.floor(p * n_bins).astype(int), 0, n_bins - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            gaps = [(index == b).sum() * abs(y[index == b].mean() - p[index == b].mean()) for b in range(n_bins)]
    return float(np.sum(gaps) / len(p))


@pytest.mark.parametrize("fn", [_ece, _ece_digitize_left, _ece_floor_float32, _ece_pandas_cut])
def test_ece_accepts(fn) -> None:
    result = l02.expected_calibration_error(fn)
    assert result.passed, result


@pytest.mark.parametrize("fn, words", [(_ece_unweighted, "number of predictions"), (_ece_signed, "absolute gap"),
                                       (_ece_midpoints, "midpoint"), (_ece_quantile, "equal-width"),
                                       (_ece_empty_bins_nan, "empty bins")])
def test_ece_rejects(fn, words: str) -> None:
    result = l02.expected_calibration_error(fn)
    assert result.status == "wrong" and words in result.message, result


def test_ece_fixture_has_no_prediction_on_an_edge() -> None:
    _, p = l02._ece_fixture()
    assert len(p) == 5000 and np.min(np.abs(p * 10 - np.round(p * 10))) > 1e-3
    assert _ece_digitize_left(*l02._ece_fixture()) == pytest.approx(_ece(*l02._ece_fixture()), rel=1e-12)
