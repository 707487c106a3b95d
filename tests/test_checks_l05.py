"""Lesson 05's self-checks accept the reference answers and reject the usual mistakes."""

from __future__ import annotations

import numpy as np
import pytest

from utils import expert_experiments, synthetic
from utils.checks import l05


def _not_written(*args, **kwargs):
    raise NotImplementedError


def _softmax(z, axis):
    z = np.exp(z - z.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


# -- 05.1 --------------------------------------------------------------------------------------------------

def _mix_naive_exp(experts, logits):
    gate = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return np.einsum("ne,neu->nu", gate, experts)


@pytest.mark.parametrize("fn, words", [
    (lambda e, g: np.einsum("ne,neu->nu", _softmax(g, 1), e)[:, None], "(B, u)"),
    (lambda e, g: np.einsum("ne,neu->ne", _softmax(g, 1), e), "(B, u)"),
    (_mix_naive_exp, "maximum"),
    (lambda e, g: np.einsum("ne,neu->nu", np.clip(g, -50, 50), e), "raw logits"),
    (lambda e, g: e.mean(axis=1), "same weight"),
    (lambda e, g: np.einsum("ne,neu->nu", _softmax(g, 0), e), "axis 0"),
    (lambda e, g: e[np.arange(len(e)), g.argmax(axis=1)], "argmax"),
    (lambda e, g: np.einsum("ne,neu->nu", _softmax(g, 1), e) + 0.01, "gate-weighted sum"),
])
def test_mix_rejects(fn, words: str) -> None:
    result = l05.mix_experts(fn)
    assert result.status == "wrong" and words in result.message, result


def test_mix_accepts_and_not_attempted() -> None:
    assert l05.mix_experts(expert_experiments.mix_experts).passed
    assert l05.mix_experts(_not_written).status == "not attempted"


def test_mix_reference_matches_the_keras_layer() -> None:
    """The NumPy reference computes what utils.experts.MixtureOfExperts computes from its experts and gate."""
    import keras

    from utils.experts import MixtureOfExperts

    x = np.random.default_rng(0).normal(size=(6, 5)).astype("float32")
    layer = MixtureOfExperts(3, (4,), num_tasks=2)
    outputs, _ = layer(x)
    experts = np.asarray(layer.bank(x))
    logits = np.asarray(layer.gate(x)).reshape(6, 2, 3)
    for t in range(2):
        assert np.allclose(expert_experiments.mix_experts(experts, logits[:, t]), keras.ops.convert_to_numpy(outputs[t]),
                           atol=1e-5)


# -- 05.2 --------------------------------------------------------------------------------------------------

def _weights_one_minus_p(u1, u2, p, c):
    return c * u1, c * (p * u1 + (1 - p) * u2)


def _weights_no_c(u1, u2, p, c):
    return c * u1, p * u1 + np.sqrt(1 - p * p) * u2


def _weights_w1_unscaled(u1, u2, p, c):
    return u1, c * (p * u1 + np.sqrt(1 - p * p) * u2)


def _weights_sqrt_1_minus_p(u1, u2, p, c):
    return c * u1, c * (p * u1 + np.sqrt(1 - p) * u2)


def _weights_normalised_sum(u1, u2, p, c):
    w2 = p * u1 + u2
    return c * u1, c * w2 / np.linalg.norm(w2)


@pytest.mark.parametrize("fn, words", [
    (_weights_one_minus_p, "1 - p"), (_weights_no_c, "scale c"), (_weights_w1_unscaled, "c * u1"),
    (_weights_sqrt_1_minus_p, "cosine similarity"), (_weights_normalised_sum, "cosine similarity"),
    (lambda u1, u2, p, c: c * u1, "pair"),
])
def test_weights_reject(fn, words: str) -> None:
    result = l05.task_weights(fn)
    assert result.status == "wrong" and words in result.message, result


def test_weights_accept_and_not_attempted() -> None:
    assert l05.task_weights(synthetic.task_weight_vectors).passed
    assert l05.task_weights(_not_written).status == "not attempted"


# -- 05.3 --------------------------------------------------------------------------------------------------

def _count(d, e, units, tower, tasks, gates):
    return expert_experiments.mmoe_parameters(d, e, units, tower, tasks, gates)


def _count_one_gate(d, e, units, tower, tasks, gates):
    return _count(d, e, units, tower, tasks, "one")


def _count_gate_per_task_always(d, e, units, tower, tasks, gates):
    return _count(d, e, units, tower, tasks, "per_task")


def _count_no_biases(d, e, units, tower, tasks, gates):
    n_gates = tasks if gates == "per_task" else 1
    widths = [d, *units]
    experts = e * sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    tw = [units[-1], *tower, 1]
    return experts + n_gates * d * e + tasks * sum(a * b for a, b in zip(tw[:-1], tw[1:]))


def _count_no_heads(d, e, units, tower, tasks, gates):
    return _count(d, e, units, tower, tasks, gates) - tasks * ((tower[-1] if tower else units[-1]) + 1)


def _count_gate_without_bias(d, e, units, tower, tasks, gates):
    return _count(d, e, units, tower, tasks, gates) - (tasks if gates == "per_task" else 1) * e


def _count_one_expert(d, e, units, tower, tasks, gates):
    return _count(d, e, units, tower, tasks, gates) - (e - 1) * expert_experiments.dense_parameters(d, units)


def _count_tower_once(d, e, units, tower, tasks, gates):
    own = expert_experiments.dense_parameters(units[-1], list(tower) + [1]) if tower else 0
    return _count(d, e, units, tower, tasks, gates) - (tasks - 1) * own


@pytest.mark.parametrize("fn, words", [
    (_count_one_gate, "one gate per task"), (_count_gate_per_task_always, "single gate"),
    (_count_no_biases, "biases are missing"), (_count_no_heads, "head"),
    (_count_gate_without_bias, "d*E + E"), (_count_one_expert, "once per expert"),
    (_count_tower_once, "once per task"), (lambda *a: _count(*a) + 1, "parameters"),
    (lambda *a: _count(*a) + 0.5, "whole number"),
])
def test_count_rejects(fn, words: str) -> None:
    result = l05.mmoe_parameters(fn)
    assert result.status == "wrong" and words in result.message, result


def test_count_accepts_and_not_attempted() -> None:
    assert l05.mmoe_parameters(_count).passed
    assert l05.mmoe_parameters(_not_written).status == "not attempted"


# -- float32 and other valid variants, more mistakes ----------------------------------------------------------

def _mix_notebook(expert_outputs, gate_logits):
    """The reference answer of solutions/05_experts_mmoe_ple.ipynb."""
    z = gate_logits - gate_logits.max(axis=1, keepdims=True)
    gate = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return (gate[:, :, None] * expert_outputs).sum(axis=1)


def _mix_keras(expert_outputs, gate_logits):
    """Keras's softmax and a float32 einsum: within 1e-7 of the float64 answer."""
    import keras

    gate = keras.ops.softmax(keras.ops.convert_to_tensor(gate_logits, "float32"), axis=-1)
    mixed = keras.ops.einsum("be,beu->bu", gate, keras.ops.convert_to_tensor(expert_outputs, "float32"))
    return keras.ops.convert_to_numpy(mixed)


@pytest.mark.parametrize("fn", [_mix_notebook, _mix_keras,
                                lambda e, g: _mix_notebook(e.astype("float32"), g.astype("float32"))])
def test_mix_accepts_valid_variants(fn) -> None:
    result = l05.mix_experts(fn)
    assert result.passed, result


def test_mix_reference_message_unchanged() -> None:
    assert repr(l05.mix_experts(_mix_notebook)) == (
        "✅ Exercise 05.1 (gate-weighted sum of experts): correct: 5 examples mixed from 3 experts, stable for "
        "large logits")


@pytest.mark.parametrize("fn, words", [
    (lambda e, g: _mix_notebook(e, g) * (1 + 1e-3), "relative tolerance"),
    (lambda e, g: _mix_notebook(e, g).T, "(B, n, u)"),
    (lambda e, g: np.full((5, 4), "x"), "array of numbers"),
])
def test_mix_rejects_more(fn, words: str) -> None:
    result = l05.mix_experts(fn)
    assert result.status == "wrong" and words in result.message, result


def _weights_float32(u1, u2, p, c):
    u1, u2 = u1.astype("float32"), u2.astype("float32")
    return np.float32(c) * u1, np.float32(c) * (np.float32(p) * u1 + np.sqrt(np.float32(1 - p * p)) * u2)


@pytest.mark.parametrize("fn", [_weights_float32, lambda u1, u2, p, c: list(synthetic.task_weight_vectors(u1, u2, p, c))])
def test_weights_accept_valid_variants(fn) -> None:
    result = l05.task_weights(fn)
    assert result.passed, result


def test_weights_reference_message_unchanged() -> None:
    assert repr(l05.task_weights(lambda u1, u2, p, c: (c * u1, c * (p * u1 + np.sqrt(1 - p**2) * u2)))) == (
        "✅ Exercise 05.2 (weight vectors with cosine similarity p): correct: |w1| = |w2| = c and cos(w1, w2) = p for "
        "every p tried, including negative p")


def _count_keras(d, e, units, tower, tasks, gates):
    """Build the model and let Keras count."""
    from utils.experts import mmoe_model
    from utils.models import Task

    model = mmoe_model(d, [Task(f"y{t}", "regression") for t in range(tasks)], e, units, tower, gates=gates)
    return model.count_params()


@pytest.mark.parametrize("fn", [_count, _count_keras, lambda *a: np.int64(_count(*a)), lambda *a: float(_count(*a))])
def test_count_accepts_valid_variants(fn) -> None:
    result = l05.mmoe_parameters(fn)
    assert result.passed, result


@pytest.mark.parametrize("fn, words", [(lambda *a: None, "whole number"), (lambda *a: str(_count(*a)), "an int")])
def test_count_rejects_more(fn, words: str) -> None:
    result = l05.mmoe_parameters(fn)
    assert result.status == "wrong" and words in result.message, result
