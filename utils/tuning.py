"""A time-boxed hyperparameter search with KerasTuner: stop starting trials once a budget is spent.

KerasTuner bounds a search by its number of trials; on a laptop the honest bound is wall time, so this
random search also stops (after the running trial) when ``budget_s`` seconds have passed.
"""

from __future__ import annotations

import time
from typing import Any

import keras_tuner as kt
import pandas as pd


class TimeBoxedRandomSearch(kt.RandomSearch):
    """``kt.RandomSearch`` that starts no new trial after ``budget_s`` seconds of search."""

    def __init__(self, *args: Any, budget_s: float, **kwargs: Any) -> None:
        if budget_s <= 0:
            raise ValueError(f"budget_s must be positive, got {budget_s}")
        super().__init__(*args, **kwargs)
        self.budget_s = budget_s
        self._started: float | None = None

    def search(self, *args: Any, **kwargs: Any) -> None:
        """Run trials until ``max_trials`` or the time budget, whichever comes first."""
        self._started = time.perf_counter()
        super().search(*args, **kwargs)

    def on_trial_end(self, trial: kt.engine.trial.Trial) -> None:
        """After each trial, cap the number of trials at those done if the budget is spent."""
        super().on_trial_end(trial)
        if self._started is not None and time.perf_counter() - self._started >= self.budget_s:
            self.oracle.max_trials = len(self.oracle.trials)

    @property
    def elapsed_s(self) -> float:
        """Seconds since the search started (0 before it did)."""
        return 0.0 if self._started is None else time.perf_counter() - self._started


def trials_table(tuner: kt.Tuner) -> pd.DataFrame:
    """One row per finished trial: its hyperparameters and score, best first."""
    rows = []
    for trial in tuner.oracle.trials.values():
        if trial.score is None:
            continue
        rows.append({**trial.hyperparameters.values, "score": trial.score, "trial": trial.trial_id})
    direction = tuner.oracle.objective.direction
    return pd.DataFrame(rows).sort_values("score", ascending=direction == "min").reset_index(drop=True)
