"""Lesson 09's self-checks accept the reference answers and reject the usual mistakes."""

from __future__ import annotations

import numpy as np
import pytest

from utils import meta
from utils.checks import l09


def _not_written(*args, **kwargs):
    raise NotImplementedError


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


# Exercise 09.1 — the inner loop ------------------------------------------------------------------

def _adapt_mean(w, b, t, g, y, mask, lr, steps):
    for _ in range(steps):
        r = (_sigmoid(g + t @ w + b) - y) * mask / mask.sum()
        w, b = w - lr * t.T @ r, b - lr * r.sum()
    return w, b


def _adapt_unmasked(w, b, t, g, y, mask, lr, steps):
    return meta.adapt_logistic(w, b, t, g, y, np.ones_like(mask), lr, steps)


def _adapt_ascent(w, b, t, g, y, mask, lr, steps):
    return meta.adapt_logistic(w, b, t, g, y, mask, -lr, steps)


def _adapt_no_offset(w, b, t, g, y, mask, lr, steps):
    return meta.adapt_logistic(w, b, t, np.zeros_like(g), y, mask, lr, steps)


def _adapt_one_step(w, b, t, g, y, mask, lr, steps):
    return meta.adapt_logistic(w, b, t, g, y, mask, lr, 1)


def _adapt_no_bias(w, b, t, g, y, mask, lr, steps):
    for _ in range(steps):
        r = (_sigmoid(g + t @ w + b) - y) * mask
        w = w - lr * t.T @ r
    return w, b


def _adapt_unchanged(w, b, t, g, y, mask, lr, steps):
    return w, b


@pytest.mark.parametrize("fn, words", [
    (_adapt_mean, "SUMS"), (_adapt_unmasked, "mask"), (_adapt_ascent, "went up"), (_adapt_no_offset, "global logit"),
    (_adapt_one_step, "one step"), (_adapt_no_bias, "bias"), (_adapt_unchanged, "did not move"),
])
def test_adapt_rejects(fn, words: str) -> None:
    result = l09.adapt_user(fn)
    assert result.status == "wrong" and words in result.message, result


def _f32(*arrays):
    return [np.asarray(a, dtype=np.float32) for a in arrays]


def _adapt_float32(w, b, t, g, y, mask, lr, steps):
    w, b, t, g, y, mask = _f32(w, b, t, g, y, mask)
    for _ in range(steps):
        r = (_sigmoid(g + t @ w + b) - y) * mask
        w, b = w - np.float32(lr) * t.T @ r, b - np.float32(lr) * r.sum()
    return w, b


def test_adapt_accepts_and_not_attempted() -> None:
    assert l09.adapt_user(meta.adapt_logistic).passed
    assert l09.adapt_user(_adapt_float32).passed
    assert l09.adapt_user(_not_written).status == "not attempted"
    assert l09.adapt_user(lambda *a: 1.0).status == "wrong"


# Exercise 09.2 — the first-order meta-gradient ------------------------------------------------------

def _mean_grad(w, b, data):
    t, g, y, mask = data
    r = (_sigmoid(g + t @ w + b) - y) * mask / mask.sum()
    return t.T @ r, float(r.sum())


def _fo_at_start(w, b, support, query, lr, steps):
    return _mean_grad(w, b, query)


def _fo_support(w, b, support, query, lr, steps):
    return _mean_grad(*meta.adapt_logistic(w, b, *support, lr, steps), support)


def _fo_weights(w, b, support, query, lr, steps):
    return meta.adapt_logistic(w, b, *support, lr, steps)


def _fo_summed(w, b, support, query, lr, steps):
    gw, gb = meta.fomaml_gradient_logistic(w, b, support, query, lr, steps)
    n = query[3].sum()
    return gw * n, gb * n


def _fo_sign(w, b, support, query, lr, steps):
    gw, gb = meta.fomaml_gradient_logistic(w, b, support, query, lr, steps)
    return -gw, -gb


@pytest.mark.parametrize("fn, words", [
    (_fo_at_start, "STARTING"), (_fo_support, "support loss"), (_fo_weights, "adapted weights"),
    (_fo_summed, "MEAN"), (_fo_sign, "sign"),
])
def test_fomaml_rejects(fn, words: str) -> None:
    result = l09.fomaml_gradient(fn)
    assert result.status == "wrong" and words in result.message, result


def _fomaml_float32(w, b, support, query, lr, steps):
    w_k, b_k = _adapt_float32(w, b, *support, lr, steps)
    t, g, y, mask = _f32(*query)
    r = (_sigmoid(g + t @ w_k + b_k) - y) * mask / mask.sum()
    return t.T @ r, r.sum()


def test_fomaml_accepts_and_not_attempted() -> None:
    assert l09.fomaml_gradient(meta.fomaml_gradient_logistic).passed
    assert l09.fomaml_gradient(_fomaml_float32).passed
    assert l09.fomaml_gradient(_not_written).status == "not attempted"


# Exercise 09.3 — the second-order meta-gradient ------------------------------------------------------

def _so(w, b, support, query, lr, at_adapted=False, mean=False, unmasked=False, sign=-1.0):
    t, g, y, mask = support
    w1, b1 = meta.adapt_logistic(w, b, t, g, y, mask, lr, 1)
    gq = np.append(*_mean_grad(w1, b1, query))
    ww, bb = (w1, b1) if at_adapted else (w, b)
    p = _sigmoid(g + t @ ww + bb)
    m = np.ones_like(mask) if unmasked else mask
    t1 = np.hstack([t, np.ones((len(t), 1))])
    h = t1.T @ (t1 * (m * p * (1 - p))[:, None]) / (m.sum() if mean else 1.0)
    out = gq + sign * lr * h @ gq
    return out[:-1], float(out[-1])


@pytest.mark.parametrize("fn, words", [
    (lambda w, b, s, q, lr: meta.fomaml_gradient_logistic(w, b, s, q, lr, 1), "first-order"),
    (lambda w, b, s, q, lr: _so(w, b, s, q, lr, sign=1.0), "minus sign"),
    (lambda w, b, s, q, lr: _so(w, b, s, q, lr, at_adapted=True), "STARTING"),
    (lambda w, b, s, q, lr: _so(w, b, s, q, lr, mean=True), "summed"),
    (lambda w, b, s, q, lr: _so(w, b, s, q, lr, unmasked=True), "mask"),
])
def test_maml_rejects(fn, words: str) -> None:
    result = l09.maml_gradient(fn)
    assert result.status == "wrong" and words in result.message, result


def _maml_float32(w, b, support, query, lr):
    t, g, y, mask = _f32(*support)
    w, b = _f32(w, b)
    gq = np.append(*_fomaml_float32(w, b, support, query, lr, 1)).astype(np.float32)
    p = _sigmoid(g + t @ w + b)
    t1 = np.hstack([t, np.ones((len(t), 1), np.float32)])
    out = gq - np.float32(lr) * (t1.T @ (t1 * (mask * p * (1 - p))[:, None])) @ gq
    return out[:-1], out[-1]


def test_maml_accepts_and_not_attempted() -> None:
    assert l09.maml_gradient(_maml_float32).passed
    assert l09.maml_gradient(meta.maml_gradient_logistic).passed
    assert l09.maml_gradient(lambda w, b, s, q, lr: _so(w, b, s, q, lr)).passed
    assert l09.maml_gradient(_not_written).status == "not attempted"


def test_maml_reference_matches_finite_differences() -> None:
    """The closed form is the derivative of the query loss after one inner step (central differences)."""
    rng = np.random.default_rng(0)
    support = (rng.normal(size=(9, 2)), rng.normal(size=9), (rng.random(9) < 0.4).astype(float), np.ones(9))
    query = (rng.normal(size=(7, 2)), rng.normal(size=7), (rng.random(7) < 0.4).astype(float), np.ones(7))
    w, b, lr = np.array([0.1, -0.2]), 0.05, 0.4

    def outer(theta):
        w1, b1 = meta.adapt_logistic(theta[:2], theta[2], *support, lr, 1)
        t, g, y, m = query
        p = _sigmoid(g + t @ w1 + b1)
        return float(np.sum(-(y * np.log(p) + (1 - y) * np.log(1 - p)) * m) / m.sum())

    theta, h = np.append(w, b), 1e-6
    numeric = np.array([(outer(theta + h * e) - outer(theta - h * e)) / (2 * h) for e in np.eye(3)])
    gw, gb = meta.maml_gradient_logistic(w, b, support, query, lr)
    np.testing.assert_allclose(np.append(gw, gb), numeric, rtol=1e-6, atol=1e-9)
