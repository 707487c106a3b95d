"""Two-tower retrieval: the Keras loss equals its NumPy reference, training runs, the model round-trips
through a .keras file, and bad input gets a clear error."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest

from utils import retrieval
from utils.models import feature_spec

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
