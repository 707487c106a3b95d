"""Lesson 10's self-checks accept the reference answers and reject the usual mistakes."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from utils import monitoring, retrieval, serving
from utils.checks import l10


def _not_written(*args, **kwargs):
    raise NotImplementedError


# -- 10.1 in-batch softmax ---------------------------------------------------------------------------------

def _loss(q, c, positive, ids, p, sign=-1.0, mask=True, axis=1, average="positives"):
    logits = q @ c.T + sign * np.log(p)[None, :]
    if mask:
        logits = np.where((ids[:, None] == ids[None, :]) & ~np.eye(len(ids), dtype=bool), -np.inf, logits)
    top = logits.max(axis=axis, keepdims=True)
    per_row = -np.diag(logits - top - np.log(np.exp(logits - top).sum(axis=axis, keepdims=True)))
    if average == "all":
        return per_row.mean()
    return np.sum(per_row * positive) / (positive.sum() if average == "positives" else len(positive))


@pytest.mark.parametrize("fn, words", [
    (lambda q, c, y, ids, p: retrieval.in_batch_softmax_loss(q, c, y, ids), "log-Q correction is missing"),
    (lambda q, c, y, ids, p: _loss(q, c, y, ids, p, sign=1.0), "wrong sign"),
    (lambda q, c, y, ids, p: _loss(q, c, y, ids, p, mask=False), "accidental hits"),
    (lambda q, c, y, ids, p: _loss(q, c, y, ids, p, axis=0), "axis 1"),
    (lambda q, c, y, ids, p: _loss(q, c, y, ids, p, average="all"), "every row"),
    (lambda q, c, y, ids, p: _loss(q, c, y, ids, p, average="batch"), "batch size"),
    (lambda q, c, y, ids, p: float("nan"), "stably"),
    (lambda q, c, y, ids, p: 2 * retrieval.in_batch_softmax_loss(q, c, y, ids, p), "in-batch softmax loss is"),
])
def test_in_batch_rejects(fn, words) -> None:
    result = l10.in_batch_softmax_loss(fn)
    assert result.status == "wrong" and words in result.message, result


def test_in_batch_accepts_and_not_attempted() -> None:
    assert l10.in_batch_softmax_loss(retrieval.in_batch_softmax_loss).passed
    assert l10.in_batch_softmax_loss(lambda q, c, y, ids, p: _loss(q, c, y, ids, p)).passed
    assert l10.in_batch_softmax_loss(_not_written).status == "not attempted"


# -- 10.2 serving function -----------------------------------------------------------------------------------

def _serve_maker(signature_of=None, score_of=None, flatten=True, decorate=True):
    def make(model, beta, gamma):
        signature = signature_of(model) if signature_of else serving.serving_signature(model)

        def serve(features):
            out = model(features, training=False)
            pc, pv = out["click"], out["purchase"]
            if flatten:
                pc, pv = tf.reshape(pc, [-1]), tf.reshape(pv, [-1])
            score = score_of(pc, pv, features["price"], beta, gamma) if score_of else (
                tf.math.log(pc) + beta * tf.math.log(pv) + gamma * tf.math.log(features["price"]))
            return {"p_click": pc, "p_purchase": pv, "score": score}

        if not decorate:
            return serve
        return tf.function(serve, input_signature=[signature] if signature is not None else None)

    return make


def _fixed_batch(model):
    return {k: tf.TensorSpec((4,), s.dtype, k) for k, s in serving.serving_signature(model).items()}


def _float_ids(model):
    return {k: tf.TensorSpec((None,), tf.float32, k) for k in serving.serving_signature(model)}


@pytest.mark.parametrize("fn, words", [
    (_serve_maker(decorate=False), "return a tf.function"),
    (_serve_maker(signature_of=lambda m: None), "input_signature"),
    (_serve_maker(signature_of=_fixed_batch), "shape=(None,)"),
    (_serve_maker(signature_of=_float_ids), "int64"),
    (_serve_maker(flatten=False), "flatten"),
    (_serve_maker(score_of=lambda pc, pv, price, b, g: tf.math.log(pc) + b * tf.math.log(pv)), "price term"),
    (_serve_maker(score_of=lambda pc, pv, price, b, g: pc * pv**b * price**g), "log of the fused score"),
    (_serve_maker(score_of=lambda pc, pv, price, b, g: tf.math.log(pc) + g * tf.math.log(pv) + b * tf.math.log(price)),
     "score must be"),
])
def test_serving_rejects(fn, words) -> None:
    result = l10.serving_function(fn)
    assert result.status == "wrong" and words in result.message, result


def test_serving_accepts_and_not_attempted() -> None:
    assert l10.serving_function(serving.make_serving_function).passed
    assert l10.serving_function(_serve_maker()).passed
    assert l10.serving_function(_not_written).status == "not attempted"


# -- 10.3 PSI ----------------------------------------------------------------------------------------------------

def _shares(x, edges):
    return np.bincount(np.searchsorted(edges, x), minlength=len(edges) + 1) / len(x)


def _psi_kl(e_x, a_x, bins=10):
    edges = monitoring.quantile_edges(e_x, bins)
    e, a = np.maximum(_shares(e_x, edges), 1e-4), np.maximum(_shares(a_x, edges), 1e-4)
    return float(np.sum(a * np.log(a / e)))


def _psi_window_bins(e_x, a_x, bins=10):
    return _psi_with_edges(e_x, a_x, monitoring.quantile_edges(a_x, bins))


def _psi_with_edges(e_x, a_x, edges):
    e, a = np.maximum(_shares(e_x, edges), 1e-4), np.maximum(_shares(a_x, edges), 1e-4)
    return float(np.sum((a - e) * np.log(a / e)))


def _psi_uniform(e_x, a_x, bins=10):
    return _psi_with_edges(e_x, a_x, np.linspace(e_x.min(), e_x.max(), bins + 1)[1:-1])


def _psi_no_floor(e_x, a_x, bins=10):
    edges = monitoring.quantile_edges(e_x, bins)
    e, a = _shares(e_x, edges), _shares(np.full_like(a_x, 10.0), edges)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.sum((a - e) * np.log(a / e)))


def _psi_closed(e_x, a_x, bins=10):
    edges = np.quantile(e_x, np.linspace(0, 1, bins + 1))
    e = np.maximum(np.histogram(e_x, edges)[0] / len(e_x), 1e-4)
    counts = np.histogram(a_x, edges)[0]
    a = np.maximum(counts / counts.sum(), 1e-4)
    return float(np.sum((a - e) * np.log(a / e)))


def _psi_counts(e_x, a_x, bins=10):
    return monitoring.psi(e_x, a_x, bins) * len(a_x)


@pytest.mark.parametrize("fn, words", [
    (_psi_kl, "Kullback-Leibler"), (_psi_window_bins, "from the window"), (_psi_uniform, "equal-width"),
    (_psi_no_floor, "epsilon"), (_psi_closed, "open-ended"), (_psi_counts, "shares"),
    (lambda e, a, bins=10: monitoring.psi(e, a, 5), "the PSI is"),
])
def test_psi_rejects(fn, words) -> None:
    result = l10.psi(fn)
    assert result.status == "wrong" and words in result.message, result


def test_psi_accepts_and_not_attempted() -> None:
    assert l10.psi(monitoring.psi).passed
    assert l10.psi(lambda e, a, bins=10: _psi_with_edges(e, a, monitoring.quantile_edges(e, bins))).passed
    assert l10.psi(_not_written).status == "not attempted"
