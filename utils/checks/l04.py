"""Self-checks for lesson 04 (the joint log loss): the masked joint loss, the gradient of a logistic head,
and the uncertainty-weighted total."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from utils import losses
from utils.checks import RTOL, CheckResult, Wrong, expect, run_check

ATOL = 1e-7  # beside RTOL: the absolute slack for values near zero


def _close(got: float, want: float) -> bool:
    return bool(np.isclose(got, want, rtol=RTOL, atol=ATOL))


def _one_number(got: object, what: str) -> float:
    """``got`` as a float, or Wrong saying that one number (the total over tasks) was expected."""
    arr = np.asarray(list(got.values()) if isinstance(got, dict) else got)
    if arr.dtype.kind not in "biuf" or arr.size != 1:
        raise Wrong(f"return one number, {what}; got {type(got).__name__} with shape {arr.shape}")
    return float(arr.reshape(-1)[0])


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
    got = _one_number(fn(y.copy(), p.copy(), mask.copy(), c.copy()),
                      f"the weighted sum over the {len(c)} tasks divided by n (labels, probs and mask are "
                      f"{y.shape} arrays, task_weights a ({len(c)},) array)")
    expect(np.isfinite(got), f"got {got}: clip nothing here, every probability is in (0.05, 0.95)")
    expect(not _close(got, losses.masked_joint_log_loss(y, p, np.ones_like(mask), c)),
           "masked labels counted: multiply each row's loss by its mask (0 = not observed) before summing")
    no_labels = float(np.sum(c * np.sum(mask * -np.log(p), axis=0)) / len(y))
    expect(not _close(got, no_labels),
           "that is -log p with no label: the Bernoulli likelihood is p^y (1-p)^(1-y), so use -[y log p + (1-y) log(1-p)]")
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    per_label = float(np.sum(c * np.sum(mask * bce, axis=0) / mask.sum(axis=0)))
    expect(not _close(got, per_label),
           "you divided each task by its number of labels; Keras divides every task by the batch size n "
           "(sum_over_batch_size), masked rows included")
    all_labels = float(np.sum(c * np.sum(mask * bce, axis=0)) / mask.sum())
    expect(not _close(got, all_labels),
           "you divided by the total number of observed labels; Keras divides every task by the batch size n "
           "(sum_over_batch_size), masked rows included")
    expect(not _close(got, want / len(c)),
           f"you averaged over the {len(c)} tasks too: the joint loss is the weighted sum over tasks, each term "
           "divided by n only")
    expect(not _close(got, losses.masked_joint_log_loss(y, p, mask)),
           "the task weights are missing: multiply task t's term by task_weights[t]")
    expect(not _close(got, want * len(y)), "divide the weighted sum by the number of rows n")
    expect(not _close(got, want / np.log(10)), "use the natural logarithm (np.log), not log10")
    expect(_close(got, want), f"got {got:.8g}, the masked joint log loss is {want:.8g} (a relative tolerance of "
           f"{RTOL:g} is allowed)")
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
    got = fn(x.copy(), y.copy(), w.copy(), b, s.copy())
    expect(isinstance(got, (tuple, list)) and len(got) == 2,
           f"return a pair (dL/dw, dL/db): dL/dw of shape ({w.size},) like w, dL/db one number")
    got_w = np.asarray(got[0])
    expect(got_w.dtype.kind in "biuf", f"dL/dw must be an array of numbers, got {type(got[0]).__name__}")
    got_w = got_w.astype("float64").reshape(-1)
    got_b = _one_number(got[1], "dL/db (the bias has one parameter)")
    expect(got_w.shape == want_w.shape, f"dL/dw must have one entry per weight ({want_w.size}), got {got_w.size}")
    scale = ATOL + RTOL * float(np.abs(want_w).max())  # float32 errors scale with the largest entry

    def near(a: np.ndarray, b: np.ndarray) -> bool:
        return bool(np.allclose(a, b, rtol=RTOL, atol=scale))

    expect(not near(got_w, -want_w), "the sign is flipped: the gradient of the loss is X^T (p - y), not X^T (y - p)")
    plain_w, plain_b = losses.logistic_head_gradient(x, y, w, b)
    expect(not near(got_w, plain_w), "the sample weights are missing: multiply (p - y) by them")
    expect(not near(got_w, want_w * len(y)),
           "divide by n, the batch size: Keras's loss is the weighted sum over the batch / n")
    expect(not near(got_w, want_w * len(y) / s.sum()),
           "you divided by the sum of the sample weights; Keras divides the weighted sum by the batch size n "
           "(sum_over_batch_size)")
    p = 1 / (1 + np.exp(-(x @ w + b)))
    expect(not near(got_w, x.T @ ((p - y) * s * p * (1 - p)) / len(y)),
           "no p(1-p) factor: it cancels against the cross-entropy's 1/(p(1-p))")
    gap = float(np.abs(got_w - want_w).max())
    expect(near(got_w, want_w), f"dL/dw is wrong (off by up to {gap:.3g}, beyond a relative tolerance of {RTOL:g}): "
           "it is X^T ((p - y) * s) / n")
    expect(np.isclose(got_b, want_b, rtol=RTOL, atol=scale),
           f"dL/db is wrong: got {got_b:.8g}, want {want_b:.8g} (relative tolerance {RTOL:g}); it is "
           "sum((p - y) * s) / n")
    return f"correct: |dL/dw| = {np.linalg.norm(got_w):.4f}, dL/db = {got_b:.4f}"


def logistic_head_gradient(fn: Callable[..., tuple]) -> CheckResult:
    """Check Exercise 04.2: the closed-form gradient of a weighted logistic head."""
    return run_check("Exercise 04.2 (gradient of a logistic head)", _check_gradient, fn,
                     "utils.losses.logistic_head_gradient")


_UNCERTAINTY_CASES = (
    # (task losses L_t, log-variances s_t, kinds): the first is the one reported; the second has a multiclass task,
    # a classification kind that must also take c_t = 1
    (np.array([0.15, 0.02, 0.6]), np.array([0.5, -1.0, 0.3]), ["binary", "binary", "regression"]),
    (np.array([1.2, 0.4, 0.3, 0.05]), np.array([0.2, 0.7, -0.4, -1.5]), ["multiclass", "regression", "binary", "multiclass"]),
)
_UNCERTAINTY_INPUT = ("task_losses and log_vars are NumPy arrays of shape (T,) in task order (not dicts), kinds a "
                      "list of T strings such as 'binary', 'multiclass', 'regression'")


def _check_uncertainty(fn: Callable[..., float]) -> str:
    for task_losses, log_vars, kinds in _UNCERTAINTY_CASES:
        want = losses.uncertainty_weighted_loss(task_losses, log_vars, kinds)
        try:
            answer = fn(task_losses.copy(), log_vars.copy(), list(kinds))
        except (KeyError, IndexError, TypeError, AttributeError) as err:
            raise Wrong(f"your code raised {type(err).__name__}: {err}. Note: {_UNCERTAINTY_INPUT}") from None
        got = _one_number(answer, f"the total sum_t c_t exp(-s_t) L_t + s_t / 2 over the {len(kinds)} tasks "
                          f"({_UNCERTAINTY_INPUT})")
        c = np.array([0.5 if k == "regression" else 1.0 for k in kinds])
        binary_only = np.array([1.0 if k == "binary" else 0.5 for k in kinds])
        s, L = log_vars, task_losses
        expect(not _close(got, float(np.sum(c * np.exp(-s) * L))),
               "the s_t / 2 term is missing: without it every variance grows without bound and the loss goes to 0")
        expect(not _close(got, float(np.sum(c * np.exp(s) * L + 0.5 * s))),
               "the weight is exp(-s_t) = 1 / sigma^2, not exp(s_t)")
        expect(not _close(got, float(np.sum(np.exp(-s) * L + 0.5 * s))),
               "a regression task's factor is 1/2 (the Gaussian's 1/(2 sigma^2)); a classification task's is 1")
        expect(not _close(got, float(np.sum(0.5 * np.exp(-s) * L + 0.5 * s))),
               "only a regression task's factor is 1/2; a classification task's (binary or multiclass) is 1")
        expect("multiclass" not in kinds or not _close(got, float(np.sum(binary_only * np.exp(-s) * L + 0.5 * s))),
               f"kinds {kinds}: 'multiclass' is a classification kind too, so its factor is 1; only 'regression' "
               "takes 1/2")
        expect(not _close(got, float(np.sum(np.exp(-s) * L + s))),
               "that is the simplified exp(-s) L + s for every task; here use c_t exp(-s_t) L_t + s_t / 2")
        expect(not _close(got, float(np.sum(c * np.exp(-2 * s) * L + s))),
               "that treats s_t as log sigma_t; here s_t = log sigma_t^2, so the weight is exp(-s_t) and the "
               "regulariser s_t / 2")
        expect(_close(got, want), f"kinds {kinds}: got {got:.8g}, the uncertainty-weighted loss is {want:.8g} "
               f"(a relative tolerance of {RTOL:g} is allowed)")
    task_losses, log_vars, kinds = _UNCERTAINTY_CASES[0]
    got = losses.uncertainty_weighted_loss(task_losses, log_vars, kinds)
    weights = np.exp(-log_vars) * [0.5 if k == "regression" else 1.0 for k in kinds]
    return f"correct: {got:.6f}; the effective weights are {np.round(weights, 3).tolist()}"


def uncertainty_weighted_loss(fn: Callable[..., float]) -> CheckResult:
    """Check Exercise 04.3: Kendall et al.'s uncertainty-weighted total loss."""
    return run_check("Exercise 04.3 (uncertainty weighting)", _check_uncertainty, fn,
                     "utils.weighting.UncertaintyWeighting")
