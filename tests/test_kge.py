"""utils.kge and utils.kg_features: scores and losses by hand, negative sampling, learning on a graph with
obvious structure, export as item features, the rankers and the joint model, save and reload."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from utils import graphs, kg_features, kge
from utils.models import Task, feature_arrays, feature_spec, make_multitask_dataset
from utils.runtime import set_seed

MODELS = [kge.TransE, kge.RotatE, kge.DistMult]


# --------------------------------------------------------------------------------------------------
# Scores and losses against hand computations
# --------------------------------------------------------------------------------------------------


def test_transe_score_by_hand() -> None:
    h, r, t = np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([1.0, 1.0])
    assert kge.transe_score_numpy(h, r, t) == 0.0  # h + r lands exactly on t
    assert kge.transe_score_numpy(h, r, np.array([1.0, 4.0])) == pytest.approx(-3.0)
    assert kge.transe_score_numpy(h, r, np.array([4.0, 5.0])) == pytest.approx(-5.0)  # a 3-4-5 triangle
    got = keras.ops.convert_to_numpy(kge.transe_score(np.array([h]), np.array([r]), np.array([[4.0, 5.0]])))
    assert got[0] == pytest.approx(-5.0, abs=1e-6)
    assert float(kge.distmult_score(np.array([1.0, 2.0]), np.array([3.0, 0.5]), np.array([2.0, -1.0]))) == 5.0


def test_margin_ranking_loss_by_hand() -> None:
    scores = np.array([[1.0, 0.5, 1.5], [-0.2, -3.0, -2.0]], dtype="float32")
    # row 1: max(0, 1 - 1 + 0.5) = 0.5 and max(0, 1 - 1 + 1.5) = 1.5 -> 1.0; row 2: 0 and 0 -> 0
    assert kge.margin_ranking_loss_numpy(scores[:, 0], scores[:, 1:], margin=1.0) == pytest.approx(0.5)
    keras_loss = kge.MarginRankingLoss(margin=1.0)(np.zeros(2), scores)
    assert float(keras_loss) == pytest.approx(0.5)
    per_row = kge.MarginRankingLoss(margin=1.0, reduction=None)(np.zeros(2), scores)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(per_row), [1.0, 0.0])
    with pytest.raises(ValueError, match="margin"):
        kge.MarginRankingLoss(margin=0.0)


def test_logistic_loss_by_hand() -> None:
    scores = np.array([[2.0, -1.0, 0.0]], dtype="float32")
    softplus = lambda x: np.log1p(np.exp(x))  # noqa: E731
    want = softplus(-2.0) + (softplus(-1.0) + softplus(0.0)) / 2
    assert float(kge.LogisticKGELoss()(np.zeros(1), scores)) == pytest.approx(want, rel=1e-6)
    with pytest.raises(ValueError, match=r"\(batch, 1 \+ k\)"):
        kge.LogisticKGELoss()(np.zeros(3), np.zeros(3, dtype="float32"))


@pytest.mark.parametrize("cls", MODELS)
def test_model_scores_match_its_vectors(cls) -> None:
    set_seed(0)
    model = cls(7, 3, dim=4)
    triples = np.array([[0, 1, 2], [6, 2, 5], [3, 0, 3]])
    scores = keras.ops.convert_to_numpy(model(triples))
    e, r = model.entity_vectors(), model.relation_vectors()
    h, rel, t = e[triples[:, 0]], r[triples[:, 1]], e[triples[:, 2]]
    if cls is kge.TransE:
        want = kge.transe_score_numpy(h, rel, t)
    elif cls is kge.DistMult:
        want = np.sum(h * rel * t, axis=1)
    else:  # RotatE: complex product with unit-modulus relation, by hand with numpy's complex numbers
        hc, tc = h[:, :2] + 1j * h[:, 2:], t[:, :2] + 1j * t[:, 2:]
        want = model.gamma - np.sqrt(np.sum(np.abs(hc * np.exp(1j * rel) - tc) ** 2, axis=1))
    np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", MODELS)
def test_scoring_every_entity_matches_one_by_one(cls) -> None:
    set_seed(1)
    model = cls(9, 2, dim=6)
    heads, relations = np.array([0, 4, 8]), np.array([1, 0, 1])
    every = np.arange(9)
    all_tails = model.score_tails(heads, relations)
    all_heads = model.score_heads(relations, heads)  # the same ids used as tails
    assert all_tails.shape == all_heads.shape == (3, 9)
    for i, (h, r) in enumerate(zip(heads, relations, strict=True)):
        one_tail = keras.ops.convert_to_numpy(model(np.stack([np.full(9, h), np.full(9, r), every], axis=1)))
        one_head = keras.ops.convert_to_numpy(model(np.stack([every, np.full(9, r), np.full(9, h)], axis=1)))
        np.testing.assert_allclose(all_tails[i], one_tail, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(all_heads[i], one_head, rtol=1e-4, atol=1e-4)


def test_transe_keeps_entities_on_the_unit_sphere() -> None:
    set_seed(0)
    model = kge.TransE(20, 2, dim=8)
    triples = np.array([[i, i % 2, (i + 1) % 20] for i in range(20)])
    kge.fit_kge(model, triples, kge.MarginRankingLoss(), epochs=2, batch_size=8, num_negatives=2)
    np.testing.assert_allclose(np.linalg.norm(model.entity_vectors(), axis=1), 1.0, rtol=1e-5)
    assert not kge.DistMult(5, 1).unit_norm and kge.TransE(5, 1, unit_norm=False).entity_embedding.embeddings_constraint is None


def test_model_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="n_entities"):
        kge.TransE(0, 1)
    with pytest.raises(ValueError, match="even dim"):
        kge.RotatE(5, 1, dim=7)
    with pytest.raises(ValueError, match="l2"):
        kge.DistMult(5, 1, l2=-1.0)


# --------------------------------------------------------------------------------------------------
# Negative sampling
# --------------------------------------------------------------------------------------------------


def _check_corruptions(positive: np.ndarray, negative: np.ndarray) -> None:
    same_head = negative[..., 0] == positive[:, None, 0]
    same_tail = negative[..., 2] == positive[:, None, 2]
    assert (negative[..., 1] == positive[:, None, 1]).all(), "the relation is never corrupted"
    assert (same_head ^ same_tail).all(), "exactly one side is replaced, never both, never none"
    assert 0.4 < same_tail.mean() < 0.6, "heads and tails are corrupted about equally often"


def test_corrupt_triples_never_returns_the_true_triple() -> None:
    rng = np.random.default_rng(0)
    triples = np.stack([rng.integers(0, 3, 400), rng.integers(0, 4, 400), rng.integers(0, 3, 400)], axis=1)
    negative = kge.corrupt_triples(triples, n_entities=3, num_negatives=5, seed=1)
    assert negative.shape == (400, 5, 3)
    _check_corruptions(triples, negative)
    replaced = np.where(negative[..., 0] != triples[:, None, 0], negative[..., 0], negative[..., 2])
    assert set(np.unique(replaced)) == {0, 1, 2}, "every other entity can be drawn"
    np.testing.assert_array_equal(negative, kge.corrupt_triples(triples, 3, 5, seed=1))
    with pytest.raises(ValueError, match="2 entities"):
        kge.corrupt_triples(np.zeros((2, 3), dtype=int), n_entities=1)


def test_negative_sampling_dataset() -> None:
    rng = np.random.default_rng(0)
    triples = np.stack([rng.integers(0, 50, 300), rng.integers(0, 4, 300), rng.integers(0, 50, 300)], axis=1)
    data = kge.negative_sampling_dataset(triples, 50, num_negatives=4, batch_size=64, seed=3)
    epochs = []
    for _ in range(2):
        batches = [x.numpy() for x, y in data]
        assert [len(b) for b in batches] == [64] * 4 + [44]
        assert all(b.shape[1:] == (5, 3) for b in batches)
        x = np.concatenate(batches)
        _check_corruptions(x[:, 0], x[:, 1:])
        # each epoch holds every true triple exactly once, in a new order
        assert sorted(map(tuple, x[:, 0])) == sorted(map(tuple, triples))
        epochs.append(x)
    assert not np.array_equal(epochs[0], epochs[1]), "a new order and new negatives every epoch"
    with pytest.raises(ValueError, match="num_negatives"):
        kge.negative_sampling_dataset(triples, 50, num_negatives=0)


# --------------------------------------------------------------------------------------------------
# Learning on a graph with obvious structure
# --------------------------------------------------------------------------------------------------


def _clustered_graph(n_groups: int = 6, per_group: int = 12) -> tuple[np.ndarray, np.ndarray, int]:
    """Items in groups: each item belongs to its group's category and is made by its group's brand.

    Returns the training triples, held-out (item, belongs_to, category) triples and the entity count.
    A model that learned the structure finds an item's category from its brand.
    """
    n_items = n_groups * per_group
    items = np.arange(n_items)
    group = items // per_group
    category, brand = n_items + group, n_items + n_groups + group
    belongs = np.stack([items, np.zeros_like(items), category], axis=1)
    made = np.stack([items, np.ones_like(items), brand], axis=1)
    held = items % per_group == 0  # one item per group keeps its category hidden
    return np.concatenate([belongs[~held], made]), belongs[held], n_items + 2 * n_groups


@pytest.mark.parametrize("cls, loss", [(kge.TransE, kge.MarginRankingLoss()), (kge.RotatE, kge.MarginRankingLoss())])
def test_trained_model_beats_random_by_far(cls, loss) -> None:
    train, test, n_entities = _clustered_graph()
    set_seed(0)
    model = cls(n_entities, 2, dim=16)
    before = graphs.link_prediction_metrics(graphs.filtered_ranks(model, test, train, n_entities, side="tail"))
    kge.fit_kge(model, train, loss, epochs=25, batch_size=16, num_negatives=8, learning_rate=0.03)
    after = graphs.link_prediction_metrics(graphs.filtered_ranks(model, test, train, n_entities, side="tail"))
    chance = graphs.link_prediction_metrics(graphs.random_ranks(test, train, n_entities, side="tail"))
    assert after["mrr"] > 0.8 and after["hits@3"] == 1.0
    assert after["mrr"] > 4 * max(before["mrr"], chance["mrr"])


# --------------------------------------------------------------------------------------------------
# Export, rankers, the joint model, save and reload
# --------------------------------------------------------------------------------------------------


def test_item_features_export() -> None:
    frame = pd.DataFrame({"head": ["item:0", "item:2"], "relation": ["made_by", "made_by"],
                          "tail": ["brand:a", "brand:a"]})
    index = graphs.TripleIndex.from_frame(frame)
    item_entity = pd.Series({0: "item:0", 1: "item:1", 2: "item:2"})
    table = kge.item_entity_table(index, item_entity)
    assert list(table) == [index.entity_ids("item:0")[0], -1, index.entity_ids("item:2")[0]]
    vectors = np.arange(6, dtype="float32").reshape(3, 2)
    features = kge.item_features(vectors, index, item_entity)
    assert list(features.columns) == ["kg_0", "kg_1"] and features.index.name == "item_id"
    np.testing.assert_array_equal(features.loc[1], [0.0, 0.0])
    np.testing.assert_array_equal(features.loc[2], vectors[index.entity_ids("item:2")[0]])
    assert features.attrs["missing"] == 1
    with pytest.raises(ValueError, match="one vector per entity"):
        kge.item_features(vectors[:2], index, item_entity)


def _ranker_data():
    rng = np.random.default_rng(0)
    n = 600
    frame = pd.DataFrame({"user_id": rng.integers(0, 30, n), "item_id": rng.integers(0, 40, n),
                          "position": rng.integers(1, 4, n)})
    frame["click"] = (rng.random(n) < 0.3).astype("int8")
    spec = feature_spec(frame, categorical=["user_id", "item_id", "position"], embedding_dim=4)
    item_to_entity = np.where(np.arange(45) < 42, np.arange(45) % 50, -1)  # items 42..44 not in the graph
    neighbours = np.c_[item_to_entity, (item_to_entity + 1) % 50, np.full(45, -1)]
    return frame, spec, neighbours


@pytest.mark.parametrize("mode", kg_features.KG_MODES)
def test_ranker_round_trip(mode, tmp_path) -> None:
    frame, spec, table = _ranker_data()
    task = Task("click", "binary")
    set_seed(0)
    vectors = np.random.default_rng(1).normal(size=(50, 6)).astype("float32")
    model = kg_features.kg_ranker(spec, task, mode, item_to_entity=table, entity_vectors=vectors,
                                  n_entities=50, kg_dim=6, hidden=(8,))
    if mode in ("frozen", "fine-tuned"):
        np.testing.assert_array_equal(model.get_layer("kg_entity_embedding").get_weights()[0], vectors)
        assert model.get_layer("kg_entity_embedding").trainable == (mode == "fine-tuned")
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(make_multitask_dataset(frame, spec, [task], 128), epochs=1, verbose=0, shuffle=False)
    x = feature_arrays(frame, spec)
    before = model.predict(x, verbose=0)["click"]
    model.save(tmp_path / "ranker.keras")
    again = keras.saving.load_model(tmp_path / "ranker.keras")
    np.testing.assert_allclose(again.predict(x, verbose=0)["click"], before, rtol=1e-6, atol=1e-6)
    if mode == "frozen":
        np.testing.assert_array_equal(again.get_layer("kg_entity_embedding").get_weights()[0], vectors)


def test_entity_lookup_masks_missing_items() -> None:
    lookup = kg_features.ItemEntityLookup(4, width=2)
    lookup.set_table(np.array([[3, -1], [0, 1], [-1, -1], [2, 2]]))
    entities, present = lookup(np.array([0, 2, 7, -1, 3]))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(entities), [[3, 0], [0, 0], [0, 0], [0, 0], [2, 2]])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(present), [[1, 0], [0, 0], [0, 0], [0, 0], [1, 1]])
    with pytest.raises(ValueError, match="shape"):
        lookup.set_table(np.zeros((3, 2)))


def test_ranker_arguments_are_checked() -> None:
    frame, spec, table = _ranker_data()
    task = Task("click", "binary")
    with pytest.raises(ValueError, match="unknown mode"):
        kg_features.kg_ranker(spec, task, "pretrained", item_to_entity=table)
    with pytest.raises(ValueError, match="needs entity_vectors"):
        kg_features.kg_ranker(spec, task, "frozen", item_to_entity=table)
    with pytest.raises(ValueError, match="needs item_to_entity"):
        kg_features.kg_ranker(spec, task, "joint", n_entities=50, kg_dim=4)
    with pytest.raises(ValueError, match="below 10"):
        kg_features.kg_ranker(spec, task, "frozen", item_to_entity=table, entity_vectors=np.zeros((10, 4)))
    with pytest.raises(ValueError, match="no 'user_id'"):
        kg_features.kg_ranker(spec.select(["item_id", "position"]), task)


def test_joint_model_trains_both_tasks_and_round_trips(tmp_path) -> None:
    frame, spec, table = _ranker_data()
    task = Task("click", "binary")
    set_seed(0)
    ranker = kg_features.kg_ranker(spec, task, "joint", item_to_entity=table, n_entities=50, kg_dim=6,
                                   hidden=(8,), unit_norm=True)
    joint = kg_features.JointKGModel(ranker, n_relations=2)
    joint.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss={"click": "binary_crossentropy", "kg": kge.MarginRankingLoss()},
                  loss_weights={"click": 1.0, "kg": 0.5})
    triples = np.stack([np.arange(50), np.arange(50) % 2, (np.arange(50) + 1) % 50], axis=1)
    data = kg_features.joint_dataset(make_multitask_dataset(frame, spec, [task], 128, shuffle=True),
                                     kge.negative_sampling_dataset(triples, 50, 4, 16))
    table_before = ranker.get_layer("kg_entity_embedding").get_weights()[0].copy()
    history = joint.fit(data, epochs=2, verbose=0, shuffle=False)
    assert {"click_loss", "kg_loss"} <= set(history.history)
    table_after = ranker.get_layer("kg_entity_embedding").get_weights()[0]
    # entity 49 is read by no item (items map to 0..41 and neighbours 1..42): only the graph loss moved it
    assert not np.allclose(table_before[49], table_after[49])
    np.testing.assert_allclose(np.linalg.norm(table_after, axis=1), 1.0, rtol=1e-5)
    x = feature_arrays(frame, spec)
    before = ranker.predict(x, verbose=0)["click"]
    joint.save(tmp_path / "joint.keras")
    again = keras.saving.load_model(tmp_path / "joint.keras")
    np.testing.assert_allclose(again.ranker.predict(x, verbose=0)["click"], before, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(again.relation_embedding.get_weights()[0], joint.relation_embedding.get_weights()[0])
    assert again.entity_table is again.ranker.get_layer("kg_entity_embedding")
    with pytest.raises(ValueError, match="kg_entity_embedding"):
        kg_features.JointKGModel(kg_features.kg_ranker(spec, task, "none"), n_relations=2)


@pytest.mark.parametrize("cls", MODELS)
def test_kge_model_round_trip(cls, tmp_path) -> None:
    set_seed(0)
    model = cls(12, 3, dim=4)
    triples = np.array([[[0, 1, 2], [5, 1, 2]], [[3, 0, 11], [3, 0, 7]]])
    model.compile(optimizer="adam", loss=kge.MarginRankingLoss(0.5))
    model.fit(triples, np.zeros(2), epochs=1, verbose=0)
    model.save(tmp_path / "kge.keras")
    again = keras.saving.load_model(tmp_path / "kge.keras")
    assert type(again) is cls and again.get_config() == model.get_config()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(again(triples)), keras.ops.convert_to_numpy(model(triples)),
                               rtol=1e-6)
    np.testing.assert_allclose(again.score_tails([0, 1], [2, 0]), model.score_tails([0, 1], [2, 0]), rtol=1e-5)
    assert isinstance(again.loss, kge.MarginRankingLoss) and again.loss.margin == 0.5


def test_dataset_feeds_tf_types() -> None:
    data = kge.negative_sampling_dataset(np.array([[0, 0, 1], [1, 0, 2]]), 3, num_negatives=2, batch_size=2)
    x, y = next(iter(data))
    assert x.dtype == tf.int32 and y.dtype == tf.float32


# --------------------------------------------------------------------------------------------------
# Early stopping on the validation MRR
# --------------------------------------------------------------------------------------------------


class _WeightRecorder(keras.callbacks.Callback):
    """Keeps a copy of the weights after every epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.weights: list[list[np.ndarray]] = []

    def on_epoch_end(self, epoch, logs=None) -> None:
        self.weights.append([np.array(w) for w in self.model.get_weights()])


def test_fit_kge_stops_early_and_restores_the_best_epoch() -> None:
    train, _, n_entities = _clustered_graph()
    # Validation triples drawn at random: the MRR on them wanders, so the best epoch is rarely the last one.
    rng = np.random.default_rng(0)
    valid = np.stack([rng.integers(0, n_entities, 40), rng.integers(0, 2, 40), rng.integers(0, n_entities, 40)], 1)
    known = np.concatenate([train, valid])
    set_seed(0)
    model = kge.TransE(n_entities, 2, dim=16)
    recorder = _WeightRecorder()
    history = kge.fit_kge(model, train, kge.MarginRankingLoss(), epochs=40, batch_size=16, num_negatives=8,
                          learning_rate=0.05, valid=valid, known=known, patience=2, callbacks=[recorder])
    val_mrr = history.history["val_mrr"]
    assert len(val_mrr) == len(history.history["loss"]) == len(recorder.weights)
    best = int(np.argmax(val_mrr)) + 1
    assert history.best_epoch == best
    assert len(val_mrr) == best + 3 < 40  # stopped after patience + 1 epochs without a gain
    restored = graphs.link_prediction_metrics(graphs.filtered_ranks(model, valid, known, n_entities))["mrr"]
    assert restored == pytest.approx(max(val_mrr), abs=1e-9)
    for now, then in zip(model.get_weights(), recorder.weights[best - 1], strict=True):
        np.testing.assert_array_equal(now, then)
    assert any(not np.array_equal(a, b) for a, b in zip(model.get_weights(), recorder.weights[-1], strict=True))


def test_fit_kge_without_valid_runs_every_epoch_and_round_trips(tmp_path) -> None:
    train, test, n_entities = _clustered_graph()
    set_seed(0)
    model = kge.TransE(n_entities, 2, dim=8)
    history = kge.fit_kge(model, train, kge.MarginRankingLoss(), epochs=3, batch_size=64, num_negatives=2)
    assert "val_mrr" not in history.history and len(history.epoch) == 3 and history.best_epoch == 3
    set_seed(0)
    stopped = kge.TransE(n_entities, 2, dim=8)
    kge.fit_kge(stopped, train, kge.MarginRankingLoss(), epochs=3, batch_size=64, num_negatives=2, valid=test)
    stopped.save(tmp_path / "stopped.keras")
    again = keras.saving.load_model(tmp_path / "stopped.keras")
    np.testing.assert_allclose(again.score_tails(test[:, 0], test[:, 1]), stopped.score_tails(test[:, 0], test[:, 1]),
                               rtol=1e-5)


def test_fit_kge_samples_the_validation_triples_and_checks_its_arguments() -> None:
    train, test, n_entities = _clustered_graph()
    model = kge.TransE(n_entities, 2, dim=8)
    with pytest.raises(ValueError, match="pass valid"):
        kge.fit_kge(model, train, kge.MarginRankingLoss(), epochs=1, known=train)
    with pytest.raises(ValueError, match="max_valid"):
        kge.fit_kge(model, train, kge.MarginRankingLoss(), epochs=1, valid=test, max_valid=0)
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        kge.fit_kge(model, train, kge.MarginRankingLoss(), epochs=1, valid=test[:, :2])
    with pytest.raises(ValueError, match="no validation triples"):
        kge.FilteredMRR(test[:0], train, n_entities)
    callback = kge.FilteredMRR(test, train, n_entities)
    callback.set_model(model)
    logs: dict = {}
    callback.on_epoch_end(0, logs)
    expected = graphs.link_prediction_metrics(graphs.filtered_ranks(model, test, train, n_entities))["mrr"]
    assert logs["val_mrr"] == pytest.approx(expected)
    set_seed(0)
    history = kge.fit_kge(model, train, kge.MarginRankingLoss(), epochs=4, batch_size=32, num_negatives=4,
                          valid=train, max_valid=20, seed=5, patience=10)
    sample = train[np.sort(np.random.default_rng(5).choice(len(train), 20, replace=False))]
    on_sample = graphs.link_prediction_metrics(graphs.filtered_ranks(model, sample, train, n_entities))["mrr"]
    assert on_sample == pytest.approx(max(history.history["val_mrr"]), abs=1e-9)
