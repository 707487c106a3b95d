"""Self-checks for lesson 03 (shared-feature multi-task learning): the shared-bottom structure, the masked
labels of a partly labelled task, and one prediction per user from per-impression distributions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from utils.checks import CheckResult, expect, run_check


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


def _check_shared_bottom(fn: Callable[..., Any]) -> str:
    import keras

    from utils.shop_tasks import layer_usage

    spec, tasks = _toy_spec(), _toy_tasks()
    model = fn(spec, tasks)
    expect(isinstance(model, keras.Model), f"return a keras.Model, got {type(model).__name__}")
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
        expect(width == task.units, f"the {task.name!r} head must have {task.units} unit(s) ({task.kind}), has {width}")
    x = {f.name: np.array([1, 2, 3], dtype="int64") for f in spec}
    y = model.predict(x, verbose=0)
    expect(np.allclose(np.asarray(y["power"]).sum(axis=1), 1.0, atol=1e-4),
           "the multiclass head must output a distribution (softmax): its rows should sum to 1")
    p = np.asarray(y["purchase"])
    expect(((p >= 0) & (p <= 1)).all(), "the binary head must output a probability (sigmoid)")
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

def _check_masked_labels(fn: Callable[..., Any]) -> str:
    # Ids are not positions (a lookup by position gives other labels), and user 15 has no entry at all.
    labels = pd.Series(pd.array([3, pd.NA, 0, 4, pd.NA], dtype="Int8"), index=[10, 11, 12, 13, 14])
    rows = np.array([12, 10, 11, 10, 14, 13, 12, 15])
    result = fn(rows, labels)
    expect(isinstance(result, tuple) and len(result) == 2, "return a pair (labels, weights) of arrays")
    y, w = (np.asarray(a) for a in result)
    expect(y.shape == (len(rows),) and w.shape == (len(rows),),
           f"one label and one weight per row: want shapes ({len(rows)},), got {y.shape} and {w.shape}")
    expect(not np.isnan(y.astype("float64")).any(),
           "a label is NaN: Keras's losses turn one NaN into a NaN loss; put 0 where the label is missing "
           "(its weight 0 removes it from the loss)")
    expect(np.issubdtype(y.dtype, np.integer),
           f"class labels must be integers (sparse categorical cross-entropy needs class indices), got {y.dtype}")
    want_w = np.array([1, 1, 0, 1, 0, 1, 1, 0], dtype="float64")
    want_y = np.array([0, 3, 0, 3, 0, 4, 0, 0])
    expect(not np.allclose(w.astype("float64"), 1.0), "every weight is 1: a row without a label must weigh 0")
    expect(np.array_equal(w.astype("float64"), want_w),
           f"weights must be 1 where the row's entity has a label and 0 otherwise (also for an id missing from "
           f"the labels): want {want_w.astype(int).tolist()}, got {np.round(w.astype('float64'), 3).tolist()}")
    expect(np.array_equal(y, want_y), f"labels: want the entity's label on each of its rows ({want_y.tolist()}), "
           f"got {y.tolist()}")
    return "correct: each row carries its entity's label, and the rows without one weigh 0"


def masked_labels(fn: Callable[..., Any]) -> CheckResult:
    """Check Exercise 03.2: per-row labels and 0/1 sample weights from entity-level labels with gaps."""
    return run_check("Exercise 03.2 (masked labels)", _check_masked_labels, fn, "utils.models.task_arrays")


# -- Exercise 03.3: one prediction per user ----------------------------------------------------------------

def _check_user_predictions(fn: Callable[..., Any]) -> str:
    # User 7: two hesitant rows for class 0, one confident row for class 2 -> the mean favours class 2,
    # a vote of per-row argmaxes favours class 0. User 3 has one row. Users come unsorted.
    ids = np.array([7, 3, 7, 7, 5, 5])
    probs = np.array([
        [0.40, 0.30, 0.30],
        [0.10, 0.80, 0.10],
        [0.40, 0.25, 0.35],
        [0.05, 0.05, 0.90],
        [0.20, 0.20, 0.60],
        [0.10, 0.30, 0.60],
    ])
    got = fn(ids, probs)
    expect(isinstance(got, pd.Series), f"return a pandas Series indexed by user id, got {type(got).__name__}")
    expect(len(got) == 3, f"one prediction per user (3 users), got {len(got)} values: group the rows by user")
    expect(sorted(got.index.tolist()) == [3, 5, 7], f"the index must be the user ids [3, 5, 7], got {list(got.index)}")
    got = got.sort_index()
    values = got.to_numpy()
    expect(np.allclose(values, np.round(values)),
           f"predict a class (the argmax), not an average of class numbers: got {values.tolist()}")
    expect(int(got[7]) != 0,
           "user 7 gets class 0, the vote of the per-row argmaxes; average the distributions first, then take "
           "the argmax: one confident row outweighs two hesitant ones")
    want = {3: 1, 5: 2, 7: 2}
    for user, cls in want.items():
        expect(int(got[user]) == cls, f"user {user}: want class {cls} (argmax of the mean distribution), "
               f"got {int(got[user])}")
    return "correct: the argmax of each user's mean predicted distribution"


def user_predictions(fn: Callable[..., Any]) -> CheckResult:
    """Check Exercise 03.3: the argmax of each user's mean per-impression distribution."""
    return run_check("Exercise 03.3 (one prediction per user)", _check_user_predictions, fn,
                     "utils.shop_tasks.entity_predictions")
