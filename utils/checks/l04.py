"""Self-checks for lesson 04 (the joint log loss): the masked joint loss, the gradient of a logistic head,
and the uncertainty-weighted total."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from utils import losses
from utils.checks import CheckResult, expect, run_check


def _joint_fixture() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """12 rows, 3 binary tasks (click on every row, purchase on clicks, a rare third task), weights."""
    rng = np.random.default_rng(11)
    n = 12
    y = (rng.random((n, 3)) < np.array([0.4, 0.3, 0.5])).astype(float)
    p = rng.uniform(0.05, 0.95, (n, 3))
    mask = np.ones((n, 3))
    mask[:, 1] = y[:, 0]  # purchase labelled on clicked rows only
    mask[:, 2] = 0.0
    mask[:3, 2] = 1.0
    y = np.where(mask == 1, y, 1.0)  # a masked label's value is arbitrary: here 1, to catch unmasked sums
    return y, p, mask, np.array([1.0, 2.0, 0.5])


def _check_joint(fn: Callable[..., float]) -> str:
    y, p, mask, c = _joint_fixture()
    want = losses.masked_joint_log_loss(y, p, mask, c)
    got = float(fn(y, p, mask, c))
    expect(np.isfinite(got), f"got {got}: clip nothing here, every probability is in (0.05, 0.95)")
    expect(not np.isclose(got, losses.masked_joint_log_loss(y, p, np.ones_like(mask), c)),
           "masked labels counted: multiply each row's loss by its mask (0 = not observed) before summing")
    no_labels = float(np.sum(c * np.sum(mask * -np.log(p), axis=0)) / len(y))
    expect(not np.isclose(got, no_labels),
           "that is -log p with no label: the Bernoulli likelihood is p^y (1-p)^(1-y), so use -[y log p + (1-y) log(1-p)]")
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    per_label = float(np.sum(c * np.sum(mask * bce, axis=0) / mask.sum(axis=0)))
    expect(not np.isclose(got, per_label),
           "you divided each task by its number of labels; Keras divides every task by the batch size n "
           "(sum_over_batch_size), masked rows included")
    expect(not np.isclose(got, losses.masked_joint_log_loss(y, p, mask)),
           "the task weights are missing: multiply task t's term by task_weights[t]")
    expect(not np.isclose(got, want * len(y)), "divide the weighted sum by the number of rows n")
    expect(np.isclose(got, want, rtol=1e-9), f"got {got:.6f}, the masked joint log loss is {want:.6f}")
    return f"correct: {got:.6f}, the same reduction as Keras's compile(loss=..., loss_weights=...)"


def masked_joint_log_loss(fn: Callable[..., float]) -> CheckResult:
    """Check Exercise 04.1: the masked, weighted joint log loss of binary tasks."""
    return run_check("Exercise 04.1 (masked joint log loss)", _check_joint, fn, "utils.losses.masked_joint_log_loss")


def _gradient_fixture() -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(20, 4))
    y = (rng.random(20) < 0.35).astype(float)
    w = rng.normal(size=4) * 0.5
    s = rng.uniform(0.0, 2.0, 20)
    return x, y, w, np.float64(-0.2), s


def _check_gradient(fn: Callable[..., tuple]) -> str:
    x, y, w, b, s = _gradient_fixture()
    want_w, want_b = losses.logistic_head_gradient(x, y, w, b, s)
    got = fn(x, y, w, b, s)
    expect(isinstance(got, tuple) and len(got) == 2, "return a pair (dL/dw, dL/db)")
    got_w, got_b = np.asarray(got[0], dtype=float).reshape(-1), float(got[1])
    expect(got_w.shape == want_w.shape, f"dL/dw must have one entry per weight ({want_w.size}), got {got_w.size}")
    expect(not np.allclose(got_w, -want_w, rtol=1e-6),
           "the sign is flipped: the gradient of the loss is X^T (p - y), not X^T (y - p)")
    plain_w, plain_b = losses.logistic_head_gradient(x, y, w, b)
    expect(not np.allclose(got_w, plain_w, rtol=1e-6), "the sample weights are missing: multiply (p - y) by them")
    expect(not np.allclose(got_w, want_w * len(y), rtol=1e-6),
           "divide by n, the batch size: Keras's loss is the weighted sum over the batch / n")
    p = 1 / (1 + np.exp(-(x @ w + b)))
    expect(not np.allclose(got_w, x.T @ ((p - y) * s * p * (1 - p)) / len(y), rtol=1e-6),
           "no p(1-p) factor: it cancels against the cross-entropy's 1/(p(1-p))")
    expect(np.allclose(got_w, want_w, rtol=1e-8, atol=1e-12), "dL/dw is wrong: it is X^T ((p - y) * s) / n")
    expect(np.isclose(got_b, want_b, rtol=1e-8, atol=1e-12), "dL/db is wrong: it is sum((p - y) * s) / n")
    return f"correct: |dL/dw| = {np.linalg.norm(got_w):.4f}, dL/db = {got_b:.4f}"


def logistic_head_gradient(fn: Callable[..., tuple]) -> CheckResult:
    """Check Exercise 04.2: the closed-form gradient of a weighted logistic head."""
    return run_check("Exercise 04.2 (gradient of a logistic head)", _check_gradient, fn,
                     "utils.losses.logistic_head_gradient")


def _check_uncertainty(fn: Callable[..., float]) -> str:
    task_losses, log_vars = np.array([0.15, 0.02, 0.6]), np.array([0.5, -1.0, 0.3])
    kinds = ["binary", "binary", "regression"]
    want = losses.uncertainty_weighted_loss(task_losses, log_vars, kinds)
    got = float(fn(task_losses, log_vars, kinds))
    expect(not np.isclose(got, float(np.sum(np.exp(-log_vars) * task_losses * [1, 1, 0.5]))),
           "the s_t / 2 term is missing: without it every variance grows without bound and the loss goes to 0")
    expect(not np.isclose(got, float(np.sum(np.exp(log_vars) * task_losses * [1, 1, 0.5] + 0.5 * log_vars))),
           "the weight is exp(-s_t) = 1 / sigma^2, not exp(s_t)")
    expect(not np.isclose(got, float(np.sum(np.exp(-log_vars) * task_losses + 0.5 * log_vars))),
           "a regression task's factor is 1/2 (the Gaussian's 1/(2 sigma^2)); a classification task's is 1")
    expect(not np.isclose(got, float(np.sum(np.exp(-log_vars) * task_losses + log_vars))),
           "that is the simplified exp(-s) L + s for every task; here use c_t exp(-s_t) L_t + s_t / 2")
    expect(np.isclose(got, want, rtol=1e-9), f"got {got:.6f}, the uncertainty-weighted loss is {want:.6f}")
    return f"correct: {got:.6f}; the effective weights are {np.round(np.exp(-log_vars) * [1, 1, 0.5], 3).tolist()}"


def uncertainty_weighted_loss(fn: Callable[..., float]) -> CheckResult:
    """Check Exercise 04.3: Kendall et al.'s uncertainty-weighted total loss."""
    return run_check("Exercise 04.3 (uncertainty weighting)", _check_uncertainty, fn,
                     "utils.weighting.UncertaintyWeighting")
