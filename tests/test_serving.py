"""Serving: the signature of raw features, the SavedModel export, scoring in a fresh process, latency."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from utils import fusion, serving
from utils.models import feature_arrays, feature_spec
from utils.ranker import build_ranker


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame({"user_id": rng.integers(0, 30, n), "age_band": pd.array(rng.integers(0, 6, n), dtype="Int8"),
                          "item_id": rng.integers(0, 20, n), "price": rng.lognormal(2, 1, n)})
    frame.loc[::7, "age_band"] = pd.NA
    spec = feature_spec(frame, categorical=["user_id", "age_band", "item_id"], log_numeric=["price"], embedding_dim=3)
    keras.utils.set_random_seed(0)
    from utils.models import Task, compile_model, shared_bottom_model

    tasks = [Task("click", "binary"), Task("purchase", "binary")]
    model = compile_model(shared_bottom_model(spec, tasks, bottom=(8,), tower=(4,)), tasks)
    return model, feature_arrays(frame, spec)


def test_signature_takes_raw_features_of_any_batch_size(setup) -> None:
    model, _ = setup
    signature = serving.serving_signature(model)
    assert set(signature) == {"user_id", "age_band", "item_id", "price"}
    assert signature["user_id"].dtype == tf.int64 and signature["price"].dtype == tf.float32
    assert all(s.shape.as_list() == [None] for s in signature.values())


def test_serving_function_matches_model_and_fusion(setup) -> None:
    model, x = setup
    serve = serving.make_serving_function(model, beta=0.5, gamma=0.25)
    out = serve({k: tf.constant(v) for k, v in x.items()})
    pred = model.predict(x, verbose=0)
    np.testing.assert_allclose(out["p_click"].numpy(), pred["click"].ravel(), rtol=1e-6, atol=1e-7)
    want = fusion.fused_score(pred["click"], pred["purchase"], x["price"], 0.5, 0.25)
    np.testing.assert_allclose(out["score"].numpy(), want, rtol=1e-5, atol=1e-5)


def test_export_and_fresh_process(setup, tmp_path) -> None:
    model, x = setup
    path = serving.export_saved_model(model, serving.make_serving_function(model, 1.0, 0.0), tmp_path / "saved")
    loaded = tf.saved_model.load(str(path)).signatures["serving_default"]
    in_process = loaded(**{k: tf.constant(v) for k, v in x.items()})
    outputs, latency, info = serving.score_in_fresh_process(path, x, batch_sizes=(1, 64), repeats=2)
    np.testing.assert_allclose(outputs["p_click"], in_process["p_click"].numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(outputs["score"], in_process["score"].numpy(), rtol=1e-6, atol=1e-6)
    assert list(latency.index) == [1, 64] and list(latency.columns) == ["best_ms", "median_ms", "p90_ms"]
    assert (latency["best_ms"] > 0).all()
    assert info["rows"] == len(x["price"]) and info["process_s"] > info["load_s"] > 0


def test_latency_table(setup) -> None:
    model, x = setup
    serve = serving.make_serving_function(model)
    table = serving.latency_table(serve, x, batch_sizes=(1, 16), repeats=3, warmup=1)
    assert list(table.columns) == ["best_ms", "median_ms", "p90_ms"]
    assert (table["p90_ms"] >= table["median_ms"]).all() and (table["median_ms"] >= table["best_ms"]).all()
    with pytest.raises(ValueError, match="batch size"):
        serving.latency_table(serve, x, batch_sizes=(10_000,))


def test_bad_input(setup, tmp_path) -> None:
    model, x = setup
    with pytest.raises(ValueError, match="no output"):
        serving.make_serving_function(model, ctr_output="ctr")
    with pytest.raises(ValueError, match="no input 'cost'"):
        serving.make_serving_function(model, gamma=1.0, price_feature="cost")
    with pytest.raises(TypeError, match="tf.function"):
        serving.export_saved_model(model, lambda f: f, tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no SavedModel"):
        serving.score_in_fresh_process(tmp_path, x)
    assert serving.main(["score", "--model", str(tmp_path / "missing"), "--features", "x.npz", "--out", "y.npz"]) == 2


def test_the_lessons_ranker_has_the_outputs_serving_expects() -> None:
    spec = feature_spec(pd.DataFrame({"user_id": [1, 2], "price": [1.0, 2.0]}), categorical=["user_id"],
                        log_numeric=["price"])
    serving.make_serving_function(build_ranker(spec), 1.0, 0.5)  # click and purchase heads, a price input
