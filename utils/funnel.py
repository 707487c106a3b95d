"""The click → purchase funnel of lesson 06: which impressions train which conversion model, how each
model is scored, and the results table in the form of the ESMM paper's.

A conversion (CVR) model can be scored three ways (Ma et al., SIGIR 2018, measure the first and the last):

* **CVR AUC on clicked impressions**: ``purchase`` against pCVR where ``click == 1``, all a real log allows;
* **CVR AUC on the entire space**: ``would_purchase`` against pCVR on every impression. Only a simulator
  knows whether a user who did not click would have bought had they clicked (ShopSim draws it);
* **CTCVR AUC on all impressions**: ``purchase`` (0 wherever there was no click) against pCTR · pCVR.

The first and the last need only a log's ``click`` and ``purchase`` columns, so they work on any real
impression → click → purchase log (Ali-CCP, or a pv → buy log with the purchases joined to the impressions);
the entire-space scores are added where the log has ShopSim's ``would_purchase``.

    >>> rows = clicked_rows(train)                       # BASE: CVR trained on clicked impressions
    >>> scores = funnel_scores(test, p_cvr, p_ctr * p_cvr)
    >>> results_table(runs, oracle=oracle_scores(test))  # mean ± std over seeds, oracle last
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from utils import metrics
from utils.shopsim import GROUND_TRUTH_COLUMNS

__all__ = [
    "ALI_CCP",
    "ALI_CCP_CVR",
    "POST_IMPRESSION_COLUMNS",
    "RESULT_METRICS",
    "aman_rows",
    "auc_standard_error",
    "check_features",
    "clicked_rows",
    "ctcvr_from_logits",
    "ctcvr_probability",
    "cvr_aucs",
    "funnel_counts",
    "funnel_scores",
    "oracle_scores",
    "results_table",
    "tower_training_sets",
]

#: The public Ali-CCP dataset as Table 1 of the ESMM paper counts it (rounded there: 84M, 3.4M, 18k).
ALI_CCP: dict[str, int] = {"impressions": 84_000_000, "clicks": 3_400_000, "purchases": 18_000}
#: Ali-CCP's conversion rate per click, about 0.53 %: ShopSim's ``cvr`` knob is set to it in lesson 06.
ALI_CCP_CVR: float = ALI_CCP["purchases"] / ALI_CCP["clicks"]
#: Columns that exist only after an impression was shown: labels, never features of a funnel model.
POST_IMPRESSION_COLUMNS: tuple[str, ...] = ("click", "cart", "purchase", "rating")
#: The three scores of the results table, with their column titles.
RESULT_METRICS: dict[str, str] = {
    "cvr_auc_clicked": "CVR AUC, clicked",
    "cvr_auc_entire": "CVR AUC, entire space",
    "ctcvr_auc": "CTCVR AUC",
}


def _require(frame: pd.DataFrame, columns: Iterable[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"the frame has no column(s) {missing}: a funnel log needs one row per impression with 0/1 "
                       "'click' and 'purchase' (ShopSim's with_features() keeps them, and its ground truth)")


def _binary_array(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values).ravel()
    if array.size and not np.isin(array, (0, 1)).all():
        raise ValueError(f"{name} must hold 0/1 labels, found {sorted(set(np.unique(array).tolist()) - {0, 1})[:5]}")
    return array.astype(np.int8)


def _probabilities(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if np.isnan(array).any():
        raise ValueError(f"{name} has NaN values")
    if array.size and (array.min() < 0 or array.max() > 1):
        raise ValueError(
            f"{name} must be probabilities in [0, 1], found values in [{array.min():.3g}, {array.max():.3g}]: "
            "these look like logits, apply a sigmoid first"
        )
    return array


# --------------------------------------------------------------------------------------------------
# The data: counts, leaks, training rows
# --------------------------------------------------------------------------------------------------


def funnel_counts(frames: Mapping[str, pd.DataFrame], reference: bool = True) -> pd.DataFrame:
    """Impressions, clicks, purchases and rates per frame (e.g. per split), with Ali-CCP's row last.

    Any log with 0/1 ``click`` and ``purchase`` columns will do. ``would_purchase`` counts the impressions whose
    user would have bought had they clicked: only a simulator knows it, so it is NaN for a real log and for
    Ali-CCP. CVR is purchases per click, CTCVR purchases per impression.
    """
    rows = {}
    for name, frame in frames.items():
        _require(frame, ["click", "purchase"])
        would = int(frame["would_purchase"].sum()) if "would_purchase" in frame.columns else np.nan
        rows[name] = {"impressions": len(frame), "clicks": int(frame["click"].sum()),
                      "purchases": int(frame["purchase"].sum()), "would_purchase": would}
    if reference:
        rows["Ali-CCP (ESMM paper)"] = {**ALI_CCP, "would_purchase": np.nan}
    table = pd.DataFrame(rows, index=["impressions", "clicks", "purchases", "would_purchase"]).T
    table["ctr"] = table["clicks"] / table["impressions"]
    table["cvr"] = table["purchases"] / table["clicks"]
    table["ctcvr"] = table["purchases"] / table["impressions"]
    return table.astype({"impressions": "int64", "clicks": "int64", "purchases": "int64"})


def check_features(names: Iterable[str] | Any) -> list[str]:
    """Return the feature names if none is a post-impression label or ground truth, else raise ``ValueError``.

    Accepts a list of names or a ``FeatureSpec``. ``make_multitask_dataset`` already refuses a task's own
    label among the features; this also refuses the *other* funnel labels (a click or a cart as a feature
    of a purchase model), which are just as unknown when the model must score an impression.
    """
    names = list(getattr(names, "names", names))
    post = sorted(set(names) & set(POST_IMPRESSION_COLUMNS))
    truth = sorted(set(names) & GROUND_TRUTH_COLUMNS)
    if post:
        raise ValueError(f"{post} happen after the impression: a model that scores impressions before they are "
                         "shown cannot have them. Drop them from the features")
    if truth:
        raise ValueError(f"{truth} are ShopSim's ground truth, not observable: drop them from the features")
    return names


def clicked_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """BASE's training rows: the clicked impressions (label ``purchase``), as a conventional CVR model uses."""
    _require(frame, ["click", "purchase"])
    return frame[frame["click"].to_numpy() == 1]


def aman_rows(frame: pd.DataFrame, negative_rate: float = 0.1, seed: int = 0) -> pd.DataFrame:
    """AMAN's training rows ("all missing as negative"): every clicked impression, plus a random share
    ``negative_rate`` of the non-clicked ones, whose ``purchase`` is 0 and is taken as a negative CVR label.

    The ESMM paper's naive fix of the sample-selection bias; ``negative_rate=1`` uses every impression.
    """
    _require(frame, ["click", "purchase"])
    if not 0 < negative_rate <= 1:
        raise ValueError(f"negative_rate must be in (0, 1], got {negative_rate}")
    clicked = frame["click"].to_numpy() == 1
    sampled = np.random.default_rng(seed).random(len(frame)) < negative_rate
    return frame[clicked | sampled]


def tower_training_sets(click: Any, purchase: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Which impressions train which output, and with which labels: ``{name: (rows, labels)}``.

    ``rows`` is a boolean mask over the impressions, ``labels`` the label of each selected row, in order.
    BASE's CVR model sees the clicked impressions only (label: purchase); ESMM's two losses both see every
    impression: CTR with the click, CTCVR with click AND purchase. ESMM's CVR output has no loss of its own.
    """
    click = _binary_array(click, "click")
    purchase = _binary_array(purchase, "purchase")
    if click.shape != purchase.shape:
        raise ValueError(f"click and purchase differ in length: {click.size} and {purchase.size}")
    everyone = np.ones(click.size, dtype=bool)
    clicked = click == 1
    return {
        "base_cvr": (clicked, purchase[clicked]),
        "esmm_ctr": (everyone, click),
        "esmm_ctcvr": (everyone, click * purchase),
    }


# --------------------------------------------------------------------------------------------------
# Composition and scores
# --------------------------------------------------------------------------------------------------


def ctcvr_probability(p_ctr: Any, p_cvr: Any) -> np.ndarray:
    """pCTCVR = pCTR · pCVR for probabilities (the chain rule); logits are refused with a clear error."""
    ctr = _probabilities(p_ctr, "p_ctr")
    cvr = _probabilities(p_cvr, "p_cvr")
    if ctr.shape != cvr.shape:
        raise ValueError(f"p_ctr and p_cvr differ in length: {ctr.size} and {cvr.size}")
    return ctr * cvr


def ctcvr_from_logits(ctr_logit: Any, cvr_logit: Any) -> np.ndarray:
    """pCTCVR from the two towers' logits: sigmoid(a) · sigmoid(b), the product of probabilities.

    Neither sigmoid(a · b) (a product of logits) nor sigmoid(a + b) (a product of odds) is a probability
    of clicking and buying.
    """
    a = np.asarray(ctr_logit, dtype=np.float64)
    b = np.asarray(cvr_logit, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-a)) * (1.0 / (1.0 + np.exp(-b)))


def cvr_aucs(click: Any, purchase: Any, would_purchase: Any, p_cvr: Any) -> tuple[float, float]:
    """CVR AUC on the clicked impressions (``purchase`` vs pCVR there) and on the entire space
    (``would_purchase`` vs pCVR on every impression)."""
    click = _binary_array(click, "click")
    purchase = _binary_array(purchase, "purchase")
    would = _binary_array(would_purchase, "would_purchase")
    score = _probabilities(p_cvr, "p_cvr")
    if not click.size == purchase.size == would.size == score.size:
        raise ValueError(f"lengths differ: click {click.size}, purchase {purchase.size}, "
                         f"would_purchase {would.size}, p_cvr {score.size}")
    clicked = click == 1
    return metrics.auc(purchase[clicked], score[clicked]), metrics.auc(would, score)


def funnel_scores(frame: pd.DataFrame, p_cvr: Any, p_ctcvr: Any, p_ctr: Any | None = None) -> dict[str, float]:
    """The AUCs of the results table, plus the mean pCVR on clicked and on non-clicked impressions.

    ``frame`` is a log with 0/1 ``click`` and ``purchase`` per impression, row-aligned with the predictions. Any
    such log gets the clicked-space CVR AUC and the CTCVR AUC (and the CTR AUC when ``p_ctr`` is given); the
    entire-space CVR AUC is added only where the log has ShopSim's ``would_purchase``, which no real log has.
    """
    _require(frame, ["click", "purchase"])
    cvr = _probabilities(p_cvr, "p_cvr")
    ctcvr = _probabilities(p_ctcvr, "p_ctcvr")
    if not len(frame) == cvr.size == ctcvr.size:
        raise ValueError(f"{len(frame)} rows but {cvr.size} pCVR and {ctcvr.size} pCTCVR values")
    click = _binary_array(frame["click"], "click")
    purchase = _binary_array(frame["purchase"], "purchase")
    if (purchase > click).any():
        raise ValueError(f"{int((purchase > click).sum())} purchases without a click: in a funnel log a purchase "
                         "follows a click on the same impression; join each purchase to the impression it came from")
    clicked = click == 1
    scores = {"cvr_auc_clicked": metrics.auc(purchase[clicked], cvr[clicked])}
    if "would_purchase" in frame.columns:
        scores["cvr_auc_entire"] = metrics.auc(_binary_array(frame["would_purchase"], "would_purchase"), cvr)
    scores["ctcvr_auc"] = metrics.auc(purchase, ctcvr)
    if p_ctr is not None:
        ctr = _probabilities(p_ctr, "p_ctr")
        if ctr.size != len(frame):
            raise ValueError(f"{len(frame)} rows but {ctr.size} pCTR values")
        scores["ctr_auc"] = metrics.auc(click, ctr)
    scores["mean_pcvr_clicked"] = float(cvr[clicked].mean()) if clicked.any() else float("nan")
    scores["mean_pcvr_nonclicked"] = float(cvr[~clicked].mean()) if (~clicked).any() else float("nan")
    return scores


def auc_standard_error(auc: float, n_positive: int, n_negative: int) -> float:
    """The sampling standard error of an AUC measured on ``n_positive`` positives and ``n_negative`` negatives
    (:func:`utils.metrics.hanley_mcneil`): with a few hundred purchases it is a couple of AUC points."""
    return metrics.hanley_mcneil(auc, n_positive, n_negative)


def oracle_scores(frame: pd.DataFrame) -> dict[str, float]:
    """:func:`funnel_scores` of ShopSim's true probabilities (``p_purchase``, ``p_ctcvr``): the best any model
    can reach on these impressions."""
    _require(frame, ["p_purchase", "p_ctcvr"])
    return funnel_scores(frame, frame["p_purchase"], frame["p_ctcvr"])


# --------------------------------------------------------------------------------------------------
# The results table
# --------------------------------------------------------------------------------------------------


def _gain_text(value: float, decimals: int) -> str:
    return "" if np.isnan(value) else f"{value:+.{decimals}f}"


def results_table(
    runs: pd.DataFrame,
    baseline: str = "BASE",
    oracle: Mapping[str, float] | None = None,
    metrics_: Sequence[str] | None = None,
    model_column: str = "model",
    decimals: int = 2,
    ceilings: Mapping[str, Mapping[str, float]] | None = None,
) -> pd.DataFrame:
    """The ESMM paper's table: per model, each AUC in percent as ``mean ± std`` over seeds (sample std)
    and its gain over ``baseline`` in AUC points; one row per model in order of appearance, then one row per
    entry of ``ceilings`` (name: scores, e.g. the ideal learner's), oracle last.

    ``runs`` has one row per (model, seed) with a ``model`` column and one column per metric; by default every
    metric of :data:`RESULT_METRICS` that ``runs`` has (a real log has no entire-space column).
    """
    metrics_ = [m for m in RESULT_METRICS if m in runs.columns] if metrics_ is None else list(metrics_)
    unknown = [m for m in metrics_ if m not in RESULT_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(RESULT_METRICS)}")
    references = dict(ceilings or {})
    if oracle is not None:
        references["oracle (true probabilities)"] = oracle
    clash = sorted(set(references) & set(runs[model_column]))
    if clash:
        raise ValueError(f"ceiling row(s) {clash} have the name of a model in runs")
    summary = metrics.mean_std_table(runs, model_column, metrics_, decimals=6)
    if baseline not in summary.index:
        raise ValueError(f"baseline {baseline!r} is not among the models {list(summary.index)}")
    columns: dict[tuple[str, str], list[str]] = {}
    index = list(summary.index)
    for m in metrics_:
        title = RESULT_METRICS[m]
        means = summary[f"{m}_mean"] * 100
        stds = summary[f"{m}_std"] * 100
        base = means[baseline]
        columns[(title, "AUC (%)")] = [
            f"{mu:.{decimals}f}" if np.isnan(sd) else f"{mu:.{decimals}f} ± {sd:.{decimals}f}"
            for mu, sd in zip(means, stds, strict=True)
        ]
        columns[(title, "gain")] = [_gain_text(mu - base, decimals) for mu in means]
        for scores in references.values():
            value = float(scores[m]) * 100
            columns[(title, "AUC (%)")].append(f"{value:.{decimals}f}")
            columns[(title, "gain")].append(_gain_text(value - base, decimals))
    index.extend(references)
    table = pd.DataFrame(columns, index=pd.Index(index, name=model_column))
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    table.insert(0, ("", "seeds"), [str(n) for n in summary["n_seeds"]] + ["—"] * len(references))
    return table
