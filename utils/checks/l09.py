"""Self-checks for lesson 09 (meta-learning for cold start): the inner loop of one user, the first-order
meta-gradient, and the exact second-order meta-gradient of one inner step."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from utils import meta
from utils.checks import RTOL, CheckResult, expect, run_check

#: Relative tolerance of every comparison: an answer computed in float32 (Keras's default) passes.

def _user(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One user's impressions: item vectors t (n, 3), global logits g, clicks y, and a mask with padding."""
    rng = np.random.default_rng(seed)
    t = rng.normal(0.0, 1.0, (n, 3))
    g = rng.normal(-1.5, 0.5, n)
    y = (rng.random(n) < 0.3).astype(float)
    y[:2] = [1.0, 0.0]
    mask = np.ones(n)
    mask[-3:] = 0.0
    y[-3:] = 1.0  # padding rows carry a label of 1: an unmasked sum would count them
    return t, g, y, mask


def _start() -> tuple[np.ndarray, float]:
    return np.array([0.2, -0.1, 0.05]), -0.3


def _pair(got: object, what: str) -> tuple[np.ndarray, float]:
    expect(isinstance(got, tuple) and len(got) == 2, f"return a pair ({what} for w, {what} for b)")
    return np.asarray(got[0], dtype=float).reshape(-1), float(got[1])


def _close(a: tuple[np.ndarray, float], b: tuple[np.ndarray, float], rtol: float = RTOL) -> bool:
    return bool(np.allclose(a[0], b[0], rtol=rtol, atol=1e-8) and np.isclose(a[1], b[1], rtol=rtol, atol=1e-8))


def _mean_grad_adapt(w, b, t, g, y, mask, lr, steps):
    for _ in range(steps):
        r = (1 / (1 + np.exp(-(g + t @ w + b))) - y) * mask / mask.sum()
        w, b = w - lr * t.T @ r, b - lr * r.sum()
    return w, b


def _check_adapt(fn: Callable[..., tuple]) -> str:
    w, b = _start()
    t, g, y, mask = _user(3, 14)
    lr, steps = 0.05, 4
    want = meta.adapt_logistic(w, b, t, g, y, mask, lr, steps)
    got = _pair(fn(w.copy(), b, t, g, y, mask, lr, steps), "the adapted value")
    expect(got[0].shape == w.shape, f"w must keep its shape {w.shape}, got {got[0].shape}")
    expect(np.all(np.isfinite(got[0])) and np.isfinite(got[1]), "the adapted weights are not finite")
    expect(not _close(got, (w, b)), "the weights did not move: take `steps` gradient steps of size lr")
    expect(not _close(got, meta.adapt_logistic(w, b, t, g, y, mask, -lr, steps)),
           "the loss went up: step against the gradient, w <- w - lr * dL/dw")
    expect(not _close(got, meta.adapt_logistic(w, b, t, g, y, np.ones_like(mask), lr, steps)),
           "padding rows counted: multiply each row's residual (p - y) by its mask")
    expect(not _close(got, _mean_grad_adapt(w, b, t, g, y, mask, lr, steps)),
           "you averaged the support loss; the inner loop here SUMS it over the user's impressions, so a user with "
           "more evidence moves further")
    expect(not _close(got, meta.adapt_logistic(w, b, t, np.zeros_like(g), y, mask, lr, steps)),
           "the global logit g is missing: p_i = sigmoid(g_i + t_i . w + b)")
    expect(not _close(got, meta.adapt_logistic(w, b, t, g, y, mask, lr, 1)),
           f"that is one step: take all {steps} steps, recomputing p after each")
    expect(not np.isclose(got[1], b), "the bias b did not move: its gradient is sum_i m_i (p_i - y_i)")
    expect(_close(got, want), f"got w = {np.round(got[0], 5).tolist()}, b = {got[1]:.5f}; expected "
           f"w = {np.round(want[0], 5).tolist()}, b = {want[1]:.5f} (compared to a relative tolerance of {RTOL:g})")
    return f"correct: after {steps} steps w = {np.round(got[0], 4).tolist()}, b = {got[1]:.4f}"


def adapt_user(fn: Callable[..., tuple]) -> CheckResult:
    """Check Exercise 09.1: the inner loop for one user's personal layer."""
    return run_check("Exercise 09.1 (the inner loop)", _check_adapt, fn, "utils.meta.adapt_logistic")


def _fixture() -> tuple[tuple[np.ndarray, float], tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    return _start(), _user(7, 12), _user(8, 16)


def _query_mean_grad(w, b, query):
    t, g, y, mask = query
    r = (1 / (1 + np.exp(-(g + t @ w + b))) - y) * mask / mask.sum()
    return t.T @ r, float(r.sum())


def _check_fomaml(fn: Callable[..., tuple]) -> str:
    (w, b), support, query = _fixture()
    lr, steps = 0.05, 3
    want = meta.fomaml_gradient_logistic(w, b, support, query, lr, steps)
    got = _pair(fn(w.copy(), b, support, query, lr, steps), "the gradient")
    expect(got[0].shape == w.shape, f"the gradient for w must have the shape of w {w.shape}, got {got[0].shape}")
    w_k, b_k = meta.adapt_logistic(w, b, *support, lr, steps)
    expect(not _close(got, (w_k, b_k)), "those are the adapted weights; return the query loss's gradient there")
    expect(not _close(got, _query_mean_grad(w, b, query)),
           "that is the query gradient at the STARTING weights (plain joint training); adapt on the support first, "
           "then take the query gradient at the adapted weights")
    support_grad = _query_mean_grad(w_k, b_k, support)
    expect(not _close(got, support_grad), "that is the support loss's gradient; the outer loss is the QUERY loss")
    t, g, y, mask = query
    summed = _query_mean_grad(w_k, b_k, query)
    expect(not _close(got, (summed[0] * mask.sum(), summed[1] * mask.sum())),
           "the outer loss is the query's MEAN log loss over its real impressions: divide by the mask's sum")
    expect(not _close(got, (-want[0], -want[1])), "the sign is flipped: the gradient of the loss is t^T (p - y)")
    expect(_close(got, want), f"got {np.round(got[0], 6).tolist()}, {got[1]:.6f}; expected "
           f"{np.round(want[0], 6).tolist()}, {want[1]:.6f} (compared to a relative tolerance of {RTOL:g})")
    return f"correct: |first-order meta-gradient| = {np.linalg.norm(np.append(*got)):.5f}"


def fomaml_gradient(fn: Callable[..., tuple]) -> CheckResult:
    """Check Exercise 09.2: the first-order meta-gradient of one task."""
    return run_check("Exercise 09.2 (first-order meta-gradient)", _check_fomaml, fn,
                     "utils.meta.fomaml_gradient_logistic")


def _hessian_variant(w, b, support, query, lr, at_adapted=False, mean=False, unmasked=False, sign=-1.0):
    t, g, y, mask = support
    w1, b1 = meta.adapt_logistic(w, b, t, g, y, mask, lr, 1)
    gq = np.append(*_query_mean_grad(w1, b1, query))
    ww, bb = (w1, b1) if at_adapted else (w, b)
    p = 1 / (1 + np.exp(-(g + t @ ww + bb)))
    m = np.ones_like(mask) if unmasked else mask
    t1 = np.hstack([t, np.ones((len(t), 1))])
    h = t1.T @ (t1 * (m * p * (1 - p))[:, None]) / (m.sum() if mean else 1.0)
    out = gq + sign * lr * h @ gq
    return out[:-1], float(out[-1])


def _check_maml(fn: Callable[..., tuple]) -> str:
    (w, b), support, query = _fixture()
    lr = 0.3  # large enough that the second-order term is far from negligible
    want = meta.maml_gradient_logistic(w, b, support, query, lr)
    got = _pair(fn(w.copy(), b, support, query, lr), "the gradient")
    expect(got[0].shape == w.shape, f"the gradient for w must have the shape of w {w.shape}, got {got[0].shape}")
    expect(not _close(got, meta.fomaml_gradient_logistic(w, b, support, query, lr, 1)),
           "that is the first-order gradient g_q: multiply it by (I - lr H_s), the Jacobian of the inner step")
    expect(not _close(got, _hessian_variant(w, b, support, query, lr, sign=1.0)),
           "the Jacobian of w' = w - lr * grad is I - lr H_s, with a minus sign")
    expect(not _close(got, _hessian_variant(w, b, support, query, lr, at_adapted=True)),
           "H_s is the support loss's Hessian at the STARTING weights, where the inner step was taken")
    expect(not _close(got, _hessian_variant(w, b, support, query, lr, mean=True)),
           "the inner loss is summed over the support, so its Hessian is a sum too (no division by the count)")
    expect(not _close(got, _hessian_variant(w, b, support, query, lr, unmasked=True)),
           "padding rows counted in H_s: weight each row by its mask")
    expect(_close(got, want), f"got {np.round(got[0], 6).tolist()}, {got[1]:.6f}; expected "
           f"{np.round(want[0], 6).tolist()}, {want[1]:.6f} (compared to a relative tolerance of {RTOL:g})")
    first = np.append(*meta.fomaml_gradient_logistic(w, b, support, query, lr, 1))
    gap = np.linalg.norm(np.append(*got) - first) / np.linalg.norm(first)
    return f"correct: the second-order term changes the meta-gradient by {gap:.0%} here"


def maml_gradient(fn: Callable[..., tuple]) -> CheckResult:
    """Check Exercise 09.3: the exact (second-order) meta-gradient of one inner step."""
    return run_check("Exercise 09.3 (second-order meta-gradient)", _check_maml, fn,
                     "utils.meta.maml_gradient_logistic")
