"""Transfer learning helpers: layer groups, freezing, per-group learning rates, gradual unfreezing, weight
transfer between models, a joint model with market-specific towers, and a sweep over target-data sizes.

The course's models name their layers by role (``utils.models``): ``<feature>_embedding``, ``bottom_dense_i``,
``tower_<task>_dense_i``, ``head_<task>``. :data:`DEFAULT_GROUPS` turns those names into four groups, from the
bottom of the network to the top, so a lesson can say "freeze the embeddings and the bottom" in one line:

    >>> freeze(model, "embeddings", "bottom")             # trainable=False; compile again afterwards
    >>> opt = DiscriminativeAdam(1e-3, multipliers={"embeddings": 0.1})   # lower rate for pretrained tables
    >>> model.compile(optimizer=opt, loss=...)
    >>> model.fit(data, epochs=4, callbacks=[GradualUnfreezing(["heads", "towers", "bottom", "embeddings"])])

Keras 3 has no per-variable learning rate. :class:`DiscriminativeAdam` is Adam whose step on each variable is
multiplied by its group's multiplier, a non-trainable variable: setting one to 0 stops a group from moving
without re-compiling (which is how :class:`GradualUnfreezing` works), unlike ``layer.trainable``, whose change
takes effect only at the next ``compile``. Scaling the *gradients* instead would not work with Adam, whose step
hardly depends on the gradient's size.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import numpy.typing as npt
import pandas as pd
import tensorflow as tf
from keras import ops

from utils.metrics import auc
from utils.models import Feature, FeatureSpec, Task, encode_features, feature_arrays, make_multitask_dataset, mlp
from utils.shopsim import ShopSimData
from utils.training import BestWeights, base_rate_biases

__all__ = [
    "DEFAULT_GROUPS",
    "MARKETS",
    "MARKET_INPUT",
    "BestOnValidation",
    "DiscriminativeAdam",
    "GradualUnfreezing",
    "MarketSwitch",
    "Strategy",
    "TransferRunner",
    "copy_weights",
    "crossover",
    "discriminative_rates",
    "fit_embedding_map",
    "freeze",
    "freeze_bottom",
    "gap_table",
    "group_of",
    "history_bins",
    "initial_weights",
    "joint_market_model",
    "layer_groups",
    "market_codes",
    "market_free_name",
    "nested_subsample",
    "recompile",
    "select_layers",
    "single_market_view",
    "sweep",
    "trainable_summary",
    "unfreeze",
    "with_market",
]

ArrayLike = npt.ArrayLike | pd.Series

#: Layer groups of the course's models, bottom to top: a regular expression on layer names per group.
DEFAULT_GROUPS: dict[str, str] = {
    "embeddings": r"_embedding$",
    "bottom": r"^bottom_",
    "towers": r"^tower_",
    "heads": r"^head_",
}


# --------------------------------------------------------------------------------------------------
# Groups and freezing
# --------------------------------------------------------------------------------------------------


def _check_groups(groups: Mapping[str, str] | None) -> dict[str, str]:
    groups = dict(DEFAULT_GROUPS if groups is None else groups)
    if not groups:
        raise ValueError("groups is empty: give at least one name -> regular expression")
    for name, pattern in groups.items():
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"group {name!r} has an invalid regular expression {pattern!r}: {err}") from None
    return groups


def group_of(layer_name: str, groups: Mapping[str, str] | None = None) -> str | None:
    """The first group whose pattern matches ``layer_name`` (``re.search``), or None."""
    for name, pattern in _check_groups(groups).items():
        if re.search(pattern, layer_name):
            return name
    return None


def _weighted_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's own layers that hold weights (lookups and inputs hold none)."""
    return [layer for layer in model.layers if layer.weights]


def layer_groups(model: keras.Model, groups: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """Names of the model's layers with weights, by group (in the order of ``groups``); unmatched ones under
    ``"other"``. Groups that match no layer are left out."""
    groups = _check_groups(groups)
    out: dict[str, list[str]] = {name: [] for name in groups}
    out["other"] = []
    for layer in _weighted_layers(model):
        out[group_of(layer.name, groups) or "other"].append(layer.name)
    return {name: layers for name, layers in out.items() if layers}


def select_layers(model: keras.Model, names: Iterable[str], groups: Mapping[str, str] | None = None
                  ) -> list[keras.layers.Layer]:
    """The layers that ``names`` designate: each name is a group (all its layers) or a layer's own name.

    An unknown name raises a ``KeyError`` that lists the groups and the layers there are.
    """
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise ValueError("name at least one group or layer")
    by_group = layer_groups(model, groups)
    by_name = {layer.name: layer for layer in model.layers}
    chosen: dict[str, keras.layers.Layer] = {}
    for name in names:
        if name in by_group:
            chosen.update({n: by_name[n] for n in by_group[name]})
        elif name in by_name:
            chosen[name] = by_name[name]
        else:
            raise KeyError(
                f"{name!r} is neither a layer group nor a layer of model {model.name!r}: groups here are "
                f"{list(by_group)}; layers with weights are {[l.name for l in _weighted_layers(model)]}"
            )
    return list(chosen.values())


def freeze(model: keras.Model, *names: str, groups: Mapping[str, str] | None = None) -> list[str]:
    """Set ``trainable = False`` on the named groups or layers; returns the layer names frozen.

    Keras reads ``trainable`` when it builds the training step: call ``compile`` again after freezing,
    otherwise a model trained before keeps updating the "frozen" layers.
    """
    layers = select_layers(model, names, groups)
    for layer in layers:
        layer.trainable = False
    return [layer.name for layer in layers]


def unfreeze(model: keras.Model, *names: str, groups: Mapping[str, str] | None = None) -> list[str]:
    """Set ``trainable = True`` on the named groups or layers (compile again afterwards); returns their names."""
    layers = select_layers(model, names, groups)
    for layer in layers:
        layer.trainable = True
    return [layer.name for layer in layers]


def recompile(model: keras.Model) -> keras.Model:
    """Compile ``model`` again with its own compile settings (optimizer type and rate, losses, loss weights,
    metrics), as needed after changing ``trainable``; the optimizer starts afresh. Returns the model."""
    config = model.get_compile_config() if getattr(model, "compiled", False) else None
    if not config:
        raise ValueError(f"model {model.name!r} was never compiled: call model.compile(...) instead")
    model.compile_from_config(config)
    return model


def freeze_bottom(model: keras.Model, groups: Mapping[str, str] | None = None) -> keras.Model:
    """Freeze every embedding and the shared bottom MLP, keep towers and heads trainable, and re-compile.

    The reference answer of Exercise 07.1. Returns the model.
    """
    by_group = layer_groups(model, groups)
    bottom = [g for g in by_group if g not in ("towers", "heads", "other")]
    unfreeze(model, *[g for g in ("towers", "heads") if g in by_group], groups=groups)
    freeze(model, *bottom, groups=groups)
    return recompile(model)


def discriminative_rates(base_rate: float, order: Sequence[str], factor: float = 2.6) -> dict[str, float]:
    """Learning rate per group for discriminative fine-tuning: the first group of ``order`` (the top) gets
    ``base_rate``, each group below it ``factor`` times less (ULMFiT's 2.6). The reference of Exercise 07.2."""
    if not base_rate > 0 or not factor >= 1:
        raise ValueError(f"need base_rate > 0 and factor >= 1, got {base_rate} and {factor}")
    if isinstance(order, str) or len(set(order)) != len(order):
        raise ValueError(f"order must list distinct group names, top first, got {order!r}")
    return {group: base_rate / factor**depth for depth, group in enumerate(order)}


def trainable_summary(model: keras.Model, groups: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per group: layers, parameters, and how many of them are trainable now."""
    by_name = {layer.name: layer for layer in model.layers}
    rows = []
    for group, names in layer_groups(model, groups).items():
        params = sum(int(np.prod(w.shape)) for n in names for w in by_name[n].weights)
        trainable = sum(int(np.prod(w.shape)) for n in names for w in by_name[n].trainable_weights)
        rows.append({"group": group, "layers": len(names), "params": params, "trainable params": trainable})
    return pd.DataFrame(rows).set_index("group")


# --------------------------------------------------------------------------------------------------
# Per-group learning rates
# --------------------------------------------------------------------------------------------------


def _layer_of(path: str) -> str:
    """The name of the layer that owns a variable, from its path (``bottom_dense_1/kernel`` -> ``bottom_dense_1``)."""
    parts = path.split("/")
    return parts[-2] if len(parts) > 1 else parts[0]


@keras.saving.register_keras_serializable(package="course")
class DiscriminativeAdam(keras.optimizers.Adam):
    """Adam with one learning-rate multiplier per layer group ("discriminative fine-tuning", Howard and Ruder 2018).

    ``multipliers`` maps group names (keys of ``groups``, default :data:`DEFAULT_GROUPS`) to a factor on the
    learning rate; variables of other groups, or of no group, use 1. Each factor is a non-trainable
    variable, so :meth:`set_multiplier` changes it between epochs without re-compiling, and 0 holds a group
    still. The factor multiplies Adam's *step*: scaling gradients would do nothing, since Adam divides the
    gradient by its own running size. :meth:`reset` zeroes the moments and the step count, so one compiled
    model can be trained afresh without tracing its training step again.
    """

    def __init__(self, learning_rate: float = 1e-3, multipliers: Mapping[str, float] | None = None,
                 groups: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.groups = _check_groups(groups)
        multipliers = dict(multipliers or {})
        unknown = sorted(set(multipliers) - set(self.groups))
        if unknown:
            raise ValueError(f"multipliers name unknown group(s) {unknown}; the groups are {list(self.groups)}")
        for name, value in multipliers.items():
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"the multiplier of {name!r} must be a finite number >= 0, got {value}")
        self.initial_multipliers = {name: float(multipliers.get(name, 1.0)) for name in self.groups}

    def build(self, var_list: list[keras.Variable]) -> None:
        if self.built:
            return
        super().build(var_list)
        names = list(self.groups)
        self._multipliers = [
            self.add_variable((), initializer=keras.initializers.Constant(self.initial_multipliers[name]),
                              name=f"multiplier_{name}")
            for name in names
        ] + [self.add_variable((), initializer="ones", name="multiplier_other")]
        self._group_index = {}
        for variable in var_list:
            group = group_of(_layer_of(variable.path), self.groups)
            self._group_index[self._var_key(variable)] = names.index(group) if group else len(names)

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        factor = self._multipliers[self._group_index[self._var_key(variable)]]
        super().update_step(gradient, variable, ops.multiply(learning_rate, ops.cast(factor, "float32")))

    def _check_group(self, group: str) -> int:
        if group not in self.groups:
            raise KeyError(f"unknown group {group!r}; the groups are {list(self.groups)}")
        return list(self.groups).index(group)

    def set_multiplier(self, group: str, value: float) -> None:
        """Set a group's factor on the learning rate (0 freezes it); takes effect at the next step."""
        index = self._check_group(group)
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"a multiplier must be a finite number >= 0, got {value}")
        if not self.built:
            self.initial_multipliers[group] = float(value)
            return
        self._multipliers[index].assign(float(value))

    def multiplier(self, group: str) -> float:
        """A group's current factor on the learning rate."""
        index = self._check_group(group)
        if not self.built:
            return self.initial_multipliers[group]
        return float(keras.ops.convert_to_numpy(self._multipliers[index]))

    def multipliers(self) -> dict[str, float]:
        """Every group's current factor."""
        return {group: self.multiplier(group) for group in self.groups}

    def reset(self) -> None:
        """Forget the training so far: moments, velocities and the step count go to zero."""
        if not self.built:
            return
        self.iterations.assign(0)
        for slot in (*self._momentums, *self._velocities, *getattr(self, "_velocity_hats", [])):
            slot.assign(keras.ops.zeros_like(slot))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"multipliers": dict(self.initial_multipliers), "groups": dict(self.groups)})
        return config


class GradualUnfreezing(keras.callbacks.Callback):
    """Gradual unfreezing (Howard and Ruder, ACL 2018): train the top group first, then open the next one down
    every ``epochs_per_stage`` epochs (or every ``steps_per_stage`` steps), each at the multiplier it had
    when training began.

    ``order`` lists the stages from the top down; a stage is a group name or a tuple of groups opened
    together. Needs a :class:`DiscriminativeAdam` (its multipliers are variables, so nothing is re-compiled).
    ``stages`` records the groups training after each change.
    """

    def __init__(self, order: Sequence[str | Sequence[str]] = ("heads", "towers", "bottom", "embeddings"),
                 epochs_per_stage: int | None = None, steps_per_stage: int | None = None) -> None:
        super().__init__()
        if isinstance(order, str) or not order:
            raise ValueError(f"order must list at least one stage, top first, got {order!r}")
        if epochs_per_stage is not None and steps_per_stage is not None:
            raise ValueError("give epochs_per_stage or steps_per_stage, not both")
        per_stage = steps_per_stage if steps_per_stage is not None else (epochs_per_stage or 1)
        if int(per_stage) < 1:
            raise ValueError(f"a stage must last at least one epoch or step, got {per_stage}")
        self.order = [(stage,) if isinstance(stage, str) else tuple(stage) for stage in order]
        self.by_steps = steps_per_stage is not None
        self.per_stage = int(per_stage)
        self.stages: list[list[str]] = []
        self._targets: dict[str, float] = {}
        self._step = 0
        self._open = 0

    def _optimizer(self) -> DiscriminativeAdam:
        optimizer = self.model.optimizer
        if not isinstance(optimizer, DiscriminativeAdam):
            raise TypeError(
                f"GradualUnfreezing needs the model compiled with a DiscriminativeAdam, got {type(optimizer).__name__}"
            )
        return optimizer

    def _open_stages(self, count: int) -> None:
        count = min(len(self.order), count)
        if count == self._open:
            return
        optimizer = self._optimizer()
        for i, stage in enumerate(self.order):
            for group in stage:
                optimizer.set_multiplier(group, self._targets[group] if i < count else 0.0)
        self._open = count
        self.stages.append([group for stage in self.order[:count] for group in stage])

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        optimizer = self._optimizer()
        groups = [group for stage in self.order for group in stage]
        for group in groups:
            optimizer._check_group(group)
        self._targets = {group: optimizer.multiplier(group) for group in groups}
        self.stages, self._step, self._open = [], 0, 0
        self._open_stages(1)

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        if not self.by_steps:
            self._open_stages(epoch // self.per_stage + 1)

    def on_train_batch_begin(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        if self.by_steps:
            self._open_stages(self._step // self.per_stage + 1)
            self._step += 1

    def on_train_end(self, logs: Mapping[str, float] | None = None) -> None:
        optimizer = self._optimizer()
        for group, value in self._targets.items():  # leave the optimizer as it was found
            optimizer.set_multiplier(group, value)


class BestOnValidation(BestWeights):
    """Early stopping in steps: every ``every`` training steps, score the model (higher is better), keep the
    best weights, stop after ``patience`` checks without improvement (counted from ``min_steps`` on), and
    restore the best weights at the end.

    The course's :class:`utils.training.BestWeights` with a check every ``every`` steps instead of every epoch:
    small targets are passed over many times and overfit within a few passes, so checking once per epoch is
    too coarse for them and too fine for a large one; ``score`` is any function of the model (a validation AUC).
    """

    MONITOR = "val_score"

    def __init__(self, score: Callable[[keras.Model], float], every: int, patience: int = 0,
                 min_steps: int = 0) -> None:
        if int(every) < 1 or int(patience) < 0 or int(min_steps) < 0:
            raise ValueError(f"need every >= 1, patience >= 0 and min_steps >= 0, got {every}, {patience}, {min_steps}")
        super().__init__({self.MONITOR: "max"}, patience=int(patience))
        self.score, self.every, self.min_steps = score, int(every), int(min_steps)
        self.checks: list[tuple[int, float]] = []

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        super().on_train_begin(logs)
        self.checks, self._steps = [], 0

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        """Nothing at the end of a Keras epoch: the checks come every ``every`` steps."""

    def _check(self) -> None:
        value = float(self.score(self.model))
        self.checks.append((self._steps, value))
        super().on_epoch_end(len(self.checks) - 1, {self.MONITOR: value})
        if self._steps < self.min_steps:  # before min_steps (while groups are still opening) nothing stops
            self._waiting, self.model.stop_training = 0, False

    def on_train_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        self._steps += 1
        if self._steps % self.every == 0:
            self._check()

    def on_train_end(self, logs: Mapping[str, float] | None = None) -> None:
        if not self.checks or (self.checks[-1][0] != self._steps and not self.model.stop_training):
            self._check()
        super().on_train_end(logs)

    @property
    def best_step(self) -> int:
        """The step count of the weights kept."""
        return self.checks[self.best_epoch[self.MONITOR] - 1][0] if self.checks else 0


# --------------------------------------------------------------------------------------------------
# Moving weights between models
# --------------------------------------------------------------------------------------------------


def copy_weights(source: keras.Model, target: keras.Model, rename: Callable[[str], str] | None = None,
                 skip: Iterable[str] = (), groups: Mapping[str, str] | None = None) -> list[str]:
    """Copy weights layer by layer from ``source`` into ``target``; returns the names of the target layers filled.

    A target layer takes the weights of the source layer named ``rename(its name)`` (the same name by
    default); layers with no such source layer, or in ``skip`` (groups or layer names), keep theirs. Shapes
    must agree: a mismatch raises a ``ValueError`` that names the layer and both shapes.
    """
    skipped = {layer.name for layer in select_layers(target, skip, groups)} if skip else set()
    by_name = {layer.name: layer for layer in source.layers}
    copied = []
    for layer in _weighted_layers(target):
        if layer.name in skipped:
            continue
        origin = by_name.get(rename(layer.name) if rename else layer.name)
        if origin is None or not origin.weights:
            continue
        values = origin.get_weights()
        shapes = [tuple(w.shape) for w in layer.weights]
        if [tuple(v.shape) for v in values] != shapes:
            raise ValueError(
                f"layer {layer.name!r} has weights of shapes {shapes}, but {origin.name!r} of the source has "
                f"{[tuple(v.shape) for v in values]}: the two models were built from different feature specs or widths"
            )
        layer.set_weights(values)
        copied.append(layer.name)
    return copied


_INITIALIZED = ("kernel", "bias", "embeddings")  # weights whose layer keeps the initializer that drew them


def initial_weights(model: keras.Model, seed: int) -> list[np.ndarray]:
    """A fresh initialisation of ``model`` for ``seed``, in the order of ``model.get_weights()``.

    Each kernel, bias and embedding table is drawn again by its layer's own initializer, seeded from ``seed``
    and its position; other weights (a normalisation's fitted mean and variance) keep their values. Unlike
    re-seeding the global generators (``keras.utils.set_random_seed``), which clears TensorFlow's caches and
    costs a good part of a second each time, this touches no global state.
    """
    drawn: dict[str, np.ndarray] = {}
    for index, layer in enumerate(model.layers):
        for attribute in _INITIALIZED:
            variable = getattr(layer, attribute, None)
            initializer = getattr(layer, f"{attribute}_initializer", None)
            if variable is None or initializer is None or not hasattr(variable, "path"):
                continue
            config = initializer.get_config()
            if "seed" in config:
                config["seed"] = int(seed) * 1000 + index * len(_INITIALIZED) + _INITIALIZED.index(attribute)
                initializer = type(initializer).from_config(config)
            drawn[variable.path] = keras.ops.convert_to_numpy(initializer(tuple(variable.shape), dtype=variable.dtype))
    return [drawn.get(w.path, keras.ops.convert_to_numpy(w.value)) for w in model.weights]


# --------------------------------------------------------------------------------------------------
# A joint model with market-specific towers
# --------------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="course")
class MarketSwitch(keras.layers.Layer):
    """Picks, for each row, the output of its market's tower: ``outputs[market[i]][i]``.

    Called on ``[market, output_0, output_1, ...]`` with ``market`` an integer per row (0..n-1) and every
    output of the same shape ``(rows, k)``; a market id out of range gives zeros.
    """

    def __init__(self, n_markets: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(n_markets) < 1:
            raise ValueError(f"n_markets must be >= 1, got {n_markets}")
        self.n_markets = int(n_markets)

    def call(self, inputs: Sequence[Any]) -> Any:
        market, *outputs = inputs
        if len(outputs) != self.n_markets:
            raise ValueError(f"MarketSwitch expects {self.n_markets} outputs, got {len(outputs)}")
        choice = ops.one_hot(ops.cast(ops.reshape(market, (-1,)), "int32"), self.n_markets, dtype=outputs[0].dtype)
        return sum(choice[:, i : i + 1] * out for i, out in enumerate(outputs))

    def compute_output_shape(self, input_shape: Sequence[tuple]) -> tuple:
        return tuple(input_shape[1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_markets": self.n_markets}


#: The input a joint model reads the market from (0 = source, 1 = target, as :func:`market_codes` gives).
MARKET_INPUT = "market"
#: The markets of ShopSim, in the order of their codes.
MARKETS = ("source", "target")


def market_codes(frame: pd.DataFrame, column: str = "domain", markets: Sequence[str] = MARKETS) -> np.ndarray:
    """Each row's market as an int64 code, its position in ``markets``; a market not listed raises."""
    if column not in frame.columns:
        raise KeyError(f"the frame has no column {column!r} to read the market from; it has {list(frame.columns)}")
    codes = frame[column].astype(str).map({m: i for i, m in enumerate(markets)})
    if codes.isna().any():
        unknown = sorted(set(frame.loc[codes.isna(), column].astype(str)))
        raise ValueError(f"rows of unknown market(s) {unknown}; the markets are {list(markets)}")
    return codes.to_numpy(dtype=np.int64)


def with_market(spec: FeatureSpec) -> FeatureSpec:
    """The spec plus the ``market`` column, to feed a joint model (``make_multitask_dataset``, ``feature_arrays``)."""
    if MARKET_INPUT in spec.names:
        return spec
    market = Feature(MARKET_INPUT, "categorical", embedding_dim=1, vocabulary=np.arange(len(MARKETS), dtype=np.int64))
    return FeatureSpec((*spec.features, market))


def joint_market_model(
    spec: FeatureSpec,
    tasks: Sequence[Task],
    markets: Sequence[str] = MARKETS,
    bottom: Sequence[int] = (128,),
    tower: Sequence[int] = (64,),
    name: str = "joint_markets",
) -> keras.Model:
    """Shared embeddings and bottom for every market, then per task and market a tower and head
    (``tower_<task>_<market>_dense_i``, ``head_<task>_<market>``); each row gets its own market's output.

    Inputs: the spec's features and ``market`` (int64 code of the row's market). Outputs: a dict by task, as
    :func:`utils.models.shared_bottom_model`, whose layers (with the market dropped from the names) it mirrors,
    so :func:`copy_weights` with :func:`market_free_name` warm-starts it from a single-market model.
    """
    if len(markets) < 1 or len(set(markets)) != len(markets):
        raise ValueError(f"markets must be distinct names, got {list(markets)}")
    inputs = {f.name: keras.Input(shape=(), dtype=f.dtype, name=f.name) for f in spec}
    market = keras.Input(shape=(), dtype="int64", name=MARKET_INPUT)
    parts = list(encode_features(spec, inputs).values())
    x = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="features")(parts)
    shared = mlp(bottom, name="bottom")(x)
    outputs = {}
    for task in tasks:
        per_market = []
        for m in markets:
            h = mlp(tower, name=f"tower_{task.name}_{m}")(shared)
            per_market.append(keras.layers.Dense(task.units, activation=task.activation, name=f"head_{task.name}_{m}")(h))
        outputs[task.name] = MarketSwitch(len(markets), name=task.name)([market, *per_market])
    return keras.Model({**inputs, MARKET_INPUT: market}, outputs, name=name)


def market_free_name(name: str, markets: Sequence[str] = MARKETS) -> str:
    """A joint model's layer name without its market (``tower_click_target_dense_1`` -> ``tower_click_dense_1``)."""
    for m in markets:
        name = re.sub(rf"_{re.escape(m)}(?=_dense_\d+$|$)", "", name)
    return name


# --------------------------------------------------------------------------------------------------
# Strategies, one reusable training step, and the sweep
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Strategy:
    """How a model meets the target market.

    ``start``: ``"pretrained"`` (the source model's weights), ``"scratch"`` (a fresh initialisation) or
    ``"current"`` (whatever the runner's model holds now: to continue a run);
    ``new``: groups re-initialised before training (a new head); ``multipliers``: per group factor on
    ``learning_rate`` (0 = frozen); ``unfreeze``: groups from the top down for gradual unfreezing;
    ``source_mix``: source rows mixed in per target row; ``train=False``: the model is used as it starts.
    """

    name: str
    start: str = "pretrained"
    learning_rate: float = 1e-3
    multipliers: Mapping[str, float] = field(default_factory=dict)
    new: tuple[str, ...] = ()
    unfreeze: tuple[str | tuple[str, ...], ...] = ()
    source_mix: float = 0.0
    train: bool = True

    def __post_init__(self) -> None:
        if self.start not in ("pretrained", "scratch", "current"):
            raise ValueError(f"strategy {self.name!r}: start must be 'pretrained', 'scratch' or 'current', "
                             f"got {self.start!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"strategy {self.name!r}: learning_rate must be > 0, got {self.learning_rate}")
        if self.source_mix < 0:
            raise ValueError(f"strategy {self.name!r}: source_mix must be >= 0, got {self.source_mix}")
        object.__setattr__(self, "multipliers", dict(self.multipliers))
        object.__setattr__(self, "new", tuple(self.new))
        object.__setattr__(self, "unfreeze", tuple(self.unfreeze))

    def describe(self) -> dict[str, Any]:
        """One row of a strategies table."""
        return {
            "strategy": self.name,
            "starts from": self.start if self.train or self.start == "scratch" else "pretrained (no training)",
            "learning rate": self.learning_rate if self.train else None,
            "frozen groups": ", ".join(g for g, m in self.multipliers.items() if m == 0) or "-",
            "slower groups": ", ".join(f"{g} x{m:g}" for g, m in self.multipliers.items() if 0 < m < 1) or "-",
            "re-initialised": ", ".join(self.new) or "-",
            "gradual unfreezing": " > ".join(s if isinstance(s, str) else " + ".join(s) for s in self.unfreeze) or "-",
            "source rows mixed in": self.source_mix or "-",
        }


class TransferRunner:
    """Trains one architecture under many strategies without tracing its training step again.

    Building and compiling a model and tracing its first ``fit`` costs seconds, more than training a small
    model on a small target. The runner builds and compiles once (with a :class:`DiscriminativeAdam`), then
    for each run sets the starting weights, resets the optimizer and sets the rate and multipliers:
    a multiplier of 0 holds a group still exactly as ``trainable=False`` would, without a re-compile.

    With ``validation`` rows, each run stops early on the ``monitor`` task's validation AUC, checked every
    half pass over the training rows (at least every ``check_steps`` steps), and keeps its best weights
    (:class:`BestOnValidation`); a run lasts at most ``max_epochs`` passes and ``max_steps`` steps. Gradual
    unfreezing opens one more group at each check and is not stopped before all are open (its run is
    lengthened to allow that and one check more). Without validation rows, a run makes one pass. A run from
    scratch, or with new heads, starts its heads at the base rates of its training rows (the course's protocol,
    :mod:`utils.training`). Each run's record in :attr:`history` says how many steps it ran, at which its kept
    weights were, and whether the step limit ended it before early stopping did (``capped``).
    """

    def __init__(self, build: Callable[[], keras.Model], spec: FeatureSpec, tasks: Sequence[Task],
                 pretrained: keras.Model | None = None, rename: Callable[[str], str] | None = None,
                 source_rows: pd.DataFrame | None = None, validation: pd.DataFrame | None = None,
                 monitor: str | None = None, batch_size: int = 1024, check_steps: int = 20, max_epochs: int = 20,
                 max_steps: int | None = None, patience: int = 0, groups: Mapping[str, str] | None = None) -> None:
        self.build, self.spec, self.tasks = build, spec, list(tasks)
        self.batch_size, self.check_steps = int(batch_size), int(check_steps)
        self.max_epochs, self.patience = int(max_epochs), int(patience)
        self.max_steps = None if max_steps is None else int(max_steps)
        if min(self.batch_size, self.check_steps, self.max_epochs, self.max_steps or 1) < 1 or self.patience < 0:
            raise ValueError("batch_size, check_steps, max_epochs and max_steps must be >= 1 and patience >= 0")
        self._calls: dict[int, tuple[Any, Callable[[], Any]]] = {}
        self.source_rows = source_rows
        self.model = build()
        self.optimizer = DiscriminativeAdam(1e-3, groups=groups)
        self.model.compile(optimizer=self.optimizer, loss={t.name: t.loss for t in self.tasks})
        self.groups = self.optimizer.groups
        self._fresh: dict[int, list[np.ndarray]] = {}
        self.pretrained: list[np.ndarray] | None = None
        if pretrained is not None:
            copied = copy_weights(pretrained, self.model, rename=rename)
            missing = [n for n in (layer.name for layer in _weighted_layers(self.model)) if n not in copied]
            if missing:
                raise ValueError(f"the pretrained model has no layers for {missing}: give a rename function")
            self.pretrained = self.model.get_weights()
        self._group_of_weight = [group_of(_layer_of(w.path), self.groups) for w in self.model.weights]
        self.monitor = monitor or self.tasks[0].name
        if self.monitor not in {t.name for t in self.tasks}:
            raise ValueError(f"monitor {self.monitor!r} is not one of the tasks {[t.name for t in self.tasks]}")
        self.validation: tuple[dict[str, np.ndarray], np.ndarray] | None = None
        if validation is not None:
            self.set_validation(validation)
        self.history: list[dict[str, Any]] = []

    def set_validation(self, rows: pd.DataFrame | None) -> None:
        """The rows that early stopping scores on (None: no early stopping, one pass per run)."""
        if rows is None:
            self.validation = None
            return
        if len(rows) == 0:
            raise ValueError("the validation rows are empty")
        task = next(t for t in self.tasks if t.name == self.monitor)
        self.validation = (feature_arrays(rows, self.spec), rows[task.label_columns[0]].to_numpy())

    def fresh(self, seed: int) -> list[np.ndarray]:
        """The initial weights for ``seed`` (cached)."""
        if seed not in self._fresh:
            self._fresh[seed] = initial_weights(self.model, seed)
        return self._fresh[seed]

    def starting_weights(self, strategy: Strategy, seed: int) -> list[np.ndarray]:
        """Pretrained, fresh or current weights, with the strategy's ``new`` groups taken from fresh ones."""
        if strategy.start == "scratch":
            return self.fresh(seed)
        if strategy.start == "current":
            base = self.model.get_weights()
        elif self.pretrained is None:
            raise ValueError(f"strategy {strategy.name!r} starts from pretrained weights, but the runner has none")
        else:
            base = self.pretrained
        unknown = sorted(set(strategy.new) - set(self.groups))
        if unknown:
            raise KeyError(f"strategy {strategy.name!r} re-initialises unknown group(s) {unknown}; "
                           f"groups: {list(self.groups)}")
        fresh = self.fresh(seed) if strategy.new else None
        return [fresh[i] if g in strategy.new else w for i, (w, g) in enumerate(zip(base, self._group_of_weight))]

    def _training_rows(self, strategy: Strategy, rows: pd.DataFrame, seed: int) -> pd.DataFrame:
        if not strategy.source_mix:
            return rows
        if self.source_rows is None:
            raise ValueError(f"strategy {strategy.name!r} mixes in source rows, but the runner was given none")
        n = min(len(self.source_rows), round(strategy.source_mix * len(rows)))
        picked = np.random.default_rng(seed).choice(len(self.source_rows), n, replace=False)
        return pd.concat([rows, self.source_rows.iloc[np.sort(picked)]])

    def _fast_call(self, x: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """The model's outputs on fixed inputs through one traced call (``predict`` spends about 0.1 s per call
        setting up its loop, more than scoring a validation set takes)."""
        key = id(x)
        if key not in self._calls:
            tensors = {name: tf.constant(values) for name, values in x.items()}
            self._calls[key] = (x, tf.function(lambda: self.model(tensors, training=False)))
        return self._calls[key][1]()

    def validation_auc(self, model: keras.Model | None = None) -> float:
        """AUC of the monitored task on the validation rows."""
        if self.validation is None:
            raise ValueError("the runner was given no validation rows")
        x, y = self.validation
        if model is not None and model is not self.model:
            scores = model.predict(x, batch_size=16384, verbose=0)[self.monitor]
        else:
            scores = self._fast_call(x)[self.monitor]
        return auc(y, np.asarray(scores).ravel())

    def fit(self, strategy: Strategy, rows: pd.DataFrame, seed: int, steps: int | None = None) -> keras.Model:
        """Train the runner's model on ``rows`` under ``strategy`` from its starting weights; returns the model.

        ``steps`` fixes the length of the run (no early stopping).
        """
        unknown = sorted(set(strategy.multipliers) - set(self.groups))
        if unknown:
            raise KeyError(f"strategy {strategy.name!r} sets multipliers of unknown group(s) {unknown}; "
                           f"groups: {list(self.groups)}")
        self.model.set_weights(self.starting_weights(strategy, seed))
        if (strategy.start == "scratch" or "heads" in strategy.new) and len(rows):
            self.base_rate_heads(rows)  # the protocol: a new head starts at the base rate, not at 0.5
        record = {"strategy": strategy.name, "seed": seed, "rows": len(rows), "steps": 0, "best_step": 0,
                  "capped": False}
        if not strategy.train or len(rows) == 0:
            self.history.append(record)
            return self.model
        data = self._training_rows(strategy, rows, seed)
        per_pass = -(-len(data) // self.batch_size)
        callbacks: list[keras.callbacks.Callback] = []
        if steps is None and self.validation is not None:
            every = max(self.check_steps, -(-per_pass // 2))
            opening = every * len(strategy.unfreeze)  # gradual unfreezing: no stopping before every group is open
            steps = self.max_epochs * per_pass if self.max_steps is None else min(self.max_epochs * per_pass, self.max_steps)
            steps = max(steps, opening + every) if strategy.unfreeze else steps
            stopper = BestOnValidation(self.validation_auc, every=every, patience=self.patience, min_steps=opening)
            callbacks.append(stopper)
        else:
            stopper = None
            steps = int(steps) if steps is not None else per_pass
            every = -(-steps // max(1, len(strategy.unfreeze)))
        self.optimizer.reset()
        self.optimizer.learning_rate.assign(strategy.learning_rate)
        for group in self.groups:
            self.optimizer.set_multiplier(group, strategy.multipliers.get(group, 1.0))
        if strategy.unfreeze:  # one more group opens at each validation check (or evenly over a fixed run)
            callbacks.insert(0, GradualUnfreezing(strategy.unfreeze, steps_per_stage=every))
        # One Keras epoch over a repeated, reshuffled dataset: a small target is passed over several times
        # without paying Keras's per-epoch overhead each time.
        dataset = make_multitask_dataset(data, self.spec, self.tasks, self.batch_size, shuffle=True, seed=seed)
        self.model.fit(dataset.repeat(), epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False, callbacks=callbacks)
        for group in self.groups:  # leave every group movable for whoever trains the model next
            self.optimizer.set_multiplier(group, 1.0)
        run = int(self.optimizer.iterations.numpy())
        record.update(rows=len(data), steps=run, best_step=stopper.best_step if stopper else steps,
                      capped=bool(stopper is not None and not self.model.stop_training))
        self.history.append(record)
        return self.model

    def base_rate_heads(self, rows: pd.DataFrame) -> dict[str, np.ndarray]:
        """Set every head's bias to its task's base rate on ``rows`` (:func:`utils.training.base_rate_biases`),
        the heads of every market of a joint model alike; returns the biases by task."""
        biases = base_rate_biases(self.tasks, rows)
        heads: dict[str, list[keras.layers.Layer]] = {}
        for layer in self.model.layers:
            if layer.name.startswith("head_"):
                heads.setdefault(market_free_name(layer.name).removeprefix("head_"), []).append(layer)
        headless = sorted(set(biases) - set(heads))
        if headless:
            raise ValueError(f"no head layer for task(s) {headless}; heads here: {sorted(heads)}")
        for task, bias in biases.items():
            for layer in heads[task]:
                layer.bias.assign(bias.astype(layer.bias.dtype))
        return biases

    def predict(self, x: pd.DataFrame | Mapping[str, np.ndarray], batch_size: int = 16384) -> dict[str, np.ndarray]:
        """Predictions by task, one value per row for single-output tasks, for a frame or ready feature arrays.

        Ready arrays are scored through a traced call kept per array dict (cheap to repeat on the same rows).
        """
        if isinstance(x, pd.DataFrame):
            out = self.model.predict(feature_arrays(x, self.spec), batch_size=batch_size, verbose=0)
        else:
            out = {name: keras.ops.convert_to_numpy(v) for name, v in self._fast_call(x).items()}
        return {name: (np.asarray(v)[:, 0] if np.ndim(v) == 2 and np.shape(v)[1] == 1 else np.asarray(v))
                for name, v in out.items()}


def single_market_view(shop: ShopSimData) -> ShopSimData:
    """The shop as one market, for :class:`utils.ceilings.IdealLearner` fitted on one market's rows.

    ShopSim's markets share items, prices, slots, intercepts and every user's propensity and price sensitivity;
    only the users' tastes differ, and those the ideal learner estimates from the rows it is given. Fitted on the
    target's rows alone, it is the best a learner of the target's data can do; it ignores the source (and what a
    user active in both markets showed there).
    """
    if shop.config.taste_drift > 0:
        raise ValueError("the ideal learner needs stationary tastes: generate the shop with taste_drift=0")
    return dataclasses.replace(shop, config=dataclasses.replace(shop.config, target_share=0.0))


def nested_subsample(rows: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """A random ``fraction`` of the rows (at least one), in their original order.

    The same seed gives nested subsamples (the 1% is inside the 10%), so a data-efficiency curve compares
    growing sets rather than independent draws.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if len(rows) == 0:
        raise ValueError("no rows to subsample")
    order = np.random.default_rng(seed).permutation(len(rows))
    keep = np.sort(order[: max(1, round(fraction * len(rows)))])
    return rows.iloc[keep]


def sweep(
    strategies: Mapping[str, Callable[[pd.DataFrame, int], Mapping[str, float]]],
    rows: pd.DataFrame,
    sizes: Sequence[float],
    seeds: Sequence[int],
) -> pd.DataFrame:
    """Train and score every strategy on a nested subsample of ``rows`` of each size, for each seed.

    ``strategies`` maps a name to ``train_and_score(subsample, seed) -> {metric: value}``. Returns a tidy
    frame: one row per strategy, size and seed, with ``rows`` (training rows), the metrics and ``seconds``.
    """
    if not strategies:
        raise ValueError("give at least one strategy")
    if not sizes or not seeds:
        raise ValueError("give at least one size and one seed")
    records = []
    for seed in seeds:
        for size in sizes:
            subset = nested_subsample(rows, size, seed)
            for name, train_and_score in strategies.items():
                start = time.perf_counter()
                scores = dict(train_and_score(subset, seed))
                records.append({"strategy": name, "size": float(size), "seed": int(seed), "rows": len(subset),
                                **scores, "seconds": time.perf_counter() - start})
    return pd.DataFrame(records)


# --------------------------------------------------------------------------------------------------
# Embedding mapping across markets (EMCDR)
# --------------------------------------------------------------------------------------------------


def fit_embedding_map(source: np.ndarray, target: np.ndarray, l2: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The linear map ``target ~ source @ W + b`` fitted by ridge regression on users known in both markets
    (EMCDR's linear mapping, Man et al., IJCAI 2017); the intercept ``b`` is not penalised.

    ``source`` is ``(n, d_s)``, ``target`` ``(n, d_t)``; returns ``W`` of shape ``(d_s, d_t)`` and ``b`` of
    shape ``(d_t,)``. The reference of Exercise 07.3 (``sklearn.linear_model.Ridge`` gives the same).
    """
    source, target = np.asarray(source, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if source.ndim != 2 or target.ndim != 2 or len(source) != len(target):
        raise ValueError(f"need two 2-d arrays with one row per user, got shapes {source.shape} and {target.shape}")
    if len(source) < 2:
        raise ValueError("need at least two users seen in both markets to fit a map")
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    s_mean, t_mean = source.mean(axis=0), target.mean(axis=0)
    s, t = source - s_mean, target - t_mean
    weights = np.linalg.solve(s.T @ s + l2 * np.eye(s.shape[1]), s.T @ t)
    return weights, t_mean - s_mean @ weights


# --------------------------------------------------------------------------------------------------
# Reading the results
# --------------------------------------------------------------------------------------------------


def history_bins(users: ArrayLike, seen_users: ArrayLike, edges: Sequence[int] = (0, 1, 5, 10, 20)) -> np.ndarray:
    """For each of ``users``, the bin of how many times it occurs in ``seen_users`` (its training history):
    the largest edge not above its count (edges ``0, 1, 5, 10, 20`` give bins 0, 1-4, 5-9, 10-19, 20+)."""
    edges = np.asarray(edges)
    if edges.ndim != 1 or len(edges) == 0 or edges[0] != 0 or (np.diff(edges) <= 0).any():
        raise ValueError(f"edges must rise strictly from 0, got {edges.tolist()}")
    counts = pd.Series(np.asarray(seen_users)).value_counts()
    n = pd.Series(np.asarray(users)).map(counts).fillna(0).to_numpy()
    return edges[np.searchsorted(edges, n, side="right") - 1]


def gap_table(curves: pd.DataFrame, baseline: str, metric: str = "auc", by: str = "size") -> pd.DataFrame:
    """Per ``by`` value: the baseline's mean, the best other strategy (by mean), its mean, the gap, and the
    largest seed-to-seed standard deviation of the two (what a gap must exceed to mean anything)."""
    for column in ("strategy", "seed", by, metric):
        if column not in curves.columns:
            raise KeyError(f"the curves have no column {column!r}; they have {list(curves.columns)}")
    if baseline not in set(curves["strategy"]):
        raise ValueError(f"no strategy {baseline!r} in the curves; they have {sorted(set(curves['strategy']))}")
    stats = curves.groupby([by, "strategy"])[metric].agg(["mean", "std"])
    rows = []
    for value, group in stats.groupby(level=0):
        group = group.droplevel(0)
        others = group.drop(index=baseline)
        best = others["mean"].idxmax()
        rows.append({by: value, "baseline": group.loc[baseline, "mean"], "best": best,
                     "best mean": others.loc[best, "mean"], "gap": others.loc[best, "mean"] - group.loc[baseline, "mean"],
                     "spread": float(np.nanmax([group.loc[baseline, "std"], others.loc[best, "std"], 0.0]))})
    return pd.DataFrame(rows).set_index(by)


def crossover(gaps: pd.DataFrame, margin: str = "spread") -> float:
    """The smallest size from which on the gap of :func:`gap_table` stays within the ``margin`` column (the seed
    spread by default, or e.g. twice a standard error): the baseline has caught up. NaN if it never does."""
    if margin not in gaps.columns:
        raise KeyError(f"the gaps have no column {margin!r}; they have {list(gaps.columns)}")
    caught = (gaps["gap"] <= gaps[margin]).to_numpy()
    for i in range(len(caught)):
        if caught[i:].all():
            return float(gaps.index[i])
    return float("nan")
