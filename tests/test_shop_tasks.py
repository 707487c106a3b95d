"""Tests of utils.shop_tasks: the task frames of ShopSim and MovieLens, label hiding, per-entity evaluation,
the layer-usage listing and the epoch timer."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

from utils.models import Task, compile_model, feature_spec, make_multitask_dataset, shared_bottom_model, task_arrays
from utils.movielens import GENRES, MovieLens100K
from utils.shopsim import GROUND_TRUTH_COLUMNS, generate
from utils.shop_tasks import (
    ML_FEATURES,
    ML_GENRE_COLUMNS,
    SHOP_FEATURES,
    SHOP_LABELS,
    EpochTimer,
    class_metrics,
    entity_class_metrics,
    entity_multilabel_auc,
    entity_predictions,
    keep_labels,
    layer_usage,
    movielens_task_frame,
    shop_task_frame,
)


@pytest.fixture(scope="module")
def shop():
    return generate(scale="tiny", seed=3)


# -- keep_labels ------------------------------------------------------------------------------------


def test_keep_labels_keeps_the_share_asked_for_among_known_labels() -> None:
    labels = pd.Series(pd.array([1, pd.NA, 2, 3, pd.NA, 0, 4, 1, pd.NA, 2], dtype="Int8"))
    kept = keep_labels(labels, 0.3, seed=1)
    assert kept.notna().sum() == 3
    assert (kept[kept.notna()] == labels[kept.notna()]).all(), "kept labels keep their values"
    assert labels[kept.notna()].notna().all(), "only known labels can be kept"
    assert labels.notna().sum() == 7, "the input is not modified"
    assert keep_labels(labels, None).equals(labels)


def test_keep_labels_is_nested_and_seeded() -> None:
    labels = pd.Series(np.arange(1000) % 5, dtype="Int8")
    small, large = keep_labels(labels, 0.05, seed=7), keep_labels(labels, 0.4, seed=7)
    assert small.notna().sum() == 50 and large.notna().sum() == 400
    assert (large.notna() | ~small.notna()).all(), "a smaller fraction keeps a subset of a larger one"
    assert keep_labels(labels, 0.05, seed=7).equals(small)
    assert not keep_labels(labels, 0.05, seed=8).equals(small)


def test_keep_labels_errors() -> None:
    labels = pd.Series(pd.array([1, pd.NA, pd.NA, pd.NA], dtype="Int8"))
    with pytest.raises(ValueError, match="only 25.0% are known"):
        keep_labels(labels, 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        keep_labels(labels, -0.1)


# -- shop_task_frame ------------------------------------------------------------------------------------


def test_shop_task_frame_columns_and_labels(shop) -> None:
    frame = shop_task_frame(shop)
    assert len(frame) == len(shop.impressions)
    assert list(frame.columns) == ["impression_id", "day", "user_id", *SHOP_FEATURES, *SHOP_LABELS]
    assert not set(frame.columns) & GROUND_TRUTH_COLUMNS
    assert "price" not in frame.columns and "purchasing_power" not in SHOP_FEATURES and "user_id" not in SHOP_FEATURES
    users, items = shop.users, shop.items
    user, item = frame["user_id"].to_numpy(), frame["item_id"].to_numpy()
    pd.testing.assert_series_equal(frame["power"], pd.Series(users["purchasing_power"].array.take(user), name="power"))
    pd.testing.assert_series_equal(frame["price_band"],
                                   pd.Series(items["price_band"].array.take(item), name="price_band"))
    np.testing.assert_array_equal(frame["brand_id"], items["brand_id"].to_numpy()[item])
    np.testing.assert_array_equal(frame["age_band"].isna(), users["age_band"].isna().to_numpy()[user])
    assert (frame["rating"].notna() == (frame["purchase"] == 1)).all(), "a rating exactly on each purchase"
    assert frame["power"].isna().mean() == pytest.approx(users["purchasing_power"].isna().to_numpy()[user].mean())


def test_shop_task_frame_hides_labels_by_entity(shop) -> None:
    frame = shop_task_frame(shop, user_label_fraction=0.1, item_label_fraction=0.2, seed=4)
    power = frame.groupby("user_id")["power"].agg(lambda s: s.notna().all() or s.isna().all())
    assert power.all(), "a user's label is either on all of their rows or on none"
    labelled_users = frame.loc[frame["power"].notna(), "user_id"].unique()
    labelled_items = frame.loc[frame["price_band"].notna(), "item_id"].unique()
    assert len(labelled_users) <= round(0.1 * len(shop.users))
    assert len(labelled_items) <= round(0.2 * len(shop.items))
    assert shop.users["purchasing_power"].iloc[labelled_users].notna().all()
    full = shop_task_frame(shop)
    assert set(labelled_users) <= set(full.loc[full["power"].notna(), "user_id"])


def test_shop_task_frame_feeds_the_model_builders(shop) -> None:
    frame = shop_task_frame(shop)
    spec = feature_spec(frame, categorical=SHOP_FEATURES, embedding_dim=2)
    tasks = [Task("purchase", "binary"), Task("rating", "regression"), Task("power", "multiclass", 5),
             Task("price_band", "multiclass", 5)]
    y, w = task_arrays(frame, tasks)
    assert w["power"].mean() == pytest.approx(frame["power"].notna().mean())
    assert w["rating"].sum() == frame["purchase"].sum()
    assert set(np.unique(y["price_band"][w["price_band"] > 0])) <= set(range(5))
    batch = next(iter(make_multitask_dataset(frame, spec, tasks, batch_size=64)))
    assert set(batch[0]) == set(SHOP_FEATURES)


# -- movielens_task_frame ---------------------------------------------------------------------------------


def _fake_movielens(n_users: int = 40, n_items: int = 30, n_ratings: int = 600) -> MovieLens100K:
    rng = np.random.default_rng(0)
    bands = ["<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"]
    groups = ["student", "tech & science", "education", "business & law", "health", "arts & media",
              "not working", "other"]
    users = pd.DataFrame({
        "user_id": np.arange(1, n_users + 1),
        "age_band": pd.Categorical(rng.choice(bands, n_users), categories=bands, ordered=True),
        "gender": pd.Categorical(rng.choice(["F", "M"], n_users)),
        "occupation_group": pd.Categorical(rng.choice(groups, n_users), categories=groups),
    })
    years = rng.integers(1930, 1999, n_items).astype(float)
    years[0] = np.nan
    items = pd.DataFrame({
        "item_id": np.arange(1, n_items + 1),
        "year": pd.array(years, dtype="Int64"),
        "genres": [list(rng.choice(GENRES[1:], rng.integers(1, 4), replace=False)) for _ in range(n_items)],
    })
    ratings = pd.DataFrame({
        "user_id": rng.integers(1, n_users + 1, n_ratings),
        "item_id": rng.integers(1, n_items + 1, n_ratings),
        "rating": rng.integers(1, 6, n_ratings),
        "timestamp": 880_000_000 + rng.integers(0, 90 * 86_400, n_ratings),
    })
    return MovieLens100K(ratings, users, items, None, "files", Path("."))


def test_movielens_task_frame() -> None:
    ml = _fake_movielens()
    frame = movielens_task_frame(ml, user_label_fraction=0.5, item_label_fraction=0.4, seed=2)
    assert len(frame) == len(ml.ratings)
    assert frame["timestamp"].is_monotonic_increasing and frame["day"].min() == 0
    assert set(ML_FEATURES) <= set(frame.columns) and len(ML_GENRE_COLUMNS) == len(GENRES) == 19
    users = ml.users.set_index("user_id")
    labelled = frame.loc[frame["age_band"].notna(), "user_id"].unique()
    assert len(labelled) <= 20 and frame.groupby("user_id")["age_band"].apply(lambda s: s.isna().nunique() == 1).all()
    want_age = users["age_band"].cat.codes.reindex(frame["user_id"]).to_numpy()
    got = frame["age_band"].to_numpy(dtype=float, na_value=np.nan)
    known = ~np.isnan(got)
    np.testing.assert_array_equal(got[known], want_age[known])
    np.testing.assert_array_equal(frame["age_band"].isna(), frame["occupation"].isna())
    genres = ml.genre_matrix().reindex(frame["item_id"]).to_numpy()
    block = frame[list(ML_GENRE_COLUMNS)].to_numpy()
    has = ~np.isnan(block).any(axis=1)
    np.testing.assert_array_equal(block[has], genres[has])
    assert np.isnan(block[~has]).all() and frame.loc[has, "item_id"].nunique() <= 12
    np.testing.assert_array_equal(frame["gender"], (users["gender"].reindex(frame["user_id"]) == "M").to_numpy())
    assert frame.loc[frame["item_id"] == 1, "decade"].isna().all()
    task = Task("genres", "multilabel", n_classes=19, label=ML_GENRE_COLUMNS)
    _, w = task_arrays(frame, [task])
    np.testing.assert_array_equal(w["genres"] > 0, has)


# -- evaluation ------------------------------------------------------------------------------------------


def test_entity_predictions_average_rows() -> None:
    ids = np.array([5, 2, 5, 2, 9])
    probs = np.array([[0.2, 0.8], [1.0, 0.0], [0.6, 0.4], [0.5, 0.5], [0.3, 0.7]])
    table = entity_predictions(ids, probs)
    assert table.index.tolist() == [2, 5, 9]
    np.testing.assert_allclose(table.to_numpy(), [[0.75, 0.25], [0.4, 0.6], [0.3, 0.7]])
    assert entity_predictions(ids, probs[:, 1]).shape == (3, 1)
    with pytest.raises(ValueError, match="one row per id"):
        entity_predictions(ids[:4], probs)
    with pytest.raises(ValueError, match="NaN"):
        entity_predictions(ids, np.where(probs > 0.9, np.nan, probs))


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_class_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 300)
    probs = rng.dirichlet(np.ones(5), 300)  # class 4 is predicted but never true
    got = class_metrics(y, probs)
    predicted = probs.argmax(axis=1)
    assert got["accuracy"] == pytest.approx(accuracy_score(y, predicted))
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, predicted))
    assert got["macro_f1"] == pytest.approx(f1_score(y, predicted, average="macro"))
    with pytest.raises(ValueError, match="n_classes"):
        class_metrics(y, probs[:10])


def test_entity_class_metrics_scores_hidden_entities_only() -> None:
    ids = np.array([0, 0, 1, 2, 2, 3])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6], [0.45, 0.55], [0.6, 0.4]])
    truth = pd.Series([0, 0, 1, 1])
    hidden = pd.Series([True, False, True, True])
    got = entity_class_metrics(ids, probs, truth, among=hidden)
    assert got["n"] == 3 and got["accuracy"] == pytest.approx(2 / 3)
    assert entity_class_metrics(ids, probs, truth)["accuracy"] == pytest.approx(0.5)
    with pytest.raises(KeyError, match="no value"):
        entity_class_metrics(ids, probs, truth.iloc[:2])
    with pytest.raises(ValueError, match="no entity left"):
        entity_class_metrics(ids, probs, truth, among=np.zeros(4, bool))


def test_entity_multilabel_auc() -> None:
    rng = np.random.default_rng(2)
    truth = pd.DataFrame(rng.integers(0, 2, (40, 3)), index=np.arange(100, 140))
    truth[2] = 0  # a label with one class only is skipped by the macro AUC
    ids = np.repeat(truth.index.to_numpy(), 2)
    scores = np.clip(truth.reindex(ids).to_numpy() * 0.3 + rng.random((80, 3)), 0, 1)
    got = entity_multilabel_auc(ids, scores, truth)
    mean = entity_predictions(ids, scores).to_numpy()
    want = np.mean([roc_auc_score(truth[k], mean[:, k]) for k in (0, 1)])
    assert got["macro_auc"] == pytest.approx(want) and got["n"] == 40
    assert got["micro_auc"] == pytest.approx(roc_auc_score(truth.to_numpy().ravel(), mean.ravel()))
    among = pd.Series(np.arange(40) < 10, index=truth.index)
    assert entity_multilabel_auc(ids, scores, truth, among=among)["n"] == 10


# -- models ----------------------------------------------------------------------------------------------


def test_layer_usage_tells_shared_from_private_layers() -> None:
    frame = pd.DataFrame({"a": np.arange(20) % 4, "b": np.arange(20) % 3})
    spec = feature_spec(frame, categorical=["a", "b"], embedding_dim=2)
    tasks = [Task("x", "binary"), Task("y", "multiclass", 3)]
    model = shared_bottom_model(spec, tasks, bottom=(4,), tower=(3,))
    usage = layer_usage(model)
    assert usage.loc["a_embedding", "n_heads"] == 2 and usage.loc["bottom_dense_1", "used by"] == "x, y"
    assert usage.loc["tower_y_dense_1", "used by"] == "y" and usage.loc["head_x", "n_heads"] == 1
    assert usage["params"].sum() == model.count_params()
    assert "a_lookup" not in usage.index, "layers without weights are not listed"


def test_epoch_timer_measures_after_the_first_epoch() -> None:
    frame = pd.DataFrame({"a": np.arange(64) % 4, "x": (np.arange(64) % 2).astype("int8")})
    spec = feature_spec(frame, categorical=["a"], embedding_dim=2)
    tasks = [Task("x", "binary")]
    model = compile_model(shared_bottom_model(spec, tasks, bottom=(2,), tower=()), tasks)
    timer = EpochTimer()
    with pytest.raises(ValueError, match="no epoch"):
        timer.samples_per_s(64)
    model.fit(make_multitask_dataset(frame, spec, tasks, batch_size=16), epochs=3, verbose=0, callbacks=[timer],
              shuffle=False)
    assert len(timer.seconds) == 3 and all(s > 0 for s in timer.seconds)
    assert timer.samples_per_s(64) == pytest.approx(128 / sum(timer.seconds[1:]))
    assert isinstance(timer, keras.callbacks.Callback)


def test_hold_out_entities_moves_labels_of_some_entities_to_validation() -> None:
    from utils.shop_tasks import hold_out_entities

    train = pd.DataFrame({"user_id": [0, 0, 1, 2, 3, 4, 5], "power": pd.array([1, 1, 2, pd.NA, 0, 3, 4], "Int8")})
    valid = pd.DataFrame({"user_id": [0, 1, 3, 4, 6], "power": pd.array([1, 2, 0, 3, 2], "Int8")})
    new_train, new_valid = hold_out_entities(train, valid, "power", "user_id", fraction=0.4, seed=1)
    held = set(new_train.loc[new_train["power"].isna() & train["power"].notna(), "user_id"])
    assert len(held) == 2  # 40% of the five labelled users
    assert set(new_valid.loc[new_valid["power"].notna(), "user_id"]) == held & set(valid["user_id"])
    assert train["power"].notna().sum() == 6  # the inputs are left as they were
    again = hold_out_entities(train, valid, "power", "user_id", fraction=0.4, seed=1)
    pd.testing.assert_frame_equal(again[0], new_train)
    genres = pd.DataFrame({"item_id": [0, 1, 2], "a": [1.0, 0.0, 1.0], "b": [0.0, 1.0, 1.0]})
    g_train, g_valid = hold_out_entities(genres, genres, ["a", "b"], "item_id", fraction=0.34, seed=0)
    assert g_train[["a", "b"]].isna().all(axis=1).sum() == 1 and g_valid[["a", "b"]].notna().all(axis=1).sum() == 1
    with pytest.raises(ValueError, match="fraction"):
        hold_out_entities(train, valid, "power", "user_id", fraction=1.0)
    with pytest.raises(KeyError, match="band"):
        hold_out_entities(train, valid, "band", "user_id")


def test_score_shop_tasks_and_paired_errors() -> None:
    from utils.shop_tasks import paired_errors, score_shop_tasks

    rng = np.random.default_rng(0)
    n = 600
    rows = pd.DataFrame({"user_id": rng.integers(0, 60, n), "item_id": rng.integers(0, 40, n),
                         "purchase": (rng.random(n) < 0.2).astype(int)})
    rows["rating"] = np.where(rows["purchase"] == 1, rng.integers(1, 6, n), np.nan)
    true_power = pd.Series(rng.integers(0, 5, 60))
    true_band = pd.Series(rng.integers(0, 5, 40))
    hidden_users, hidden_items = pd.Series(np.arange(60) % 2 == 0), pd.Series(np.arange(40) % 2 == 0)
    good = {"purchase": rows["purchase"] + rng.random(n), "rating": rows["rating"].fillna(3),
            "power": np.eye(5)[true_power[rows["user_id"]].to_numpy()], "price_band": rng.random((n, 5))}
    bad = {**good, "purchase": rng.random(n), "power": rng.random((n, 5))}
    a = score_shop_tasks(good, rows, hidden_users, hidden_items, true_power, true_band)
    b = score_shop_tasks(bad, rows, hidden_users, hidden_items, true_power, true_band)
    assert a.metrics["power_accuracy"] == 1.0 and a.metrics["rating_rmse"] == 0.0
    assert len(a.units["power_accuracy"]) == 30  # the hidden users only
    assert a.units["power_balanced_accuracy"].mean() == pytest.approx(a.metrics["power_balanced_accuracy"])
    assert a.metrics["purchase_auc"] > b.metrics["purchase_auc"]
    errors = paired_errors(a, b, rows, n_boot=50, seed=0)
    assert set(errors) == set(a.metrics)
    assert errors["rating_rmse"] == 0.0  # the same ratings: no difference to vary
    assert errors["purchase_auc"] > 0 and errors["power_accuracy"] > 0
