"""Self-checks for lesson 07 (transfer and fine-tuning): freezing a pretrained model's bottom so that it stays
frozen, discriminative learning rates by layer group, and the linear embedding map of EMCDR."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from utils.checks import RTOL, CheckResult, expect, run_check

#: Relative tolerance of every numeric comparison: an answer computed in float32 (Keras's default) passes.
# -- Exercise 07.1: freeze the bottom, then compile again ------------------------------------------------------


class _Traced:
    """Stands in for the training step Keras traced when the model was last fitted."""

    def __repr__(self) -> str:
        return "<the training step traced before freezing>"


def _toy_model() -> Any:
    """A small compiled shared-bottom model (two embeddings, a bottom, a tower and head per task)."""
    from utils.models import Task, compile_model, feature_spec, shared_bottom_model

    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"item_id": rng.integers(0, 20, 100), "position": rng.integers(1, 5, 100)})
    spec = feature_spec(frame, categorical=["item_id", "position"], embedding_dim=3)
    tasks = [Task("click", "binary"), Task("purchase", "binary")]
    model = compile_model(shared_bottom_model(spec, tasks, bottom=(4,), tower=(3,)), tasks)
    model.train_function = _Traced()  # as if it had been fitted: the training step exists already
    # ... and its optimizer has taken steps: Adam's moment estimates exist and its step count is not zero
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(10)
    for slot in model.optimizer.variables:
        if slot.path.endswith(("_momentum", "_velocity")):
            slot.assign(np.full(slot.shape, 0.01, dtype=slot.dtype))
    return model


def _check_freeze(fn: Callable[[Any], Any]) -> str:
    import keras

    model = _toy_model()
    old_optimizer = model.optimizer
    returned = fn(model)
    expect(returned is None or returned is model, "return the model you were given (or nothing): freeze it in place")
    layers = {layer.name: layer for layer in model.layers if layer.weights}
    top = [n for n in layers if n.startswith(("tower_", "head_"))]
    bottom = [n for n in layers if n not in top]
    expect(model.trainable, "model.trainable = False freezes every layer, the new head too: freeze layer by layer")
    frozen_top = [n for n in top if not layers[n].trainable]
    expect(not frozen_top, f"{frozen_top} are frozen: the towers and heads are what the target data should train")
    moving = [n for n in bottom if layers[n].trainable]
    embeddings = [n for n in moving if n.endswith("_embedding")]
    expect(not embeddings, f"the embeddings {embeddings} still train: they are the bottom of the network too "
                           "(and hold most of its parameters)")
    expect(not moving, f"{moving} still train: freeze the shared bottom MLP as well")
    expect(not isinstance(model.train_function, _Traced),
           "the model was not compiled again: Keras builds the training step when it first trains, with the "
           "trainable flags of that moment, and keeps using it, so the 'frozen' layers would go on moving; call "
           "model.compile(...) after changing trainable")
    expect(getattr(model, "compiled", False) and isinstance(model.loss, dict) and sorted(model.loss) == ["click", "purchase"],
           "compile with a loss for each task again (model.loss holds the ones it had)")
    expect(isinstance(model.optimizer, keras.optimizers.Optimizer), "compile with an optimizer")
    reused = model.optimizer is old_optimizer or int(np.asarray(model.optimizer.iterations)) != 0
    expect(not reused,
           "you compiled again with the model's old optimizer: its moment estimates (and step count) from the "
           "earlier training carry over, so the first steps after freezing are not those of a fresh start; "
           "recompile with a fresh optimizer, e.g. model.compile(optimizer=keras.optimizers.Adam(1e-3), "
           "loss=model.loss)")
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    total = int(sum(np.prod(w.shape) for w in model.weights))
    return (f"correct: {len(bottom)} bottom layers frozen, {len(top)} tower and head layers train "
            f"({trainable} of {total} parameters), and the model is compiled again")


def freeze_bottom(fn: Callable[[Any], Any]) -> CheckResult:
    """Check Exercise 07.1: freeze embeddings and bottom, keep the top trainable, re-compile."""
    return run_check("Exercise 07.1 (freeze the bottom)", _check_freeze, fn, "utils.transfer.freeze_bottom")


# -- Exercise 07.2: discriminative learning rates ---------------------------------------------------------------


def _check_rates(fn: Callable[..., dict]) -> str:
    from utils.transfer import discriminative_rates

    order = ["heads", "towers", "bottom", "embeddings"]
    want = discriminative_rates(2e-3, order, 2.6)
    got = fn(2e-3, list(order), 2.6)
    expect(isinstance(got, dict), f"return a dict group -> learning rate, got {type(got).__name__}")
    expect(sorted(got) == sorted(order), f"one rate per group {order}, got keys {sorted(got)}")
    values = {g: float(got[g]) for g in order}
    got_list = [values[g] for g in order]

    def same(rates: list[float]) -> bool:  # relative tolerance 1e-5: a float32 answer is accepted
        return bool(np.allclose(got_list, rates, rtol=RTOL, atol=0.0))

    expect(not same([want[g] for g in reversed(order)]),
           "the order is reversed: the top group (the head, listed first) gets the full rate, the embeddings the least")
    expect(not same([2e-3 * 2.6**i for i in range(4)]),
           "the rates grow downwards: divide by the factor for each step down, do not multiply")
    expect(not same([2e-3 / 2.6 ** (i + 1) for i in range(4)]),
           "the top group keeps the base rate itself: the first division is for the group below it")
    expect(not same([2e-3 / (2.6 * i) if i else 2e-3 for i in range(4)]),
           "each step down divides once more by the factor: base / factor**depth, not base / (factor * depth)")
    expect(same([want[g] for g in order]),
           f"got {values}; want {want}, base_rate / factor**depth with depth 0 for the first group of order "
           f"(compared to a relative tolerance of {RTOL:g})")
    other = fn(1.0, ["a", "b"], 10.0)
    expect(isinstance(other, dict) and sorted(other) == ["a", "b"]
           and np.allclose([float(other["a"]), float(other["b"])], [1.0, 0.1], rtol=RTOL, atol=0.0),
           "use the base_rate, order and factor you are given, not fixed ones")
    return "correct: " + ", ".join(f"{g} {values[g]:.2e}" for g in order)


def discriminative_rates(fn: Callable[..., dict]) -> CheckResult:
    """Check Exercise 07.2: ULMFiT-style learning rates by layer group."""
    return run_check("Exercise 07.2 (discriminative learning rates)", _check_rates, fn,
                     "utils.transfer.discriminative_rates")


# -- Exercise 07.3: the linear embedding map of EMCDR ------------------------------------------------------------


def _map_fixture() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(17)
    source = rng.normal(size=(60, 4)) + np.array([1.0, -0.5, 0.0, 2.0])
    weights = rng.normal(size=(4, 3))
    target = source @ weights + np.array([0.5, -1.0, 2.0]) + 0.1 * rng.normal(size=(60, 3))
    return source, target


def _check_map(fn: Callable[..., tuple]) -> str:
    from utils.transfer import fit_embedding_map

    source, target = _map_fixture()
    got = fn(source, target, 5.0)
    expect(isinstance(got, tuple) and len(got) == 2, "return a pair (W, b)")
    weights, bias = (np.asarray(a, dtype=float) for a in got)
    bias = bias.reshape(-1) if bias.size == 3 else bias
    expect(weights.shape != (3, 4),
           f"W has the wrong orientation: its shape is {weights.shape} = (d_target, d_source). W maps source vectors "
           "to target vectors, target ~ source @ W + b, so it must have shape (d_source, d_target) = (4, 3) here; "
           "solve for W with the source embeddings as the inputs (and do not transpose the result)")
    expect(weights.shape == (4, 3) and bias.shape == (3,),
           f"W must be (d_source, d_target) = (4, 3) and b (d_target,) = (3,); got {weights.shape} and {bias.shape}")
    want_w, want_b = fit_embedding_map(source, target, 5.0)

    def same(a: np.ndarray, b: np.ndarray) -> bool:  # to a relative tolerance of 1e-5 (float32 answers pass)
        return bool(np.allclose(a, b, rtol=RTOL, atol=1e-6))

    plain_w, _ = fit_embedding_map(source, target, 0.0)
    expect(not np.allclose(bias, 0.0), "b is zero: the embeddings of two models are not centred alike, fit an intercept")
    expect(not (same(weights, plain_w) and not same(want_w, plain_w)),
           "l2 is not used: add l2 * I to S^T S (ridge), which keeps the map stable when few users are shared")
    ones = np.c_[source, np.ones(len(source))]
    penalised = np.linalg.solve(ones.T @ ones + 5.0 * np.eye(5), ones.T @ target)
    expect(not same(weights, penalised[:-1]),
           "the intercept is penalised too: centre both sides (or leave the ones-column out of the penalty)")
    scaled_w, _ = fit_embedding_map(source, target, 5.0 * len(source))
    expect(not same(weights, scaled_w),
           "the penalty is scaled by the number of users (the convention of a mean squared error): here the "
           "penalty is l2 * I added to S^T S as it is, as sklearn's Ridge(alpha=l2) does")
    expect(same(weights, want_w) and same(bias, want_b),
           "W or b differs from ridge regression target ~ source @ W + b with the penalty l2 on W only: centre "
           "both sides, W = (S^T S + l2 I)^-1 S^T T on the centred S and T, b = mean(T) - mean(S) @ W "
           f"(compared to a relative tolerance of {RTOL:g})")
    residual = target - (source @ weights + bias)
    r2 = 1 - (residual**2).sum() / ((target - target.mean(axis=0)) ** 2).sum()
    return f"correct: the map explains {r2:.3f} of the target embeddings' variance on the shared users"


def fit_embedding_map(fn: Callable[..., tuple]) -> CheckResult:
    """Check Exercise 07.3: the ridge-regression map from source to target embeddings."""
    return run_check("Exercise 07.3 (the EMCDR map)", _check_map, fn, "utils.transfer.fit_embedding_map")
