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


def _softmax_everywhere_but_sums(spec, tasks):
    """Right widths, but the regression head squashed by a sigmoid."""
    inputs, x = build_inputs(spec)
    h = mlp((16,), name="bottom")(x)
    outputs = {}
    for task in tasks:
        t = mlp((8,), name=f"tower_{task.name}")(h)
        act = "sigmoid" if task.kind == "regression" else task.activation
        outputs[task.name] = keras.layers.Dense(task.units, activation=act, name=f"head_{task.name}")(t)
    return keras.Model(inputs, outputs)


def _task_attribute_typo(spec, tasks):
    return {t.name: t.n_units for t in tasks}


def _deeper_plain_dense(spec, tasks):
    """A valid variant: two bottom layers, towers of plain Dense layers, the softmax as a separate layer."""
    inputs, x = build_inputs(spec)
    h = keras.layers.Dense(32, activation="relu", name="bottom_1")(x)
    h = keras.layers.Dense(16, activation="relu", name="bottom_2")(h)
    outputs = {}
    for task in tasks:
        t = keras.layers.Dense(8, activation="relu", name=f"tower_{task.name}")(h)
        if task.kind == "multiclass":
            logits = keras.layers.Dense(task.units, name=f"logits_{task.name}")(t)
            outputs[task.name] = keras.layers.Softmax(name=f"head_{task.name}")(logits)
        else:
            outputs[task.name] = keras.layers.Dense(task.units, activation=task.activation, name=f"head_{task.name}")(t)
    return keras.Model(inputs, outputs)


def _missing_task(spec, tasks):
    return _reference_structure(spec, tasks[:2])


def _notebook_shared_bottom(spec, tasks, bottom=(64,), tower=(32,)):
    """The reference answer of solutions/03_shared_multitask.ipynb."""
    inputs, x = build_inputs(spec)
    shared = mlp(bottom, name="bottom")(x)
    outputs = {}
    for task in tasks:
        h = mlp(tower, name=f"tower_{task.name}")(shared)
        outputs[task.name] = keras.layers.Dense(task.units, activation=task.activation, name=f"head_{task.name}")(h)
    return keras.Model(inputs, outputs, name="shared_bottom")


@pytest.mark.parametrize("fn", [_reference_structure, _notebook_shared_bottom, _deeper_plain_dense])
def test_shared_bottom_accepts_reference(fn) -> None:
    result = l03.shared_bottom(fn)
    assert result.passed, result


def test_shared_bottom_reference_message_unchanged() -> None:
    assert repr(l03.shared_bottom(_notebook_shared_bottom)) == (
        "✅ Exercise 03.1 (the shared-bottom structure): correct: 3 embeddings and 1 bottom layer(s) shared by all "
        "3 heads, a tower and a head per task")


@pytest.mark.parametrize("fn, words", [
    (_one_model_per_task, "one input per feature"),
    (_no_bottom, "shared bottom"),
    (_no_towers, "its own tower"),
    (_list_outputs, "dict keyed by task name"),
    (_sigmoid_everywhere, "task.activation"),
    (_softmax_everywhere_but_sums, "task.activation"),
    (_task_attribute_typo, ".units"),
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


def _notebook_masked(entity_ids, labels):
    """The reference answer of solutions/03_shared_multitask.ipynb."""
    per_row = labels.reindex(entity_ids)
    known = per_row.notna().to_numpy()
    y = per_row.to_numpy(dtype="float64", na_value=0).astype("int64")
    return y, known.astype("float32")


def _pandas_masked(entity_ids, labels):
    """A valid variant: pandas Series out, an Int8 label column and boolean weights."""
    per_row = labels.reindex(entity_ids)
    return per_row.fillna(0), per_row.notna()


def _lookup_by_label(entity_ids, labels):
    """labels[ids] raises KeyError for the id without an entry."""
    per_row = labels[entity_ids]
    return per_row.fillna(0).to_numpy(), per_row.notna().to_numpy(dtype=float)


@pytest.mark.parametrize("fn", [_reference_masked, _plain_reindex, _notebook_masked, _pandas_masked])
def test_masked_labels_accepts_reference(fn) -> None:
    result = l03.masked_labels(fn)
    assert result.passed, result


def test_masked_labels_reference_message_unchanged() -> None:
    assert repr(l03.masked_labels(_notebook_masked)) == (
        "✅ Exercise 03.2 (masked labels): correct: each row carries its entity's label, and the rows without one "
        "weigh 0")


@pytest.mark.parametrize("fn, words", [
    (_lookup_by_label, "reindex"),
    (lambda ids, labels: (labels.reindex(ids), labels.reindex(ids).notna()), "NaN"),
    (lambda ids, labels: (labels.reindex(ids).to_numpy(), labels.reindex(ids).notna()), "NaN"),
    (lambda ids, labels: (np.array(["a"] * len(ids), dtype=object), np.ones(len(ids))), "must be numbers"),
    (lambda ids, labels: (_plain_reindex(ids, labels)[0], np.full(len(ids), np.nan)), "weight is NaN"),
])
def test_masked_labels_explains_types(fn, words: str) -> None:
    result = l03.masked_labels(fn)
    assert result.status == "wrong" and words in result.message, result


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


def _notebook_users(user_ids, probs):
    """The reference answer of solutions/03_shared_multitask.ipynb."""
    mean = pd.DataFrame(probs).groupby(np.asarray(user_ids)).mean()
    return pd.Series(mean.to_numpy().argmax(axis=1), index=mean.index)


def _summed_users(user_ids, probs):
    total = pd.DataFrame(np.asarray(probs, dtype="float32")).groupby(np.asarray(user_ids)).sum()
    return pd.Series(total.to_numpy().argmax(axis=1), index=total.index)


def _idxmax_users(user_ids, probs):
    return pd.DataFrame(probs).groupby(np.asarray(user_ids)).mean().idxmax(axis=1)


def _object_users(user_ids, probs):
    series = _notebook_users(user_ids, probs)
    return pd.Series([int(v) for v in series], index=series.index, dtype=object)


def _loop_users(user_ids, probs):
    ids = np.asarray(user_ids)
    return pd.Series({u: int(np.argmax(np.mean(probs[ids == u], axis=0))) for u in np.unique(ids)})


def _most_confident_row(user_ids, probs):
    frame = pd.DataFrame({"user": user_ids, "conf": probs.max(axis=1), "cls": probs.argmax(axis=1)})
    return frame.loc[frame.groupby("user")["conf"].idxmax()].set_index("user")["cls"]


def _max_of_probs(user_ids, probs):
    table = pd.DataFrame(probs).groupby(np.asarray(user_ids)).max()
    return pd.Series(table.to_numpy().argmax(axis=1), index=table.index)


def _geometric(user_ids, probs):
    table = pd.DataFrame(np.log(probs)).groupby(np.asarray(user_ids)).mean()
    return pd.Series(table.to_numpy().argmax(axis=1), index=table.index)


def _first_row(user_ids, probs):
    return pd.Series(np.asarray(probs).argmax(axis=1)).groupby(np.asarray(user_ids)).first()


def test_user_fixture_separates_the_methods() -> None:
    """The vote, the most confident row, the geometric mean and the first row all differ from the mean and from
    each other on the fixture, so each gets its own message."""
    ids, probs = l03._user_fixture()
    answers = [tuple(f(ids, probs).sort_index().to_numpy()) for f in
               (_notebook_users, _vote, _most_confident_row, _geometric, _first_row)]
    assert len(set(answers)) == len(answers), answers


@pytest.mark.parametrize("fn", [_reference_users, _notebook_users, _summed_users, _idxmax_users, _object_users,
                                _loop_users])
def test_user_predictions_accepts_reference(fn) -> None:
    result = l03.user_predictions(fn)
    assert result.passed, result


def test_user_predictions_reference_message_unchanged() -> None:
    assert repr(l03.user_predictions(_notebook_users)) == (
        "✅ Exercise 03.3 (one prediction per user): correct: the argmax of each user's mean predicted distribution")


@pytest.mark.parametrize("fn, words", [
    (_most_confident_row, "most confident"),
    (_max_of_probs, "most confident"),
    (_geometric, "geometric mean"),
    (_first_row, "argmax of the mean distribution"),
    (lambda ids, probs: _notebook_users(ids, probs).map(lambda c: f"class {c}"), "class indices"),
    (lambda ids, probs: _notebook_users(ids, probs) + 0.5, "not an average"),
])
def test_user_predictions_names_other_methods(fn, words: str) -> None:
    result = l03.user_predictions(fn)
    assert result.status == "wrong" and words in result.message, result


def test_user_predictions_not_attempted() -> None:
    result = l03.user_predictions(_not_written)
    assert result.status == "not attempted" and "entity_predictions" in result.message
