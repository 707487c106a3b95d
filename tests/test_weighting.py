"""utils.weighting: uncertainty weighting, DWA and the multi-task loss model, with a save/load round trip."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from utils import losses
from utils.weighting import DynamicWeightAveraging, MultiTaskLossModel, UncertaintyWeighting, WeightHistory, dwa_weights

KINDS = {"click": "binary", "rating": "regression"}


def _data(n: int = 64) -> tuple[np.ndarray, dict, dict]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 5)).astype("float32")
    y = {"click": (rng.random((n, 1)) < 0.3).astype("float32"), "rating": rng.normal(4, 1, (n, 1)).astype("float32")}
    w = {"click": np.ones(n, "float32"), "rating": (rng.random(n) < 0.4).astype("float32")}
    return x, y, w


def _base() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5,))
    h = keras.layers.Dense(8, activation="relu")(inputs)
    return keras.Model(inputs, {"click": keras.layers.Dense(1, activation="sigmoid", name="click")(h),
                                "rating": keras.layers.Dense(1, name="rating")(h)})


def test_uncertainty_layer_matches_numpy_and_serialises() -> None:
    layer = UncertaintyWeighting(KINDS, initial_log_variance=0.3)
    total = float(layer({"click": np.float32(0.4), "rating": np.float32(1.2)}))
    assert total == pytest.approx(losses.uncertainty_weighted_loss([0.4, 1.2], [0.3, 0.3], ["binary", "regression"]))
    assert layer.task_weights() == pytest.approx({"click": np.exp(-0.3), "rating": 0.5 * np.exp(-0.3)})
    clone = UncertaintyWeighting.from_config(layer.get_config())
    assert clone.kinds == KINDS and clone.initial_log_variance == 0.3
    fast = UncertaintyWeighting(KINDS, initial_log_variance=0.3, learning_rate_multiplier=20.0)
    assert fast.task_weights() == pytest.approx(layer.task_weights())
    assert float(fast.log_variance_parameter.numpy()[0]) == pytest.approx(0.3 / 20)
    assert UncertaintyWeighting.from_config(fast.get_config()).learning_rate_multiplier == 20.0
    with pytest.raises(ValueError, match="multiplier"):
        UncertaintyWeighting(KINDS, learning_rate_multiplier=0.0)
    with pytest.raises(ValueError, match="unknown task kind"):
        UncertaintyWeighting({"click": "ordinal"})


def test_model_loss_equals_numpy_joint_loss() -> None:
    x, y, w = _data()
    model = MultiTaskLossModel(_base(), KINDS, loss_weights={"rating": 0.25})
    model.compile(keras.optimizers.Adam(1e-2))
    result = model.evaluate(x, y, sample_weight=w, batch_size=len(x), verbose=0, return_dict=True)
    pred = model.predict(x, verbose=0)
    want, parts = losses.joint_loss(y, pred, KINDS, w, {"rating": 0.25}, return_parts=True)
    assert result["loss"] == pytest.approx(want, abs=1e-6)
    assert result["rating_loss"] == pytest.approx(parts["rating"], abs=1e-6)
    with pytest.raises(ValueError, match="unknown task"):
        MultiTaskLossModel(_base(), KINDS, loss_weights={"purchase": 1.0})


def test_uncertainty_model_learns_log_variances_and_round_trips(tmp_path: Path) -> None:
    x, y, w = _data()
    model = MultiTaskLossModel(_base(), KINDS, weighting=UncertaintyWeighting(KINDS, learning_rate_multiplier=5.0))
    model.compile(keras.optimizers.Adam(5e-2))
    history = WeightHistory()
    model.fit(x, y, sample_weight=w, epochs=3, batch_size=16, verbose=0, callbacks=[history])
    assert len(history.weights) == 4 and history.weights[0] == pytest.approx({"click": 1.0, "rating": 0.5})
    assert history.weights[-1] != pytest.approx(history.weights[0])
    path = tmp_path / "uw.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, MultiTaskLossModel) and isinstance(loaded.weighting, UncertaintyWeighting)
    assert loaded.task_weights() == pytest.approx(model.task_weights())
    assert loaded.weighting.learning_rate_multiplier == 5.0
    np.testing.assert_allclose(loaded.predict(x, verbose=0)["rating"], model.predict(x, verbose=0)["rating"])
    assert loaded.evaluate(x, y, sample_weight=w, verbose=0, batch_size=64) == pytest.approx(
        model.evaluate(x, y, sample_weight=w, verbose=0, batch_size=64), rel=1e-5)


def test_dwa_weights() -> None:
    assert dwa_weights([{"a": 1.0, "b": 2.0}]) == {"a": 1.0, "b": 1.0}
    w = dwa_weights([{"a": 1.0, "b": 1.0}, {"a": 0.5, "b": 1.0}], temperature=2.0)
    assert sum(w.values()) == pytest.approx(2.0)
    assert w["b"] > w["a"]  # b stopped improving: it gets more weight
    assert w["b"] == pytest.approx(2 * np.exp(0.5) / (np.exp(0.25) + np.exp(0.5)))
    with pytest.raises(ValueError, match="temperature"):
        dwa_weights([{"a": 1.0}], temperature=0)


def test_dwa_callback_sets_the_model_weights(tmp_path: Path) -> None:
    x, y, w = _data()
    model = MultiTaskLossModel(_base(), KINDS)
    model.compile(keras.optimizers.Adam(1e-2))
    dwa, history = DynamicWeightAveraging(), WeightHistory()
    model.fit(x, y, sample_weight=w, epochs=4, batch_size=16, verbose=0, callbacks=[dwa, history])
    assert len(dwa.loss_history) == 4
    assert history.weights[1] == {"click": 1.0, "rating": 1.0}
    assert history.weights[-1] == pytest.approx(dwa_weights(dwa.loss_history), rel=1e-6)
    model.save(tmp_path / "dwa.keras")
    assert keras.saving.load_model(tmp_path / "dwa.keras").task_weights() == pytest.approx(model.task_weights())
