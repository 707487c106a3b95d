"""Tests of the model builders: features fitted on train, task kinds, sharing, masking, saving, errors."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from utils import models
from utils.models import (
    MISSING_ID,
    Task,
    build_inputs,
    compile_model,
    feature_arrays,
    feature_spec,
    make_multitask_dataset,
    mlp,
    shared_bottom_model,
    single_task_model,
    task_arrays,
)
from utils.shopsim import generate
from utils.splits import temporal_split

CATEGORICAL = ["user_id", "item_id", "category_id", "position"]
SMALL = {"embedding_dim": 4}


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Tiny ShopSim impressions joined with item and user columns, split by time."""
    data = generate(scale="tiny", seed=0, n_users=2_000)
    items = data.items[["item_id", "category_id", "brand_id", "price", "price_band"]]
    users = data.users[["user_id", "age_band", "city_tier"]]
    log = data.impressions.merge(items, on="item_id", how="left").merge(users, on="user_id", how="left")
    log["genres"] = [np.array([p % 2, (p // 2) % 2, int(p > 5)]) for p in log["position"]]
    return temporal_split(log, valid_days=5, test_days=3)


@pytest.fixture(scope="module")
def spec(frames: tuple[pd.DataFrame, ...]) -> models.FeatureSpec:
    return feature_spec(frames[0], categorical=CATEGORICAL, log_numeric=["price"], **SMALL)


def _tiny_model(spec: models.FeatureSpec, tasks: list[Task]) -> keras.Model:
    return compile_model(shared_bottom_model(spec, tasks, bottom=(16,), tower=(8,)), tasks)


# -- feature spec ----------------------------------------------------------------------------------


def test_spec_is_fitted_on_train_only(frames: tuple[pd.DataFrame, ...], spec: models.FeatureSpec) -> None:
    train, valid, _ = frames
    unseen = np.setdiff1d(valid["user_id"].unique(), train["user_id"].unique())
    assert len(unseen) >= 2, "the temporal split should leave users seen only in validation"
    user = spec["user_id"]
    assert set(user.vocabulary) == set(train["user_id"].unique()) and user.input_dim == len(user.vocabulary) + 1
    price = spec["price"]
    inputs, representation = build_inputs(spec)
    assert list(inputs) == spec.names and representation.shape[-1] == sum(f.width for f in spec)
    assert price.log and price.mean == pytest.approx(np.log1p(train["price"].to_numpy(np.float64)).mean())

    model = single_task_model(spec, Task("click", "binary"), hidden=(4,))
    seen = int(train["user_id"].iloc[0])
    ids = np.array([unseen[0], unseen[1], seen, MISSING_ID], dtype=np.int64)
    indices = np.asarray(model.get_layer("user_id_lookup")(ids))
    assert list(indices[[0, 1, 3]]) == [0, 0, 0], "ids unseen in train (and missing ids) map to the OOV slot 0"
    assert indices[2] > 0
    vectors = np.asarray(model.get_layer("user_id_embedding")(indices))
    np.testing.assert_array_equal(vectors[0], vectors[1])


def test_min_count_and_hashing(frames: tuple[pd.DataFrame, ...]) -> None:
    train = frames[0]
    counts = train["item_id"].value_counts()
    spec = feature_spec(train, categorical=["item_id"], hashed={"user_id": 64}, min_count=3)
    assert set(spec["item_id"].vocabulary) == set(counts[counts >= 3].index)
    assert spec["user_id"].kind == "hashed" and spec["user_id"].input_dim == 64
    assert {"item_id", "user_id"} <= set(spec.summary().index)
    assert spec.select(["user_id"]).names == ["user_id"]


def test_nullable_categorical_reads_missing_as_oov(frames: tuple[pd.DataFrame, ...]) -> None:
    train = frames[0]
    assert train["age_band"].isna().any()
    spec = feature_spec(train, categorical=["age_band"])
    assert MISSING_ID not in spec["age_band"].vocabulary
    x = feature_arrays(train, spec)
    assert x["age_band"].dtype == np.int64 and (x["age_band"][train["age_band"].isna().to_numpy()] == MISSING_ID).all()


# -- tasks and single-task models ------------------------------------------------------------------


def _round_trip(model: keras.Model, x: dict[str, np.ndarray], path: Path) -> None:
    before = model.predict(x, verbose=0)
    model.save(path)
    loaded = keras.models.load_model(path)
    after = loaded.predict(x, verbose=0)
    assert set(after) == set(before)
    for name in before:
        np.testing.assert_allclose(after[name], before[name], atol=1e-6, rtol=0)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]


def _raw_inputs_with_unseen_ids(frames: tuple[pd.DataFrame, ...], spec: models.FeatureSpec) -> dict:
    x = feature_arrays(frames[2].head(200), spec)
    x["user_id"][:5] = 10_000_000
    x["item_id"][5:10] = MISSING_ID
    x["price"][10:15] = [0.0, 0.5, 1e4, 3.0, 123.45]
    return x


KIND_TASKS = {
    "binary": Task("click", "binary"),
    "multiclass": Task("price_band", "multiclass", n_classes=5),
    "multilabel": Task("genres", "multilabel", n_classes=3),
    "regression": Task("rating", "regression"),
}


@pytest.mark.parametrize("kind", sorted(KIND_TASKS))
def test_single_task_model_per_kind_trains_saves_and_loads(kind: str, frames: tuple[pd.DataFrame, ...],
                                                           spec: models.FeatureSpec, tmp_path: Path) -> None:
    task = KIND_TASKS[kind]
    model = compile_model(single_task_model(spec, task, hidden=(8,)), [task])
    head = model.get_layer(f"head_{task.name}")
    assert head.activation.__name__ == {"binary": "sigmoid", "multiclass": "softmax", "multilabel": "sigmoid",
                                        "regression": "linear"}[kind]
    assert task.loss == {"binary": "binary_crossentropy", "multiclass": "sparse_categorical_crossentropy",
                         "multilabel": "binary_crossentropy", "regression": "mean_squared_error"}[kind]
    assert [m.name for m in task.metrics()] == {"binary": ["auc", "log_loss"], "multiclass": ["accuracy"],
                                                "multilabel": ["log_loss"], "regression": ["rmse"]}[kind]
    logs = model.fit(make_multitask_dataset(frames[0].head(4000), spec, [task], 1000), epochs=1, verbose=0,
                     shuffle=False).history
    assert np.isfinite(logs["loss"][-1])

    x = _raw_inputs_with_unseen_ids(frames, spec)
    p = model.predict(x, verbose=0)[task.name]
    assert p.shape == (len(x["user_id"]), task.units)
    if kind in ("binary", "multilabel"):
        assert ((p > 0) & (p < 1)).all()
    if kind == "multiclass":
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    _round_trip(model, x, tmp_path / f"{kind}.keras")


def test_task_arrays_mask_missing_labels(frames: tuple[pd.DataFrame, ...]) -> None:
    train = frames[0]
    tasks = [Task("click", "binary"), Task("rating", "regression"), Task("age_band", "multiclass", n_classes=6),
             Task("cvr", "binary", label="purchase")]
    y, w = task_arrays(train, tasks)
    assert y["click"].shape == (len(train), 1) and y["age_band"].dtype == np.int32
    for name, column in [("rating", "rating"), ("age_band", "age_band")]:
        missing = train[column].isna().to_numpy()
        assert missing.any() and not np.isnan(y[name]).any()
        assert (w[name][missing] == 0).all() and (w[name][~missing] == 1).all()
    assert (w["click"] == 1).all() and "cvr" in y
    _, normalised = task_arrays(train, tasks, weight=np.full(len(train), 2.0), normalise_masked=True)
    for name in ("rating", "age_band", "click"):
        assert normalised[name].mean() == pytest.approx(2.0, rel=1e-5)


# -- shared bottom ---------------------------------------------------------------------------------


def test_shared_bottom_shares_inputs_embeddings_and_bottom(frames: tuple[pd.DataFrame, ...],
                                                           spec: models.FeatureSpec) -> None:
    tasks = [Task("click", "binary"), Task("purchase", "binary")]
    model = _tiny_model(spec, tasks)
    names = [layer.name for layer in model.layers]
    assert sorted(n for n in names if n.endswith("_embedding")) == sorted(f"{c}_embedding" for c in CATEGORICAL)
    assert len(model.inputs) == len(spec)
    for name in ("bottom_dense_1", "tower_click_dense_1", "tower_purchase_dense_1", "head_click", "head_purchase"):
        assert name in names
    out = model.predict(feature_arrays(frames[1].head(32), spec), verbose=0)
    assert set(out) == {"click", "purchase"} and out["purchase"].shape == (32, 1)

    batch = frames[0].head(512)
    x = feature_arrays(batch, spec)
    y = batch["purchase"].to_numpy(np.float32)[:, None]
    watched = {name: model.get_layer(name).trainable_weights[0]
               for name in ("user_id_embedding", "item_id_embedding", "bottom_dense_1", "tower_click_dense_1")}
    with tf.GradientTape() as tape:
        loss = keras.ops.mean(keras.losses.binary_crossentropy(y, model(x, training=True)["purchase"]))
    grads = dict(zip(watched, tape.gradient(loss, list(watched.values()))))
    for name in ("user_id_embedding", "item_id_embedding", "bottom_dense_1"):
        assert float(tf.norm(tf.convert_to_tensor(grads[name]))) > 0, f"the purchase loss must reach {name}"
    assert grads["tower_click_dense_1"] is None, "the purchase loss must not reach the click tower"


def test_mlp_layers_are_named_and_regularised() -> None:
    stack = mlp((8, 4), dropout=0.1, l2=1e-4, name="bottom")
    assert [layer.name for layer in stack.layers] == ["bottom_dense_1", "bottom_dropout_1", "bottom_dense_2",
                                                      "bottom_dropout_2"]
    x = keras.Input(shape=(3,))
    model = keras.Model(x, stack(x))
    model(np.ones((2, 3), np.float32))
    assert len(model.losses) == 2


# -- masking ---------------------------------------------------------------------------------------


def _garbage(y: dict[str, np.ndarray], w: dict[str, np.ndarray], tasks: list[Task], seed: int) -> dict:
    """Labels with the masked rows replaced by random (valid) values."""
    rng = np.random.default_rng(seed)
    out = {}
    for task in tasks:
        values = y[task.name].copy()
        masked = w[task.name] == 0
        shape = values[masked].shape
        if task.kind == "multiclass":
            values[masked] = rng.integers(0, task.units, size=shape)
        elif task.kind == "regression":
            values[masked] = rng.normal(0.0, 1e3, size=shape)
        else:
            values[masked] = rng.integers(0, 2, size=shape)
        out[task.name] = values
    return out


def test_masked_labels_do_not_change_loss_gradients_or_metrics(frames: tuple[pd.DataFrame, ...],
                                                                spec: models.FeatureSpec) -> None:
    """Labels under weight 0 replaced by two kinds of garbage: Keras's compiled loss, its gradients and
    the evaluated metrics are bit-for-bit the same; given weight 1, the same garbage changes them."""
    frame = frames[0].head(2000)
    tasks = [Task("click", "binary"), Task("rating", "regression"), Task("price_band", "multiclass", n_classes=5),
             Task("genres", "multilabel", n_classes=3)]
    x = feature_arrays(frame, spec)
    y, w = task_arrays(frame.assign(genres=[g if i % 3 else None for i, g in enumerate(frame["genres"])]), tasks)
    assert all((w[t.name] == 0).any() for t in tasks[1:])
    keras.utils.set_random_seed(0)
    model = _tiny_model(spec, tasks)

    def loss_and_gradients(labels: dict, weights: dict) -> tuple[float, list[np.ndarray]]:
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = model.compute_loss(x=x, y=labels, y_pred=y_pred, sample_weight=weights)
        grads = tape.gradient(loss, model.trainable_weights)
        return float(loss), [np.asarray(tf.convert_to_tensor(g)) for g in grads]

    garbage = [_garbage(y, w, tasks, seed) for seed in (1, 2)]
    (loss_a, grads_a), (loss_b, grads_b) = (loss_and_gradients(g, w) for g in garbage)
    assert loss_a == loss_b
    for a, b in zip(grads_a, grads_b):
        np.testing.assert_array_equal(a, b)
    unmasked = {name: np.ones_like(v) for name, v in w.items()}
    assert loss_and_gradients(garbage[0], unmasked)[0] != loss_and_gradients(garbage[1], unmasked)[0]

    logs = [model.evaluate(tf.data.Dataset.from_tensor_slices((x, g, w)).batch(500), verbose=0, return_dict=True)
            for g in garbage]
    assert logs[0] == logs[1], "losses and (weighted) metrics ignore masked rows exactly"


def test_keras_loss_is_a_mean_over_the_batch_and_normalise_fixes_it(frames: tuple[pd.DataFrame, ...],
                                                                     spec: models.FeatureSpec) -> None:
    frame = frames[0].head(4000)
    task = Task("rating", "regression")
    model = compile_model(single_task_model(spec, task, hidden=(8,)), [task])
    pred = model.predict(feature_arrays(frame, spec), verbose=0)["rating"].ravel()
    labelled = frame["rating"].notna().to_numpy()
    mean_over_labelled = float(np.mean((pred[labelled] - frame["rating"].to_numpy()[labelled]) ** 2))
    fraction = labelled.mean()
    for normalise, expected in [(False, fraction * mean_over_labelled), (True, mean_over_labelled)]:
        data = make_multitask_dataset(frame, spec, [task], batch_size=len(frame), normalise_masked=normalise)
        logs = model.evaluate(data, verbose=0, return_dict=True)
        assert logs["loss"] == pytest.approx(expected, rel=1e-4)
        assert logs["rmse"] == pytest.approx(np.sqrt(mean_over_labelled), rel=1e-4), "RMSE over labelled rows"


# -- the pipeline ----------------------------------------------------------------------------------


def test_dataset_dtypes_order_and_shuffle(frames: tuple[pd.DataFrame, ...], spec: models.FeatureSpec) -> None:
    frame = frames[0].head(1000)
    tasks = [Task("click", "binary"), Task("rating", "regression")]
    data = make_multitask_dataset(frame, spec, tasks, batch_size=300)
    assert data.cardinality().numpy() == 4
    assert not data.options().autotune.enabled, "the autotuner made every other epoch twice as slow on 2 cores"
    x, y, w = next(iter(data))
    assert x["user_id"].dtype == tf.int64 and x["price"].dtype == tf.float32 and set(x) == set(spec.names)
    assert y["click"].shape == (300, 1) and w["rating"].shape == (300,)
    np.testing.assert_array_equal(x["item_id"].numpy(), frame["item_id"].to_numpy()[:300])

    shuffled = make_multitask_dataset(frame, spec, tasks, batch_size=300, shuffle=True, seed=3)
    epoch_1 = np.concatenate([b[0]["user_id"].numpy() for b in shuffled])
    epoch_2 = np.concatenate([b[0]["user_id"].numpy() for b in shuffled])
    again = np.concatenate([b[0]["user_id"].numpy()
                            for b in make_multitask_dataset(frame, spec, tasks, 300, shuffle=True, seed=3)])
    np.testing.assert_array_equal(np.sort(epoch_1), np.sort(frame["user_id"].to_numpy()))
    assert not np.array_equal(epoch_1, epoch_2), "a new order each epoch"
    np.testing.assert_array_equal(epoch_1, again)
    features_only = next(iter(make_multitask_dataset(frame, spec, batch_size=10)))
    assert isinstance(features_only, dict) and features_only["position"].shape == (10,)


def test_model_accepts_int32_ids(frames: tuple[pd.DataFrame, ...], spec: models.FeatureSpec) -> None:
    model = single_task_model(spec, Task("click", "binary"), hidden=(4,))
    x = feature_arrays(frames[1].head(16), spec)
    narrow = {k: v.astype(np.int32) if v.dtype == np.int64 else v for k, v in x.items()}
    np.testing.assert_allclose(model.predict(narrow, verbose=0)["click"], model.predict(x, verbose=0)["click"])


# -- saving ----------------------------------------------------------------------------------------


def test_shared_bottom_save_load_predict(frames: tuple[pd.DataFrame, ...], tmp_path: Path) -> None:
    spec = feature_spec(frames[0], categorical=CATEGORICAL, log_numeric=["price"],
                        hashed={"brand_id": 32}, embedding_dim={"user_id": 8, "item_id": 4})
    tasks = [Task("click", "binary", loss_weight=1.0), Task("purchase", "binary", loss_weight=2.0),
             Task("price_band", "multiclass", n_classes=5), Task("rating", "regression", loss_weight=0.1)]
    model = compile_model(shared_bottom_model(spec, tasks, bottom=(16,), tower={"click": (8,), "rating": ()},
                                              dropout=0.1, l2=1e-5), tasks)
    model.fit(make_multitask_dataset(frames[0].head(2000), spec, tasks, 1000), epochs=1, verbose=0, shuffle=False)
    x = _raw_inputs_with_unseen_ids(frames, spec)
    x["brand_id"][:3] = 987_654
    _round_trip(model, x, tmp_path / "shared_bottom.keras")


# -- errors ----------------------------------------------------------------------------------------


def test_bad_inputs_give_clear_errors(frames: tuple[pd.DataFrame, ...], spec: models.FeatureSpec) -> None:
    train = frames[0]
    with pytest.raises(ValueError, match="unknown kind 'ranking'"):
        Task("click", "ranking")
    with pytest.raises(ValueError, match="multiclass task 'price_band' needs n_classes"):
        Task("price_band", "multiclass")
    with pytest.raises(ValueError, match="leave n_classes unset"):
        Task("click", "binary", n_classes=2)
    with pytest.raises(KeyError, match="shop_rank"):
        feature_spec(train, categorical=["user_id", "shop_rank"])
    with pytest.raises(KeyError, match="item_id"):
        make_multitask_dataset(train.drop(columns="item_id"), spec, [Task("click", "binary")])
    with_nan = train.assign(price=train["price"].where(train.index % 7 != 0))
    with pytest.raises(ValueError, match="numeric feature 'price'.*missing"):
        feature_spec(with_nan, log_numeric=["price"])
    with pytest.raises(ValueError, match="numeric feature 'price'.*missing"):
        make_multitask_dataset(with_nan, spec, [Task("click", "binary")])
    with pytest.raises(ValueError, match="negative"):
        feature_spec(train.assign(price=-train["price"]), log_numeric=["price"])
    with pytest.raises(TypeError, match="categorical feature 'domain'"):
        feature_spec(train, categorical=["domain"])
    with pytest.raises(ValueError, match="both a feature and a label"):
        make_multitask_dataset(train, spec, [Task("position", "multiclass", n_classes=11)])
    with pytest.raises(KeyError, match="task 'cvr'"):
        task_arrays(train, [Task("cvr", "binary")])
    with pytest.raises(ValueError, match="integer labels in 0..2"):
        task_arrays(train, [Task("price_band", "multiclass", n_classes=3)])
    with pytest.raises(ValueError, match="0/1 labels"):
        task_arrays(train, [Task("rating", "binary")])
    with pytest.raises(ValueError, match="used more than once"):
        shared_bottom_model(spec, [Task("click", "binary"), Task("click", "regression")])
    model = single_task_model(spec, Task("click", "binary"), hidden=(4,))
    with pytest.raises(ValueError, match=r"no output\(s\) \['purchase'\]"):
        compile_model(model, [Task("purchase", "binary")])


# -- learning --------------------------------------------------------------------------------------


def test_trained_model_beats_a_constant_click_predictor(frames: tuple[pd.DataFrame, ...],
                                                        spec: models.FeatureSpec) -> None:
    train, valid, _ = frames
    keras.utils.set_random_seed(0)
    tasks = [Task("click", "binary"), Task("purchase", "binary")]
    model = compile_model(shared_bottom_model(spec, tasks, bottom=(32,), tower=(16,)), tasks, learning_rate=3e-3)
    model.fit(make_multitask_dataset(train, spec, tasks, 512, shuffle=True, seed=0), epochs=4, verbose=0,
              shuffle=False)
    p = model.predict(make_multitask_dataset(valid, spec, batch_size=4096), verbose=0)["click"].ravel()
    auc = roc_auc_score(valid["click"], p)
    assert auc > 0.58, f"click AUC {auc:.3f} is no better than a constant (0.5)"


# ------------------------------------------------------------------------------------------------
# The factorisation-machine term
# ------------------------------------------------------------------------------------------------

def test_pairwise_interaction_is_the_sum_over_pairs() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 4, 3)).astype("float32")
    got = keras.ops.convert_to_numpy(models.PairwiseInteraction()(x))
    want = sum(x[:, f] * x[:, g] for f in range(4) for g in range(f + 1, 4))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_interaction_model_trains_and_round_trips(frames: tuple[pd.DataFrame, ...], tmp_path: Path) -> None:
    train = frames[0]
    spec = feature_spec(train, categorical=["user_id", "item_id", "position"], log_numeric=["price"], embedding_dim=4)
    tasks = [Task("click", "binary"), Task("rating", "regression")]
    model = shared_bottom_model(spec, tasks, bottom=(4,), tower=(), interactions=["user_id", "item_id", "price"],
                                factors=3, factor_l2=1e-6)
    assert model.get_layer("user_id_factor").output.shape[-1] == 3
    assert model.get_layer("price_factor").kernel.shape == (1, 3)
    compile_model(model, tasks)
    model.fit(make_multitask_dataset(train.head(3000), spec, tasks, 1000), epochs=1, verbose=0)
    x = feature_arrays(frames[2].head(50), spec)
    before = model.predict(x, verbose=0)
    model.save(tmp_path / "fm.keras")
    after = keras.saving.load_model(tmp_path / "fm.keras").predict(x, verbose=0)
    for name in before:
        np.testing.assert_allclose(before[name], after[name], rtol=1e-6)
    assert ((before["click"] > 0) & (before["click"] < 1)).all()


def test_interaction_errors(frames: tuple[pd.DataFrame, ...]) -> None:
    spec = feature_spec(frames[0], categorical=["user_id", "item_id"], embedding_dim=2)
    click = Task("click", "binary")
    with pytest.raises(ValueError, match="not in the spec"):
        single_task_model(spec, click, interactions=["user_id", "brand_id"])
    with pytest.raises(ValueError, match="at least two"):
        single_task_model(spec, click, interactions=["user_id"])
    with pytest.raises(ValueError, match="FeatureSpec"):
        single_task_model(8, click, interactions=["a", "b"])
