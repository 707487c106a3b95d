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


def _loss_float32(q, c, positive, ids, p):
    """In float32 throughout, with a large negative logit (not -inf) for the accidental hits."""
    q, c, positive, p = (np.asarray(a, dtype=np.float32) for a in (q, c, positive, p))
    logits = q @ c.T - np.log(p)[None, :]
    logits = np.where((ids[:, None] == ids[None, :]) & ~np.eye(len(ids), dtype=bool), np.float32(-1e9), logits)
    log_softmax = logits - np.log(np.sum(np.exp(logits - logits.max(axis=1, keepdims=True)), axis=1,
                                         keepdims=True)) - logits.max(axis=1, keepdims=True)
    return np.sum(-np.diag(log_softmax) * positive) / np.sum(positive)


@pytest.mark.parametrize("fn, words", [
    (lambda q, c, y, ids, p: retrieval.in_batch_softmax_loss(q, c, y, ids), "log-Q correction is missing"),
    (lambda q, c, y, ids, p: _loss(q, c, y, ids, p, sign=1.0), "wrong sign"),
    (lambda q, c, y, ids, p: _loss(q, c, y, ids, p, mask=False), "accidental hits"),
    (lambda q, c, y, ids, p: _loss(q, c, y, ids, p, axis=0), "axis 1"),
    (lambda q, c, y, ids, p: _loss(q, c, y, ids, p, average="all"), "every row"),
    (lambda q, c, y, ids, p: _loss(q, c, y, ids, p, average="batch"), "batch size"),
    (lambda q, c, y, ids, p: float("nan"), "stably"),
    (lambda q, c, y, ids, p: 2 * retrieval.in_batch_softmax_loss(q, c, y, ids, p), "in-batch softmax loss is"),
    (lambda q, c, y, ids, p: (1 + 1e-4) * retrieval.in_batch_softmax_loss(q, c, y, ids, p), "relative tolerance"),
])
def test_in_batch_rejects(fn, words) -> None:
    result = l10.in_batch_softmax_loss(fn)
    assert result.status == "wrong" and words in result.message, result


def test_in_batch_accepts_and_not_attempted() -> None:
    assert l10.in_batch_softmax_loss(retrieval.in_batch_softmax_loss).passed
    assert l10.in_batch_softmax_loss(lambda q, c, y, ids, p: _loss(q, c, y, ids, p)).passed
    assert l10.in_batch_softmax_loss(_loss_float32).passed
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


def _serve_keys(*keys):
    def make(model, beta, gamma):
        inner = serving.make_serving_function(model, beta, gamma)

        @tf.function(input_signature=inner.input_signature)
        def serve(features):
            out = inner(features)
            return {key: out[key] for key in keys}

        return serve

    return make


def _serve_log10(model, beta, gamma):
    return _serve_maker(score_of=lambda pc, pv, price, b, g: (tf.math.log(pc) + b * tf.math.log(pv)
                                                             + g * tf.math.log(price)) / tf.math.log(10.0))(
        model, beta, gamma)


def _serve_from_inputs_list(model, beta, gamma):
    """Another valid way: the signature from model.inputs (a list of Keras tensors), clipped logs."""
    signature = {t.name: tf.TensorSpec((None,), t.dtype, t.name) for t in model.inputs}

    @tf.function(input_signature=[signature])
    def serve(features):
        out = model(features, training=False)
        pc, pv = tf.squeeze(out["click"], -1), tf.squeeze(out["purchase"], -1)
        score = tf.math.log(tf.maximum(pc, 1e-7)) + beta * tf.math.log(tf.maximum(pv, 1e-7))
        return {"p_click": pc, "p_purchase": pv, "score": score + gamma * tf.math.log(features["price"])}

    return serve


def _wrong_names(model):
    return {f"{k}_in": s for k, s in serving.serving_signature(model).items()}


def _fixed_batch(model):
    return {k: tf.TensorSpec((4,), s.dtype, k) for k, s in serving.serving_signature(model).items()}


def _float_ids(model):
    return {k: tf.TensorSpec((None,), tf.float32, k) for k in serving.serving_signature(model)}


@pytest.mark.parametrize("fn, words", [
    (_serve_maker(decorate=False), "return a tf.function"),
    (_serve_maker(signature_of=lambda m: None), "input_signature"),
    (_serve_maker(signature_of=_fixed_batch), "shape=(None,)"),
    (_serve_maker(signature_of=_float_ids), "int64"),
    (_serve_maker(signature_of=_wrong_names), "model.input"),
    (_serve_keys("p_click", "p_purchase"), "missing ['score']"), (_serve_keys("p_click", "score"), "'purchase'"),
    (_serve_log10, "natural logarithm"),
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
    assert l10.serving_function(_serve_from_inputs_list).passed
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


def _psi_unfloored(e_x, a_x, bins=10):
    edges = monitoring.quantile_edges(e_x, bins)
    e, a = _shares(e_x, edges), _shares(a_x, edges)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.sum((a - e) * np.log(a / e)))


def _psi_empty_bins_skipped(e_x, a_x, bins=10):
    edges = monitoring.quantile_edges(e_x, bins)
    e, a = _shares(e_x, edges), _shares(a_x, edges)
    keep = (a > 0) & (e > 0)
    return float(np.sum((a[keep] - e[keep]) * np.log(a[keep] / e[keep])))


def _psi_added(e_x, a_x, bins=10):
    edges = monitoring.quantile_edges(e_x, bins)
    e, a = _shares(e_x, edges) + 1e-4, _shares(a_x, edges) + 1e-4
    return float(np.sum((a - e) * np.log(a / e)))


def _psi_float32(e_x, a_x, bins=10):
    e_x, a_x = np.asarray(e_x, np.float32), np.asarray(a_x, np.float32)
    edges = np.unique(np.quantile(e_x, np.linspace(0, 1, bins + 1)[1:-1]))
    e = np.maximum(np.histogram(e_x, np.r_[-np.inf, edges, np.inf])[0] / np.float32(len(e_x)), np.float32(1e-4))
    a = np.maximum(np.histogram(a_x, np.r_[-np.inf, edges, np.inf])[0] / np.float32(len(a_x)), np.float32(1e-4))
    return np.sum((a - e) * np.log(a / e), dtype=np.float32)


def _psi_counts(e_x, a_x, bins=10):
    return monitoring.psi(e_x, a_x, bins) * len(a_x)


@pytest.mark.parametrize("fn, words", [
    (_psi_kl, "Kullback-Leibler"), (_psi_window_bins, "from the window"), (_psi_uniform, "equal-width"),
    (_psi_no_floor, "epsilon"), (_psi_closed, "open-ended"), (_psi_counts, "shares"),
    (_psi_unfloored, "floor both shares at 1e-4"), (_psi_empty_bins_skipped, "left out"), (_psi_added, "added 1e-4"),
    (lambda e, a, bins=10: monitoring.psi(e, a, bins, epsilon=1e-6), "floor of 1e-06"),
    (lambda e, a, bins=10: monitoring.psi(e, a, bins) * (1 + 1e-4), "relative tolerance"),
    (lambda e, a, bins=10: monitoring.psi(e, a, 5), "the PSI is"),
])
def test_psi_rejects(fn, words) -> None:
    result = l10.psi(fn)
    assert result.status == "wrong" and words in result.message, result


def test_psi_accepts_and_not_attempted() -> None:
    assert l10.psi(monitoring.psi).passed
    assert l10.psi(_psi_float32).passed
    assert l10.psi(lambda e, a, bins=10: _psi_with_edges(e, a, monitoring.quantile_edges(e, bins))).passed
    assert l10.psi(_not_written).status == "not attempted"
