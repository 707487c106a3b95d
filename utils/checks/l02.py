"""Self-checks for lesson 02 (single-task baselines): group AUC, NDCG@K of one list, calibration error."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from utils.checks import CheckResult, expect, run_check
from utils import metrics


def _groups_fixture() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three users: a big one ranked well, a small one ranked badly, one with clicks only (skipped)."""
    rng = np.random.default_rng(7)
    y_big = np.array([1] * 10 + [0] * 30)
    s_big = np.where(y_big == 1, rng.uniform(0.5, 1.0, 40), rng.uniform(0.0, 0.6, 40))
    y_small = np.array([1, 0, 0, 0])
    s_small = np.array([0.1, 0.4, 0.3, 0.2])
    y_one = np.array([1, 1])
    s_one = np.array([0.9, 0.8])
    labels = np.concatenate([y_big, y_small, y_one])
    scores = np.concatenate([s_big, s_small, s_one])
    users = np.array([0] * 40 + [1] * 4 + [2] * 2)
    return labels, scores, users


def _check_group_auc(fn: Callable[..., float]) -> str:
    labels, scores, users = _groups_fixture()
    want = metrics.group_auc(labels, scores, users)
    got = float(fn(labels, scores, users))
    expect(np.isfinite(got), f"got {got}: skip users whose impressions are all clicks or all non-clicks")
    uniform = metrics.group_auc(labels, scores, users, weight="uniform")
    expect(not np.isclose(got, uniform), "you averaged users equally: weight each user's AUC by their impressions")
    expect(not np.isclose(got, metrics.auc(labels, scores)),
           "that is the global AUC over all impressions: compute one AUC per user, then average")
    expect(np.isclose(got, want, atol=1e-9), f"got {got:.6f}, the impression-weighted group AUC is {want:.6f}")
    return f"correct: {got:.4f} (global AUC {metrics.auc(labels, scores):.4f}; users with one class are skipped)"


def group_auc(fn: Callable[..., float]) -> CheckResult:
    """Check Exercise 02.1: AUC per user, averaged with impression weights."""
    return run_check("Exercise 02.1 (group AUC)", _check_group_auc, fn, "utils.metrics.group_auc")


def _ndcg_reference(relevance: np.ndarray, k: int) -> float:
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    top = relevance[:k]
    ideal = np.sort(relevance)[::-1][:k]
    idcg = float(np.sum(ideal * discounts[: len(ideal)]))
    return float(np.sum(top * discounts[: len(top)]) / idcg) if idcg > 0 else 0.0


def _check_ndcg(fn: Callable[..., float]) -> str:
    ranked = np.array([1, 2, 0, 1, 0, 1, 3, 1, 2])
    want = _ndcg_reference(ranked, 5)
    got = float(fn(ranked, 5))
    dcg = float(np.sum(ranked[:5] / np.log2(np.arange(2, 7))))
    expect(not np.isclose(got, dcg), "that is the DCG: divide by the ideal DCG (the same list sorted best first)")
    ideal_all = float(dcg / np.sum(np.sort(ranked)[::-1] / np.log2(np.arange(2, len(ranked) + 2))))
    expect(not np.isclose(got, ideal_all), "the ideal DCG must also stop at rank k")
    expect(np.isclose(got, want, atol=1e-9), f"got {got:.6f} for relevances {ranked.tolist()} at k=5, want {want:.6f}")
    expect(np.isclose(float(fn(np.array([3, 2, 1, 0]), 3)), 1.0), "a list already in the ideal order must score 1.0")
    expect(float(fn(np.array([0, 0, 0]), 3)) == 0.0, "a list with no relevant item scores 0 (not NaN)")
    return f"correct: NDCG@5 = {got:.4f}"


def ndcg_at_k(fn: Callable[..., float]) -> CheckResult:
    """Check Exercise 02.2: NDCG@K of one ranked list of relevances."""
    return run_check("Exercise 02.2 (NDCG@K)", _check_ndcg, fn, "utils.metrics.ndcg_at_k")


def _check_ece(fn: Callable[..., float]) -> str:
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 1, 5000)
    y = (rng.random(5000) < 0.1 + 0.6 * p).astype(int)  # under-confident at low p, over-confident at high p
    want = metrics.expected_calibration_error(y, p, n_bins=10)
    got = float(fn(y, p, n_bins=10))
    edges = np.linspace(0, 1, 11)
    index = np.clip(np.digitize(p, edges[1:-1], right=True), 0, 9)
    gaps = [abs(y[index == b].mean() - p[index == b].mean()) for b in range(10) if (index == b).any()]
    signed = [y[index == b].mean() - p[index == b].mean() for b in range(10) if (index == b).any()]
    counts = [(index == b).sum() for b in range(10) if (index == b).any()]
    expect(not np.isclose(got, np.mean(gaps)), "weight each bin's gap by its number of predictions, not equally")
    expect(not np.isclose(got, abs(np.average(signed, weights=counts))),
           "take the absolute gap in each bin before averaging: over- and under-confidence must not cancel")
    expect(np.isclose(got, want, atol=1e-6), f"got {got:.6f}, the expected calibration error is {want:.6f}")
    perfect = float(fn(np.r_[np.ones(50), np.zeros(50)], np.full(100, 0.5), n_bins=10))
    expect(np.isclose(perfect, 0.0), "predicting 0.5 where half are positive is perfectly calibrated: ECE must be 0")
    return f"correct: ECE = {got:.4f} on a model that is under-confident at low scores, over-confident at high ones"


def expected_calibration_error(fn: Callable[..., float]) -> CheckResult:
    """Check Exercise 02.3: the expected calibration error with equal-width bins."""
    return run_check("Exercise 02.3 (expected calibration error)", _check_ece, fn,
                     "utils.metrics.expected_calibration_error")
