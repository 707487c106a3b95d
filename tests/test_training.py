"""Tests of the training protocol: output biases, per-monitor best weights, early stopping, masked normalisation."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest

from utils.models import Task, feature_spec, shared_bottom_model, single_task_model
from utils.shopsim import generate
from utils.shop_tasks import shop_task_frame
from utils.splits import temporal_split
from utils.training import BestWeights, fit, init_output_biases, monitors_for, train


@pytest.fixture(scope="module")
def frames():
    frame = shop_task_frame(generate(scale="tiny", seed=2))
    return temporal_split(frame, 3, 3)


@pytest.fixture(scope="module")
def spec(frames):
    return feature_spec(frames[0], categorical=["item_id", "position"], embedding_dim=4)


TASKS = [Task("purchase", "binary"), Task("rating", "regression"), Task("power", "multiclass", n_classes=5)]


def test_output_biases_start_at_the_base_rates(frames, spec) -> None:
    train_rows = frames[0]
    model = shared_bottom_model(spec, TASKS, bottom=(4,), tower=())
    biases = init_output_biases(model, TASKS, train_rows)
    rate = train_rows["purchase"].mean()
    assert biases["purchase"][0] == pytest.approx(np.log(rate / (1 - rate)), rel=1e-6)
    assert model.get_layer("head_rating").bias.numpy()[0] == pytest.approx(train_rows["rating"].mean(), rel=1e-5)
    counts = np.bincount(train_rows["power"].dropna().astype(int), minlength=5) + 1.0
    np.testing.assert_allclose(np.exp(biases["power"]), counts / counts.sum(), rtol=1e-6)


def test_output_biases_need_labels(frames, spec) -> None:
    model = single_task_model(spec, TASKS[1], hidden=(4,))
    with pytest.raises(ValueError, match="no labelled row"):
        init_output_biases(model, [TASKS[1]], frames[0].assign(rating=np.nan))


def test_monitor_names_follow_keras_logs(spec) -> None:
    single = single_task_model(spec, TASKS[0], hidden=(4,))
    multi = shared_bottom_model(spec, TASKS, bottom=(4,), tower=())
    assert monitors_for([TASKS[0]], single) == {"purchase": ("val_auc", "max")}
    assert monitors_for(TASKS, multi)["rating"] == ("val_rating_rmse", "min")
    assert monitors_for(TASKS, multi)["power"] == ("val_power_loss", "min")


def test_best_weights_keeps_each_monitors_best_epoch_and_stops() -> None:
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    keeper = BestWeights({"val_a": "max", "val_b": "min"}, patience=1)
    keeper.set_model(model)
    keeper.on_train_begin()
    logs = [{"val_a": 0.5, "val_b": 2.0}, {"val_a": 0.7, "val_b": 3.0}, {"val_a": 0.6, "val_b": 3.0},
            {"val_a": 0.6, "val_b": 3.0}]
    for epoch, log in enumerate(logs):
        model.layers[0].bias.assign([float(epoch)])
        keeper.on_epoch_end(epoch, log)
        if getattr(model, "stop_training", False):
            break
    assert keeper.best_epoch == {"val_a": 2, "val_b": 1}
    assert epoch == 3  # two epochs without improvement after epoch 2, patience 1
    assert keeper.weights["val_b"][1][0] == 0.0 and keeper.weights["val_a"][1][0] == 1.0
    keeper.on_train_end()
    assert model.layers[0].bias.numpy()[0] == 1.0  # the first monitor's best
    with pytest.raises(KeyError, match="val_c"):
        BestWeights({"val_c": "max"}).on_epoch_end(0, {"val_a": 1.0})
    with pytest.raises(ValueError, match="mode"):
        BestWeights({"val_a": "up"})


def test_train_reports_epochs_and_uses_each_tasks_best_weights(frames, spec) -> None:
    train_rows, valid_rows, _ = frames
    keras.utils.set_random_seed(0)
    model = shared_bottom_model(spec, TASKS, bottom=(8,), tower=())
    result = train(model, TASKS, spec, train_rows, valid_rows, batch_size=2048, max_epochs=4, patience=1)
    assert 1 <= result.epochs_run <= 4 and len(result.history) == result.epochs_run
    assert set(result.task_monitors) == {"purchase", "rating", "power"}
    for task, monitor in result.task_monitors.items():
        assert 1 <= result.best_epoch[monitor] <= result.epochs_run
        result.use(task)
        np.testing.assert_array_equal(model.get_weights()[-1], result.weights[monitor][-1])
    with pytest.raises(KeyError, match="nothing"):
        result.use("nothing")
    with pytest.raises(ValueError, match="monitor"):
        train(model, TASKS, spec, train_rows, valid_rows, monitor="click", max_epochs=1)


def test_normalised_masks_average_each_task_over_its_labels(frames, spec) -> None:
    from utils.models import make_multitask_dataset

    train_rows = frames[0]
    _, _, w = next(iter(make_multitask_dataset(train_rows, spec, TASKS, len(train_rows), normalise_masked=True)))
    assert float(np.mean(w["rating"])) == pytest.approx(1.0, rel=1e-5)
    assert float(np.mean(w["power"])) == pytest.approx(1.0, rel=1e-5)


def test_fit_checks_the_epoch_cap() -> None:
    with pytest.raises(ValueError, match="max_epochs"):
        fit(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]), None, None, {"val_loss": "min"}, max_epochs=0)
