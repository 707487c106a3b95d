"""Score fusion: one ranking score from a ranker's several predictions, and what its weights trade.

A multi-task ranker predicts pCTR and pCVR; the shop ranks by one number. The course's fusion is the
weighted geometric form most shops start from:

    score = log pCTR + beta * log pCVR + gamma * log price    (= log of pCTR * pCVR**beta * price**gamma)

``beta = gamma = 0`` ranks by clicks, ``beta = 1, gamma = 0`` by expected purchases per impression
(pCTCVR), ``beta = gamma = 1`` by expected revenue per impression. :func:`fusion_frontier` measures,
for a grid of weights, the clicks, purchases and revenue a top-k slate would collect, using the
simulator's true probabilities, which no real log has (a shop would run an A/B test, or estimate it
off-policy with inverse propensity scoring).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["OUTCOMES", "fused_score", "fusion_frontier", "pareto_front", "slate_outcomes"]

#: The outcomes of a slate that :func:`slate_outcomes` sums.
OUTCOMES = ("clicks", "purchases", "revenue")


def _array(values: object, name: str) -> np.ndarray:
    array = np.asarray(values.to_numpy() if isinstance(values, pd.Series) else values, dtype=np.float64)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} has missing or infinite values")
    return array


def fused_score(p_ctr: object, p_cvr: object, price: object, beta: float = 1.0, gamma: float = 0.0,
                eps: float = 1e-7) -> np.ndarray:
    """``log pCTR + beta log pCVR + gamma log price``, probabilities clipped to ``[eps, 1]``; higher ranks first."""
    ctr, cvr, money = _array(p_ctr, "p_ctr"), _array(p_cvr, "p_cvr"), _array(price, "price")
    if not len(ctr) == len(cvr) == len(money):
        raise ValueError(f"p_ctr, p_cvr and price must have the same length, got {len(ctr)}, {len(cvr)}, {len(money)}")
    if (ctr < 0).any() or (ctr > 1).any() or (cvr < 0).any() or (cvr > 1).any():
        raise ValueError("p_ctr and p_cvr must be probabilities in [0, 1]")
    if (money <= 0).any():
        raise ValueError("price must be > 0 (its log enters the score)")
    return np.log(np.clip(ctr, eps, 1.0)) + beta * np.log(np.clip(cvr, eps, 1.0)) + gamma * np.log(money)


def slate_outcomes(frame: pd.DataFrame, score: object, k: int, user_col: str = "user_id",
                   click_col: str = "click_if_shown", purchase_col: str = "purchase_if_clicked",
                   price_col: str = "price") -> dict[str, float]:
    """Expected clicks, purchases and revenue of showing each user their top ``k`` rows by ``score``.

    ``frame`` has one row per (user, candidate) with the true probability of a click if shown
    (``click_col``), of a purchase given a click (``purchase_col``) and the price. Sums over users.
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    missing = [c for c in (user_col, click_col, purchase_col, price_col) if c not in frame.columns]
    if missing:
        raise KeyError(f"the frame has no column(s) {missing}; it has {list(frame.columns)}")
    values = _array(score, "score")
    if len(values) != len(frame):
        raise ValueError(f"score has {len(values)} values for {len(frame)} rows")
    rank = pd.Series(-values, index=frame.index).groupby(frame[user_col]).rank(method="first")
    top = frame[(rank <= k).to_numpy()]
    clicks = top[click_col].to_numpy(dtype=np.float64)
    purchases = clicks * top[purchase_col].to_numpy(dtype=np.float64)
    return {"clicks": float(clicks.sum()), "purchases": float(purchases.sum()),
            "revenue": float((purchases * top[price_col].to_numpy(dtype=np.float64)).sum())}


def fusion_frontier(frame: pd.DataFrame, p_ctr: object, p_cvr: object, betas: Sequence[float],
                    gammas: Sequence[float], k: int, **columns: str) -> pd.DataFrame:
    """:func:`slate_outcomes` for every (beta, gamma), relative to ranking by pCTR alone (beta = gamma = 0).

    Returns one row per weight pair with the absolute outcomes and ``<outcome>_vs_ctr`` ratios.
    """
    price = frame[columns.get("price_col", "price")]
    base = slate_outcomes(frame, fused_score(p_ctr, p_cvr, price, 0.0, 0.0), k, **columns)
    rows = []
    for beta in betas:
        for gamma in gammas:
            outcome = slate_outcomes(frame, fused_score(p_ctr, p_cvr, price, beta, gamma), k, **columns)
            rows.append({"beta": float(beta), "gamma": float(gamma), **outcome,
                         **{f"{name}_vs_ctr": outcome[name] / base[name] for name in OUTCOMES}})
    return pd.DataFrame(rows)


def pareto_front(table: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """The rows no other row beats on both ``x`` and ``y`` (higher is better), sorted by ``x``; of rows
    with the same point, the first."""
    table = table.drop_duplicates([x, y])
    points = table[[x, y]].to_numpy(dtype=np.float64)
    keep = [not np.any((points[:, 0] >= px) & (points[:, 1] >= py) & ((points[:, 0] > px) | (points[:, 1] > py)))
            for px, py in points]
    return table[np.array(keep)].sort_values(x)
