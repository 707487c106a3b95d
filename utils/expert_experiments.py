"""Plumbing of lesson 05's experiments with expert models: parameter counts that make a comparison fair, many
small models trained side by side in one ``fit``, and summaries of how tasks use their gates.

    >>> width = matched_bottom_width(mmoe_parameters(100, 8, (16,), (8,)), d=100, tower=(8,))
    >>> result = train_side_by_side({"sb": lambda n: shared_bottom_model(100, tasks, (width,), name=n)}, ...)

Why side by side: the synthetic experiment trains dozens of models of ~15k weights each. One at a time,
Keras's per-step overhead dominates; stacked into one model whose loss is the sum of theirs, they train
exactly as they would alone (no weight is shared, so each model's gradient is its own loss's gradient,
and Adam scales every weight by its own running moments), several times faster.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import pandas as pd
from keras import ops

__all__ = [
    "EpochTestLosses",
    "RepeatedRuns",
    "SideBySideResult",
    "WeightedColumnMSE",
    "dense_parameters",
    "gate_distance",
    "gate_usage",
    "matched_bottom_width",
    "mix_experts",
    "mmoe_parameters",
    "paired_change",
    "plot_final_losses",
    "plot_gate_usage",
    "repeated_runs",
    "shared_bottom_parameters",
    "side_by_side_model",
    "spread",
    "synthetic_runs",
    "train_side_by_side",
]


# --------------------------------------------------------------------------------------------------
# The gate-weighted sum (NumPy reference of what utils.experts' layers compute)
# --------------------------------------------------------------------------------------------------


def mix_experts(expert_outputs: np.ndarray, gate_logits: np.ndarray) -> np.ndarray:
    """``sum_e softmax(gate_logits)_e * expert_outputs[:, e, :]``: (n, E, u) experts and (n, E) logits -> (n, u).

    The softmax subtracts each row's maximum first, so large logits do not overflow ``exp``.
    """
    experts = np.asarray(expert_outputs, dtype=np.float64)
    logits = np.asarray(gate_logits, dtype=np.float64)
    if experts.ndim != 3 or logits.shape != experts.shape[:2]:
        raise ValueError(f"expert outputs must be (n, E, u) and gate logits (n, E); "
                         f"got {experts.shape} and {logits.shape}")
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    gate = z / z.sum(axis=1, keepdims=True)
    return np.einsum("ne,neu->nu", gate, experts)


# --------------------------------------------------------------------------------------------------
# Parameter counts
# --------------------------------------------------------------------------------------------------


def _widths(widths: Sequence[int] | int, what: str) -> list[int]:
    widths = [widths] if isinstance(widths, (int, np.integer)) else list(widths)
    if any(int(w) != w or w < 1 for w in widths):
        raise ValueError(f"{what} must be layer widths >= 1, got {widths}")
    return [int(w) for w in widths]


def dense_parameters(n_in: int, widths: Sequence[int] | int) -> int:
    """Weights and biases of a stack of Dense layers of these widths on an input of width ``n_in``."""
    total, prev = 0, int(n_in)
    for w in _widths(widths, "widths"):
        total += prev * w + w
        prev = w
    return total


def _towers_and_heads(n_in: int, tower: Sequence[int], num_tasks: int, head_units: int) -> int:
    tower = _widths(tower, "tower") if len(tower) else []
    last = tower[-1] if tower else n_in
    return num_tasks * (dense_parameters(n_in, tower) + dense_parameters(last, [head_units]))


def shared_bottom_parameters(d: int, bottom: Sequence[int] | int, tower: Sequence[int] = (8,), num_tasks: int = 2,
                             head_units: int = 1) -> int:
    """Parameters of ``utils.models.shared_bottom_model`` on a dense input of width ``d``."""
    bottom = _widths(bottom, "bottom")
    return dense_parameters(d, bottom) + _towers_and_heads(bottom[-1], list(tower), num_tasks, head_units)


def mmoe_parameters(d: int, num_experts: int, expert_units: Sequence[int] | int, tower: Sequence[int] = (8,),
                    num_tasks: int = 2, gates: str = "per_task", head_units: int = 1) -> int:
    """Parameters of ``utils.experts.mmoe_model`` on a dense input of width ``d`` (``gates="one"``: OMoE).

    Experts: ``num_experts`` MLPs on ``d``; gates: one linear layer ``d -> num_experts`` per task (one in
    all for OMoE); then per task a tower and a head on the mixed expert output.
    """
    if gates not in ("per_task", "one"):
        raise ValueError(f"gates must be 'per_task' (MMoE) or 'one' (OMoE), got {gates!r}")
    units = _widths(expert_units, "expert_units")
    n_gates = num_tasks if gates == "per_task" else 1
    return (num_experts * dense_parameters(d, units) + n_gates * dense_parameters(d, [num_experts])
            + _towers_and_heads(units[-1], list(tower), num_tasks, head_units))


def matched_bottom_width(target: int, d: int, tower: Sequence[int] = (8,), num_tasks: int = 2,
                         head_units: int = 1) -> int:
    """The width of a one-layer shared bottom whose model has the parameter count closest to ``target``."""
    if target < shared_bottom_parameters(d, [1], tower, num_tasks, head_units):
        raise ValueError(f"no shared-bottom model has as few as {target} parameters")
    per_unit = shared_bottom_parameters(d, [2], tower, num_tasks, head_units) - shared_bottom_parameters(
        d, [1], tower, num_tasks, head_units)
    guess = max(1, int(round((target - shared_bottom_parameters(d, [1], tower, num_tasks, head_units)) / per_unit)) + 1)
    candidates = [w for w in (guess - 1, guess, guess + 1) if w >= 1]
    return min(candidates, key=lambda w: abs(shared_bottom_parameters(d, [w], tower, num_tasks, head_units) - target))


# --------------------------------------------------------------------------------------------------
# Many models, one fit
# --------------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="course")
class WeightedColumnMSE(keras.losses.Loss):
    """``sum_j weight_j * mean_i (y_ij - yhat_ij)^2``: the summed squared-error losses of many regression
    outputs laid side by side in the columns, each with its own weight (1 by default)."""

    def __init__(self, weights: Sequence[float] | None = None, name: str = "weighted_column_mse",
                 **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.weights = None if weights is None else [float(w) for w in weights]

    def call(self, y_true: Any, y_pred: Any) -> Any:
        squared = ops.square(ops.cast(y_true, y_pred.dtype) - y_pred)
        if self.weights is not None:
            squared = squared * ops.convert_to_tensor(self.weights, dtype=y_pred.dtype)
        return ops.sum(squared, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "weights": self.weights}


def _as_inputs(x: np.ndarray | Mapping[str, np.ndarray], what: str) -> dict[str, np.ndarray]:
    if isinstance(x, Mapping):
        if not x:
            raise ValueError(f"{what} is an empty dict: give an array, or {{input name: array}}")
        arrays = {str(k): np.asarray(v, dtype=np.float32) for k, v in x.items()}
    else:
        arrays = {"x": np.asarray(x, dtype=np.float32)}
    for name, a in arrays.items():
        if a.ndim != 2:
            raise ValueError(f"{what}[{name!r}] must be a 2-d (n, d) array, got shape {a.shape}")
    if len({len(a) for a in arrays.values()}) != 1:
        rows = [len(a) for a in arrays.values()]
        raise ValueError(f"every array of {what} needs the same number of rows, got {rows}")
    return arrays


def _input_of(keys: Sequence[str], names: Sequence[str], inputs: Mapping[str, str] | None) -> dict[str, str]:
    if inputs is None:
        if len(names) != 1:
            raise ValueError(f"with several inputs {list(names)}, say which one each model reads: "
                             "inputs={model: input}")
        return {k: names[0] for k in keys}
    missing = [k for k in keys if k not in inputs]
    unknown = sorted({inputs[k] for k in keys if k in inputs} - set(names))
    if missing or unknown:
        raise ValueError(f"inputs must name one of {list(names)} for every model; missing for {missing}, "
                         f"unknown input(s) {unknown}")
    return {k: inputs[k] for k in keys}


def side_by_side_model(models: Mapping[str, keras.Model], widths: int | Mapping[str, int],
                       inputs: Mapping[str, str] | None = None) -> keras.Model:
    """One model holding independent models side by side. ``widths`` is the width of the single input ``x``,
    or ``{input name: width}`` with ``inputs[key]`` naming the input model ``key`` reads (several data sets
    in one fit). The output concatenates the models' task outputs in order (model by model, task by task),
    so column ``j`` belongs to one task of one model.
    """
    if not models:
        raise ValueError("side_by_side_model needs at least one model")
    if isinstance(widths, (int, np.integer)):
        widths = {"x": int(widths)}
    else:
        widths = {str(k): int(v) for k, v in widths.items()}
    tensors = {name: keras.Input((w,), name=name) for name, w in widths.items()}
    reads = _input_of(list(models), list(tensors), inputs)
    columns = []
    for key, model in models.items():
        out = model(tensors[reads[key]])
        if not isinstance(out, Mapping):
            raise TypeError(f"model {key!r} must have dict outputs keyed by task, got {type(out).__name__}")
        columns.extend(out.values())
    merged = columns[0] if len(columns) == 1 else keras.layers.Concatenate(name="side_by_side")(columns)
    model_inputs = tensors["x"] if list(tensors) == ["x"] else tensors
    return keras.Model(model_inputs, merged, name="side_by_side")


@dataclass(frozen=True)
class SideBySideResult:
    """Test losses of models trained side by side: ``curves`` has one row per epoch and a column per
    (model, task); ``final`` is the last epoch's row as a (model x task) table; ``train_final`` the same
    on the training examples, with the final weights (the gap to ``final`` is overfitting). ``models``
    are the trained models themselves (e.g. for ``utils.experts.gate_weights``)."""

    curves: pd.DataFrame
    train_final: pd.DataFrame
    model: keras.Model
    models: dict[str, keras.Model]

    @property
    def parameters(self) -> dict[str, int]:
        """Parameters of every model, by key."""
        return {key: int(m.count_params()) for key, m in self.models.items()}

    @property
    def final(self) -> pd.DataFrame:
        """Final test loss per model (rows, in the order they were given) and task (columns)."""
        return self.curves.iloc[-1].unstack().loc[list(self.parameters)]

    def total(self) -> pd.DataFrame:
        """Test loss summed over each model's tasks, per epoch (the quantity the models minimise)."""
        return self.curves.T.groupby(level=0, sort=False).sum().T


class EpochTestLosses(keras.callbacks.Callback):
    """After every epoch, the mean squared error of every output column (or cell, for outputs of more axes) on
    the test set: ``rows[epoch]`` has the shape of one prediction."""

    def __init__(self, x: Any, y: np.ndarray) -> None:
        super().__init__()
        self.x, self.y, self.rows = x, y, []

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        pred = self.model.predict(self.x, batch_size=8192, verbose=0)
        self.rows.append(np.mean((pred - self.y) ** 2, axis=0))


def train_side_by_side(
    builders: Mapping[str, Callable[[str], keras.Model]],
    x_train: np.ndarray | Mapping[str, np.ndarray],
    y_train: Mapping[str, np.ndarray],
    x_test: np.ndarray | Mapping[str, np.ndarray],
    y_test: Mapping[str, np.ndarray],
    epochs: int,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    task_weights: Mapping[str, Sequence[float]] | None = None,
    inputs: Mapping[str, str] | None = None,
    same_start: Mapping[str, str] | None = None,
    seed: int = 0,
    cosine_decay: bool = True,
    jit_compile: bool = False,
) -> SideBySideResult:
    """Build every model (``builders[key](name)`` returns a regression model with dict outputs), train them
    together with their own labels ``y_train[key]`` (n, tasks), and record each task's test MSE after every
    epoch. ``x_train`` is one array every model reads, or ``{input name: array}`` with ``inputs[key]`` naming
    each model's (e.g. one data set per repeated run, all in one fit). ``task_weights[key]`` weighs a model's
    task losses (1 each by default). ``same_start[key] = other`` starts model ``key`` from ``other``'s initial
    weights (same architecture): variants that differ in one setting then differ in nothing else, which
    makes paired comparisons far less noisy (common random numbers). Adam's learning rate decays along a
    cosine to 5% of ``learning_rate`` by the last step (``cosine_decay``), so the final losses are those of
    settled models, not of the last noisy steps.
    """
    from utils.runtime import set_seed

    train_x, test_x = _as_inputs(x_train, "x_train"), _as_inputs(x_test, "x_test")
    if set(train_x) != set(test_x):
        raise ValueError(f"x_train and x_test must have the same inputs, got {sorted(train_x)} and {sorted(test_x)}")
    reads = _input_of(list(builders), list(train_x), inputs)
    missing = [k for k in builders if k not in y_train or k not in y_test]
    if missing:
        raise KeyError(f"no labels for model(s) {missing}: y_train and y_test need one (n, tasks) array per model")
    n_train, n_test = len(next(iter(train_x.values()))), len(next(iter(test_x.values())))
    set_seed(seed)
    models = {key: build(key) for key, build in builders.items()}
    for key, source in (same_start or {}).items():
        if key not in models or source not in models:
            raise KeyError(f"same_start maps {key!r} to {source!r}; both must be models, of {list(models)}")
        try:
            models[key].set_weights(models[source].get_weights())
        except ValueError as err:
            raise ValueError(f"model {key!r} cannot start from {source!r}'s weights: different architectures") from err
    columns, weights, blocks_train, blocks_test = [], [], [], []
    for key, model in models.items():
        tasks = list(model.output.keys())
        train_block = np.asarray(y_train[key], dtype=np.float32).reshape(n_train, -1)
        test_block = np.asarray(y_test[key], dtype=np.float32).reshape(n_test, -1)
        if train_block.shape[1] != len(tasks) or test_block.shape[1] != len(tasks):
            raise ValueError(f"model {key!r} has {len(tasks)} task outputs {tasks}, its labels have "
                             f"{train_block.shape[1]} (train) and {test_block.shape[1]} (test) columns")
        w = list((task_weights or {}).get(key, [1.0] * len(tasks)))
        if len(w) != len(tasks):
            raise ValueError(f"task_weights[{key!r}] needs {len(tasks)} weights, got {w}")
        columns += [(key, t) for t in tasks]
        weights += w
        blocks_train.append(train_block)
        blocks_test.append(test_block)
    widths = {name: a.shape[1] for name, a in train_x.items()}
    combined = side_by_side_model(models, widths["x"] if list(widths) == ["x"] else widths,
                                  None if list(widths) == ["x"] else reads)
    steps = epochs * -(-n_train // batch_size)
    schedule = (keras.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.05) if cosine_decay
                else learning_rate)
    combined.compile(keras.optimizers.Adam(schedule), loss=WeightedColumnMSE(weights), jit_compile=jit_compile)
    # Create Adam's moment variables now, eagerly: created inside the first traced step, they make TensorFlow
    # trace the training step twice, which with hundreds of variables costs more than the training itself.
    combined.optimizer.build(combined.trainable_variables)

    def feed(arrays: dict[str, np.ndarray]) -> Any:
        return arrays["x"] if list(arrays) == ["x"] else arrays

    test_losses = EpochTestLosses(feed(test_x), np.concatenate(blocks_test, axis=1))
    combined.fit(feed(train_x), np.concatenate(blocks_train, axis=1), epochs=epochs, batch_size=batch_size,
                 verbose=0, callbacks=[test_losses])
    index = pd.MultiIndex.from_tuples(columns, names=["model", "task"])
    curves = pd.DataFrame(np.array(test_losses.rows), columns=index, index=pd.RangeIndex(1, epochs + 1, name="epoch"))
    train_pred = combined.predict(feed(train_x), batch_size=8192, verbose=0)
    train_mse = pd.Series(np.mean((train_pred - np.concatenate(blocks_train, axis=1)) ** 2, axis=0), index=index)
    return SideBySideResult(curves, train_mse.unstack().loc[list(models)], combined, models)


# --------------------------------------------------------------------------------------------------
# Many paired runs of stacked models (utils.stacked_models)
# --------------------------------------------------------------------------------------------------


def synthetic_runs(runs: int, ps: Sequence[float], n: int, d: int = 100, m: int = 10, c: float = 1.0,
                   noise_var: float = 0.01, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Ma et al.'s two tasks for ``runs`` paired runs: ``x`` ``(n, runs, d)`` and ``y`` ``(n, runs, len(ps), 2)``.

    Run ``r`` draws its own directions ``u1, u2`` and examples (the sine terms are shared by all runs); within a
    run every ``p`` labels the same examples, so a model's change with ``p`` is measured on otherwise equal data."""
    from utils.synthetic import TaskFamily

    x = np.empty((n, runs, d), np.float32)
    y = np.empty((n, runs, len(ps), 2), np.float32)
    for r in range(runs):
        family = TaskFamily.draw(d=d, m=m, c=c, noise_var=noise_var, seed=seed + r, sine_seed=seed)
        x[:, r] = examples = np.random.default_rng([seed, r]).standard_normal((n, d))
        for i, p in enumerate(ps):
            y[:, r, i] = family.sample(0, p, seed=1000 * seed + 10 * r + i, x=examples).y
    return x, y


@dataclass(frozen=True)
class RepeatedRuns:
    """Stacked models trained on paired runs. ``frame``: one row per (model, p, run) with the final test and
    training loss (summed over the two tasks), the best test loss over the epochs and its epoch, and whether
    the run ``failed`` (see :func:`utils.stacked_models.failed_runs`); ``curves``: the test loss per epoch
    (rows) and (model, p, run) (columns); ``nets``: the trained stacked models; ``seconds``: training time."""

    frame: pd.DataFrame
    curves: pd.DataFrame
    nets: dict[str, keras.Model]
    seconds: dict[str, float]


def repeated_runs(builders: Mapping[str, Callable[[], keras.Model]], x: np.ndarray, y: np.ndarray, n_train: int,
                  ps: Sequence[float], epochs: int, seed: int = 0, failure_factor: float = 2.0,
                  **train: Any) -> RepeatedRuns:
    """Build and train every stacked model (``builders[name]()``, one per architecture, holding every run and
    ``p``) on the first ``n_train`` examples of ``x, y`` (from :func:`synthetic_runs`); test on the rest."""
    from utils.stacked_models import failed_runs, train_stacked

    if not 0 < n_train < len(x):
        raise ValueError(f"n_train must leave test examples: 0 < n_train < {len(x)}, got {n_train}")
    if y.shape[2] != len(ps):
        raise ValueError(f"y holds {y.shape[2]} settings but {len(ps)} values of p were given")
    rows, curves, nets, seconds = [], {}, {}, {}
    for name, build in builders.items():
        start = time.perf_counter()
        keras.utils.set_random_seed(seed)
        net = build()
        test, final = train_stacked(net, x[:n_train], y[:n_train], x[n_train:], y[n_train:], epochs=epochs,
                                    seed=seed, **train)
        seconds[name], nets[name] = time.perf_counter() - start, net
        total = test.sum(axis=-1)  # (epochs, runs, settings)
        for r in range(total.shape[1]):
            for i, p in enumerate(ps):
                curves[(name, p, r)] = total[:, r, i]
                rows.append({"model": name, "p": p, "run": r, "test_loss": total[-1, r, i],
                             "train_loss": final[r, i].sum(), "best_test_loss": total[:, r, i].min(),
                             "best_epoch": int(total[:, r, i].argmin()) + 1})
    frame = pd.DataFrame(rows)
    frame["failed"] = failed_runs(frame, factor=failure_factor)
    curves = pd.DataFrame(curves, index=pd.RangeIndex(1, epochs + 1, name="epoch"))
    curves.columns.names = ["model", "p", "run"]
    return RepeatedRuns(frame, curves, nets, seconds)


def spread(values: pd.Series | pd.core.groupby.SeriesGroupBy) -> pd.DataFrame | pd.Series:
    """Median, quartiles, mean and the mean's standard error (sd / sqrt(runs)) of a column, per group."""
    def summary(s: pd.Series) -> pd.Series:
        return pd.Series({"median": s.median(), "q25": s.quantile(0.25), "q75": s.quantile(0.75),
                          "mean": s.mean(), "se": s.std() / np.sqrt(len(s)), "runs": len(s)})

    return values.apply(summary).unstack() if isinstance(values, pd.core.groupby.SeriesGroupBy) else summary(values)


def paired_change(frame: pd.DataFrame, column: str, frm: Any, to: Any, by: str = "p") -> pd.DataFrame:
    """Run by run, how ``column`` changes from ``by == frm`` to ``by == to`` for every model (paired: the same
    run's data and initial weights). One row per (model, run): the two values and ``change = to - frm``."""
    missing = [c for c in ("model", "run", by, column) if c not in frame.columns]
    if missing:
        raise KeyError(f"the frame has no column(s) {missing}")
    wide = frame.pivot_table(index=["model", "run"], columns=by, values=column)
    for value in (frm, to):
        if value not in wide.columns:
            raise KeyError(f"no runs with {by} = {value!r}; there are {list(wide.columns)}")
    return pd.DataFrame({"from": wide[frm], "to": wide[to], "change": wide[to] - wide[frm]})


def plot_final_losses(frame: pd.DataFrame, names: Mapping[str, str], column: str = "test_loss",
                      ylabel: str = "final test loss", title: str | None = None) -> Any:
    """The trainability picture: per ``p`` a panel, per model a box of its runs' final losses with every run as
    a dot (failed runs in red), on a log scale. ``names`` maps model keys to labels, in plotting order."""
    import matplotlib.pyplot as plt

    ps = sorted(frame["p"].unique(), reverse=True)
    fig, axes = plt.subplots(1, len(ps), figsize=(9, 3.2), sharey=True, squeeze=False)
    jitter = np.random.default_rng(0)
    for ax, p in zip(axes[0], ps):
        at_p = frame[frame["p"] == p]
        groups = [at_p[at_p["model"] == name] for name in names]
        ax.boxplot([g[column] for g in groups], widths=0.5, showfliers=False)
        for i, g in enumerate(groups, start=1):
            xs = i + jitter.uniform(-0.15, 0.15, len(g))
            ax.scatter(xs, g[column], s=8, alpha=0.6, c=np.where(g["failed"], "tab:red", "tab:blue"), zorder=3)
        ax.set_xticks(range(1, len(names) + 1), list(names.values()), fontsize=8)
        ax.set(title=f"p = {p:g}", yscale="log")
    axes[0][0].set_ylabel(ylabel)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# Gates
# --------------------------------------------------------------------------------------------------


def _check_gates(gates: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not gates:
        raise ValueError("no gates given: pass {task: (n, n_experts) array}, e.g. utils.experts.gate_weights(...)")
    arrays = {t: np.asarray(g, dtype=np.float64) for t, g in gates.items()}
    shapes = {t: g.shape for t, g in arrays.items()}
    if len(set(shapes.values())) != 1 or next(iter(shapes.values())).__len__() != 2:
        raise ValueError(f"every task's gates must be one (n, n_experts) shape, got {shapes}")
    return arrays


def gate_usage(gates: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Mean gate weight of every expert (columns) for every task (rows): how much each task uses each expert."""
    arrays = _check_gates(gates)
    table = pd.DataFrame({t: g.mean(axis=0) for t, g in arrays.items()}).T
    table.columns = [f"expert {i}" for i in range(table.shape[1])]
    return table


def gate_distance(gates: Mapping[str, np.ndarray], a: str | None = None, b: str | None = None) -> float:
    """Mean total-variation distance between two tasks' gates on the same examples, in [0, 1]:
    0 when they weigh the experts identically, 1 when they never use the same expert."""
    arrays = _check_gates(gates)
    names = list(arrays)
    a, b = a or names[0], b or names[1 if len(names) > 1 else 0]
    for name in (a, b):
        if name not in arrays:
            raise KeyError(f"no gates for task {name!r}; there are {names}")
    return float(0.5 * np.abs(arrays[a] - arrays[b]).sum(axis=1).mean())


def plot_gate_usage(usage: Mapping[Any, pd.DataFrame], title: str = "mean gate weight per expert",
                    ax_title: str = "{}") -> Any:
    """One panel per setting (``usage[setting]`` a task x expert table from :func:`gate_usage`): grouped bars,
    one group per expert, one bar per task. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(usage), figsize=(9, 2.6), sharey=True, squeeze=False)
    for ax, (setting, table) in zip(axes[0], usage.items()):
        table.T.plot.bar(ax=ax, rot=0, width=0.8, legend=False)
        ax.set_title(ax_title.format(setting))
        ax.set_xticks(range(table.shape[1]), [str(i) for i in range(table.shape[1])])
        ax.set_xlabel("expert")
    axes[0][0].set_ylabel("mean gate weight")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
