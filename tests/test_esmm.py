"""ESMM multiplies probabilities, trains on exactly BCE(click) + BCE(purchase as CTCVR), leaves the CVR
output without a loss of its own, refuses non-funnel labels, round-trips for every bottom, and trains under the
course's protocol (biases at the base rates, early stopping with the best weights restored)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from utils.esmm import BOTTOMS, compile_esmm, esmm_dataset, esmm_model, init_esmm_biases, train_esmm
from utils.models import feature_arrays, feature_spec
from utils.shopsim import generate


@pytest.fixture(scope="module")
def funnel():
    frame = generate("tiny", seed=5, cvr=0.3).impressions.head(6000)
    spec = feature_spec(frame, categorical=["user_id", "item_id", "position"])
    return frame, spec


def _bce(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))


@pytest.mark.parametrize("bottom", BOTTOMS)
def test_ctcvr_is_the_product_of_probabilities_and_round_trips(bottom: str, funnel, tmp_path: Path) -> None:
    frame, spec = funnel
    model = compile_esmm(esmm_model(spec, bottom=bottom, tower=(8,), bottom_units=(16,), expert_units=(8,)))
    model.fit(esmm_dataset(frame, spec, 1024, shuffle=True, seed=1), epochs=1, verbose=0, shuffle=False)
    x = feature_arrays(frame.head(300), spec)
    p = model.predict(x, verbose=0)
    np.testing.assert_allclose(p["ctcvr"], p["ctr"] * p["cvr"], rtol=1e-6)
    assert ((p["cvr"] > 0) & (p["cvr"] < 1)).all()
    path = tmp_path / f"esmm_{bottom}.keras"
    model.save(path)
    again = keras.saving.load_model(path).predict(x, verbose=0)
    for name in p:
        np.testing.assert_allclose(again[name], p[name], rtol=1e-6, atol=1e-8)


def test_loss_is_click_bce_plus_ctcvr_bce(funnel) -> None:
    frame, spec = funnel
    model = compile_esmm(esmm_model(spec, tower=(8,)), ctcvr_weight=2.0)
    batch = frame.head(1024)
    result = model.evaluate(esmm_dataset(batch, spec, 1024), verbose=0, return_dict=True)
    p = model.predict(feature_arrays(batch, spec), verbose=0)
    click = batch["click"].to_numpy("float32")[:, None]
    purchase = batch["purchase"].to_numpy("float32")[:, None]
    want = _bce(click, p["ctr"]) + 2.0 * _bce(purchase, p["ctcvr"])
    assert result["loss"] == pytest.approx(want, rel=1e-4)


def test_cvr_tower_learns_only_through_the_product(funnel) -> None:
    frame, spec = funnel
    model = compile_esmm(esmm_model(spec, tower=(8,)))
    x, y, w = next(iter(esmm_dataset(frame.head(512), spec, 512)))
    assert float(np.sum(w["cvr"])) == 0.0  # the cvr target is a placeholder of weight 0
    cvr_head = model.get_layer("head_cvr").kernel
    with tf.GradientTape(persistent=True) as tape:
        out = model(x, training=True)
        ctr_only = keras.losses.binary_crossentropy(y["ctr"], out["ctr"])
        ctcvr = keras.losses.binary_crossentropy(y["ctcvr"], out["ctcvr"])
    assert tape.gradient(ctr_only, cvr_head) is None  # the click loss does not reach the CVR tower
    assert float(tf.reduce_sum(tf.abs(tape.gradient(ctcvr, cvr_head)))) > 0


def test_bad_inputs_are_refused(funnel) -> None:
    frame, spec = funnel
    with pytest.raises(ValueError, match="bottom must be one of"):
        esmm_model(spec, bottom="mlp")
    with pytest.raises(ValueError, match="'purchase' column"):
        esmm_dataset(frame.drop(columns=["purchase"]), spec)
    broken = frame.copy()
    broken.loc[broken.index[0], ["click", "purchase"]] = [0, 1]
    with pytest.raises(ValueError, match="funnel"):
        esmm_dataset(broken, spec)
    plain = keras.Model(*(lambda i: (i, {"ctr": keras.layers.Dense(1)(i)}))(keras.Input((3,))))
    with pytest.raises(ValueError, match="not an ESMM model"):
        compile_esmm(plain)


def test_biases_start_pctcvr_at_the_click_and_buy_rate(funnel) -> None:
    frame, spec = funnel
    model = esmm_model(spec, tower=(8,))
    for layer in ("head_ctr", "head_cvr"):  # zero kernels: the outputs are the biases alone
        head = model.get_layer(layer)
        head.kernel.assign(np.zeros(head.kernel.shape, dtype="float32"))
    rates = init_esmm_biases(model, frame)
    clicked = frame[frame["click"] == 1]
    assert rates == {"ctr": pytest.approx(frame["click"].mean()), "cvr": pytest.approx(clicked["purchase"].mean())}
    p = model.predict(feature_arrays(frame.head(5), spec), verbose=0)
    np.testing.assert_allclose(p["ctr"], frame["click"].mean(), rtol=1e-4)
    np.testing.assert_allclose(p["ctcvr"], frame["purchase"].sum() / len(frame), rtol=1e-4)
    with pytest.raises(ValueError, match="purchases among them"):
        init_esmm_biases(model, frame.assign(purchase=0))


def test_train_esmm_stops_early_and_restores_the_best_ctcvr_weights(funnel) -> None:
    frame, spec = funnel
    train_rows, valid_rows = frame.iloc[:4000], frame.iloc[4000:]
    keras.utils.set_random_seed(3)
    model = esmm_model(spec, tower=(8,))
    result = train_esmm(model, spec, train_rows, valid_rows, batch_size=512, seed=3, learning_rate=3e-2,
                        max_epochs=6, patience=1)
    assert {"val_ctcvr_log_loss", "val_ctr_log_loss"} <= set(result.history.columns)
    assert 1 <= result.best_epoch["val_ctcvr_log_loss"] <= result.epochs_run <= 6
    best = result.history["val_ctcvr_log_loss"].min()
    again = model.evaluate(esmm_dataset(valid_rows, spec, 8192), verbose=0, return_dict=True)
    assert again["ctcvr_log_loss"] == pytest.approx(best, rel=1e-5)
