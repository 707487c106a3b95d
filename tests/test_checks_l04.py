"""Lesson 04's self-checks accept the reference answers and reject the usual mistakes."""

from __future__ import annotations

import numpy as np
import pytest

from utils import losses
from utils.checks import l04


def _not_written(*args, **kwargs):
    raise NotImplementedError


def _bce(y, p):
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def _joint_unmasked(y, p, mask, c):
    return losses.masked_joint_log_loss(y, p, np.ones_like(mask), c)


def _joint_no_labels(y, p, mask, c):
    return float(np.sum(c * np.sum(mask * -np.log(p), axis=0)) / len(y))


def _joint_per_label(y, p, mask, c):
    return float(np.sum(c * np.sum(mask * _bce(y, p), axis=0) / mask.sum(axis=0)))


def _joint_unweighted(y, p, mask, c):
    return losses.masked_joint_log_loss(y, p, mask)


def _joint_sum(y, p, mask, c):
    return losses.masked_joint_log_loss(y, p, mask, c) * len(y)


@pytest.mark.parametrize("fn, words", [
    (_joint_unmasked, "mask"), (_joint_no_labels, "no label"), (_joint_per_label, "batch size"),
    (_joint_unweighted, "task weights"), (_joint_sum, "number of rows"),
])
def test_joint_loss_rejects(fn, words: str) -> None:
    result = l04.masked_joint_log_loss(fn)
    assert result.status == "wrong" and words in result.message, result


def test_joint_loss_accepts_and_not_attempted() -> None:
    assert l04.masked_joint_log_loss(losses.masked_joint_log_loss).passed
    assert l04.masked_joint_log_loss(_not_written).status == "not attempted"


def _grad(x, y, w, b, s):
    return losses.logistic_head_gradient(x, y, w, b, s)


def _grad_sign(x, y, w, b, s):
    dw, db = _grad(x, y, w, b, s)
    return -dw, -db


def _grad_no_weights(x, y, w, b, s):
    return losses.logistic_head_gradient(x, y, w, b)


def _grad_sum(x, y, w, b, s):
    dw, db = _grad(x, y, w, b, s)
    return dw * len(y), db * len(y)


def _grad_extra_factor(x, y, w, b, s):
    p = 1 / (1 + np.exp(-(x @ w + b)))
    r = (p - y) * s * p * (1 - p)
    return x.T @ r / len(y), r.sum() / len(y)


def _grad_bad_bias(x, y, w, b, s):
    dw, db = _grad(x, y, w, b, s)
    return dw, db + 0.1


@pytest.mark.parametrize("fn, words", [
    (_grad_sign, "sign"), (_grad_no_weights, "sample weights"), (_grad_sum, "divide by n"),
    (_grad_extra_factor, "p(1-p)"), (_grad_bad_bias, "dL/db"),
])
def test_gradient_rejects(fn, words: str) -> None:
    result = l04.logistic_head_gradient(fn)
    assert result.status == "wrong" and words in result.message, result


def test_gradient_accepts_and_reports_errors() -> None:
    assert l04.logistic_head_gradient(_grad).passed
    assert l04.logistic_head_gradient(_not_written).status == "not attempted"
    result = l04.logistic_head_gradient(lambda *a: None)
    assert result.status == "wrong" and "pair" in result.message


def _factors(kinds):
    return np.array([0.5 if k == "regression" else 1.0 for k in kinds])


@pytest.mark.parametrize("fn, words", [
    (lambda L, s, k: float(np.sum(_factors(k) * np.exp(-s) * L)), "s_t / 2"),
    (lambda L, s, k: float(np.sum(_factors(k) * np.exp(s) * L + 0.5 * s)), "exp(-s_t)"),
    (lambda L, s, k: float(np.sum(np.exp(-s) * L + 0.5 * s)), "factor is 1/2"),
    (lambda L, s, k: float(np.sum(np.exp(-s) * L + s)), "simplified"),
    (lambda L, s, k: float(np.sum(_factors(k) * np.exp(-s) * L + s)), "uncertainty-weighted loss is"),
])
def test_uncertainty_rejects(fn, words: str) -> None:
    result = l04.uncertainty_weighted_loss(fn)
    assert result.status == "wrong" and words in result.message, result


def test_uncertainty_accepts_and_not_attempted() -> None:
    assert l04.uncertainty_weighted_loss(losses.uncertainty_weighted_loss).passed
    assert l04.uncertainty_weighted_loss(_not_written).status == "not attempted"


# -- float32 and other valid variants, more mistakes ----------------------------------------------------------

def _joint_keras_bce(y, p, mask, c):
    """Keras's own BinaryCrossentropy per task, float32: within 1e-7 of the float64 answer, not equal to it."""
    import keras

    bce = keras.losses.BinaryCrossentropy()  # sum_over_batch_size: the weighted sum / n
    return sum(c[t] * float(bce(y[:, t:t + 1], p[:, t:t + 1], sample_weight=mask[:, t])) for t in range(y.shape[1]))


def _joint_float32(y, p, mask, c):
    y, p, mask, c = (np.asarray(a, dtype="float32") for a in (y, p, mask, c))
    return np.float32(np.sum(c * np.sum(mask * _bce(y, p), axis=0)) / np.float32(len(y)))


def _joint_notebook(labels, probs, mask, task_weights):
    """The reference answer of solutions/04_joint_log_loss.ipynb."""
    labels, probs, mask = (np.asarray(a, dtype=float) for a in (labels, probs, mask))
    bce = -(labels * np.log(probs) + (1 - labels) * np.log(1 - probs))
    return float(np.sum(np.asarray(task_weights) * np.sum(mask * bce, axis=0)) / len(labels))


@pytest.mark.parametrize("fn", [_joint_keras_bce, _joint_float32, _joint_notebook])
def test_joint_loss_accepts_valid_variants(fn) -> None:
    result = l04.masked_joint_log_loss(fn)
    assert result.passed, result


def test_joint_loss_reference_message_unchanged() -> None:
    assert repr(l04.masked_joint_log_loss(_joint_notebook)) == (
        "✅ Exercise 04.1 (masked joint log loss): correct: 1.985299, the same reduction as Keras's "
        "compile(loss=..., loss_weights=...)")


@pytest.mark.parametrize("fn, words", [
    (lambda y, p, m, c: float(np.sum(c * np.sum(m * _bce(y, p), axis=0)) / m.sum()), "total number of observed"),
    (lambda y, p, m, c: losses.masked_joint_log_loss(y, p, m, c) / len(c), "averaged over the 3 tasks"),
    (lambda y, p, m, c: float(np.sum(c * np.sum(m * _bce(y, p), axis=0)) / len(y) / np.log(10)), "natural"),
    (lambda y, p, m, c: c * np.sum(m * _bce(y, p), axis=0) / len(y), "one number"),
    (lambda y, p, m, c: losses.masked_joint_log_loss(y, p, m, c) * (1 + 1e-4), "relative tolerance"),
])
def test_joint_loss_rejects_more(fn, words: str) -> None:
    result = l04.masked_joint_log_loss(fn)
    assert result.status == "wrong" and words in result.message, result


def _grad_float32(x, y, w, b, s):
    x, y, w, s = (np.asarray(a, dtype="float32") for a in (x, y, w, s))
    p = 1 / (1 + np.exp(-(x @ w + np.float32(b))))
    r = (p - y) * s
    return x.T @ r / np.float32(len(y)), np.float32(r.mean())


def _grad_tape(x, y, w, b, s):
    """Keras computes the gradient itself, in float32."""
    import tensorflow as tf

    wv, bv = tf.Variable(w.astype("float32")), tf.Variable(np.float32(b))
    with tf.GradientTape() as tape:
        logits = tf.linalg.matvec(tf.constant(x, tf.float32), wv) + bv
        per_row = tf.nn.sigmoid_cross_entropy_with_logits(tf.constant(y, tf.float32), logits)
        loss = tf.reduce_sum(per_row * tf.constant(s, tf.float32)) / len(y)
    dw, db = tape.gradient(loss, [wv, bv])
    return dw.numpy(), db.numpy()


def _grad_notebook(h, y, w, b, sample_weight):
    """The reference answer of solutions/04_joint_log_loss.ipynb."""
    p = 1 / (1 + np.exp(-(h @ w + b)))
    residual = (p - y) * sample_weight
    return h.T @ residual / len(y), float(residual.sum() / len(y))


@pytest.mark.parametrize("fn", [_grad_float32, _grad_tape, _grad_notebook,
                                lambda *a: list(_grad_notebook(*a))])
def test_gradient_accepts_valid_variants(fn) -> None:
    result = l04.logistic_head_gradient(fn)
    assert result.passed, result


def test_gradient_reference_message_unchanged() -> None:
    assert repr(l04.logistic_head_gradient(_grad_notebook)) == (
        "✅ Exercise 04.2 (gradient of a logistic head): correct: |dL/dw| = 0.3437, dL/db = 0.2120")


@pytest.mark.parametrize("fn, words", [
    (lambda x, y, w, b, s: tuple(v * len(y) / s.sum() for v in _grad(x, y, w, b, s)), "sum of the sample weights"),
    (lambda x, y, w, b, s: (_grad(x, y, w, b, s)[0], np.ones(3)), "one number"),
    (lambda x, y, w, b, s: (_grad(x, y, w, b, s)[0] * (1 + 1e-3), _grad(x, y, w, b, s)[1]), "relative tolerance"),
])
def test_gradient_rejects_more(fn, words: str) -> None:
    result = l04.logistic_head_gradient(fn)
    assert result.status == "wrong" and words in result.message, result


def _uncertainty_float32(L, s, kinds):
    L, s = np.asarray(L, dtype="float32"), np.asarray(s, dtype="float32")
    c = np.array([0.5 if k == "regression" else 1.0 for k in kinds], dtype="float32")
    return np.float32(np.sum(c * np.exp(-s) * L + s / 2))


def _uncertainty_notebook(task_losses, log_vars, kinds):
    """The reference answer of solutions/04_joint_log_loss.ipynb."""
    factors = np.array([0.5 if kind == "regression" else 1.0 for kind in kinds])
    s = np.asarray(log_vars, dtype=float)
    return float(np.sum(factors * np.exp(-s) * np.asarray(task_losses) + 0.5 * s))


def _uncertainty_dicts(task_losses, log_vars, kinds):
    """Written for dicts keyed by task name."""
    return sum(task_losses[t] * np.exp(-log_vars[t]) + log_vars[t] / 2 for t in kinds)


@pytest.mark.parametrize("fn", [_uncertainty_float32, _uncertainty_notebook,
                                lambda L, s, k: np.array([_uncertainty_notebook(L, s, k)])])
def test_uncertainty_accepts_valid_variants(fn) -> None:
    result = l04.uncertainty_weighted_loss(fn)
    assert result.passed, result


def test_uncertainty_reference_message_unchanged() -> None:
    assert repr(l04.uncertainty_weighted_loss(_uncertainty_notebook)) == (
        "✅ Exercise 04.3 (uncertainty weighting): correct: 0.267591; the effective weights are [0.607, 2.718, 0.37]")


@pytest.mark.parametrize("fn, words", [
    (lambda L, s, k: float(np.sum(np.where(np.array(k) == "binary", 1.0, 0.5) * np.exp(-s) * L + s / 2)),
     "'multiclass' is a classification kind"),
    (lambda L, s, k: float(np.sum(0.5 * np.exp(-s) * L + s / 2)), "only a regression"),
    (lambda L, s, k: float(np.sum(_factors(k) * np.exp(-2 * s) * L + s)), "log sigma_t"),
    (lambda L, s, k: _factors(k) * np.exp(-s) * L + s / 2, "one number"),
    (_uncertainty_dicts, "not dicts"),
])
def test_uncertainty_rejects_more(fn, words: str) -> None:
    result = l04.uncertainty_weighted_loss(fn)
    assert result.status == "wrong" and words in result.message, result


def test_uncertainty_alternatives_differ_on_the_fixture() -> None:
    """Every formula the check names gives another value on each fixture case, beyond the tolerance."""
    for L, s, k in l04._UNCERTAINTY_CASES:
        c = _factors(k)
        values = [float(np.sum(c * np.exp(-s) * L + s / 2)), float(np.sum(c * np.exp(-s) * L)),
                  float(np.sum(c * np.exp(s) * L + s / 2)), float(np.sum(np.exp(-s) * L + s / 2)),
                  float(np.sum(0.5 * np.exp(-s) * L + s / 2)), float(np.sum(np.exp(-s) * L + s)),
                  float(np.sum(c * np.exp(-2 * s) * L + s))]
        for i, a in enumerate(values):
            for b in values[i + 1:]:
                assert not np.isclose(a, b, rtol=1e-4), (a, b)
