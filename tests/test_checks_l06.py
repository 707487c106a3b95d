"""Lesson 06's self-checks accept the reference answers and reject the usual mistakes with a message that
names them."""

from __future__ import annotations

import numpy as np
import pytest

from utils import funnel, metrics
from utils.checks import l06


def _not_written(*args, **kwargs):
    raise NotImplementedError


def _sigmoid(x):
    return 1 / (1 + np.exp(-np.asarray(x, dtype=float)))


# -- Exercise 06.1 (training sets) -----------------------------------------------------------------------

def _sets_with(**changes):
    def fn(click, purchase):
        sets = funnel.tower_training_sets(click, purchase)
        everyone, clicked = np.ones(len(click), bool), click == 1
        options = {
            "base_all": ("base_cvr", (everyone, purchase)),
            "ctcvr_clicked": ("esmm_ctcvr", (clicked, purchase[clicked])),
            "ctcvr_click_label": ("esmm_ctcvr", (everyone, click)),
            "ctr_clicked": ("esmm_ctr", (clicked, click[clicked])),
            "base_label_click": ("base_cvr", (clicked, click[clicked])),
            "full_length_labels": ("base_cvr", (clicked, purchase)),
            "int_mask": ("esmm_ctr", (np.ones(len(click), int), click)),
        }
        for name in changes:
            key, value = options[name]
            sets[key] = value
        return sets
    return fn


@pytest.mark.parametrize("change, words", [
    ("base_all", "AMAN"),
    ("ctcvr_clicked", "sample-selection bias"),
    ("ctcvr_click_label", "click AND purchase"),
    ("ctr_clicked", "every impression"),
    ("base_label_click", "purchase"),
    ("full_length_labels", "selected rows only"),
    ("int_mask", "boolean mask"),
])
def test_sets_reject(change: str, words: str) -> None:
    result = l06.tower_training_sets(_sets_with(**{change: True}))
    assert result.status == "wrong" and words in result.message, result


def test_sets_reject_bad_structure() -> None:
    result = l06.tower_training_sets(lambda c, p: [c, p])
    assert result.status == "wrong" and "dict" in result.message
    result = l06.tower_training_sets(lambda c, p: {"cvr": (c == 1, p[c == 1])})
    assert result.status == "wrong" and "keys" in result.message


def test_sets_accept_and_not_attempted() -> None:
    assert l06.tower_training_sets(funnel.tower_training_sets).passed
    # purchase is already 0 wherever there was no click, so it is an equally right CTCVR label
    assert l06.tower_training_sets(
        lambda c, p: {**funnel.tower_training_sets(c, p), "esmm_ctcvr": (np.ones(len(c), bool), p)}).passed
    assert l06.tower_training_sets(_not_written).status == "not attempted"


# -- Exercise 06.2 (pCTCVR) ------------------------------------------------------------------------------

@pytest.mark.parametrize("fn, words", [
    (lambda a, b: _sigmoid(a * b), "multiplied the logits"),
    (lambda a, b: _sigmoid(a + b), "odds"),
    (lambda a, b: a * b, "product of logits"),
    (lambda a, b: _sigmoid(b), "one tower"),
    (lambda a, b: _sigmoid(a)[:3] * _sigmoid(b)[:3], "one pCTCVR per impression"),
    (lambda a, b: _sigmoid(a) * _sigmoid(b) * 1.01, "want sigmoid"),
])
def test_ctcvr_rejects(fn, words: str) -> None:
    result = l06.ctcvr_from_logits(fn)
    assert result.status == "wrong" and words in result.message, result


def test_ctcvr_accepts_and_not_attempted() -> None:
    assert l06.ctcvr_from_logits(funnel.ctcvr_from_logits).passed
    assert l06.ctcvr_from_logits(lambda a, b: _sigmoid(a) * _sigmoid(b)).passed
    # float32 answers (Keras's default dtype)
    assert l06.ctcvr_from_logits(lambda a, b: (_sigmoid(a) * _sigmoid(b)).astype(np.float32)).passed
    assert l06.ctcvr_from_logits(
        lambda a, b: (1 / (1 + np.exp(-a.astype(np.float32)))) * (1 / (1 + np.exp(-b.astype(np.float32))))).passed
    assert l06.ctcvr_from_logits(_not_written).status == "not attempted"


# -- Exercise 06.3 --------------------------------------------------------------------------------------------

def _aucs_all_rows(click, purchase, would, p):
    return metrics.auc(purchase, p), metrics.auc(would, p)


def _aucs_entire_purchase(click, purchase, would, p):
    return metrics.auc(purchase[click == 1], p[click == 1]), metrics.auc(purchase, p)


def _aucs_entire_clicked(click, purchase, would, p):
    return metrics.auc(purchase[click == 1], p[click == 1]), metrics.auc(would[click == 1], p[click == 1])


def _aucs_swapped(click, purchase, would, p):
    clicked, entire = funnel.cvr_aucs(click, purchase, would, p)
    return entire, clicked


def _aucs_off(click, purchase, would, p):
    clicked, entire = funnel.cvr_aucs(click, purchase, would, p)
    return clicked, entire + 0.01


@pytest.mark.parametrize("fn, words", [
    (_aucs_all_rows, "click == 1"),
    (_aucs_entire_purchase, "would_purchase"),
    (_aucs_entire_clicked, "not only the clicked"),
    (_aucs_swapped, "swapped"),
    (_aucs_off, "entire space is"),
    (lambda c, p, w, s: 0.5, "pair"),
])
def test_aucs_reject(fn, words: str) -> None:
    result = l06.cvr_aucs(fn)
    assert result.status == "wrong" and words in result.message, result


def test_aucs_accept_sklearn_and_not_attempted() -> None:
    from sklearn.metrics import roc_auc_score

    def with_sklearn(click, purchase, would, p):
        return roc_auc_score(purchase[click == 1], p[click == 1]), roc_auc_score(would, p)

    assert l06.cvr_aucs(funnel.cvr_aucs).passed
    assert l06.cvr_aucs(with_sklearn).passed
    assert l06.cvr_aucs(lambda c, pu, w, p: tuple(np.float32(v) for v in funnel.cvr_aucs(c, pu, w, p))).passed
    assert l06.cvr_aucs(lambda c, pu, w, p: funnel.cvr_aucs(c, pu, w, p.astype(np.float32))).passed
    assert l06.cvr_aucs(_not_written).status == "not attempted"


def test_check_messages_are_deterministic() -> None:
    first = [repr(l06.ctcvr_from_logits(funnel.ctcvr_from_logits)), repr(l06.cvr_aucs(funnel.cvr_aucs)),
             repr(l06.tower_training_sets(funnel.tower_training_sets))]
    second = [repr(l06.ctcvr_from_logits(funnel.ctcvr_from_logits)), repr(l06.cvr_aucs(funnel.cvr_aucs)),
              repr(l06.tower_training_sets(funnel.tower_training_sets))]
    assert first == second
