"""Monitoring a served model: the population stability index (PSI) of features and predictions across
time windows, an alert threshold, and the rule that triggers retraining.

PSI compares a distribution in a new window (``actual``) with the one the model was trained on
(``expected``), over bins fixed on the reference:

    PSI = sum_b (a_b - e_b) * ln(a_b / e_b)

with ``e_b`` and ``a_b`` the shares of the reference and the window in bin ``b``. It is the symmetric
Kullback-Leibler divergence (Jeffreys divergence) of the binned distributions. The rule of thumb of
credit scoring, where PSI comes from: below 0.1 nothing moved, 0.1-0.25 a moderate shift worth a look,
above 0.25 a shift that needs action. Libraries that compute it in production: Evidently, NannyML,
TensorFlow Data Validation (which also uses the Jensen-Shannon divergence and L-infinity distance).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_EPSILON",
    "PSI_ACTION",
    "PSI_WATCH",
    "Drift",
    "alerts",
    "first_alert",
    "psi",
    "psi_categorical",
    "psi_table",
    "quantile_edges",
]

#: PSI below this: no shift worth a look.
PSI_WATCH = 0.1
#: PSI above this: a shift that needs action (the course's default alert threshold).
PSI_ACTION = 0.25
#: The share an empty bin is given, so that ln(a / e) stays finite.
DEFAULT_EPSILON = 1e-4


def _finite(values: Iterable[float], name: str) -> np.ndarray:
    if isinstance(values, pd.Series):
        values = values.to_numpy(dtype=np.float64, na_value=np.nan)
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise ValueError(f"{name} is empty: PSI needs values in both the reference and the window")
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise ValueError(f"{name} has {bad} missing or infinite value(s): drop or fill them")
    return array


def quantile_edges(reference: Iterable[float], bins: int = 10) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (``bins - 1`` of them, repeated edges dropped)."""
    if not isinstance(bins, int) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    values = _finite(reference, "reference")
    return np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))


def _psi_from_shares(expected: np.ndarray, actual: np.ndarray, epsilon: float) -> float:
    e = np.maximum(expected, epsilon)
    a = np.maximum(actual, epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def psi(expected: Iterable[float], actual: Iterable[float], bins: int = 10,
        epsilon: float = DEFAULT_EPSILON) -> float:
    """PSI of a numeric variable: ``bins`` quantile bins of ``expected`` (the reference), shares floored at ``epsilon``.

    Bins are ``(lower, upper]`` between the reference's quantiles, open at both ends, so a window's values
    outside the reference's range fall into the first or last bin.
    """
    if not 0 < epsilon < 1:
        raise ValueError(f"epsilon must lie in (0, 1), got {epsilon}")
    reference = _finite(expected, "expected")
    window = _finite(actual, "actual")
    edges = quantile_edges(reference, bins)
    n_bins = len(edges) + 1
    e = np.bincount(np.searchsorted(edges, reference, side="left"), minlength=n_bins) / reference.size
    a = np.bincount(np.searchsorted(edges, window, side="left"), minlength=n_bins) / window.size
    return _psi_from_shares(e, a, epsilon)


def psi_categorical(expected: Iterable[object], actual: Iterable[object], epsilon: float = DEFAULT_EPSILON,
                    max_categories: int | None = 50) -> float:
    """PSI of a categorical variable, one bin per category of the reference (missing values are a category).

    With ``max_categories``, categories beyond the reference's most frequent ones share an "other" bin,
    as do the window's categories the reference never had (new items, new brands).
    """
    reference = pd.Series(list(expected) if not isinstance(expected, pd.Series) else expected)
    window = pd.Series(list(actual) if not isinstance(actual, pd.Series) else actual)
    if reference.empty or window.empty:
        raise ValueError("PSI needs values in both the reference and the window")
    reference, window = reference.astype(object).fillna("<missing>"), window.astype(object).fillna("<missing>")
    counts = reference.value_counts()
    kept = counts.index if max_categories is None else counts.index[:max_categories]
    other = "<other>"
    e = reference.where(reference.isin(kept), other).value_counts(normalize=True)
    a = window.where(window.isin(kept), other).value_counts(normalize=True)
    categories = e.index.union(a.index)
    return _psi_from_shares(e.reindex(categories, fill_value=0.0).to_numpy(),
                            a.reindex(categories, fill_value=0.0).to_numpy(), epsilon)


def psi_table(reference: pd.DataFrame, windows: pd.DataFrame, window_col: str, numeric: Sequence[str] = (),
              categorical: Sequence[str] = (), bins: int = 10) -> pd.DataFrame:
    """PSI of every named column in every window (rows: windows in order; columns: the variables)."""
    columns = [*numeric, *categorical]
    for frame, what in ((reference, "reference"), (windows, "windows")):
        missing = [c for c in columns + ([window_col] if what == "windows" else []) if c not in frame.columns]
        if missing:
            raise KeyError(f"the {what} frame has no column(s) {missing}")
    rows = {}
    for window, part in windows.groupby(window_col, sort=True, observed=True):
        row = {c: psi(reference[c], part[c], bins) for c in numeric}
        row.update({c: psi_categorical(reference[c], part[c]) for c in categorical})
        rows[window] = row
    return pd.DataFrame.from_dict(rows, orient="index")[columns].rename_axis(window_col)


@dataclass(frozen=True)
class Drift:
    """One alert: the window, the variable and its PSI."""

    window: object
    variable: str
    psi: float


def alerts(table: pd.DataFrame, threshold: float = PSI_ACTION) -> list[Drift]:
    """Every (window, variable) whose PSI exceeds ``threshold``, in window order."""
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    found = []
    for window, row in table.iterrows():
        found += [Drift(window, variable, float(value)) for variable, value in row.items() if value > threshold]
    return found


def first_alert(table: pd.DataFrame, threshold: float = PSI_ACTION, patience: int = 1,
                variables: Sequence[str] | None = None) -> object | None:
    """The retraining trigger: the first window that ends ``patience`` consecutive windows with an alert.

    ``variables`` limits the variables watched (default: all columns). ``patience > 1`` trades a later
    reaction for fewer false alarms on one noisy window. None when the trigger never fires.
    """
    if patience < 1:
        raise ValueError(f"patience must be >= 1, got {patience}")
    watched = table if variables is None else table[list(variables)]
    streak = 0
    for window, row in watched.iterrows():
        streak = streak + 1 if (row > threshold).any() else 0
        if streak >= patience:
            return window
    return None
