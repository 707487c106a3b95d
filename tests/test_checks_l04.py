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
