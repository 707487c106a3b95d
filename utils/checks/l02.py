"""Self-checks for lesson 02 (single-task baselines): group AUC, NDCG@K of one list, calibration error."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from utils.checks import RTOL, CheckResult, expect, run_check
from utils import metrics


def _close(got: float, want: float, rtol: float = RTOL) -> bool:
    return bool(np.isclose(got, want, rtol=rtol, atol=1e-7))


def _groups_fixture() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Five users, rows shuffled: impressions, clicks and pairs give each kept user a different weight.

    A big user ranked well (40 impressions, 10 clicks), a small one ranked badly (4, 2), a medium one in
    between (10, 1), and two users with one class only (skipped): weighting by impressions, by clicks, by
    (click, non-click) pairs or uniformly, and the global AUC, all give different numbers.
    """
    rng = np.random.default_rng(7)
    y_big = np.array([1] * 10 + [0] * 30)
    s_big = np.where(y_big == 1, rng.uniform(0.5, 1.0, 40), rng.uniform(0.0, 0.6, 40))
    y_small = np.array([1, 1, 0, 0])
    s_small = np.array([0.15, 0.35, 0.4, 0.3])
    y_mid = np.array([1] + [0] * 9)
    s_mid = np.r_[0.55, rng.uniform(0.2, 0.8, 9)]
    y_clicks_only = np.array([1, 1])
    s_clicks_only = np.array([0.9, 0.8])
    y_none = np.array([0, 0, 0])
    s_none = np.array([0.7, 0.1, 0.45])
    labels = np.concatenate([y_big, y_small, y_mid, y_clicks_only, y_none])
    scores = np.concatenate([s_big, s_small, s_mid, s_clicks_only, s_none])
    users = np.repeat([0, 1, 2, 3, 4], [40, 4, 10, 2, 3])
    order = rng.permutation(len(labels))  # a user's rows are not next to each other, as in a real log
    return labels[order], scores[order], users[order]


def _per_user(labels: np.ndarray, scores: np.ndarray, users: np.ndarray) -> tuple[np.ndarray, ...]:
    """AUC, impressions, clicks of every user with both classes, and the impressions of the skipped ones."""
    aucs, n, clicks, skipped = [], [], [], 0
    for user in np.unique(users):
        rows = users == user
        k = int(labels[rows].sum())
        if 0 < k < rows.sum():
            aucs.append(metrics.auc(labels[rows], scores[rows]))
            n.append(rows.sum())
            clicks.append(k)
        else:
            skipped += int(rows.sum())
    return np.array(aucs), np.array(n, float), np.array(clicks, float), np.array(skipped)


def _check_group_auc(fn: Callable[..., float]) -> str:
    labels, scores, users = _groups_fixture()
    want = metrics.group_auc(labels, scores, users)
    got = float(fn(labels, scores, users))
    expect(np.isfinite(got), f"got {got}: skip users whose impressions are all clicks or all non-clicks")
    aucs, n, clicks, skipped = _per_user(labels, scores, users)
    with_halves = float((np.sum(aucs * n) + 0.5 * skipped) / (n.sum() + skipped))
    expect(not _close(got, with_halves),
           "users with one class have no AUC: skip them, do not count them as 0.5")
    expect(not _close(got, float(np.sum(aucs * n) / (n.sum() + skipped))),
           "divide by the impressions of the users you kept: the skipped users must not count in the total")
    expect(not _close(got, float(np.mean(aucs))),
           "you averaged users equally: weight each user's AUC by their impressions")
    expect(not _close(got, float(np.average(aucs, weights=clicks))),
           "you weighted each user's AUC by their clicks: weight it by their impressions (all their rows, "
           "clicked or not)")
    expect(not _close(got, float(np.average(aucs, weights=clicks * (n - clicks)))),
           "you weighted each user's AUC by their (click, non-click) pairs: weight it by their impressions")
    expect(not _close(got, metrics.auc(labels, scores)),
           "that is the global AUC over all impressions: compute one AUC per user, then average")
    expect(_close(got, want),
           f"got {got:.6f}, the impression-weighted group AUC is {want:.6f} (checked to a relative {RTOL:g})")
    return f"correct: {got:.4f} (global AUC {metrics.auc(labels, scores):.4f}; users with one class are skipped)"


def group_auc(fn: Callable[..., float]) -> CheckResult:
    """Check Exercise 02.1: AUC per user, averaged with impression weights."""
    return run_check("Exercise 02.1 (group AUC)", _check_group_auc, fn, "utils.metrics.group_auc")


def _ndcg_reference(relevance: np.ndarray, k: int, gain: str = "linear", ideal_from: str = "all") -> float:
    """NDCG@k of one ranked list; ``gain="exponential"`` and ``ideal_from="top"`` give two usual mistakes."""
    relevance = np.asarray(relevance, dtype=float)
    if gain == "exponential":
        relevance = 2.0 ** relevance - 1.0
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    top = relevance[:k]
    ideal = np.sort(relevance if ideal_from == "all" else top)[::-1][:k]
    idcg = float(np.sum(ideal * discounts[: len(ideal)]))
    return float(np.sum(top * discounts[: len(top)]) / idcg) if idcg > 0 else 0.0


def _check_ndcg(fn: Callable[..., float]) -> str:
    ranked = np.array([1, 2, 0, 1, 0, 1, 3, 1, 2])
    want = _ndcg_reference(ranked, 5)
    got = float(fn(ranked, 5))
    expect(np.isfinite(got), f"got {got}: the discount of rank r is 1 / log2(r + 1), with r = 1 for the top item "
                             "(log2(1) = 0 would divide by zero)")
    dcg = float(np.sum(ranked[:5] / np.log2(np.arange(2, 7))))
    expect(not _close(got, dcg), "that is the DCG: divide by the ideal DCG (the same list sorted best first)")
    ideal_all = float(dcg / np.sum(np.sort(ranked)[::-1] / np.log2(np.arange(2, len(ranked) + 2))))
    expect(not _close(got, ideal_all), "the ideal DCG must also stop at rank k")
    expect(not _close(got, _ndcg_reference(ranked, 5, ideal_from="top")),
           "the ideal DCG sorts the whole list best first, then keeps its top k: not just the k items the "
           "model ranked first (a relevant item the model put below k is what the ideal order would show)")
    expect(not _close(got, 1.0), "the list is already in the model's order: do not sort it before the DCG, only for "
                                 "the ideal DCG")
    expect(not _close(got, _ndcg_reference(ranked, 5, gain="exponential")),
           "the lesson uses the linear gain rel (not 2^rel − 1): DCG@k = Σ rel_r / log2(r + 1) over ranks r ≤ k")
    shifted = 1.0 / np.log2(np.arange(3, 8))
    expect(not _close(got, float(ranked[:5] @ shifted / (np.sort(ranked)[::-1][:5] @ shifted))),
           "the discount of rank r is 1 / log2(r + 1) with r = 1 for the top item (so the top item's is 1)")
    expect(_close(got, want), f"got {got:.6f} for relevances {ranked.tolist()} at k=5, want {want:.6f} "
                              f"(checked to a relative {RTOL:g})")
    expect(_close(float(fn(np.array([3, 2, 1, 0]), 3)), 1.0), "a list already in the ideal order must score 1.0")
    empty = float(fn(np.array([0, 0, 0]), 3))
    expect(empty == 0.0, f"a list with no relevant item scores 0 (not {empty})")
    return f"correct: NDCG@5 = {got:.4f}"


def ndcg_at_k(fn: Callable[..., float]) -> CheckResult:
    """Check Exercise 02.2: NDCG@K of one ranked list of relevances."""
    return run_check("Exercise 02.2 (NDCG@K)", _check_ndcg, fn, "utils.metrics.ndcg_at_k")


ECE_RTOL = 1e-4  # covers float32 probabilities and any order of summation; the mistakes below are far outside it


def _ece_fixture() -> tuple[np.ndarray, np.ndarray]:
    """Skewed predictions (most below 0.5, none above 0.85, so the top bins are empty), none near a bin edge.

    No prediction lies within 1e-4 of a multiple of 0.1, so every equal-width convention (a value on an edge
    joining the lower or the upper bin) gives the same bins; equal-count bins and bin midpoints do not.
    """
    rng = np.random.default_rng(3)
    p = rng.beta(2.0, 4.0, 5200) * 0.85
    p = p[np.abs(p * 10 - np.round(p * 10)) > 1e-3][:5000]
    y = (rng.random(len(p)) < 0.1 + 0.6 * p).astype(int)  # under-confident at low p, over-confident at high p
    return y, p


def _check_ece(fn: Callable[..., float]) -> str:
    y, p = _ece_fixture()
    want = metrics.expected_calibration_error(y, p, n_bins=10)
    got = float(fn(y, p, n_bins=10))
    expect(np.isfinite(got), f"got {got}: skip the empty bins (here 0.8–0.9 and 0.9–1.0 hold no prediction)")
    table = metrics.calibration_curve(y, p, n_bins=10)
    gap = (table["observed_rate"] - table["mean_predicted"]).to_numpy()
    counts = table["count"].to_numpy(dtype=float)
    midpoints = (table["bin"].to_numpy() + 0.5) / 10
    close = lambda value: _close(got, value, ECE_RTOL)  # noqa: E731
    expect(not close(float(np.mean(np.abs(gap)))),
           "weight each bin's gap by its number of predictions, not equally")
    expect(not close(float(abs(np.average(gap, weights=counts)))),
           "take the absolute gap in each bin before averaging: over- and under-confidence must not cancel")
    expect(not close(float(np.average(np.abs(table["observed_rate"].to_numpy() - midpoints), weights=counts))),
           "compare each bin's observed rate with the mean predicted probability of its predictions, "
           "not with the bin's midpoint")
    expect(not close(metrics.expected_calibration_error(y, p, n_bins=10, strategy="quantile")),
           "those are equal-count (quantile) bins: the exercise uses equal-width bins, edges 0, 0.1, …, 1")
    expect(close(want), f"got {got:.6f}, the expected calibration error with 10 equal-width bins is {want:.6f} "
                        f"(checked to a relative {ECE_RTOL:g})")
    perfect = float(fn(np.r_[np.ones(50), np.zeros(50)], np.full(100, 0.5), n_bins=10))
    expect(abs(perfect) < 1e-6, "predicting 0.5 where half are positive is perfectly calibrated: ECE must be 0")
    return f"correct: ECE = {got:.4f} on a model that is under-confident at low scores, over-confident at high ones"


def expected_calibration_error(fn: Callable[..., float]) -> CheckResult:
    """Check Exercise 02.3: the expected calibration error with equal-width bins."""
    return run_check("Exercise 02.3 (expected calibration error)", _check_ece, fn,
                     "utils.metrics.expected_calibration_error")
