"""Each metric of utils.metrics against scikit-learn on random data with ties, or against a small example
worked by hand; bad inputs give clear errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn import calibration as sk_calibration
from sklearn import metrics as sk

from utils import metrics

SEEDS = [0, 1, 2]


def _binary_data(seed: int, n: int = 500, decimals: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, scores rounded to ``decimals`` (so many ties, some across classes) and positive weights."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    score = np.round(np.clip(0.3 * y + rng.random(n) * 0.7, 0, 1), decimals)
    weight = rng.uniform(0.1, 3.0, n)
    return y, score, weight


# -- AUC ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_auc_matches_sklearn_with_ties_and_weights(seed: int) -> None:
    y, score, weight = _binary_data(seed)
    assert len(np.unique(score)) < 15  # many ties
    assert metrics.auc(y, score) == pytest.approx(sk.roc_auc_score(y, score), abs=1e-12)
    assert metrics.auc(y, score, sample_weight=weight) == pytest.approx(
        sk.roc_auc_score(y, score, sample_weight=weight), abs=1e-12
    )


def test_auc_by_hand_counts_a_tie_as_one_half() -> None:
    # positives score 0.5 and 0.9, negatives 0.1 and 0.5. Pairs (pos, neg):
    # (0.5, 0.1) -> 1, (0.5, 0.5) -> 1/2, (0.9, 0.1) -> 1, (0.9, 0.5) -> 1; AUC = 3.5 / 4.
    assert metrics.auc([0, 1, 0, 1], [0.1, 0.5, 0.5, 0.9]) == pytest.approx(0.875)
    # weighting the tied negative by 3: pairs weigh (1*1, 1*3, 1*1, 1*3) -> (1 + 1.5 + 1 + 3) / 8.
    assert metrics.auc([0, 1, 0, 1], [0.1, 0.5, 0.5, 0.9], sample_weight=[1, 1, 3, 1]) == pytest.approx(6.5 / 8)


def test_auc_accepts_series_lists_and_keras_columns() -> None:
    y, score, _ = _binary_data(3, n=60)
    expected = sk.roc_auc_score(y, score)
    assert metrics.auc(pd.Series(y), pd.Series(score, index=np.arange(60)[::-1])) == pytest.approx(expected)
    assert metrics.auc(y.tolist(), score.tolist()) == pytest.approx(expected)
    assert metrics.auc(y.astype(bool), score.reshape(-1, 1).astype(np.float32)) == pytest.approx(expected, abs=1e-6)


def test_auc_is_nan_with_one_class() -> None:
    assert math.isnan(metrics.auc([1, 1, 1], [0.2, 0.4, 0.9]))
    assert math.isnan(metrics.auc([0, 1, 0], [0.2, 0.4, 0.9], sample_weight=[1, 0, 1]))


# -- group AUC ---------------------------------------------------------------------------------------------

def test_group_auc_by_hand() -> None:
    # user "a": 4 impressions, positives above negatives -> AUC 1.
    # user "b": 2 impressions, the positive below the negative -> AUC 0.
    # user "c": 3 impressions, all negatives -> skipped.
    # weighted by impressions: (4 * 1 + 2 * 0) / (4 + 2) = 2/3; uniform: (1 + 0) / 2.
    y = [1, 1, 0, 0, 1, 0, 0, 0, 0]
    score = [0.9, 0.8, 0.2, 0.1, 0.3, 0.7, 0.5, 0.6, 0.4]
    groups = ["a", "a", "a", "a", "b", "b", "c", "c", "c"]
    assert metrics.group_auc(y, score, groups) == pytest.approx(2 / 3)
    assert metrics.group_auc(y, score, groups, weight="uniform") == pytest.approx(0.5)
    details = metrics.group_auc_details(y, score, groups)
    assert list(details.index) == ["a", "b", "c"]
    assert details["n"].tolist() == [4, 2, 3] and details["used"].tolist() == [True, True, False]
    assert details["auc"].iloc[:2].tolist() == [1.0, 0.0] and math.isnan(details["auc"].iloc[2])


@pytest.mark.parametrize("seed", SEEDS)
def test_group_auc_is_the_weighted_mean_of_sklearn_per_group(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 800
    groups = rng.choice([f"user{i}" for i in range(40)], n)
    y = (rng.random(n) < 0.3).astype(int)
    y[groups == "user0"] = 0  # one-class groups must be skipped
    y[groups == "user1"] = 1
    score = np.round(rng.random(n) + 0.2 * y, 1)
    frame = pd.DataFrame({"g": groups, "y": y, "s": score})
    aucs, sizes = [], []
    for _, part in frame.groupby("g"):
        if part["y"].nunique() == 2:
            aucs.append(sk.roc_auc_score(part["y"], part["s"]))
            sizes.append(len(part))
    assert len(aucs) < frame["g"].nunique()
    expected = np.average(aucs, weights=sizes)
    assert metrics.group_auc(frame["y"], frame["s"], frame["g"]) == pytest.approx(expected, abs=1e-12)
    assert metrics.group_auc(y.tolist(), score.tolist(), groups.tolist(), weight="uniform") == pytest.approx(
        np.mean(aucs), abs=1e-12
    )
    details = metrics.group_auc_details(y, score, groups)
    assert int(details["used"].sum()) == len(aucs) and details["n"].sum() == n


def test_group_auc_is_nan_when_no_group_has_both_classes() -> None:
    assert math.isnan(metrics.group_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], [1, 1, 2, 2]))


# -- log loss, regression, thresholded metrics --------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_log_loss_matches_sklearn(seed: int) -> None:
    y, _, weight = _binary_data(seed)
    prob = np.round(np.random.default_rng(seed).uniform(0.01, 0.99, len(y)), 2)
    assert metrics.log_loss(y, prob) == pytest.approx(sk.log_loss(y, prob), rel=1e-12)
    assert metrics.log_loss(pd.Series(y), prob.tolist(), sample_weight=weight) == pytest.approx(
        sk.log_loss(y, prob, sample_weight=weight), rel=1e-12
    )


def test_log_loss_clips_like_keras() -> None:
    # a certain mistake costs -log(1e-7) instead of infinity; a certain hit costs -log(1 - 1e-7) ~ 1e-7.
    assert metrics.log_loss([1], [0.0]) == pytest.approx(-math.log(1e-7))
    assert metrics.log_loss([1, 0], [1.0, 0.0]) == pytest.approx(-math.log(1 - 1e-7))
    assert metrics.log_loss([1], [0.0], eps=1e-3) == pytest.approx(-math.log(1e-3))


@pytest.mark.parametrize("seed", SEEDS)
def test_rmse_and_mae_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.integers(1, 6, 300).astype(float)
    pred = np.round(truth + rng.normal(0, 0.8, 300), 1)
    weight = rng.uniform(0.5, 2.0, 300)
    assert metrics.rmse(truth, pred) == pytest.approx(math.sqrt(sk.mean_squared_error(truth, pred)))
    assert metrics.mae(truth, pred) == pytest.approx(sk.mean_absolute_error(truth, pred))
    assert metrics.rmse(pd.Series(truth), pred.tolist(), sample_weight=weight) == pytest.approx(
        math.sqrt(sk.mean_squared_error(truth, pred, sample_weight=weight))
    )
    assert metrics.mae(truth.tolist(), pd.Series(pred), sample_weight=weight) == pytest.approx(
        sk.mean_absolute_error(truth, pred, sample_weight=weight)
    )
    assert metrics.rmse([3.0, 5.0], [4.0, 2.0]) == pytest.approx(math.sqrt((1 + 9) / 2))


@pytest.mark.parametrize(("seed", "threshold"), [(0, 0.5), (1, 0.3), (2, 0.8)])
def test_precision_recall_f1_match_sklearn(seed: int, threshold: float) -> None:
    y, score, _ = _binary_data(seed)  # rounded scores: some sit exactly on the threshold
    assert (score == threshold).any()
    precision, recall, f1, _ = sk.precision_recall_fscore_support(
        y, (score > threshold).astype(int), average="binary", zero_division=0
    )
    result = metrics.precision_recall_f1(pd.Series(y), score.tolist(), threshold=threshold)
    assert result == pytest.approx({"precision": precision, "recall": recall, "f1": f1})


def test_precision_recall_f1_threshold_is_strict_and_zero_division_gives_zero() -> None:
    # a score equal to the threshold is a negative decision: one true positive out of one predicted.
    assert metrics.precision_recall_f1([1, 1, 0], [0.9, 0.5, 0.5]) == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3}
    )
    assert metrics.precision_recall_f1([1, 0], [0.1, 0.2]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert metrics.precision_recall_f1([0, 0], [0.9, 0.2]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


# -- ranking -----------------------------------------------------------------------------------------------

# 2 users x 4 items, Recall@2 and NDCG@2 by hand.
# user 0: scores (0.9, 0.8, 0.1, 0.4) -> ranking items 0, 1, 3, 2; relevant {1, 2}.
#   top 2 = {0, 1}: one hit -> recall 1/2.
#   DCG = 1/log2(3) (item 1 at rank 2); ideal DCG = 1/log2(2) + 1/log2(3) -> NDCG = 0.6309 / 1.6309 = 0.3869.
# user 1: scores (0.3, 0.3, 0.9, 0.2) -> items 0 and 1 tie, the lower index wins: ranking 2, 0, 1, 3;
#   relevant {0}. top 2 = {2, 0}: hit -> recall 1/1; DCG = 1/log2(3), ideal = 1 -> NDCG = 0.6309.
#   (had the tie gone to item 1, both would be 0.)
# means: Recall@2 = (0.5 + 1) / 2 = 0.75, NDCG@2 = (0.3869 + 0.6309) / 2 = 0.5089.
HAND_SCORES = np.array([[0.9, 0.8, 0.1, 0.4], [0.3, 0.3, 0.9, 0.2]])
HAND_RELEVANT = [{1, 2}, {0}]
HAND_MATRIX = np.array([[0, 1, 1, 0], [1, 0, 0, 0]])
D3 = 1 / math.log2(3)


@pytest.mark.parametrize("relevant", [HAND_RELEVANT, HAND_MATRIX, pd.DataFrame(HAND_MATRIX), [[1, 2], [0]]])
def test_recall_and_ndcg_by_hand(relevant) -> None:
    assert metrics.recall_at_k(HAND_SCORES, relevant, k=2) == pytest.approx(0.75)
    assert metrics.ndcg_at_k(HAND_SCORES, relevant, k=2) == pytest.approx((D3 / (1 + D3) + D3) / 2)
    assert metrics.ndcg_at_k(HAND_SCORES, relevant, k=2) == pytest.approx(0.5089, abs=1e-4)


def test_hand_example_from_a_frame_in_any_row_order() -> None:
    frame = pd.DataFrame(
        {
            "user": np.repeat(["u0", "u1"], 4),
            "item": np.tile(np.arange(4), 2),
            "score": HAND_SCORES.ravel(),
            "label": HAND_MATRIX.ravel(),
        }
    ).sample(frac=1.0, random_state=0)
    result = metrics.ranking_metrics_from_frame(frame, k=2)
    assert result == pytest.approx({"recall_at_2": 0.75, "ndcg_at_2": (D3 / (1 + D3) + D3) / 2, "n_users": 2})


def test_recall_normalise_min() -> None:
    # one user, 3 relevant items, both of the top 2 relevant: 2/3 of its relevant items, but a perfect top 2.
    scores, relevant = [[0.9, 0.8, 0.7, 0.1]], [{0, 1, 2}]
    assert metrics.recall_at_k(scores, relevant, k=2) == pytest.approx(2 / 3)
    assert metrics.recall_at_k(scores, relevant, k=2, normalise="min") == pytest.approx(1.0)
    assert metrics.recall_at_k(scores, relevant, k=4, normalise="min") == pytest.approx(1.0)


def test_ndcg_gains_by_hand() -> None:
    # ranking: item 0 (rel 1), item 1 (rel 3), item 2 (rel 0); ideal order rel 3, 1.
    scores, relevance = np.array([[0.9, 0.5, 0.1]]), np.array([[1, 3, 0]])
    linear = (1 + 3 * D3) / (3 + 1 * D3)
    exponential = (1 + 7 * D3) / (7 + 1 * D3)
    assert metrics.ndcg_at_k(scores, relevance, k=2) == pytest.approx(linear)
    assert metrics.ndcg_at_k(scores, relevance, k=2, gain="exponential") == pytest.approx(exponential)


def _graded(seed: int, n_users: int = 30, n_items: int = 25) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    relevance = rng.integers(0, 5, (n_users, n_items)) * (rng.random((n_users, n_items)) < 0.3)
    relevance[:, 0] = np.maximum(relevance[:, 0], 1)  # every user has a relevant item
    scores = rng.random((n_users, n_items)) + 0.1 * relevance  # continuous: no ties
    return scores, relevance


@pytest.mark.parametrize(("seed", "k"), [(0, 1), (1, 5), (2, 10), (3, 40)])
def test_ndcg_matches_sklearn_gains(seed: int, k: int) -> None:
    scores, relevance = _graded(seed)
    # sklearn's ndcg_score uses the relevance itself as the gain: our "linear" gain.
    assert metrics.ndcg_at_k(scores, relevance, k) == pytest.approx(sk.ndcg_score(relevance, scores, k=k))
    # handing sklearn 2**rel - 1 as relevance gives the exponential gain.
    assert metrics.ndcg_at_k(scores, relevance, k, gain="exponential") == pytest.approx(
        sk.ndcg_score(2.0**relevance - 1, scores, k=k)
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_recall_matches_a_per_user_count(seed: int) -> None:
    scores, relevance = _graded(seed)
    scores = np.round(scores, 1)  # ties, broken by item index
    k = 5
    recalls = []
    for user_scores, user_relevance in zip(scores, relevance, strict=True):
        ranked = sorted(range(len(user_scores)), key=lambda item: (-user_scores[item], item))[:k]
        relevant = set(np.flatnonzero(user_relevance > 0))
        recalls.append(len(relevant & set(ranked)) / len(relevant))
    assert metrics.recall_at_k(scores, relevance, k) == pytest.approx(np.mean(recalls))


@pytest.mark.parametrize("seed", SEEDS)
def test_matrix_index_lists_and_frame_forms_agree(seed: int) -> None:
    scores, relevance = _graded(seed, n_users=20, n_items=12)
    scores = np.round(scores, 1)
    relevance[3] = 0  # a user without relevant items is left out of the averages
    binary_sets = [set(np.flatnonzero(row > 0)) for row in relevance]
    frame = pd.DataFrame(
        {
            "uid": np.repeat(np.arange(20), 12),
            "iid": np.tile(np.arange(12), 20),
            "s": scores.ravel(),
            "rel": relevance.ravel(),
        }
    ).sample(frac=1.0, random_state=seed)
    for k in (1, 3, 12):
        for normalise in ("relevant", "min"):
            recall = metrics.recall_at_k(scores, relevance, k, normalise=normalise)
            assert metrics.recall_at_k(scores, binary_sets, k, normalise=normalise) == pytest.approx(recall)
            result = metrics.ranking_metrics_from_frame(
                frame, k, user_col="uid", item_col="iid", score_col="s", label_col="rel", normalise=normalise
            )
            assert result[f"recall_at_{k}"] == pytest.approx(recall)
            assert result["n_users"] == 19
        for gain in ("linear", "exponential"):
            result = metrics.ranking_metrics_from_frame(frame, k, "uid", "s", "rel", "iid", gain=gain)
            assert result[f"ndcg_at_{k}"] == pytest.approx(metrics.ndcg_at_k(scores, relevance, k, gain=gain))
    kept = np.arange(20) != 3
    assert metrics.ndcg_at_k(scores, relevance, 3) == pytest.approx(metrics.ndcg_at_k(scores[kept], relevance[kept], 3))


def test_ranking_without_any_relevant_item_is_nan() -> None:
    assert math.isnan(metrics.recall_at_k([[0.1, 0.2]], [set()], k=1))
    assert math.isnan(metrics.ndcg_at_k([[0.1, 0.2]], np.zeros((1, 2)), k=1))
    frame = pd.DataFrame({"user": [1, 1], "item": [0, 1], "score": [0.1, 0.2], "label": [0, 0]})
    result = metrics.ranking_metrics_from_frame(frame, 1)
    assert math.isnan(result["recall_at_1"]) and result["n_users"] == 0


def test_excluded_items_score_minus_infinity() -> None:
    # item 0 was seen in training and is masked out: the top 1 becomes item 1.
    assert metrics.recall_at_k([[-np.inf, 0.5, 0.1]], [{1}], k=1) == 1.0


# -- calibration -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
@pytest.mark.parametrize(("seed", "n_bins", "rate"), [(0, 10, 0.3), (1, 5, 0.05), (2, 20, 0.002)])
def test_calibration_curve_matches_sklearn(strategy: str, seed: int, n_bins: int, rate: float) -> None:
    rng = np.random.default_rng(seed)
    prob = np.round(rng.beta(1.0, (1 - rate) / rate, 20_000), 3)  # mean ~ rate, rounded: ties and edge values
    y = (rng.random(prob.size) < prob).astype(int)
    table = metrics.calibration_curve(y, prob, n_bins=n_bins, strategy=strategy)
    prob_true, prob_pred = sk_calibration.calibration_curve(y, prob, n_bins=n_bins, strategy=strategy)
    np.testing.assert_allclose(table["observed_rate"], prob_true, atol=1e-12)
    np.testing.assert_allclose(table["mean_predicted"], prob_pred, atol=1e-12)
    assert table["count"].sum() == prob.size
    assert list(table.columns) == ["bin", "lower", "upper", "mean_predicted", "observed_rate", "count"]
    expected_ece = np.sum(table["count"] * np.abs(prob_true - prob_pred)) / prob.size
    assert metrics.expected_calibration_error(y, prob, n_bins, strategy) == pytest.approx(expected_ece)


def test_quantile_bins_spread_rare_event_predictions() -> None:
    rng = np.random.default_rng(0)
    prob = rng.beta(0.5, 100.0, 10_000)  # a purchase-like rate, well under 1%
    y = (rng.random(prob.size) < prob).astype(int)
    uniform = metrics.calibration_curve(y, prob, n_bins=10)
    quantile = metrics.calibration_curve(y, prob, n_bins=10, strategy="quantile")
    assert uniform["count"].iloc[0] > 0.99 * prob.size
    assert len(quantile) == 10 and quantile["count"].min() >= 999


def test_expected_calibration_error_by_hand() -> None:
    # two uniform bins: (0, 0.5] holds p = 0.1, 0.3 (mean 0.2) with no positive -> gap 0.2;
    # (0.5, 1] holds p = 0.6, 0.8 (mean 0.7), both positive -> gap 0.3. ECE = (2 * 0.2 + 2 * 0.3) / 4.
    y, prob = [0, 0, 1, 1], [0.1, 0.3, 0.6, 0.8]
    assert metrics.expected_calibration_error(y, prob, n_bins=2) == pytest.approx(0.25)
    table = metrics.calibration_curve(pd.Series(y), pd.Series(prob), n_bins=2)
    assert table["count"].tolist() == [2, 2] and table["bin"].tolist() == [0, 1]
    assert metrics.expected_calibration_error([0, 1], [0.0, 1.0], n_bins=3) == 0.0


# -- multi-task gains and seed summaries -------------------------------------------------------------------

def test_multitask_gain_signs() -> None:
    assert metrics.multitask_gain(0.70, 0.77) == pytest.approx(10.0)  # higher AUC: MTL helped
    assert metrics.multitask_gain(0.70, 0.63) == pytest.approx(-10.0)  # lower AUC: negative transfer
    assert metrics.multitask_gain(0.50, 0.45, higher_is_better=False) == pytest.approx(10.0)  # lower loss
    assert metrics.multitask_gain(0.50, 0.55, higher_is_better=False) == pytest.approx(-10.0)
    assert metrics.multitask_gain(-2.0, -1.0) == pytest.approx(50.0)  # |stl| keeps the sign meaningful
    with pytest.raises(ValueError, match="undefined when the single-task value is 0"):
        metrics.multitask_gain(0.0, 0.1)


def test_multitask_gain_table() -> None:
    table = metrics.multitask_gain_table(
        {"ctr_auc": 0.70, "cvr_logloss": 0.50},
        {"cvr_logloss": 0.45, "ctr_auc": 0.77},
        {"ctr_auc": True, "cvr_logloss": False},
    )
    assert list(table.index) == ["ctr_auc", "cvr_logloss"]
    assert table["gain_pct"].tolist() == pytest.approx([10.0, 10.0])
    with pytest.raises(ValueError, match=r"higher_is_better must name the same metrics as stl: missing \[.cvr_logloss"):
        metrics.multitask_gain_table({"a": 1.0, "cvr_logloss": 1.0}, {"a": 1.0, "cvr_logloss": 1.0}, {"a": True})


def test_summarise_seeds() -> None:
    assert metrics.summarise_seeds([0.70, 0.72, 0.74]) == "0.7200 ± 0.0200"  # sample std (ddof=1)
    assert metrics.summarise_seeds(pd.Series([0.5, 0.6]), decimals=2) == "0.55 ± 0.07"
    assert metrics.summarise_seeds([0.7123]) == "0.7123"


def test_mean_std_table() -> None:
    runs = pd.DataFrame(
        {
            "model": ["mmoe", "mmoe", "mmoe", "single", "single", "esmm"],
            "seed": [0, 1, 2, 0, 1, 0],
            "auc": [0.70, 0.72, 0.74, 0.60, 0.62, 0.65],
            "loss": [0.3, 0.3, 0.3, 0.4, 0.5, 0.2],
        }
    )
    table = metrics.mean_std_table(runs, "model", ["auc", "loss"])
    assert list(table.index) == ["mmoe", "single", "esmm"]
    assert table.loc["mmoe", "auc"] == "0.7200 ± 0.0200" and table.loc["esmm", "auc"] == "0.6500"
    assert table["n_seeds"].tolist() == [3, 2, 1]
    assert table["auc_mean"].to_numpy() == pytest.approx([0.72, 0.61, 0.65])
    assert table.loc["single", "loss_std"] == pytest.approx(np.std([0.4, 0.5], ddof=1))
    assert math.isnan(table.loc["esmm", "auc_std"])


# -- bad inputs --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: metrics.auc([0, np.nan, 1, np.nan], [0.1, 0.2, 0.3, 0.4]),
         r"y_true has 2 NaN value\(s\) out of 4: mask or drop"),
        (lambda: metrics.auc(pd.Series([0, 1, 1]), [0.1, None, 0.3]), r"y_score has 1 NaN value\(s\) out of 3"),
        (lambda: metrics.log_loss([0, 1], [0.1, np.nan]), r"y_prob has 1 NaN"),
        (lambda: metrics.group_auc([0, 1], [0.1, 0.2], [1, None]), r"groups has 1 missing value"),
        (lambda: metrics.ndcg_at_k([[0.1, np.nan]], [{0}], k=1), r"scores has 1 NaN"),
        (lambda: metrics.auc([0, 1, 1], [0.1, 0.2]), r"same length: y_true has 3, y_score has 2"),
        (lambda: metrics.group_auc([0, 1], [0.1, 0.2], [1, 1, 2]), r"same length: .*groups has 3"),
        (lambda: metrics.rmse([1.0, 2.0], [1.0]), r"same length: y_true has 2, y_pred has 1"),
        (lambda: metrics.mae([1.0, 2.0], [1.0, 2.0], sample_weight=[1.0]), r"same length: .*sample_weight has 1"),
        (lambda: metrics.auc([0, 1], [0.1, 0.2], sample_weight=[1.0, -1.0]), r"sample_weight must be >= 0"),
        (lambda: metrics.auc([0, 2], [0.1, 0.2]), r"y_true must hold 0/1 labels"),
        (lambda: metrics.auc([], []), r"y_true is empty"),
        (lambda: metrics.log_loss([0, 1], [-0.5, 2.0]), r"y_prob must be probabilities in \[0, 1\].*sigmoid"),
        (lambda: metrics.recall_at_k(HAND_SCORES, HAND_RELEVANT, k=0), r"k must be an integer >= 1, got 0"),
        (lambda: metrics.ndcg_at_k(HAND_SCORES, HAND_RELEVANT, k=1.5), r"k must be an integer >= 1, got 1.5"),
        (lambda: metrics.ranking_metrics_from_frame(pd.DataFrame(columns=["user", "item", "score", "label"]), k=-1),
         r"k must be an integer >= 1, got -1"),
        (lambda: metrics.recall_at_k(HAND_SCORES, [{0}], k=1), r"relevant lists items for 1 users, the scores have 2"),
        (lambda: metrics.recall_at_k(HAND_SCORES, [{0}, {4}], k=1), r"integers in \[0, 4\)"),
        (lambda: metrics.ndcg_at_k(HAND_SCORES, np.ones((2, 3)), k=1), r"relevance matrix has shape \(2, 3\)"),
        (lambda: metrics.recall_at_k(HAND_SCORES, HAND_RELEVANT, k=1, normalise="max"), r"normalise must be one of"),
        (lambda: metrics.ndcg_at_k(HAND_SCORES, HAND_RELEVANT, k=1, gain="log"), r"gain must be one of"),
        (lambda: metrics.calibration_curve([0, 1], [0.2, 0.8], n_bins=0), r"n_bins must be an integer >= 1, got 0"),
        (lambda: metrics.expected_calibration_error([0, 1], [0.2, 0.8], n_bins=-3), r"n_bins must be an integer >= 1"),
        (lambda: metrics.calibration_curve([0, 1], [0.2, 0.8], strategy="kmeans"), r"strategy must be one of"),
        (lambda: metrics.group_auc([0, 1], [0.1, 0.2], [1, 1], weight="users"), r"weight must be one of"),
        (lambda: metrics.summarise_seeds([0.7, np.nan]), r"values has 1 NaN"),
        (lambda: metrics.auc(np.zeros((3, 2)), np.zeros((3, 2))), r"must be one-dimensional"),
    ],
)
def test_bad_inputs_give_clear_errors(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_frame_errors() -> None:
    frame = pd.DataFrame({"user": [1, 1], "item": [0, 0], "score": [0.1, 0.2], "label": [1, 0]})
    with pytest.raises(ValueError, match=r"\(user, item\) pairs appear more than once"):
        metrics.ranking_metrics_from_frame(frame, 1)
    with pytest.raises(KeyError, match=r"no column\(s\) \['item'\].*item_col=None"):
        metrics.ranking_metrics_from_frame(frame.drop(columns="item"), 1)
    # without an item column, ties are broken by row order
    assert metrics.ranking_metrics_from_frame(
        frame.drop(columns="item").assign(score=0.5), 1, item_col=None
    )["recall_at_1"] == 1.0
    with pytest.raises(ValueError, match=r"'label' has 1 NaN"):
        metrics.ranking_metrics_from_frame(frame.assign(item=[0, 1], label=[1, np.nan]), 1)
    with pytest.raises(KeyError, match=r"no column\(s\) \['f1'\]"):
        metrics.mean_std_table(frame, "user", ["f1"])


# ------------------------------------------------------------------------------------------------
# Sampling error and verdicts
# ------------------------------------------------------------------------------------------------

def test_auc_standard_error_matches_the_spread_of_independent_test_sets() -> None:
    rng = np.random.default_rng(1)
    aucs, ses = [], []
    for _ in range(300):
        y = (rng.random(2000) < 0.1).astype(float)
        s = y * 0.8 + rng.standard_normal(2000)
        aucs.append(metrics.auc(y, s))
        ses.append(metrics.auc_standard_error(y, s))
    assert np.mean(ses) == pytest.approx(np.std(aucs), rel=0.15)
    assert np.isnan(metrics.auc_standard_error([1, 1], [0.2, 0.3]))


def test_bootstrap_replicates_are_paired_and_resample_groups() -> None:
    rng = np.random.default_rng(2)
    n = 5000
    y = (rng.random(n) < 0.2).astype(float)
    a = y + rng.standard_normal(n)
    b = a + 0.1 * rng.standard_normal(n)
    groups = rng.integers(0, 500, n)
    reps = metrics.bootstrap_replicates(y, {"a": a, "b": b}, groups, n_boot=100, seed=0)
    assert reps.shape == (100, 2)
    assert reps["a"].std() == pytest.approx(metrics.auc_standard_error(y, a), rel=0.35)
    assert (reps["a"] - reps["b"]).std() < 0.5 * reps["a"].std()  # paired: the difference varies less
    again = metrics.bootstrap_replicates(y, {"a": a, "b": b}, groups, n_boot=100, seed=0)
    pd.testing.assert_frame_equal(reps, again)
    rmse = metrics.bootstrap_replicates(y, {"a": a}, groups, "rmse", 50, 0)
    assert rmse["a"].mean() == pytest.approx(metrics.rmse(y, a), rel=0.05)
    mean = metrics.bootstrap_replicates(np.zeros(n), {"y": y}, groups, "mean", 50, 0)
    assert mean["y"].mean() == pytest.approx(y.mean(), rel=0.05)
    with pytest.raises(ValueError, match="metric"):
        metrics.bootstrap_replicates(y, {"a": a}, groups, "median")


def test_verdict_calls_noise_noise() -> None:
    assert metrics.verdict(0.01, 0.01) == "within noise"
    assert metrics.verdict(0.03, 0.01) == "better"
    assert metrics.verdict(0.03, 0.01, higher_is_better=False) == "worse"
    assert metrics.verdict(-0.03, 0.01) == "worse"
    assert metrics.verdict(0.03, float("nan")) == "n/a"


def test_head_to_head_pairs_seeds_and_adds_the_test_error() -> None:
    per_seed = pd.DataFrame({"model": ["ref", "ref", "ref", "new", "new", "new", "one"],
                             "seed": [1, 2, 3, 1, 2, 3, 1], "auc": [0.70, 0.72, 0.71, 0.73, 0.75, 0.74, 0.9]})
    table = metrics.head_to_head(per_seed, "auc", "ref", test_error={"new": 0.004})
    assert table.loc["new", "difference"] == pytest.approx(0.03)
    assert table.loc["new", "difference_se"] == pytest.approx(0.004)  # the paired differences do not vary
    assert table.loc["new", "verdict"] == "better" and table.loc["new", "seeds better"] == "3 of 3"
    assert table.loc["ref", "verdict"] == "reference"
    assert table.loc["one", "verdict"] == "n/a"  # one seed and no test error: the error is unknown
    noisy = metrics.head_to_head(per_seed, "auc", "ref", test_error={"new": 0.02})
    assert noisy.loc["new", "verdict"] == "within noise"
    with pytest.raises(KeyError, match="nobody"):
        metrics.head_to_head(per_seed, "auc", "nobody")
