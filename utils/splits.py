"""Leakage-free splits of an interaction log: by time, as a model meets the future in production.

A random split lets a model train on impressions from after the ones it is tested on (an item's later
popularity, a new item before its launch), so its offline score is better than anything it will see live.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _require(frame: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"the frame has no column(s) {missing}; it has {list(frame.columns)}")


def temporal_split(
    frame: pd.DataFrame, valid_days: int = 3, test_days: int = 3, day_column: str = "day"
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Split into train / validation / test by day: the last ``test_days`` days are the test set, the
    ``valid_days`` before them the validation set, everything earlier the training set.

    Whole days go to one side, so no day is cut in two. Each part keeps the rows in time order.
    """
    _require(frame, [day_column])
    if valid_days < 0 or test_days < 1:
        raise ValueError(f"need test_days >= 1 and valid_days >= 0, got {test_days} and {valid_days}")
    last = int(frame[day_column].max())
    test_start = last - test_days + 1
    valid_start = test_start - valid_days
    if valid_start <= int(frame[day_column].min()):
        raise ValueError(
            f"the log spans days {int(frame[day_column].min())}..{last}: too short for "
            f"{valid_days} validation and {test_days} test days with any training days left"
        )
    ordered = frame.sort_values(day_column, kind="stable")
    day = ordered[day_column]
    return (
        ordered[day < valid_start],
        ordered[(day >= valid_start) & (day < test_start)],
        ordered[day >= test_start],
    )


def random_split(
    frame: pd.DataFrame, valid_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Split rows at random (the common mistake for logs; kept to show what it leaks)."""
    if not 0 < valid_fraction + test_fraction < 1:
        raise ValueError(f"fractions must be positive and sum below 1, got {valid_fraction} + {test_fraction}")
    u = np.random.default_rng(seed).random(len(frame))
    test = u < test_fraction
    valid = (u >= test_fraction) & (u < test_fraction + valid_fraction)
    return frame[~test & ~valid], frame[valid], frame[test]
