"""Self-checks for lesson 00 (setup): the warm-up exercise."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from utils.checks import CheckResult, expect, run_check


def _reference_log_loss(y: np.ndarray, p: np.ndarray, eps: float = 1e-7) -> float:
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _check_log_loss(fn: Callable[..., float]) -> str:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=200).astype("float64")
    p = rng.uniform(0.01, 0.99, size=200)
    want = _reference_log_loss(y, p)
    got = fn(y, p)
    expect(np.ndim(got) == 0, f"return one number (the mean over examples), got an array of shape {np.shape(got)}")
    got = float(got)
    expect(np.isfinite(got), f"got {got} on ordinary probabilities; check the logarithms")
    expect(not np.isclose(got, want * len(y), rtol=1e-4), "you return the sum over examples: take the mean instead")
    expect(not np.isclose(got, -want, rtol=1e-4), "the sign is flipped: the log loss is the NEGATIVE mean log-likelihood")
    expect(not np.isclose(got, want / np.log(10), rtol=1e-4), "use the natural logarithm (np.log), not log10")
    only_pos = float(-np.mean(y * np.log(p)))
    expect(not np.isclose(got, only_pos, rtol=1e-4),
           "only the y·log(p) term is there: add (1 − y)·log(1 − p) for the negative examples")
    expect(np.isclose(got, want, rtol=1e-5), f"on 200 random examples you get {got:.6f}, the log loss is {want:.6f}")
    edge = fn(np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    expect(np.isfinite(float(edge)),
           "a probability of exactly 0 or 1 on the wrong label gives inf: clip p into [eps, 1 − eps] first")
    expect(float(edge) > 10, f"confidently wrong predictions must cost a lot, got only {float(edge):.3f}")
    return f"correct: {got:.6f} on 200 random examples, and finite ({float(edge):.1f}) when p is exactly 0 or 1"


def binary_log_loss(fn: Callable[..., float]) -> CheckResult:
    """Check Exercise 00.1: the mean binary log loss, natural log, with clipping."""
    return run_check("Exercise 00.1 (binary log loss)", _check_log_loss, fn,
                     "keras.losses.binary_crossentropy")
