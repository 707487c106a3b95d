"""A search bounded by its trials finds the same settings every time; the table reads it back, best first."""

from __future__ import annotations

from pathlib import Path

import keras
import keras_tuner as kt
import numpy as np

from utils.tuning import trials_table


def _build(hp):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(hp.Int("units", 2, 8, step=2)),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(hp.Choice("lr", [1e-3, 1e-2])), loss="binary_crossentropy")
    return model


def _search(tmp_path: Path, name: str) -> kt.RandomSearch:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 3)), rng.integers(0, 2, 64)
    keras.utils.set_random_seed(0)
    tuner = kt.RandomSearch(_build, objective="val_loss", max_trials=3, seed=0, directory=tmp_path, project_name=name,
                            overwrite=True)
    tuner.search(x, y, validation_data=(x, y), epochs=1, verbose=0)
    return tuner


def test_trials_table_lists_every_trial_best_first_and_repeats(tmp_path: Path) -> None:
    first, second = trials_table(_search(tmp_path, "a")), trials_table(_search(tmp_path, "b"))
    assert len(first) == 3 and first["score"].is_monotonic_increasing
    assert {"units", "lr", "score", "trial"} <= set(first.columns)
    assert first[["units", "lr"]].equals(second[["units", "lr"]])  # bounded by trials, not by the clock
