"""A factorised ranker whose item side is built from the item's graph vector, so that it scores items it never saw.

The click logit is a sum of terms a learner can read (as in the simulator's own click model):

    logit = b + b_user + s_user * price + u_user . W g_item  [+ w . g_item]  [+ e_item . u_user + b_item]

``g_item`` is the item's row of a graph table (TransE vectors, the simulator's true graph part of the taste, or
the mean of its one-hop neighbours' vectors); there is no item id on that path, so a brand-new item is placed by
its graph vector alone. An item-id embedding and bias (``item_id=True``) can be added for the items the log has
seen: a cold item reads zeros there, not a random out-of-vocabulary row. With ``graph=None`` the model keeps only
the user's bias and price slope: the no-graph baseline of the same form.

In production a two-tower retrieval model (TensorFlow Recommenders, or a Keras two-tower) does the same with
deeper towers; this one is kept to terms that can be compared one by one with the simulator's.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pandas as pd
from keras import ops

from utils.graphs import TripleIndex
from utils.kg_features import ItemEntityLookup
from utils.models import FeatureSpec, Task

__all__ = ["GRAPH_TABLE", "SeenMask", "factorised_ranker", "neighbour_table"]

#: Name of the graph table inside a factorised ranker.
GRAPH_TABLE = "graph_table"


@keras.saving.register_keras_serializable(package="course")
class SeenMask(keras.layers.Layer):
    """Vocabulary index -> 1.0 for a known id, 0.0 for the out-of-vocabulary slot (index 0): a cold item's id
    terms are switched off instead of reading a row no item trained.

    ``rate`` > 0 also switches them off for that share of the training rows (DropoutNet, Volkovs et al., 2017), so
    that the id terms cannot absorb what the price and the graph explain: an item constant such as its price is
    otherwise confounded with its id bias, and what the model learns for it (what a new item is scored by) is left
    to chance. Never at inference.
    """

    def __init__(self, rate: float = 0.0, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"rate must be in [0, 1), got {rate}")
        self.rate, self.seed = float(rate), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, index: Any, training: bool | None = None) -> Any:
        seen = ops.expand_dims(ops.cast(index > 0, self.compute_dtype), -1)
        if training and self.rate > 0:
            keep = keras.random.uniform(ops.shape(seen), seed=self.seed_generator) >= self.rate
            seen = seen * ops.cast(keep, self.compute_dtype)
        return seen

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


def _lookup(spec: FeatureSpec, name: str, x: Any) -> Any:
    feature = spec[name]
    if feature.kind != "categorical":
        raise ValueError(f"{name!r} must be a categorical feature of the spec, got kind {feature.kind!r}")
    return keras.layers.IntegerLookup(vocabulary=feature.vocabulary, num_oov_indices=1, mask_token=None,
                                      name=f"{name}_lookup")(x)


def factorised_ranker(spec: FeatureSpec, task: Task, graph: np.ndarray | None = None,
                      item_to_rows: np.ndarray | None = None, factors: int = 16, trainable_graph: bool = False,
                      unit_norm: bool = False, item_id: bool = False, id_dropout: float = 0.0, l2: float = 1e-6,
                      user_column: str = "user_id", item_column: str = "item_id", price_column: str | None = "price",
                      name: str | None = None) -> keras.Model:
    """The factorised ranker of the module docstring, on ``spec``'s user id, item id and (optional) price.

    ``graph`` is a ``(rows, dim)`` table and ``item_to_rows`` maps item id -> its row(s) (``(n_items,)`` or
    ``(n_items, width)``, ``-1`` for none; several rows are averaged). ``trainable_graph`` lets the click loss
    move the rows (a cold item's neighbours are trained by the warm items that share them); ``unit_norm`` keeps
    them on the unit sphere (for a TransE loss on the same table). ``id_dropout`` switches the id terms off for that
    share of the training rows (see :class:`SeenMask`). Every other numeric feature of ``spec`` (genre
    flags, say) is an item attribute and joins the graph vector in the item tower. ``l2`` regularises every
    per-user and per-item table. The output layer ``head_<task>`` has a bias, for the base rate.
    """
    needed = [c for c in (user_column, item_column, price_column) if c is not None]
    for column in needed:
        if column not in spec.names:
            raise ValueError(f"the spec has no {column!r} feature; the factorised ranker needs {needed}")
    others = [f for f in spec if f.name not in needed]
    wrong = [f.name for f in others if f.kind != "numeric"]
    if wrong:
        raise ValueError(f"besides {needed} the factorised ranker reads numeric item attributes only; "
                         f"{wrong} are not numeric: pass spec.select([...]) without them")
    if task.kind != "binary":
        raise ValueError(f"the factorised ranker predicts one binary task, got {task.kind!r}")
    if (graph is None) != (item_to_rows is None):
        raise ValueError("give both graph and item_to_rows, or neither (the no-graph baseline)")
    reg = keras.regularizers.L2(l2) if l2 > 0 else None
    inputs = {f.name: keras.Input(shape=(), dtype=f.dtype, name=f.name) for f in spec}
    user = _lookup(spec, user_column, inputs[user_column])
    n_users = spec[user_column].input_dim
    user_bias = keras.layers.Embedding(n_users, 1, embeddings_initializer="zeros", embeddings_regularizer=reg,
                                       name="user_bias")(user)
    terms = [user_bias]
    if price_column is not None:
        price = keras.layers.Normalization(axis=None, mean=spec[price_column].mean,
                                           variance=spec[price_column].variance, name=f"{price_column}_normalization")(
            ops.log1p(inputs[price_column]) if spec[price_column].log else inputs[price_column])
        price = keras.layers.Reshape((1,), name="price_column")(price)
        slope = keras.layers.Embedding(n_users, 1, embeddings_initializer="zeros", embeddings_regularizer=reg,
                                       name="user_price_slope")(user)
        terms += [keras.layers.Multiply(name="user_price")([slope, price]), price]
    item_side = []  # what the item tower reads: its graph vector and its attributes, never its id
    if others:
        item_side.append(keras.layers.Concatenate(name="item_attributes")(
            [keras.layers.Reshape((1,), name=f"{f.name}_column")(keras.layers.Normalization(
                axis=None, mean=f.mean, variance=f.variance, name=f"{f.name}_normalization")(
                ops.log1p(inputs[f.name]) if f.log else inputs[f.name])) for f in others]))
    if graph is not None or others or item_id:
        u = keras.layers.Embedding(n_users, factors, embeddings_regularizer=reg, name="user_vector",
                                   embeddings_initializer=keras.initializers.RandomNormal(stddev=0.05))(user)
    if graph is not None:
        graph = np.asarray(graph, dtype=np.float32)
        rows = np.asarray(item_to_rows)
        rows = rows[:, None] if rows.ndim == 1 else rows
        if graph.ndim != 2 or rows.ndim != 2 or rows.max() >= len(graph):
            raise ValueError(f"graph must be (rows, dim) and item_to_rows hold row ids below {len(graph)}; got "
                             f"shapes {graph.shape} and {rows.shape}")
        lookup = ItemEntityLookup(*rows.shape, name="graph_rows")
        entity, present = lookup(inputs[item_column])
        table = keras.layers.Embedding(
            len(graph), graph.shape[1], trainable=trainable_graph, name=GRAPH_TABLE,
            embeddings_regularizer=reg if trainable_graph and not unit_norm else None,
            embeddings_constraint=keras.constraints.UnitNorm(axis=1) if unit_norm else None)
        weights = present / ops.maximum(ops.sum(present, axis=-1, keepdims=True), 1.0)
        item_side.insert(0, ops.sum(table(entity) * ops.expand_dims(weights, -1), axis=-2))
    if item_side:
        g = item_side[0] if len(item_side) == 1 else keras.layers.Concatenate(name="item_side")(item_side)
        # both start at zero, so that a graph model starts as the no-graph model and learns what the graph adds
        v = keras.layers.Dense(factors, use_bias=False, kernel_initializer="zeros", name="item_to_taste")(g)
        terms.append(keras.layers.Dot(axes=-1, name="item_taste")([u, v]))
        terms.append(keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros", name="item_appeal")(g))
    if item_id:
        index = _lookup(spec, item_column, inputs[item_column])
        seen = SeenMask(id_dropout, name="item_seen")(index)
        n_items = spec[item_column].input_dim
        e = keras.layers.Embedding(n_items, factors, embeddings_regularizer=reg, name="item_vector",
                                   embeddings_initializer=keras.initializers.RandomNormal(stddev=0.05))(index)
        b = keras.layers.Embedding(n_items, 1, embeddings_initializer="zeros", embeddings_regularizer=reg,
                                   name="item_bias")(index)
        id_terms = keras.layers.Concatenate(name="id_terms")([keras.layers.Dot(axes=-1, name="id_taste")([u, e]), b])
        terms.append(keras.layers.Multiply(name="id_terms_if_seen")([id_terms, seen]))
    logit_terms = keras.layers.Concatenate(name="terms")(terms)
    output = keras.layers.Dense(1, activation="sigmoid", name=f"head_{task.name}")(logit_terms)
    if graph is None and not item_id:  # attributes only: the model never reads the item id, so it does not take it
        inputs = {k: v for k, v in inputs.items() if k != item_column}  # (Keras before 3.15 refuses unused inputs)
    model = keras.Model(inputs, {task.name: output}, name=name or "factorised_ranker")
    if graph is not None:
        lookup.set_table(rows)
        table.set_weights([graph])
    return model


def neighbour_table(index: TripleIndex, item_to_entity: np.ndarray, relations: list[str]) -> np.ndarray:
    """``(n_items, 1 + len(relations))``: each item's entity, then its tail on each of ``relations`` (its category,
    brand, shop); ``-1`` where it has none. A ranker that averages these rows reads the item's one-hop neighbours
    (KGCN's idea, one hop, mean aggregation), which a brand-new item shares with items the log has seen."""
    item_to_entity = np.asarray(item_to_entity)
    unknown = [r for r in relations if r not in list(index.relations)]
    if unknown:
        raise ValueError(f"relation(s) {unknown} are not in the graph; it has {list(index.relations)}")
    out = np.full((len(item_to_entity), 1 + len(relations)), -1, dtype=np.int64)
    out[:, 0] = item_to_entity
    linked = item_to_entity >= 0
    for k, name in enumerate(relations, start=1):
        triples = index.triples[index.triples[:, 1] == list(index.relations).index(name)]
        tails = pd.Series(triples[:, 2], index=triples[:, 0])
        tails = tails[~tails.index.duplicated()]  # an item with several tails on a relation: the first
        out[linked, k] = tails.reindex(item_to_entity[linked]).fillna(-1).astype(np.int64).to_numpy()
    return out
