"""PSI: zero on identical data, a hand-computed value, categories, tables, alerts and the retraining trigger."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from utils import monitoring


def test_psi_of_a_sample_against_itself_is_zero() -> None:
    x = np.random.default_rng(0).normal(size=500)
    assert monitoring.psi(x, x) == pytest.approx(0.0, abs=1e-12)
    assert monitoring.psi_categorical(["a", "b", "b"], ["a", "b", "b"]) == pytest.approx(0.0, abs=1e-12)


def test_psi_by_hand() -> None:
    reference = np.arange(1, 11, dtype=float)  # bins=2: edge at the median 5.5, halves of 0.5
    window = np.array([1.0, 2.0, 3.0, 9.0])  # 3/4 below the edge, 1/4 above
    want = (0.75 - 0.5) * np.log(0.75 / 0.5) + (0.25 - 0.5) * np.log(0.25 / 0.5)
    assert monitoring.psi(reference, window, bins=2) == pytest.approx(want)


def test_psi_bins_are_open_ended_and_empty_bins_stay_finite() -> None:
    reference = np.linspace(0, 1, 1000)
    far = np.full(50, 100.0)  # all beyond the reference's range: the last bin, not dropped
    value = monitoring.psi(reference, far, bins=10)
    assert np.isfinite(value) and value > 5
    assert value == pytest.approx(monitoring.psi(reference, np.full(50, 1.0), bins=10))


def test_psi_grows_with_the_shift() -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(size=5000)
    values = [monitoring.psi(reference, rng.normal(shift, 1, 5000)) for shift in (0.0, 0.2, 0.5, 1.0)]
    assert values == sorted(values) and values[0] < monitoring.PSI_WATCH < monitoring.PSI_ACTION < values[-1]


def test_psi_categorical_new_and_rare_categories() -> None:
    reference = pd.Series(["a"] * 50 + ["b"] * 30 + ["c"] * 20)
    window = pd.Series(["a"] * 50 + ["new"] * 50)
    e, a = np.array([0.5, 0.3, 0.2, 1e-4]), np.array([0.5, 1e-4, 1e-4, 0.5])  # a, b, c, <other>
    assert monitoring.psi_categorical(reference, window) == pytest.approx(float(np.sum((a - e) * np.log(a / e))))
    capped = monitoring.psi_categorical(reference, window, max_categories=1)  # b and c join <other>
    e1, a1 = np.array([0.5, 0.5]), np.array([0.5, 0.5])
    assert capped == pytest.approx(float(np.sum((a1 - e1) * np.log(a1 / e1))))
    assert monitoring.psi_categorical(pd.Series([1, None, 1]), pd.Series([None, None, 1])) > 0


def test_psi_table_alerts_and_trigger() -> None:
    rng = np.random.default_rng(2)
    reference = pd.DataFrame({"x": rng.normal(size=2000), "c": rng.choice(list("abc"), 2000)})
    windows = pd.DataFrame({"x": np.r_[rng.normal(size=600), rng.normal(2, 1, 600), rng.normal(2, 1, 600)],
                            "c": rng.choice(list("abc"), 1800), "w": np.repeat([0, 3, 6], 600)})
    table = monitoring.psi_table(reference, windows, "w", numeric=["x"], categorical=["c"])
    assert list(table.columns) == ["x", "c"] and list(table.index) == [0, 3, 6]
    found = monitoring.alerts(table)
    assert [(d.window, d.variable) for d in found] == [(3, "x"), (6, "x")]
    assert monitoring.first_alert(table) == 3
    assert monitoring.first_alert(table, patience=2) == 6
    assert monitoring.first_alert(table, variables=["c"]) is None


@pytest.mark.parametrize("call, error, words", [
    (lambda: monitoring.psi([], [1.0]), ValueError, "empty"),
    (lambda: monitoring.psi([1.0, np.nan], [1.0]), ValueError, "missing or infinite"),
    (lambda: monitoring.psi([1.0, 2.0], [1.0], bins=1), ValueError, "bins"),
    (lambda: monitoring.psi([1.0, 2.0], [1.0], epsilon=0), ValueError, "epsilon"),
    (lambda: monitoring.psi_table(pd.DataFrame({"x": [1.0]}), pd.DataFrame({"x": [1.0]}), "w", ["x"]), KeyError, "w"),
    (lambda: monitoring.first_alert(pd.DataFrame({"x": [0.3]}), patience=0), ValueError, "patience"),
    (lambda: monitoring.alerts(pd.DataFrame({"x": [0.3]}), threshold=0), ValueError, "threshold"),
])
def test_bad_input(call, error, words) -> None:
    with pytest.raises(error, match=words):
        call()
