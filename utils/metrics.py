"""Evaluation metrics of a recommender: classification (AUC, group AUC, log loss), regression (RMSE, MAE),
ranking (Recall@K, NDCG@K), calibration, multi-task gains, seed summaries, and the sampling error and
"within noise" verdict of every head-to-head comparison.

Plain numpy/pandas, vectorised over rows, users and groups. Every function accepts numpy arrays, lists or
pandas Series (a Keras ``(n, 1)`` prediction is flattened), checks that its inputs have the same length and
rejects NaN, so a silent misalignment or a missing value never turns into a plausible-looking number.

Conventions a notebook should know:

* ``auc`` counts a tied positive/negative pair as one half (as scikit-learn does); NaN with one class only.
* ``group_auc`` skips groups (users) with one class only and weights the others by their impressions.
* ``precision_recall_f1`` predicts positive when ``y_prob > threshold`` (strictly, as Keras does).
* Recall@K divides by the number of relevant items (``normalise="relevant"``); ``normalise="min"`` divides
  by ``min(K, |relevant|)`` instead, so that a perfect ranking scores 1 even when ``|relevant| > K``.
* NDCG@K uses the linear gain ``rel`` by default (as ``sklearn.metrics.ndcg_score``); ``gain="exponential"``
  uses ``2**rel - 1``. Both agree on binary relevance. The discount is ``1 / log2(rank + 1)``.
* Ranking ties are broken deterministically: higher score first, then lower item index (or item key).
* Calibration bins are closed on the right, ``(lower, upper]``, and empty bins are dropped (as scikit-learn).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "auc",
    "auc_standard_error",
    "bootstrap_replicates",
    "calibration_curve",
    "expected_calibration_error",
    "group_auc",
    "group_auc_details",
    "hanley_mcneil",
    "head_to_head",
    "log_loss",
    "mae",
    "mean_std_table",
    "multitask_gain",
    "multitask_gain_table",
    "ndcg_at_k",
    "precision_recall_f1",
    "ranking_metrics_from_frame",
    "recall_at_k",
    "rmse",
    "summarise_seeds",
    "verdict",
]

ArrayLike = npt.ArrayLike | pd.Series
Normalise = Literal["relevant", "min"]
Gain = Literal["linear", "exponential"]
Strategy = Literal["uniform", "quantile"]


# --------------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------------

def _vector(values: Any, name: str) -> np.ndarray:
    """``values`` as a 1-D float64 array without NaN, or a ValueError that says what is wrong with it."""
    try:
        if isinstance(values, pd.Series | pd.Index):
            array = values.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must hold numbers ({error})") from None
    if array.ndim == 2 and array.shape[1] == 1:  # a Keras prediction of shape (n, 1)
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty: there is nothing to evaluate")
    _reject_nan(array, name)
    return array


def _reject_nan(array: np.ndarray, name: str) -> None:
    missing = int(np.isnan(array).sum())
    if missing:
        raise ValueError(
            f"{name} has {missing} NaN value(s) out of {array.size}: mask or drop those rows "
            "(in every argument) before computing the metric"
        )


def _same_length(**arrays: np.ndarray) -> None:
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise ValueError(f"inputs must have the same length: {described}")


def _binary(y_true: np.ndarray, name: str = "y_true") -> np.ndarray:
    values = np.unique(y_true)
    if not np.isin(values, (0.0, 1.0)).all():
        shown = values[:5].tolist()
        raise ValueError(f"{name} must hold 0/1 labels, found values such as {shown}")
    return y_true


def _weights(sample_weight: ArrayLike | None, n: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    weight = _vector(sample_weight, "sample_weight")
    _same_length(y_true=np.empty(n), sample_weight=weight)
    if (weight < 0).any():
        raise ValueError(f"sample_weight must be >= 0, found {int((weight < 0).sum())} negative value(s)")
    if weight.sum() == 0:
        raise ValueError("sample_weight sums to 0: no row counts")
    return weight


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _choice(value: str, name: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


# --------------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------------

def auc(y_true: ArrayLike, y_score: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """ROC AUC: the (weighted) probability that a random positive scores above a random negative.

    A tied positive/negative pair counts one half, which gives exactly scikit-learn's ``roc_auc_score``.
    Returns NaN when only one class is present (or one class has zero total weight): AUC is undefined there.
    """
    y = _binary(_vector(y_true, "y_true"))
    score = _vector(y_score, "y_score")
    _same_length(y_true=y, y_score=score)
    weight = _weights(sample_weight, len(y))
    if weight is None:
        weight = np.ones_like(y)
    values, inverse = np.unique(score, return_inverse=True)  # ascending distinct scores
    positives = np.bincount(inverse, weights=weight * y, minlength=len(values))
    negatives = np.bincount(inverse, weights=weight * (1.0 - y), minlength=len(values))
    total_pos, total_neg = positives.sum(), negatives.sum()
    if total_pos == 0 or total_neg == 0:
        return float("nan")
    below = np.cumsum(negatives) - negatives  # negative weight strictly below each distinct score
    return float(np.sum(positives * (below + 0.5 * negatives)) / (total_pos * total_neg))


def _groups(groups: Any) -> tuple[np.ndarray, pd.Index]:
    """Integer codes and the distinct keys of ``groups`` (sorted when the keys allow it)."""
    keys = groups if isinstance(groups, pd.Series | pd.Index) else pd.Series(np.asarray(groups))
    if np.ndim(keys) != 1:
        raise ValueError(f"groups must be one-dimensional, got shape {np.shape(keys)}")
    missing = int(pd.isna(keys).sum())
    if missing:
        raise ValueError(f"groups has {missing} missing value(s) out of {len(keys)}: drop those rows first")
    try:
        codes, uniques = pd.factorize(keys, sort=True)
    except TypeError:  # keys of mixed types that cannot be ordered
        codes, uniques = pd.factorize(keys, sort=False)
    return codes, pd.Index(uniques)


def group_auc_details(y_true: ArrayLike, y_score: ArrayLike, groups: ArrayLike) -> pd.DataFrame:
    """Per-group AUC (Mann-Whitney U from average ranks within the group), one row per group.

    Columns ``n`` (impressions), ``n_pos``, ``n_neg``, ``auc`` (NaN where the group has one class) and
    ``used`` (whether :func:`group_auc` counts the group); indexed by the group key.
    """
    y = _binary(_vector(y_true, "y_true"))
    score = _vector(y_score, "y_score")
    codes, keys = _groups(groups)
    _same_length(y_true=y, y_score=score, groups=codes)
    ranks = pd.Series(score).groupby(codes).rank(method="average").to_numpy()
    n_groups = len(keys)
    n = np.bincount(codes, minlength=n_groups)
    n_pos = np.bincount(codes, weights=y, minlength=n_groups)
    n_neg = n - n_pos
    rank_sum = np.bincount(codes, weights=ranks * y, minlength=n_groups)
    used = (n_pos > 0) & (n_neg > 0)
    u_statistic = rank_sum - n_pos * (n_pos + 1) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        group_aucs = np.where(used, u_statistic / (n_pos * n_neg), np.nan)
    return pd.DataFrame(
        {"n": n, "n_pos": n_pos.astype(np.int64), "n_neg": n_neg.astype(np.int64), "auc": group_aucs,
         "used": used},
        index=keys.rename("group"),
    )


def group_auc(
    y_true: ArrayLike, y_score: ArrayLike, groups: ArrayLike, weight: Literal["impressions", "uniform"] = "impressions"
) -> float:
    """Group AUC (GAUC): the AUC of each group (user), averaged with weights = the group's impressions.

    It scores how well a model ranks items within a user, which is what a feed shows (Zhou et al., 2018,
    Deep Interest Network). Groups with one class only are skipped; ``weight="uniform"`` averages the groups
    equally. NaN when no group has both classes. :func:`group_auc_details` gives the per-group numbers.
    """
    _choice(weight, "weight", ("impressions", "uniform"))
    details = group_auc_details(y_true, y_score, groups)
    used = details[details["used"]]
    if used.empty:
        return float("nan")
    weights = used["n"].to_numpy(dtype=np.float64) if weight == "impressions" else np.ones(len(used))
    return float(np.sum(weights * used["auc"].to_numpy()) / weights.sum())


def log_loss(
    y_true: ArrayLike, y_prob: ArrayLike, eps: float = 1e-7, sample_weight: ArrayLike | None = None
) -> float:
    """Binary cross-entropy in nats, the training loss of a CTR/CVR tower, averaged (or weighted) over rows.

    Probabilities are clipped to ``[eps, 1 - eps]`` like Keras (``eps = 1e-7``), so a confident mistake
    costs at most ``-log(eps)`` ≈ 16.1. Labels may be soft (any value in [0, 1]).
    """
    y = _vector(y_true, "y_true")
    prob = _vector(y_prob, "y_prob")
    _same_length(y_true=y, y_prob=prob)
    if y.min() < 0 or y.max() > 1:
        raise ValueError(f"y_true must lie in [0, 1], found values in [{y.min():g}, {y.max():g}]")
    if prob.min() < 0 or prob.max() > 1:
        raise ValueError(
            f"y_prob must be probabilities in [0, 1], found values in [{prob.min():g}, {prob.max():g}]: "
            "apply a sigmoid to logits first"
        )
    if not 0 < eps < 0.5:
        raise ValueError(f"eps must lie in (0, 0.5), got {eps}")
    weight = _weights(sample_weight, len(y))
    prob = np.clip(prob, eps, 1 - eps)
    losses = -(y * np.log(prob) + (1 - y) * np.log1p(-prob))
    return float(np.average(losses, weights=weight))


def precision_recall_f1(y_true: ArrayLike, y_prob: ArrayLike, threshold: float = 0.5) -> dict[str, float]:
    """Precision, recall and F1 of the decisions ``y_prob > threshold`` (strictly greater, as Keras).

    A ratio whose denominator is zero (no predicted positive, no actual positive) is reported as 0.0,
    like scikit-learn's ``zero_division=0``.
    """
    y = _binary(_vector(y_true, "y_true")).astype(bool)
    prob = _vector(y_prob, "y_prob")
    _same_length(y_true=y, y_prob=prob)
    predicted = prob > threshold
    true_pos = float(np.sum(predicted & y))
    n_predicted, n_actual = float(predicted.sum()), float(y.sum())
    precision = true_pos / n_predicted if n_predicted else 0.0
    recall = true_pos / n_actual if n_actual else 0.0
    f1 = 2 * true_pos / (n_predicted + n_actual) if n_predicted + n_actual else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


# --------------------------------------------------------------------------------------------------
# Regression
# --------------------------------------------------------------------------------------------------

def _errors(y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None) -> tuple[np.ndarray, Any]:
    truth = _vector(y_true, "y_true")
    pred = _vector(y_pred, "y_pred")
    _same_length(y_true=truth, y_pred=pred)
    return pred - truth, _weights(sample_weight, len(truth))


def rmse(y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Root mean squared error (e.g. of predicted ratings), optionally weighted per row."""
    error, weight = _errors(y_true, y_pred, sample_weight)
    return float(np.sqrt(np.average(error**2, weights=weight)))


def mae(y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Mean absolute error, less sensitive to a few large misses than RMSE, optionally weighted per row."""
    error, weight = _errors(y_true, y_pred, sample_weight)
    return float(np.average(np.abs(error), weights=weight))


# --------------------------------------------------------------------------------------------------
# Ranking
# --------------------------------------------------------------------------------------------------

def _score_matrix(scores: Any) -> np.ndarray:
    matrix = np.asarray(scores.to_numpy() if isinstance(scores, pd.DataFrame) else scores, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(f"scores must be a non-empty (n_users, n_items) matrix, got shape {matrix.shape}")
    _reject_nan(matrix, "scores")
    return matrix


def _relevance_matrix(relevant: Any, shape: tuple[int, int]) -> np.ndarray:
    """A dense (n_users, n_items) relevance matrix from a matrix or from per-user collections of item indices."""
    n_users, n_items = shape
    if isinstance(relevant, np.ndarray | pd.DataFrame):
        matrix = np.asarray(relevant.to_numpy() if isinstance(relevant, pd.DataFrame) else relevant, dtype=np.float64)
        if matrix.shape != shape:
            raise ValueError(f"the relevance matrix has shape {matrix.shape}, the scores have shape {shape}")
        _reject_nan(matrix, "relevance")
        if (matrix < 0).any():
            raise ValueError("relevance must be >= 0 (0 = not relevant)")
        return matrix
    per_user = list(relevant)
    if len(per_user) != n_users:
        raise ValueError(f"relevant lists items for {len(per_user)} users, the scores have {n_users} users")
    lengths = [len(items) for items in per_user]
    flat: Iterable[Any] = (item for items in per_user for item in items)
    items = np.fromiter(flat, dtype=np.float64, count=sum(lengths))
    if items.size and (np.any(items != np.round(items)) or items.min() < 0 or items.max() >= n_items):
        raise ValueError(
            f"relevant item indices must be integers in [0, {n_items}), got {items.min():g}..{items.max():g}"
        )
    matrix = np.zeros(shape)
    matrix[np.repeat(np.arange(n_users), lengths), items.astype(np.int64)] = 1.0
    return matrix


def _gain(relevance: np.ndarray, gain: str) -> np.ndarray:
    return relevance if gain == "linear" else np.exp2(relevance) - 1.0


def _discount(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def _top_k(scores: np.ndarray, relevance: np.ndarray, k: int) -> np.ndarray:
    """Relevance of each user's top ``k`` items, best first: higher score first, then lower item index."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(relevance, order, axis=1)


def recall_at_k(
    scores: ArrayLike, relevant: Any, k: int, normalise: Normalise = "relevant"
) -> float:
    """Recall@K = |relevant ∩ top K| / |relevant|, averaged over the users with at least one relevant item.

    ``scores`` is an (n_users, n_items) matrix (set items to exclude, e.g. seen in training, to ``-inf``);
    ``relevant`` is either a numpy/DataFrame matrix of the same shape (relevant = value > 0) or a list of
    per-user collections of relevant item indices. ``normalise="min"`` divides by ``min(K, |relevant|)``.
    Ties: higher score first, then lower item index. NaN when no user has a relevant item.
    """
    k = _positive_int(k, "k")
    _choice(normalise, "normalise", ("relevant", "min"))
    matrix = _score_matrix(scores)
    is_relevant = (_relevance_matrix(relevant, matrix.shape) > 0).astype(np.float64)
    hits = _top_k(matrix, is_relevant, k).sum(axis=1)
    n_relevant = is_relevant.sum(axis=1)
    keep = n_relevant > 0
    if not keep.any():
        return float("nan")
    denominator = n_relevant[keep] if normalise == "relevant" else np.minimum(n_relevant[keep], k)
    return float(np.mean(hits[keep] / denominator))


def ndcg_at_k(scores: ArrayLike, relevant: Any, k: int, gain: Gain = "linear") -> float:
    """NDCG@K = DCG@K / ideal DCG@K, averaged over the users with at least one relevant item.

    Gain ``rel`` (``gain="linear"``, as sklearn's ``ndcg_score``) or ``2**rel - 1`` (``"exponential"``),
    discount ``1 / log2(rank + 1)``; the ideal DCG sorts the user's own relevances. Inputs as in
    :func:`recall_at_k` (graded relevance needs the matrix form; index lists mean relevance 1).
    Ties: higher score first, then lower item index. NaN when no user has a relevant item.
    """
    k = _positive_int(k, "k")
    _choice(gain, "gain", ("linear", "exponential"))
    matrix = _score_matrix(scores)
    relevance = _relevance_matrix(relevant, matrix.shape)
    k_used = min(k, matrix.shape[1])
    discount = _discount(k_used)
    dcg = _gain(_top_k(matrix, relevance, k_used), gain) @ discount
    ideal = _gain(-np.sort(-relevance, axis=1)[:, :k_used], gain) @ discount
    keep = ideal > 0
    if not keep.any():
        return float("nan")
    return float(np.mean(dcg[keep] / ideal[keep]))


def ranking_metrics_from_frame(
    frame: pd.DataFrame,
    k: int,
    user_col: str = "user",
    score_col: str = "score",
    label_col: str = "label",
    item_col: str | None = "item",
    normalise: Normalise = "relevant",
    gain: Gain = "linear",
) -> dict[str, float | int]:
    """Recall@K and NDCG@K from one row per (user, candidate item), averaged over users with a positive.

    ``label_col`` holds the relevance (0/1 or graded; relevant = label > 0). Only the listed candidates are
    ranked, so with sampled negatives these are sampled metrics. Ties: higher score first, then the item key
    (row order when ``item_col=None``). Returns ``{"recall_at_K", "ndcg_at_K", "n_users"}``, names that
    ``record_metrics(**result)`` accepts; ``n_users`` counts the users averaged over.
    """
    k = _positive_int(k, "k")
    _choice(normalise, "normalise", ("relevant", "min"))
    _choice(gain, "gain", ("linear", "exponential"))
    columns = [user_col, score_col, label_col] + ([item_col] if item_col is not None else [])
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        hint = " (pass item_col=None to break ties by row order)" if missing == [item_col] else ""
        raise KeyError(f"the frame has no column(s) {missing}; it has {list(frame.columns)}{hint}")
    if frame.empty:
        raise ValueError("the frame is empty: there is nothing to rank")
    score = _vector(frame[score_col], f"column {score_col!r}")
    label = _vector(frame[label_col], f"column {label_col!r}")
    if (label < 0).any():
        raise ValueError(f"{label_col!r} must be >= 0 (0 = not relevant)")
    users, _ = _groups(frame[user_col])
    if item_col is not None:
        if frame.duplicated([user_col, item_col]).any():
            raise ValueError(f"some ({user_col}, {item_col}) pairs appear more than once: deduplicate the candidates")
        items, _ = _groups(frame[item_col])
    else:
        items = np.arange(len(frame))
    order = np.lexsort((items, -score, users))  # by user, then score descending, then item
    ideal_order = np.lexsort((-label, users))  # by user, then relevance descending
    sorted_users = users[order]
    n_groups = int(users.max()) + 1
    counts = np.bincount(users, minlength=n_groups)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    position = np.arange(len(frame)) - np.repeat(starts, counts)  # 0-based rank within the user
    in_top = position < k
    discount = np.where(in_top, 1.0 / np.log2(position + 2.0), 0.0)
    ranked_label = label[order]
    dcg = np.bincount(sorted_users, weights=_gain(ranked_label, gain) * discount, minlength=n_groups)
    ideal = np.bincount(sorted_users, weights=_gain(label[ideal_order], gain) * discount, minlength=n_groups)
    hits = np.bincount(sorted_users, weights=(ranked_label > 0) & in_top, minlength=n_groups)
    n_relevant = np.bincount(users, weights=label > 0, minlength=n_groups)
    keep = n_relevant > 0
    key_recall, key_ndcg = f"recall_at_{k}", f"ndcg_at_{k}"
    if not keep.any():
        return {key_recall: float("nan"), key_ndcg: float("nan"), "n_users": 0}
    denominator = n_relevant[keep] if normalise == "relevant" else np.minimum(n_relevant[keep], k)
    return {
        key_recall: float(np.mean(hits[keep] / denominator)),
        key_ndcg: float(np.mean(dcg[keep] / ideal[keep])),
        "n_users": int(keep.sum()),
    }


# --------------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------------

def calibration_curve(
    y_true: ArrayLike, y_prob: ArrayLike, n_bins: int = 10, strategy: Strategy = "uniform"
) -> pd.DataFrame:
    """Reliability table: per probability bin, the mean prediction against the observed positive rate.

    ``"uniform"`` bins split [0, 1] evenly; ``"quantile"`` bins hold equal numbers of predictions, which is
    what rare events need (CVR ~5%, purchases ~0.2%): with uniform bins almost every prediction falls in the
    first bin and the curve says nothing. Bins are ``(lower, upper]`` and empty ones are dropped, as
    ``sklearn.calibration.calibration_curve``. Columns: bin, lower, upper, mean_predicted, observed_rate, count.
    """
    n_bins = _positive_int(n_bins, "n_bins")
    _choice(strategy, "strategy", ("uniform", "quantile"))
    y = _binary(_vector(y_true, "y_true"))
    prob = _vector(y_prob, "y_prob")
    _same_length(y_true=y, y_prob=prob)
    if prob.min() < 0 or prob.max() > 1:
        raise ValueError(
            f"y_prob must be probabilities in [0, 1], found values in [{prob.min():g}, {prob.max():g}]"
        )
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:
        edges = np.percentile(prob, np.linspace(0.0, 100.0, n_bins + 1))
    bin_ids = np.searchsorted(edges[1:-1], prob)  # side="left": a value on an inner edge joins the lower bin
    count = np.bincount(bin_ids, minlength=n_bins)
    predicted = np.bincount(bin_ids, weights=prob, minlength=n_bins)
    positives = np.bincount(bin_ids, weights=y, minlength=n_bins)
    filled = np.flatnonzero(count)
    return pd.DataFrame(
        {
            "bin": filled,
            "lower": edges[filled],
            "upper": edges[filled + 1],
            "mean_predicted": predicted[filled] / count[filled],
            "observed_rate": positives[filled] / count[filled],
            "count": count[filled],
        }
    )


def expected_calibration_error(
    y_true: ArrayLike, y_prob: ArrayLike, n_bins: int = 10, strategy: Strategy = "uniform"
) -> float:
    """ECE: the count-weighted mean over bins of |observed rate − mean prediction| (0 = perfectly calibrated).

    Bins as in :func:`calibration_curve`; prefer ``strategy="quantile"`` for rare events.
    """
    table = calibration_curve(y_true, y_prob, n_bins=n_bins, strategy=strategy)
    gap = np.abs(table["observed_rate"] - table["mean_predicted"]).to_numpy()
    count = table["count"].to_numpy(dtype=np.float64)
    return float(np.sum(count * gap) / count.sum())


# --------------------------------------------------------------------------------------------------
# Multi-task gains and seed summaries
# --------------------------------------------------------------------------------------------------

def multitask_gain(stl: float, mtl: float, higher_is_better: bool = True) -> float:
    """Relative gain of the multi-task model over its single-task counterpart, in percent.

    ``100 * (mtl - stl) / |stl|``, sign flipped when lower is better (loss, RMSE), so a positive gain always
    means multi-task learning helped and a negative one means negative transfer.
    """
    stl, mtl = float(stl), float(mtl)
    if not (np.isfinite(stl) and np.isfinite(mtl)):
        raise ValueError(f"stl and mtl must be finite numbers, got stl={stl}, mtl={mtl}")
    if stl == 0:
        raise ValueError("the relative gain is undefined when the single-task value is 0")
    gain = 100.0 * (mtl - stl) / abs(stl)
    return gain if higher_is_better else -gain


def multitask_gain_table(
    stl: Mapping[str, float], mtl: Mapping[str, float], higher_is_better: Mapping[str, bool]
) -> pd.DataFrame:
    """One row per metric: the single-task and multi-task values and the gain in percent (positive = MTL helped).

    The three mappings must name the same metrics; rows follow the order of ``stl``.
    """
    names = list(stl)
    for label, mapping in (("mtl", mtl), ("higher_is_better", higher_is_better)):
        if set(mapping) != set(names):
            missing, extra = sorted(set(names) - set(mapping)), sorted(set(mapping) - set(names))
            raise ValueError(f"{label} must name the same metrics as stl: missing {missing}, extra {extra}")
    return pd.DataFrame(
        {
            "stl": [float(stl[m]) for m in names],
            "mtl": [float(mtl[m]) for m in names],
            "higher_is_better": [bool(higher_is_better[m]) for m in names],
            "gain_pct": [multitask_gain(stl[m], mtl[m], bool(higher_is_better[m])) for m in names],
        },
        index=pd.Index(names, name="metric"),
    )


def _mean_std_text(mean: float, std: float, n: int, decimals: int) -> str:
    return f"{mean:.{decimals}f}" if n == 1 else f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def summarise_seeds(values: ArrayLike, decimals: int = 4) -> str:
    """``"mean ± std"`` of one metric over seeds (sample std, ddof=1); the value alone for a single seed."""
    array = _vector(values, "values")
    std = float(np.std(array, ddof=1)) if array.size > 1 else float("nan")
    return _mean_std_text(float(np.mean(array)), std, array.size, decimals)


def mean_std_table(
    frame: pd.DataFrame, by: str | list[str], metric_columns: Sequence[str], decimals: int = 4
) -> pd.DataFrame:
    """Results of several seeds per configuration: a ``"mean ± std"`` text column per metric, for display,
    plus numeric ``<metric>_mean`` and ``<metric>_std`` (ddof=1) columns and ``n_seeds``; one row per group.
    """
    keys = [by] if isinstance(by, str) else list(by)
    metrics = list(metric_columns)
    missing = [c for c in keys + metrics if c not in frame.columns]
    if missing:
        raise KeyError(f"the frame has no column(s) {missing}; it has {list(frame.columns)}")
    if not metrics:
        raise ValueError("metric_columns is empty: name at least one metric column")
    for column in metrics:
        _vector(frame[column], column)
    grouped = frame.groupby(keys, sort=False)[metrics]
    mean, std, n = grouped.mean(), grouped.std(ddof=1), grouped.size()
    table = pd.DataFrame({"n_seeds": n})
    for column in metrics:
        table[column] = [
            _mean_std_text(m, s, c, decimals) for m, s, c in zip(mean[column], std[column], n, strict=True)
        ]
    for column in metrics:
        table[f"{column}_mean"] = mean[column]
        table[f"{column}_std"] = std[column]
    return table


# --------------------------------------------------------------------------------------------------
# Sampling error and head-to-head verdicts
# --------------------------------------------------------------------------------------------------

def hanley_mcneil(auc_value: float, n_positive: int, n_negative: int) -> float:
    """Standard error of an AUC of ``auc_value`` measured on ``n_positive`` positives and ``n_negative`` negatives.

    Hanley and McNeil (Radiology, 1982): ``sqrt((A(1-A) + (P-1)(Q1-A^2) + (N-1)(Q2-A^2)) / (P N))`` with
    ``Q1 = A/(2-A)``, ``Q2 = 2A^2/(1+A)``: how much the AUC of one fixed model would move on another test set of
    the same size. It treats rows as independent; :func:`bootstrap_replicates` resamples whole users instead.
    """
    if not 0 <= auc_value <= 1:
        raise ValueError(f"an AUC is in [0, 1], got {auc_value}")
    if n_positive < 1 or n_negative < 1:
        raise ValueError(f"need at least one positive and one negative, got {n_positive} and {n_negative}")
    a, p, n = float(auc_value), float(n_positive), float(n_negative)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    return float(np.sqrt(max(a * (1 - a) + (p - 1) * (q1 - a * a) + (n - 1) * (q2 - a * a), 0.0) / (p * n)))


def auc_standard_error(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """:func:`hanley_mcneil` of the AUC of ``y_score`` on these labels: NaN where it is undefined (one class)."""
    y = _binary(_vector(y_true, "y_true"))
    a = auc(y, y_score)
    if not np.isfinite(a):
        return float("nan")
    return hanley_mcneil(a, int(y.sum()), int(len(y) - y.sum()))


def _weighted_auc_replicates(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC of ``score`` under each row of ``weights`` ``(b, n)``, ties counting one half."""
    values, inverse = np.unique(score, return_inverse=True)
    out = np.empty(weights.shape[0])
    for b, w in enumerate(weights):
        positives = np.bincount(inverse, weights=w * y, minlength=len(values))
        negatives = np.bincount(inverse, weights=w * (1.0 - y), minlength=len(values))
        below = np.cumsum(negatives) - negatives
        out[b] = np.sum(positives * (below + 0.5 * negatives)) / (positives.sum() * negatives.sum())
    return out


def bootstrap_replicates(
    y_true: ArrayLike,
    scores: Mapping[str, ArrayLike],
    groups: ArrayLike,
    metric: Literal["auc", "rmse", "mean"] = "auc",
    n_boot: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """The metric of every score on ``n_boot`` resamples of the test set that keep or drop whole groups (users).

    ``metric`` is ``"auc"`` (of each score against the 0/1 ``y_true``), ``"rmse"`` (of each prediction against
    ``y_true``) or ``"mean"`` (of each score itself, e.g. 0/1 correctness for an accuracy; ``y_true`` only gives
    the length).
    A Poisson bootstrap: each group gets a weight drawn from Poisson(1) per replicate, and its rows share it. All
    scores see the same replicates, so the spread of a *difference* of two columns is the sampling error of that
    difference on this test set (paired, hence smaller than the two errors combined). One row per replicate,
    one column per score; ``std()`` of a column is its standard error.
    """
    y = _vector(y_true, "y_true")
    codes, keys = _groups(groups)
    _same_length(y_true=y, groups=codes)
    _choice(metric, "metric", ("auc", "rmse", "mean"))
    if metric == "auc":
        y = _binary(y)
    _positive_int(n_boot, "n_boot")
    arrays = {}
    for name, values in scores.items():
        arrays[name] = _vector(values, str(name))
        _same_length(y_true=y, **{str(name): arrays[name]})
    rng = np.random.default_rng(seed)
    group_weights = rng.poisson(1.0, size=(n_boot, len(keys))).astype(np.float64)
    weights = group_weights[:, codes]
    out = {}
    for name, values in arrays.items():
        if metric == "auc":
            out[name] = _weighted_auc_replicates(y, values, weights)
        elif metric == "rmse":
            out[name] = np.sqrt((weights @ (values - y) ** 2) / weights.sum(1))
        else:
            out[name] = (weights @ values) / weights.sum(1)
    return pd.DataFrame(out)


def verdict(difference: float, standard_error: float, higher_is_better: bool = True, z: float = 2.0) -> str:
    """``"better"``, ``"worse"`` or ``"within noise"``: is ``difference`` (model minus reference) beyond ``z`` errors?"""
    if not (np.isfinite(difference) and np.isfinite(standard_error)):
        return "n/a"
    if abs(difference) <= z * standard_error:
        return "within noise"
    return "better" if (difference > 0) == higher_is_better else "worse"


def head_to_head(
    per_seed: pd.DataFrame,
    metric: str,
    reference: str,
    higher_is_better: bool = True,
    test_error: Mapping[str, float] | None = None,
    by: str = "model",
    seed: str = "seed",
    z: float = 2.0,
    decimals: int = 4,
) -> pd.DataFrame:
    """Each model against ``reference`` on one metric: mean ± sd over seeds, the difference and whether it is noise.

    ``per_seed`` has one row per model and seed. The difference is the mean over seeds of the paired difference
    (same seed, same test set); its standard error combines the seeds' spread (sd / sqrt(n)) with the test set's
    sampling error of the difference, ``test_error[model]`` (e.g. the std of a column difference of
    :func:`bootstrap_replicates`). With one seed and no test error the error is unknown and the verdict "n/a".
    The verdict says "better" or "worse" only beyond ``z`` of those errors, "within noise" otherwise; ``seeds better`` counts the seeds in which the model beat the
    reference. Rows with a missing value of ``metric`` are left out.
    """
    missing = [c for c in (by, seed, metric) if c not in per_seed.columns]
    if missing:
        raise KeyError(f"per_seed has no column(s) {missing}; it has {list(per_seed.columns)}")
    wide = per_seed.dropna(subset=[metric]).pivot_table(index=seed, columns=by, values=metric, aggfunc="first",
                                                        sort=False)
    if reference not in wide.columns:
        raise KeyError(f"no model {reference!r} in per_seed; models: {list(wide.columns)}")
    errors = dict(test_error or {})
    rows = []
    for model in wide.columns:
        values = wide[model].dropna()
        diff = (wide[model] - wide[reference]).dropna()
        n = len(diff)
        parts = [float(diff.std(ddof=1) / np.sqrt(n))] if n > 1 else []
        if model in errors:
            parts.append(float(errors[model]))
        se = float(np.sqrt(np.sum(np.square(parts)))) if parts else np.nan  # one seed and no test error: unknown
        row = {
            by: model,
            "n_seeds": len(values),
            metric: _mean_std_text(float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else np.nan,
                                   len(values), decimals),
            f"{metric}_mean": float(values.mean()),
            "difference": float(diff.mean()) if model != reference else 0.0,
            "difference_se": se if model != reference else np.nan,
            "seeds better": (f"{int(((diff > 0) if higher_is_better else (diff < 0)).sum())} of {n}"
                             if model != reference else ""),
            "verdict": "reference" if model == reference else verdict(float(diff.mean()), se, higher_is_better, z),
        }
        rows.append(row)
    return pd.DataFrame(rows).set_index(by)
