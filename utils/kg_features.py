"""Knowledge-graph embeddings as item features of a ranker, and the graph as an auxiliary task.

The ranker (:func:`kg_ranker`) is the course's usual model (raw inputs and embeddings from
``utils.models``, an MLP, a sigmoid head) with a learned user-item dot product and a graph branch: each
item id is looked up in the graph's entity table and its entity vector, projected, is added to the item's
vector. Three ways to use the table:

* ``"frozen"``: pretrained vectors (TransE, RotatE) that the ranker cannot change;
* ``"fine-tuned"``: the same start, trained further by the ranker's loss;
* ``"joint"``: trained from scratch by the ranker *and* a graph-embedding loss at once
  (:class:`JointKGModel`, in the spirit of MKR, Wang et al., 2019).

Cold-start items (no training interactions) still have a graph entity, so their vector carries what
the graph knows about them even though their id embedding was never trained.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from keras import ops

from utils.kge import MarginRankingLoss, negative_sampling_dataset, transe_score
from utils.models import FeatureSpec, Task, encode_features, make_multitask_dataset, mlp
from utils.training import FitResult, fit, init_output_biases

__all__ = [
    "ENTITY_LAYER",
    "KG_MODES",
    "ItemEntityLookup",
    "JointKGModel",
    "joint_dataset",
    "kg_ranker",
    "train_joint",
]

#: How a ranker uses the graph's entity table.
KG_MODES = ("none", "frozen", "fine-tuned", "joint")
#: Name of the entity table inside a ranker (what the joint model shares with its graph loss).
ENTITY_LAYER = "kg_entity_embedding"


@keras.saving.register_keras_serializable(package="course")
class ItemEntityLookup(keras.layers.Layer):
    """Item id -> ``(entities, present)``: a row of a table stored as a non-trainable int weight.

    Row ``i`` of the ``(n_items, width)`` table holds item ``i``'s entity id and, optionally, the ids of
    its graph neighbours; ``-1`` pads. Item ids outside the table and padded slots give entity 0 with
    ``present = 0``, so the caller can mask them. The table is a weight, not config: saved with the model.
    """

    def __init__(self, n_items: int, width: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(n_items) < 1 or int(width) < 1:
            raise ValueError(f"n_items and width must be >= 1, got {n_items} and {width}")
        self.n_items, self.width = int(n_items), int(width)
        self.table = self.add_weight(shape=(self.n_items, self.width), dtype="int32", initializer="zeros",
                                     trainable=False, name="item_to_entities")

    def set_table(self, table: Any) -> None:
        """Fill the table: ``table[i]`` lists item ``i``'s entity ids (``-1`` for none)."""
        values = np.asarray(table)
        if values.ndim == 1:
            values = values[:, None]
        if values.shape != (self.n_items, self.width):
            raise ValueError(f"the table needs shape {(self.n_items, self.width)} (one row per item id), "
                             f"got {values.shape}")
        self.table.assign(values.astype(np.int32))

    def call(self, item_ids: Any) -> tuple[Any, Any]:
        ids = ops.cast(item_ids, "int32")
        inside = ops.logical_and(ids >= 0, ids < self.n_items)
        entities = ops.take(self.table, ops.clip(ids, 0, self.n_items - 1), axis=0)
        present = ops.logical_and(ops.expand_dims(inside, -1), entities >= 0)
        return ops.where(present, entities, 0), ops.cast(present, self.compute_dtype)

    def compute_output_spec(self, item_ids: Any) -> tuple[Any, Any]:
        shape = (*item_ids.shape, self.width)
        return keras.KerasTensor(shape, dtype="int32"), keras.KerasTensor(shape, dtype=self.compute_dtype)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_items": self.n_items, "width": self.width}


def kg_ranker(spec: FeatureSpec, task: Task, mode: str = "none", item_to_entity: Any = None,
              entity_vectors: np.ndarray | None = None, n_entities: int | None = None, kg_dim: int | None = None,
              hidden: Sequence[int] = (64, 32), unit_norm: bool = False, user_column: str = "user_id",
              item_column: str = "item_id", name: str | None = None) -> keras.Model:
    """A ranker on ``spec``'s features, with the graph branch that ``mode`` asks for.

    The user and the item each get a vector: their id embeddings, the item's plus (with a graph) a linear
    ``kg_projection`` of its entity vector, as in CKE (Zhang et al., 2016). Their learned dot product, the
    user's ``taste`` for the item, joins every feature in an MLP before the head, so that it can combine
    with the slot and the price. A cold item's id embedding is the out-of-vocabulary row; with a graph,
    its entity vector still places it.

    ``"none"``: no graph. ``"frozen"``/``"fine-tuned"``: the entity table starts as ``entity_vectors``
    (``(n_entities, dim)``, e.g. ``TransE.entity_vectors()``) and is frozen or trainable. ``"joint"``: a
    fresh ``n_entities x kg_dim`` table (``unit_norm`` keeps rows on the unit sphere, as TransE needs)
    for :class:`JointKGModel` to train. ``item_to_entity`` maps item id -> entity id (``-1``: not in the
    graph), see ``utils.kge.item_entity_table``; a 2-D ``(n_items, width)`` table lists several entities
    per item, and the ranker reads the mean of their vectors.
    """
    if mode not in KG_MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {KG_MODES}")
    for column in (user_column, item_column):
        if column not in spec.names:
            raise ValueError(f"the spec has no {column!r} feature; the ranker needs a user id and an item id")
    inputs = {f.name: keras.Input(shape=(), dtype=f.dtype, name=f.name) for f in spec}
    encoded = encode_features(spec, inputs)
    user, item = encoded[user_column], encoded[item_column]
    if user.shape[-1] != item.shape[-1]:
        raise ValueError(f"{user_column} and {item_column} need the same embedding_dim, got "
                         f"{user.shape[-1]} and {item.shape[-1]}")
    if mode != "none":
        if item_to_entity is None:
            raise ValueError(f"mode {mode!r} needs item_to_entity (utils.kge.item_entity_table)")
        if mode == "joint":
            if n_entities is None or kg_dim is None:
                raise ValueError("mode 'joint' needs n_entities and kg_dim (the table is trained from scratch)")
        else:
            if entity_vectors is None:
                raise ValueError(f"mode {mode!r} needs entity_vectors (e.g. TransE(...).entity_vectors())")
            entity_vectors = np.asarray(entity_vectors, dtype=np.float32)
            if entity_vectors.ndim != 2:
                raise ValueError(f"entity_vectors must be (n_entities, dim), got shape {entity_vectors.shape}")
            n_entities, kg_dim = entity_vectors.shape
        item_to_entity = np.asarray(item_to_entity)
        if item_to_entity.ndim == 1:
            item_to_entity = item_to_entity[:, None]
        if item_to_entity.ndim != 2 or item_to_entity.max() >= n_entities:
            raise ValueError(f"item_to_entity must be (n_items,) or (n_items, width) with entity ids below {n_entities}")
        lookup = ItemEntityLookup(*item_to_entity.shape, name="kg_item_lookup")
        entity, present = lookup(inputs[item_column])
        table = keras.layers.Embedding(
            n_entities, kg_dim, trainable=mode != "frozen", name=ENTITY_LAYER,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0 / math.sqrt(kg_dim)),
            embeddings_constraint=keras.constraints.UnitNorm(axis=1) if unit_norm else None)
        # The mean of the present vectors: the item's own, and its neighbours' if the table lists them.
        weights = present / ops.maximum(ops.sum(present, axis=-1, keepdims=True), 1.0)
        vector = ops.sum(table(entity) * ops.expand_dims(weights, -1), axis=-2)
        projected = keras.layers.Dense(item.shape[-1], name="kg_projection")(vector)
        item = keras.layers.Add(name="item_vector")([item, projected])
        encoded = {**encoded, item_column: item}
    # The user's taste for the item, a learned dot product, joins the features of the MLP, so that it can
    # interact with the slot and the price (a click needs the slot to be seen and the price to be right).
    taste = keras.layers.Dense(1, use_bias=False, name="taste")(
        keras.layers.Multiply(name="user_item_product")([user, item]))
    h = mlp(hidden, name="hidden")(keras.layers.Concatenate(name="features")([*encoded.values(), taste]))
    output = keras.layers.Dense(task.units, activation=task.activation, name=f"head_{task.name}")(h)
    model = keras.Model(inputs, {task.name: output}, name=name or f"ranker_{mode.replace('-', '_')}")
    if mode != "none":
        lookup.set_table(item_to_entity)
        if mode != "joint":
            table.set_weights([entity_vectors])
    return model


@keras.saving.register_keras_serializable(package="course")
class JointKGModel(keras.Model):
    """A ranker and a TransE loss on the graph that share the ranker's entity table (MKR-style).

    ``call({"rec": features, "kg": triples})`` returns the ranker's outputs plus ``"kg"``: TransE scores
    ``(batch, 1 + k)`` of true triples and their corruptions, for :class:`~utils.kge.MarginRankingLoss`.
    The relation vectors belong to this model; the entity vectors are the ranker's ``kg_entity_embedding``,
    so every graph step moves the item vectors the ranker reads, cold-start items included.
    Compile with a loss per output and ``loss_weights`` to set the graph task's weight. ``table`` names the
    ranker's entity layer (``kg_entity_embedding`` of :func:`kg_ranker`, ``graph_table`` of
    :func:`utils.kg_ranker.factorised_ranker`); the table must be trainable.
    """

    def __init__(self, ranker: keras.Model, n_relations: int, table: str = ENTITY_LAYER, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        try:
            layer = ranker.get_layer(table)
        except ValueError as err:
            raise ValueError(f"the ranker has no {table!r} layer: build it with kg_ranker(mode='joint'), or pass the "
                             "name of its entity table (utils.kg_ranker.GRAPH_TABLE for a factorised ranker)") from err
        if not layer.trainable:
            raise ValueError(f"the ranker's {table!r} is frozen: a joint model trains it")
        if int(n_relations) < 1:
            raise ValueError(f"n_relations must be >= 1, got {n_relations}")
        self.ranker = ranker
        self.table_name = table
        self.n_relations = int(n_relations)
        self.relation_embedding = keras.layers.Embedding(
            self.n_relations, layer.output_dim, name="kg_relation_embedding",
            embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0 / math.sqrt(layer.output_dim)))

    @property
    def entity_table(self) -> keras.layers.Embedding:
        """The entity embedding shared with the ranker (a property, so it is tracked once, under the ranker)."""
        return self.ranker.get_layer(self.table_name)

    def call(self, inputs: dict[str, Any], training: bool | None = None) -> dict[str, Any]:
        # training is passed on explicitly: the ranker's dropout layers must know whether this is a training step
        outputs = dict(self.ranker(inputs["rec"], training=training))
        triples = ops.cast(inputs["kg"], "int32")
        table = self.entity_table
        outputs["kg"] = transe_score(table(triples[..., 0]), self.relation_embedding(triples[..., 1]),
                                     table(triples[..., 2]))
        return outputs

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "ranker": keras.saving.serialize_keras_object(self.ranker),
                "n_relations": self.n_relations, "table": self.table_name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> JointKGModel:
        config = dict(config)
        ranker = keras.saving.deserialize_keras_object(config.pop("ranker"))
        return cls(ranker, **config)


def joint_dataset(rec: tf.data.Dataset, kg: tf.data.Dataset) -> tf.data.Dataset:
    """Zip a ranker's ``(x, y, sample_weight)`` batches with graph batches ``(triples, zeros)`` (repeated
    as long as the ranker's data lasts) into the inputs, targets and weights of :class:`JointKGModel`."""
    def merge(rec_batch: tuple, kg_batch: tuple) -> tuple:
        x, y, w = rec_batch
        triples, dummy = kg_batch
        return ({"rec": x, "kg": triples}, {**y, "kg": dummy}, {**w, "kg": tf.ones_like(dummy)})

    return tf.data.Dataset.zip(rec, kg.repeat()).map(merge)


def train_joint(joint: JointKGModel, task: Task, spec: FeatureSpec, train_rows: pd.DataFrame,
                valid_rows: pd.DataFrame, triples: np.ndarray, kg_weight: float = 0.1, batch_size: int = 2048,
                kg_batch_size: int = 512, num_negatives: int = 8, learning_rate: float = 3e-3, seed: int = 0,
                max_epochs: int = 30, patience: int = 2) -> FitResult:
    """The course's protocol for a joint model: the click head's bias at the base rate, early stopping on the
    validation click AUC (``val_<task>_auc``, higher is better) with the best weights restored.

    The graph loss has no validation counterpart worth stopping on (a margin loss falls as long as it trains), so
    the recommendation task decides when to stop, as it would in a shop; ``kg_weight`` is the graph loss's weight.
    """
    if task.kind != "binary":
        raise ValueError(f"train_joint follows a binary task's AUC, got a {task.kind!r} task")
    n_entities = joint.entity_table.input_dim
    joint.compile(optimizer=keras.optimizers.Adam(learning_rate), loss_weights={task.name: 1.0, "kg": kg_weight},
                  loss={task.name: task.loss, "kg": MarginRankingLoss(1.0)},
                  weighted_metrics={task.name: [keras.metrics.AUC(name="auc")]})
    init_output_biases(joint.ranker, [task], train_rows)
    graph = negative_sampling_dataset(triples, n_entities, num_negatives, batch_size=kg_batch_size, seed=seed)
    data = joint_dataset(make_multitask_dataset(train_rows, spec, [task], batch_size, shuffle=True, seed=seed), graph)
    valid = joint_dataset(make_multitask_dataset(valid_rows, spec, [task], max(batch_size, 8192)), graph)
    return fit(joint, data, valid, {f"val_{task.name}_auc": "max"}, max_epochs=max_epochs, patience=patience)
