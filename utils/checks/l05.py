"""Self-checks for lesson 05 (experts: MMoE and PLE): the gate-weighted sum of experts, the task weight vectors
of the synthetic data, and the parameter count of an MMoE."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from utils import expert_experiments, synthetic
from utils.checks import RTOL, CheckResult, Wrong, expect, run_check

ATOL = 1e-7  # beside RTOL: the absolute slack for values near zero

# -- Exercise 05.1: the gate-weighted sum of experts ------------------------------------------------------


def _mix_fixture() -> tuple[np.ndarray, np.ndarray]:
    """5 examples, 3 experts of width 4; the last row's logits are large, to catch an overflowing exp."""
    rng = np.random.default_rng(51)
    experts = rng.normal(size=(5, 3, 4))
    logits = rng.normal(size=(5, 3)) * 2
    logits[-1] = [800.0, 799.0, 790.0]
    return experts, logits


def _softmax(z: np.ndarray, axis: int) -> np.ndarray:
    z = np.exp(z - z.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def _check_mix(fn: Callable[..., np.ndarray]) -> str:
    experts, logits = _mix_fixture()
    want = expert_experiments.mix_experts(experts, logits)
    with np.errstate(all="ignore"):  # an overflowing exp is reported below, not as a warning
        answer = np.asarray(fn(experts.copy(), logits.copy()))
    expect(answer.dtype.kind in "biuf", f"return a (B, u) array of numbers, got {answer.dtype} values")
    got = answer.astype("float64")
    expect(got.shape == want.shape,
           f"the result must be (B, u) = {want.shape}: one mixed vector per example, got shape {got.shape}; "
           f"the inputs are (B, n, u) = {experts.shape} expert outputs and (B, n) = {logits.shape} gate logits: "
           "sum over the n experts (axis 1), keep the units")
    expect(np.isfinite(got).all(),
           "the result has inf or nan on the row with large logits (around 800): subtract each row's maximum "
           "logit before exp; the softmax does not change, and exp no longer overflows")
    ok = slice(0, 4)  # the rows with moderate logits
    expect(not np.allclose(got[ok], np.einsum("ne,neu->nu", logits, experts)[ok]),
           "the raw logits were used as weights: turn them into a distribution over experts with a softmax first")
    expect(not np.allclose(got[ok], experts.mean(axis=1)[ok]),
           "every expert got the same weight: the gate's softmax weights must multiply each expert's output")
    expect(not np.allclose(got[ok], np.einsum("ne,neu->nu", _softmax(logits, axis=0), experts)[ok]),
           "the softmax ran over the batch (axis 0): each example's gate is a distribution over its n experts "
           "(axis 1)")
    hard = experts[np.arange(len(experts)), logits.argmax(axis=1)]
    expect(not np.allclose(got[ok], hard[ok]),
           "that picks the single best expert (argmax): MMoE's gate is soft, a softmax-weighted sum of all experts")
    gap = float(np.abs(got - want).max())
    expect(np.allclose(got, want, rtol=RTOL, atol=ATOL),
           f"not the gate-weighted sum (off by up to {gap:.3g}, beyond a relative tolerance of {RTOL:g}): for each "
           "example b, sum_e softmax(gate_logits[b])_e * expert_outputs[b, e, :]")
    return f"correct: {want.shape[0]} examples mixed from {experts.shape[1]} experts, stable for large logits"


def mix_experts(fn: Callable[..., np.ndarray]) -> CheckResult:
    """Check Exercise 05.1: the softmax-gated sum of expert outputs."""
    return run_check("Exercise 05.1 (gate-weighted sum of experts)", _check_mix, fn,
                     "utils.expert_experiments.mix_experts")


# -- Exercise 05.2: weight vectors with cosine similarity p -----------------------------------------------


def _check_weights(fn: Callable[..., tuple]) -> str:
    u1, u2 = synthetic.orthogonal_unit_vectors(12, np.random.default_rng(52))
    for p, c in ((0.5, 1.0), (0.9, 2.0), (-0.3, 0.7), (1.0, 1.5)):
        got = fn(u1.copy(), u2.copy(), p, c)
        expect(isinstance(got, (tuple, list)) and len(got) == 2,
               f"return a pair (w1, w2) of vectors shaped like u1 {u1.shape}")
        expect(all(np.asarray(w).dtype.kind in "biuf" for w in got), "w1 and w2 must be arrays of numbers")
        w1, w2 = (np.asarray(w).astype("float64") for w in got)
        want1, want2 = synthetic.task_weight_vectors(u1, u2, p, c)
        expect(w1.shape == want1.shape and w2.shape == want2.shape,
               f"w1 and w2 must be vectors of the input dimension {want1.shape}, got {w1.shape} and {w2.shape}")
        expect(np.allclose(w1, want1, rtol=RTOL, atol=ATOL), f"w1 must be c * u1 (p={p}, c={c}): the first task's direction is u1, "
                                       "scaled by c")
        if np.allclose(w2, (p * u1 + (1 - p) * u2) * c, rtol=RTOL, atol=ATOL):
            expect(p == 1.0, "w2 uses 1 - p for the weight of u2: with sqrt(1 - p^2) instead, w2 has norm c "
                             "and cosine p with w1 (p^2 + (1 - p^2) = 1)")
        expect(not np.allclose(w2, p * u1 + np.sqrt(1 - p * p) * u2, rtol=RTOL, atol=ATOL) or c == 1.0,
               "w2 is missing the scale c: w2 = c * (p u1 + sqrt(1 - p^2) u2)")
        cos = float(w1 @ w2 / (np.linalg.norm(w1) * np.linalg.norm(w2)))
        expect(np.isclose(cos, p, rtol=RTOL, atol=1e-6),
               f"at p={p} the cosine similarity of your w1 and w2 is {cos:.6g}, not {p} (tolerance 1e-6)")
        norm = float(np.linalg.norm(w2))
        expect(np.isclose(norm, c, rtol=RTOL, atol=ATOL),
               f"|w2| must be c = {c}, got {norm:.6g} (relative tolerance {RTOL:g})")
        expect(np.allclose(w2, want2, rtol=RTOL, atol=ATOL),
               f"w2 must be c * (p u1 + sqrt(1 - p^2) u2) (p={p}, c={c}, relative tolerance {RTOL:g})")
    return "correct: |w1| = |w2| = c and cos(w1, w2) = p for every p tried, including negative p"


def task_weights(fn: Callable[..., tuple]) -> CheckResult:
    """Check Exercise 05.2: the two task weight vectors of the synthetic data."""
    return run_check("Exercise 05.2 (weight vectors with cosine similarity p)", _check_weights, fn,
                     "utils.synthetic.task_weight_vectors")


# -- Exercise 05.3: the parameter count of an MMoE --------------------------------------------------------

_CONFIGS = (
    # d, num_experts, expert_units, tower, num_tasks, gates
    (100, 8, (16,), (8,), 2, "per_task"),
    (100, 8, (16,), (8,), 2, "one"),
    (20, 3, (12, 6), (5,), 3, "per_task"),
    (7, 2, (4,), (), 2, "per_task"),
)


def _check_count(fn: Callable[..., int]) -> str:
    for d, e, units, tower, tasks, gates in _CONFIGS:
        want = expert_experiments.mmoe_parameters(d, e, units, tower, tasks, gates)
        got = fn(d, e, units, tower, tasks, gates)
        expect(isinstance(got, (int, float, np.integer, np.floating)) and not isinstance(got, bool)
               and np.isfinite(got) and float(got).is_integer(),
               f"return a whole number (an int: the count of weights and biases), got {got!r}")
        got = int(got)
        setting = f"d={d}, {e} experts of {list(units)}, tower {list(tower)}, {tasks} tasks, gates={gates!r}"
        n_gates = tasks if gates == "per_task" else 1
        if gates == "per_task" and tasks > 1:
            one_gate = expert_experiments.mmoe_parameters(d, e, units, tower, tasks, "one")
            expect(got != one_gate, f"{setting}: you counted one gate; MMoE has one gate per task (d*E + E each)")
        if gates == "one":
            per_task = expert_experiments.mmoe_parameters(d, e, units, tower, tasks, "per_task")
            expect(got != per_task, f"{setting}: gates='one' (OMoE) has a single gate shared by all tasks")
        gate_no_bias = n_gates * e
        expect(got != want - gate_no_bias, f"{setting}: each gate is a Dense layer with biases: d*E + E parameters")
        biases = (e * sum(units) + n_gates * e + tasks * (sum(tower) + 1))
        expect(got != want - biases, f"{setting}: the biases are missing; every Dense layer has one per unit")
        heads = tasks * ((tower[-1] if tower else units[-1]) + 1)
        expect(got != want - heads, f"{setting}: each task ends in a head, Dense(1): last width + 1 parameters")
        tower_once = expert_experiments.dense_parameters(units[-1], list(tower) + [1]) if tower else 0
        expect(not tower or tasks == 1 or got != want - (tasks - 1) * tower_once,
               f"{setting}: every task has its own tower and head; count them once per task")
        expect(got != want - (e - 1) * expert_experiments.dense_parameters(d, units),
               f"{setting}: count the expert MLP once per expert ({e} of them)")
        expect(got == want, f"{setting}: got {got:,}, the model has {want:,} parameters")
    return "correct: your counts match Keras's count_params() for every configuration tried, OMoE included"


def mmoe_parameters(fn: Callable[..., int]) -> CheckResult:
    """Check Exercise 05.3: the closed-form parameter count of an MMoE (or OMoE) on a dense input."""
    return run_check("Exercise 05.3 (counting an MMoE's parameters)", _check_count, fn,
                     "utils.expert_experiments.mmoe_parameters")
