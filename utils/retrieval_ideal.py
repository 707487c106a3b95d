"""What retrieval could reach on a ShopSim log: an oracle and an ideal learner for Recall@K over logged clicks.

A test click needs two things: the shop showed the item, and the user liked it. ShopSim's logging policy is not
personalised, so an item's exposure does not depend on the user, and the chance that user ``u`` clicks item
``i`` in the test days is proportional to ``exposure(i) x P(click | u, i, examined)``. Ranking every item by
that product maximises the expected number of test clicks among the top K:

- :func:`oracle_scores`: the true click probability (every hidden taste known) times an exposure estimate;
- :func:`ideal_scores`: the same with each user's taste estimated by :class:`utils.ceilings.IdealLearner`
  from their log (its posterior mean), the item side known exactly: what a learner with the right model could
  reach on this log.

Both are references, not bounds: recall is a ratio over a handful of random clicks, so a model can beat them on
one test set by chance, and they rank by expected clicks, not expected recall.

    >>> learner = IdealLearner(shop).fit(rows_before_test)
    >>> top = top_k_ids(ideal_scores(learner, users, items, log_exposure), items, 100)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from utils import shopsim
from utils.ceilings import IdealLearner, _probit_mean
from utils.shopsim import ShopSimData

__all__ = ["ideal_scores", "log_exposure", "oracle_scores"]


def log_exposure(impressions: pd.DataFrame, item_ids: np.ndarray, item_col: str = "item_id") -> np.ndarray:
    """Log of each item's share of ``impressions`` (half an impression for an item never shown, so it stays finite)."""
    if impressions.empty:
        raise ValueError("no impressions to estimate exposure from")
    counts = impressions[item_col].value_counts().reindex(np.asarray(item_ids), fill_value=0).to_numpy(np.float64)
    return np.log((counts + 0.5) / len(impressions))


def _check(users: np.ndarray, items: np.ndarray, exposure: np.ndarray) -> None:
    if len(exposure) != len(items):
        raise ValueError(f"{len(exposure)} exposure values for {len(items)} items")
    if len(users) == 0 or len(items) == 0:
        raise ValueError("give at least one user and one item")


def oracle_scores(shop: ShopSimData, users: np.ndarray, items: np.ndarray, item_log_exposure: np.ndarray) -> np.ndarray:
    """``log exposure + log P(click | examined)`` from the simulator's true parameters, ``(n_users, n_items)``."""
    users, items = np.asarray(users), np.asarray(items)
    _check(users, items, item_log_exposure)
    d = shop.config.latent_dim
    truth = shop.users.set_index("user_id").loc[users]
    u = shop.latent["user_taste_click"][users].astype(np.float64)
    v = shop.latent["item_taste_click"][items].astype(np.float64)
    logit = (shopsim._CLICK_AFFINITY * np.sqrt(d) * u @ v.T
             + shopsim._CLICK_QUALITY * shop.items["true_quality"].to_numpy(np.float64)[items][None, :]
             + truth["true_bias"].to_numpy(np.float64)[:, None]
             - shopsim._CLICK_PRICE * truth["true_price_sensitivity"].to_numpy(np.float64)[:, None]
             * np.asarray(shop.truth["price_term"], np.float64)[items][None, :]
             + shop.truth["click_intercept"])
    return np.asarray(item_log_exposure)[None, :] - np.logaddexp(0.0, -logit)


def ideal_scores(learner: IdealLearner, users: np.ndarray, items: np.ndarray, item_log_exposure: np.ndarray,
                 chunk: int = 512) -> np.ndarray:
    """``log exposure + log E[P(click | examined)]`` under the fitted ideal learner's posterior of each user,
    ``(n_users, n_items)``."""
    if learner.theta is None or learner.covariance is None:
        raise RuntimeError("fit the ideal learner first: IdealLearner(shop).fit(rows)")
    users, items = np.asarray(users), np.asarray(items)
    _check(users, items, item_log_exposure)
    side = learner._click_side(pd.DataFrame({"item_id": items, "position": np.ones(len(items))}))
    design, offset, n = side["click"], side["click_offset"], side["click"].shape[1]
    out = np.empty((len(users), len(items)))
    for lo in range(0, len(users), chunk):
        u = users[lo:lo + chunk]
        mean = offset[None, :] + learner.theta[u, :n] @ design.T
        variance = np.einsum("ik,ukl,il->ui", design, learner.covariance[u, :n, :n], design)
        out[lo:lo + chunk] = np.log(np.clip(_probit_mean(mean, variance), 1e-12, None))
    return out + np.asarray(item_log_exposure)[None, :]
