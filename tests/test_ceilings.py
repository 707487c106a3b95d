"""Tests of the learnable ceilings: group ceilings, the per-group Bayesian fit, and ShopSim's ideal learner."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from utils import metrics
from utils.ceilings import Block, IdealLearner, group_ceiling, posterior_mode
from utils.shopsim import generate
from utils.splits import temporal_split


@pytest.fixture(scope="module")
def shop():
    return generate(scale="tiny", seed=5, n_users=150, n_impressions=40_000)


@pytest.fixture(scope="module")
def fitted(shop):
    train, valid, test = temporal_split(shop.impressions, 3, 3)
    return IdealLearner(shop).fit(train), train, test


def test_group_ceiling_is_the_mean_truth_of_the_group() -> None:
    log = pd.DataFrame({"position": [1, 1, 2, 2, 2], "p_click": [0.2, 0.4, 0.1, 0.1, 0.4]})
    rows = pd.DataFrame({"position": [2, 1, 3]})
    np.testing.assert_allclose(group_ceiling(log, rows, ["position"]), [0.2, 0.3, log["p_click"].mean()])
    with pytest.raises(KeyError, match="item_id"):
        group_ceiling(log, rows, ["item_id"])


def test_posterior_mode_matches_a_one_dimensional_grid_search() -> None:
    rng = np.random.default_rng(0)
    n = 400
    group = rng.integers(0, 3, n)
    x = rng.standard_normal((n, 1))
    truth = np.array([-1.0, 0.0, 1.5])
    examine = rng.uniform(0.2, 1.0, n)
    y = (rng.random(n) < examine / (1 + np.exp(-(0.3 + x[:, 0] * truth[group])))).astype(float)
    block = Block.bernoulli(group, slice(0, 1), x, np.full(n, 0.3), y, examine)
    mode, cov = posterior_mode([block], np.zeros((3, 1)), np.full((3, 1, 1), 2.0), steps=50, tol=1e-10)
    grid = np.linspace(-4, 4, 8001)
    for g in range(3):
        rows = group == g
        p = examine[rows, None] / (1 + np.exp(-(0.3 + x[rows] * grid[None, :])))
        log_post = (y[rows, None] * np.log(p) + (1 - y[rows, None]) * np.log1p(-p)).sum(0) - grid**2
        assert mode[g, 0] == pytest.approx(grid[np.argmax(log_post)], abs=2e-3)
        assert cov[g, 0, 0] > 0


def test_posterior_mode_without_data_stays_at_the_prior() -> None:
    block = Block.bernoulli(np.array([0, 0]), slice(0, 2), np.ones((2, 2)), np.zeros(2), np.array([1.0, 0.0]))
    mean = np.array([[0.0, 0.0], [0.5, -0.5]])
    mode, cov = posterior_mode([block], mean, np.tile(np.eye(2), (2, 1, 1)))
    np.testing.assert_allclose(mode[1], mean[1])
    np.testing.assert_allclose(cov[1], np.eye(2), atol=1e-12)


def test_posterior_mode_checks_the_prior_shape() -> None:
    with pytest.raises(ValueError, match="prior_precision"):
        posterior_mode([], np.zeros((2, 3)), np.zeros((2, 2, 2)))


def test_ideal_learner_sits_between_the_user_blind_ceiling_and_the_oracle() -> None:
    shop = generate(scale="small", seed=1, n_users=600, n_items=400, n_impressions=200_000)
    train, valid, test = temporal_split(shop.impressions, 3, 3)
    p = IdealLearner(shop).fit(train).predict(test)
    ideal = metrics.auc(test["click"], p["click"])
    blind = metrics.auc(test["click"], group_ceiling(shop.impressions, test, ["item_id", "position"]))
    oracle = metrics.auc(test["click"], test["p_click"])
    assert blind < ideal < oracle
    assert p["click"].mean() == pytest.approx(test["p_click"].mean(), rel=0.1)  # calibrated


def test_ideal_learner_predictions_are_probabilities_and_ratings(fitted) -> None:
    learner, train, test = fitted
    p = learner.predict(test)
    assert set(p) == {"click", "cvr", "cvr_entire", "rating"}
    for name in ("click", "cvr", "cvr_entire"):
        assert ((p[name] > 0) & (p[name] < 1)).all()
    assert ((p["rating"] >= 1) & (p["rating"] <= 5)).all()
    assert p["cvr"].mean() > p["cvr_entire"].mean()  # a click is evidence of a better match


def test_ideal_learner_learns_heavy_users_tastes(fitted, shop) -> None:
    learner, train, _ = fitted
    counts = train["user_id"].value_counts()
    heavy = counts.index[counts >= counts.quantile(0.8)]
    d = shop.config.latent_dim
    est, truth = learner.theta[heavy, :d].ravel(), shop.latent["user_taste_click"][heavy].ravel()
    assert np.corrcoef(est, truth)[0, 1] > 0.3
    never = np.setdiff1d(np.arange(len(shop.users)), counts.index)
    if never.size:  # a user without history keeps the prior mean: no taste
        np.testing.assert_allclose(learner.theta[never, :d], 0.0)


def test_ideal_learner_refuses_what_it_does_not_model(shop) -> None:
    with pytest.raises(ValueError, match="one market"):
        IdealLearner(generate(scale="tiny", target_share=0.3))
    with pytest.warns(UserWarning, match="personalisation"):
        IdealLearner(generate(scale="tiny", personalisation=1.0))
    learner = IdealLearner(shop)
    with pytest.raises(RuntimeError, match="fit"):
        learner.predict(shop.impressions.head())
    with pytest.raises(KeyError, match="position"):
        learner.fit(shop.impressions.drop(columns="position"))
    with pytest.raises(ValueError, match="purchase_label"):
        learner.fit(shop.impressions, purchase_label="buy")


def test_ideal_learner_on_the_counterfactual_purchase_label_learns_from_every_row(shop) -> None:
    train, _, test = temporal_split(shop.impressions, 3, 3)
    log = IdealLearner(shop).fit(train).predict(test)["cvr_entire"]
    every = IdealLearner(shop).fit(train, purchase_label="would_purchase").predict(test)["cvr_entire"]
    truth = test["p_purchase"].to_numpy()
    # a purchase label on every impression, not only the clicked ones, says far more about each user's taste
    assert np.corrcoef(every, truth)[0, 1] > np.corrcoef(log, truth)[0, 1]
    assert metrics.auc(test["would_purchase"], every) > metrics.auc(test["would_purchase"], log)


def test_launch_predictions_know_the_graph_part_of_the_taste_only() -> None:
    shop = generate(scale="tiny", seed=5, n_users=150, n_impressions=40_000, kg_signal=1.0)
    train, _, test = temporal_split(shop.impressions, 3, 3)
    learner = IdealLearner(shop)
    with pytest.raises(RuntimeError, match="fit"):
        learner.predict_click_at_launch(test)
    learner.fit(train)
    with_graph = learner.predict_click_at_launch(test)
    blind = learner.predict_click_at_launch(test, graph=False)
    assert np.all((with_graph > 0) & (with_graph < 1)) and np.all((blind > 0) & (blind < 1))
    y = test["click"].to_numpy()
    # at kg_signal = 1 the graph holds the whole taste: knowing it ranks far better than price alone, and no
    # better than knowing the item entirely (quality too)
    full = learner.predict(test)["click"]
    assert metrics.auc(y, blind) + 0.03 < metrics.auc(y, with_graph) <= metrics.auc(y, full) + 0.01
    # blind to the graph, an item is its price term: give item b item a's, and the two score the same
    a, b = test["item_id"].iloc[0], test["item_id"].iloc[1]
    learner._price = learner._price.copy()
    learner._price[b] = learner._price[a]
    np.testing.assert_allclose(learner.predict_click_at_launch(test.assign(item_id=a), graph=False),
                               learner.predict_click_at_launch(test.assign(item_id=b), graph=False))
    assert not np.allclose(learner.predict_click_at_launch(test.assign(item_id=a)),
                           learner.predict_click_at_launch(test.assign(item_id=b)))


def test_launch_predictions_equal_without_a_graph_signal() -> None:
    shop = generate(scale="tiny", seed=6, n_users=100, n_impressions=20_000, kg_signal=0.0)
    train, _, test = temporal_split(shop.impressions, 3, 3)
    learner = IdealLearner(shop).fit(train)
    np.testing.assert_allclose(learner.predict_click_at_launch(test), learner.predict_click_at_launch(test, graph=False))
