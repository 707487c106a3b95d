"""Many small models of one architecture trained as one: every weight gets a leading *model* axis.

Lesson 05 repeats the synthetic experiment of Ma et al. dozens of times per model and task correlation. Trained
one by one, or as separate sub-models side by side, hundreds of tiny networks spend their time in per-op
overhead. Here a ``(models, in, out)`` kernel does the work of ``models`` separate ``Dense`` layers in one
batched matrix product. The loss is the sum of the models' losses and no weight is shared, so each model's
gradient is its own loss's gradient and Adam (element-wise) moves each model as it would alone.

    >>> net = stacked_mmoe(runs=30, settings=3, d=100, num_experts=8, expert_units=16, tower=8)
    >>> net(x)                 # x: (batch, runs, d) -> (batch, runs, settings, tasks)

Model ``(r, s)`` reads run ``r``'s examples; the ``settings`` models of one run (one per task correlation, say)
start from the same initial weights, so they differ only in their labels (common random numbers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import pandas as pd
from keras import ops

from utils.expert_experiments import EpochTestLosses

__all__ = [
    "PerModel",
    "StackedDense",
    "StackedGlorotUniform",
    "StackedMixture",
    "StackedMSE",
    "failed_runs",
    "gate_weights",
    "stacked_mmoe",
    "stacked_shared_bottom",
    "train_stacked",
]


@keras.saving.register_keras_serializable(package="course")
class StackedGlorotUniform(keras.initializers.Initializer):
    """Glorot-uniform for a ``(runs * settings, in, out)`` kernel, as a ``Dense`` layer draws it for each model;
    the ``settings`` models of one run get the same draw."""

    def __init__(self, settings: int = 1, seed: int | None = None) -> None:
        self.settings = int(settings)
        self.seed = seed

    def __call__(self, shape: Sequence[int], dtype: Any = None) -> Any:
        models, fan_in, fan_out = shape
        if models % self.settings:
            raise ValueError(f"{models} models cannot be grouped in runs of {self.settings} settings")
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        draw = keras.random.uniform((models // self.settings, fan_in, fan_out), -limit, limit, dtype=dtype,
                                    seed=self.seed)
        return ops.repeat(draw, self.settings, axis=0)

    def get_config(self) -> dict[str, Any]:
        return {"settings": self.settings, "seed": self.seed}


@keras.saving.register_keras_serializable(package="course")
class StackedDense(keras.layers.Layer):
    """``models`` independent ``Dense`` layers applied at once: ``(batch, models, in) -> (batch, models, units)``."""

    def __init__(self, models: int, units: int, activation: str | None = None, settings: int = 1,
                 seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.models, self.units, self.settings, self.seed = int(models), int(units), int(settings), seed
        self.activation = keras.activations.get(activation)

    def build(self, input_shape: Sequence[int | None]) -> None:
        if input_shape[-2] != self.models:
            raise ValueError(f"{self.name} holds {self.models} models, its input has {input_shape[-2]}")
        self.kernel = self.add_weight(shape=(self.models, input_shape[-1], self.units), name="kernel",
                                      initializer=StackedGlorotUniform(self.settings, self.seed))
        self.bias = self.add_weight(shape=(self.models, self.units), name="bias", initializer="zeros")

    def call(self, inputs: Any) -> Any:
        return self.activation(ops.einsum("bmi,miu->bmu", inputs, self.kernel) + self.bias)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "models": self.models, "units": self.units, "settings": self.settings,
                "seed": self.seed, "activation": keras.activations.serialize(self.activation)}


@keras.saving.register_keras_serializable(package="course")
class StackedMixture(keras.layers.Layer):
    """Every model's experts and gates: ``(batch, models, d) -> (batch, models, tasks, units)``, each task's
    representation the softmax-gated sum of the model's ``num_experts`` one-layer ReLU experts.
    ``gates="one"`` gives all tasks one gate (OMoE), ``"per_task"`` one each (MMoE)."""

    def __init__(self, models: int, num_experts: int, units: int, num_tasks: int = 2, gates: str = "per_task",
                 settings: int = 1, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if gates not in ("per_task", "one"):
            raise ValueError(f"gates must be 'per_task' (MMoE) or 'one' (OMoE), got {gates!r}")
        self.models, self.num_experts, self.units = int(models), int(num_experts), int(units)
        self.num_tasks, self.gates, self.settings, self.seed = int(num_tasks), gates, int(settings), seed
        n_gates = self.num_tasks if gates == "per_task" else 1
        self.experts = StackedDense(self.models, self.num_experts * self.units, "relu", self.settings,
                                    None if seed is None else seed + 1, name="experts")
        self.gate = StackedDense(self.models, n_gates * self.num_experts, None, self.settings,
                                 None if seed is None else seed + 2, name="gates")

    def build(self, input_shape: Sequence[int | None]) -> None:
        self.experts.build(input_shape)
        self.gate.build(input_shape)

    def gate_weights(self, inputs: Any) -> Any:
        """Every model's gates on ``(batch, models, d)``: ``(batch, models, gates, experts)``, softmax over experts."""
        n_gates = self.num_tasks if self.gates == "per_task" else 1
        return ops.softmax(ops.reshape(self.gate(inputs), (-1, self.models, n_gates, self.num_experts)), axis=-1)

    def call(self, inputs: Any) -> Any:
        experts = ops.reshape(self.experts(inputs), (-1, self.models, self.num_experts, self.units))
        weights = self.gate_weights(inputs)
        if self.gates == "one":
            weights = ops.repeat(weights, self.num_tasks, axis=2)
        return ops.einsum("bmte,bmeu->bmtu", weights, experts)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "models": self.models, "num_experts": self.num_experts, "units": self.units,
                "num_tasks": self.num_tasks, "gates": self.gates, "settings": self.settings, "seed": self.seed}


@keras.saving.register_keras_serializable(package="course")
class PerModel(keras.layers.Layer):
    """Each run's examples to each of its ``settings`` models: ``(batch, runs, d) -> (batch, runs * settings, d)``."""

    def __init__(self, settings: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = int(settings)

    def call(self, inputs: Any) -> Any:
        return ops.repeat(inputs, self.settings, axis=1)

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple[int | None, ...]:
        return (input_shape[0], input_shape[1] * self.settings, input_shape[2])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "settings": self.settings}


def _towers(shared: Any, models: int, num_tasks: int, tower: int, settings: int, seed: int | None) -> Any:
    """One ReLU tower of ``tower`` units and a linear head per task, on ``(batch, models, units)`` (one
    representation for every task) or ``(batch, models, tasks, units)`` (one per task)."""
    heads = []
    for t in range(num_tasks):
        s = None if seed is None else seed + 10 + 2 * t
        own = shared if len(shared.shape) == 3 else shared[:, :, t]
        h = StackedDense(models, tower, "relu", settings, s, name=f"tower_{t}")(own)
        heads.append(StackedDense(models, 1, None, settings, None if s is None else s + 1, name=f"head_{t}")(h))
    return ops.concatenate(heads, axis=-1)  # (batch, models, tasks)


def _stacked(kind: str, runs: int, settings: int, d: int, build: Any, name: str) -> keras.Model:
    inputs = keras.Input((runs, d), name="x")
    per_model = PerModel(settings, name="per_model")(inputs)
    outputs = build(per_model)
    outputs = keras.layers.Reshape((runs, settings, -1), name=kind)(outputs)
    return keras.Model(inputs, outputs, name=name)


def stacked_shared_bottom(runs: int, settings: int, d: int, bottom: int, tower: int = 8, num_tasks: int = 2,
                          seed: int | None = None, name: str = "shared_bottom") -> keras.Model:
    """``runs * settings`` Shared-Bottom regressors: one ReLU layer of ``bottom`` units, a tower and head per task;
    ``(batch, runs, d) -> (batch, runs, settings, tasks)``."""
    models = runs * settings

    def build(x: Any) -> Any:
        shared = StackedDense(models, bottom, "relu", settings, seed, name="bottom")(x)
        return _towers(shared, models, num_tasks, tower, settings, seed)

    return _stacked("shared_bottom", runs, settings, d, build, name)


def stacked_mmoe(runs: int, settings: int, d: int, num_experts: int = 8, expert_units: int = 16, tower: int = 8,
                 num_tasks: int = 2, gates: str = "per_task", seed: int | None = None,
                 name: str = "mmoe") -> keras.Model:
    """``runs * settings`` MMoE (``gates="per_task"``) or OMoE (``"one"``) regressors, ``num_experts`` one-layer
    experts, a tower and head per task; ``(batch, runs, d) -> (batch, runs, settings, tasks)``."""
    models = runs * settings

    def build(x: Any) -> Any:
        mixed = StackedMixture(models, num_experts, expert_units, num_tasks, gates, settings, seed, name="mixture")(x)
        return _towers(mixed, models, num_tasks, tower, settings, seed)

    return _stacked("mmoe", runs, settings, d, build, name)


@keras.saving.register_keras_serializable(package="course")
class StackedMSE(keras.losses.Loss):
    """The sum over models and tasks of each one's mean squared error: each model's gradient is its own."""

    def __init__(self, name: str = "stacked_mse", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return ops.sum(ops.reshape(ops.square(y_pred - ops.cast(y_true, y_pred.dtype)), (ops.shape(y_pred)[0], -1)),
                       axis=-1)


def train_stacked(model: keras.Model, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                  y_test: np.ndarray, epochs: int, batch_size: int = 256, learning_rate: float = 3e-3,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train every stacked model on its own run's data with Adam, the learning rate decaying along a cosine to
    5 % by the last step; returns the test MSE per epoch ``(epochs, runs, settings, tasks)`` and the final
    training MSE ``(runs, settings, tasks)``.

    ``x_*``: ``(n, runs, d)``; ``y_*``: ``(n, runs, settings, tasks)``. Examples are shuffled in the same order
    for every run, which is harmless: each run's examples are its own independent draws.
    """
    shape = tuple(model.output.shape[1:])
    for name, y in (("y_train", y_train), ("y_test", y_test)):
        if tuple(y.shape[1:]) != shape:
            raise ValueError(f"{name} has shape {y.shape}; the model predicts (n, {', '.join(map(str, shape))})")
    if np.isnan(y_train).any():
        raise ValueError("y_train has NaN labels")
    keras.utils.set_random_seed(seed)
    steps = epochs * -(-len(x_train) // batch_size)
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.05)),
                  loss=StackedMSE())
    losses = EpochTestLosses(x_test, y_test)
    model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=[losses])
    train = np.mean((model.predict(x_train, batch_size=4096, verbose=0) - y_train) ** 2, axis=0)
    return np.stack(losses.rows), train


def gate_weights(model: keras.Model, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Every stacked MMoE's (or OMoE's) gate weights on its run's examples ``x`` ``(n, runs, d)``:
    ``(n, runs, settings, gates, experts)``, each row a softmax over the experts."""
    mixture = next((layer for layer in model.layers if isinstance(layer, StackedMixture)), None)
    if mixture is None:
        raise ValueError(f"{model.name} has no StackedMixture layer: only stacked MMoE / OMoE models have gates")
    runs, settings = model.output.shape[1], model.output.shape[2]
    x = np.asarray(x, dtype="float32")
    rows = []
    for start in range(0, len(x), batch_size):
        gates = mixture.gate_weights(model.get_layer("per_model")(x[start:start + batch_size]))
        rows.append(keras.ops.convert_to_numpy(gates).reshape(-1, runs, settings, *gates.shape[2:]))
    return np.concatenate(rows)


def failed_runs(frame: pd.DataFrame, by: str | Sequence[str] = ("model", "p"), column: str = "train_loss",
                factor: float = 2.0) -> pd.Series:
    """Flag the runs that failed to train: a final ``column`` above ``factor`` times the median of the other runs
    of the same model and setting (``by``). A model that fits less because it is small is not failing; a run that
    ends at twice its own model's typical training loss is. Ma et al. read trainability from the spread of final
    losses over repeated runs (their section 5.3)."""
    keys = [by] if isinstance(by, str) else list(by)
    missing = [c for c in [*keys, column] if c not in frame.columns]
    if missing:
        raise KeyError(f"the frame has no column(s) {missing}")
    if not factor > 1:
        raise ValueError(f"factor must be above 1 (a multiple of the median), got {factor}")
    median = frame.groupby(keys)[column].transform("median")
    return frame[column] > factor * median
