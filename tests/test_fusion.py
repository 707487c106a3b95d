"""Score fusion: the formula, slate outcomes on a hand-made example, the frontier and its Pareto front."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from utils import fusion


def test_fused_score_is_the_log_of_the_weighted_product() -> None:
    ctr, cvr, price = np.array([0.1, 0.02]), np.array([0.05, 0.3]), np.array([20.0, 3.0])
    got = fusion.fused_score(ctr, cvr, price, beta=0.5, gamma=2.0)
    np.testing.assert_allclose(np.exp(got), ctr * cvr**0.5 * price**2.0)
    assert fusion.fused_score([0.0], [0.5], [1.0])[0] == pytest.approx(np.log(1e-7) + np.log(0.5))


@pytest.mark.parametrize("args, words", [
    (([0.1, 0.2], [0.1], [1.0, 2.0]), "same length"),
    (([1.5], [0.1], [1.0]), "probabilities"),
    (([0.5], [0.1], [0.0]), "price must be > 0"),
    (([np.nan], [0.1], [1.0]), "missing"),
])
def test_fused_score_rejects_bad_input(args, words) -> None:
    with pytest.raises(ValueError, match=words):
        fusion.fused_score(*args)


@pytest.fixture()
def lists() -> pd.DataFrame:
    # user 1: a likely click on a cheap item, an unlikely click on a dear item that sells; user 2 one item.
    return pd.DataFrame({"user_id": [1, 1, 2], "click_if_shown": [0.5, 0.1, 0.2],
                         "purchase_if_clicked": [0.01, 0.5, 0.1], "price": [2.0, 100.0, 10.0]})


def test_slate_outcomes_by_hand(lists) -> None:
    by_click = fusion.slate_outcomes(lists, np.array([2.0, 1.0, 0.0]), k=1)
    assert by_click == pytest.approx({"clicks": 0.7, "purchases": 0.005 + 0.02, "revenue": 0.01 + 0.2})
    by_money = fusion.slate_outcomes(lists, np.array([1.0, 2.0, 0.0]), k=1)
    assert by_money["revenue"] == pytest.approx(5.0 + 0.2) and by_money["clicks"] == pytest.approx(0.3)
    assert fusion.slate_outcomes(lists, np.zeros(3), k=5)["clicks"] == pytest.approx(0.8)


def test_frontier_is_relative_to_pctr_and_finds_the_trade_off(lists) -> None:
    table = fusion.fusion_frontier(lists, lists["click_if_shown"], lists["purchase_if_clicked"], [0.0, 1.0], [0.0, 1.0],
                                   k=1)
    base = table[(table["beta"] == 0) & (table["gamma"] == 0)].iloc[0]
    assert base[["clicks_vs_ctr", "purchases_vs_ctr", "revenue_vs_ctr"]].tolist() == [1.0, 1.0, 1.0]
    revenue = table[(table["beta"] == 1) & (table["gamma"] == 1)].iloc[0]
    assert revenue["revenue_vs_ctr"] > 20 and revenue["clicks_vs_ctr"] < 1
    front = fusion.pareto_front(table, "clicks_vs_ctr", "revenue_vs_ctr")
    assert front["clicks_vs_ctr"].is_monotonic_increasing and len(front) == 2


def test_slate_outcomes_rejects_bad_input(lists) -> None:
    with pytest.raises(ValueError, match="k must be"):
        fusion.slate_outcomes(lists, np.zeros(3), k=0)
    with pytest.raises(KeyError, match="no column"):
        fusion.slate_outcomes(lists.drop(columns="price"), np.zeros(3), k=1)
    with pytest.raises(ValueError, match="3 rows"):
        fusion.slate_outcomes(lists, np.zeros(2), k=1)
