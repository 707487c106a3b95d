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


@pytest.mark.parametrize("fn, words", [
    (_freeze_without_compile, "compiled again"), (_freeze_everything, "every layer"),
    (_freeze_dense_only, "embeddings"), (_freeze_heads_too, "target data should train"),
])
def test_freeze_rejects(fn, words: str) -> None:
    result = l07.freeze_bottom(fn)
    assert result.status == "wrong" and words in result.message, result


def test_freeze_accepts_reference_and_by_hand() -> None:
    assert l07.freeze_bottom(transfer.freeze_bottom).passed
    assert l07.freeze_bottom(_freeze_by_hand).passed
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
])
def test_rates_rejects(fn, words: str) -> None:
    result = l07.discriminative_rates(fn)
    assert result.status == "wrong" and words in result.message, result


def test_rates_accepts() -> None:
    assert l07.discriminative_rates(transfer.discriminative_rates).passed
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


@pytest.mark.parametrize("fn, words", [
    (_map_swapped, "maps target to source"), (_map_no_intercept, "intercept"), (_map_no_ridge, "l2 is not used"),
    (_map_penalised_intercept, "penalised"),
])
def test_map_rejects(fn, words: str) -> None:
    result = l07.fit_embedding_map(fn)
    assert result.status == "wrong" and words in result.message, result


def test_map_accepts() -> None:
    assert l07.fit_embedding_map(transfer.fit_embedding_map).passed
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
