"""The self-checks of lesson 03 accept the reference answers, reject typical wrong answers with a useful
message, and report an unwritten answer as not attempted."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest

from utils.checks import l03
from utils.models import build_inputs, mlp, shared_bottom_model, single_task_model, task_arrays
from utils.shop_tasks import entity_predictions


def _not_written(*args, **kwargs):
    raise NotImplementedError("Exercise: replace this line with your code")


# -- Exercise 03.1: the shared-bottom structure ------------------------------------------------------------

def _reference_structure(spec, tasks):
    return shared_bottom_model(spec, tasks, bottom=(16,), tower=(8,))


def _one_model_per_task(spec, tasks):
    """Three single-task models glued together: every task has its own inputs and embeddings."""
    models = [single_task_model(spec, task, hidden=(8,), name=f"m_{task.name}") for task in tasks]
    for model in models:
        for layer in model.layers:
            layer.name = f"{model.name}_{layer.name}"
    inputs = {}
    outputs = {}
    for task, model in zip(tasks, models, strict=True):
        own = {name: keras.Input(shape=(), dtype="int64", name=f"{task.name}_{name}") for name in spec.names}
        inputs.update({f"{task.name}_{k}": v for k, v in own.items()})
        outputs[task.name] = model(own)[task.name]
    return keras.Model(inputs, outputs)


def _no_bottom(spec, tasks):
    """Shared embeddings, but each task goes straight to its own tower: nothing dense is shared."""
    inputs, x = build_inputs(spec)
    outputs = {}
    for task in tasks:
        h = mlp((8,), name=f"tower_{task.name}")(x)
        outputs[task.name] = keras.layers.Dense(task.units, activation=task.activation, name=f"head_{task.name}")(h)
    return keras.Model(inputs, outputs)


def _no_towers(spec, tasks):
    inputs, x = build_inputs(spec)
    h = mlp((16,), name="bottom")(x)
    return keras.Model(inputs, {t.name: keras.layers.Dense(t.units, activation=t.activation, name=f"head_{t.name}")(h)
                                for t in tasks})


def _list_outputs(spec, tasks):
    model = _reference_structure(spec, tasks)
    return keras.Model(model.inputs, [model.output[t.name] for t in tasks])


def _sigmoid_everywhere(spec, tasks):
    inputs, x = build_inputs(spec)
    h = mlp((16,), name="bottom")(x)
    outputs = {}
    for task in tasks:
        t = mlp((8,), name=f"tower_{task.name}")(h)
        outputs[task.name] = keras.layers.Dense(task.units, activation="sigmoid", name=f"head_{task.name}")(t)
    return keras.Model(inputs, outputs)


def _missing_task(spec, tasks):
    return _reference_structure(spec, tasks[:2])


def test_shared_bottom_accepts_reference() -> None:
    result = l03.shared_bottom(_reference_structure)
    assert result.passed, result


@pytest.mark.parametrize("fn, words", [
    (_one_model_per_task, "one input per feature"),
    (_no_bottom, "shared bottom"),
    (_no_towers, "its own tower"),
    (_list_outputs, "dict keyed by task name"),
    (_sigmoid_everywhere, "softmax"),
    (_missing_task, "one output per task"),
    (lambda spec, tasks: [_reference_structure(spec, [t]) for t in tasks], "keras.Model"),
])
def test_shared_bottom_rejects_wrong(fn, words: str) -> None:
    result = l03.shared_bottom(fn)
    assert result.status == "wrong" and words in result.message, result


def test_shared_bottom_finds_private_embeddings() -> None:
    def private_item_embedding(spec, tasks):
        inputs, x = build_inputs(spec)
        h = mlp((16,), name="bottom")(x)
        outputs = {}
        for task in tasks:
            t = mlp((8,), name=f"tower_{task.name}")(h)
            if task.name == "power":  # a second item table that only this task uses
                extra = keras.layers.Embedding(40, 4, name="power_item_embedding")(
                    keras.layers.IntegerLookup(vocabulary=np.arange(30), name="power_item_lookup")(inputs["item_id"]))
                t = keras.layers.Concatenate()([t, extra])
            outputs[task.name] = keras.layers.Dense(task.units, activation=task.activation, name=f"head_{task.name}")(t)
        return keras.Model(inputs, outputs)

    result = l03.shared_bottom(private_item_embedding)
    assert result.status == "wrong" and "one embedding table per feature" in result.message, result


def test_shared_bottom_not_attempted() -> None:
    result = l03.shared_bottom(_not_written)
    assert result.status == "not attempted" and "shared_bottom_model" in result.message


# -- Exercise 03.2: masked labels ---------------------------------------------------------------------------

def _reference_masked(entity_ids, labels):
    frame = pd.DataFrame({"label": labels.reindex(entity_ids).array})
    from utils.models import Task

    y, w = task_arrays(frame, [Task("t", "multiclass", n_classes=5, label="label")])
    return y["t"], w["t"]


def _by_position(entity_ids, labels):
    """Looks labels up by position instead of by id."""
    position = np.asarray(entity_ids) % len(labels)
    values = labels.to_numpy(dtype="float64", na_value=np.nan)[position]
    return np.nan_to_num(values).astype(int), np.isfinite(values).astype(float)


def _plain_reindex(entity_ids, labels):
    values = labels.reindex(entity_ids).to_numpy(dtype="float64", na_value=np.nan)
    return np.nan_to_num(values).astype(int), np.isfinite(values).astype(float)


@pytest.mark.parametrize("fn, words", [
    (lambda ids, labels: (labels.reindex(ids).to_numpy(dtype="float64", na_value=np.nan),
                          labels.reindex(ids).notna().to_numpy(dtype=float)), "NaN"),
    (lambda ids, labels: (np.nan_to_num(labels.reindex(ids).to_numpy(dtype="float64", na_value=np.nan)),
                          labels.reindex(ids).notna().to_numpy(dtype=float)), "integers"),
    (lambda ids, labels: (_plain_reindex(ids, labels)[0], np.ones(len(ids))), "weigh 0"),
    (_by_position, "weights must be 1"),
    (lambda ids, labels: (_plain_reindex(ids, labels)[0] + 1, _plain_reindex(ids, labels)[1]), "labels: want"),
    (lambda ids, labels: _plain_reindex(ids, labels)[0], "pair"),
    (lambda ids, labels: (_plain_reindex(ids, labels)[0][:5], _plain_reindex(ids, labels)[1][:5]), "one label"),
])
def test_masked_labels_rejects_wrong(fn, words: str) -> None:
    result = l03.masked_labels(fn)
    assert result.status == "wrong" and words in result.message, result


def test_masked_labels_accepts_reference() -> None:
    assert l03.masked_labels(_reference_masked).passed
    assert l03.masked_labels(_plain_reindex).passed


def test_masked_labels_not_attempted() -> None:
    assert l03.masked_labels(_not_written).status == "not attempted"


# -- Exercise 03.3: one prediction per user --------------------------------------------------------------------

def _reference_users(user_ids, probs):
    table = entity_predictions(user_ids, probs)
    return pd.Series(table.to_numpy().argmax(axis=1), index=table.index)


def _vote(user_ids, probs):
    votes = pd.Series(np.asarray(probs).argmax(axis=1))
    return votes.groupby(np.asarray(user_ids)).agg(lambda s: s.value_counts().sort_index().idxmax())


@pytest.mark.parametrize("fn, words", [
    (_vote, "vote"),
    (lambda ids, probs: pd.Series(np.asarray(probs).argmax(axis=1)).groupby(np.asarray(ids)).mean(), "not an average"),
    (lambda ids, probs: pd.Series(np.asarray(probs).argmax(axis=1), index=ids), "one prediction per user"),
    (lambda ids, probs: _reference_users(ids, probs).to_numpy(), "Series"),
    (lambda ids, probs: pd.Series(entity_predictions(ids, probs).to_numpy().argmin(axis=1),
                                  index=sorted(set(ids))), "user 3"),
    (lambda ids, probs: _reference_users(ids, probs).reset_index(drop=True), "user ids"),
])
def test_user_predictions_rejects_wrong(fn, words: str) -> None:
    result = l03.user_predictions(fn)
    assert result.status == "wrong" and words in result.message, result


def test_user_predictions_accepts_reference() -> None:
    assert l03.user_predictions(_reference_users).passed


def test_user_predictions_not_attempted() -> None:
    result = l03.user_predictions(_not_written)
    assert result.status == "not attempted" and "entity_predictions" in result.message
