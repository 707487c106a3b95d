"""The retrieval oracle and ideal learner: their scores are the simulator's click model and the ideal learner's
predictions at the top slot, plus the exposure, and bad input gets a clear error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from utils.ceilings import IdealLearner
from utils.datasets import load_dataset
from utils.retrieval_ideal import ideal_scores, log_exposure, oracle_scores


@pytest.fixture(scope="module")
def shop():
    return load_dataset("shopsim", scale="tiny", seed=4)


def test_oracle_scores_are_the_true_click_probability_if_examined(shop) -> None:
    rows = shop.impressions.head(200)
    users, items = np.unique(rows["user_id"]), np.arange(len(shop.items))
    scores = oracle_scores(shop, users, items, np.zeros(len(items)))
    got = scores[np.searchsorted(users, rows["user_id"]), rows["item_id"]]
    np.testing.assert_allclose(got, np.log(rows["p_click"] / rows["p_examine"]), rtol=1e-4, atol=1e-4)
    shifted = oracle_scores(shop, users, items, np.arange(len(items), dtype=float))
    np.testing.assert_allclose(shifted - scores, np.tile(np.arange(len(items)), (len(users), 1)), atol=1e-9)


def test_ideal_scores_are_the_learners_predictions_at_the_top_slot(shop) -> None:
    learner = IdealLearner(shop).fit(shop.impressions)
    users, items = np.array([0, 3, 7]), np.arange(len(shop.items))
    exposure = log_exposure(shop.impressions, items)
    scores = ideal_scores(learner, users, items, exposure, chunk=2)
    for row, user in enumerate(users):
        frame = {"user_id": np.full(len(items), user), "item_id": items, "position": np.ones(len(items))}
        p = learner.predict(pd.DataFrame(frame))["click"]
        np.testing.assert_allclose(scores[row], np.log(p) + exposure, rtol=1e-6)


def test_log_exposure_and_bad_input(shop) -> None:
    items = np.arange(len(shop.items))
    exposure = log_exposure(shop.impressions, items)
    assert np.exp(exposure).sum() == pytest.approx(1.0, abs=0.5 * len(items) / len(shop.impressions) + 1e-9)
    with pytest.raises(ValueError, match="exposure values"):
        oracle_scores(shop, np.array([0]), items, exposure[:3])
    with pytest.raises(RuntimeError, match="fit the ideal learner"):
        ideal_scores(IdealLearner(shop), np.array([0]), items, exposure)
    with pytest.raises(ValueError, match="no impressions"):
        log_exposure(shop.impressions.head(0), items)
