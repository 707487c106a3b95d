"""Self-checks for lesson 01 (data preparation): the temporal split, a smoothed rate, a tf.data pipeline."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from utils.checks import CheckResult, expect, run_check


def _toy_log(rows: int = 600, days: int = 20, seed: int = 1) -> pd.DataFrame:
    """A small shuffled log: days out of order, so an answer that forgets to use the day fails."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "user_id": rng.integers(0, 30, rows),
        "item_id": rng.integers(0, 40, rows),
        "day": rng.integers(0, days, rows),
        "price": rng.lognormal(3, 1, rows).astype("float32"),
        "click": rng.integers(0, 2, rows),
    })
    frame["timestamp"] = frame["day"] * 86_400 + rng.integers(0, 86_400, rows)
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def _check_temporal_split(fn: Callable[..., tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]) -> str:
    log = _toy_log()
    parts = fn(log, valid_days=3, test_days=4)
    expect(isinstance(parts, tuple) and len(parts) == 3, "return a tuple (train, valid, test) of three frames")
    train, valid, test = parts
    for name, part in (("train", train), ("valid", valid), ("test", test)):
        expect(isinstance(part, pd.DataFrame), f"{name} must be a DataFrame, got {type(part).__name__}")
        expect(len(part) > 0, f"{name} is empty")
    expect(sorted(pd.concat([train, valid, test]).index) == sorted(log.index),
           "every row must land in exactly one part (some are missing or repeated)")
    expect(set(test["day"]) == {16, 17, 18, 19}, f"test must be the last 4 days (16–19), got {sorted(set(test['day']))}")
    expect(set(valid["day"]) == {13, 14, 15}, f"valid must be the 3 days before test (13–15), got {sorted(set(valid['day']))}")
    expect(train["day"].max() < valid["day"].min() and valid["day"].max() < test["day"].min(),
           "some training or validation rows come after later parts: split on the day, not on the row order")
    return f"correct: {len(train)} / {len(valid)} / {len(test)} rows, every training day before every test day"


def temporal_split(fn: Callable[..., tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]) -> CheckResult:
    """Check Exercise 01.1: split a log into train, validation and test by whole days."""
    return run_check("Exercise 01.1 (split by time)", _check_temporal_split, fn, "utils.splits.temporal_split")


def _check_smoothed_rate(fn: Callable[..., pd.Series]) -> str:
    train = pd.DataFrame({"item_id": [1, 1, 1, 1, 2, 3, 3], "click": [1, 1, 1, 1, 0, 0, 1]})
    got = fn(train, "item_id", "click", prior_strength=2.0)
    expect(isinstance(got, pd.Series), f"return a pandas Series indexed by item_id, got {type(got).__name__}")
    expect(sorted(got.index) == [1, 2, 3], f"the index must be the item ids seen in train, got {list(got.index)}")
    g = 5 / 7
    want = {1: (4 + 2 * g) / (4 + 2), 2: (0 + 2 * g) / (1 + 2), 3: (1 + 2 * g) / (2 + 2)}
    raw = {1: 1.0, 2: 0.0, 3: 0.5}
    expect(not all(np.isclose(got[k], raw[k]) for k in raw),
           "these are the raw rates: shrink them towards the global rate with the prior strength")
    expect(not np.isclose(got[2], 2 * 0.5 / 3),
           "the prior pulls towards the GLOBAL click rate of train (5/7), not towards 0.5")
    for key, value in want.items():
        expect(np.isclose(got[key], value),
               f"item {key}: got {got[key]:.4f}, want (clicks + m·global) / (impressions + m) = {value:.4f}")
    flat = fn(train, "item_id", "click", prior_strength=0.0)
    expect(all(np.isclose(flat[k], raw[k]) for k in raw), "with prior_strength=0 the raw rates must come back")
    return "correct: a rare item stays near the global rate, a frequent one keeps its own"


def smoothed_rate(fn: Callable[..., pd.Series]) -> CheckResult:
    """Check Exercise 01.2: a per-key rate shrunk towards the global rate (additive smoothing)."""
    return run_check("Exercise 01.2 (smoothed click rate)", _check_smoothed_rate, fn, "utils.features.smoothed_rate")


def _check_make_dataset(fn: Callable[..., object]) -> str:
    import tensorflow as tf

    log = _toy_log(rows=100).reset_index(drop=True)
    features = ["user_id", "item_id", "price"]
    ds = fn(log, features, "click", batch_size=32, shuffle=False)
    expect(isinstance(ds, tf.data.Dataset), f"return a tf.data.Dataset, got {type(ds).__name__}")
    spec = ds.element_spec
    expect(isinstance(spec, tuple) and len(spec) == 2, "each element must be a pair (features, label)")
    x_spec, y_spec = spec
    expect(getattr(y_spec, "shape", None) is not None and len(y_spec.shape) >= 1,
           "batch the dataset (ds.batch(batch_size)): each element must be a batch of rows, not one row")
    expect(isinstance(x_spec, dict), "features must be a dict {column name: tensor}, as Keras inputs are named")
    expect(set(x_spec) == set(features), f"feature keys must be {features}, got {sorted(x_spec)}")
    batches = list(ds)
    expect([len(b[1]) for b in batches] == [32, 32, 32, 4], "batch the rows: 100 rows in batches of 32 give 32, 32, 32, 4")
    labels = np.concatenate([b[1].numpy() for b in batches])
    expect(np.array_equal(labels, log["click"].to_numpy()), "without shuffling, labels must come in the frame's order")
    users = np.concatenate([b[0]["user_id"].numpy() for b in batches])
    expect(np.array_equal(users, log["user_id"].to_numpy()), "features and labels must stay aligned row by row")
    first = [b[1].numpy() for b in fn(log, features, "click", batch_size=100, shuffle=True, seed=3)][0]
    again = [b[1].numpy() for b in fn(log, features, "click", batch_size=100, shuffle=True, seed=3)][0]
    expect(not np.array_equal(first, labels), "shuffle=True must change the order")
    expect(np.array_equal(first, again), "the same seed must give the same shuffled order")
    expect(sorted(first) == sorted(labels), "shuffling must keep every row exactly once")
    return "correct: named features, aligned labels, batches, and a seeded shuffle"


def make_dataset(fn: Callable[..., object]) -> CheckResult:
    """Check Exercise 01.3: a tf.data pipeline of (features dict, label) batches."""
    return run_check("Exercise 01.3 (tf.data pipeline)", _check_make_dataset, fn, "utils.pipeline.make_dataset")
