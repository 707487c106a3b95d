"""Transfer helpers: groups and freezing, per-group learning rates, gradual unfreezing, weight transfer, the joint
market model, the runner and the sweep, and the small functions that read the results."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest

from utils import transfer
from utils.models import Task, compile_model, feature_arrays, feature_spec, make_multitask_dataset, shared_bottom_model
from utils.shopsim import generate
from utils.splits import temporal_split
from utils.transfer import DiscriminativeAdam, GradualUnfreezing, Strategy, TransferRunner

TASKS = [Task("click", "binary"), Task("purchase", "binary")]
GROUPS = {"users": r"^user_id_embedding$", **transfer.DEFAULT_GROUPS}


@pytest.fixture(scope="module")
def shop():
    data = generate(scale="tiny", seed=3, target_share=0.3, user_overlap=0.5)
    log = data.with_features()
    log["market"] = transfer.market_codes(log)
    train, valid, test = temporal_split(log, valid_days=3, test_days=3)
    spec = feature_spec(train, categorical=["user_id", "item_id", "category_id", "position"], log_numeric=["price"],
                        embedding_dim=4)
    return {"train": train, "valid": valid, "test": test, "spec": spec}


def _build(spec):
    return shared_bottom_model(spec, TASKS, bottom=(8,), tower=(4,))


def _moved(model, before):
    return {w.path.split("/")[0]: float(np.abs(w.numpy() - b).max()) for w, b in zip(model.weights, before)}


# -- groups and freezing --------------------------------------------------------------------------------------


def test_groups_cover_the_course_model(shop) -> None:
    model = _build(shop["spec"])
    groups = transfer.layer_groups(model, GROUPS)
    assert list(groups) == ["users", "embeddings", "bottom", "towers", "heads"]
    assert groups["users"] == ["user_id_embedding"]
    assert "item_id_embedding" in groups["embeddings"] and "user_id_embedding" not in groups["embeddings"]
    assert groups["heads"] == ["head_click", "head_purchase"]
    assert transfer.group_of("tower_click_dense_1") == "towers"
    assert transfer.group_of("features") is None
    summary = transfer.trainable_summary(model, GROUPS)
    assert summary["params"].sum() == sum(int(np.prod(w.shape)) for w in model.weights if w.trainable)


def test_select_unknown_name_lists_the_choices(shop) -> None:
    model = _build(shop["spec"])
    with pytest.raises(KeyError, match="neither a layer group nor a layer.*groups here are"):
        transfer.select_layers(model, ["bottoms"])
    with pytest.raises(ValueError, match="invalid regular expression"):
        transfer.layer_groups(model, {"bad": "("})
    assert [layer.name for layer in transfer.select_layers(model, ["head_click"])] == ["head_click"]


def test_freeze_needs_a_recompile_and_then_holds(shop) -> None:
    model = compile_model(_build(shop["spec"]), TASKS)
    data = make_multitask_dataset(shop["train"], shop["spec"], TASKS, 256, shuffle=True, seed=0)
    model.fit(data, epochs=1, steps_per_epoch=2, verbose=0)
    frozen = transfer.freeze(model, "embeddings", "bottom", "users", groups=GROUPS)
    assert "bottom_dense_1" in frozen and "user_id_embedding" in frozen
    before = [w.numpy().copy() for w in model.weights]
    model.fit(data, epochs=1, steps_per_epoch=2, verbose=0)
    assert _moved(model, before)["bottom_dense_1"] > 0  # the old training step ignores the new flags
    transfer.recompile(model)
    before = [w.numpy().copy() for w in model.weights]
    model.fit(data, epochs=1, steps_per_epoch=2, verbose=0)
    moved = _moved(model, before)
    assert moved["bottom_dense_1"] == 0 and moved["item_id_embedding"] == 0 and moved["head_click"] > 0
    transfer.unfreeze(model, "bottom", groups=GROUPS)
    assert model.get_layer("bottom_dense_1").trainable


def test_recompile_refuses_an_uncompiled_model(shop) -> None:
    with pytest.raises(ValueError, match="never compiled"):
        transfer.recompile(_build(shop["spec"]))


def test_freeze_bottom_reference(shop) -> None:
    model = compile_model(_build(shop["spec"]), TASKS)
    transfer.freeze_bottom(model)
    trainable = {layer.name for layer in model.layers if layer.weights and layer.trainable}
    assert trainable == {"tower_click_dense_1", "tower_purchase_dense_1", "head_click", "head_purchase"}


# -- per-group learning rates ---------------------------------------------------------------------------------


def _one_step(optimizer, groups_vars, grads):
    optimizer.apply(grads, groups_vars)
    return [v.numpy() for v in groups_vars]


def test_discriminative_adam_scales_the_step_not_the_gradient() -> None:
    layer_a = keras.layers.Dense(2, name="bottom_dense_1")
    layer_b = keras.layers.Dense(2, name="head_click")
    layer_a.build((None, 3))
    layer_b.build((None, 2))
    variables = [layer_a.kernel, layer_b.kernel]
    start = [v.numpy().copy() for v in variables]
    grads = [np.full((3, 2), 0.5, "float32"), np.full((2, 2), -3.0, "float32")]
    optimizer = DiscriminativeAdam(1e-2, multipliers={"bottom": 0.1})
    after = _one_step(optimizer, variables, [keras.ops.convert_to_tensor(g) for g in grads])
    # Adam's first step is lr * sign(gradient) (up to epsilon): the multiplier scales it.
    np.testing.assert_allclose(after[0] - start[0], -1e-3, rtol=1e-4)
    np.testing.assert_allclose(after[1] - start[1], 1e-2, rtol=1e-4)
    optimizer.set_multiplier("bottom", 0.0)
    held = variables[0].numpy().copy()
    optimizer.apply([keras.ops.convert_to_tensor(g) for g in grads], variables)
    np.testing.assert_array_equal(variables[0].numpy(), held)
    assert optimizer.multipliers()["bottom"] == 0.0 and optimizer.multiplier("heads") == 1.0
    optimizer.reset()
    assert int(optimizer.iterations.numpy()) == 0


def test_discriminative_adam_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="unknown group"):
        DiscriminativeAdam(1e-3, multipliers={"bottoms": 0.5})
    with pytest.raises(ValueError, match=">= 0"):
        DiscriminativeAdam(1e-3, multipliers={"bottom": -1.0})
    with pytest.raises(KeyError, match="unknown group"):
        DiscriminativeAdam(1e-3).set_multiplier("tower", 0.5)


def test_discriminative_adam_config_round_trip() -> None:
    optimizer = DiscriminativeAdam(3e-4, multipliers={"embeddings": 0.2}, groups=GROUPS)
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(clone, DiscriminativeAdam)
    assert clone.initial_multipliers == optimizer.initial_multipliers and clone.groups == GROUPS
    assert np.isclose(float(clone.learning_rate.numpy()), 3e-4)


def test_discriminative_rates() -> None:
    rates = transfer.discriminative_rates(1e-3, ["heads", "towers", "bottom"], 2.0)
    assert rates == {"heads": 1e-3, "towers": 5e-4, "bottom": 2.5e-4}
    with pytest.raises(ValueError, match="distinct"):
        transfer.discriminative_rates(1e-3, ["a", "a"])


def test_gradual_unfreezing_opens_groups_top_down(shop) -> None:
    model = _build(shop["spec"])
    model.compile(optimizer=DiscriminativeAdam(1e-3, multipliers={"bottom": 0.5}, groups=GROUPS),
                  loss={t.name: t.loss for t in TASKS})
    data = make_multitask_dataset(shop["train"], shop["spec"], TASKS, 256, shuffle=True, seed=0).repeat()
    unfreezing = GradualUnfreezing(["heads", "towers", ("bottom", "embeddings")], steps_per_stage=2)
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(model.optimizer.multipliers())

    before = [w.numpy().copy() for w in model.weights]
    model.fit(data, epochs=1, steps_per_epoch=2, verbose=0, callbacks=[unfreezing, Spy()])
    moved = _moved(model, before)
    assert moved["bottom_dense_1"] == 0 and moved["tower_click_dense_1"] == 0 and moved["head_click"] > 0
    assert seen[0]["bottom"] == 0 and seen[0]["towers"] == 0 and seen[0]["heads"] == 1
    model.fit(data, epochs=1, steps_per_epoch=6, verbose=0, callbacks=[unfreezing, Spy()])
    assert unfreezing.stages == [["heads"], ["heads", "towers"], ["heads", "towers", "bottom", "embeddings"]]
    assert seen[-1]["bottom"] == 0.5  # opened at its own rate
    assert model.optimizer.multiplier("bottom") == 0.5  # and left as it was found
    plain = _build(shop["spec"])
    plain.compile(optimizer="adam", loss={t.name: t.loss for t in TASKS})
    with pytest.raises(TypeError, match="DiscriminativeAdam"):
        plain.fit(data, epochs=1, steps_per_epoch=1, verbose=0, callbacks=[GradualUnfreezing()])


# -- weights, the joint model ---------------------------------------------------------------------------------


def test_initial_weights_are_seeded(shop) -> None:
    model = _build(shop["spec"])
    a, b, c = (transfer.initial_weights(model, s) for s in (1, 1, 2))
    paths = [w.path for w in model.weights]
    for x, y, path in zip(a, b, paths):
        np.testing.assert_array_equal(x, y)
    kernel = paths.index("bottom_dense_1/kernel")
    assert not np.array_equal(a[kernel], c[kernel])
    assert [x.shape for x in a] == [tuple(w.shape) for w in model.weights]
    table = a[paths.index("item_id_embedding/embeddings")]
    assert np.abs(table).max() <= 0.05 and table.std() > 0.01  # Keras's uniform(-0.05, 0.05) for embeddings


def test_copy_weights_renames_and_checks_shapes(shop) -> None:
    source = _build(shop["spec"])
    joint = transfer.joint_market_model(shop["spec"], TASKS, bottom=(8,), tower=(4,))
    copied = transfer.copy_weights(source, joint, rename=transfer.market_free_name)
    assert "tower_click_target_dense_1" in copied and "head_purchase_source" in copied
    np.testing.assert_array_equal(joint.get_layer("head_click_target").get_weights()[0],
                                  source.get_layer("head_click").get_weights()[0])
    wider = shared_bottom_model(shop["spec"], TASKS, bottom=(16,), tower=(4,))
    with pytest.raises(ValueError, match="bottom_dense_1.*shapes"):
        transfer.copy_weights(source, wider)
    assert transfer.market_free_name("tower_click_target_dense_2") == "tower_click_dense_2"
    assert transfer.market_free_name("head_click_source") == "head_click"


def test_joint_model_switches_by_market_and_round_trips(shop, tmp_path) -> None:
    spec = transfer.with_market(shop["spec"])
    joint = transfer.joint_market_model(shop["spec"], TASKS, bottom=(8,), tower=(4,))
    x = feature_arrays(shop["test"].iloc[:64], spec)
    x["market"] = np.arange(64) % 2
    out = joint.predict(x, verbose=0)
    towers = {m: keras.Model(joint.inputs, joint.get_layer(f"head_click_{m}").output) for m in transfer.MARKETS}
    per_market = {m: towers[m].predict(x, verbose=0).ravel() for m in transfer.MARKETS}
    expected = np.where(x["market"] == 1, per_market["target"], per_market["source"])
    np.testing.assert_allclose(np.asarray(out["click"]).ravel(), expected, rtol=1e-6)
    joint.compile(optimizer=DiscriminativeAdam(1e-3, multipliers={"embeddings": 0.1}),
                  loss={t.name: t.loss for t in TASKS})
    path = tmp_path / "joint.keras"
    joint.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded.predict(x, verbose=0)["click"]), np.asarray(out["click"]), rtol=1e-6)
    assert isinstance(loaded.optimizer, DiscriminativeAdam) and loaded.optimizer.initial_multipliers["embeddings"] == 0.1


def test_warm_started_joint_model_equals_its_source(shop) -> None:
    source = _build(shop["spec"])
    runner = TransferRunner(lambda: transfer.joint_market_model(shop["spec"], TASKS, bottom=(8,), tower=(4,)),
                            transfer.with_market(shop["spec"]), TASKS, pretrained=source,
                            rename=transfer.market_free_name)
    runner.fit(Strategy("as is", train=False), shop["train"], 0)
    x = feature_arrays(shop["test"], transfer.with_market(shop["spec"]))
    np.testing.assert_allclose(runner.predict(x)["click"],
                               source.predict(feature_arrays(shop["test"], shop["spec"]), verbose=0)["click"].ravel(),
                               rtol=1e-5)


def test_shared_bottom_with_discriminative_adam_round_trips(shop, tmp_path) -> None:
    model = _build(shop["spec"])
    model.compile(optimizer=DiscriminativeAdam(1e-3, multipliers={"users": 0.0}, groups=GROUPS),
                  loss={t.name: t.loss for t in TASKS})
    model.fit(make_multitask_dataset(shop["train"], shop["spec"], TASKS, 256), epochs=1, steps_per_epoch=2, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = feature_arrays(shop["test"], shop["spec"])
    np.testing.assert_allclose(loaded.predict(x, verbose=0)["click"], model.predict(x, verbose=0)["click"], rtol=1e-6)
    assert loaded.optimizer.multiplier("users") == 0.0


def test_market_codes_and_errors() -> None:
    frame = pd.DataFrame({"domain": pd.Categorical(["target", "source", "target"])})
    np.testing.assert_array_equal(transfer.market_codes(frame), [1, 0, 1])
    with pytest.raises(ValueError, match="unknown market"):
        transfer.market_codes(pd.DataFrame({"domain": ["moon"]}))
    with pytest.raises(KeyError, match="no column 'domain'"):
        transfer.market_codes(pd.DataFrame({"x": [1]}))


def test_market_switch_refuses_wrong_count() -> None:
    switch = transfer.MarketSwitch(2)
    with pytest.raises(ValueError, match="expects 2 outputs"):
        switch([np.zeros(3), np.zeros((3, 1), "float32")])
    with pytest.raises(ValueError, match="n_markets"):
        transfer.MarketSwitch(0)


# -- strategies, the runner, the sweep ----------------------------------------------------------------------


def test_strategy_validates() -> None:
    with pytest.raises(ValueError, match="start must be"):
        Strategy("x", start="warm")
    with pytest.raises(ValueError, match="learning_rate"):
        Strategy("x", learning_rate=0)
    row = Strategy("top", multipliers={"embeddings": 0, "bottom": 0.5}, unfreeze=("heads", ("a", "b"))).describe()
    assert row["frozen groups"] == "embeddings" and row["slower groups"] == "bottom x0.5"
    assert row["gradual unfreezing"] == "heads > a + b"


@pytest.fixture(scope="module")
def runner(shop):
    source = compile_model(_build(shop["spec"]), TASKS)
    source.fit(make_multitask_dataset(shop["train"], shop["spec"], TASKS, 256, shuffle=True, seed=1), epochs=1,
               verbose=0)
    return TransferRunner(lambda: _build(shop["spec"]), shop["spec"], TASKS, pretrained=source,
                          source_rows=shop["train"].iloc[:500], validation=shop["valid"], batch_size=256,
                          check_steps=2, max_steps=12, groups=GROUPS), source


def test_runner_is_deterministic_and_starts_where_told(shop, runner) -> None:
    runner, source = runner
    rows = shop["train"].iloc[:2000]
    scratch = Strategy("scratch", start="scratch", learning_rate=3e-3)
    first = [w.copy() for w in runner.fit(scratch, rows, 7, steps=5).get_weights()]
    second = runner.fit(scratch, rows, 7, steps=5).get_weights()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    runner.fit(Strategy("zero-shot", train=False), rows, 7)
    for a, b in zip(runner.model.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(a, b)
    new_head = Strategy("new head", new=("heads",), train=False)
    weights = runner.fit(new_head, rows, 7).get_weights()
    paths = [w.path for w in runner.model.weights]
    assert not np.array_equal(weights[paths.index("head_click/kernel")], source.get_layer("head_click").kernel.numpy())
    np.testing.assert_array_equal(weights[paths.index("bottom_dense_1/kernel")],
                                  source.get_layer("bottom_dense_1").kernel.numpy())


def test_runner_freezing_by_multiplier_equals_trainable_false(shop, runner) -> None:
    runner, source = runner
    rows = shop["train"].iloc[:3000]
    runner.fit(Strategy("frozen", learning_rate=1e-3, multipliers={"users": 0, "embeddings": 0, "bottom": 0}),
               rows, 5, steps=6)
    model = _build(shop["spec"])
    model.set_weights(source.get_weights())
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss={t.name: t.loss for t in TASKS})
    transfer.freeze_bottom(model)
    data = make_multitask_dataset(rows, shop["spec"], TASKS, 256, shuffle=True, seed=5).repeat()
    model.fit(data, epochs=1, steps_per_epoch=6, verbose=0)
    for a, b in zip(runner.model.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_runner_early_stopping_keeps_the_best(shop, runner) -> None:
    runner, _ = runner
    runner.fit(Strategy("scratch", start="scratch", learning_rate=1e-2), shop["train"], 3)
    record = runner.history[-1]
    assert 0 < record["best_step"] <= record["steps"] <= 12
    assert np.isfinite(runner.validation_auc())


def test_runner_starts_new_heads_at_the_base_rate(shop, runner) -> None:
    runner, source = runner
    rows = shop["train"].iloc[:2000]
    runner.fit(Strategy("scratch", start="scratch", train=False), rows, 7)
    for task in TASKS:
        rate = rows[task.name].mean()
        bias = runner.model.get_layer(f"head_{task.name}").bias.numpy()
        np.testing.assert_allclose(bias, np.log(rate / (1 - rate)), rtol=1e-5)
    runner.fit(Strategy("fine-tune", train=False), rows, 7)  # a pretrained head keeps its own bias
    np.testing.assert_array_equal(runner.model.get_layer("head_click").bias.numpy(),
                                  source.get_layer("head_click").bias.numpy())


def test_base_rate_heads_of_a_joint_model(shop) -> None:
    spec = transfer.with_market(shop["spec"])
    joint = TransferRunner(lambda: transfer.joint_market_model(shop["spec"], TASKS, bottom=(8,), tower=(4,)), spec,
                           TASKS, batch_size=256)
    biases = joint.base_rate_heads(shop["train"])
    rate = shop["train"]["click"].mean()
    np.testing.assert_allclose(biases["click"], np.log(rate / (1 - rate)), rtol=1e-5)
    for market in transfer.MARKETS:
        np.testing.assert_allclose(joint.model.get_layer(f"head_click_{market}").bias.numpy(), biases["click"],
                                   rtol=1e-6)


def test_runner_says_when_the_step_limit_ended_a_run(shop, runner) -> None:
    runner, _ = runner
    runner.fit(Strategy("scratch", start="scratch", learning_rate=1e-2), shop["train"], 3)
    record = runner.history[-1]
    assert record["capped"] == (record["steps"] == 12 and record["best_step"] >= 10) or not record["capped"]
    runner.fit(Strategy("short", start="scratch"), shop["train"], 3, steps=3)
    assert runner.history[-1]["capped"] is False  # a run of fixed length has no early stopping to be ended by


def test_best_on_validation_stops_restores_and_waits_for_min_steps() -> None:
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x, y = np.ones((8, 1), "float32"), np.full((8, 1), 3.0, "float32")
    scores = iter([0.5, 0.7, 0.6, 0.65, 0.4, 0.9, 0.95])
    stopper = transfer.BestOnValidation(lambda m: next(scores), every=1, patience=1)
    model.fit(x, y, batch_size=8, epochs=20, verbose=0, callbacks=[stopper])
    assert [c[1] for c in stopper.checks] == [0.5, 0.7, 0.6, 0.65]  # two checks without improvement: stop
    assert stopper.best_step == 2 and model.stop_training
    waiting = iter([0.5, 0.4, 0.3, 0.2, 0.6, 0.1, 0.1])
    patient = transfer.BestOnValidation(lambda m: next(waiting), every=1, patience=0, min_steps=5)
    model.fit(x, y, batch_size=8, epochs=20, verbose=0, callbacks=[patient])
    assert [c[1] for c in patient.checks] == [0.5, 0.4, 0.3, 0.2, 0.6, 0.1] and patient.best_step == 5
    with pytest.raises(ValueError, match="every"):
        transfer.BestOnValidation(lambda m: 0.0, every=0)


def test_best_on_validation_restores_the_best_weights() -> None:
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    kept = []

    def score(m):
        kept.append(m.get_weights())
        return [0.1, 0.9, 0.2, 0.3][len(kept) - 1]

    model.fit(np.ones((8, 1), "float32"), np.full((8, 1), 3.0, "float32"), batch_size=8, epochs=4, verbose=0,
              callbacks=[transfer.BestOnValidation(score, every=1, patience=5)])
    for a, b in zip(model.get_weights(), kept[1]):
        np.testing.assert_array_equal(a, b)


def test_single_market_view_lets_the_ideal_learner_fit_the_target() -> None:
    from utils.ceilings import IdealLearner

    data = generate(scale="tiny", seed=3, target_share=0.3, user_overlap=0.5)
    with pytest.raises(ValueError, match="one market"):
        IdealLearner(data)
    view = transfer.single_market_view(data)
    assert view.config.target_share == 0 and view.impressions is data.impressions
    target = data.impressions[data.impressions["domain"] == "target"]
    p = IdealLearner(view).fit(target.iloc[: len(target) // 2]).predict(target.iloc[len(target) // 2:])["click"]
    from utils.metrics import auc
    assert auc(target["click"].iloc[len(target) // 2:], p) > 0.6
    with pytest.raises(ValueError, match="stationary"):
        transfer.single_market_view(generate(scale="tiny", seed=3, target_share=0.3, taste_drift=0.5))


def test_runner_mixes_source_rows_and_refuses_unknown_groups(shop, runner) -> None:
    runner, _ = runner
    rows = shop["train"].iloc[:300]
    runner.fit(Strategy("mix", source_mix=1.0), rows, 0, steps=1)
    assert runner.history[-1]["rows"] == 600
    with pytest.raises(KeyError, match="unknown group"):
        runner.fit(Strategy("bad", multipliers={"tower": 0}), rows, 0)


def test_nested_subsample() -> None:
    frame = pd.DataFrame({"x": np.arange(1000)})
    small, large = transfer.nested_subsample(frame, 0.1, 4), transfer.nested_subsample(frame, 0.5, 4)
    assert len(small) == 100 and len(large) == 500 and set(small["x"]) <= set(large["x"])
    assert small["x"].is_monotonic_increasing
    assert len(transfer.nested_subsample(frame, 0.0001, 4)) == 1
    with pytest.raises(ValueError, match="fraction"):
        transfer.nested_subsample(frame, 1.5, 0)


def test_sweep_is_tidy() -> None:
    frame = pd.DataFrame({"x": np.arange(200)})
    curves = transfer.sweep({"a": lambda rows, seed: {"n": len(rows)}, "b": lambda rows, seed: {"n": -seed}},
                            frame, [0.1, 1.0], [0, 1])
    assert len(curves) == 8
    assert {"strategy", "size", "seed", "rows", "n", "seconds"} <= set(curves.columns)
    assert curves.query("strategy == 'a' and size == 0.1")["n"].tolist() == [20, 20]
    with pytest.raises(ValueError):
        transfer.sweep({}, frame, [0.1], [0])


# -- reading the results --------------------------------------------------------------------------------------


def test_history_bins() -> None:
    seen = [1, 1, 1, 1, 1, 2, 3] + [4] * 25
    np.testing.assert_array_equal(transfer.history_bins([1, 2, 4, 9], seen), [5, 1, 20, 0])
    with pytest.raises(ValueError, match="edges"):
        transfer.history_bins([1], [1], (1, 5))


def test_gap_table_and_crossover() -> None:
    rows = []
    for size, scratch, tuned in ((0.1, 0.60, 0.70), (0.5, 0.68, 0.70), (1.0, 0.71, 0.70)):
        for seed, noise in ((0, -0.002), (1, 0.002)):
            rows += [{"strategy": "scratch", "seed": seed, "size": size, "auc": scratch + noise},
                     {"strategy": "tuned", "seed": seed, "size": size, "auc": tuned + noise},
                     {"strategy": "worse", "seed": seed, "size": size, "auc": 0.5}]
    gaps = transfer.gap_table(pd.DataFrame(rows), baseline="scratch")
    assert (gaps["best"] == "tuned").all()
    np.testing.assert_allclose(gaps["gap"], [0.10, 0.02, -0.01], atol=1e-12)
    assert transfer.crossover(gaps) == 1.0
    assert transfer.crossover(gaps.assign(error=0.03)) == 1.0 and transfer.crossover(gaps, "gap") == 0.1
    with pytest.raises(KeyError, match="no column"):
        transfer.crossover(gaps, "nope")
    gaps.loc[1.0, "gap"] = 0.05
    assert np.isnan(transfer.crossover(gaps))
    with pytest.raises(ValueError, match="no strategy"):
        transfer.gap_table(pd.DataFrame(rows), baseline="nope")


def test_fit_embedding_map_matches_sklearn() -> None:
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    source = rng.normal(size=(50, 5)) + 2.0
    target = source @ rng.normal(size=(5, 3)) + 1.0 + 0.05 * rng.normal(size=(50, 3))
    weights, bias = transfer.fit_embedding_map(source, target, l2=2.0)
    ridge = Ridge(alpha=2.0).fit(source, target)
    np.testing.assert_allclose(weights, ridge.coef_.T, rtol=1e-8)
    np.testing.assert_allclose(bias, ridge.intercept_, rtol=1e-8)
    with pytest.raises(ValueError, match="one row per user"):
        transfer.fit_embedding_map(source, target[:10])
