"""Feature engineering that must be fitted on training data only: smoothed target encodings."""

from __future__ import annotations

import pandas as pd


def smoothed_rate(train: pd.DataFrame, key: str, label: str = "click", prior_strength: float = 20.0) -> pd.Series:
    """Per-``key`` rate of ``label`` in ``train``, shrunk towards the global rate.

    ``(positives + m * global_rate) / (count + m)`` with ``m = prior_strength``: a key seen a few times
    stays near the global rate instead of jumping to 0 or 1 (additive, or Bayesian, smoothing).
    Fit it on the training split only; keys missing from the result should get the global rate.
    """
    for column in (key, label):
        if column not in train.columns:
            raise KeyError(f"the frame has no column {column!r}")
    if prior_strength < 0:
        raise ValueError(f"prior_strength must be >= 0, got {prior_strength}")
    if train[label].isna().any():
        raise ValueError(f"{label!r} has missing values: drop or fill them before encoding")
    global_rate = float(train[label].mean())
    stats = train.groupby(key)[label].agg(["sum", "count"])
    return ((stats["sum"] + prior_strength * global_rate) / (stats["count"] + prior_strength)).rename(
        f"{key}_{label}_rate"
    )
