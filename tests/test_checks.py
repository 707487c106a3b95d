"""Every self-check accepts the reference answer, rejects typical wrong answers with a useful message,
and reports an unwritten answer as not attempted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from utils.checks import CheckResult, l00, l01, run_check
from utils.features import smoothed_rate
from utils.pipeline import make_dataset
from utils.splits import temporal_split


def _not_written(*args, **kwargs):
    raise NotImplementedError("Exercise: replace this line with your code")


def test_run_check_statuses() -> None:
    assert run_check("E", lambda a: "fine", 1, "ref").passed
    crashed = run_check("E", lambda fn: fn(), lambda: 1 / 0, "ref")
    assert crashed.status == "wrong" and crashed.message.startswith("your code raised ZeroDivisionError")
    skipped = run_check("E", lambda fn: fn(), _not_written, "utils.ref")
    assert skipped.status == "not attempted"


def test_run_check_does_not_blame_the_learner_for_the_checks_own_failure() -> None:
    """An exception while the check uses a returned value is the check's, named as such (03.3's object dtype)."""
    def compare(fn) -> str:
        got = fn()
        np.testing.assert_allclose(got, [1, 2])  # TypeError on an object array of strings
        return "fine"

    result = run_check("E", compare, lambda: np.array(["1", "2"], dtype=object), "ref")
    assert result.status == "wrong"
    assert result.message.startswith("the check could not use what your function returned (")
    assert "your code raised" not in result.message
    inner = run_check("E", compare, lambda: np.array([1, 2]) + "x", "ref")  # raised inside the answer
    assert inner.message.startswith("your code raised")
    skipped = run_check("E", _not_written, 1, "utils.ref")
    assert skipped.status == "not attempted" and "utils.ref" in skipped.message and not skipped
    assert repr(CheckResult("E", "correct", "ok")) == "✅ E: ok"


def _draws() -> tuple[float, ...]:
    """One number from each global random stream a lesson's models draw from: Python, NumPy, Keras."""
    import random

    import keras

    layer = keras.layers.Dense(1)
    layer.build((None, 2))
    return (random.random(), float(np.random.rand()), float(keras.random.uniform((1,))[0]),
            float(layer.kernel.numpy()[0, 0]))


@pytest.mark.parametrize("reseeds", [False, True])
def test_run_check_leaves_the_random_streams_as_it_found_them(reseeds: bool) -> None:
    """A check that trains a toy model (03.1, 07.1) must not change the lesson's later draws."""
    import keras

    def drawing_check(fn) -> str:
        if reseeds:
            keras.utils.set_random_seed(7)
        _draws()
        fn()
        return "fine"

    keras.utils.set_random_seed(0)
    _draws()  # the Keras seed generator exists before the check, as in a lesson
    untouched = _draws()
    keras.utils.set_random_seed(0)
    _draws()
    for answer in (lambda: None, _not_written, lambda: 1 / 0):
        run_check("E", drawing_check, answer, "ref")
    assert _draws() == untouched


# -- lesson 00 ---------------------------------------------------------------------------------------------

def _log_loss(y, p, eps=1e-7):
    p = np.clip(np.asarray(p, float), eps, 1 - eps)
    y = np.asarray(y, float)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


WRONG_LOG_LOSS = {
    "sum": (lambda y, p, eps=1e-7: _log_loss(y, p) * len(y), "sum"),
    "sign": (lambda y, p, eps=1e-7: -_log_loss(y, p), "sign"),
    "log10": (lambda y, p, eps=1e-7: _log_loss(y, p) / np.log(10), "natural logarithm"),
    "positives only": (lambda y, p, eps=1e-7: float(-np.mean(np.asarray(y) * np.log(np.clip(p, eps, 1)))), "negative examples"),
    "no clipping": (lambda y, p, eps=1e-7: float(-np.mean(np.asarray(y) * np.log(p) + (1 - np.asarray(y)) * np.log(1 - np.asarray(p)))), "clip"),
    "array": (lambda y, p, eps=1e-7: np.clip(p, eps, 1 - eps), "one number"),
}


def test_l00_accepts_reference() -> None:
    result = l00.binary_log_loss(_log_loss)
    assert result.passed, result


@pytest.mark.parametrize("name", WRONG_LOG_LOSS)
def test_l00_rejects_wrong(name: str) -> None:
    fn, words = WRONG_LOG_LOSS[name]
    with np.errstate(divide="ignore", invalid="ignore"):
        result = l00.binary_log_loss(fn)
    assert result.status == "wrong" and words in result.message, result


def test_l00_not_attempted() -> None:
    assert l00.binary_log_loss(_not_written).status == "not attempted"


# -- lesson 01 ---------------------------------------------------------------------------------------------

def test_l01_temporal_split_accepts_reference() -> None:
    assert l01.temporal_split(temporal_split).passed


def _split_by_rows(frame, valid_days=3, test_days=3):
    n = len(frame)
    return frame.iloc[: int(0.7 * n)], frame.iloc[int(0.7 * n): int(0.85 * n)], frame.iloc[int(0.85 * n):]


def _split_dropping_rows(frame, valid_days=3, test_days=3):
    train, valid, test = temporal_split(frame, valid_days, test_days)
    return train.iloc[5:], valid, test


def _split_off_by_one(frame, valid_days=3, test_days=3):
    last = frame.day.max()
    return (frame[frame.day < last - test_days - valid_days], frame[(frame.day >= last - test_days - valid_days) & (frame.day < last - test_days)],
            frame[frame.day >= last - test_days])


@pytest.mark.parametrize("fn, words", [(_split_by_rows, "last 4 days"), (_split_dropping_rows, "exactly one part"),
                                       (_split_off_by_one, "test must be the last 4 days"),
                                       (lambda f, valid_days, test_days: (f, f), "three frames")])
def test_l01_temporal_split_rejects_wrong(fn, words: str) -> None:
    result = l01.temporal_split(fn)
    assert result.status == "wrong" and words in result.message, result


def test_l01_smoothed_rate() -> None:
    assert l01.smoothed_rate(smoothed_rate).passed
    raw = lambda train, key, label, prior_strength=20.0: train.groupby(key)[label].mean()  # noqa: E731
    assert "raw rates" in l01.smoothed_rate(raw).message
    half = lambda t, k, l, prior_strength=20.0: (t.groupby(k)[l].sum() + prior_strength * 0.5) / (t.groupby(k)[l].count() + prior_strength)  # noqa: E731,E741
    assert "GLOBAL" in l01.smoothed_rate(half).message
    listed = lambda t, k, l, prior_strength=20.0: list(smoothed_rate(t, k, l, prior_strength))  # noqa: E731,E741
    assert "Series" in l01.smoothed_rate(listed).message


def test_l01_make_dataset() -> None:
    import tensorflow as tf

    assert l01.make_dataset(make_dataset).passed
    no_batch = lambda frame, features, label, batch_size=32, shuffle=False, seed=0: tf.data.Dataset.from_tensor_slices(  # noqa: E731
        ({c: frame[c].to_numpy() for c in features}, frame[label].to_numpy()))
    assert "batch" in l01.make_dataset(no_batch).message
    tuple_x = lambda frame, features, label, batch_size=32, shuffle=False, seed=0: tf.data.Dataset.from_tensor_slices(  # noqa: E731
        (frame[list(features)].to_numpy(), frame[label].to_numpy())).batch(batch_size)
    assert "dict" in l01.make_dataset(tuple_x).message

    def unseeded(frame, features, label, batch_size=32, shuffle=False, seed=0):
        ds = make_dataset(frame, features, label, batch_size, shuffle=False)
        return ds.unbatch().shuffle(1000).batch(batch_size) if shuffle else ds

    assert "same seed" in l01.make_dataset(unseeded).message


def test_make_dataset_refuses_leaks_and_missing_labels() -> None:
    frame = pd.DataFrame({"a": [1, 2], "click": [0.0, np.nan]})
    with pytest.raises(ValueError, match="both a feature and a label"):
        make_dataset(frame, ["a", "click"], "click")
    with pytest.raises(ValueError, match="missing values"):
        make_dataset(frame, ["a"], "click")
    with pytest.raises(KeyError, match="no column"):
        make_dataset(frame, ["b"], "click")


def test_temporal_split_errors() -> None:
    frame = pd.DataFrame({"day": [0, 1, 2]})
    with pytest.raises(ValueError, match="too short"):
        temporal_split(frame, 2, 1)
    with pytest.raises(KeyError, match="no column"):
        temporal_split(frame.rename(columns={"day": "d"}))
