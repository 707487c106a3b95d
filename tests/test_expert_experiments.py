"""Lesson 05's plumbing: closed-form parameter counts against Keras, the matched shared-bottom width, models
trained side by side exactly as alone, save/load round trips of every model the lesson builds, gate summaries."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from utils import expert_experiments as ee
from utils.experts import gate_weights, mmoe_model, ple_model
from utils.models import Task, shared_bottom_model

TASKS = [Task("y1", "regression"), Task("y2", "regression")]


@pytest.mark.parametrize("d, e, units, tower, n_tasks, gates", [
    (100, 8, (16,), (8,), 2, "per_task"), (100, 8, (16,), (8,), 2, "one"), (9, 3, (6, 4), (5, 3), 3, "per_task"),
    (5, 2, (4,), (), 2, "one"),
])
def test_mmoe_count_matches_keras(d, e, units, tower, n_tasks, gates) -> None:
    tasks = [Task(f"t{i}", "regression") for i in range(n_tasks)]
    model = mmoe_model(d, tasks, num_experts=e, expert_units=units, tower=tower, gates=gates)
    assert ee.mmoe_parameters(d, e, units, tower, n_tasks, gates) == model.count_params()


@pytest.mark.parametrize("bottom, tower", [((126,), (8,)), ((10, 6), (4, 3)), ((7,), ())])
def test_shared_bottom_count_matches_keras(bottom, tower) -> None:
    model = shared_bottom_model(30, TASKS, bottom=bottom, tower=tower)
    assert ee.shared_bottom_parameters(30, bottom, tower) == model.count_params()


def test_matched_width_is_the_closest() -> None:
    target = ee.mmoe_parameters(100, 8, (16,), (8,))
    width = ee.matched_bottom_width(target, 100, (8,))
    gap = abs(ee.shared_bottom_parameters(100, [width], (8,)) - target)
    assert all(gap <= abs(ee.shared_bottom_parameters(100, [w], (8,)) - target) for w in range(1, 400))
    assert gap / target < 0.01
    with pytest.raises(ValueError, match="as few as"):
        ee.matched_bottom_width(10, 100, (8,))


def test_dense_parameters_and_bad_widths() -> None:
    assert ee.dense_parameters(3, [4, 2]) == 3 * 4 + 4 + 4 * 2 + 2
    with pytest.raises(ValueError, match="widths >= 1"):
        ee.dense_parameters(3, [0])
    with pytest.raises(ValueError, match="OMoE"):
        ee.mmoe_parameters(3, 2, (4,), gates="two")


def test_mix_experts_and_its_errors() -> None:
    experts = np.arange(12, dtype=float).reshape(1, 3, 4)
    assert np.allclose(ee.mix_experts(experts, np.array([[0.0, 0.0, 0.0]])), experts.mean(axis=1))
    assert np.allclose(ee.mix_experts(experts, np.array([[1000.0, 0.0, 0.0]])), experts[:, 0])
    with pytest.raises(ValueError, match=r"\(n, E, u\)"):
        ee.mix_experts(experts, np.zeros((1, 2)))


def test_weighted_column_mse() -> None:
    y, p = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[1.5, 2.0], [3.0, 2.0]])
    loss = ee.WeightedColumnMSE([2.0, 0.5])
    assert np.isclose(float(loss(y, p)), 2.0 * 0.125 + 0.5 * 2.0)
    assert np.isclose(float(ee.WeightedColumnMSE()(y, p)), 0.125 + 2.0)
    assert ee.WeightedColumnMSE.from_config(loss.get_config()).weights == [2.0, 0.5]


def _data(n: int = 256, d: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    return x, np.stack([np.sin(x[:, 0]), x[:, 1] * x[:, 2]], axis=1).astype("float32")


def test_side_by_side_trains_each_model_as_if_alone() -> None:
    """Summed losses of independent models: each model's weights move exactly as when it trains alone."""
    x, y = _data()
    keras.utils.set_random_seed(1)
    alone = mmoe_model(6, TASKS, num_experts=3, expert_units=(5,), tower=(4,), name="a")
    other = shared_bottom_model(6, TASKS, bottom=(7,), tower=(3,), name="b")
    start = [w.copy() for w in alone.get_weights()]
    combined = ee.side_by_side_model({"a": alone, "b": other}, 6)
    combined.compile(keras.optimizers.Adam(0.01), loss=ee.WeightedColumnMSE())
    y_other = y[:, ::-1] * 2
    combined.fit(x, np.concatenate([y, y_other], axis=1), batch_size=32, epochs=2, shuffle=False, verbose=0)
    together = [w.copy() for w in alone.get_weights()]

    solo = mmoe_model(6, TASKS, num_experts=3, expert_units=(5,), tower=(4,), name="solo")
    solo.set_weights(start)
    solo.compile(keras.optimizers.Adam(0.01), loss={"y1": "mse", "y2": "mse"})
    solo.fit(x, {"y1": y[:, :1], "y2": y[:, 1:]}, batch_size=32, epochs=2, shuffle=False, verbose=0)
    assert any(not np.allclose(a, b) for a, b in zip(start, together))  # it did train
    for a, b in zip(together, solo.get_weights()):
        assert np.allclose(a, b, atol=1e-5)


def test_train_side_by_side_curves_and_errors() -> None:
    x, y = _data(300)
    builders = {
        "sb": lambda n: shared_bottom_model(6, TASKS, bottom=(8,), tower=(4,), name=n),
        "mmoe": lambda n: mmoe_model(6, TASKS, num_experts=2, expert_units=(4,), tower=(4,), name=n),
    }
    labels = {"sb": y[:200], "mmoe": y[:200] * 2}
    tests = {"sb": y[200:], "mmoe": y[200:] * 2}
    result = ee.train_side_by_side(builders, x[:200], labels, x[200:], tests, epochs=3, batch_size=50,
                                   learning_rate=0.01, task_weights={"mmoe": [1.0, 0.5]}, seed=3)
    assert list(result.curves.index) == [1, 2, 3]
    assert result.final.shape == (2, 2) and list(result.final.columns) == ["y1", "y2"]
    pred = result.model.predict(x[200:], verbose=0)
    assert np.allclose(result.curves.iloc[-1].to_numpy(), ((pred - np.concatenate([tests["sb"], tests["mmoe"]], 1)) ** 2).mean(0),
                       rtol=1e-4)
    assert np.allclose(result.total().iloc[-1]["sb"], result.final.loc["sb"].sum())
    assert result.parameters["sb"] == ee.shared_bottom_parameters(6, [8], (4,))
    train_pred = result.model.predict(x[:200], verbose=0)
    want_train = ((train_pred - np.concatenate([labels["sb"], labels["mmoe"]], 1)) ** 2).mean(0)
    assert np.allclose(result.train_final.to_numpy().ravel(), want_train, rtol=1e-4)
    assert list(result.train_final.index) == ["sb", "mmoe"] and list(result.final.index) == ["sb", "mmoe"]
    again = ee.train_side_by_side(builders, x[:200], labels, x[200:], tests, epochs=3, batch_size=50,
                                  learning_rate=0.01, task_weights={"mmoe": [1.0, 0.5]}, seed=3)
    pd.testing.assert_frame_equal(result.curves, again.curves)  # same seed, same result
    with pytest.raises(KeyError, match="no labels"):
        ee.train_side_by_side(builders, x, {"sb": y}, x, {"sb": y}, epochs=1)
    with pytest.raises(ValueError, match="2 weights"):
        ee.train_side_by_side(builders, x, {"sb": y, "mmoe": y}, x, {"sb": y, "mmoe": y}, epochs=1,
                              task_weights={"sb": [1.0]})


def test_every_model_of_the_lesson_round_trips(tmp_path: Path) -> None:
    """Shared-bottom, OMoE, MMoE and PLE on a dense input, side by side: save, load, same predictions, same gates."""
    keras.utils.set_random_seed(0)
    models = {
        "sb": shared_bottom_model(6, TASKS, bottom=(8,), tower=(4,), name="sb"),
        "omoe": mmoe_model(6, TASKS, num_experts=3, expert_units=(4,), tower=(4,), gates="one", name="omoe"),
        "mmoe": mmoe_model(6, TASKS, num_experts=3, expert_units=(4,), tower=(4,), name="mmoe"),
        "ple": ple_model(6, TASKS, levels=1, task_experts=1, shared_experts=2, expert_units=(4,), tower=(4,), name="ple"),
    }
    x, _ = _data(20)
    for name, model in models.items():
        path = tmp_path / f"{name}.keras"
        model.save(path)
        loaded = keras.saving.load_model(path)
        want, got = model.predict(x, verbose=0), loaded.predict(x, verbose=0)
        assert all(np.allclose(want[t], got[t], atol=1e-6) for t in ("y1", "y2")), name
        if name != "sb":
            g_want, g_got = gate_weights(model, x), gate_weights(loaded, x)
            assert all(np.allclose(g_want[t], g_got[t], atol=1e-6) for t in ("y1", "y2")), name
    combined = ee.side_by_side_model(models, 6)
    combined.compile(keras.optimizers.Adam(), loss=ee.WeightedColumnMSE([1.0] * 8))
    combined.save(tmp_path / "side_by_side.keras")
    loaded = keras.saving.load_model(tmp_path / "side_by_side.keras")
    assert np.allclose(combined.predict(x, verbose=0), loaded.predict(x, verbose=0), atol=1e-6)
    assert loaded.loss.weights == [1.0] * 8


def test_gate_usage_and_distance() -> None:
    same = {"click": np.array([[0.5, 0.5], [1.0, 0.0]]), "buy": np.array([[0.5, 0.5], [1.0, 0.0]])}
    apart = {"click": np.array([[1.0, 0.0], [1.0, 0.0]]), "buy": np.array([[0.0, 1.0], [0.0, 1.0]])}
    assert ee.gate_distance(same) == 0.0 and ee.gate_distance(apart) == 1.0
    assert np.isclose(ee.gate_distance({"a": np.array([[0.7, 0.3]]), "b": np.array([[0.4, 0.6]])}), 0.3)
    usage = ee.gate_usage(same)
    assert list(usage.index) == ["click", "buy"] and list(usage.columns) == ["expert 0", "expert 1"]
    assert np.allclose(usage.loc["click"], [0.75, 0.25])
    with pytest.raises(KeyError, match="no gates for task"):
        ee.gate_distance(same, "click", "cart")
    with pytest.raises(ValueError, match="one \\(n, n_experts\\) shape"):
        ee.gate_usage({"a": np.ones((2, 2)), "b": np.ones((3, 2))})
    with pytest.raises(ValueError, match="no gates given"):
        ee.gate_usage({})


def test_several_data_sets_in_one_fit() -> None:
    """Each model reads the input it is given: two data sets (two repeated runs) trained in one fit."""
    (x1, y1), (x2, y2) = _data(120, seed=1), _data(120, seed=2)
    builders = {k: (lambda n: shared_bottom_model(6, TASKS, bottom=(4,), tower=(), name=n)) for k in ("a", "b")}
    result = ee.train_side_by_side(builders, {"r1": x1[:100], "r2": x2[:100]}, {"a": y1[:100], "b": y2[:100]},
                                   {"r1": x1[100:], "r2": x2[100:]}, {"a": y1[100:], "b": y2[100:]}, epochs=2,
                                   batch_size=50, inputs={"a": "r1", "b": "r2"})
    pred = result.model.predict({"r1": x1[100:], "r2": x2[100:]}, verbose=0)
    assert np.allclose(result.final.loc["b"].to_numpy(), ((pred[:, 2:] - y2[100:]) ** 2).mean(0), rtol=1e-4)
    with pytest.raises(ValueError, match="say which one"):
        ee.train_side_by_side(builders, {"r1": x1, "r2": x2}, {"a": y1, "b": y2}, {"r1": x1, "r2": x2},
                              {"a": y1, "b": y2}, epochs=1)
    with pytest.raises(ValueError, match="unknown input"):
        ee.side_by_side_model({"a": builders["a"]("a")}, {"r1": 6}, {"a": "r9"})
    with pytest.raises(ValueError, match="same number of rows"):
        ee.train_side_by_side(builders, {"r1": x1, "r2": x2[:50]}, {"a": y1, "b": y2}, {"r1": x1, "r2": x2},
                              {"a": y1, "b": y2}, epochs=1, inputs={"a": "r1", "b": "r2"})


def test_same_start_makes_identical_twins() -> None:
    """Two models of one architecture, same labels, same start: trained side by side they stay identical."""
    x, y = _data(200)
    builders = {k: (lambda n: mmoe_model(6, TASKS, num_experts=2, expert_units=(4,), tower=(3,), name=n)) for k in "ab"}
    labels = {"a": y[:150], "b": y[:150]}
    tests = {"a": y[150:], "b": y[150:]}
    twins = ee.train_side_by_side(builders, x[:150], labels, x[150:], tests, epochs=2, batch_size=50,
                                  same_start={"b": "a"})
    for wa, wb in zip(twins.models["a"].get_weights(), twins.models["b"].get_weights()):
        assert np.allclose(wa, wb, atol=1e-6)
    strangers = ee.train_side_by_side(builders, x[:150], labels, x[150:], tests, epochs=2, batch_size=50)
    assert not np.allclose(strangers.models["a"].get_weights()[0], strangers.models["b"].get_weights()[0])
    with pytest.raises(KeyError, match="same_start"):
        ee.train_side_by_side(builders, x[:150], labels, x[150:], tests, epochs=1, same_start={"b": "c"})
    mixed = {"a": builders["a"], "b": lambda n: shared_bottom_model(6, TASKS, bottom=(4,), tower=(3,), name=n)}
    with pytest.raises(ValueError, match="different architectures"):
        ee.train_side_by_side(mixed, x[:150], labels, x[150:], tests, epochs=1, same_start={"b": "a"})


def test_synthetic_runs_pair_the_settings_of_a_run() -> None:
    x, y = ee.synthetic_runs(runs=3, ps=(0.5, 1.0), n=200, d=10, m=3, seed=4)
    assert x.shape == (200, 3, 10) and y.shape == (200, 3, 2, 2)
    assert not np.allclose(x[:, 0], x[:, 1])  # every run has its own examples
    # at p = 1 the two tasks are one function of x (up to their noise); at p = 0.5 they are not
    assert np.corrcoef(y[:, 0, 1, 0], y[:, 0, 1, 1])[0, 1] > 0.95
    assert np.corrcoef(y[:, 0, 0, 0], y[:, 0, 0, 1])[0, 1] < 0.9
    np.testing.assert_array_equal(ee.synthetic_runs(3, (0.5, 1.0), 200, d=10, m=3, seed=4)[1], y)  # seeded


def test_repeated_runs_give_one_row_per_model_p_and_run() -> None:
    from utils import stacked_models as sm

    x, y = ee.synthetic_runs(runs=2, ps=(0.5, 1.0), n=300, d=6, m=2, seed=1)
    builders = {"sb": lambda: sm.stacked_shared_bottom(2, 2, 6, bottom=4, seed=1),
                "mmoe": lambda: sm.stacked_mmoe(2, 2, 6, num_experts=2, expert_units=3, tower=2, seed=1)}
    result = ee.repeated_runs(builders, x, y, n_train=200, ps=(0.5, 1.0), epochs=2, batch_size=50)
    frame = result.frame
    assert len(frame) == 8 and set(frame["model"]) == {"sb", "mmoe"}
    assert (frame["best_test_loss"] <= frame["test_loss"]).all() and frame["best_epoch"].between(1, 2).all()
    assert result.curves.shape == (2, 8) and set(result.seconds) == {"sb", "mmoe"}
    np.testing.assert_allclose(result.curves.iloc[-1].to_numpy(),
                               frame.set_index(["model", "p", "run"]).loc[result.curves.columns, "test_loss"])
    with pytest.raises(ValueError, match="settings"):
        ee.repeated_runs(builders, x, y, n_train=200, ps=(0.5,), epochs=1)
    with pytest.raises(ValueError, match="n_train"):
        ee.repeated_runs(builders, x, y, n_train=300, ps=(0.5, 1.0), epochs=1)


def test_paired_change_and_spread() -> None:
    frame = pd.DataFrame({"model": ["a"] * 4 + ["b"] * 4, "run": [0, 1] * 4, "p": [1.0, 1.0, 0.5, 0.5] * 2,
                          "test_loss": [1.0, 2.0, 1.5, 2.1, 1.0, 1.0, 0.9, 1.2]})
    change = ee.paired_change(frame, "test_loss", 1.0, 0.5)
    np.testing.assert_allclose(change.loc["a", "change"], [0.5, 0.1])
    np.testing.assert_allclose(change.loc["b", "change"], [-0.1, 0.2])
    table = ee.spread(change["change"].groupby("model"))
    assert table.loc["a", "median"] == pytest.approx(0.3) and table.loc["a", "runs"] == 2
    assert table.loc["a", "se"] == pytest.approx(np.std([0.5, 0.1], ddof=1) / np.sqrt(2))
    assert ee.spread(pd.Series([1.0, 2.0, 3.0]))["q25"] == pytest.approx(1.5)
    with pytest.raises(KeyError, match="0.9"):
        ee.paired_change(frame, "test_loss", 1.0, 0.9)
    with pytest.raises(KeyError, match="column"):
        ee.paired_change(frame.drop(columns="run"), "test_loss", 1.0, 0.5)
