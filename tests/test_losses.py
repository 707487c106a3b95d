"""utils.losses: the NumPy joint loss equals Keras's losses, and the closed-form gradient equals autodiff."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from utils import losses


@pytest.fixture()
def batch() -> dict:
    rng = np.random.default_rng(0)
    n = 50
    return {
        "y_bin": (rng.random((n, 1)) < 0.3).astype(float),
        "p_bin": rng.uniform(0.01, 0.99, (n, 1)),
        "y_cls": rng.integers(0, 4, n),
        "p_cls": rng.dirichlet(np.ones(4), n),
        "y_reg": rng.normal(3, 1, (n, 1)),
        "f_reg": rng.normal(3, 1, (n, 1)),
        "w_bin": rng.uniform(0, 2, n),
        "w_cls": (rng.random(n) < 0.6).astype(float),
        "w_reg": (rng.random(n) < 0.2).astype(float),
    }


def test_per_task_losses_match_keras(batch: dict) -> None:
    pairs = [
        (keras.losses.BinaryCrossentropy(dtype="float64"), "binary", batch["y_bin"], batch["p_bin"], batch["w_bin"]),
        (keras.losses.SparseCategoricalCrossentropy(dtype="float64"), "multiclass", batch["y_cls"], batch["p_cls"], batch["w_cls"]),
        (keras.losses.MeanSquaredError(dtype="float64"), "regression", batch["y_reg"], batch["f_reg"], batch["w_reg"]),
    ]
    for keras_loss, kind, y, p, w in pairs:
        want = float(keras_loss(y, p, sample_weight=w))
        assert losses.task_loss(kind, y, p, w) == pytest.approx(want, rel=1e-12, abs=1e-12), kind
        assert losses.task_loss(kind, y, p) == pytest.approx(float(keras_loss(y, p)), rel=1e-12), kind


def test_reduction_counts_masked_rows_in_the_batch_size() -> None:
    values, mask = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 1.0, 0.0, 0.0])
    assert losses.reduce_weighted(values, mask) == pytest.approx(3.0 / 4)
    assert losses.reduce_weighted(values, mask, "mean_with_sample_weight") == pytest.approx(1.5)
    assert losses.reduce_weighted(values, mask, "sum") == pytest.approx(3.0)
    with pytest.raises(ValueError, match="reduction"):
        losses.reduce_weighted(values, mask, "median")
    with pytest.raises(ValueError, match="sample weights"):
        losses.reduce_weighted(values, [1.0, 2.0])


def test_joint_loss_matches_a_compiled_keras_model(batch: dict) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(len(batch["y_bin"]), 6))
    inputs = keras.Input((6,), dtype="float64")
    outputs = {
        "click": keras.layers.Dense(1, activation="sigmoid", dtype="float64", name="click")(inputs),
        "category": keras.layers.Dense(4, activation="softmax", dtype="float64", name="category")(inputs),
        "rating": keras.layers.Dense(1, dtype="float64", name="rating")(inputs),
    }
    model = keras.Model(inputs, outputs)
    kinds = {"click": "binary", "category": "multiclass", "rating": "regression"}
    weights = {"click": 1.0, "category": 0.3, "rating": 2.0}
    model.compile(loss={"click": "binary_crossentropy", "category": "sparse_categorical_crossentropy",
                        "rating": "mean_squared_error"}, loss_weights=weights)
    y = {"click": batch["y_bin"], "category": batch["y_cls"], "rating": batch["y_reg"]}
    w = {"click": batch["w_bin"], "category": batch["w_cls"], "rating": batch["w_reg"]}
    result = model.evaluate(x, y, sample_weight=w, batch_size=len(x), verbose=0, return_dict=True)
    pred = model.predict(x, verbose=0)
    total, parts = losses.joint_loss(y, pred, kinds, w, weights, return_parts=True)
    assert total == pytest.approx(result["loss"], abs=1e-6)
    for task in kinds:
        assert parts[task] == pytest.approx(result[f"{task}_loss"], abs=1e-6)
    with pytest.raises(ValueError, match="unknown task"):
        losses.joint_loss(y, pred, kinds, loss_weights={"purchase": 1.0})


def test_masked_joint_log_loss_matrix_form_equals_joint_loss() -> None:
    rng = np.random.default_rng(2)
    y = (rng.random((30, 3)) < 0.4).astype(float)
    p = rng.uniform(0.05, 0.95, (30, 3))
    m = (rng.random((30, 3)) < 0.7).astype(float)
    c = np.array([1.0, 0.5, 2.0])
    want = sum(c[t] * losses.task_loss("binary", y[:, t], p[:, t], m[:, t]) for t in range(3))
    assert losses.masked_joint_log_loss(y, p, m, c) == pytest.approx(want)
    garbage = np.where(m == 1, y, 1 - y)  # a masked label's value must not matter
    assert losses.masked_joint_log_loss(garbage * m + y * (1 - m), p, m, c) == pytest.approx(
        losses.masked_joint_log_loss(y * m + (1 - y) * (1 - m), p, m, c))
    with pytest.raises(ValueError, match="NaN"):
        losses.masked_joint_log_loss(np.full((2, 1), np.nan), np.full((2, 1), 0.5), np.zeros((2, 1)))


def test_unlabelled_formula_is_minimised_by_certainty() -> None:
    assert losses.unlabelled_log_loss(np.full((4, 2), 0.999)) < losses.unlabelled_log_loss(np.full((4, 2), 0.5))
    assert losses.unlabelled_log_loss([1.0, 1.0]) == pytest.approx(0.0)


def test_gaussian_nll_is_squared_error_up_to_scale() -> None:
    y, f = np.array([1.0, 2.0, 4.0]), np.array([1.5, 2.0, 3.0])
    np.testing.assert_allclose(losses.gaussian_nll(y, f, 0.0), 0.5 * losses.squared_error(y, f))
    sigma = 2.0
    want = (y - f) ** 2 / (2 * sigma**2) + np.log(sigma) + 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(losses.gaussian_nll(y, f, np.log(sigma), constant=True), want)


def test_logistic_gradient_closed_form_autodiff_and_finite_differences() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(40, 5)), (rng.random(40) < 0.3).astype(float)
    w, b, s = rng.normal(size=5) * 0.5, 0.1, rng.uniform(0, 2, 40)
    dw, db = losses.logistic_head_gradient(x, y, w, b, s)
    wv, bv = tf.Variable(w), tf.Variable(b, dtype=tf.float64)
    bce = keras.losses.BinaryCrossentropy(from_logits=True, dtype="float64")
    with tf.GradientTape() as tape:
        loss = bce(y[:, None], tf.linalg.matvec(tf.constant(x), wv)[:, None] + bv, sample_weight=s)
    gw, gb = tape.gradient(loss, [wv, bv])
    np.testing.assert_allclose(dw, gw.numpy(), rtol=1e-10)
    assert db == pytest.approx(float(gb), rel=1e-10)

    def f(params: np.ndarray) -> float:
        p = 1 / (1 + np.exp(-(x @ params[:-1] + params[-1])))
        return losses.task_loss("binary", y, p, s)

    numeric = losses.finite_difference_gradient(f, np.r_[w, b])
    np.testing.assert_allclose(numeric, np.r_[dw, db], rtol=1e-6, atol=1e-9)


def test_uncertainty_weighted_loss_factors_and_minimum() -> None:
    assert losses.uncertainty_weighted_loss([2.0], [0.0], ["binary"]) == pytest.approx(2.0)
    assert losses.uncertainty_weighted_loss([2.0], [0.0], ["regression"]) == pytest.approx(1.0)
    grid = np.linspace(-3, 3, 6001)
    for kind, factor in (("binary", 1.0), ("regression", 0.5)):
        values = [losses.uncertainty_weighted_loss([0.3], [s], [kind]) for s in grid]
        assert np.exp(grid[int(np.argmin(values))]) == pytest.approx(2 * factor * 0.3, rel=1e-2)
    with pytest.raises(ValueError, match="one each per task"):
        losses.uncertainty_weighted_loss([1.0, 2.0], [0.0], ["binary", "binary"])


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown task kind"):
        losses.per_example_loss("ordinal", [1.0], [1.0])
    with pytest.raises(ValueError, match="shape"):
        losses.binary_cross_entropy(np.zeros((3, 1)), np.full(3, 0.5))
    with pytest.raises(ValueError, match="classes"):
        losses.sparse_categorical_cross_entropy([5], np.full((1, 3), 1 / 3))
