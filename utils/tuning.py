"""Reading a KerasTuner search: one row per finished trial, its hyperparameters and score, best first.

The course bounds a search by its number of trials (``max_trials``), never by the clock, so that the same seed
finds the same settings on a fast machine and a slow one; a lesson reports the time the search took instead.
"""

from __future__ import annotations

import keras_tuner as kt
import pandas as pd

__all__ = ["trials_table"]


def trials_table(tuner: kt.Tuner) -> pd.DataFrame:
    """One row per finished trial: its hyperparameters and score, best first."""
    rows = []
    for trial in tuner.oracle.trials.values():
        if trial.score is None:
            continue
        rows.append({**trial.hyperparameters.values, "score": trial.score, "trial": trial.trial_id})
    direction = tuner.oracle.objective.direction
    return pd.DataFrame(rows).sort_values("score", ascending=direction == "min").reset_index(drop=True)
