"""Expert layers for multi-task models: MMoE and OMoE (Ma et al., KDD 2018), CGC and PLE (Tang et al.,
RecSys 2020), and model builders that put them between the inputs and the task towers.

    >>> model = mmoe_model(spec, tasks, num_experts=4, expert_units=(64,), tower=(32,))
    >>> compile_model(model, tasks).fit(...)
    >>> gate_weights(model, feature_arrays(test, spec))   # {task: (n, n_experts) softmax weights}

Each layer keeps a bank of experts (small MLPs whose outputs are stacked) and one softmax gate per task
over the experts it may use. Every layer is serializable, so a model saved as ``.keras`` loads
without this module's help beyond the import that registers the classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from utils.models import FeatureSpec, Task, _check_tasks, build_inputs, mlp

__all__ = [
    "CGC",
    "PLE",
    "CustomizedGateControl",
    "ExpertBank",
    "MixtureOfExperts",
    "ProgressiveLayeredExtraction",
    "expert_layer",
    "gate_model",
    "gate_weights",
    "mmoe_model",
    "ple_model",
]

#: The name the builders give their expert layer, so that :func:`gate_model` can find it.
EXPERT_LAYER = "experts"
GATE_KINDS = ("per_task", "one")


def _units(expert_units: Sequence[int] | int, what: str) -> tuple[int, ...]:
    units = (expert_units,) if isinstance(expert_units, (int, np.integer)) else tuple(expert_units)
    if not units or any(int(u) < 1 for u in units):
        raise ValueError(f"{what}: expert_units must be one or more widths >= 1, got {expert_units!r}")
    return tuple(int(u) for u in units)


def _positive(value: int, name: str, minimum: int = 1) -> int:
    if int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _task_names(task_names: Sequence[str] | None, num_tasks: int) -> tuple[str, ...]:
    if task_names is None:
        return tuple(f"task_{i}" for i in range(num_tasks))
    names = tuple(str(n) for n in task_names)
    if len(names) != num_tasks or len(set(names)) != num_tasks:
        raise ValueError(f"task_names must be {num_tasks} distinct names, got {list(names)}")
    return names


@keras.saving.register_keras_serializable(package="course")
class ExpertBank(keras.layers.Layer):
    """``num_experts`` MLPs (Dense + ReLU at every width) applied to the same input: (batch, d) ->
    (batch, num_experts, units[-1]).

    One small matrix product per expert and layer: on a CPU this trained about twice as fast as
    fusing the experts into one wide product or a batched ``einsum``, whose reshapes and gradient
    bookkeeping cost more than they save at these sizes.
    """

    def __init__(self, num_experts: int, units: Sequence[int] | int = (64,), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_experts = _positive(num_experts, "num_experts")
        self.units = _units(units, self.name)

    def build(self, input_shape: Any) -> None:
        widths = (int(input_shape[-1]), *self.units)
        self.kernels: list[list[Any]] = []
        self.biases: list[list[Any]] = []
        for e in range(self.num_experts):
            self.kernels.append([self.add_weight(shape=(a, b), initializer="glorot_uniform", name=f"expert_{e}_kernel_{i}")
                                 for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]), start=1)])
            self.biases.append([self.add_weight(shape=(b,), initializer="zeros", name=f"expert_{e}_bias_{i}")
                                for i, b in enumerate(widths[1:], start=1)])

    def call(self, x: Any) -> Any:
        outputs = []
        for kernels, biases in zip(self.kernels, self.biases):
            h = x
            for kernel, bias in zip(kernels, biases):
                h = ops.relu(ops.matmul(h, kernel) + bias)
            outputs.append(h)
        return ops.stack(outputs, axis=1)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return (input_shape[0], self.num_experts, self.units[-1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_experts": self.num_experts, "units": list(self.units)}


def _mix(gate_logits: Any, experts: Any) -> tuple[Any, Any]:
    """Softmax the gate logits (batch, E) and take the weighted sum of experts (batch, E, u)."""
    gate = ops.softmax(gate_logits, axis=-1)
    return ops.sum(ops.expand_dims(gate, -1) * experts, axis=1), gate


@keras.saving.register_keras_serializable(package="course")
class MixtureOfExperts(keras.layers.Layer):
    """MMoE: shared experts, and per task a softmax gate that mixes them. ``gates="one"`` is OMoE, one
    gate shared by every task (the paper's ablation: the tasks can no longer weigh experts differently).

    ``outputs, gates = layer(x)``: ``num_tasks`` tensors (batch, expert_units[-1]) and, per task, the
    gate's softmax weights (batch, num_experts). The gates are outputs of the layer, not a side channel,
    so :func:`gate_model` can read them from a saved and reloaded model.
    """

    def __init__(
        self,
        num_experts: int,
        expert_units: Sequence[int] | int = (64,),
        num_tasks: int = 2,
        gates: str = "per_task",
        task_names: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if gates not in GATE_KINDS:
            raise ValueError(f"gates must be one of {GATE_KINDS} ('one' is OMoE), got {gates!r}")
        self.num_experts = _positive(num_experts, "num_experts")
        self.expert_units = _units(expert_units, self.name)
        self.num_tasks = _positive(num_tasks, "num_tasks")
        self.gates = gates
        self.task_names = _task_names(task_names, self.num_tasks)
        self.num_gates = self.num_tasks if gates == "per_task" else 1
        # The parts take this layer's dtype policy, so a model saved under mixed_bfloat16 reloads as it was.
        self.bank = ExpertBank(self.num_experts, self.expert_units, dtype=self.dtype_policy, name="expert_bank")
        self.gate = keras.layers.Dense(self.num_gates * self.num_experts, dtype=self.dtype_policy, name="gate")

    def build(self, input_shape: Any) -> None:
        self.bank.build(input_shape)
        self.gate.build(input_shape)

    def call(self, x: Any) -> Any:
        experts = self.bank(x)
        logits = ops.reshape(self.gate(x), (-1, self.num_gates, self.num_experts))
        mixed = [_mix(logits[:, g, :], experts) for g in range(self.num_gates)]
        if self.num_gates == 1:
            mixed = mixed * self.num_tasks
        outputs, gates = [m[0] for m in mixed], [m[1] for m in mixed]
        return outputs, gates

    def compute_output_spec(self, x: Any) -> Any:
        batch = x.shape[0]
        outputs = [keras.KerasTensor((batch, self.expert_units[-1])) for _ in range(self.num_tasks)]
        gates = [keras.KerasTensor((batch, self.num_experts)) for _ in range(self.num_tasks)]
        return outputs, gates

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(), "num_experts": self.num_experts, "expert_units": list(self.expert_units),
            "num_tasks": self.num_tasks, "gates": self.gates, "task_names": list(self.task_names),
        }


@keras.saving.register_keras_serializable(package="course")
class CustomizedGateControl(keras.layers.Layer):
    """One level of PLE: each task has its own experts, all tasks share some; task t's gate mixes its own
    experts and the shared ones, never another task's (which is what stops the seesaw of MMoE, where a
    task can take over experts the other needs).

    Input: one tensor, or a list of ``num_tasks + 1`` tensors (each task's, then the shared one, as the
    previous level returns them). Output ``(outputs, gates)``: ``num_tasks`` tensors, plus the shared one
    when ``output_shared`` (a level feeding another), whose gate mixes every expert of the level; and
    the gates, per task ordered [the task's own experts..., shared experts...].
    """

    def __init__(
        self,
        num_tasks: int = 2,
        task_experts: int = 1,
        shared_experts: int = 1,
        expert_units: Sequence[int] | int = (64,),
        output_shared: bool = False,
        task_names: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_tasks = _positive(num_tasks, "num_tasks")
        self.task_experts = _positive(task_experts, "task_experts")
        self.shared_experts = _positive(shared_experts, "shared_experts")
        self.expert_units = _units(expert_units, self.name)
        self.output_shared = bool(output_shared)
        self.task_names = _task_names(task_names, self.num_tasks)
        policy = self.dtype_policy  # the parts share it (see MixtureOfExperts)
        self.task_banks = [ExpertBank(self.task_experts, self.expert_units, dtype=policy, name=f"experts_{n}")
                           for n in self.task_names]
        self.shared_bank = ExpertBank(self.shared_experts, self.expert_units, dtype=policy, name="experts_shared")
        self.task_gates = [keras.layers.Dense(self.task_experts + self.shared_experts, dtype=policy, name=f"gate_{n}")
                           for n in self.task_names]
        self.shared_gate = (keras.layers.Dense(self.num_tasks * self.task_experts + self.shared_experts,
                                               dtype=policy, name="gate_shared") if self.output_shared else None)

    def _split(self, inputs: Any) -> list[Any]:
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != self.num_tasks + 1:
                raise ValueError(f"{self.name} takes one tensor or {self.num_tasks + 1} (each task's, then the "
                                 f"shared one), got {len(inputs)}")
            return list(inputs)
        return [inputs] * (self.num_tasks + 1)

    def build(self, input_shape: Any) -> None:
        shapes = list(input_shape) if isinstance(input_shape, (list, tuple)) and isinstance(
            input_shape[0], (list, tuple)) else [input_shape] * (self.num_tasks + 1)
        for bank, gate, shape in zip(self.task_banks, self.task_gates, shapes):
            bank.build(shape)
            gate.build(shape)
        self.shared_bank.build(shapes[-1])
        if self.shared_gate is not None:
            self.shared_gate.build(shapes[-1])

    def call(self, inputs: Any) -> Any:
        xs = self._split(inputs)
        shared = self.shared_bank(xs[-1])
        own = [bank(x) for bank, x in zip(self.task_banks, xs[:-1])]
        outputs, gates = [], []
        for x, experts, gate in zip(xs[:-1], own, self.task_gates):
            out, g = _mix(gate(x), ops.concatenate([experts, shared], axis=1))
            outputs.append(out)
            gates.append(g)
        if self.shared_gate is not None:
            out, g = _mix(self.shared_gate(xs[-1]), ops.concatenate([*own, shared], axis=1))
            outputs.append(out)
            gates.append(g)
        return outputs, gates

    def compute_output_spec(self, inputs: Any) -> Any:
        batch = self._split(inputs)[0].shape[0]
        n_out = self.num_tasks + int(self.output_shared)
        outputs = [keras.KerasTensor((batch, self.expert_units[-1])) for _ in range(n_out)]
        widths = [self.task_experts + self.shared_experts] * self.num_tasks
        if self.output_shared:
            widths.append(self.num_tasks * self.task_experts + self.shared_experts)
        gates = [keras.KerasTensor((batch, w)) for w in widths]
        return outputs, gates

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(), "num_tasks": self.num_tasks, "task_experts": self.task_experts,
            "shared_experts": self.shared_experts, "expert_units": list(self.expert_units),
            "output_shared": self.output_shared, "task_names": list(self.task_names),
        }


@keras.saving.register_keras_serializable(package="course")
class ProgressiveLayeredExtraction(keras.layers.Layer):
    """PLE: ``levels`` CGC levels stacked; every level but the last also passes on a shared output, so
    later levels separate task-specific from shared knowledge progressively.

    ``outputs, gates = layer(x)``: ``num_tasks`` tensors, and the last level's gates per task
    (batch, task_experts + shared_experts).
    """

    def __init__(
        self,
        num_tasks: int = 2,
        levels: int = 2,
        task_experts: int = 1,
        shared_experts: int = 1,
        expert_units: Sequence[int] | int = (64,),
        task_names: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_tasks = _positive(num_tasks, "num_tasks")
        self.levels = _positive(levels, "levels")
        self.task_experts = _positive(task_experts, "task_experts")
        self.shared_experts = _positive(shared_experts, "shared_experts")
        self.expert_units = _units(expert_units, self.name)
        self.task_names = _task_names(task_names, self.num_tasks)
        self.cgc = [
            CustomizedGateControl(self.num_tasks, self.task_experts, self.shared_experts, self.expert_units,
                                  output_shared=level < self.levels, task_names=self.task_names,
                                  dtype=self.dtype_policy, name=f"cgc_{level}")
            for level in range(1, self.levels + 1)
        ]

    def build(self, input_shape: Any) -> None:
        shape = input_shape
        for level in self.cgc:
            level.build(shape)
            shape = [(input_shape[0], self.expert_units[-1])] * (self.num_tasks + 1)

    def call(self, x: Any) -> Any:
        h = x
        gates: list[Any] = []
        for level in self.cgc:
            h, gates = level(h)
        return h, gates

    def compute_output_spec(self, x: Any) -> Any:
        batch = x.shape[0]
        outputs = [keras.KerasTensor((batch, self.expert_units[-1])) for _ in range(self.num_tasks)]
        gates = [keras.KerasTensor((batch, self.task_experts + self.shared_experts)) for _ in range(self.num_tasks)]
        return outputs, gates

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(), "num_tasks": self.num_tasks, "levels": self.levels,
            "task_experts": self.task_experts, "shared_experts": self.shared_experts,
            "expert_units": list(self.expert_units), "task_names": list(self.task_names),
        }


CGC = CustomizedGateControl
PLE = ProgressiveLayeredExtraction


# --------------------------------------------------------------------------------------------------
# Model builders
# --------------------------------------------------------------------------------------------------


def _towers(tasks: list[Task], reps: Sequence[Any], tower: Sequence[int] | Mapping[str, Sequence[int]]) -> dict[str, Any]:
    if isinstance(tower, Mapping):
        unknown = sorted(set(tower) - {t.name for t in tasks})
        if unknown:
            raise ValueError(f"tower widths given for unknown task(s) {unknown}")
    outputs = {}
    for task, rep in zip(tasks, reps):
        widths = tower.get(task.name, ()) if isinstance(tower, Mapping) else tower
        h = mlp(widths, name=f"tower_{task.name}")(rep)
        # float32 whatever the global policy (see utils.models._head): probabilities keep their precision.
        outputs[task.name] = keras.layers.Dense(task.units, activation=task.activation, dtype="float32",
                                                name=f"head_{task.name}")(h)
    return outputs


def mmoe_model(
    inputs: FeatureSpec | int,
    tasks: Sequence[Task],
    num_experts: int = 4,
    expert_units: Sequence[int] | int = (64,),
    tower: Sequence[int] | Mapping[str, Sequence[int]] = (32,),
    gates: str = "per_task",
    name: str | None = None,
) -> keras.Model:
    """Inputs -> embeddings -> MMoE (layer ``experts``) -> per task a tower and a head; outputs by task.

    ``gates="one"`` builds OMoE. ``inputs`` is a feature spec, or an int width for a dense float input.
    """
    tasks = _check_tasks(tasks)
    model_inputs, x = build_inputs(inputs)
    moe = MixtureOfExperts(num_experts, expert_units, len(tasks), gates=gates,
                           task_names=[t.name for t in tasks], name=EXPERT_LAYER)
    reps, _ = moe(x)
    default = "mmoe" if gates == "per_task" else "omoe"
    return keras.Model(model_inputs, _towers(tasks, reps, tower), name=name or default)


def ple_model(
    inputs: FeatureSpec | int,
    tasks: Sequence[Task],
    levels: int = 2,
    task_experts: int = 1,
    shared_experts: int = 1,
    expert_units: Sequence[int] | int = (64,),
    tower: Sequence[int] | Mapping[str, Sequence[int]] = (32,),
    name: str = "ple",
) -> keras.Model:
    """Inputs -> embeddings -> PLE (layer ``experts``; ``levels=1`` is CGC) -> towers and heads."""
    tasks = _check_tasks(tasks)
    model_inputs, x = build_inputs(inputs)
    ple = ProgressiveLayeredExtraction(len(tasks), levels, task_experts, shared_experts, expert_units,
                                       task_names=[t.name for t in tasks], name=EXPERT_LAYER)
    reps, _ = ple(x)
    return keras.Model(model_inputs, _towers(tasks, reps, tower), name=name)


def expert_layer(model: keras.Model) -> MixtureOfExperts | ProgressiveLayeredExtraction:
    """The model's expert layer (named ``experts`` by the builders), with a clear error if it has none."""
    for layer in model.layers:
        if isinstance(layer, (MixtureOfExperts, ProgressiveLayeredExtraction, CustomizedGateControl)):
            return layer
    raise ValueError(f"model {model.name!r} has no MixtureOfExperts, CGC or PLE layer: it has no gates to show")


def gate_model(model: keras.Model) -> keras.Model:
    """A model from the same inputs to ``{task: gate weights}`` (last level for PLE), sharing the weights.

    Works on a freshly built model and on one loaded from ``.keras``: it reads the gate outputs of the
    model's expert layer, which the layer computes anyway.
    """
    layer = expert_layer(model)
    if len(layer._inbound_nodes) != 1:
        raise ValueError(f"the expert layer {layer.name!r} is used {len(layer._inbound_nodes)} times; "
                         "gate_model needs a model that calls it once")
    flat = list(layer._inbound_nodes[0].outputs)  # the outputs, then as many gates
    gates = flat[len(flat) // 2:]
    return keras.Model(model.inputs, dict(zip(layer.task_names, gates[: len(layer.task_names)])),
                       name=f"{model.name}_gates")


def gate_weights(model: keras.Model, x: Any, batch_size: int = 4096) -> dict[str, np.ndarray]:
    """Gate weights of every task on inputs ``x``: ``{task: (n, n_experts) array}``, rows sum to 1."""
    out = gate_model(model).predict(x, batch_size=batch_size, verbose=0)
    return {name: np.asarray(value) for name, value in out.items()}
