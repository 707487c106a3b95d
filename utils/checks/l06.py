"""Self-checks for lesson 06 (entire space: ESMM): choosing which impressions train which output, composing
pCTCVR from the two towers, and scoring a CVR model on the clicked impressions and on the entire space."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from utils import funnel, metrics
from utils.checks import RTOL, CheckResult, expect, run_check

#: Relative tolerance of the final comparisons: an answer computed in float32 (Keras's default) passes.

def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# -- Exercise 06.1: which impressions train which output ---------------------------------------------------

def _funnel_labels() -> tuple[np.ndarray, np.ndarray]:
    click = np.array([0, 1, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0])
    purchase = np.array([0, 1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0])
    return click, purchase


def _as_pair(value: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    expect(isinstance(value, (tuple, list)) and len(value) == 2,
           f"{name!r} must be a pair (rows, labels): a boolean mask over the impressions and the selected rows' labels")
    rows = np.asarray(value[0])
    labels = np.asarray(value[1]).ravel()
    expect(rows.dtype == bool, f"{name!r}: rows must be a boolean mask (True = the row trains this output), "
                               f"got dtype {rows.dtype}")
    return rows.ravel(), labels


def _check_sets(fn: Callable[..., Any]) -> str:
    click, purchase = _funnel_labels()
    want = funnel.tower_training_sets(click, purchase)
    got = fn(click.copy(), purchase.copy())
    expect(isinstance(got, dict), "return a dict {'base_cvr': ..., 'esmm_ctr': ..., 'esmm_ctcvr': ...}")
    expect(sorted(got) == sorted(want), f"the keys must be {sorted(want)}, got {sorted(got)}")
    n, clicked = len(click), click == 1
    sets = {name: _as_pair(got[name], name) for name in want}
    for name, (rows, labels) in sets.items():
        expect(rows.shape == (n,), f"{name!r}: the mask needs one entry per impression ({n}), has {rows.size}")
        expect(labels.size == rows.sum(),
               f"{name!r}: give the labels of the selected rows only ({rows.sum()} of them), got {labels.size}")
    rows, labels = sets["base_cvr"]
    expect(not rows.all(), "BASE trains on the clicked impressions only; all impressions with non-clicks as "
                           "negatives is the AMAN baseline, which learns 'click and buy', not 'buy given click'")
    expect(np.array_equal(rows, clicked), "BASE's rows are the clicked impressions (click == 1)")
    expect(np.array_equal(labels, purchase[clicked]), "BASE's label on a clicked impression is the purchase")
    rows, labels = sets["esmm_ctr"]
    expect(rows.all(), "ESMM's CTR loss sees every impression: on clicked rows only, every click label is 1")
    expect(np.array_equal(labels, click), "the CTR loss's label is the click")
    rows, labels = sets["esmm_ctcvr"]
    expect(not np.array_equal(rows, clicked),
           "ESMM's CTCVR loss must see every impression: on the clicked rows only it is BASE's CVR loss again, "
           "with the same sample-selection bias")
    expect(rows.all(), "ESMM's CTCVR loss sees every impression")
    expect(not np.array_equal(labels, click), "the CTCVR label is click AND purchase, not the click")
    expect(np.array_equal(labels, click * purchase), "the CTCVR label is click * purchase (1 only if both)")
    return (f"correct: BASE learns from {int(clicked.sum())} of {n} impressions, ESMM's two losses from all {n}; "
            "the CVR output has no loss of its own")


def tower_training_sets(fn: Callable[..., Any]) -> CheckResult:
    """Check Exercise 06.1: the rows and labels that train BASE's CVR model and ESMM's two losses."""
    return run_check("Exercise 06.1 (which impressions train which output)", _check_sets, fn,
                     "utils.funnel.tower_training_sets")


# -- Exercise 06.2: pCTCVR from the towers' logits ---------------------------------------------------------

def _logits() -> tuple[np.ndarray, np.ndarray]:
    ctr_logit = np.array([-3.2, -1.0, 0.4, -4.5, 2.0, -2.2])
    cvr_logit = np.array([-5.1, -2.5, -0.3, -6.0, 1.2, -3.9])
    return ctr_logit, cvr_logit


def _check_ctcvr(fn: Callable[..., Any]) -> str:
    a, b = _logits()
    want = funnel.ctcvr_from_logits(a, b)
    got = np.asarray(fn(a.copy(), b.copy()), dtype=float).ravel()
    expect(got.shape == want.shape, f"return one pCTCVR per impression ({want.size}), got {got.size} values")
    expect(not np.allclose(got, _sigmoid(a * b)),
           "you multiplied the logits: sigmoid(a * b) is not a probability of clicking and buying (two negative "
           "logits multiply to a large positive one, so rare events get pCTCVR near 1). Multiply probabilities")
    expect(not np.allclose(got, _sigmoid(a + b)),
           "sigmoid(a + b) multiplies the odds, not the probabilities; pCTCVR = sigmoid(a) * sigmoid(b)")
    expect(not np.allclose(got, a * b), "a * b is a product of logits; turn each into a probability first")
    expect(not (np.allclose(got, _sigmoid(a)) or np.allclose(got, _sigmoid(b))),
           "that is one tower's probability; pCTCVR = pCTR * pCVR uses both")
    expect(bool(np.all((got >= 0) & (got <= 1))), "pCTCVR must be a probability in [0, 1]")
    expect(np.allclose(got, want, rtol=RTOL, atol=1e-10),
           f"got {np.round(got, 5).tolist()}, want sigmoid(ctr_logit) * sigmoid(cvr_logit) = "
           f"{np.round(want, 5).tolist()} (compared to a relative tolerance of {RTOL:g})")
    return (f"correct: pCTCVR = pCTR · pCVR, never above either factor (largest here {want.max():.4f}, "
            f"smallest {want.min():.2e})")


def ctcvr_from_logits(fn: Callable[..., Any]) -> CheckResult:
    """Check Exercise 06.2: pCTCVR composed from the CTR and CVR towers' logits."""
    return run_check("Exercise 06.2 (pCTCVR from the towers)", _check_ctcvr, fn, "utils.funnel.ctcvr_from_logits")


# -- Exercise 06.3: CVR AUC on the clicked impressions and on the entire space ------------------------------

def _evaluation_fixture() -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(6)
    n = 600
    taste = rng.normal(size=n)
    click = (rng.random(n) < _sigmoid(-1.0 + 1.2 * taste)).astype(np.int8)
    would = (rng.random(n) < _sigmoid(-1.5 + 0.8 * taste + rng.normal(scale=1.0, size=n))).astype(np.int8)
    purchase = click * would
    p_cvr = _sigmoid(-2.0 + 0.6 * taste + rng.normal(scale=0.8, size=n))
    return click, purchase, would, p_cvr


def _check_aucs(fn: Callable[..., Any]) -> str:
    click, purchase, would, p_cvr = _evaluation_fixture()
    want_clicked, want_entire = funnel.cvr_aucs(click, purchase, would, p_cvr)
    got = fn(click.copy(), purchase.copy(), would.copy(), p_cvr.copy())
    expect(isinstance(got, (tuple, list)) and len(got) == 2, "return a pair (auc_clicked, auc_entire)")
    got_clicked, got_entire = float(got[0]), float(got[1])
    clicked = click == 1
    all_purchase = metrics.auc(purchase, p_cvr)
    expect(not (np.isclose(got_clicked, want_entire) and np.isclose(got_entire, want_clicked)),
           "the two AUCs are swapped: return (AUC on clicked impressions, AUC on the entire space)")
    expect(not np.isclose(got_clicked, all_purchase),
           "for the clicked AUC, keep the clicked impressions only (click == 1): on all impressions the "
           "purchase label is 0 on every non-click, so the score also rewards predicting clicks")
    expect(np.isclose(got_clicked, want_clicked, rtol=RTOL, atol=0.0),
           f"the CVR AUC on clicked impressions is {want_clicked:.4f}, got {got_clicked:.4f}: purchase against "
           f"p_cvr where click == 1 (compared to a relative tolerance of {RTOL:g})")
    expect(not np.isclose(got_entire, all_purchase),
           "on the entire space score against would_purchase: purchase is 0 for every non-click, whether or not "
           "that user would have bought")
    expect(not np.isclose(got_entire, metrics.auc(would[clicked], p_cvr[clicked])),
           "the entire space is every impression, not only the clicked ones")
    expect(np.isclose(got_entire, want_entire, rtol=RTOL, atol=0.0),
           f"the CVR AUC on the entire space is {want_entire:.4f}, got {got_entire:.4f}: would_purchase against "
           f"p_cvr on every impression (compared to a relative tolerance of {RTOL:g})")
    return f"correct: CVR AUC {want_clicked:.4f} on the clicked impressions, {want_entire:.4f} on the entire space"


def cvr_aucs(fn: Callable[..., Any]) -> CheckResult:
    """Check Exercise 06.3: a CVR model's AUC on clicked impressions and on the entire space."""
    return run_check("Exercise 06.3 (CVR AUC, clicked and entire space)", _check_aucs, fn, "utils.funnel.cvr_aucs")
