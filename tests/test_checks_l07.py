"""Lesson 07's self-checks accept the reference answers and reject the usual mistakes."""

from __future__ import annotations

import time

import numpy as np
import pytest

from utils import transfer
from utils.checks import l07


def _not_written(*args, **kwargs):
    raise NotImplementedError


# -- 07.1 ----------------------------------------------------------------------------------------------------


def _freeze_without_compile(model):
    transfer.freeze(model, "embeddings", "bottom")
    return model


def _freeze_everything(model):
    model.trainable = False
    return transfer.recompile(model)


def _freeze_dense_only(model):
    transfer.freeze(model, "bottom")
    return transfer.recompile(model)


def _freeze_heads_too(model):
    transfer.freeze(model, "embeddings", "bottom", "heads")
    return transfer.recompile(model)


def _freeze_by_hand(model):
    for layer in model.layers:
        if layer.name.endswith("_embedding") or layer.name.startswith("bottom_"):
            layer.trainable = False
    model.compile(optimizer="adam", loss=model.loss)
    return model


def _freeze_old_optimizer(model):
    transfer.freeze(model, "embeddings", "bottom")
    model.compile(optimizer=model.optimizer, loss=model.loss)
    return model


def _freeze_optimizer_from_config(model):
    import keras

    transfer.freeze(model, "embeddings", "bottom")
    fresh = keras.optimizers.deserialize(keras.optimizers.serialize(model.optimizer))  # same settings, no state
    model.compile(optimizer=fresh, loss=model.loss)


@pytest.mark.parametrize("fn, words", [
    (_freeze_without_compile, "compiled again"), (_freeze_everything, "every layer"),
    (_freeze_dense_only, "embeddings"), (_freeze_heads_too, "target data should train"),
    (_freeze_old_optimizer, "fresh optimizer"), (_freeze_old_optimizer, "moment estimates"),
])
def test_freeze_rejects(fn, words: str) -> None:
    result = l07.freeze_bottom(fn)
    assert result.status == "wrong" and words in result.message, result


def test_freeze_accepts_reference_and_by_hand() -> None:
    assert l07.freeze_bottom(transfer.freeze_bottom).passed
    assert l07.freeze_bottom(_freeze_by_hand).passed
    assert l07.freeze_bottom(_freeze_optimizer_from_config).passed  # returns nothing: frozen in place
    assert l07.freeze_bottom(_not_written).status == "not attempted"


# -- 07.2 ----------------------------------------------------------------------------------------------------


def _rates_reversed(base, order, factor):
    return transfer.discriminative_rates(base, list(reversed(order)), factor)


def _rates_multiplied(base, order, factor):
    return {g: base * factor**i for i, g in enumerate(order)}


def _rates_off_by_one(base, order, factor):
    return {g: base / factor ** (i + 1) for i, g in enumerate(order)}


def _rates_linear(base, order, factor):
    return {g: base / (factor * i) if i else base for i, g in enumerate(order)}


def _rates_fixed(base, order, factor):
    return transfer.discriminative_rates(2e-3, ["heads", "towers", "bottom", "embeddings"], 2.6)


@pytest.mark.parametrize("fn, words", [
    (_rates_reversed, "reversed"), (_rates_multiplied, "do not multiply"), (_rates_off_by_one, "keeps the base"),
    (_rates_linear, "factor**depth"), (_rates_fixed, "you are given"),
    (lambda base, order, factor: {g: r * (1 + 1e-4)
                                  for g, r in transfer.discriminative_rates(base, order, factor).items()},
     "relative tolerance"),
])
def test_rates_rejects(fn, words: str) -> None:
    result = l07.discriminative_rates(fn)
    assert result.status == "wrong" and words in result.message, result


def _rates_float32(base, order, factor):
    return {g: np.float32(base) / np.float32(factor) ** np.float32(i) for i, g in enumerate(order)}


def _rates_loop(base, order, factor):
    rates, rate = {}, base
    for group in order:
        rates[group] = rate
        rate = rate / factor
    return rates


def test_rates_accepts() -> None:
    assert l07.discriminative_rates(transfer.discriminative_rates).passed
    assert l07.discriminative_rates(_rates_float32).passed
    assert l07.discriminative_rates(_rates_loop).passed
    assert l07.discriminative_rates(_not_written).status == "not attempted"


# -- 07.3 ----------------------------------------------------------------------------------------------------


def _map_swapped(source, target, l2):
    return transfer.fit_embedding_map(target, source, l2)


def _map_no_intercept(source, target, l2):
    w = np.linalg.solve(source.T @ source + l2 * np.eye(source.shape[1]), source.T @ target)
    return w, np.zeros(target.shape[1])


def _map_no_ridge(source, target, l2):
    return transfer.fit_embedding_map(source, target, 0.0)


def _map_penalised_intercept(source, target, l2):
    ones = np.c_[source, np.ones(len(source))]
    w = np.linalg.solve(ones.T @ ones + l2 * np.eye(ones.shape[1]), ones.T @ target)
    return w[:-1], w[-1]


def _map_transposed(source, target, l2):
    w, b = transfer.fit_embedding_map(source, target, l2)
    return w.T, b


def _map_scaled_penalty(source, target, l2):
    return transfer.fit_embedding_map(source, target, l2 * len(source))


def _map_float32(source, target, l2):
    s, t = source.astype(np.float32), target.astype(np.float32)
    s_mean, t_mean = s.mean(axis=0), t.mean(axis=0)
    w = np.linalg.solve((s - s_mean).T @ (s - s_mean) + np.float32(l2) * np.eye(s.shape[1], dtype=np.float32),
                        (s - s_mean).T @ (t - t_mean))
    return w, t_mean - s_mean @ w


def _map_unpenalised_ones_column(source, target, l2):
    ones = np.c_[source, np.ones(len(source))]
    penalty = l2 * np.eye(ones.shape[1])
    penalty[-1, -1] = 0.0  # the intercept is not penalised
    w = np.linalg.solve(ones.T @ ones + penalty, ones.T @ target)
    return w[:-1], w[-1]


def _map_sklearn(source, target, l2):
    from sklearn.linear_model import Ridge

    fit = Ridge(alpha=l2).fit(source, target)
    return fit.coef_.T, fit.intercept_


@pytest.mark.parametrize("fn, words", [
    (_map_swapped, "wrong orientation"), (_map_transposed, "(d_source, d_target) = (4, 3)"),
    (_map_no_intercept, "intercept"), (_map_no_ridge, "l2 is not used"),
    (_map_penalised_intercept, "penalised"), (_map_scaled_penalty, "number of users"),
    (lambda s, t, l2: tuple(a * (1 + 1e-4) for a in transfer.fit_embedding_map(s, t, l2)), "relative tolerance"),
])
def test_map_rejects(fn, words: str) -> None:
    result = l07.fit_embedding_map(fn)
    assert result.status == "wrong" and words in result.message, result


def test_map_accepts() -> None:
    assert l07.fit_embedding_map(transfer.fit_embedding_map).passed
    for variant in (_map_float32, _map_unpenalised_ones_column, _map_sklearn):
        result = l07.fit_embedding_map(variant)
        assert result.passed, (variant.__name__, result)
    assert l07.fit_embedding_map(_not_written).status == "not attempted"


def test_checks_are_fast_and_deterministic() -> None:
    for check, answer in ((l07.freeze_bottom, transfer.freeze_bottom),
                          (l07.discriminative_rates, transfer.discriminative_rates),
                          (l07.fit_embedding_map, transfer.fit_embedding_map)):
        check(answer)  # warm up imports
        start = time.perf_counter()
        first = repr(check(answer))
        assert time.perf_counter() - start < 1.0
        assert repr(check(answer)) == first
