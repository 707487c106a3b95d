"""Self-checks for lesson 03 (shared-feature multi-task learning): the shared-bottom structure, the masked
labels of a partly labelled task, and one prediction per user from per-impression distributions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from utils.checks import CheckResult, Wrong, expect, run_check


# -- Exercise 03.1: the shared-bottom structure ------------------------------------------------------------

def _toy_spec() -> Any:
    from utils.models import feature_spec

    rng = np.random.default_rng(3)
    frame = pd.DataFrame({
        "item_id": rng.integers(0, 30, 200),
        "brand_id": rng.integers(0, 6, 200),
        "position": rng.integers(1, 5, 200),
    })
    return feature_spec(frame, categorical=["item_id", "brand_id", "position"], embedding_dim=4)


def _toy_tasks() -> list[Any]:
    from utils.models import Task

    return [Task("purchase", "binary"), Task("rating", "regression"), Task("power", "multiclass", n_classes=5)]


_TASK_API = ("each element of `tasks` is a utils.models.Task with .name (the output's key), .kind, .units (the "
             "head's width: 1, or n_classes) and .activation (the head's activation: sigmoid, softmax or linear); "
             "`spec` is the feature spec that build_inputs(spec) turns into (inputs, x)")


def _check_shared_bottom(fn: Callable[..., Any]) -> str:
    import keras

    from utils.shop_tasks import layer_usage

    spec, tasks = _toy_spec(), _toy_tasks()
    try:
        model = fn(spec, tasks)
    except (AttributeError, TypeError) as err:
        raise Wrong(f"your code raised {type(err).__name__}: {err}. Note: {_TASK_API}") from None
    expect(isinstance(model, keras.Model),
           f"return a keras.Model (inputs: one per feature of spec; outputs: a dict {{task.name: head}}), "
           f"got {type(model).__name__}")
    inputs = model.inputs
    names = sorted(t.name.split(":")[0] for t in inputs)
    expect(len(inputs) == len(spec),
           f"the model needs one input per feature ({len(spec)}: {spec.names}), it has {len(inputs)}: {names}; "
           "every task reads the same example's features, so the inputs are not repeated per task")
    outputs = model.output
    expect(isinstance(outputs, dict),
           "return the outputs as a dict keyed by task name ({task.name: head}), as utils.models does")
    expect(sorted(outputs) == sorted(t.name for t in tasks),
           f"one output per task: want {sorted(t.name for t in tasks)}, got {sorted(outputs)}")
    for task in tasks:
        width = outputs[task.name].shape[-1]
        expect(width == task.units, f"the {task.name!r} head must have task.units = {task.units} unit(s) "
               f"({task.kind}), has {width}: make it Dense(task.units, activation=task.activation)")
        head = getattr(getattr(outputs[task.name], "_keras_history", None), "operation", None)
        used = getattr(getattr(head, "activation", None), "__name__", None)
        expect(used is None or used == task.activation,
               f"the {task.name!r} head ({task.kind}) uses activation {used!r}; use task.activation = "
               f"{task.activation!r}: Dense(task.units, activation=task.activation)")
    x = {f.name: np.array([1, 2, 3], dtype="int64") for f in spec}
    y = model.predict(x, verbose=0)
    expect(np.allclose(np.asarray(y["power"]).sum(axis=1), 1.0, atol=1e-4),
           "the multiclass head must output a distribution (softmax, its rows sum to 1): use "
           "activation=task.activation")
    p = np.asarray(y["purchase"])
    expect(((p >= 0) & (p <= 1)).all(), "the binary head must output a probability (sigmoid): use "
           "activation=task.activation")
    usage = layer_usage(model)
    n_tasks = len(tasks)
    embeddings = usage[usage["type"] == "Embedding"]
    expect(len(embeddings) == len(spec),
           f"want one embedding table per feature ({len(spec)}), found {len(embeddings)}: "
           f"{list(embeddings.index)}; a task must not have its own copy of a feature's embedding")
    private = embeddings[embeddings["n_heads"] < n_tasks]
    expect(private.empty,
           f"embedding(s) {list(private.index)} feed only {list(private['used by'])}: every head must see them")
    dense = usage[usage["type"] == "Dense"]
    shared = dense[dense["n_heads"] == n_tasks]
    expect(len(shared) >= 1, "no Dense layer is used by every head: put a shared bottom between the embeddings "
           "and the towers")
    for task in tasks:
        own = dense[(dense["n_heads"] == 1) & (dense["used by"] == task.name)]
        expect(len(own) >= 2,
               f"the {task.name!r} task needs its own tower (at least one Dense layer) and its own head; "
               f"it has {len(own)} layer(s) of its own")
    return (f"correct: {len(embeddings)} embeddings and {len(shared)} bottom layer(s) shared by all {n_tasks} heads, "
            "a tower and a head per task")


def shared_bottom(fn: Callable[..., Any]) -> CheckResult:
    """Check Exercise 03.1: one set of inputs and embeddings, a shared bottom, a tower and a head per task."""
    return run_check("Exercise 03.1 (the shared-bottom structure)", _check_shared_bottom, fn,
                     "utils.models.shared_bottom_model")


# -- Exercise 03.2: masked labels of a partly labelled task ------------------------------------------------

_LABELS_INPUT = ("`labels` is a pandas Series of nullable Int8 class indices (pd.NA where unknown) indexed by "
                 "entity id, and `entity_ids` an array of ids, some of them (here 15) absent from the labels")
_PAIR = ("return a pair (y, w) of 1-D arrays with one entry per row of entity_ids: y the int class index of the "
         "row's entity (0 where unknown), w its weight (1.0 if the entity has a label, else 0.0)")


def _as_numbers(a: Any, what: str) -> np.ndarray:
    """``a`` as a float64 array, or Wrong naming what was expected (pd.NA and odd objects are not numbers)."""
    if isinstance(a, (pd.Series, pd.Index)) or hasattr(a, "isna"):
        a = pd.Series(a).to_numpy(dtype="float64", na_value=np.nan)
    try:
        return np.asarray(a, dtype="float64")
    except (TypeError, ValueError):
        raise Wrong(f"{what} must be numbers, got {type(a).__name__} holding {a!r:.80}; {_PAIR}") from None


def _check_masked_labels(fn: Callable[..., Any]) -> str:
    # Ids are not positions (a lookup by position gives other labels), and user 15 has no entry at all.
    labels = pd.Series(pd.array([3, pd.NA, 0, 4, pd.NA], dtype="Int8"), index=[10, 11, 12, 13, 14])
    rows = np.array([12, 10, 11, 10, 14, 13, 12, 15])
    try:
        result = fn(rows.copy(), labels.copy())
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as err:
        raise Wrong(f"your code raised {type(err).__name__}: {err}. Note: {_LABELS_INPUT}; "
                    "labels.reindex(entity_ids) looks every id up, giving <NA> for an unknown one") from None
    expect(isinstance(result, tuple) and len(result) == 2, _PAIR)
    dtype = result[0].dtype if hasattr(result[0], "dtype") else np.asarray(result[0]).dtype
    y, w = _as_numbers(result[0], "the labels y"), _as_numbers(result[1], "the weights w")
    expect(y.shape == (len(rows),) and w.shape == (len(rows),),
           f"one label and one weight per row: want shapes ({len(rows)},), got {y.shape} and {w.shape}; {_PAIR}")
    expect(not np.isnan(y).any(),
           "a label is NaN (or <NA>): Keras's losses turn one NaN into a NaN loss; put 0 where the label is missing "
           "(its weight 0 removes it from the loss)")
    expect(dtype.kind in "iu",
           f"class labels must be integers (sparse categorical cross-entropy needs class indices), got dtype "
           f"{dtype}: convert them, e.g. .astype('int64')")
    want_w = np.array([1, 1, 0, 1, 0, 1, 1, 0], dtype="float64")
    want_y = np.array([0, 3, 0, 3, 0, 4, 0, 0])
    expect(not np.isnan(w).any(), "a weight is NaN: a row whose entity has no label weighs 0")
    expect(not np.allclose(w, 1.0), "every weight is 1: a row without a label must weigh 0")
    expect(np.array_equal(w, want_w),
           f"weights must be 1 where the row's entity has a label and 0 otherwise (also for an id missing from "
           f"the labels): want {want_w.astype(int).tolist()}, got {np.round(w, 3).tolist()}")
    expect(np.array_equal(y, want_y), f"labels: want the entity's label on each of its rows ({want_y.tolist()}), "
           f"got {y.astype('int64').tolist()}; look the labels up by entity id, not by position")
    return "correct: each row carries its entity's label, and the rows without one weigh 0"


def masked_labels(fn: Callable[..., Any]) -> CheckResult:
    """Check Exercise 03.2: per-row labels and 0/1 sample weights from entity-level labels with gaps."""
    return run_check("Exercise 03.2 (masked labels)", _check_masked_labels, fn, "utils.models.task_arrays")


# -- Exercise 03.3: one prediction per user ----------------------------------------------------------------

_USER_ROWS = {
    # user 7: two hesitant rows for class 0, one confident row for class 2 -> the mean favours class 2, a vote
    # of per-row argmaxes favours class 0.
    7: [[0.40, 0.30, 0.30], [0.40, 0.25, 0.35], [0.05, 0.05, 0.90]],
    3: [[0.10, 0.80, 0.10]],  # one row
    5: [[0.20, 0.20, 0.60], [0.10, 0.30, 0.60]],
    # user 9: one very confident row for class 0, three for class 1 -> the mean says 1, the most confident row 0
    9: [[0.92, 0.07, 0.01], [0.15, 0.80, 0.05], [0.15, 0.80, 0.05], [0.15, 0.80, 0.05]],
    # user 4: the mean says 0, but one row gives class 0 a probability near 0 -> the geometric mean says 1
    4: [[0.40, 0.35, 0.25], [0.80, 0.15, 0.05], [0.02, 0.50, 0.48]],
}
_USER_ORDER = np.array([9, 7, 3, 4, 7, 9, 5, 4, 9, 7, 5, 4, 9])  # users unsorted and interleaved


def _user_fixture() -> tuple[np.ndarray, np.ndarray]:
    rows = {user: iter(dists) for user, dists in _USER_ROWS.items()}
    return _USER_ORDER.copy(), np.array([next(rows[user]) for user in _USER_ORDER])


def _per_user(ids: np.ndarray, values: np.ndarray, how: str) -> np.ndarray:
    """Each user's argmax (users sorted) of ``how`` ('mean', 'max', 'geometric') of their rows."""
    frame = pd.DataFrame(np.log(values) if how == "geometric" else values)
    grouped = frame.groupby(ids)
    table = grouped.max() if how == "max" else grouped.mean()
    return table.to_numpy().argmax(axis=1)


def _vote(ids: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """The most frequent per-row argmax of each user (ties to the smaller class)."""
    votes = pd.Series(probs.argmax(axis=1)).groupby(ids)
    return votes.agg(lambda s: s.value_counts().sort_index().idxmax()).to_numpy()


def _check_user_predictions(fn: Callable[..., Any]) -> str:
    ids, probs = _user_fixture()
    users = sorted(_USER_ROWS)
    got = fn(ids.copy(), probs.copy())
    expect(isinstance(got, pd.Series),
           f"return a pandas Series indexed by user id (one int class index per user), got {type(got).__name__}")
    expect(len(got) == len(users),
           f"one prediction per user ({len(users)} users), got {len(got)} values: group the rows by user")
    index = pd.to_numeric(pd.Index(got.index), errors="coerce")
    expect(not np.isnan(np.asarray(index, dtype="float64")).any() and sorted(index.tolist()) == users,
           f"the index must be the user ids {users}, got {list(got.index)}")
    got = pd.Series(got.to_numpy(), index=index.astype("int64")).sort_index()
    try:
        values = np.asarray(got.to_numpy(), dtype="float64")
    except (TypeError, ValueError):
        raise Wrong(f"the values must be class indices (ints 0..{probs.shape[1] - 1}), one per user; got "
                    f"{got.tolist()} ({got.dtype})") from None
    expect(np.isfinite(values).all() and np.allclose(values, np.round(values)),
           f"predict a class index (the argmax), not an average of class numbers or a probability: got "
           f"{np.round(values, 3).tolist()}")
    classes = np.round(values).astype("int64")
    want = _per_user(ids, probs, "mean")
    if not np.array_equal(classes, want):
        expect(not np.array_equal(classes, _vote(ids, probs)),
               "user 7 gets class 0, the vote of the per-row argmaxes; average the distributions first, then take "
               "the argmax: one confident row outweighs two hesitant ones")
        expect(not np.array_equal(classes, _per_user(ids, probs, "max")),
               "user 9 gets class 0, the class of its single most confident row (the largest probability); "
               "that is a max over the rows, not the mean: average each user's distributions, then take the argmax")
        expect(not np.array_equal(classes, _per_user(ids, probs, "geometric")),
               "user 4 gets class 1, the argmax of the geometric mean (the mean of log-probabilities), which one "
               "near-zero probability drags down; average the probabilities themselves, then take the argmax")
        for user, cls, mine in zip(users, want, classes, strict=True):
            expect(mine == cls, f"user {user}: want class {cls} (argmax of the mean distribution), got {mine}")
    return "correct: the argmax of each user's mean predicted distribution"


def user_predictions(fn: Callable[..., Any]) -> CheckResult:
    """Check Exercise 03.3: the argmax of each user's mean per-impression distribution."""
    return run_check("Exercise 03.3 (one prediction per user)", _check_user_predictions, fn,
                     "utils.shop_tasks.entity_predictions")
