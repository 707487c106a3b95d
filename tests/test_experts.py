"""The expert layers compute what the papers define (checked against NumPy), gate as they should, and
survive a save → load → predict round trip, gates included."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from utils.experts import (
    CGC,
    PLE,
    ExpertBank,
    MixtureOfExperts,
    expert_layer,
    gate_model,
    gate_weights,
    mmoe_model,
    ple_model,
)
from utils.models import Task, build_inputs, compile_model, feature_arrays, feature_spec, shared_bottom_model
from utils.shopsim import generate

RNG = np.random.default_rng(0)
X = RNG.normal(size=(32, 6)).astype("float32")
TASKS = [Task("a", "regression"), Task("b", "binary")]


def _relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0.0)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _bank_numpy(bank: ExpertBank, x: np.ndarray) -> np.ndarray:
    """The experts one by one, as separate Dense + ReLU stacks would compute them."""
    out = []
    for kernels, biases in zip(bank.kernels, bank.biases):
        h = x
        for k, b in zip(kernels, biases):
            h = _relu(h @ k.numpy() + b.numpy())
        out.append(h)
    return np.stack(out, axis=1)


@pytest.mark.parametrize("units", [(5,), (7, 3), (4, 4, 2)])
def test_expert_bank_equals_separate_experts(units: tuple[int, ...]) -> None:
    bank = ExpertBank(3, units)
    got = keras.ops.convert_to_numpy(bank(X))
    assert got.shape == (32, 3, units[-1])
    np.testing.assert_allclose(got, _bank_numpy(bank, X), rtol=1e-5, atol=1e-6)


def test_mmoe_is_the_gate_weighted_sum_of_experts() -> None:
    layer = MixtureOfExperts(4, (5,), num_tasks=2)
    outputs, gates = layer(X)
    experts = _bank_numpy(layer.bank, X)
    kernel, bias = (w.numpy() for w in layer.gate.weights)
    logits = (X @ kernel + bias).reshape(-1, 2, 4)
    for t in range(2):
        g = _softmax(logits[:, t])
        np.testing.assert_allclose(keras.ops.convert_to_numpy(gates[t]), g, rtol=1e-5, atol=1e-6)
        want = np.einsum("be,beu->bu", g, experts)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(outputs[t]), want, rtol=1e-5, atol=1e-6)
    # two gates that differ: the tasks weigh the experts differently
    assert not np.allclose(keras.ops.convert_to_numpy(gates[0]), keras.ops.convert_to_numpy(gates[1]))


def test_omoe_has_one_gate_for_every_task() -> None:
    layer = MixtureOfExperts(4, (5,), num_tasks=3, gates="one")
    outputs, gates = layer(X)
    assert layer.gate.units == 4  # one gate of 4 logits, not 3 x 4
    for t in (1, 2):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(outputs[t]), keras.ops.convert_to_numpy(outputs[0]))
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(gates[t]), keras.ops.convert_to_numpy(gates[0]))


def test_cgc_task_gate_sees_its_own_and_shared_experts_only() -> None:
    layer = CGC(num_tasks=2, task_experts=2, shared_experts=3, expert_units=(4,))
    outputs, gates = layer(X)
    assert [tuple(g.shape) for g in gates] == [(32, 5), (32, 5)]
    before = keras.ops.convert_to_numpy(outputs[0])
    # scrambling task b's experts must not move task a's output
    bank_b = layer.task_banks[1]
    for w in bank_b.weights:
        w.assign(w.numpy() + RNG.normal(size=w.shape).astype("float32"))
    after_outputs, _ = layer(X)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(after_outputs[0]), before, rtol=1e-6)
    assert not np.allclose(keras.ops.convert_to_numpy(after_outputs[1]), keras.ops.convert_to_numpy(outputs[1]))


def test_cgc_shared_output_mixes_every_expert() -> None:
    layer = CGC(num_tasks=2, task_experts=1, shared_experts=2, expert_units=(4,), output_shared=True)
    outputs, gates = layer([X, X, X])
    assert len(outputs) == 3 and tuple(gates[-1].shape) == (32, 4)
    with pytest.raises(ValueError, match="takes one tensor or 3"):
        layer([X, X])


def test_ple_stacks_levels_and_returns_last_gates() -> None:
    layer = PLE(num_tasks=2, levels=3, task_experts=1, shared_experts=2, expert_units=(6, 4))
    outputs, gates = layer(X)
    assert [tuple(o.shape) for o in outputs] == [(32, 4), (32, 4)]
    assert [tuple(g.shape) for g in gates] == [(32, 3), (32, 3)]
    assert [level.output_shared for level in layer.cgc] == [True, True, False]
    for g in gates:
        np.testing.assert_allclose(keras.ops.convert_to_numpy(g).sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("make, match", [
    (lambda: MixtureOfExperts(4, gates="two"), "gates must be one of"),
    (lambda: MixtureOfExperts(0), "num_experts must be an integer >= 1"),
    (lambda: MixtureOfExperts(2, expert_units=()), "expert_units must be one or more widths"),
    (lambda: MixtureOfExperts(2, num_tasks=2, task_names=["a"]), "task_names must be 2 distinct names"),
    (lambda: PLE(levels=0), "levels must be an integer >= 1"),
])
def test_bad_arguments_are_refused(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_build_inputs_dense_width() -> None:
    inputs, x = build_inputs(6)
    assert inputs is x and tuple(x.shape) == (None, 6) and x.name == "x"
    with pytest.raises(ValueError, match="width >= 1"):
        build_inputs(0)
    with pytest.raises(TypeError, match="FeatureSpec"):
        build_inputs("user_id")


@pytest.fixture(scope="module")
def shop():
    data = generate("tiny", seed=3)
    frame = data.impressions.head(4000)
    spec = feature_spec(frame, categorical=["user_id", "item_id", "position"])
    return frame, spec


BUILDERS = {
    "mmoe": lambda inputs: mmoe_model(inputs, SHOP_TASKS, num_experts=3, expert_units=(8,), tower=(4,)),
    "omoe": lambda inputs: mmoe_model(inputs, SHOP_TASKS, num_experts=3, expert_units=(8,), tower=(4,), gates="one"),
    "ple": lambda inputs: ple_model(inputs, SHOP_TASKS, levels=2, task_experts=1, shared_experts=2, expert_units=(8,)),
}
SHOP_TASKS = [Task("click", "binary"), Task("cart", "binary")]


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_round_trip_with_gates(kind: str, shop, tmp_path: Path) -> None:
    frame, spec = shop
    model = compile_model(BUILDERS[kind](spec), SHOP_TASKS)
    x = feature_arrays(frame, spec)
    y = {t.name: frame[t.name].to_numpy("float32")[:, None] for t in SHOP_TASKS}
    model.fit(x, y, epochs=1, batch_size=512, verbose=0)
    path = tmp_path / f"{kind}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    before, after = model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    for name in before:
        np.testing.assert_allclose(after[name], before[name], rtol=1e-6, atol=1e-7)
    g_before, g_after = gate_weights(model, x), gate_weights(loaded, x)
    assert set(g_before) == {"click", "cart"}
    for name in g_before:
        np.testing.assert_allclose(g_after[name], g_before[name], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(g_before[name].sum(axis=1), 1.0, rtol=1e-5)
    assert expert_layer(loaded).name == "experts"


def test_dense_input_models_and_gate_model() -> None:
    model = mmoe_model(6, TASKS, num_experts=2, expert_units=(4,))
    assert model.name == "mmoe" and set(model.output) == {"a", "b"}
    gm = gate_model(model)
    out = gm.predict(X, verbose=0)
    assert out["a"].shape == (32, 2)
    assert mmoe_model(6, TASKS, gates="one").name == "omoe"


def test_gate_model_needs_an_expert_layer() -> None:
    with pytest.raises(ValueError, match="no MixtureOfExperts, CGC or PLE layer"):
        gate_model(shared_bottom_model(6, TASKS))
