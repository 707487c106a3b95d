"""Lesson 02's self-checks accept the reference answers and reject the usual mistakes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from utils import metrics
from utils.checks import l02


def _not_written(*args, **kwargs):
    raise NotImplementedError


def _gauc(labels, scores, users):
    return metrics.group_auc(labels, scores, users)


def _gauc_uniform(labels, scores, users):
    return metrics.group_auc(labels, scores, users, weight="uniform")


def _gauc_global(labels, scores, users):
    return metrics.auc(labels, scores)


def _gauc_no_skip(labels, scores, users):
    frame = pd.DataFrame({"y": labels, "s": scores, "u": users})
    per_user = frame.groupby("u").apply(lambda g: metrics.auc(g.y, g.s))
    return float(np.average(per_user, weights=frame.groupby("u").size()))


@pytest.mark.parametrize("fn, words", [(_gauc_uniform, "impressions"), (_gauc_global, "global AUC"),
                                       (_gauc_no_skip, "skip users")])
def test_group_auc_rejects(fn, words: str) -> None:
    result = l02.group_auc(fn)
    assert result.status == "wrong" and words in result.message, result


def test_group_auc_accepts_and_not_attempted() -> None:
    assert l02.group_auc(_gauc).passed
    assert l02.group_auc(_not_written).status == "not attempted"


def _ndcg(relevance, k):
    return l02._ndcg_reference(np.asarray(relevance, float), k)


def _dcg_only(relevance, k):
    r = np.asarray(relevance, float)[:k]
    return float(np.sum(r / np.log2(np.arange(2, len(r) + 2))))


def _ideal_over_all(relevance, k):
    r = np.asarray(relevance, float)
    ideal = np.sort(r)[::-1]
    return _dcg_only(r, k) / float(np.sum(ideal / np.log2(np.arange(2, len(r) + 2))))


@pytest.mark.parametrize("fn, words", [(_dcg_only, "ideal DCG"), (_ideal_over_all, "stop at rank k")])
def test_ndcg_rejects(fn, words: str) -> None:
    result = l02.ndcg_at_k(fn)
    assert result.status == "wrong" and words in result.message, result


def test_ndcg_accepts_reference_and_matches_library() -> None:
    assert l02.ndcg_at_k(_ndcg).passed
    ranked = np.array([1, 2, 0, 1, 0, 1, 3, 1, 2])
    scores = -np.arange(len(ranked))[None, :]  # the list's order is the model's ranking
    assert _ndcg(ranked, 5) == pytest.approx(metrics.ndcg_at_k(scores, ranked[None, :], 5))


def _ece(y, p, n_bins=10):
    return metrics.expected_calibration_error(y, p, n_bins=n_bins)


def _ece_unweighted(y, p, n_bins=10):
    table = metrics.calibration_curve(y, p, n_bins=n_bins)
    return float(np.mean(np.abs(table.observed_rate - table.mean_predicted)))


def _ece_signed(y, p, n_bins=10):
    table = metrics.calibration_curve(y, p, n_bins=n_bins)
    return float(abs(np.average(table.observed_rate - table.mean_predicted, weights=table["count"])))


def test_ece() -> None:
    assert l02.expected_calibration_error(_ece).passed
    assert "number of predictions" in l02.expected_calibration_error(_ece_unweighted).message
    result = l02.expected_calibration_error(_ece_signed)
    assert result.status == "wrong" and "absolute gap" in result.message, result
