"""The joint log loss of a multi-task model in NumPy, written to match what Keras computes.

Lesson 04 derives the loss from the joint likelihood and checks these functions against Keras's own
losses and gradients. They follow Keras 3's conventions exactly:

- **Per-example losses.** Binary cross-entropy ``-y log p - (1 - y) log(1 - p)`` and sparse categorical
  cross-entropy ``-log p[y]`` on probabilities clipped to ``[eps, 1 - eps]`` with ``eps = 1e-7``
  (``keras.config.epsilon()``), squared error ``(y - f)^2``; each averaged over the last axis of a
  ``(n, k)`` output (so a ``(n, 1)`` head gives one value per row). Keras computes the cross-entropies
  from the logits when a sigmoid or softmax layer produced the probabilities: the same number, without
  the clipping (the two differ only for probabilities within ``eps`` of 0 or 1).
- **Reduction.** ``sum_over_batch_size``: ``sum_i w_i * loss_i / n``, with ``n`` the number of rows in the
  batch, whatever the weights. A masked label is a weight of 0: it adds nothing to the sum but still
  counts in ``n``, so a task labelled on a fraction f of the rows weighs about f times its mean loss.
- **Joint loss.** ``sum_t loss_weight_t * task_loss_t`` (plus any regularisation losses of the model).

    >>> joint_loss({"click": y_click, "rating": y_rating}, {"click": p_click, "rating": f_rating},
    ...            kinds={"click": "binary", "rating": "regression"},
    ...            sample_weight={"click": w_click, "rating": w_rating}, loss_weights={"rating": 0.5})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = [
    "EPSILON",
    "KINDS",
    "binary_cross_entropy",
    "sparse_categorical_cross_entropy",
    "squared_error",
    "gaussian_nll",
    "per_example_loss",
    "reduce_weighted",
    "task_loss",
    "joint_loss",
    "masked_joint_log_loss",
    "unlabelled_log_loss",
    "logistic_head_gradient",
    "finite_difference_gradient",
    "uncertainty_weighted_loss",
]

#: Keras's fuzz factor (``keras.config.epsilon()``): probabilities are clipped to ``[EPSILON, 1 - EPSILON]``.
EPSILON = 1e-7
#: Task kinds and their negative log-likelihood (the loss Keras uses for them).
KINDS = {
    "binary": "Bernoulli: binary cross-entropy",
    "multiclass": "categorical: sparse categorical cross-entropy",
    "regression": "Gaussian with fixed variance: squared error",
}


def _float(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if np.isnan(array).any():
        raise ValueError(f"{name} has NaN values: mask a missing label with a sample weight of 0 (and any label)")
    return array


def _rows(values: np.ndarray) -> np.ndarray:
    """A per-element loss as one value per row: the mean over the last axis of an (n, k) array."""
    return values.mean(axis=-1) if values.ndim > 1 else values


def binary_cross_entropy(y_true: Any, y_prob: Any, epsilon: float = EPSILON) -> np.ndarray:
    """Per-row binary cross-entropy in nats, ``-y log p - (1 - y) log(1 - p)``, p clipped to [eps, 1 - eps].

    Shapes ``(n,)`` or ``(n, k)`` (then averaged over the k outputs, as Keras does).
    """
    y, p = _float(y_true, "y_true"), np.clip(_float(y_prob, "y_prob"), epsilon, 1.0 - epsilon)
    if y.shape != p.shape:
        raise ValueError(f"y_true has shape {y.shape} and y_prob {p.shape}: they must match")
    return _rows(-(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def sparse_categorical_cross_entropy(y_true: Any, y_prob: Any, epsilon: float = EPSILON) -> np.ndarray:
    """Per-row ``-log p[y]`` for integer classes ``y`` (shape ``(n,)``) and probabilities ``(n, k)``.

    The probabilities are renormalised to sum to 1 and clipped, as Keras does.
    """
    p = _float(y_prob, "y_prob")
    y = np.asarray(y_true).reshape(-1).astype(np.int64)
    if p.ndim != 2 or len(y) != len(p):
        raise ValueError(f"need classes of shape (n,) and probabilities (n, k), got {y.shape} and {p.shape}")
    if (y < 0).any() or (y >= p.shape[1]).any():
        raise ValueError(f"classes must be in 0..{p.shape[1] - 1}")
    p = np.clip(p / p.sum(axis=1, keepdims=True), epsilon, 1.0 - epsilon)
    return -np.log(p[np.arange(len(y)), y])


def squared_error(y_true: Any, y_pred: Any) -> np.ndarray:
    """Per-row squared error ``(y - f)^2`` (mean over the last axis of ``(n, k)``)."""
    y, f = _float(y_true, "y_true"), _float(y_pred, "y_pred")
    if y.shape != f.shape:
        raise ValueError(f"y_true has shape {y.shape} and y_pred {f.shape}: they must match")
    return _rows((y - f) ** 2)


def gaussian_nll(y_true: Any, y_pred: Any, log_sigma: float | np.ndarray, constant: bool = False) -> np.ndarray:
    """Per-row negative log-likelihood of ``y ~ N(f, sigma^2)``: ``(y - f)^2 / (2 sigma^2) + log sigma``.

    With a fixed sigma this is the squared error up to a factor and a constant: minimising one
    minimises the other. ``constant=True`` adds ``log(2 pi) / 2`` for the exact density.
    """
    log_sigma = np.asarray(log_sigma, dtype=np.float64)
    nll = 0.5 * np.exp(-2.0 * log_sigma) * squared_error(y_true, y_pred) + log_sigma
    return nll + 0.5 * np.log(2 * np.pi) if constant else nll


def per_example_loss(kind: str, y_true: Any, y_pred: Any) -> np.ndarray:
    """The per-row loss of a task of ``kind`` (``binary``, ``multiclass`` or ``regression``)."""
    if kind == "binary":
        return binary_cross_entropy(y_true, y_pred)
    if kind == "multiclass":
        return sparse_categorical_cross_entropy(y_true, y_pred)
    if kind == "regression":
        return squared_error(y_true, y_pred)
    raise ValueError(f"unknown task kind {kind!r}; use one of {sorted(KINDS)}")


def reduce_weighted(losses: Any, sample_weight: Any = None, reduction: str = "sum_over_batch_size") -> float:
    """Keras's reduction of per-row losses: ``sum(w * loss) / n`` (``sum_over_batch_size``, the default),
    ``sum(w * loss) / sum(w)`` (``mean_with_sample_weight``) or ``sum(w * loss)`` (``sum``)."""
    losses = np.asarray(losses, dtype=np.float64).reshape(-1)
    w = np.ones_like(losses) if sample_weight is None else np.asarray(sample_weight, np.float64).reshape(-1)
    if w.shape != losses.shape:
        raise ValueError(f"{w.size} sample weights for {losses.size} rows")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("sample weights must be finite and >= 0")
    total = float(np.sum(w * losses))
    if reduction == "sum":
        return total
    if reduction == "sum_over_batch_size":
        return total / len(losses) if len(losses) else 0.0
    if reduction == "mean_with_sample_weight":
        return total / float(w.sum()) if w.sum() > 0 else 0.0
    raise ValueError(f"unknown reduction {reduction!r}")


def task_loss(kind: str, y_true: Any, y_pred: Any, sample_weight: Any = None,
              reduction: str = "sum_over_batch_size") -> float:
    """One task's loss on a batch, as Keras reduces it: per-row loss, times weight, over the batch size."""
    return reduce_weighted(per_example_loss(kind, y_true, y_pred), sample_weight, reduction)


def joint_loss(
    y_true: Mapping[str, Any],
    y_pred: Mapping[str, Any],
    kinds: Mapping[str, str],
    sample_weight: Mapping[str, Any] | None = None,
    loss_weights: Mapping[str, float] | None = None,
    return_parts: bool = False,
) -> float | tuple[float, dict[str, float]]:
    """The masked joint loss ``sum_t loss_weight_t * sum_i w_ti loss_t(y_ti, f_ti) / n``, as Keras's
    ``compile(loss=..., loss_weights=...)`` computes it with per-task sample weights.

    Tasks are the keys of ``kinds``; a task missing from ``loss_weights`` weighs 1, from
    ``sample_weight`` gets weight 1 on every row. ``return_parts`` also returns each task's unweighted
    loss (what Keras logs as ``<task>_loss``).
    """
    sample_weight, loss_weights = dict(sample_weight or {}), dict(loss_weights or {})
    unknown = sorted((set(sample_weight) | set(loss_weights)) - set(kinds))
    if unknown:
        raise ValueError(f"weights given for unknown task(s) {unknown}; the tasks are {list(kinds)}")
    parts = {t: task_loss(kind, y_true[t], y_pred[t], sample_weight.get(t)) for t, kind in kinds.items()}
    total = float(sum(float(loss_weights.get(t, 1.0)) * value for t, value in parts.items()))
    return (total, parts) if return_parts else total


def masked_joint_log_loss(labels: Any, probs: Any, mask: Any, task_weights: Any = None) -> float:
    """Joint log loss of T binary tasks in matrix form: ``sum_t c_t * sum_i m_it * bce(y_it, p_it) / n``.

    ``labels``, ``probs`` and ``mask`` are ``(n, T)``; ``mask`` is 1 where the label is observed (the
    value of a masked label is ignored); ``task_weights`` is ``(T,)`` (default all 1).
    """
    y, p, m = _float(labels, "labels"), _float(probs, "probs"), _float(mask, "mask")
    if not (y.shape == p.shape == m.shape) or y.ndim != 2:
        raise ValueError(f"labels, probs and mask must all be (n, T); got {y.shape}, {p.shape}, {m.shape}")
    c = np.ones(y.shape[1]) if task_weights is None else np.asarray(task_weights, np.float64).reshape(-1)
    p = np.clip(p, EPSILON, 1.0 - EPSILON)
    bce = -(y * np.log(p) + (1.0 - y) * np.log1p(-p))
    return float(np.sum(c * np.sum(m * bce, axis=0)) / len(y))


def unlabelled_log_loss(probs: Any) -> float:
    """The label-free formula that circulates in tutorials, ``-sum_j log p_j``, averaged over rows.

    Not a loss of anything: it is minimised by ``p = 1`` everywhere, whatever the labels (lesson 04).
    """
    p = np.clip(_float(probs, "probs"), EPSILON, 1.0)
    return float(-np.log(p).sum(axis=-1).mean()) if p.ndim > 1 else float(-np.log(p).mean())


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def logistic_head_gradient(x: Any, y: Any, w: Any, b: float, sample_weight: Any = None) -> tuple[np.ndarray, float]:
    """Closed-form gradient of ``L = sum_i s_i bce(y_i, sigmoid(x_i . w + b)) / n`` (Keras's reduction).

    ``dL/dw = X^T ((p - y) * s) / n`` and ``dL/db = sum((p - y) * s) / n``: the sigmoid's derivative
    ``p (1 - p)`` cancels the cross-entropy's ``1 / (p (1 - p))``. Returns ``(dw, db)``.
    """
    x = _float(x, "x")
    y, w = _float(y, "y").reshape(-1), _float(w, "w").reshape(-1)
    s = np.ones(len(y)) if sample_weight is None else _float(sample_weight, "sample_weight").reshape(-1)
    residual = (_sigmoid(x @ w + float(b)) - y) * s
    return x.T @ residual / len(y), float(residual.sum() / len(y))


def finite_difference_gradient(f: Callable[[np.ndarray], float], params: Any, step: float = 1e-6) -> np.ndarray:
    """Central finite differences ``(f(p + h e_k) - f(p - h e_k)) / 2h`` of a scalar function, per coordinate.

    The error is O(h^2) from the Taylor series plus O(eps_machine / h) from rounding: h around 1e-6 in
    float64 balances them at about 1e-9 to 1e-10 relative.
    """
    params = np.array(params, dtype=np.float64)
    grad = np.zeros_like(params)
    for k in np.ndindex(params.shape):
        up, down = params.copy(), params.copy()
        up[k] += step
        down[k] -= step
        grad[k] = (f(up) - f(down)) / (2.0 * step)
    return grad


def uncertainty_weighted_loss(losses: Any, log_vars: Any, kinds: Any) -> float:
    """Kendall, Gal and Cipolla's uncertainty weighting, with s_t = log sigma_t^2 learned per task:

    ``sum_t c_t exp(-s_t) L_t + s_t / 2``, ``c_t = 1/2`` for a regression task (Gaussian likelihood,
    ``L_t`` the squared error) and ``c_t = 1`` for a classification task (a softmax/sigmoid with
    temperature sigma^2, ``L_t`` the cross-entropy). At its minimum over s_t, ``exp(s_t) = 2 c_t L_t``.
    """
    losses, s = np.asarray(losses, np.float64).reshape(-1), np.asarray(log_vars, np.float64).reshape(-1)
    kinds = [kinds] * len(losses) if isinstance(kinds, str) else list(kinds)
    if not (len(losses) == len(s) == len(kinds)):
        raise ValueError(f"{len(losses)} losses, {len(s)} log-variances and {len(kinds)} kinds: one each per task")
    factors = np.array([0.5 if k == "regression" else 1.0 for k in kinds])
    return float(np.sum(factors * np.exp(-s) * losses + 0.5 * s))
