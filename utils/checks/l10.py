"""Self-checks for lesson 10 (a system): the in-batch softmax loss of retrieval, the serving function, and
the population stability index."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from utils import monitoring, retrieval
from utils.checks import RTOL, CheckResult, expect, run_check

#: Relative tolerance of the numeric comparisons: an answer computed in float32 (Keras's default) passes.
# -- Exercise 10.1: in-batch softmax -----------------------------------------------------------------------


def _batch_fixture() -> tuple[np.ndarray, ...]:
    """Six rows: four clicked (positives), a repeated item (an accidental hit), unequal sampling probabilities."""
    rng = np.random.default_rng(10)
    query = rng.normal(size=(6, 3))
    candidate = rng.normal(size=(6, 3))
    positive = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    item_ids = np.array([3, 7, 3, 9, 2, 5])
    probability = np.array([0.2, 0.01, 0.2, 0.05, 0.3, 0.002])
    return query, candidate, positive, item_ids, probability


def _log_softmax(logits: np.ndarray, axis: int) -> np.ndarray:
    top = logits.max(axis=axis, keepdims=True)
    return logits - top - np.log(np.exp(logits - top).sum(axis=axis, keepdims=True))


def _variant(query: np.ndarray, candidate: np.ndarray, positive: np.ndarray, item_ids: np.ndarray,
             probability: np.ndarray | None, log_q_sign: float = -1.0, mask: bool = True, axis: int = 1,
             average: str = "positives") -> float:
    logits = query @ candidate.T
    if probability is not None:
        logits = logits + log_q_sign * np.log(probability)[None, :]
    if mask:
        accidental = (item_ids[:, None] == item_ids[None, :]) & ~np.eye(len(item_ids), dtype=bool)
        logits = np.where(accidental, -np.inf, logits)
    per_row = -np.diag(_log_softmax(logits, axis))
    if average == "all":
        return float(per_row.mean())
    if average == "batch":
        return float(np.sum(per_row * positive) / len(positive))
    return float(np.sum(per_row * positive) / positive.sum())


def _check_in_batch(fn: Callable[..., float]) -> str:
    q, c, positive, ids, p = _batch_fixture()
    want = retrieval.in_batch_softmax_loss(q, c, positive, ids, p)
    got = float(fn(q.copy(), c.copy(), positive.copy(), ids.copy(), p.copy()))
    expect(np.isfinite(got), f"got {got}: mask accidental hits with a large negative logit (or -inf), and "
                             "compute the log-softmax stably (subtract each row's maximum)")
    mistakes = [
        (_variant(q, c, positive, ids, None), "the log-Q correction is missing: subtract log p_j from every "
                                              "logit of column j (frequent items are sampled as negatives more often)"),
        (_variant(q, c, positive, ids, p, log_q_sign=1.0), "the correction has the wrong sign: it is logit - log p_j"),
        (_variant(q, c, positive, ids, p, mask=False),
         "accidental hits are not masked: where another row holds the row's own item, that column is not a "
         "negative (set its logit to -inf)"),
        (_variant(q, c, positive, ids, p, axis=0),
         "the softmax runs down the columns; each row (query) normalises over its candidates: softmax along axis 1"),
        (_variant(q, c, positive, ids, p, average="all"),
         "you averaged over every row; only clicked rows are queries: weight each row by `positive` and divide by "
         "their number"),
        (_variant(q, c, positive, ids, p, average="batch"), "you divided by the batch size; divide by the number of "
                                                            "positive rows"),
    ]
    for value, message in mistakes:
        expect(not np.isclose(got, value, rtol=RTOL, atol=1e-7), message)
    expect(np.isclose(got, want, rtol=RTOL, atol=1e-7),
           f"got {got:.6f}, the in-batch softmax loss is {want:.6f} (compared to a relative tolerance of {RTOL:g})")
    return f"correct: {got:.6f}, the loss TwoTowerModel.retrieval_loss computes in Keras"


def in_batch_softmax_loss(fn: Callable[..., float]) -> CheckResult:
    """Check Exercise 10.1: the in-batch softmax loss with log-Q correction and accidental hits masked."""
    return run_check("Exercise 10.1 (in-batch softmax)", _check_in_batch, fn, "utils.retrieval.in_batch_softmax_loss")


# -- Exercise 10.2: the serving function -------------------------------------------------------------------


def _tiny_ranker() -> Any:
    """A two-headed model on raw inputs (an int64 id and a float32 price), with fixed weights."""
    import keras

    ids = keras.Input(shape=(), dtype="int64", name="item_id")
    price = keras.Input(shape=(), dtype="float32", name="price")
    x = keras.layers.Concatenate()([keras.layers.Embedding(8, 2, embeddings_initializer="glorot_uniform",
                                                           name="item_embedding")(ids),
                                    keras.layers.Reshape((1,))(keras.ops.log1p(price))])
    outputs = {name: keras.layers.Dense(1, activation="sigmoid", name=name)(x) for name in ("click", "purchase")}
    model = keras.Model({"item_id": ids, "price": price}, outputs)
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in model.get_weights()])
    return model


def _check_serving(fn: Callable[..., Any]) -> str:
    import tensorflow as tf

    model = _tiny_ranker()
    beta, gamma = 0.7, 0.4
    serve = fn(model, beta, gamma)
    expect(hasattr(serve, "get_concrete_function"), "return a tf.function (decorate the inner function with "
                                                     "@tf.function(input_signature=[...]))")
    signature = serve.input_signature
    expect(signature is not None, "give tf.function an input_signature: without one a SavedModel has no fixed "
                                  "signature to serve, and every new batch size traces a new graph")
    expect(len(signature) == 1 and isinstance(signature[0], dict),
           "the input signature is one dict of TensorSpecs keyed by feature name: input_signature=[{name: spec}]")
    specs = signature[0]
    expect(set(specs) == {"item_id", "price"},
           "the signature dict needs one TensorSpec per model input, keyed by the input's name: take the names "
           "and dtypes from the model itself (model.input is a dict name -> Keras input; here 'item_id' and "
           f"'price'), got {sorted(specs)}")
    for name, spec in specs.items():
        expect(isinstance(spec, tf.TensorSpec), f"{name!r}: use tf.TensorSpec, got {type(spec).__name__}")
        expect(spec.shape.rank == 1 and spec.shape[0] is None,
               f"{name!r} has shape {spec.shape}: use shape=(None,) so that any batch size is served")
    expect(specs["item_id"].dtype == tf.int64, "ids are raw int64 values (the lookup is inside the model), "
                                               f"got {specs['item_id'].dtype.name}")
    expect(specs["price"].dtype == tf.float32, f"price is a raw float32, got {specs['price'].dtype.name}")
    batch = {"item_id": np.array([0, 3, 7, 5], dtype=np.int64), "price": np.array([1.5, 20.0, 3.0, 150.0], np.float32)}
    out = serve({k: tf.constant(v) for k, v in batch.items()})
    keys = ("p_click", "p_purchase", "score")
    missing = [k for k in keys if not isinstance(out, dict) or k not in out]
    expect(not missing,
           "the served function returns a dict with three keys: 'p_click' and 'p_purchase' (the model's 'click' "
           "and 'purchase' outputs, flattened to shape (n,)) and 'score' (log p_click + beta log p_purchase + "
           "gamma log price); " + (f"missing {missing}" if isinstance(out, dict) else f"got a {type(out).__name__}"))
    pred = model(batch)
    p_click, p_purchase = (np.asarray(pred[k]).reshape(-1) for k in ("click", "purchase"))
    for key, want in (("p_click", p_click), ("p_purchase", p_purchase)):
        got = np.asarray(out[key])
        expect(got.shape == (4,), f"{key} has shape {got.shape}: flatten the (n, 1) head output to (n,)")
        expect(np.allclose(got, want, rtol=RTOL, atol=1e-6),
               f"{key} differs from the model's output (compared to a relative tolerance of {RTOL:g})")
    score = np.asarray(out["score"]).reshape(-1)
    want = np.log(p_click) + beta * np.log(p_purchase) + gamma * np.log(batch["price"])
    expect(not np.allclose(score, np.log(p_click) + beta * np.log(p_purchase), atol=1e-5),
           "the price term is missing: add gamma * log(price)")
    expect(not np.allclose(score, p_click * p_purchase ** beta * batch["price"] ** gamma, atol=1e-5),
           "return the log of the fused score (a sum of logs), as utils.fusion.fused_score does")
    expect(not np.allclose(score, want / np.log(10.0), rtol=RTOL, atol=1e-5),
           "that is log10: use the natural logarithm (tf.math.log), as utils.fusion.fused_score does")
    expect(np.allclose(score, want, rtol=RTOL, atol=1e-5),
           "score must be log p_click + beta log p_purchase + gamma log price (natural logs, compared to a "
           f"relative tolerance of {RTOL:g})")
    return "correct: a fixed signature of raw features, any batch size, the same numbers as the model"


def serving_function(fn: Callable[..., Any]) -> CheckResult:
    """Check Exercise 10.2: a tf.function with an input signature of raw features and the fused score."""
    return run_check("Exercise 10.2 (the serving function)", _check_serving, fn, "utils.serving.make_serving_function")


# -- Exercise 10.3: PSI ------------------------------------------------------------------------------------


def _psi_fixture() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    return rng.normal(0.0, 1.0, 1000), rng.normal(0.6, 1.4, 700)


def _empty_bin_fixture() -> tuple[np.ndarray, np.ndarray]:
    """A window far to the right of its reference: the reference's four lowest quantile bins hold none of it."""
    rng = np.random.default_rng(40)
    return rng.normal(0.0, 1.0, 800), rng.normal(1.2, 0.5, 400)


def _psi_shares(expected: np.ndarray, actual: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(edges) + 1
    e = np.bincount(np.searchsorted(edges, expected), minlength=n) / len(expected)
    a = np.bincount(np.searchsorted(edges, actual), minlength=n) / len(actual)
    return e, a


def _check_psi(fn: Callable[..., float]) -> str:
    reference, window = _psi_fixture()
    want = monitoring.psi(reference, window, bins=10)
    got = float(fn(reference.copy(), window.copy(), 10))
    expect(np.isfinite(got), f"got {got}: floor each share at a small epsilon (1e-4) so an empty bin does "
                             "not make ln(a / e) infinite")
    inner = monitoring.quantile_edges(reference, 10)
    e_raw, a_raw = _psi_shares(reference, window, inner)
    e, a = np.maximum(e_raw, 1e-4), np.maximum(a_raw, 1e-4)
    window_edges = monitoring.quantile_edges(window, 10)
    e_w, a_w = (np.maximum(s, 1e-4) for s in _psi_shares(reference, window, window_edges))
    uniform = np.linspace(reference.min(), reference.max(), 11)[1:-1]
    e_u, a_u = (np.maximum(s, 1e-4) for s in _psi_shares(reference, window, uniform))
    closed = np.quantile(reference, np.linspace(0, 1, 11))
    e_c = np.histogram(reference, closed)[0] / len(reference)
    a_c = np.histogram(window, closed)[0] / max(np.histogram(window, closed)[0].sum(), 1)
    e_c, a_c = np.maximum(e_c, 1e-4), np.maximum(a_c, 1e-4)
    mistakes = [
        (float(np.sum(a * np.log(a / e))), "that is the Kullback-Leibler divergence of the window from the "
                                           "reference; PSI sums (a - e) * ln(a / e), which is symmetric"),
        (float(np.sum((a_w - e_w) * np.log(a_w / e_w))), "the bins come from the window; fix them on the "
                                                         "reference (expected) distribution, the one the model saw"),
        (float(np.sum((a_u - e_u) * np.log(a_u / e_u))), "equal-width bins; use the reference's quantiles, so "
                                                         "each bin holds a tenth of the reference"),
        (float(np.sum((a_c - e_c) * np.log(a_c / e_c))), "the window's values outside the reference's range fell "
                                                         "out of your bins: make the first and last bins open-ended"),
        (float(np.sum((a - e) * np.log(a / e))) * len(window), "use shares of each sample (counts / size), not counts"),
        (float(np.sum((a_raw - e_raw) * np.log((a_raw + 1e-4) / (e_raw + 1e-4)))),
         "you added 1e-4 to every share; the convention here is a floor: e = max(e, 1e-4), a = max(a, 1e-4)"),
    ]
    for value, message in mistakes:
        expect(not np.isclose(got, value, rtol=RTOL), message)
    expect(np.isclose(got, want, rtol=RTOL),
           f"got {got:.6f}, the PSI is {want:.6f} (compared to a relative tolerance of {RTOL:g})")
    _check_empty_bins(fn)
    same = float(fn(reference.copy(), reference.copy(), 10))
    expect(abs(same) < 1e-9, f"a sample against itself must give 0, got {same:.3g}")
    return f"correct: PSI = {got:.4f} (above {monitoring.PSI_ACTION}: this window has drifted)"


def _check_empty_bins(fn: Callable[..., float]) -> None:
    """A window that leaves some of the reference's bins empty: only the floor of 1e-4 keeps PSI finite."""
    reference, window = _empty_bin_fixture()
    want = monitoring.psi(reference, window, bins=10)
    e, a = _psi_shares(reference, window, monitoring.quantile_edges(reference, 10))
    empty = int((a == 0).sum())
    got = float(fn(reference.copy(), window.copy(), 10))
    floor = ("floor both shares at 1e-4 as the prompt says, e = max(e, 1e-4) and a = max(a, 1e-4), before "
             f"(a - e) * ln(a / e); here {empty} of the 10 bins hold none of the window")
    expect(np.isfinite(got), f"got {got} when a bin of the window is empty: {floor}")
    kept = a > 0
    expect(not np.isclose(got, float(np.sum((a[kept] - e[kept]) * np.log(a[kept] / e[kept]))), rtol=RTOL),
           f"the empty bins were left out; a bin the window has deserted is the strongest sign of drift: {floor}")

    def psi_of(e_s: np.ndarray, a_s: np.ndarray) -> float:
        return float(np.sum((a_s - e_s) * np.log(a_s / e_s)))

    e_f, a_f = np.maximum(e, 1e-4), np.maximum(a, 1e-4)
    alternatives = [(psi_of(e + 1e-4, a + 1e-4), "you added 1e-4 to every share; the convention here is a floor"),
                    (psi_of(e_f / e_f.sum(), a_f / a_f.sum()),
                     "you renormalised the floored shares to sum to 1; keep them as floored")]
    alternatives += [(psi_of(np.maximum(e, eps), np.maximum(a, eps)), f"that is a floor of {eps:g}")
                     for eps in (1e-6, 1e-5, 1e-3, 1e-2)]
    for value, message in alternatives:
        expect(not np.isclose(got, value, rtol=RTOL), f"{message}: {floor}")
    expect(np.isclose(got, want, rtol=RTOL),
           f"with empty bins in the window you get {got:.6f}, the PSI is {want:.6f} (compared to a relative "
           f"tolerance of {RTOL:g}): {floor}")


def psi(fn: Callable[..., float]) -> CheckResult:
    """Check Exercise 10.3: the population stability index of a numeric variable."""
    return run_check("Exercise 10.3 (population stability index)", _check_psi, fn, "utils.monitoring.psi")
