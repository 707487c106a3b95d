"""The course's training protocol: every comparison trains its models the same way, so that a verdict is about
the models, not about how long or from where each one was trained.

- **Output biases at the base rate or mean** (:func:`init_output_biases`): a head that starts at 0 spends its
  first epochs learning the base rate, and a masked head with few labels may never get there.
- **Early stopping on validation, best weights restored** (:func:`fit`), with a generous cap on epochs: no
  model is compared while still improving or after it has started to overfit. A multi-task model keeps the best
  weights of *each* task's validation metric, so every task is judged at its own best epoch, as its single-task
  counterpart is.
- **Masked losses normalised per task, or not, as a stated choice** (``normalise_masked`` of :func:`train`).
- **The epochs run, and the curves**: :class:`FitResult` holds the per-epoch history and the best epochs.

    >>> result = train(model, tasks, spec, train_rows, valid_rows, batch_size=4096, seed=42)
    >>> result.best_epoch, result.epochs_run
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import pandas as pd

from utils.models import FeatureSpec, Task, compile_model, make_multitask_dataset, task_arrays

__all__ = ["BestWeights", "FitResult", "base_rate_biases", "fit", "init_output_biases", "monitors_for", "train"]

#: The validation metric that early stopping follows for each task kind, and whether higher is better.
MONITOR_BY_KIND: dict[str, tuple[str, str]] = {
    "binary": ("auc", "max"),
    "multilabel": ("loss", "min"),
    "multiclass": ("loss", "min"),
    "regression": ("rmse", "min"),
}


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def base_rate_biases(tasks: Sequence[Task], frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per task, the output bias a constant predictor would learn on ``frame``'s labelled rows.

    Binary and multi-label heads: the logit of the base rate; a regression head: the mean; a multiclass head: the
    log class frequencies (smoothed by one count per class).
    """
    y, w = task_arrays(frame, tasks)
    out = {}
    for task in tasks:
        labelled = w[task.name] > 0
        if not labelled.any():
            raise ValueError(f"task {task.name!r} has no labelled row in the frame: nothing to take a base rate from")
        values = y[task.name][labelled]
        if task.kind in ("binary", "multilabel"):
            out[task.name] = _logit(values.reshape(len(values), -1).mean(axis=0))
        elif task.kind == "regression":
            out[task.name] = np.array([values.mean()])
        else:
            counts = np.bincount(values.astype(int), minlength=task.units) + 1.0
            out[task.name] = np.log(counts / counts.sum())
    return out


def init_output_biases(model: keras.Model, tasks: Sequence[Task], frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Set each task's output bias (layer ``head_<task>`` of the course's builders) to :func:`base_rate_biases`
    on ``frame``. Returns the biases set, by task."""
    heads = {task.name: model.get_layer(f"head_{task.name}") for task in tasks}
    for name, layer in heads.items():
        if getattr(layer, "bias", None) is None:
            raise ValueError(f"head_{name} has no bias to initialise")
    biases = base_rate_biases(tasks, frame)
    for name, layer in heads.items():
        layer.bias.assign(biases[name].astype(layer.bias.dtype))
    return biases


def monitors_for(tasks: Sequence[Task], model: keras.Model) -> dict[str, tuple[str, str]]:
    """The validation log name and mode early stopping follows for each task (``val_purchase_auc``, ``max``)."""
    single = len(model.outputs) == 1
    out = {}
    for task in tasks:
        metric, mode = MONITOR_BY_KIND[task.kind]
        out[task.name] = (f"val_{metric}" if single else f"val_{task.name}_{metric}", mode)
    return out


class BestWeights(keras.callbacks.Callback):
    """Keep the weights of the best epoch of each monitored validation metric; stop when none has improved for
    ``patience`` epochs. At the end the model holds the best weights of the first monitor."""

    def __init__(self, monitors: Mapping[str, str], patience: int = 2, min_delta: float = 0.0) -> None:
        super().__init__()
        if not monitors:
            raise ValueError("give at least one monitor, e.g. {'val_auc': 'max'}")
        for name, mode in monitors.items():
            if mode not in ("min", "max"):
                raise ValueError(f"mode of {name!r} must be 'min' or 'max', got {mode!r}")
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        self.monitors = dict(monitors)
        self.patience = patience
        self.min_delta = min_delta
        self.best: dict[str, float] = {}
        self.best_epoch: dict[str, int] = {}
        self.weights: dict[str, list[np.ndarray]] = {}
        self._waiting = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.best = {name: (np.inf if mode == "min" else -np.inf) for name, mode in self.monitors.items()}
        self.best_epoch, self.weights, self._waiting = {}, {}, 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        improved = False
        for name, mode in self.monitors.items():
            if name not in logs:
                raise KeyError(f"monitor {name!r} is not in the logs; they have {sorted(logs)} "
                               "(pass validation data, and check the metric's name)")
            value = float(logs[name])
            better = value < self.best[name] - self.min_delta if mode == "min" else value > self.best[name] + self.min_delta
            if better or name not in self.best_epoch:
                self.best[name], self.best_epoch[name] = value, epoch + 1
                self.weights[name] = [np.array(w) for w in self.model.get_weights()]
                improved = improved or better
        self._waiting = 0 if improved else self._waiting + 1
        if self._waiting > self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        first = next(iter(self.monitors))
        if first in self.weights:
            self.model.set_weights(self.weights[first])


@dataclass
class FitResult:
    """What one early-stopped training run did: per-epoch history, best epochs, time, and the best weights."""

    model: keras.Model
    history: pd.DataFrame
    best_epoch: dict[str, int]
    best_value: dict[str, float]
    seconds: float
    weights: dict[str, list[np.ndarray]] = field(repr=False)
    #: Task name -> the log name it was early-stopped on (set by :func:`train`).
    task_monitors: dict[str, str] = field(default_factory=dict)

    @property
    def epochs_run(self) -> int:
        """Epochs trained before early stopping ended the run (or the cap was reached)."""
        return len(self.history)

    def use(self, monitor: str) -> keras.Model:
        """Load the best weights of ``monitor`` (a log name, or a task name) into the model and return it."""
        key = monitor if monitor in self.weights else self.task_monitors.get(monitor)
        if key is None:
            raise KeyError(f"no best weights for {monitor!r}; have {sorted(self.weights)}")
        self.model.set_weights(self.weights[key])
        return self.model


def fit(model: keras.Model, train_data: Any, valid_data: Any, monitors: Mapping[str, str], max_epochs: int = 30,
        patience: int = 2, callbacks: Sequence[keras.callbacks.Callback] = ()) -> FitResult:
    """Train until no monitored validation metric has improved for ``patience`` epochs (at most ``max_epochs``).

    ``monitors`` maps log names to ``"min"`` or ``"max"``. The model ends with the first monitor's best weights;
    :meth:`FitResult.use` switches to another's.
    """
    if max_epochs < 1:
        raise ValueError(f"max_epochs must be >= 1, got {max_epochs}")
    keeper = BestWeights(monitors, patience=patience)
    start = time.perf_counter()
    model.fit(train_data, validation_data=valid_data, epochs=max_epochs, verbose=0, shuffle=False,
              callbacks=[keeper, *callbacks])  # the course's datasets shuffle themselves, a new order each epoch
    seconds = time.perf_counter() - start
    history = pd.DataFrame(model.history.history, index=pd.RangeIndex(1, len(model.history.epoch) + 1, name="epoch"))
    return FitResult(model, history, dict(keeper.best_epoch), dict(keeper.best), seconds, keeper.weights)


def train(
    model: keras.Model,
    tasks: Sequence[Task],
    spec: FeatureSpec,
    train_rows: pd.DataFrame,
    valid_rows: pd.DataFrame,
    batch_size: int = 4096,
    seed: int = 0,
    learning_rate: float = 1e-3,
    max_epochs: int = 30,
    patience: int = 2,
    normalise_masked: bool = False,
    init_biases: bool = True,
    monitor: str | Sequence[str] | None = None,
    optimizer: keras.optimizers.Optimizer | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    steps_per_execution: int = 8,
) -> FitResult:
    """The protocol in one call: compile, biases at the base rates, early-stopped training on shuffled batches.

    Every task's validation metric is monitored (:data:`MONITOR_BY_KIND`) unless ``monitor`` names the tasks to
    follow; the model ends with the best weights of the first. ``normalise_masked`` divides each task's sample
    weights by its labelled share, so that a task labelled on few rows is averaged over its own rows instead of
    over the whole batch (see :func:`utils.models.task_arrays`); the loss weights then set the balance alone.
    ``steps_per_execution`` (8) runs several batches per call into the compiled training step, about 10 % faster
    for the course's small models on a CPU, with the same arithmetic.
    """
    tasks = list(tasks)
    compile_model(model, tasks, learning_rate=learning_rate, optimizer=optimizer, steps_per_execution=steps_per_execution)
    if init_biases:
        init_output_biases(model, tasks, train_rows)
    by_task = monitors_for(tasks, model)
    chosen = [monitor] if isinstance(monitor, str) else list(monitor or by_task)
    unknown = [name for name in chosen if name not in by_task]
    if unknown:
        raise ValueError(f"monitor names task(s) {unknown}; the tasks are {list(by_task)}")
    monitors = {by_task[name][0]: by_task[name][1] for name in chosen}
    data = make_multitask_dataset(train_rows, spec, tasks, batch_size, shuffle=True, seed=seed,
                                  normalise_masked=normalise_masked)
    valid = make_multitask_dataset(valid_rows, spec, tasks, max(batch_size, 8192), normalise_masked=normalise_masked)
    result = fit(model, data, valid, monitors, max_epochs=max_epochs, patience=patience, callbacks=callbacks)
    result.task_monitors = {name: by_task[name][0] for name in chosen}
    return result
