"""Two-tower retrieval: the Keras loss equals its NumPy reference, training runs, the model round-trips
through a .keras file, and bad input gets a clear error."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest

from utils import retrieval
from utils.models import feature_arrays, feature_spec

USERS = ["user_id", "age_band"]
ITEMS = ["item_id", "category_id"]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 600
    item = rng.integers(0, 40, n)
    return pd.DataFrame({
        "user_id": rng.integers(0, 60, n), "age_band": rng.integers(0, 6, n),
        "item_id": item, "category_id": item % 7, "price": rng.lognormal(3, 1, n),
        "click": (rng.random(n) < 0.3).astype(np.int8),
    })


@pytest.fixture(scope="module")
def spec(frame: pd.DataFrame):
    return feature_spec(frame, categorical=USERS + ITEMS, log_numeric=["price"], embedding_dim=4)


def _model(spec, retrieval_weight: float = 1.0, ranking_weight: float = 1.0) -> retrieval.TwoTowerModel:
    keras.utils.set_random_seed(1)
    return retrieval.TwoTowerModel(retrieval.tower(spec.select(USERS), (8,), 6, name="query_tower"),
                                   retrieval.tower(spec.select([*ITEMS, "price"]), (8,), 6, name="candidate_tower"),
                                   retrieval.ranking_head(6, (8,)), retrieval_weight, ranking_weight)


def test_keras_loss_equals_numpy_reference(frame, spec) -> None:
    model = _model(spec)
    probability = retrieval.item_sampling_probability(frame)
    x, y, _ = next(iter(retrieval.retrieval_dataset(frame, spec, probability, 64)))
    out = model(x)
    keras_loss = float(model.retrieval_loss(out["query"], out["candidate"], y["click"], x["item_id"],
                                            x[retrieval.CANDIDATE_PROBABILITY]))
    numpy_loss = retrieval.in_batch_softmax_loss(np.asarray(out["query"]), np.asarray(out["candidate"]),
                                                 y["click"].numpy(), x["item_id"].numpy(),
                                                 x[retrieval.CANDIDATE_PROBABILITY].numpy())
    assert len(np.unique(x["item_id"].numpy())) < 64, "the batch must hold accidental hits for this test to bite"
    assert keras_loss == pytest.approx(numpy_loss, rel=1e-5)
    without_q = retrieval.in_batch_softmax_loss(np.asarray(out["query"]), np.asarray(out["candidate"]),
                                                y["click"].numpy(), x["item_id"].numpy())
    assert without_q != pytest.approx(numpy_loss, rel=1e-3)


def test_mask_accidental_hits_masks_only_off_diagonal_duplicates() -> None:
    logits = np.zeros((4, 4), np.float32)
    masked = np.asarray(retrieval.mask_accidental_hits(logits, np.array([5, 5, 7, 5])))
    expected = np.array([[0, 1, 0, 1], [1, 0, 0, 1], [0, 0, 0, 0], [1, 1, 0, 0]], bool)
    assert np.array_equal(masked < -1e8, expected)


def test_training_lowers_both_losses_and_round_trips(frame, spec, tmp_path) -> None:
    model = _model(spec)
    model.compile(keras.optimizers.Adam(1e-2))
    data = retrieval.retrieval_dataset(frame, spec, retrieval.item_sampling_probability(frame), 128, shuffle=True)
    history = model.fit(data, epochs=4, verbose=0, shuffle=False).history
    assert history["retrieval_loss"][-1] < history["retrieval_loss"][0]
    assert history["click_loss"][-1] < history["click_loss"][0]
    model.save(tmp_path / "two_tower.keras")
    loaded = keras.saving.load_model(tmp_path / "two_tower.keras")
    assert isinstance(loaded, retrieval.TwoTowerModel) and loaded.ranking_weight == 1.0
    x = {k: v for k, v in next(iter(data))[0].items() if k != retrieval.CANDIDATE_PROBABILITY}
    for key, value in model.predict(x, verbose=0).items():
        np.testing.assert_allclose(loaded.predict(x, verbose=0)[key], value, rtol=1e-6, atol=1e-7)


def test_weight_zero_switches_a_task_off(frame, spec) -> None:
    model = _model(spec, retrieval_weight=1.0, ranking_weight=0.0)
    model.compile(keras.optimizers.Adam(1e-2))
    head = [w.numpy().copy() for w in model.ranking.weights]
    model.fit(retrieval.retrieval_dataset(frame, spec, None, 128), epochs=1, verbose=0, shuffle=False)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(head, model.ranking.weights, strict=True))


def test_embeddings_retrieve_and_recall(frame, spec) -> None:
    model = _model(spec)
    users = frame.drop_duplicates("user_id").head(10)
    items = frame.drop_duplicates("item_id").sort_values("item_id")
    queries, candidates = retrieval.query_embeddings(model, users), retrieval.candidate_embeddings(model, items)
    assert queries.shape == (10, 6) and candidates.shape == (len(items), 6)
    scores, ids = retrieval.retrieve(queries, candidates, items["item_id"].to_numpy(), k=5)
    want = items["item_id"].to_numpy()[np.argsort(-(queries @ candidates.T), axis=1, kind="stable")[:, :5]]
    assert np.array_equal(ids, want)
    assert np.all(np.diff(scores, axis=1) <= 0)
    assert retrieval.recall_of_retrieved(ids, [set(ids[0][:2]) | {999}] + [set()] * 9) == pytest.approx(2 / 3)


def test_sampling_probability_sums_to_one(frame) -> None:
    probability = retrieval.item_sampling_probability(frame)
    assert probability.sum() == pytest.approx(1.0) and probability.index.is_unique


@pytest.mark.parametrize("kwargs, words", [
    ({"retrieval_weight": -1.0}, "retrieval_weight"),
    ({"retrieval_weight": 0.0, "ranking_weight": 0.0}, "nothing would be trained"),
    ({"temperature": 0.0}, "temperature"),
    ({"item_key": "sku"}, "no input 'sku'"),
])
def test_bad_model_arguments(spec, kwargs, words) -> None:
    with pytest.raises(ValueError, match=words):
        retrieval.TwoTowerModel(retrieval.tower(spec.select(USERS)), retrieval.tower(spec.select(ITEMS)),
                                retrieval.ranking_head(32), **kwargs)


def test_bad_inputs(frame, spec) -> None:
    with pytest.raises(ValueError, match="in-batch negatives"):
        retrieval.retrieval_dataset(frame, spec, batch_size=1)
    with pytest.raises(ValueError, match="sampling probability"):
        retrieval.retrieval_dataset(frame, spec, retrieval.item_sampling_probability(frame.head(10)))
    with pytest.raises(ValueError, match="k must be"):
        retrieval.retrieve(np.ones((2, 3)), np.ones((4, 3)), np.arange(4), k=5)
    with pytest.raises(ValueError, match="must be"):
        retrieval.retrieve(np.ones((2, 3)), np.ones((4, 2)), np.arange(4), k=2)
    with pytest.raises(KeyError, match="query feature"):
        retrieval.query_embeddings(_model(spec), frame[["user_id"]])
    with pytest.raises(KeyError, match="no column"):
        retrieval.item_sampling_probability(frame, "sku")


def test_click_history_holds_only_earlier_clicks() -> None:
    clicks = pd.DataFrame({"user_id": [1, 1, 1, 2], "item_id": [10, 11, 12, 20], "timestamp": [5, 7, 9, 1]})
    rows = pd.DataFrame({"user_id": [1, 1, 1, 2, 3], "timestamp": [7, 9, 100, 1, 50]})
    history = retrieval.click_history(clicks, rows, length=2)
    assert history.tolist() == [[-1, 10], [10, 11], [11, 12], [-1, -1], [-1, -1]]
    own = retrieval.click_history(clicks, clicks, length=3)  # each click's own history: never itself
    assert all(item not in row for item, row in zip(clicks["item_id"], own.tolist(), strict=True))
    with pytest.raises(ValueError, match="length"):
        retrieval.click_history(clicks, rows, length=0)
    with pytest.raises(KeyError, match="timestamp"):
        retrieval.click_history(clicks, rows.drop(columns="timestamp"))


def _history_model(spec, frame) -> retrieval.TwoTowerModel:
    keras.utils.set_random_seed(2)
    items = np.sort(frame["item_id"].unique())
    return retrieval.TwoTowerModel(
        retrieval.tower(spec.select(["age_band"]), (8,), 6, name="query_tower", history_items=items, history_length=4,
                        normalise=True),
        retrieval.tower(spec.select([*ITEMS, "price"]), (8,), 6, name="candidate_tower", normalise=True),
        retrieval.ranking_head(6, (8,)), 1.0, 1.0, temperature=0.2)


def test_history_tower_trains_with_early_stopping_and_round_trips(frame, spec, tmp_path) -> None:
    frame = frame.assign(timestamp=np.arange(len(frame)))
    history = retrieval.click_history(frame[frame["click"] == 1], frame, 4)
    model = _history_model(spec, frame)
    model.compile(keras.optimizers.Adam(1e-2))
    data = retrieval.retrieval_dataset(frame, spec, retrieval.item_sampling_probability(frame), 128, shuffle=True,
                                       history=history)
    users = frame.drop_duplicates("user_id").head(20)
    user_history = retrieval.click_history(frame[frame["click"] == 1], users.assign(timestamp=len(frame)), 4)
    relevant = [set(frame.loc[frame["user_id"] == u, "item_id"]) for u in users["user_id"]]
    items = frame.drop_duplicates("item_id").sort_values("item_id")
    x_valid = {**feature_arrays(frame, spec), retrieval.HISTORY: history}
    monitors = [retrieval.RecallAtKLog(users, user_history, relevant, items, 5),
                retrieval.ClickAUCLog(x_valid, frame["click"].to_numpy())]
    keeper = retrieval.fit_two_tower(model, frame, data, monitors, max_epochs=3, patience=0)
    assert set(keeper.best_epoch) == {"val_recall_at_5", "val_click_auc"}
    assert 0 <= keeper.best["val_recall_at_5"] <= 1 and 0 <= keeper.best["val_click_auc"] <= 1
    queries = retrieval.query_embeddings(model, users, user_history)
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, rtol=1e-5)
    without = retrieval.click_history(frame.head(0), users.assign(timestamp=0), 4)  # no history at all
    assert not np.allclose(queries, retrieval.query_embeddings(model, users, without)), "history must reach the query"
    model.save(tmp_path / "history.keras")
    loaded = keras.saving.load_model(tmp_path / "history.keras")
    np.testing.assert_allclose(retrieval.query_embeddings(loaded, users, user_history), queries, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="click history"):
        retrieval.query_embeddings(model, users)


def test_history_pooling_averages_known_items_only() -> None:
    layer = retrieval.HistoryPooling([10, 11, 12], dim=3)
    ids = np.array([[-1, 10, 11], [-1, -1, -1], [99, 12, 12]])
    out = np.asarray(layer(ids))
    table = np.asarray(layer.embedding.embeddings)
    np.testing.assert_allclose(out[0], (table[1] + table[2]) / 2, rtol=1e-6)
    np.testing.assert_allclose(out[1], 0.0)
    np.testing.assert_allclose(out[2], table[3], rtol=1e-6)  # the unknown item 99 is left out
    with pytest.raises(ValueError, match="empty"):
        retrieval.HistoryPooling([], 3)


def test_log_prior_columns_add_the_prior_to_the_score() -> None:
    rng = np.random.default_rng(0)
    q, c, prior = rng.normal(size=(3, 4)), rng.normal(size=(5, 4)), np.log(rng.dirichlet(np.ones(5)))
    q2, c2 = retrieval.with_log_prior(q, c, prior, temperature=0.5)
    np.testing.assert_allclose(q2 @ c2.T, q @ c.T + 0.5 * prior[None, :], rtol=1e-5)
    with pytest.raises(ValueError, match="prior values"):
        retrieval.with_log_prior(q, c, prior[:2])


def test_top_k_ids_and_recall_by_group() -> None:
    scores = np.array([[0.1, 0.9, 0.5], [0.8, 0.2, 0.3]])
    assert retrieval.top_k_ids(scores, np.array([7, 8, 9]), 2).tolist() == [[8, 9], [7, 9]]
    with pytest.raises(ValueError, match="k must be"):
        retrieval.top_k_ids(scores, np.array([7, 8, 9]), 4)
    recalls = {"base": np.array([0.0, 1.0, 0.5, 0.5]), "better": np.array([0.5, 1.0, 1.0, 0.5])}
    table = retrieval.recall_by_group(recalls, np.array(["a", "a", "b", "b"]), "base", n_boot=50)
    assert table.loc[("all users", "better"), "recall"] == pytest.approx(0.75)
    assert table.loc[("b", "better"), "vs base"] == pytest.approx(0.25)
    assert table.loc[("a", "base"), "± se"] > 0
    with pytest.raises(KeyError, match="baseline"):
        retrieval.recall_by_group(recalls, np.array(["a"] * 4), "popularity")


def test_item_knn_scores_follow_co_clicks() -> None:
    clicks = pd.DataFrame({"user_id": [1, 1, 2, 2, 3], "item_id": [10, 11, 10, 11, 12]})
    scores = retrieval.item_knn_scores(np.array([[-1, 10], [-1, -1]]), clicks, np.array([10, 11, 12]))
    assert scores[0, 1] == pytest.approx(1.0) and scores[0, 2] == 0.0  # 11 is always clicked with 10, 12 never
    assert np.all(scores[1] == 0.0)
