"""Self-checks for lesson 01 (data preparation): the temporal split, a smoothed rate, a tf.data pipeline."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from utils.checks import RTOL, CheckResult, expect, run_check


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
    last_day = log["day"] == log["day"].max()  # the log ends at noon: "the last 4 × 24 hours" is not 4 whole days
    log.loc[last_day, "timestamp"] = log.loc[last_day, "day"] * 86_400 + log.loc[last_day, "timestamp"] % 43_200
    parts = fn(log, valid_days=3, test_days=4)
    expect(isinstance(parts, tuple) and len(parts) == 3, "return a tuple (train, valid, test) of three frames")
    train, valid, test = parts
    for name, part in (("train", train), ("valid", valid), ("test", test)):
        expect(isinstance(part, pd.DataFrame), f"{name} must be a DataFrame, got {type(part).__name__}")
        expect(len(part) > 0, f"{name} is empty")
    expect(sorted(pd.concat([train, valid, test]).index) == sorted(log.index),
           "every row must land in exactly one part (some are missing or repeated)")
    expect(set(test["day"]) == {16, 17, 18, 19},
           f"test must be the last 4 days (16–19), got {sorted(set(test['day']))}: whole days, counted on the day column")
    expect(set(valid["day"]) == {13, 14, 15}, f"valid must be the 3 days before test (13–15), got {sorted(set(valid['day']))}")
    expect(train["day"].max() < valid["day"].min() and valid["day"].max() < test["day"].min(),
           "some training or validation rows come after later parts: split on the day, not on the row order")
    return f"correct: {len(train)} / {len(valid)} / {len(test)} rows, every training day before every test day"


def temporal_split(fn: Callable[..., tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]) -> CheckResult:
    """Check Exercise 01.1: split a log into train, validation and test by whole days."""
    return run_check("Exercise 01.1 (split by time)", _check_temporal_split, fn, "utils.splits.temporal_split")


def _close(got: object, want: float) -> bool:
    return bool(np.isclose(float(got), want, rtol=RTOL, atol=1e-7))


def _smoothed_reference(train: pd.DataFrame, key: str, label: str, m: float) -> dict[object, float]:
    global_rate = train[label].mean()
    stats = train.groupby(key)[label].agg(["sum", "count"])
    return {k: (row["sum"] + m * global_rate) / (row["count"] + m) for k, row in stats.iterrows()}


def _expect_rates_series(got: object, keys: list[int], key: str, rows: int) -> None:
    """The answer must be a pandas Series with one value per key, indexed by the key."""
    expect(not isinstance(got, pd.DataFrame),
           f"return a pandas Series indexed by {key} (one smoothed rate per {key}), not a DataFrame: "
           "select the rate column, e.g. (stats['sum'] + m * global) / (stats['count'] + m)")
    expect(isinstance(got, pd.Series),
           f"return a pandas Series indexed by {key}, with one smoothed rate per {key} (got {type(got).__name__}), "
           f"so that rates.loc[k] is the smoothed rate of the {key} k")
    expect(len(got) != rows or rows == len(keys),
           f"one value per {key}, not one per row: group the rows by {key} (train.groupby(key))")
    expect(sorted(got.index) == keys,
           f"the Series must be indexed by the {key} values seen in train ({keys}), as train.groupby(key) gives; "
           f"got the index {list(got.index)} (do not reset_index)")


def _check_smoothed_rate(fn: Callable[..., pd.Series]) -> str:
    train = pd.DataFrame({"item_id": [1, 1, 1, 1, 2, 3, 3], "click": [1, 1, 1, 1, 0, 0, 1]})
    got = fn(train, "item_id", "click", prior_strength=2.0)
    _expect_rates_series(got, [1, 2, 3], "item_id", len(train))
    g = 5 / 7
    want = {1: (4 + 2 * g) / (4 + 2), 2: (0 + 2 * g) / (1 + 2), 3: (1 + 2 * g) / (2 + 2)}
    raw = {1: 1.0, 2: 0.0, 3: 0.5}
    expect(not all(_close(got[k], raw[k]) for k in raw),
           "these are the raw rates: shrink them towards the global rate with the prior strength")
    expect(not _close(got[2], 2 * 0.5 / 3),
           "the prior pulls towards the GLOBAL click rate of train (all clicks / all rows = 5/7), "
           "not towards 0.5 or the mean of the per-item rates")
    for key, value in want.items():
        expect(_close(got[key], value),
               f"item {key}: got {float(got[key]):.6f}, want (clicks + m·global) / (impressions + m) = {value:.6f} "
               f"(checked to a relative {RTOL:g})")
    flat = fn(train, "item_id", "click", prior_strength=0.0)
    expect(all(_close(flat[k], raw[k]) for k in raw), "with prior_strength=0 the raw rates must come back")
    # Other column names, with item_id and click still present: the answer must use its arguments.
    other = pd.DataFrame({"shop": [7, 7, 8, 8, 8, 9], "order": [0, 1, 1, 1, 1, 0],
                          "item_id": [1, 2, 3, 1, 2, 3], "click": [1, 0, 0, 0, 1, 1]})
    got_other = fn(other, "shop", "order", prior_strength=3.0)
    expect(isinstance(got_other, pd.Series) and sorted(got_other.index) == [7, 8, 9],
           "with key='shop' the Series must be indexed by the shop values [7, 8, 9]: group by the `key` "
           "argument, not by a fixed column name")
    want_other = _smoothed_reference(other, "shop", "order", 3.0)
    expect(all(_close(got_other[k], v) for k, v in want_other.items()),
           "with key='shop', label='order' the rates are wrong: use the `key` and `label` arguments "
           "(the label column for the clicks and for the global rate), not fixed column names")
    return "correct: a rare item stays near the global rate, a frequent one keeps its own"


def smoothed_rate(fn: Callable[..., pd.Series]) -> CheckResult:
    """Check Exercise 01.2: a per-key rate shrunk towards the global rate (additive smoothing)."""
    return run_check("Exercise 01.2 (smoothed click rate)", _check_smoothed_rate, fn, "utils.features.smoothed_rate")


def _epoch(ds: object) -> tuple[list[np.ndarray], np.ndarray]:
    """One pass over a dataset whose features hold a ``row`` column: the rows of each batch, and the labels."""
    batches = [(b[0]["row"].numpy(), b[1].numpy()) for b in ds]
    return [rows for rows, _ in batches], np.concatenate([labels for _, labels in batches])


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

    # Shuffling, followed row by row: a `row` feature numbers the rows of the frame.
    frame = log.assign(row=np.arange(len(log)))
    shuffled = fn(frame, ["row", "price"], "click", batch_size=10, shuffle=True, seed=3)
    first_batches, first_labels = _epoch(shuffled)
    first = np.concatenate(first_batches)
    expect(sorted(first.tolist()) == list(range(len(frame))), "shuffling must keep every row exactly once")
    expect([len(b) for b in first_batches] == [10] * 10,
           "with shuffle=True the batches must keep their size: 100 rows in batches of 10 give ten batches of 10")
    expect(np.array_equal(first_labels, frame["click"].to_numpy()[first]),
           "after shuffling, a row's label no longer sits beside its features: shuffle the (features, label) "
           "pairs together (one ds.shuffle on the dataset of pairs), not the columns separately")
    expect(not np.array_equal(first, np.arange(len(frame))), "shuffle=True must change the order")
    blocks = all(np.array_equal(np.sort(b), np.arange(b.min(), b.min() + len(b))) for b in first_batches)
    expect(not blocks,
           "you shuffled after batching: that only reorders whole batches, each still holds the same consecutive "
           "rows. Shuffle the rows first, then batch: ds.shuffle(...) before ds.batch(batch_size)")
    expect(np.max(first - np.arange(len(frame))) >= len(frame) // 4,
           "rows move only a few places: the shuffle buffer is too small to mix the frame. Give ds.shuffle a "
           "buffer as large as the frame (buffer_size=len(frame))")
    second, _ = _epoch(shuffled)
    expect(not np.array_equal(np.concatenate(second), first),
           "a second pass over the dataset (the next epoch) gave the same order: the rows must be reshuffled "
           "every epoch. Shuffle inside the pipeline, ds.shuffle(..., seed=seed, reshuffle_each_iteration=True), "
           "not the frame once")
    again = np.concatenate(_epoch(fn(frame, ["row", "price"], "click", batch_size=10, shuffle=True, seed=3))[0])
    expect(np.array_equal(first, again), "the same seed must give the same shuffled order")
    return "correct: named features, aligned labels, batches, and a seeded shuffle"


def make_dataset(fn: Callable[..., object]) -> CheckResult:
    """Check Exercise 01.3: a tf.data pipeline of (features dict, label) batches."""
    return run_check("Exercise 01.3 (tf.data pipeline)", _check_make_dataset, fn, "utils.pipeline.make_dataset")
