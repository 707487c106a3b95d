"""Model builders every lesson shares: a feature spec fitted on training data, tasks, MLPs, the
single-task and shared-bottom models, their compilation, and a masked multi-task ``tf.data`` pipeline.

    >>> spec = feature_spec(train, categorical=["user_id", "item_id", "position"], log_numeric=["price"])
    >>> tasks = [Task("click", "binary"), Task("purchase", "binary")]
    >>> model = compile_model(shared_bottom_model(spec, tasks), tasks)
    >>> model.fit(make_multitask_dataset(train, spec, tasks, 4096, shuffle=True), epochs=2, shuffle=False)

What a model expects: one raw value per example and feature, named as in the frame. Categorical ids
are ``int64`` (``int32``, ``int8`` or nullable ``Int8`` columns are cast; a missing id is ``-1``, which
maps to the out-of-vocabulary slot), numeric features ``float32`` (without NaN). Every preprocessing
step (vocabulary lookup, ``log1p``, normalisation) is inside the model, so a saved ``.keras`` file takes
raw values and needs nothing from this module to load. Outputs are a dict keyed by task name:
``(n, 1)`` for binary and regression tasks, ``(n, n_classes)`` for the others. Keras names the logs
``<task>_<metric>`` (``purchase_auc``, ``val_click_log_loss``), or just ``auc``, ``loss`` when a model
has a single output.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

__all__ = [
    "DEFAULT_EMBEDDING_DIM",
    "MISSING_ID",
    "TASK_KINDS",
    "MLP",
    "Feature",
    "PairwiseInteraction",
    "FeatureSpec",
    "Task",
    "build_inputs",
    "compile_model",
    "encode_factors",
    "encode_features",
    "feature_arrays",
    "feature_spec",
    "make_multitask_dataset",
    "mlp",
    "shared_bottom_model",
    "single_task_model",
    "task_arrays",
]

#: Embedding size used when ``feature_spec`` is given none for a feature.
DEFAULT_EMBEDDING_DIM = 16
#: The id a missing categorical value is read as; it is never in a vocabulary, so it maps to OOV.
MISSING_ID = -1
#: The task kinds, with their output activation and loss.
TASK_KINDS: dict[str, tuple[str, str]] = {
    "binary": ("sigmoid", "binary_crossentropy"),
    "multiclass": ("softmax", "sparse_categorical_crossentropy"),
    "multilabel": ("sigmoid", "binary_crossentropy"),
    "regression": ("linear", "mean_squared_error"),
}


# --------------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Feature:
    """One model input and what was fitted for it on the training data.

    ``kind`` is ``"categorical"`` (vocabulary lookup, then an embedding), ``"hashed"`` (hashing into
    ``num_bins`` buckets, then an embedding) or ``"numeric"`` (optional ``log1p``, then normalisation).
    """

    name: str
    kind: str
    embedding_dim: int = 0
    vocabulary: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64), repr=False)
    num_bins: int = 0
    log: bool = False
    mean: float = 0.0
    variance: float = 1.0

    @property
    def input_dim(self) -> int:
        """Rows of the embedding table: the vocabulary plus its OOV slot, or the hash buckets."""
        if self.kind == "categorical":
            return len(self.vocabulary) + 1
        return self.num_bins

    @property
    def dtype(self) -> str:
        """The dtype of the model input for this feature."""
        return "float32" if self.kind == "numeric" else "int64"

    @property
    def width(self) -> int:
        """Columns this feature adds to the concatenated representation."""
        return 1 if self.kind == "numeric" else self.embedding_dim


@dataclass(frozen=True)
class FeatureSpec:
    """The features of a model, in input order, each fitted on the training split only."""

    features: tuple[Feature, ...]

    def __post_init__(self) -> None:
        names = [f.name for f in self.features]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"feature(s) {duplicated} appear more than once in the spec")

    def __iter__(self) -> Iterator[Feature]:
        return iter(self.features)

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, name: str) -> Feature:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(f"no feature {name!r} in the spec; it has {self.names}")

    @property
    def names(self) -> list[str]:
        """Feature names, in input order (also the frame columns the model reads)."""
        return [f.name for f in self.features]

    def select(self, names: Sequence[str]) -> FeatureSpec:
        """The sub-spec of the named features (a user tower, an item tower), keeping what was fitted."""
        return FeatureSpec(tuple(self[name] for name in names))

    def summary(self) -> pd.DataFrame:
        """One row per feature: kind, table size or statistics, width in the representation."""
        rows = []
        for f in self.features:
            rows.append({
                "feature": f.name,
                "kind": f.kind + (" (log1p)" if f.log else ""),
                "rows in table": f.input_dim if f.kind != "numeric" else None,
                "embedding dim": f.embedding_dim if f.kind != "numeric" else None,
                "mean": f.mean if f.kind == "numeric" else None,
                "std": float(np.sqrt(f.variance)) if f.kind == "numeric" else None,
                "width": f.width,
            })
        return pd.DataFrame(rows).set_index("feature")


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"{what} {missing} not in the frame; it has columns {list(frame.columns)}")


def _categorical_values(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A categorical column as int64 ids, missing values as :data:`MISSING_ID`."""
    column = frame[name]
    if not (pd.api.types.is_integer_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype)):
        raise TypeError(
            f"categorical feature {name!r} has dtype {column.dtype}: integer ids are expected "
            "(map strings to integer codes first)"
        )
    return column.to_numpy(dtype=np.int64, na_value=MISSING_ID)


def _numeric_values(frame: pd.DataFrame, name: str, log: bool) -> np.ndarray:
    """A numeric column as float32; NaN, infinities (and negatives for a log feature) are refused."""
    column = frame[name]
    if not (pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype)):
        raise TypeError(f"numeric feature {name!r} has dtype {column.dtype}: numbers are expected")
    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(
            f"numeric feature {name!r} has {int(bad.sum())} missing or infinite value(s): fill them "
            "(and add a 'was missing' indicator if that carries signal) or drop the rows"
        )
    if log and (values < 0).any():
        raise ValueError(f"log-numeric feature {name!r} has negative values; log1p needs values >= 0")
    return values.astype(np.float32)


def feature_spec(
    train: pd.DataFrame,
    categorical: Sequence[str] = (),
    numeric: Sequence[str] = (),
    log_numeric: Sequence[str] = (),
    embedding_dim: int | Mapping[str, int] = DEFAULT_EMBEDDING_DIM,
    hashed: Mapping[str, int] | None = None,
    min_count: int = 1,
) -> FeatureSpec:
    """Fit the features on the training split: vocabularies of ids, mean and variance of numbers.

    Fitted on ``train`` only, so validation and test ids never seen in training fall into the OOV
    slot (index 0), as new users and items do in production. Ids seen fewer than ``min_count`` times
    also go there: with ``min_count > 1`` the OOV embedding is trained on rare ids and so means
    "rare or new" instead of staying at its random start. ``hashed`` maps a categorical feature to a
    number of hash buckets (no vocabulary, collisions allowed). ``log_numeric`` features get
    ``log1p`` before normalisation, inside the model. ``embedding_dim`` is one size or a dict by
    feature (others get :data:`DEFAULT_EMBEDDING_DIM`).
    """
    hashed = dict(hashed or {})
    categorical = list(categorical) + [name for name in hashed if name not in categorical]
    order = [*categorical, *numeric, *log_numeric]
    if not order:
        raise ValueError("feature_spec needs at least one feature")
    _require_columns(train, order, "feature(s)")
    if len(train) == 0:
        raise ValueError("the training frame is empty")
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    if isinstance(embedding_dim, Mapping):
        unknown = sorted(set(embedding_dim) - set(categorical))
        if unknown:
            raise ValueError(f"embedding_dim names {unknown}, which are not categorical features")
        dims = {name: int(embedding_dim.get(name, DEFAULT_EMBEDDING_DIM)) for name in categorical}
    else:
        dims = {name: int(embedding_dim) for name in categorical}
    for name, dim in dims.items():
        if dim < 1:
            raise ValueError(f"embedding_dim of {name!r} must be >= 1, got {dim}")

    features: list[Feature] = []
    for name in categorical:
        values = _categorical_values(train, name)
        if name in hashed:
            bins = int(hashed[name])
            if bins < 1:
                raise ValueError(f"hashed feature {name!r} needs num_bins >= 1, got {bins}")
            features.append(Feature(name, "hashed", embedding_dim=dims[name], num_bins=bins))
            continue
        ids, counts = np.unique(values[values != MISSING_ID], return_counts=True)
        vocabulary = ids[counts >= min_count].astype(np.int64)
        if len(vocabulary) == 0:
            raise ValueError(f"categorical feature {name!r} has no id seen {min_count}+ times in train")
        features.append(Feature(name, "categorical", embedding_dim=dims[name], vocabulary=vocabulary))
    for name, log in [(n, False) for n in numeric] + [(n, True) for n in log_numeric]:
        values = _numeric_values(train, name, log).astype(np.float64)
        if log:
            values = np.log1p(values)
        features.append(Feature(name, "numeric", log=log, mean=float(values.mean()), variance=float(values.var())))
    return FeatureSpec(tuple(features))


def feature_arrays(frame: pd.DataFrame, spec: FeatureSpec) -> dict[str, np.ndarray]:
    """The model inputs of a frame: int64 ids (missing as -1) and float32 numbers, keyed by feature.

    Feed the result to ``model.predict(..., batch_size=...)``; it checks what the model cannot.
    """
    _require_columns(frame, spec.names, "feature(s)")
    return {
        f.name: _numeric_values(frame, f.name, f.log) if f.kind == "numeric" else _categorical_values(frame, f.name)
        for f in spec
    }


def _index_or_value(f: Feature, x: Any, prefix: str) -> Any:
    """A raw input made ready for a table: an id's row index (``<prefix>_lookup`` / ``<prefix>_hashing``), or a
    numeric feature's normalised value (``<prefix>_normalization``, after log1p where asked)."""
    if f.kind == "numeric":
        if f.log:
            x = keras.ops.log1p(x)
        return keras.layers.Normalization(axis=None, mean=f.mean, variance=f.variance,
                                          name=f"{prefix}_normalization")(x)
    if f.kind == "hashed":
        return keras.layers.Hashing(num_bins=f.num_bins, name=f"{prefix}_hashing")(x)
    return keras.layers.IntegerLookup(vocabulary=f.vocabulary, num_oov_indices=1, mask_token=None,
                                      name=f"{prefix}_lookup")(x)


def encode_features(spec: FeatureSpec, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Each raw input turned into a vector: lookup + embedding, or log1p + normalisation.

    Layers are named after their feature (``user_id_lookup``, ``user_id_embedding``,
    ``price_normalization``), so a lesson can find, share or freeze them by name.
    """
    encoded = {}
    for f in spec:
        x = _index_or_value(f, inputs[f.name], f.name)
        if f.kind == "numeric":
            encoded[f.name] = keras.layers.Reshape((1,), name=f"{f.name}_column")(x)
        else:
            encoded[f.name] = keras.layers.Embedding(f.input_dim, f.embedding_dim, name=f"{f.name}_embedding")(x)
    return encoded


def build_inputs(spec: FeatureSpec | int) -> tuple[Any, keras.KerasTensor]:
    """The raw inputs of a model (one scalar per example and feature) and their concatenated encoding.

    Build one model's inputs once and share the returned representation among its tasks. An int ``d``
    instead of a spec gives one dense float input of width ``d`` named ``x`` (synthetic data, lesson 05),
    which is both the input and its representation.
    """
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        if spec < 1:
            raise ValueError(f"a dense input needs a width >= 1, got {spec}")
        dense = keras.Input(shape=(int(spec),), dtype="float32", name="x")
        return dense, dense
    if not isinstance(spec, FeatureSpec):
        raise TypeError(f"inputs must be a FeatureSpec (utils.models.feature_spec) or an int width, got {type(spec).__name__}")
    inputs = {f.name: keras.Input(shape=(), dtype=f.dtype, name=f.name) for f in spec}
    parts = list(encode_features(spec, inputs).values())
    x = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="features")(parts)
    return inputs, x


@keras.saving.register_keras_serializable(package="course")
class PairwiseInteraction(keras.layers.Layer):
    """Bi-interaction pooling: the sum over all pairs of fields of the elementwise product of their factors.

    Input ``(n, fields, k)``, output ``(n, k)``: ``0.5 * ((sum_f e_f)^2 - sum_f e_f^2)``, which costs
    ``O(fields * k)`` instead of ``O(fields^2 * k)``. Summed over ``k`` it is the second-order term of a
    factorisation machine (Rendle 2010); kept as a vector (He and Chua 2017, NFM) a head can weigh each factor.
    With a user field and an item field it holds the matrix-factorisation term ``<user, item>``.
    """

    def call(self, factors: Any) -> Any:
        total = keras.ops.sum(factors, axis=1)
        return 0.5 * (total * total - keras.ops.sum(factors * factors, axis=1))

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (input_shape[0], input_shape[2])


def encode_factors(spec: FeatureSpec, inputs: Mapping[str, Any], names: Sequence[str], factors: int,
                   l2: float = 0.0) -> Any:
    """Factor vectors of the named features, stacked ``(n, len(names), factors)``, for :class:`PairwiseInteraction`.

    An id gets its own factor table (``<name>_factor``, with the same vocabulary as its embedding); a numeric
    feature a factor vector times its normalised value (``<name>_factor`` too), as in a factorisation machine.
    ``l2`` penalises the factors: they multiply each other, so they overfit rare ids fast.
    """
    unknown = [n for n in names if n not in spec.names]
    if unknown:
        raise ValueError(f"interaction feature(s) {unknown} are not in the spec; it has {spec.names}")
    if len(names) < 2:
        raise ValueError(f"an interaction needs at least two features, got {list(names)}")
    if factors < 1:
        raise ValueError(f"factors must be >= 1, got {factors}")
    regulariser = keras.regularizers.L2(l2) if l2 else None
    initializer = keras.initializers.RandomNormal(stddev=0.01)
    parts = []
    for name in names:
        f = spec[name]
        x = _index_or_value(f, inputs[name], f"{name}_factor")
        if f.kind == "numeric":
            column = keras.layers.Reshape((1,), name=f"{name}_factor_value")(x)
            vector = keras.layers.Dense(factors, use_bias=False, kernel_initializer=initializer,
                                        kernel_regularizer=regulariser, name=f"{name}_factor")(column)
        else:
            vector = keras.layers.Embedding(f.input_dim, factors, embeddings_initializer=initializer,
                                            embeddings_regularizer=regulariser, name=f"{name}_factor")(x)
        parts.append(keras.layers.Reshape((1, factors), name=f"{name}_factor_row")(vector))
    return keras.layers.Concatenate(axis=1, name="factors")(parts)


# --------------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """A prediction task: its output name, kind, size and weight in the summed loss.

    ``label`` is the frame column (default: ``name``); a multilabel task takes either ``n_classes``
    0/1 columns or one column whose cells are multi-hot sequences.
    """

    name: str
    kind: str
    n_classes: int | None = None
    loss_weight: float = 1.0
    label: str | tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise ValueError(f"task name must be a non-empty string without '/', got {self.name!r}")
        if self.kind not in TASK_KINDS:
            raise ValueError(f"task {self.name!r} has unknown kind {self.kind!r}; use one of {sorted(TASK_KINDS)}")
        if self.kind in ("multiclass", "multilabel"):
            if self.n_classes is None or int(self.n_classes) < 2:
                raise ValueError(f"{self.kind} task {self.name!r} needs n_classes >= 2, got {self.n_classes}")
        elif self.n_classes is not None:
            raise ValueError(f"{self.kind} task {self.name!r} has one output: leave n_classes unset")
        if not (np.isfinite(self.loss_weight) and self.loss_weight >= 0):
            raise ValueError(f"task {self.name!r} needs a finite loss_weight >= 0, got {self.loss_weight}")
        if isinstance(self.label, list):
            object.__setattr__(self, "label", tuple(self.label))
        if isinstance(self.label, tuple) and self.kind != "multilabel":
            raise ValueError(f"{self.kind} task {self.name!r} reads one label column, got {list(self.label)}")

    @property
    def label_columns(self) -> list[str]:
        """The frame column(s) holding this task's label."""
        if self.label is None:
            return [self.name]
        return [self.label] if isinstance(self.label, str) else list(self.label)

    @property
    def units(self) -> int:
        """Width of the output: 1, or ``n_classes``."""
        return int(self.n_classes) if self.kind in ("multiclass", "multilabel") else 1

    @property
    def activation(self) -> str:
        """Output activation: sigmoid, softmax, sigmoid or linear."""
        return TASK_KINDS[self.kind][0]

    @property
    def loss(self) -> str:
        """Keras loss name: binary / sparse categorical cross-entropy, or mean squared error."""
        return TASK_KINDS[self.kind][1]

    def metrics(self) -> list[keras.metrics.Metric]:
        """Fresh default metrics: AUC and log loss / accuracy / log loss (multi-label) / RMSE."""
        if self.kind == "binary":
            return [keras.metrics.AUC(name="auc"), keras.metrics.BinaryCrossentropy(name="log_loss")]
        if self.kind == "multiclass":
            return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        if self.kind == "multilabel":
            # a multi-label AUC would run integer ops that oneDNN lacks on some CPUs, and TensorFlow then prints a
            # C++ error line under the cell; the log loss is cheap and quiet, and a lesson scores AUC after training
            return [keras.metrics.BinaryCrossentropy(name="log_loss")]
        return [keras.metrics.RootMeanSquaredError(name="rmse")]


def _check_tasks(tasks: Sequence[Task]) -> list[Task]:
    tasks = [tasks] if isinstance(tasks, Task) else list(tasks)
    if not tasks:
        raise ValueError("at least one task is needed")
    for task in tasks:
        if not isinstance(task, Task):
            raise TypeError(f"tasks must be Task objects, got {task!r}")
    names = [t.name for t in tasks]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"task name(s) {duplicated} used more than once")
    return tasks


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


class MLP:
    """Dense + ReLU (+ Dropout) layers applied in order; they join the calling model under their own
    names (``bottom_dense_1``, ``bottom_dropout_1``, ...), so they can be found and frozen by name."""

    def __init__(self, units: Sequence[int], dropout: float = 0.0, l2: float = 0.0, name: str = "mlp") -> None:
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {l2}")
        self.name = name
        self.layers: list[keras.layers.Layer] = []
        for i, width in enumerate(units, start=1):
            if int(width) < 1:
                raise ValueError(f"{name}: layer widths must be >= 1, got {list(units)}")
            self.layers.append(keras.layers.Dense(
                int(width), activation="relu", kernel_regularizer=keras.regularizers.L2(l2) if l2 else None,
                name=f"{name}_dense_{i}",
            ))
            if dropout:
                self.layers.append(keras.layers.Dropout(dropout, name=f"{name}_dropout_{i}"))

    def __call__(self, x: Any) -> Any:
        for layer in self.layers:
            x = layer(x)
        return x


def mlp(units: Sequence[int], dropout: float = 0.0, l2: float = 0.0, name: str = "mlp") -> MLP:
    """A stack of Dense + ReLU layers (kernel L2, optional Dropout after each); call it on a tensor."""
    return MLP(units, dropout=dropout, l2=l2, name=name)


def _head(task: Task, x: Any, pairs: Any = None) -> Any:
    """The task's output layer ``head_<task>``; with ``pairs`` (bi-interaction vectors), their weighted sum
    (``interaction_<task>``, starting as the plain factorisation-machine sum) joins the logit first.

    The head computes in float32 whatever the global policy: under ``mixed_bfloat16`` the layers below it
    run in bfloat16, but the logit, the probability and so the loss keep float32's precision (bfloat16 has
    8 significant bits: near 1 it steps by 1/256, so a probability of 0.995 becomes 0.996). In float32
    this changes nothing."""
    if pairs is None:
        return keras.layers.Dense(task.units, activation=task.activation, dtype="float32", name=f"head_{task.name}")(x)
    logit = keras.layers.Dense(task.units, dtype="float32", name=f"head_{task.name}")(x)
    second_order = keras.layers.Dense(task.units, use_bias=False, kernel_initializer="ones", dtype="float32",
                                      name=f"interaction_{task.name}")(pairs)
    total = keras.layers.Add(dtype="float32", name=f"logit_{task.name}")([logit, second_order])
    return keras.layers.Activation(task.activation, dtype="float32", name=f"output_{task.name}")(total)


def _pairs(spec: FeatureSpec | int, inputs: Any, interactions: Sequence[str] | None, factors: int,
           factor_l2: float) -> Any:
    if not interactions:
        return None
    if not isinstance(spec, FeatureSpec):
        raise ValueError("interactions need a FeatureSpec, not a dense input width")
    return PairwiseInteraction(name="pairs")(encode_factors(spec, inputs, list(interactions), factors, factor_l2))


def single_task_model(
    spec: FeatureSpec | int,
    task: Task,
    hidden: Sequence[int] = (128, 64),
    dropout: float = 0.0,
    l2: float = 0.0,
    name: str | None = None,
    interactions: Sequence[str] | None = None,
    factors: int = 16,
    factor_l2: float = 0.0,
) -> keras.Model:
    """Inputs -> embeddings -> MLP (``hidden_dense_i``) -> ``head_<task>``; output ``{task.name: ...}``.

    ``interactions`` names features (a user id, an item id, its category, ...) whose ``factors``-dimensional
    factor vectors interact pairwise (:class:`PairwiseInteraction`), added to the logit: a factorisation
    machine beside the MLP, which learns a user x item taste that an MLP on concatenated embeddings only
    approximates. ``spec`` may be an int width for a dense float input (see :func:`build_inputs`)."""
    (task,) = _check_tasks([task])
    inputs, x = build_inputs(spec)
    pairs = _pairs(spec, inputs, interactions, factors, factor_l2)
    x = mlp(hidden, dropout=dropout, l2=l2, name="hidden")(x)
    return keras.Model(inputs, {task.name: _head(task, x, pairs)}, name=name or f"{task.name}_model")


def shared_bottom_model(
    spec: FeatureSpec | int,
    tasks: Sequence[Task],
    bottom: Sequence[int] = (128,),
    tower: Sequence[int] | Mapping[str, Sequence[int]] = (64,),
    dropout: float = 0.0,
    l2: float = 0.0,
    name: str = "shared_bottom",
    interactions: Sequence[str] | None = None,
    factors: int = 16,
    factor_l2: float = 0.0,
) -> keras.Model:
    """One set of inputs and embeddings, a shared MLP (``bottom_dense_i``), then per task a tower
    (``tower_<task>_dense_i``; widths shared, or a dict by task where a task left out gets no tower)
    and a head (``head_<task>``).

    Outputs a dict keyed by task name. Every task's gradient flows into the shared bottom and embeddings.
    ``interactions`` adds shared factor vectors whose pairwise interactions every head weighs into its logit
    (see :func:`single_task_model`). ``spec`` may be an int width for a dense float input (see
    :func:`build_inputs`).
    """
    tasks = _check_tasks(tasks)
    if isinstance(tower, Mapping):
        unknown = sorted(set(tower) - {t.name for t in tasks})
        if unknown:
            raise ValueError(f"tower widths given for unknown task(s) {unknown}")
    inputs, x = build_inputs(spec)
    pairs = _pairs(spec, inputs, interactions, factors, factor_l2)
    shared = mlp(bottom, dropout=dropout, l2=l2, name="bottom")(x)
    outputs = {}
    for task in tasks:
        widths = tower.get(task.name, ()) if isinstance(tower, Mapping) else tower
        tower_out = mlp(widths, dropout=dropout, l2=l2, name=f"tower_{task.name}")(shared)
        outputs[task.name] = _head(task, tower_out, pairs)
    return keras.Model(inputs, outputs, name=name)


def _output_names(model: keras.Model) -> list[str]:
    outputs = model.output
    if isinstance(outputs, Mapping):
        return list(outputs)
    return list(model.output_names)


def compile_model(
    model: keras.Model,
    tasks: Sequence[Task],
    learning_rate: float = 1e-3,
    jit_compile: bool | str = False,
    optimizer: keras.optimizers.Optimizer | None = None,
    steps_per_execution: int = 1,
) -> keras.Model:
    """Compile with each task's loss, ``loss_weights`` from the tasks, and its metrics; returns the model.

    Metrics go in as ``weighted_metrics``: in Keras 3 plain ``metrics`` ignore sample weights, so masked
    rows would count in them. ``jit_compile`` is off by default: the vocabulary lookups are hash tables
    XLA cannot compile (Keras then warns and runs without it), and on a CPU XLA measured slower even
    with the lookups moved out of the model. Adam at ``learning_rate`` unless an optimizer is given.
    ``steps_per_execution`` runs that many batches per call into the compiled step: less Python overhead per
    batch, the same arithmetic.
    """
    tasks = _check_tasks(tasks)
    outputs = _output_names(model)
    missing = [t.name for t in tasks if t.name not in outputs]
    if missing:
        raise ValueError(f"the model has no output(s) {missing}; its outputs are {outputs}")
    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(learning_rate),
        loss={t.name: t.loss for t in tasks},
        loss_weights={t.name: float(t.loss_weight) for t in tasks},
        weighted_metrics={t.name: t.metrics() for t in tasks},
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    return model


# --------------------------------------------------------------------------------------------------
# Labels, masks and the pipeline
# --------------------------------------------------------------------------------------------------


def _label_values(frame: pd.DataFrame, task: Task) -> tuple[np.ndarray, np.ndarray]:
    """(labels with masked rows set to 0, presence mask) for one task, with its values checked."""
    columns = task.label_columns
    _require_columns(frame, columns, f"label column(s) of task {task.name!r}:")
    n = len(frame)
    if task.kind == "multilabel":
        if len(columns) == 1:
            cells = frame[columns[0]].to_numpy(dtype=object)
            present = np.array([c is not None and not (np.isscalar(c) and pd.isna(c)) for c in cells], dtype=bool)
            values = np.zeros((n, task.units), dtype=np.float64)
            for i in np.flatnonzero(present):
                row = np.asarray(cells[i], dtype=np.float64).ravel()
                if row.shape != (task.units,):
                    raise ValueError(f"task {task.name!r}: row {i} has {row.size} labels, expected {task.units}")
                values[i] = row
        else:
            if len(columns) != task.units:
                raise ValueError(f"task {task.name!r} has n_classes={task.units} but {len(columns)} label columns")
            block = np.column_stack([frame[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in columns])
            present = ~np.isnan(block).any(axis=1)
            values = np.where(present[:, None], block, 0.0)
        if not np.isin(values[present], (0.0, 1.0)).all():
            raise ValueError(f"multilabel task {task.name!r} needs 0/1 labels")
        return values.astype(np.float32), present

    column = frame[columns[0]]
    if not (pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype)):
        raise TypeError(f"label {columns[0]!r} of task {task.name!r} has dtype {column.dtype}: numbers expected")
    raw = column.to_numpy(dtype=np.float64, na_value=np.nan)
    present = ~np.isnan(raw)
    values = np.where(present, raw, 0.0)
    if not np.isfinite(values).all():
        raise ValueError(f"label {columns[0]!r} of task {task.name!r} has infinite values")
    if task.kind == "binary" and not np.isin(values[present], (0.0, 1.0)).all():
        raise ValueError(f"binary task {task.name!r} needs 0/1 labels in {columns[0]!r}")
    if task.kind == "multiclass":
        labelled = values[present]
        if (labelled != np.round(labelled)).any() or (labelled < 0).any() or (labelled >= task.units).any():
            raise ValueError(
                f"multiclass task {task.name!r} needs integer labels in 0..{task.units - 1} in {columns[0]!r}"
            )
        return values.astype(np.int32), present
    return values.astype(np.float32)[:, None], present


def task_arrays(
    frame: pd.DataFrame,
    tasks: Sequence[Task],
    weight: str | np.ndarray | pd.Series | None = None,
    normalise_masked: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Labels and sample weights by task; a missing label (NaN, ``<NA>``, None) gets label 0, weight 0.

    Labels are shaped like the outputs: ``(n, 1)`` float32 for binary and regression, ``(n,)`` int32
    class indices for multiclass, ``(n, n_classes)`` float32 for multilabel; weights are ``(n,)``.

    Present labels weigh 1, times ``weight`` (a column name or an array) if given. Keras averages a
    weighted loss over the whole batch (``sum_over_batch_size``: ``sum(w * loss) / batch_size``), so a
    task labelled on a fraction f of the rows contributes about f times its mean loss: a sparse task
    is silently down-weighted. ``normalise_masked=True`` divides its weights by f (measured on this
    frame), so each task's loss is, in expectation over batches, the mean over its labelled rows, and
    ``loss_weight`` alone sets the balance. Leave it off to keep Keras's behaviour (the rarer the
    label, the smaller its pull), e.g. when the sparse task should not dominate the shared layers.
    """
    tasks = _check_tasks(tasks)
    n = len(frame)
    if weight is None:
        row_weight = np.ones(n)
    else:
        if isinstance(weight, str):
            _require_columns(frame, [weight], "weight column")
            weight = frame[weight]
        row_weight = np.asarray(weight, dtype=np.float64).ravel()
        if row_weight.shape != (n,):
            raise ValueError(f"weight has {row_weight.size} values for {n} rows")
        if not np.isfinite(row_weight).all() or (row_weight < 0).any():
            raise ValueError("weight must be finite and >= 0 on every row")
    y, sample_weight = {}, {}
    for task in tasks:
        values, present = _label_values(frame, task)
        w = present * row_weight
        if normalise_masked and present.any():
            w = w / present.mean()
        y[task.name] = values
        sample_weight[task.name] = w.astype(np.float32)
    return y, sample_weight


def _batches(arrays: Any, n: int, batch_size: int, shuffle: bool, seed: int) -> tf.data.Dataset:
    """Batches of ``arrays`` (a nested structure of equal-length arrays) gathered by index.

    Shuffling permutes row indices once per epoch (seeded, new order each epoch) and gathers whole
    batches, which is an order of magnitude faster than shuffling rows of a dict one by one.
    """
    tensors = tf.nest.map_structure(tf.constant, arrays)
    n_batches = -(-n // batch_size)

    def take(index: tf.Tensor) -> Any:
        return tf.nest.map_structure(lambda t: tf.gather(t, index), tensors)

    def ranges(order: tf.Tensor) -> tf.data.Dataset:
        starts = tf.data.Dataset.range(n_batches)
        return starts.map(lambda b: order[b * batch_size : (b + 1) * batch_size])

    if shuffle:
        def epoch(key: tf.Tensor) -> tf.data.Dataset:
            order = tf.random.experimental.stateless_shuffle(
                tf.range(n, dtype=tf.int64), seed=tf.stack([key, tf.constant(seed, tf.int64)])
            )
            return ranges(order)

        indices = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1).flat_map(epoch)
    else:
        indices = ranges(tf.range(n, dtype=tf.int64))
    indices = indices.apply(tf.data.experimental.assert_cardinality(n_batches))
    # tf.data's autotuner off: on 2 cores it kept taking a core from training, and about every other
    # epoch ran twice as long (measured: 2.6 s vs 5.1 s an epoch); without it every epoch took 2.6 s.
    options = tf.data.Options()
    options.autotune.enabled = False
    batches = indices.map(take, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)
    return batches.with_options(options)


def make_multitask_dataset(
    frame: pd.DataFrame,
    spec: FeatureSpec,
    tasks: Sequence[Task] = (),
    batch_size: int = 1024,
    shuffle: bool = False,
    seed: int = 0,
    weight: str | np.ndarray | pd.Series | None = None,
    normalise_masked: bool = False,
) -> tf.data.Dataset:
    """A batched ``tf.data.Dataset`` of ``(x, y, sample_weight)`` dicts; of ``x`` alone without tasks.

    ``x`` holds the spec's features as the model expects them (int64 ids, float32 numbers), ``y`` and
    ``sample_weight`` come from :func:`task_arrays` (missing labels masked). Shuffling permutes whole
    rows once per epoch (about 8x faster than tf.data's row-by-row shuffle buffer, which limits
    training to some 30-50k rows/s on two cores), a new order each epoch, reproducible from ``seed``
    and the global seed (``set_seed``). The dataset shuffles itself: call ``model.fit(...,
    shuffle=False)`` to spare Keras's warning. A label column among the features is refused.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    x = feature_arrays(frame, spec)
    if isinstance(tasks, Task):
        tasks = [tasks]
    if not tasks:
        return _batches(x, len(frame), batch_size, shuffle, seed)
    tasks = _check_tasks(tasks)
    leaked = sorted(set(spec.names) & {c for t in tasks for c in t.label_columns})
    if leaked:
        raise ValueError(f"{leaked} is both a feature and a label: the model would see the answer")
    y, sample_weight = task_arrays(frame, tasks, weight=weight, normalise_masked=normalise_masked)
    return _batches((x, y, sample_weight), len(frame), batch_size, shuffle, seed)
