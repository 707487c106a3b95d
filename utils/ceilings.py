"""What a learner can reach on a ShopSim log: the position-only and user-blind ceilings, and an ideal learner.

The oracle (:func:`utils.shopsim.oracle_metrics`) knows every user's hidden taste, which no model trained on a
log can. The ceilings here say what the log itself allows:

- **group ceilings** (:func:`group_ceiling`): the true click probability averaged over the impressions that
  share some keys, e.g. the slot only, or the item and the slot (user-blind): the best any predictor that sees
  only those keys can do;
- the **ideal learner** (:class:`IdealLearner`): ShopSim's own model with the item side known exactly and each
  user's side (click and purchase taste, click propensity, price sensitivity, purchasing-power effect) estimated
  from that user's training impressions alone, under ShopSim's prior. It is what a learner with the right model
  and a perfect catalogue could reach with this log: a model far below it is the bottleneck, not the data.

    >>> learner = IdealLearner(shop).fit(train)
    >>> p = learner.predict(test)    # {"click", "cvr", "cvr_entire", "rating"}

The estimate is Bayesian: the posterior mode of each user's parameters (Fisher scoring on a Gaussian prior) and
its Laplace covariance, and predictions that average over that posterior, so that a user with little history is
predicted near the population. It is exact in the sense that matters when the shop's logging policy is not
personalised (``personalisation = 0``, the default): then what a user was shown, and where, says nothing about
them, and their clicks and purchases are all the evidence there is. With a personalised policy the exposures
carry evidence too, which this learner ignores (it warns). It is not a strict bound either way: a model can beat
it by chance, or where its prior is cruder than the truth (it ignores what the profile fields say about taste).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.special import ndtr

from utils import shopsim
from utils.shopsim import ShopSimData

__all__ = ["Block", "IdealLearner", "group_ceiling", "posterior_mode"]

_sigmoid = shopsim._sigmoid  # the simulator's own logistic function, clipped so that it never overflows


def group_ceiling(log: pd.DataFrame, rows: pd.DataFrame, keys: Sequence[str], target: str = "p_click") -> np.ndarray:
    """For each of ``rows``, the mean of the true ``target`` over the impressions of ``log`` sharing its ``keys``.

    With ``keys=["position"]`` it is the best slot-only predictor, with ``["item_id", "position"]`` the best
    user-blind one (it knows every item's true mean click rate in every slot, nothing of the user), with
    ``["item_id"]`` the best position-free user-blind one. It is computed from ground truth over the whole
    ``log``: a ceiling, not a model. Keys absent from ``log`` get the overall mean.
    """
    keys = list(keys)
    missing = sorted({c for c in [*keys, target] if c not in log.columns} | {c for c in keys if c not in rows.columns})
    if missing:
        raise KeyError(f"group_ceiling needs column(s) {missing}")
    means = log.groupby(keys, observed=True)[target].mean().rename("_ceiling")
    joined = rows[keys].join(means, on=keys)["_ceiling"]
    return joined.fillna(float(log[target].mean())).to_numpy(dtype=np.float64)


# --------------------------------------------------------------------------------------------------
# Posterior mode of many small Bayesian models at once
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """0/1 labels ``y`` of rows that inform their group's parameters: ``P(y = 1) = examine * sigmoid(z)``, with
    ``z = offset + x . theta[columns]`` (``examine`` is 1 when not given, as for a purchase given a click)."""

    group: np.ndarray
    columns: slice
    x: np.ndarray
    offset: np.ndarray
    y: np.ndarray
    examine: np.ndarray

    @staticmethod
    def bernoulli(group: np.ndarray, columns: slice, x: np.ndarray, offset: np.ndarray, y: np.ndarray,
                  examine: np.ndarray | None = None) -> Block:
        """Checked, float64 arrays for a block."""
        e = np.ones(len(group)) if examine is None else np.asarray(examine, dtype=np.float64)
        return Block(np.asarray(group), columns, np.asarray(x, dtype=np.float64), np.asarray(offset, dtype=np.float64),
                     np.asarray(y, dtype=np.float64), e)

    def terms(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row: d log-likelihood / dz and the Fisher information in z."""
        y, e, s = self.y, self.examine, _sigmoid(z)
        rest = np.clip(1 - e * s, 1e-12, None)
        return y * (1 - s) - (1 - y) * e * s * (1 - s) / rest, e * s * (1 - s) ** 2 / rest

    def log_likelihood(self, z: np.ndarray) -> np.ndarray:
        """Per row: the log-likelihood of its label at ``z``."""
        p = np.clip(self.examine * _sigmoid(z), 1e-15, 1 - 1e-15)
        return self.y * np.log(p) + (1 - self.y) * np.log1p(-p)

    def sorted(self) -> Block:
        """The same rows ordered by group, so that a group's rows are contiguous."""
        order = np.argsort(self.group, kind="stable")
        return Block(self.group[order], self.columns, self.x[order], self.offset[order], self.y[order],
                     self.examine[order])


_SEGMENT = 64  # rows per padded segment in the curvature products


@dataclass
class _Plan:
    """A group-sorted block prepared for fast sums: a sparse indicator and the rows in padded segments."""

    block: Block
    indicator: sparse.csr_matrix
    present: np.ndarray  # groups with rows
    segment: np.ndarray  # per row: its segment
    slot: np.ndarray  # per row: its place in the segment
    padded: np.ndarray  # (n_segments, _SEGMENT, width) float32, zero where empty
    group_starts: np.ndarray  # first segment of each present group

    @staticmethod
    def of(block: Block, n_groups: int) -> _Plan:
        block = block.sorted()
        g, n = block.group, len(block.group)
        indicator = sparse.csr_matrix((np.ones(n), (g, np.arange(n))), shape=(n_groups, n))
        present, first, counts = np.unique(g, return_index=True, return_counts=True)
        within = np.arange(n) - np.repeat(first, counts)
        new = (within % _SEGMENT) == 0  # a segment starts at a new group or every _SEGMENT rows of one
        segment = np.cumsum(new) - 1
        slot = within % _SEGMENT
        padded = np.zeros((int(segment[-1]) + 1 if n else 0, _SEGMENT, block.x.shape[1]), dtype=np.float32)
        padded[segment, slot] = block.x
        return _Plan(block, indicator, present, segment, slot, padded, segment[first])

    def logits(self, theta: np.ndarray) -> np.ndarray:
        """Per row: ``z = offset + x . theta[group, columns]``."""
        block = self.block
        return block.offset + np.einsum("nk,nk->n", block.x, theta[block.group, block.columns])

    def log_likelihood(self, theta: np.ndarray) -> np.ndarray:
        """Per group: the log-likelihood of its rows at ``theta``."""
        return self.indicator @ self.block.log_likelihood(self.logits(theta))

    def sums(self, theta: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
        """Per group: the gradient and the Fisher information of the block at ``theta`` (zero for absent groups)."""
        block = self.block
        x = block.x
        residual, weight = block.terms(self.logits(theta))
        grad = self.indicator @ (x * residual[:, None])
        weights = np.zeros(self.padded.shape[:2], dtype=np.float32)
        weights[self.segment, self.slot] = weight
        per_segment = np.matmul(np.swapaxes(self.padded * weights[..., None], 1, 2), self.padded)
        info = np.zeros((n_groups, x.shape[1], x.shape[1]))
        if len(self.present):
            info[self.present] = np.add.reduceat(per_segment.astype(np.float64), self.group_starts, axis=0)
        return grad, info


def posterior_mode(blocks: Sequence[Block], prior_mean: np.ndarray, prior_precision: np.ndarray,
                   steps: int = 15, tol: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mode and Laplace covariance of every group's parameter vector, by Fisher scoring.

    ``prior_mean`` is ``(n_groups, p)``, ``prior_precision`` ``(n_groups, p, p)``. Each step solves
    ``(Lambda + I(theta)) delta = grad log posterior`` for all groups at once: gradients are summed into groups
    by a sparse product, curvatures by one batched matrix product over padded segments of each group's rows.
    Returns the mode ``(n_groups, p)`` and the inverse of the curvature at it ``(n_groups, p, p)``.
    """
    mean = np.asarray(prior_mean, dtype=np.float64)
    precision = np.asarray(prior_precision, dtype=np.float64)
    n_groups, p = mean.shape
    if precision.shape != (n_groups, p, p):
        raise ValueError(f"prior_precision must be {(n_groups, p, p)}, got {precision.shape}")
    plans = [_Plan.of(block, n_groups) for block in blocks if len(block.group)]

    def log_posterior(at: np.ndarray) -> np.ndarray:
        centred = at - mean
        value = -0.5 * np.einsum("gi,gij,gj->g", centred, precision, centred)
        for plan in plans:
            value += plan.log_likelihood(at)
        return value

    theta = mean.copy()
    info = precision.copy()
    current = log_posterior(theta)
    for _ in range(steps):
        grad = -np.einsum("gij,gj->gi", precision, theta - mean)
        info[...] = precision
        for plan in plans:
            cols = plan.block.columns
            g_sum, h_sum = plan.sums(theta, n_groups)
            grad[:, cols] += g_sum
            info[:, cols, cols] += h_sum
        delta = np.linalg.solve(info, grad[..., None])[..., 0]
        # a click likelihood with examination is not log-concave everywhere: halve the step of any group whose
        # log posterior would fall, so that every group climbs
        step = np.ones(n_groups)
        for _ in range(10):
            trial = theta + step[:, None] * delta
            value = log_posterior(trial)
            worse = value < current - 1e-12
            if not worse.any():
                break
            step[worse] /= 2
        theta, current = trial, value
        if np.abs(step[:, None] * delta).max() < tol:
            break
    return theta, np.linalg.inv(info)


def _probit_mean(z: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """E[sigmoid(Z)] for Z ~ N(z, variance), by the probit approximation (MacKay 1992)."""
    return _sigmoid(z / np.sqrt(1.0 + np.pi * np.maximum(variance, 0.0) / 8.0))


# --------------------------------------------------------------------------------------------------
# The ideal learner of ShopSim
# --------------------------------------------------------------------------------------------------


class IdealLearner:
    """ShopSim's own click, conversion and rating model, item side known, each user estimated from their log.

    Per user it estimates ``theta = [click taste (d), click propensity, price sensitivity, purchase taste (d),
    purchasing-power effect]`` from the rows given to :meth:`fit` (clicks on all of them, purchases on the
    clicked ones), under ShopSim's prior: tastes ``N(0, I/d)``, propensity ``N(0, 0.5^2)``, sensitivity and
    purchasing-power effect from the user's observed purchasing power (the population's when the field is
    empty).

    :meth:`predict` gives ``click`` (P(click)),
    ``cvr`` (P(purchase | click), given that the row was clicked: what a conversion model trained on clicks
    estimates), ``cvr_entire`` (P(purchase | click) before the click is known: the entire-space target) and
    ``rating`` (the expected rating before noise, given a purchase). One market, stationary tastes.
    """

    def __init__(self, shop: ShopSimData) -> None:
        cfg = shop.config
        if cfg.target_share > 0 or cfg.taste_drift > 0:
            raise ValueError("the ideal learner models one market with stationary tastes: "
                             "generate the shop with target_share=0 and taste_drift=0")
        if not shop.truth:
            raise ValueError("this ShopSimData carries no generative parameters (shop.truth); regenerate it")
        self.shop = shop
        if cfg.personalisation > 0:
            warnings.warn(f"personalisation={cfg.personalisation:g}: the shop chose what to show each user from their "
                          "taste, so exposures are evidence this learner ignores; it is no longer the best a learner "
                          "can do", stacklevel=2)
        self.d = d = cfg.latent_dim
        root_d = np.sqrt(d)
        self._click_taste = shop.latent["item_taste_click"].astype(np.float64) * root_d * shopsim._CLICK_AFFINITY
        self._buy_taste = shop.latent["item_taste_purchase"].astype(np.float64) * root_d * shopsim._BUY_AFFINITY
        self._quality = shop.items["true_quality"].to_numpy(dtype=np.float64)
        self._price = np.asarray(shop.truth["price_term"], dtype=np.float64)
        self.n_params = 2 * d + 3
        self._bias, self._sens, self._power = d, d + 1, 2 * d + 2
        self._prior_mean, self._prior_cov, self._population = self._prior()
        self.theta: np.ndarray | None = None
        self.covariance: np.ndarray | None = None

    # ---------------------------------------------------------------- prior

    def _prior(self) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Prior mean and covariance per user, and the population's (for users of unknown purchasing power)."""
        cfg, d = self.shop.config, self.d
        shares = np.diff(np.concatenate([[0.0], ndtr(np.asarray(shopsim._POWER_CUTS, dtype=np.float64)), [1.0]]))
        levels = np.arange(len(shares), dtype=np.float64)
        sd = shopsim._SENSITIVITY_SD
        base = cfg.price_sensitivity * (2.0 - 0.45 * levels)  # sensitivity ~ base * lognormal(0, sd)
        s_mean, s_var = base * np.exp(sd**2 / 2), base**2 * np.exp(sd**2) * (np.exp(sd**2) - 1)
        effect = shopsim._BUY_POWER * (levels - 2)
        mix_s, mix_e = float(shares @ s_mean), float(shares @ effect)
        cross = float(shares @ (s_mean * effect)) - mix_s * mix_e
        mix_cov = np.array([[float(shares @ (s_var + s_mean**2)) - mix_s**2, cross],
                            [cross, float(shares @ effect**2) - mix_e**2 + 1e-8]])
        pair = np.array([self._sens, self._power])

        def base_cov() -> np.ndarray:
            cov = np.zeros((self.n_params, self.n_params))
            taste = np.r_[np.arange(d), np.arange(d) + d + 2]
            cov[taste, taste] = 1.0 / d
            cov[self._bias, self._bias] = shopsim._USER_BIAS_SD**2
            return cov

        population_mean = np.zeros(self.n_params)
        population_mean[pair] = [mix_s, mix_e]
        population_cov = base_cov()
        population_cov[pair[:, None], pair[None, :]] = mix_cov

        users = self.shop.users
        observed = users["purchasing_power"].notna().to_numpy()
        level = users["purchasing_power"].to_numpy(dtype=np.float64, na_value=0).astype(int)
        mean = np.tile(population_mean, (len(users), 1))
        cov = np.tile(population_cov, (len(users), 1, 1))
        told = np.flatnonzero(observed)  # users who gave their level: its sensitivity and its effect
        mean[told, self._sens], mean[told, self._power] = s_mean[level[told]], effect[level[told]]
        known = np.zeros((told.size, 2, 2))
        known[:, 0, 0], known[:, 1, 1] = s_var[level[told]], 1e-8
        cov[np.ix_(told, pair, pair)] = known
        return mean, cov, (population_mean, population_cov)

    # ---------------------------------------------------------------- designs

    def _click_side(self, rows: pd.DataFrame) -> dict[str, np.ndarray]:
        """Per row, over theta's first d + 2 entries: the design of the click logit, its offset, the examination.

        The click logit is ``offset + taste . u + propensity - 0.7 price_term * sensitivity``.
        """
        item = rows["item_id"].to_numpy()
        position = rows["position"].to_numpy(dtype=np.float64)
        d = self.d
        click = np.empty((len(item), d + 2))
        click[:, :d] = self._click_taste[item]
        click[:, self._bias] = 1.0
        click[:, self._sens] = -shopsim._CLICK_PRICE * self._price[item]
        return {"click": click,
                "click_offset": shopsim._CLICK_QUALITY * self._quality[item] + self.shop.truth["click_intercept"],
                "examine": position ** -self.shop.config.position_bias}

    def _buy_side(self, rows: pd.DataFrame) -> dict[str, np.ndarray]:
        """Per row, over all of theta: the purchase design, the purchase affinity (which the rating follows), offsets."""
        item = rows["item_id"].to_numpy()
        rho, d = self.shop.config.task_correlation, self.d
        affinity = np.zeros((len(item), self.n_params))
        affinity[:, :d] = rho * self._click_taste[item]
        affinity[:, d + 2:2 * d + 2] = np.sqrt(1.0 - rho**2) * self._buy_taste[item]
        buy = affinity.copy()
        buy[:, self._sens] = -self._price[item]
        buy[:, self._power] = 1.0
        quality = self._quality[item]
        return {"buy": buy, "affinity": affinity,
                "buy_offset": shopsim._BUY_QUALITY * quality + self.shop.truth["purchase_intercept"],
                "rating_offset": shopsim._RATING_BASE + shopsim._RATING_QUALITY * quality}

    # ---------------------------------------------------------------- fit and predict

    def fit(self, rows: pd.DataFrame, steps: int = 15, purchase_label: str = "purchase") -> IdealLearner:
        """Estimate every user's parameters from their impressions in ``rows``: clicks, and purchases on the
        clicked rows, as a real log has them. ``purchase_label="would_purchase"`` learns instead from the
        simulator's counterfactual label on *every* row (what a model trained on that label sees)."""
        if purchase_label not in ("purchase", "would_purchase"):
            raise ValueError(f"purchase_label must be 'purchase' or 'would_purchase', got {purchase_label!r}")
        needed = ("user_id", "item_id", "position", "click", purchase_label)
        missing = [c for c in needed if c not in rows.columns]
        if missing:
            raise KeyError(f"the ideal learner needs column(s) {missing} of the impression log")
        x = self._click_side(rows)
        user = rows["user_id"].to_numpy()
        seen = rows["click"].to_numpy() == 1 if purchase_label == "purchase" else np.ones(len(rows), dtype=bool)
        buy = self._buy_side(rows[seen])
        click_cols = slice(0, self.d + 2)
        blocks = [
            Block.bernoulli(user, click_cols, x["click"], x["click_offset"], rows["click"].to_numpy(), x["examine"]),
            Block.bernoulli(user[seen], slice(0, self.n_params), buy["buy"], buy["buy_offset"],
                            rows[purchase_label].to_numpy()[seen]),
        ]
        precision = np.linalg.inv(self._prior_cov)
        self.theta, self.covariance = posterior_mode(blocks, self._prior_mean, precision, steps=steps)
        return self

    def predict_click_at_launch(self, rows: pd.DataFrame, graph: bool = True) -> np.ndarray:
        """P(click) of ``rows`` with each item known only as it is on its launch day: its price term and, with
        ``graph``, the graph part of its click taste (``sqrt(kg_signal)`` times ShopSim's entity taste).

        The item's own part of the taste and its quality are not in the graph: they are averaged over ShopSim's
        prior, together with the user's posterior (probit approximation). The best a learner that knows the click
        model and the graph, and nothing else of a new item, can do; ``graph=False`` knows its price only.
        """
        if self.theta is None or self.covariance is None:
            raise RuntimeError("call fit(train) first")
        missing = [c for c in ("user_id", "item_id", "position") if c not in rows.columns]
        if missing:
            raise KeyError(f"the ideal learner needs column(s) {missing} of the impression log")
        d, share = self.d, float(self.shop.config.kg_signal)
        item, user = rows["item_id"].to_numpy(), rows["user_id"].to_numpy()
        entity = self.shop.latent["item_entity_click"].astype(np.float64) * np.sqrt(d) * shopsim._CLICK_AFFINITY
        x = np.zeros((len(item), d + 2))
        if graph:
            x[:, :d] = np.sqrt(share) * entity[item]
        x[:, self._bias] = 1.0
        x[:, self._sens] = -shopsim._CLICK_PRICE * self._price[item]
        theta, cov = self.theta[user, :d + 2], self.covariance[user, :d + 2, :d + 2]
        quality_mean, quality_var = self._quality.mean(), self._quality.var()
        mean = (shopsim._CLICK_QUALITY * quality_mean + self.shop.truth["click_intercept"]
                + np.einsum("nk,nk->n", x, theta))
        # the unknown part of the taste: z = t . u with t ~ N(0, I/d) (scaled as above), so var = |u|^2 per unit
        # share, and E|u|^2 includes the posterior's spread
        taste_power = (theta[:, :d] ** 2).sum(1) + np.trace(cov[:, :d, :d], axis1=1, axis2=2)
        unknown = (1.0 - share if graph else 1.0) * shopsim._CLICK_AFFINITY**2 * taste_power
        variance = (np.einsum("nk,nkl,nl->n", x, cov, x) + unknown + shopsim._CLICK_QUALITY**2 * quality_var)
        examine = rows["position"].to_numpy(dtype=np.float64) ** -self.shop.config.position_bias
        return examine * _probit_mean(mean, variance)

    def predict(self, rows: pd.DataFrame, nodes_per_dim: int = 6) -> dict[str, np.ndarray]:
        """Posterior predictions for ``rows``: ``click``, ``cvr``, ``cvr_entire`` and ``rating`` (see the class)."""
        if self.theta is None or self.covariance is None:
            raise RuntimeError("call fit(train) first")
        x, buy = self._click_side(rows), self._buy_side(rows)
        user = rows["user_id"].to_numpy()
        n = len(user)
        click = np.zeros((n, self.n_params))
        click[:, :self.d + 2] = x["click"]
        # the three linear forms of theta per row: the click logit, the purchase logit, the purchase affinity
        forms = np.stack([click, buy["buy"], buy["affinity"]], axis=1)  # (n, 3, p)
        offsets = np.stack([x["click_offset"], buy["buy_offset"], np.zeros(n)], 1)
        mean, cov = np.empty((n, 3)), np.empty((n, 3, 3))
        for lo in range(0, n, 20_000):
            sl = slice(lo, lo + 20_000)
            f = forms[sl]
            mean[sl] = offsets[sl] + np.einsum("nfk,nk->nf", f, self.theta[user[sl]])
            cov[sl] = np.einsum("nfk,nkl,ngl->nfg", f, self.covariance[user[sl]], f)
        out = {
            "click": x["examine"] * _probit_mean(mean[:, 0], cov[:, 0, 0]),
            "cvr_entire": _probit_mean(mean[:, 1], cov[:, 1, 1]),
        }
        # given a click (cvr) and a purchase (rating): Gauss-Hermite over the 3-d Gaussian of the three forms
        nodes, weights = np.polynomial.hermite_e.hermegauss(nodes_per_dim)
        grid = np.stack(np.meshgrid(nodes, nodes, nodes, indexing="ij"), -1).reshape(-1, 3)
        w = np.prod(np.stack(np.meshgrid(weights, weights, weights, indexing="ij"), -1).reshape(-1, 3), 1)
        chol = np.linalg.cholesky(cov + 1e-9 * np.eye(3))
        cvr, rating = np.empty(n), np.empty(n)
        exam = x["examine"]
        for lo in range(0, n, 5_000):
            sl = slice(lo, lo + 5_000)
            sample = mean[sl, None, :] + np.einsum("nij,sj->nsi", chol[sl], grid)
            p_click = exam[sl, None] * _sigmoid(sample[..., 0]) * w
            both = p_click * _sigmoid(sample[..., 1])
            r = 1.0 + 4.0 * _sigmoid(buy["rating_offset"][sl, None] + shopsim._RATING_AFFINITY * sample[..., 2])
            cvr[sl] = both.sum(1) / p_click.sum(1)
            rating[sl] = (both * r).sum(1) / both.sum(1)
        out["cvr"], out["rating"] = cvr, rating
        return out
