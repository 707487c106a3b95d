"""The system's ranker: its log and features, training, and .keras round trips, float32 and int8-quantised."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

from utils import ranker
from utils.datasets import load_dataset
from utils.models import feature_arrays
from utils.splits import temporal_split


@pytest.fixture(scope="module")
def data():
    log = ranker.ranking_log(load_dataset("shopsim", scale="tiny", seed=3))
    train, _, test = temporal_split(log, 3, 3)
    return train, test, ranker.ranker_spec(train, embedding_dim=4)


def test_ranking_log_masks_the_cvr_label(data) -> None:
    train, _, spec = data
    assert train.loc[train["click"] == 0, "cvr_label"].isna().all()
    assert (train.loc[train["click"] == 1, "cvr_label"] == train.loc[train["click"] == 1, "purchase"]).all()
    assert set(spec.names) == {*ranker.USER_FEATURES, *ranker.ITEM_FEATURES, "position", "price"}


def test_at_serving_slot_fixes_the_position_and_copies(data, trained) -> None:
    _, test, spec = data
    served = ranker.at_serving_slot(test)
    assert (served["position"] == ranker.SERVING_POSITION).all() and served is not test
    assert test["position"].nunique() > 1, "the input must be left as it was"
    logged = trained.predict(feature_arrays(test, spec), verbose=0)["click"]
    at_top = trained.predict(feature_arrays(served, spec), verbose=0)["click"]
    assert not np.allclose(logged, at_top), "the position must reach the model"
    with pytest.raises(ValueError, match="position"):
        ranker.at_serving_slot(test, 0)


@pytest.fixture(scope="module")
def trained(data):
    train, _, spec = data
    return ranker.train_ranker(train, spec, epochs=1, batch_size=1024, seed=5)


def test_train_ranker_is_seeded_and_round_trips(data, trained, tmp_path) -> None:
    train, test, spec = data
    x = feature_arrays(test, spec)
    first = trained
    again = ranker.train_ranker(train, spec, epochs=1, batch_size=1024, seed=5)
    pred = first.predict(x, verbose=0)
    assert set(pred) == {"click", "purchase"}
    np.testing.assert_allclose(again.predict(x, verbose=0)["click"], pred["click"], rtol=1e-5, atol=1e-7)
    first.save(tmp_path / "ranker.keras")
    loaded = keras.saving.load_model(tmp_path / "ranker.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0)["purchase"], pred["purchase"], rtol=1e-6, atol=1e-7)


def test_int8_ranker_round_trips_and_stays_close(data, trained, tmp_path) -> None:
    _, test, spec = data
    x = feature_arrays(test, spec)
    model = trained
    model.save(tmp_path / "float.keras")
    quantized = keras.saving.load_model(tmp_path / "float.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized.quantize("int8")
    assert quantized.get_layer("user_id_embedding").embeddings.dtype == "int8"
    pred = quantized.predict(x, verbose=0)["click"]
    assert np.max(np.abs(pred - model.predict(x, verbose=0)["click"])) < 0.05
    quantized.save(tmp_path / "int8.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the optimizer's slots are not restored for int8 weights; no training follows
        loaded = keras.saving.load_model(tmp_path / "int8.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0)["click"], pred, rtol=1e-6, atol=1e-7)


def test_bad_epochs(data) -> None:
    train, _, spec = data
    with pytest.raises(ValueError, match="epochs"):
        ranker.train_ranker(train, spec, epochs=0)


def test_catalogue_click_scores_match_one_call_on_the_grid(data, trained) -> None:
    _, test, spec = data
    users = test.drop_duplicates("user_id").head(5)[list(ranker.USER_FEATURES)]
    items = test.drop_duplicates("item_id").head(7)[[*ranker.ITEM_FEATURES, "price"]]
    scores = ranker.catalogue_click_scores(trained, spec, users, items, users_per_call=2)  # 3 calls, one partial
    assert scores.shape == (5, 7)
    grid = users.merge(items, how="cross").assign(position=np.int8(ranker.SERVING_POSITION))
    direct = trained.predict(feature_arrays(grid, spec), verbose=0)["click"].reshape(5, 7)
    np.testing.assert_allclose(scores, direct, rtol=1e-5, atol=1e-7)
    assert not np.allclose(scores, scores[:, :1]), "items must differ"


def test_catalogue_click_scores_name_a_missing_column(data, trained) -> None:
    _, test, spec = data
    with pytest.raises(KeyError, match="price"):
        ranker.catalogue_click_scores(trained, spec, test[list(ranker.USER_FEATURES)], test[list(ranker.ITEM_FEATURES)])
    with pytest.raises(ValueError, match="users_per_call"):
        ranker.catalogue_click_scores(trained, spec, test, test, users_per_call=0)
