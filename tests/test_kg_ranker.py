"""utils.kg_ranker: the factorised ranker scores unseen items by their graph vector alone, learns a planted taste
through the graph, round-trips through save and load, and the joint model trains on the course's protocol."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest

from utils import graphs, kg_features
from utils.kg_ranker import GRAPH_TABLE, factorised_ranker, neighbour_table
from utils.metrics import auc
from utils.models import Task, feature_arrays, feature_spec
from utils.runtime import set_seed
from utils.training import train

TASK = Task("click", "binary")


def _planted(n: int = 12_000, n_users: int = 60, n_items: int = 80, seed: int = 0):
    """Clicks driven by user taste . item graph vector, price and a user bias; items 60..79 never in training."""
    rng = np.random.default_rng(seed)
    graph = rng.normal(size=(n_items, 4)).astype("float32")
    taste = rng.normal(size=(n_users, 4))
    frame = pd.DataFrame({"user_id": rng.integers(0, n_users, n), "item_id": rng.integers(0, n_items, n)})
    frame["price"] = np.exp(rng.normal(size=n)).astype("float32")
    logit = 1.5 * np.einsum("nd,nd->n", taste[frame["user_id"]], graph[frame["item_id"]]) - 0.5 * np.log(frame["price"])
    frame["click"] = (rng.random(n) < 1 / (1 + np.exp(-(logit - 1.0)))).astype("int8")
    warm = frame["item_id"] < 60
    return frame[warm], frame[~warm], graph


def _spec(frame: pd.DataFrame):
    return feature_spec(frame, categorical=["user_id", "item_id"], log_numeric=["price"], embedding_dim=4)


@pytest.mark.parametrize("kind", ["none", "graph", "graph+id", "trainable"])
def test_factorised_ranker_round_trip(kind, tmp_path) -> None:
    warm, cold, graph = _planted(n=2000)
    spec = _spec(warm)
    set_seed(0)
    kwargs = {} if kind == "none" else {"graph": graph, "item_to_rows": np.arange(len(graph))}
    model = factorised_ranker(spec, TASK, factors=4, item_id=kind in ("none", "graph+id"),
                              trainable_graph=kind == "trainable", **kwargs)
    x = feature_arrays(pd.concat([warm[:50], cold[:50]]), spec)
    before = model.predict(x, verbose=0)["click"]
    assert before.shape == (100, 1) and np.all((before > 0) & (before < 1))
    model.save(tmp_path / "ranker.keras")
    again = keras.saving.load_model(tmp_path / "ranker.keras")
    np.testing.assert_allclose(again.predict(x, verbose=0)["click"], before, rtol=1e-6, atol=1e-6)
    if kind != "none":
        np.testing.assert_allclose(again.get_layer(GRAPH_TABLE).get_weights()[0], graph)
        assert again.get_layer(GRAPH_TABLE).trainable == (kind == "trainable")


def test_a_cold_item_is_scored_by_its_graph_vector_not_its_id() -> None:
    warm, cold, graph = _planted(n=2000)
    spec = _spec(warm)
    set_seed(0)
    model = factorised_ranker(spec, TASK, graph=graph, item_to_rows=np.arange(len(graph)), factors=4, item_id=True)
    rng = np.random.default_rng(3)
    model.get_layer("item_vector").set_weights([rng.normal(size=(spec["item_id"].input_dim, 4))])
    model.get_layer("item_to_taste").set_weights([rng.normal(size=(4, 4))])  # trained weights, not the zero start
    model.get_layer("item_appeal").set_weights([rng.normal(size=(4, 1))])
    rows = pd.DataFrame({"user_id": [1, 1, 1], "item_id": [70, 71, 5], "price": [2.0, 2.0, 2.0]})
    p = model.predict(feature_arrays(rows, spec), verbose=0)["click"].ravel()
    # two unseen ids with the same graph vector score the same (no OOV row), a seen id reads its own vector
    graph2 = graph.copy()
    graph2[71] = graph2[70]
    model.get_layer(GRAPH_TABLE).set_weights([graph2])
    p2 = model.predict(feature_arrays(rows, spec), verbose=0)["click"].ravel()
    assert p2[0] == pytest.approx(p2[1], abs=1e-7)
    assert p[0] != pytest.approx(p[1], abs=1e-4)


def test_the_graph_path_reaches_unseen_items_and_the_no_graph_model_cannot() -> None:
    warm, cold, graph = _planted()
    train_rows, valid_rows = warm.iloc[:10_000 * 3 // 4], warm.iloc[10_000 * 3 // 4:]
    spec = _spec(train_rows)
    scores = {}
    for name, kwargs in {"none": {}, "graph": {"graph": graph, "item_to_rows": np.arange(len(graph))}}.items():
        set_seed(0)
        model = factorised_ranker(spec, TASK, factors=4, item_id=True, **kwargs)
        result = train(model, [TASK], spec, train_rows, valid_rows, batch_size=256, seed=0, learning_rate=0.01,
                       max_epochs=30, patience=3)
        assert result.best_epoch["val_auc"] >= 1
        p = model.predict(feature_arrays(cold, spec), verbose=0)["click"].ravel()
        scores[name] = auc(cold["click"], p)
    assert scores["graph"] > 0.75, scores  # the planted taste, learned from warm items, ranks cold ones
    assert scores["graph"] > scores["none"] + 0.1, scores
    # the base rate: the head's bias starts at the logit of the training click rate
    assert 0.3 < warm["click"].mean() < 0.6


def test_a_graph_model_starts_as_the_no_graph_model() -> None:
    warm, _, graph = _planted(n=600)
    spec = _spec(warm)
    set_seed(0)
    model = factorised_ranker(spec, TASK, factors=4, graph=graph, item_to_rows=np.arange(len(graph)))
    probe = keras.Model(model.inputs, [model.get_layer("item_taste").output, model.get_layer("item_appeal").output])
    taste, appeal = probe.predict(feature_arrays(warm[:100], spec), verbose=0)
    np.testing.assert_array_equal(taste, 0.0)  # the graph terms start at zero: no random item offsets at the start
    np.testing.assert_array_equal(appeal, 0.0)


def test_item_attributes_join_the_item_tower() -> None:
    warm, _, _ = _planted(n=500)
    warm = warm.assign(genre=(warm["item_id"] % 2).astype("float32"))
    spec = feature_spec(warm, categorical=["user_id", "item_id"], numeric=["genre"], embedding_dim=4)
    model = factorised_ranker(spec, TASK, factors=3, price_column=None)
    assert model.get_layer("item_to_taste").kernel.shape == (1, 3)
    assert "item_id" not in model.input  # neither a graph nor id terms: the item id is not an input
    rows = feature_arrays(warm[:5], spec.select(["user_id", "genre"]))
    assert model.predict(rows, verbose=0)["click"].shape == (5, 1)


def test_factorised_ranker_rejects_bad_input() -> None:
    warm, _, graph = _planted(n=500)
    spec = _spec(warm)
    with pytest.raises(ValueError, match="both graph and item_to_rows"):
        factorised_ranker(spec, TASK, graph=graph)
    with pytest.raises(ValueError, match="below 80"):
        factorised_ranker(spec, TASK, graph=graph, item_to_rows=np.arange(len(graph)) + 1)
    with pytest.raises(ValueError, match="no 'price'"):
        factorised_ranker(spec.select(["user_id", "item_id"]), TASK)
    with pytest.raises(ValueError, match="one binary task"):
        factorised_ranker(spec, Task("rating", "regression"))
    with_position = feature_spec(warm.assign(position=1), categorical=["user_id", "item_id", "position"],
                                 log_numeric=["price"])
    with pytest.raises(ValueError, match="not numeric"):
        factorised_ranker(with_position, TASK)


def test_neighbour_table_lists_each_items_entity_and_its_tails() -> None:
    kg = pd.DataFrame({"head": ["item:0", "item:0", "item:1", "item:1"], "relation": ["in", "by", "in", "by"],
                       "tail": ["cat:a", "brand:x", "cat:a", "brand:y"]})
    index = graphs.TripleIndex.from_frame(kg)
    ids = {name: i for i, name in enumerate(index.entities)}
    item_to_entity = np.array([ids["item:0"], ids["item:1"], -1])
    table = neighbour_table(index, item_to_entity, ["in", "by"])
    np.testing.assert_array_equal(table, [[ids["item:0"], ids["cat:a"], ids["brand:x"]],
                                          [ids["item:1"], ids["cat:a"], ids["brand:y"]], [-1, -1, -1]])
    with pytest.raises(ValueError, match="not in the graph"):
        neighbour_table(index, item_to_entity, ["sold_by"])


def test_joint_model_on_a_factorised_ranker_trains_with_early_stopping(tmp_path) -> None:
    warm, _, graph = _planted(n=4000)
    train_rows, valid_rows = warm.iloc[:2400], warm.iloc[2400:]
    spec = _spec(train_rows)
    set_seed(0)
    start = graph / np.linalg.norm(graph, axis=1, keepdims=True)
    ranker = factorised_ranker(spec, TASK, graph=start, item_to_rows=np.arange(len(graph)), factors=4,
                               trainable_graph=True, unit_norm=True)
    with pytest.raises(ValueError, match="kg_entity_embedding"):
        kg_features.JointKGModel(ranker, n_relations=2)
    joint = kg_features.JointKGModel(ranker, n_relations=2, table=GRAPH_TABLE)
    triples = np.stack([np.arange(80), np.arange(80) % 2, (np.arange(80) + 1) % 80], axis=1)
    result = kg_features.train_joint(joint, TASK, spec, train_rows, valid_rows, triples, batch_size=256,
                                     kg_batch_size=32, num_negatives=2, learning_rate=0.01, max_epochs=6, patience=1)
    assert "val_click_auc" in result.history and "kg_loss" in result.history
    assert result.best_epoch["val_click_auc"] == int(result.history["val_click_auc"].idxmax())
    np.testing.assert_allclose(np.linalg.norm(ranker.get_layer(GRAPH_TABLE).get_weights()[0], axis=1), 1.0, rtol=1e-5)
    x = feature_arrays(valid_rows[:64], spec)
    before = ranker.predict(x, verbose=0)["click"]
    joint.save(tmp_path / "joint.keras")
    again = keras.saving.load_model(tmp_path / "joint.keras")
    np.testing.assert_allclose(again.ranker.predict(x, verbose=0)["click"], before, rtol=1e-6, atol=1e-6)
    assert again.table_name == GRAPH_TABLE
    frozen = factorised_ranker(spec, TASK, graph=graph, item_to_rows=np.arange(len(graph)), factors=4)
    with pytest.raises(ValueError, match="frozen"):
        kg_features.JointKGModel(frozen, n_relations=2, table=GRAPH_TABLE)


def test_id_dropout_switches_id_terms_off_in_training_only(tmp_path) -> None:
    from utils.kg_ranker import SeenMask

    mask = SeenMask(0.5, seed=1)
    index = np.array([0, 3, 4, 5] * 500)
    trained = keras.ops.convert_to_numpy(mask(index, training=True)).ravel()
    served = keras.ops.convert_to_numpy(mask(index, training=False)).ravel()
    np.testing.assert_array_equal(served, (index > 0).astype("float32"))
    assert np.all(trained[index == 0] == 0)
    assert 0.4 < trained[index > 0].mean() < 0.6
    with pytest.raises(ValueError, match="rate"):
        SeenMask(1.0)
    warm, cold, graph = _planted(n=800)
    spec = _spec(warm)
    model = factorised_ranker(spec, TASK, graph=graph, item_to_rows=np.arange(len(graph)), factors=4, item_id=True,
                              id_dropout=0.3)
    x = feature_arrays(warm[:40], spec)
    model.save(tmp_path / "dropout.keras")
    again = keras.saving.load_model(tmp_path / "dropout.keras")
    assert again.get_layer("item_seen").rate == pytest.approx(0.3)
    np.testing.assert_allclose(again.predict(x, verbose=0)["click"], model.predict(x, verbose=0)["click"], rtol=1e-6)


def test_joint_model_passes_the_training_flag_to_its_ranker() -> None:
    warm, _, graph = _planted(n=400)
    spec = _spec(warm)
    set_seed(0)
    start = graph / np.linalg.norm(graph, axis=1, keepdims=True)
    ranker = factorised_ranker(spec, TASK, graph=start, item_to_rows=np.arange(len(graph)), factors=4, item_id=True,
                               id_dropout=0.5, trainable_graph=True, unit_norm=True)
    ranker.get_layer("item_bias").set_weights([np.full((spec["item_id"].input_dim, 1), 3.0)])
    joint = kg_features.JointKGModel(ranker, n_relations=2, table=GRAPH_TABLE)
    x = {"rec": {k: v[:200] for k, v in feature_arrays(warm, spec).items()},
         "kg": np.zeros((200, 3, 3), dtype="int32")}
    served = [keras.ops.convert_to_numpy(joint(x, training=False)["click"]) for _ in range(2)]
    trained = keras.ops.convert_to_numpy(joint(x, training=True)["click"])
    np.testing.assert_allclose(served[0], served[1])
    assert np.abs(trained - served[0]).max() > 0.1  # id terms switched off on some rows, in training only
