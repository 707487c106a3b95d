"""Lesson 06's funnel plumbing: the training rows of each baseline, the CTCVR composition, the three AUCs
(checked against scikit-learn on ShopSim's truth), the results table, the leak guard, and a save → load →
predict round trip of every model the lesson builds."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from utils import funnel
from utils.metrics import auc_standard_error as metrics_se
from utils.esmm import compile_esmm, esmm_dataset, esmm_model
from utils.models import Task, compile_model, feature_arrays, feature_spec, make_multitask_dataset, single_task_model
from utils.shopsim import generate


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return generate("tiny", seed=3, cvr=0.2).with_features()


def test_ali_ccp_rates() -> None:
    assert funnel.ALI_CCP_CVR == pytest.approx(0.0053, abs=1e-4)
    table = funnel.funnel_counts({})
    row = table.loc["Ali-CCP (ESMM paper)"]
    assert row["ctr"] == pytest.approx(0.0405, abs=1e-3) and np.isnan(row["would_purchase"])


def test_funnel_counts(log: pd.DataFrame) -> None:
    table = funnel.funnel_counts({"all": log}, reference=False)
    assert list(table.index) == ["all"]
    assert table.loc["all", "clicks"] == log["click"].sum()
    assert table.loc["all", "cvr"] == pytest.approx(log["purchase"].sum() / log["click"].sum())
    assert table.loc["all", "would_purchase"] >= table.loc["all", "purchases"]
    with pytest.raises(KeyError, match="purchase"):
        funnel.funnel_counts({"x": log.drop(columns="purchase")})


def _real_log(n: int = 4000, seed: int = 0) -> pd.DataFrame:
    """A log as a real shop has it: impressions with click and purchase, no simulator truth at all."""
    rng = np.random.default_rng(seed)
    score = rng.normal(size=n)
    click = (rng.random(n) < 1 / (1 + np.exp(2.5 - score))).astype(int)
    purchase = click * (rng.random(n) < 1 / (1 + np.exp(1.5 - score))).astype(int)
    return pd.DataFrame({"user_id": rng.integers(0, 50, n), "score": score, "click": click, "purchase": purchase})


def test_the_funnel_helpers_take_a_real_log() -> None:
    real = _real_log()
    table = funnel.funnel_counts({"real": real})
    assert table.loc["real", "purchases"] == real["purchase"].sum() and np.isnan(table.loc["real", "would_purchase"])
    p_ctr = 1 / (1 + np.exp(2.5 - real["score"].to_numpy()))
    p_cvr = 1 / (1 + np.exp(1.5 - real["score"].to_numpy()))
    scores = funnel.funnel_scores(real, p_cvr, p_ctr * p_cvr, p_ctr=p_ctr)
    clicked = real["click"].to_numpy() == 1
    assert "cvr_auc_entire" not in scores  # no real log knows what the non-clickers would have bought
    assert scores["cvr_auc_clicked"] == pytest.approx(roc_auc_score(real["purchase"][clicked], p_cvr[clicked]))
    assert scores["ctcvr_auc"] == pytest.approx(roc_auc_score(real["purchase"], p_ctr * p_cvr))
    assert scores["ctr_auc"] == pytest.approx(roc_auc_score(real["click"], p_ctr))
    runs = pd.DataFrame([{"model": m, "seed": s, **funnel.funnel_scores(real, p_cvr ** k, p_ctr * p_cvr ** k)}
                         for m, k in (("BASE", 1.0), ("ESMM", 0.5)) for s in (0, 1)])
    table = funnel.results_table(runs)
    assert list(table.columns.get_level_values(0).unique()) == ["", "CVR AUC, clicked", "CTCVR AUC"]
    with pytest.raises(ValueError, match="without a click"):
        funnel.funnel_scores(real.assign(purchase=1), p_cvr, p_ctr * p_cvr)
    with pytest.raises(ValueError, match="pCTR"):
        funnel.funnel_scores(real, p_cvr, p_ctr * p_cvr, p_ctr=p_ctr[:5])


def test_clicked_and_aman_rows(log: pd.DataFrame) -> None:
    base = funnel.clicked_rows(log)
    assert (base["click"] == 1).all() and len(base) == log["click"].sum()
    aman = funnel.aman_rows(log, negative_rate=0.25, seed=1)
    assert (funnel.clicked_rows(aman).index == base.index).all()  # every click kept
    nonclicked = (aman["click"] == 0).sum()
    assert nonclicked == pytest.approx(0.25 * (log["click"] == 0).sum(), rel=0.05)
    assert (aman.loc[aman["click"] == 0, "purchase"] == 0).all()
    assert aman.equals(funnel.aman_rows(log, negative_rate=0.25, seed=1))  # same seed, same rows
    assert len(funnel.aman_rows(log, negative_rate=1.0)) == len(log)
    with pytest.raises(ValueError, match="negative_rate"):
        funnel.aman_rows(log, negative_rate=0.0)


def test_tower_training_sets() -> None:
    click = np.array([1, 0, 1, 0, 1])
    purchase = np.array([1, 0, 0, 0, 1])
    sets = funnel.tower_training_sets(click, purchase)
    rows, labels = sets["base_cvr"]
    assert rows.tolist() == [True, False, True, False, True] and labels.tolist() == [1, 0, 1]
    assert sets["esmm_ctr"][0].all() and sets["esmm_ctr"][1].tolist() == click.tolist()
    assert sets["esmm_ctcvr"][0].all() and sets["esmm_ctcvr"][1].tolist() == purchase.tolist()
    with pytest.raises(ValueError, match="0/1"):
        funnel.tower_training_sets(np.array([0, 2]), np.array([0, 0]))
    with pytest.raises(ValueError, match="length"):
        funnel.tower_training_sets(np.array([0, 1]), np.array([0]))


def test_ctcvr_composition() -> None:
    a, b = np.array([-3.0, 0.0, 2.0]), np.array([-5.0, 0.0, 1.0])
    sig = 1 / (1 + np.exp(-a)), 1 / (1 + np.exp(-b))
    np.testing.assert_allclose(funnel.ctcvr_from_logits(a, b), sig[0] * sig[1])
    np.testing.assert_allclose(funnel.ctcvr_probability(*sig), sig[0] * sig[1])
    assert (funnel.ctcvr_from_logits(a, b) <= np.minimum(*sig)).all()
    with pytest.raises(ValueError, match="logits"):
        funnel.ctcvr_probability(a, sig[1])
    with pytest.raises(ValueError, match="length"):
        funnel.ctcvr_probability(sig[0], sig[1][:2])


def test_scores_match_sklearn_and_the_oracle(log: pd.DataFrame) -> None:
    rng = np.random.default_rng(0)
    p_cvr = np.clip(log["p_purchase"].to_numpy() + rng.normal(0, 0.05, len(log)), 0, 1)
    p_ctcvr = log["p_click"].to_numpy() * p_cvr
    scores = funnel.funnel_scores(log, p_cvr, p_ctcvr)
    clicked = log["click"].to_numpy() == 1
    assert scores["cvr_auc_clicked"] == pytest.approx(roc_auc_score(log["purchase"][clicked], p_cvr[clicked]))
    assert scores["cvr_auc_entire"] == pytest.approx(roc_auc_score(log["would_purchase"], p_cvr))
    assert scores["ctcvr_auc"] == pytest.approx(roc_auc_score(log["purchase"], p_ctcvr))
    assert scores["mean_pcvr_nonclicked"] == pytest.approx(p_cvr[~clicked].mean())
    from utils.shopsim import oracle_metrics

    truth, ours = oracle_metrics(log), funnel.oracle_scores(log)
    for key in funnel.RESULT_METRICS:
        assert ours[key] == pytest.approx(truth[key])
    assert ours["cvr_auc_entire"] > scores["cvr_auc_entire"]  # the noisy model ranks worse than the truth
    with pytest.raises(ValueError, match="rows"):
        funnel.funnel_scores(log, p_cvr[:10], p_ctcvr[:10])


def test_auc_standard_error_matches_a_bootstrap() -> None:
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(150), np.zeros(3000)]
    score = rng.normal(size=y.size) + 0.5 * y
    from utils.metrics import auc

    value = auc(y, score)
    draws = [auc(y[i], score[i]) for i in (rng.integers(0, y.size, y.size) for _ in range(300))]
    # Hanley-McNeil is an approximation (exact for exponential score distributions): close, a little high here
    assert funnel.auc_standard_error(value, 150, 3000) == pytest.approx(np.std(draws), rel=0.3)
    assert funnel.auc_standard_error(0.5, 100, 100) == pytest.approx(np.sqrt((0.25 + 2 * 99 / 12) / 100**2))
    assert funnel.auc_standard_error(0.6, 2000, 30000) < funnel.auc_standard_error(0.6, 200, 30000)
    with pytest.raises(ValueError, match="positive"):
        funnel.auc_standard_error(0.6, 0, 10)
    y, s = (score > 0.2).astype(int), score + rng.normal(size=y.size)
    assert metrics_se(y, s) == pytest.approx(funnel.auc_standard_error(auc(y, s), int(y.sum()), int((1 - y).sum())))


def test_results_table_form() -> None:
    runs = pd.DataFrame({
        "model": ["BASE", "BASE", "ESMM", "ESMM"],
        "seed": [1, 2, 1, 2],
        "cvr_auc_clicked": [0.60, 0.62, 0.64, 0.66],
        "cvr_auc_entire": [0.55, 0.57, 0.60, 0.60],
        "ctcvr_auc": [0.75, 0.75, 0.76, 0.78],
    })
    oracle = {"cvr_auc_clicked": 0.8, "cvr_auc_entire": 0.81, "ctcvr_auc": 0.9}
    table = funnel.results_table(runs, oracle=oracle)
    assert list(table.index) == ["BASE", "ESMM", "oracle (true probabilities)"]
    assert table.loc["BASE", ("CVR AUC, clicked", "AUC (%)")] == "61.00 ± 1.41"
    assert table.loc["ESMM", ("CVR AUC, clicked", "gain")] == "+4.00"
    assert table.loc["ESMM", ("CVR AUC, entire space", "AUC (%)")] == "60.00 ± 0.00"
    assert table.loc["oracle (true probabilities)", ("CTCVR AUC", "AUC (%)")] == "90.00"
    assert table.loc["oracle (true probabilities)", ("", "seeds")] == "—"
    with pytest.raises(ValueError, match="baseline"):
        funnel.results_table(runs, baseline="AMAN")
    with pytest.raises(ValueError, match="unknown metric"):
        funnel.results_table(runs, metrics_=["rmse"])
    ideal = {"cvr_auc_clicked": 0.7, "cvr_auc_entire": 0.69, "ctcvr_auc": 0.85}
    both = funnel.results_table(runs, oracle=oracle, ceilings={"ideal learner": ideal})
    assert list(both.index) == ["BASE", "ESMM", "ideal learner", "oracle (true probabilities)"]
    assert both.loc["ideal learner", ("CVR AUC, entire space", "AUC (%)")] == "69.00"
    assert both.loc["ideal learner", ("CVR AUC, entire space", "gain")] == "+13.00"
    assert both.loc["ideal learner", ("", "seeds")] == "—"
    with pytest.raises(ValueError, match="name of a model"):
        funnel.results_table(runs, ceilings={"ESMM": ideal})


def test_check_features() -> None:
    assert funnel.check_features(["user_id", "item_id"]) == ["user_id", "item_id"]
    with pytest.raises(ValueError, match="after the impression"):
        funnel.check_features(["item_id", "cart"])
    with pytest.raises(ValueError, match="ground truth"):
        funnel.check_features(["item_id", "p_purchase"])


def test_every_lesson_model_round_trips(log: pd.DataFrame, tmp_path: Path) -> None:
    """The CTR/BASE/AMAN single-task model, ESMM and ESMM-MMoE, as lesson 06 configures them."""
    spec = feature_spec(log, categorical=["user_id", "item_id", "position"], log_numeric=["price"], embedding_dim=4)
    x = feature_arrays(log.head(200), spec)
    task = Task("purchase", "binary")
    models = {"cvr": compile_model(single_task_model(spec, task, hidden=(16, 8)), [task])}
    models["cvr"].fit(make_multitask_dataset(funnel.clicked_rows(log), spec, [task], 512), epochs=1, verbose=0)
    for bottom in ("embedding", "mmoe"):
        model = compile_esmm(esmm_model(spec, bottom=bottom, tower=(16, 8), num_experts=3, expert_units=(8,)))
        model.fit(esmm_dataset(log, spec, 2048), epochs=1, verbose=0)
        models[bottom] = model
    for name, model in models.items():
        before = model.predict(x, verbose=0)
        path = tmp_path / f"{name}.keras"
        model.save(path)
        after = keras.saving.load_model(path).predict(x, verbose=0)
        for key in before:
            np.testing.assert_allclose(after[key], before[key], rtol=1e-6, atol=1e-8)
