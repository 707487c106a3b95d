"""The time-boxed random search stops starting trials once its budget is spent."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from utils.tuning import TimeBoxedRandomSearch, trials_table


def _build(hp):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(hp.Int("units", 2, 8, step=2)),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(hp.Choice("lr", [1e-3, 1e-2])), loss="binary_crossentropy")
    return model


def _search(tmp_path: Path, budget_s: float, max_trials: int) -> TimeBoxedRandomSearch:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 3)), rng.integers(0, 2, 64)
    tuner = TimeBoxedRandomSearch(_build, objective="val_loss", max_trials=max_trials, budget_s=budget_s,
                                  seed=0, directory=tmp_path, project_name="t", overwrite=True)
    tuner.search(x, y, validation_data=(x, y), epochs=1, verbose=0)
    return tuner


def test_budget_stops_the_search(tmp_path: Path) -> None:
    tuner = _search(tmp_path, budget_s=1e-3, max_trials=5)
    assert len(tuner.oracle.trials) == 1 and tuner.elapsed_s > 0


def test_without_pressure_all_trials_run(tmp_path: Path) -> None:
    tuner = _search(tmp_path, budget_s=600, max_trials=3)
    table = trials_table(tuner)
    assert len(table) == 3 and {"units", "lr", "score"} <= set(table.columns)
    assert table["score"].is_monotonic_increasing  # val_loss: best (lowest) first


def test_budget_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="budget_s"):
        TimeBoxedRandomSearch(_build, objective="val_loss", max_trials=1, budget_s=0, directory=tmp_path)
