"""Loss weighting for multi-task models: static weights, uncertainty weighting, Dynamic Weight Averaging.

:class:`MultiTaskLossModel` wraps any model with dict outputs and trains it on the weighted sum of its
tasks' masked losses (reduced as Keras does: ``sum(w * loss) / batch_size``). The weights are
non-trainable ``keras.Variable``\\ s (set them, or let :class:`DynamicWeightAveraging` set them each
epoch), or an :class:`UncertaintyWeighting` layer with one learned log-variance per task. It logs each
task's unweighted loss as ``<task>_loss``; compile it with an optimizer and ``weighted_metrics`` only.

    >>> model = MultiTaskLossModel(shared_bottom_model(spec, tasks), {"click": "binary", "rating": "regression"},
    ...                            weighting=UncertaintyWeighting({"click": "binary", "rating": "regression"}))
    >>> model.compile(keras.optimizers.Adam(1e-3), weighted_metrics={"click": [keras.metrics.AUC(name="auc")]})

Both classes are registered as serializable (package ``course``): a saved ``.keras`` file loads with
``keras.saving.load_model`` once this module is imported, learned log-variances included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

__all__ = ["UncertaintyWeighting", "MultiTaskLossModel", "DynamicWeightAveraging", "WeightHistory", "dwa_weights"]

_CLASSIFICATION = ("binary", "multiclass", "multilabel")
_KINDS = (*_CLASSIFICATION, "regression")


def _check_kinds(kinds: Mapping[str, str]) -> dict[str, str]:
    kinds = dict(kinds)
    if not kinds:
        raise ValueError("at least one task is needed")
    bad = {t: k for t, k in kinds.items() if k not in _KINDS}
    if bad:
        raise ValueError(f"unknown task kind(s) {bad}; use one of {list(_KINDS)}")
    return kinds


@keras.saving.register_keras_serializable(package="course")
class UncertaintyWeighting(keras.layers.Layer):
    """Kendall, Gal and Cipolla (CVPR 2018): ``sum_t c_t exp(-s_t) L_t + s_t / 2`` with learned s_t = log sigma_t^2.

    ``c_t = 1/2`` for regression (Gaussian likelihood with variance sigma_t^2, ``L_t`` the squared
    error) and ``c_t = 1`` for classification (logits scaled by 1/sigma_t^2, ``L_t`` the
    cross-entropy, using the paper's approximation). The effective weight of task t is
    ``c_t exp(-s_t)``; the ``s_t / 2`` term stops every sigma from growing without bound. Call it on a
    dict of per-task losses; it returns the scalar total.

    ``learning_rate_multiplier`` k trains ``theta_t = s_t / k`` instead of s_t: with Adam, each s_t then
    moves about k times the learning rate per step (Adam's step hardly depends on the gradient's size), so
    the weights reach ``exp(s_t) = 2 c_t L_t`` in a few hundred steps instead of thousands.
    """

    def __init__(self, kinds: Mapping[str, str], initial_log_variance: float = 0.0,
                 learning_rate_multiplier: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kinds = _check_kinds(kinds)
        self.task_names = list(self.kinds)
        self.initial_log_variance = float(initial_log_variance)
        if not learning_rate_multiplier > 0:
            raise ValueError(f"learning_rate_multiplier must be > 0, got {learning_rate_multiplier}")
        self.learning_rate_multiplier = float(learning_rate_multiplier)
        self.factors = [0.5 if self.kinds[t] == "regression" else 1.0 for t in self.task_names]
        # s_t = multiplier * theta_t: Adam moves every parameter by about the learning rate per step, whatever
        # its gradient, so a multiplier lets the log-variances reach their equilibrium in fewer steps.
        self.log_variance_parameter = self.add_weight(
            shape=(len(self.task_names),), name="log_variance",
            initializer=keras.initializers.Constant(self.initial_log_variance / self.learning_rate_multiplier),
            trainable=True,
        )

    @property
    def log_variance(self) -> Any:
        """The log-variances s_t = log sigma_t^2, one per task (a tensor)."""
        return self.learning_rate_multiplier * self.log_variance_parameter

    def call(self, losses: Mapping[str, Any]) -> Any:
        log_variance = self.log_variance
        total = 0.0
        for i, name in enumerate(self.task_names):
            s = log_variance[i]
            total = total + self.factors[i] * ops.exp(-s) * ops.cast(losses[name], s.dtype) + 0.5 * s
        return total

    def task_weights(self) -> dict[str, float]:
        """The current effective weight ``c_t exp(-s_t)`` of each task."""
        s = np.asarray(keras.ops.convert_to_numpy(self.log_variance), dtype=np.float64)
        return {name: float(c * np.exp(-v)) for name, c, v in zip(self.task_names, self.factors, s, strict=True)}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "kinds": self.kinds, "initial_log_variance": self.initial_log_variance,
                "learning_rate_multiplier": self.learning_rate_multiplier}


def _per_row(kind: str, y_true: Any, y_pred: Any) -> Any:
    if kind in ("binary", "multilabel"):
        return keras.losses.binary_crossentropy(y_true, y_pred)
    if kind == "multiclass":
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred)
    return keras.losses.mean_squared_error(y_true, y_pred)


@keras.saving.register_keras_serializable(package="course")
class MultiTaskLossModel(keras.Model):
    """A dict-output ``model`` trained on a weighted sum of its tasks' masked losses.

    ``kinds`` maps each task (output) to ``binary``, ``multiclass``, ``multilabel`` or ``regression``.
    Each task's loss is Keras's: ``sum_i w_i loss_i / batch_size`` with the task's sample weights (0 =
    masked). The total is ``weighting(losses)`` when an :class:`UncertaintyWeighting` is given, else
    ``sum_t loss_weight_t * L_t`` with the weights held in non-trainable variables
    (``self.loss_weight_variables``), which a callback may change during training. Regularisation
    losses of the model are added. Each task's unweighted loss is logged as ``<task>_loss``.
    """

    def __init__(
        self,
        model: keras.Model,
        kinds: Mapping[str, str],
        loss_weights: Mapping[str, float] | None = None,
        weighting: UncertaintyWeighting | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.kinds = _check_kinds(kinds)
        loss_weights = dict(loss_weights or {})
        unknown = sorted(set(loss_weights) - set(self.kinds))
        if unknown:
            raise ValueError(f"loss_weights given for unknown task(s) {unknown}")
        if weighting is not None and list(weighting.kinds) != list(self.kinds):
            raise ValueError(f"the weighting's tasks {list(weighting.kinds)} differ from the model's {list(self.kinds)}")
        self.initial_loss_weights = {t: float(loss_weights.get(t, 1.0)) for t in self.kinds}
        self.weighting = weighting
        self.loss_weight_variables = {
            t: keras.Variable(w, trainable=False, name=f"loss_weight_{t}", dtype="float32")
            for t, w in self.initial_loss_weights.items()
        }
        self.task_loss_trackers = {t: keras.metrics.Mean(name=f"{t}_loss") for t in self.kinds}
        if getattr(model, "built", False):
            self.built = True

    def build(self, input_shape: Any = None) -> None:
        self.built = True  # the wrapped model and the weighting are built already

    def call(self, inputs: Any, training: bool = False) -> Any:
        return self.model(inputs, training=training)

    def task_losses(self, y: Mapping[str, Any], y_pred: Mapping[str, Any],
                    sample_weight: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Each task's loss on a batch, reduced as Keras does (``sum_over_batch_size``)."""
        losses = {}
        for t, kind in self.kinds.items():
            per_row = _per_row(kind, y[t], y_pred[t])
            if sample_weight is not None and sample_weight.get(t) is not None:
                per_row = per_row * ops.cast(ops.reshape(sample_weight[t], ops.shape(per_row)), per_row.dtype)
            losses[t] = ops.sum(per_row) / ops.cast(ops.shape(per_row)[0], per_row.dtype)
        return losses

    def compute_loss(self, x: Any = None, y: Any = None, y_pred: Any = None, sample_weight: Any = None,
                     training: bool = True) -> Any:
        losses = self.task_losses(y, y_pred, sample_weight)
        for t, value in losses.items():
            self.task_loss_trackers[t].update_state(value)
        if self.weighting is not None:
            total = self.weighting(losses)
        else:
            total = sum(ops.cast(self.loss_weight_variables[t], value.dtype) * value for t, value in losses.items())
        if self.losses:
            total = total + ops.sum(ops.stack([ops.cast(v, "float32") for v in self.losses]))
        return total

    def task_weights(self) -> dict[str, float]:
        """The current effective weight of each task (static, dynamic, or ``c_t exp(-s_t)``)."""
        if self.weighting is not None:
            return self.weighting.task_weights()
        return {t: float(keras.ops.convert_to_numpy(v)) for t, v in self.loss_weight_variables.items()}

    def set_loss_weights(self, weights: Mapping[str, float]) -> None:
        """Assign new static/dynamic loss weights (read by the next training step)."""
        for t, w in weights.items():
            self.loss_weight_variables[t].assign(float(w))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({
            "model": keras.saving.serialize_keras_object(self.model),
            "kinds": self.kinds,
            "loss_weights": self.task_weights() if self.weighting is None else self.initial_loss_weights,
            "weighting": None if self.weighting is None else keras.saving.serialize_keras_object(self.weighting),
        })
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MultiTaskLossModel:
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(config["model"])
        if config.get("weighting") is not None:
            config["weighting"] = keras.saving.deserialize_keras_object(config["weighting"])
        return cls(**config)


def dwa_weights(loss_history: Sequence[Mapping[str, float]], temperature: float = 2.0) -> dict[str, float]:
    """Dynamic Weight Averaging (Liu, Johns and Davison, CVPR 2019) from the per-epoch losses so far.

    ``w_t = T_tasks * exp(r_t / temperature) / sum_k exp(r_k / temperature)`` with
    ``r_t = L_t(e-1) / L_t(e-2)``, the rate at which task t's loss went down over the last epoch: a task
    that learns slowly (r near 1 or above) gets more weight. Before two epochs exist, every weight is 1.
    The weights always sum to the number of tasks.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not loss_history:
        raise ValueError("need the losses of at least one epoch (or the task names) to return weights")
    tasks = list(loss_history[-1])
    if len(loss_history) < 2:
        return {t: 1.0 for t in tasks}
    last, before = loss_history[-1], loss_history[-2]
    ratios = np.array([last[t] / before[t] if before[t] > 0 else 1.0 for t in tasks], dtype=np.float64)
    z = np.exp((ratios - ratios.max()) / temperature)
    return {t: float(len(tasks) * v / z.sum()) for t, v in zip(tasks, z, strict=True)}


class DynamicWeightAveraging(keras.callbacks.Callback):
    """Sets a :class:`MultiTaskLossModel`'s loss weights at the end of every epoch with :func:`dwa_weights`,
    from the epoch's mean training loss of each task (the logged ``<task>_loss``)."""

    def __init__(self, temperature: float = 2.0) -> None:
        super().__init__()
        self.temperature = float(temperature)
        self.loss_history: list[dict[str, float]] = []

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self.loss_history = []
        self.model.set_loss_weights({t: 1.0 for t in self.model.kinds})

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        logs = logs or {}
        self.loss_history.append({t: float(logs[f"{t}_loss"]) for t in self.model.kinds})
        self.model.set_loss_weights(dwa_weights(self.loss_history, self.temperature))


class WeightHistory(keras.callbacks.Callback):
    """Records a :class:`MultiTaskLossModel`'s effective task weights: before training, then after each
    epoch (``self.weights`` is a list of dicts, one per record, ``len = epochs + 1``)."""

    def __init__(self) -> None:
        super().__init__()
        self.weights: list[dict[str, float]] = []

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self.weights = [self.model.task_weights()]

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self.weights.append(self.model.task_weights())
