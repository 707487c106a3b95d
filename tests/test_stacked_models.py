"""Stacked models (lesson 05's repeated synthetic runs): each stacked model computes what its own network would,
trains as it would alone, starts like the other settings of its run, and survives a save -> load -> predict."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from utils import stacked_models as sm


def _data(n: int, runs: int, settings: int, d: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, runs, d)).astype("float32")
    y = np.sin(x[..., None, :2].sum(-1, keepdims=True) * np.arange(1, settings + 1)[:, None])
    return x, np.repeat(y, 2, axis=-1).astype("float32") + 0.1 * rng.standard_normal((n, runs, settings, 2)).astype("float32")


def _relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0)


def test_mmoe_forward_pass_matches_numpy() -> None:
    runs, settings, d, e, u = 2, 3, 6, 4, 5
    net = sm.stacked_mmoe(runs, settings, d, num_experts=e, expert_units=u, tower=3, seed=1)
    x, _ = _data(7, runs, settings, d)
    w = {v.path: keras.ops.convert_to_numpy(v) for v in net.weights}
    out = net.predict(x, verbose=0)
    assert out.shape == (7, runs, settings, 2)
    for r in range(runs):
        for s in range(settings):
            m = r * settings + s
            experts = _relu(x[:, r] @ w["mixture/experts/kernel"][m] + w["mixture/experts/bias"][m])
            logits = (x[:, r] @ w["mixture/gates/kernel"][m] + w["mixture/gates/bias"][m])
            for t in range(2):
                g = np.exp(logits[:, t * e:(t + 1) * e])
                g /= g.sum(1, keepdims=True)
                mixed = np.einsum("be,beu->bu", g, experts.reshape(7, e, u))
                h = _relu(mixed @ w[f"tower_{t}/kernel"][m] + w[f"tower_{t}/bias"][m])
                expected = h @ w[f"head_{t}/kernel"][m] + w[f"head_{t}/bias"][m]
                np.testing.assert_allclose(out[:, r, s, t], expected[:, 0], rtol=1e-4, atol=1e-5)


def test_settings_of_a_run_start_alike_and_runs_differ() -> None:
    net = sm.stacked_shared_bottom(runs=3, settings=2, d=6, bottom=8, seed=2)
    kernel = keras.ops.convert_to_numpy(net.get_layer("bottom").kernel)  # (runs * settings, d, units)
    np.testing.assert_array_equal(kernel[0], kernel[1])
    np.testing.assert_array_equal(kernel[4], kernel[5])
    assert not np.allclose(kernel[0], kernel[2])
    limit = np.sqrt(6 / (6 + 8))
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.8 * limit  # Glorot-uniform, per model


@pytest.mark.parametrize("gates", ["per_task", "one"])
def test_each_stacked_model_trains_as_it_would_alone(gates: str) -> None:
    x, y = _data(300, runs=2, settings=2)
    both = sm.stacked_mmoe(2, 2, 6, num_experts=3, expert_units=4, tower=3, gates=gates, seed=3)
    alone = sm.stacked_mmoe(1, 2, 6, num_experts=3, expert_units=4, tower=3, gates=gates, seed=4)
    alone.set_weights([w[2:] for w in both.get_weights()])  # run 1's two models
    curves_both, train_both = sm.train_stacked(both, x, y, x[:50], y[:50], epochs=3, batch_size=32, seed=5)
    curves_alone, train_alone = sm.train_stacked(alone, x[:, 1:], y[:, 1:], x[:50, 1:], y[:50, 1:], epochs=3,
                                                 batch_size=32, seed=5)
    for a, b in zip(both.get_weights(), alone.get_weights(), strict=True):
        np.testing.assert_allclose(a[2:], b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(curves_both[:, 1:], curves_alone, rtol=1e-4)
    assert curves_both.shape == (3, 2, 2, 2) and train_both.shape == (2, 2, 2)
    assert curves_both[-1].mean() < curves_both[0].mean()  # it learns


def test_round_trip(tmp_path: Path) -> None:
    net = sm.stacked_mmoe(2, 2, 6, num_experts=3, expert_units=4, tower=3, gates="one", seed=6)
    x, y = _data(64, 2, 2)
    sm.train_stacked(net, x, y, x, y, epochs=1, batch_size=32)
    path = tmp_path / "stacked.keras"
    net.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), net.predict(x, verbose=0), rtol=1e-6)


def test_bad_input_is_refused() -> None:
    net = sm.stacked_shared_bottom(2, 2, 6, bottom=4)
    x, y = _data(20, 2, 2)
    with pytest.raises(ValueError, match="y_train has shape"):
        sm.train_stacked(net, x, y[:, :1], x, y, epochs=1)
    with pytest.raises(ValueError, match="NaN"):
        sm.train_stacked(net, x, np.full_like(y, np.nan), x, y, epochs=1)
    with pytest.raises(ValueError, match="gates"):
        sm.stacked_mmoe(2, 2, 6, gates="two")


def test_failed_runs_rule() -> None:
    losses = {"big": [0.04, 0.05, 0.045, 0.13, 0.05], "small": [0.09, 0.1, 0.085, 0.11, 0.095]}
    frame = pd.DataFrame([{"model": m, "p": 0.5, "train_loss": v} for m, vs in losses.items() for v in vs])
    # the small model fits less in every run: not a failure; the big model's one run at 2.6x its median is
    assert sm.failed_runs(frame).tolist() == [False, False, False, True, False] + [False] * 5
    with pytest.raises(KeyError, match="train_loss"):
        sm.failed_runs(frame.rename(columns={"train_loss": "loss"}))
    with pytest.raises(ValueError, match="factor"):
        sm.failed_runs(frame, factor=0.5)


def test_gate_weights_of_stacked_mmoe_and_omoe() -> None:
    x = np.random.default_rng(0).normal(size=(7, 2, 6)).astype("float32")
    mmoe = sm.stacked_mmoe(2, 3, 6, num_experts=4, expert_units=3, tower=2, seed=1)
    gates = sm.gate_weights(mmoe, x, batch_size=3)
    assert gates.shape == (7, 2, 3, 2, 4)
    np.testing.assert_allclose(gates.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(gates[:, :, 0], gates[:, :, 1], rtol=1e-6)  # one run's settings start alike
    assert sm.gate_weights(sm.stacked_mmoe(2, 3, 6, num_experts=4, expert_units=3, gates="one"), x).shape == (7, 2, 3, 1, 4)
    with pytest.raises(ValueError, match="StackedMixture"):
        sm.gate_weights(sm.stacked_shared_bottom(2, 3, 6, bottom=4), x)
