"""Lesson 01's self-checks: more valid answers they accept and more mistakes they name (see also test_checks.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from utils.checks import l01
from utils.features import smoothed_rate
from utils.pipeline import make_dataset
from utils.splits import temporal_split


# -- 01.1 split by time ------------------------------------------------------------------------------------

def _split_masks(frame, valid_days=3, test_days=3):
    """Boolean masks on the unsorted frame, no sort and no copy."""
    last = frame["day"].max()
    test = frame["day"] > last - test_days
    valid = (frame["day"] > last - test_days - valid_days) & ~test
    return frame[~valid & ~test], frame[valid], frame[test]


def _split_distinct_days(frame, valid_days=3, test_days=3):
    days = np.sort(frame["day"].unique())
    test_set, valid_set = days[-test_days:], days[-test_days - valid_days: -test_days]
    return (frame[~frame.day.isin(np.r_[test_set, valid_set])], frame[frame.day.isin(valid_set)],
            frame[frame.day.isin(test_set)])


def _split_days_in_order_of_appearance(frame, valid_days=3, test_days=3):
    days = frame["day"].unique()  # not sorted: the order the days first appear in the log
    test_set, valid_set = days[-test_days:], days[-test_days - valid_days: -test_days]
    return (frame[~frame.day.isin(np.r_[test_set, valid_set])], frame[frame.day.isin(valid_set)],
            frame[frame.day.isin(test_set)])


def _split_by_seconds(frame, valid_days=3, test_days=3):
    end = frame["timestamp"].max()
    test = frame.timestamp > end - test_days * 86_400
    valid = (frame.timestamp > end - (test_days + valid_days) * 86_400) & ~test
    return frame[~valid & ~test], frame[valid], frame[test]


@pytest.mark.parametrize("fn", [temporal_split, _split_masks, _split_distinct_days])
def test_temporal_split_accepts(fn) -> None:
    result = l01.temporal_split(fn)
    assert result.passed, result


@pytest.mark.parametrize("fn, words", [(_split_days_in_order_of_appearance, "last 4 days"),
                                       (_split_by_seconds, "last 4 days")])
def test_temporal_split_rejects(fn, words: str) -> None:
    result = l01.temporal_split(fn)
    assert result.status == "wrong" and words in result.message, result


# -- 01.2 smoothed click rate ------------------------------------------------------------------------------

def _rate_float32(train, key, label="click", prior_strength=20.0):
    return smoothed_rate(train, key, label, prior_strength).astype(np.float32)


def _rate_loop(train, key, label="click", prior_strength=20.0):
    g = train[label].mean()
    return pd.Series({k: (rows[label].sum() + prior_strength * g) / (len(rows) + prior_strength)
                      for k, rows in train.groupby(key)})


def _rate_frame(train, key, label="click", prior_strength=20.0):
    return smoothed_rate(train, key, label, prior_strength).to_frame()


def _rate_per_row(train, key, label="click", prior_strength=20.0):
    return train[key].map(smoothed_rate(train, key, label, prior_strength))


def _rate_range_index(train, key, label="click", prior_strength=20.0):
    return smoothed_rate(train, key, label, prior_strength).reset_index(drop=True)


def _rate_hard_coded(train, key, label="click", prior_strength=20.0):
    return smoothed_rate(train, "item_id", "click", prior_strength)


def _rate_hard_coded_label(train, key, label="click", prior_strength=20.0):
    return smoothed_rate(train.assign(**{label: train["click"]}), key, label, prior_strength)


def _rate_mean_of_rates(train, key, label="click", prior_strength=20.0):
    stats = train.groupby(key)[label].agg(["sum", "count", "mean"])
    return (stats["sum"] + prior_strength * stats["mean"].mean()) / (stats["count"] + prior_strength)


def _rate_no_prior_in_denominator(train, key, label="click", prior_strength=20.0):
    stats = train.groupby(key)[label].agg(["sum", "count"])
    return (stats["sum"] + prior_strength * train[label].mean()) / (stats["count"] + prior_strength + 1)


@pytest.mark.parametrize("fn", [smoothed_rate, _rate_float32, _rate_loop])
def test_smoothed_rate_accepts(fn) -> None:
    result = l01.smoothed_rate(fn)
    assert result.passed, result


@pytest.mark.parametrize("fn, words", [(_rate_frame, "not a DataFrame"), (_rate_per_row, "not one per row"),
                                       (_rate_range_index, "reset_index"), (_rate_hard_coded, "`key`"),
                                       (_rate_hard_coded_label, "`label`"), (_rate_mean_of_rates, "GLOBAL"),
                                       (_rate_no_prior_in_denominator, "(clicks + m·global)")])
def test_smoothed_rate_rejects(fn, words: str) -> None:
    result = l01.smoothed_rate(fn)
    assert result.status == "wrong" and words in result.message, result


def test_smoothed_rate_says_what_to_return() -> None:
    listed = lambda t, k, l, prior_strength=20.0: list(smoothed_rate(t, k, l, prior_strength))  # noqa: E731,E741
    message = l01.smoothed_rate(listed).message
    assert "pandas Series indexed by item_id" in message and "got list" in message


# -- 01.3 tf.data pipeline ---------------------------------------------------------------------------------

def _pairs(frame, features, label):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(({c: frame[c].to_numpy() for c in features}, frame[label].to_numpy()))


def _ds_fixed_buffer(frame, features, label, batch_size=1024, shuffle=False, seed=0):
    ds = _pairs(frame, features, label)
    if shuffle:
        ds = ds.shuffle(10_000, seed=seed)  # reshuffles each epoch by default
    return ds.batch(batch_size)


def _ds_series_dict(frame, features, label, batch_size=1024, shuffle=False, seed=0):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((dict(frame[list(features)]), frame[label]))
    if shuffle:
        ds = ds.shuffle(len(frame), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _ds_pandas_shuffle_once(frame, features, label, batch_size=1024, shuffle=False, seed=0):
    if shuffle:
        frame = frame.sample(frac=1.0, random_state=seed)
    return _pairs(frame, features, label).batch(batch_size)


def _ds_shuffle_after_batch(frame, features, label, batch_size=1024, shuffle=False, seed=0):
    ds = _pairs(frame, features, label).batch(batch_size)
    return ds.shuffle(len(frame), seed=seed) if shuffle else ds


def _ds_small_buffer(frame, features, label, batch_size=1024, shuffle=False, seed=0):
    ds = _pairs(frame, features, label)
    return (ds.shuffle(batch_size, seed=seed) if shuffle else ds).batch(batch_size)


def _ds_columns_shuffled_apart(frame, features, label, batch_size=1024, shuffle=False, seed=0):
    import tensorflow as tf

    x = tf.data.Dataset.from_tensor_slices({c: frame[c].to_numpy() for c in features})
    y = tf.data.Dataset.from_tensor_slices(frame[label].to_numpy())
    if shuffle:
        x, y = x.shuffle(len(frame), seed=seed), y.shuffle(len(frame), seed=seed + 1)
    return tf.data.Dataset.zip((x, y)).batch(batch_size)


def _ds_ignores_shuffle(frame, features, label, batch_size=1024, shuffle=False, seed=0):
    return _pairs(frame, features, label).batch(batch_size)


def _ds_drop_remainder(frame, features, label, batch_size=1024, shuffle=False, seed=0):
    ds = _pairs(frame, features, label)
    if shuffle:
        ds = ds.shuffle(len(frame), seed=seed)
    return ds.batch(batch_size, drop_remainder=True)


@pytest.mark.parametrize("fn", [make_dataset, _ds_fixed_buffer, _ds_series_dict])
def test_make_dataset_accepts(fn) -> None:
    result = l01.make_dataset(fn)
    assert result.passed, result


@pytest.mark.parametrize("fn, words", [(_ds_pandas_shuffle_once, "next epoch"),
                                       (_ds_shuffle_after_batch, "after batching"),
                                       (_ds_small_buffer, "buffer"),
                                       (_ds_columns_shuffled_apart, "no longer sits beside"),
                                       (_ds_ignores_shuffle, "must change the order"),
                                       (_ds_drop_remainder, "32, 32, 32, 4")])
def test_make_dataset_rejects(fn, words: str) -> None:
    result = l01.make_dataset(fn)
    assert result.status == "wrong" and words in result.message, result
