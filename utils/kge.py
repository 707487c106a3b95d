"""Knowledge-graph embeddings in Keras: TransE and DistMult, negative sampling, ranking losses, export.

Each entity and relation gets a vector; a score function says how plausible a triple is:

* TransE (Bordes et al., 2013): a relation is a translation, ``score(h, r, t) = -||h + r - t||``;
* DistMult (Yang et al., 2015): a relation is a diagonal bilinear form, ``score = sum(h * r * t)``.

Training contrasts every true triple with ``k`` corrupted ones (its head or its tail replaced by a random
entity), under a margin ranking loss or a logistic loss. The models take triples shaped ``(..., 3)`` and
return scores shaped ``(...)``; a batch of ``(batch, 1 + k, 3)`` (the true triple first) and the losses
here make ``model.fit`` train them like any Keras model:

    >>> model = TransE(index.n_entities, index.n_relations, dim=32)               # doctest: +SKIP
    >>> model.compile(keras.optimizers.Adam(1e-2), loss=MarginRankingLoss(1.0))   # doctest: +SKIP
    >>> model.fit(negative_sampling_dataset(train, index.n_entities), epochs=20)  # doctest: +SKIP

This is a small teaching version; PyKEEN and DGL-KE train these models (and many more) at scale.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from keras import ops

from utils.graphs import TripleIndex, _check_triples, filtered_ranks, link_prediction_metrics
from utils.training import BestWeights

__all__ = [
    "KGE_MODELS",
    "DistMult",
    "FilteredMRR",
    "KGEModel",
    "LogisticKGELoss",
    "MarginRankingLoss",
    "RotatE",
    "TransE",
    "corrupt_triples",
    "distmult_score",
    "fit_kge",
    "item_entity_table",
    "item_features",
    "margin_ranking_loss_numpy",
    "negative_sampling_dataset",
    "transe_margin_loss_numpy",
    "transe_score",
    "transe_score_numpy",
]


# --------------------------------------------------------------------------------------------------
# Score functions
# --------------------------------------------------------------------------------------------------


def transe_score(h: Any, r: Any, t: Any) -> Any:
    """TransE's plausibility of triples from their vectors (last axis): ``-||h + r - t||_2``."""
    return -ops.sqrt(ops.sum(ops.square(h + r - t), axis=-1) + 1e-12)


def distmult_score(h: Any, r: Any, t: Any) -> Any:
    """DistMult's plausibility of triples from their vectors (last axis): ``sum(h * r * t)``."""
    return ops.sum(h * r * t, axis=-1)


def transe_score_numpy(h: Any, r: Any, t: Any) -> np.ndarray:
    """NumPy reference of :func:`transe_score`: ``-||h + r - t||_2`` over the last axis."""
    h, r, t = (np.asarray(v, dtype=np.float64) for v in (h, r, t))
    return -np.sqrt(np.sum((h + r - t) ** 2, axis=-1))


def margin_ranking_loss_numpy(positive: Any, negative: Any, margin: float = 1.0) -> float:
    """NumPy reference of :class:`MarginRankingLoss`: the mean over triples and their negatives of
    ``max(0, margin - score(true) + score(corrupted))``; ``positive`` is ``(n,)``, ``negative`` ``(n, k)``."""
    positive = np.asarray(positive, dtype=np.float64).reshape(-1, 1)
    negative = np.asarray(negative, dtype=np.float64).reshape(len(positive), -1)
    return float(np.mean(np.maximum(0.0, margin - positive + negative)))


def _all_distances(query: Any, table: Any) -> np.ndarray:
    """``-||q - e||_2`` for every query row and every entity row at once, ``(batch, n_entities)``.

    ``||q - e||^2 = ||q||^2 - 2 q.e + ||e||^2``: one matrix product instead of a ``(batch, n, dim)`` tensor.
    """
    squared = (ops.sum(ops.square(query), axis=-1, keepdims=True) - 2.0 * ops.matmul(query, ops.transpose(table))
               + ops.sum(ops.square(table), axis=-1)[None, :])
    return ops.convert_to_numpy(-ops.sqrt(ops.maximum(squared, 0.0) + 1e-12))


def transe_margin_loss_numpy(h: Any, r: Any, t: Any, h_neg: Any, t_neg: Any, margin: float = 1.0) -> float:
    """TransE's margin loss from vectors: true triples ``(n, d)`` and corrupted heads and tails ``(n, k, d)``
    (the relation is shared), the mean of ``max(0, margin + ||h + r - t|| - ||h' + r - t'||)``."""
    r = np.asarray(r, dtype=np.float64)
    return margin_ranking_loss_numpy(transe_score_numpy(h, r, t), transe_score_numpy(h_neg, r[:, None, :], t_neg),
                                     margin)


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="course")
class KGEModel(keras.Model):
    """An entity table and a relation table; subclasses define :meth:`score` and how to score every entity.

    ``call`` maps integer triples ``(..., 3)`` to scores ``(...)``. :meth:`score_tails` and
    :meth:`score_heads` score every entity at once for a batch of queries, as filtered ranking needs.
    """

    #: Short name used in tables and in ``KGE_MODELS``.
    kind = "base"
    #: Whether entity vectors are kept on the unit sphere unless ``unit_norm`` says otherwise.
    default_unit_norm = False

    def __init__(self, n_entities: int, n_relations: int, dim: int = 32, unit_norm: bool | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.unit_norm = self.default_unit_norm if unit_norm is None else bool(unit_norm)
        for name, value in (("n_entities", n_entities), ("n_relations", n_relations), ("dim", dim)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.n_entities, self.n_relations, self.dim = int(n_entities), int(n_relations), int(dim)
        scale = 1.0 / math.sqrt(self.dim)
        self.entity_embedding = keras.layers.Embedding(
            self.n_entities, self.dim, embeddings_initializer=keras.initializers.RandomNormal(stddev=scale),
            embeddings_constraint=self._entity_constraint(), name="entity_embedding")
        self.relation_embedding = keras.layers.Embedding(
            self.n_relations, self._relation_dim(), embeddings_initializer=self._relation_initializer(),
            name="relation_embedding")

    def _entity_constraint(self) -> keras.constraints.Constraint | None:
        return keras.constraints.UnitNorm(axis=1) if self.unit_norm else None

    def _relation_dim(self) -> int:
        return self.dim

    def _relation_initializer(self) -> keras.initializers.Initializer:
        return keras.initializers.RandomNormal(stddev=1.0 / math.sqrt(self.dim))

    def score(self, h: Any, r: Any, t: Any) -> Any:
        """Plausibility of triples from their head, relation and tail vectors (last axis)."""
        raise NotImplementedError

    def call(self, triples: Any) -> Any:
        triples = ops.cast(triples, "int32")
        return self.score(self.entity_embedding(triples[..., 0]), self.relation_embedding(triples[..., 1]),
                          self.entity_embedding(triples[..., 2]))

    def entity_vectors(self) -> np.ndarray:
        """The entity table, ``(n_entities, dim)``."""
        return ops.convert_to_numpy(self.entity_embedding.embeddings)

    def relation_vectors(self) -> np.ndarray:
        """The relation table, ``(n_relations, dim)``."""
        return ops.convert_to_numpy(self.relation_embedding.embeddings)

    def _vectors(self, entities: np.ndarray, relations: np.ndarray) -> tuple[Any, Any]:
        self._ensure_built()
        return (ops.take(self.entity_embedding.embeddings, ops.convert_to_tensor(entities, "int32"), axis=0),
                ops.take(self.relation_embedding.embeddings, ops.convert_to_tensor(relations, "int32"), axis=0))

    def _ensure_built(self) -> None:
        if not self.entity_embedding.built:
            self(np.zeros((1, 3), dtype=np.int32))

    def score_tails(self, heads: Any, relations: Any) -> np.ndarray:
        """Scores ``(batch, n_entities)`` of every entity as the tail of ``(head, relation, ?)``."""
        raise NotImplementedError

    def score_heads(self, relations: Any, tails: Any) -> np.ndarray:
        """Scores ``(batch, n_entities)`` of every entity as the head of ``(?, relation, tail)``."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(n_entities=self.n_entities, n_relations=self.n_relations, dim=self.dim,
                      unit_norm=self.unit_norm)
        return config


@keras.saving.register_keras_serializable(package="course")
class TransE(KGEModel):
    """TransE: ``h + r ≈ t`` for a true triple; score ``-||h + r - t||_2``.

    Entity vectors are kept on the unit sphere (a ``UnitNorm`` constraint after every update), as in the
    paper: without it the loss could be lowered by inflating the norms instead of arranging the vectors.
    """

    kind = "TransE"
    default_unit_norm = True

    def score(self, h: Any, r: Any, t: Any) -> Any:
        return transe_score(h, r, t)

    def score_tails(self, heads: Any, relations: Any) -> np.ndarray:
        h, r = self._vectors(np.asarray(heads), np.asarray(relations))
        return _all_distances(h + r, self.entity_embedding.embeddings)

    def score_heads(self, relations: Any, tails: Any) -> np.ndarray:
        t, r = self._vectors(np.asarray(tails), np.asarray(relations))
        return _all_distances(t - r, self.entity_embedding.embeddings)


@keras.saving.register_keras_serializable(package="course")
class DistMult(KGEModel):
    """DistMult: score ``sum(h * r * t)``, a bilinear form with a diagonal relation matrix.

    It is symmetric in ``h`` and ``t``, so it cannot tell ``(a, r, b)`` from ``(b, r, a)``: fine when
    entity types already say which side is which, a limit for relations such as ``complements``.
    ``l2`` adds ``l2 * mean(h^2 + r^2 + t^2)`` over a batch's vectors to the loss (keeps the scale in check).
    """

    kind = "DistMult"

    def __init__(self, n_entities: int, n_relations: int, dim: int = 32, l2: float = 0.0, **kwargs: Any) -> None:
        super().__init__(n_entities, n_relations, dim, **kwargs)
        if l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {l2}")
        self.l2 = float(l2)

    def score(self, h: Any, r: Any, t: Any) -> Any:
        return distmult_score(h, r, t)

    def call(self, triples: Any) -> Any:
        triples = ops.cast(triples, "int32")
        h = self.entity_embedding(triples[..., 0])
        r = self.relation_embedding(triples[..., 1])
        t = self.entity_embedding(triples[..., 2])
        if self.l2:
            self.add_loss(self.l2 * ops.mean(ops.sum(ops.square(h) + ops.square(r) + ops.square(t), axis=-1)))
        return self.score(h, r, t)

    def score_tails(self, heads: Any, relations: Any) -> np.ndarray:
        h, r = self._vectors(np.asarray(heads), np.asarray(relations))
        return ops.convert_to_numpy(ops.matmul(h * r, ops.transpose(self.entity_embedding.embeddings)))

    def score_heads(self, relations: Any, tails: Any) -> np.ndarray:
        t, r = self._vectors(np.asarray(tails), np.asarray(relations))
        return ops.convert_to_numpy(ops.matmul(t * r, ops.transpose(self.entity_embedding.embeddings)))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "l2": self.l2}


def _rotate(x: Any, phase: Any, conjugate: bool = False) -> Any:
    """Multiply complex vectors stored as ``[real | imaginary]`` halves by ``exp(i * phase)`` (or its conjugate)."""
    half = phase.shape[-1]
    re, im = x[..., :half], x[..., half:]
    cos, sin = ops.cos(phase), ops.sin(phase)
    if conjugate:
        sin = -sin
    return ops.concatenate([re * cos - im * sin, re * sin + im * cos], axis=-1)


@keras.saving.register_keras_serializable(package="course")
class RotatE(KGEModel):
    """RotatE (Sun et al., 2019): entities are complex vectors, a relation rotates them, ``h ∘ r ≈ t``;
    score ``gamma - ||h ∘ r - t||_2``.

    ``dim`` is the real width of an entity vector (``dim / 2`` complex numbers stored as real and imaginary
    halves), so its features are as wide as TransE's; a relation is ``dim / 2`` phases. Rotations can be
    inverted, composed and need not be symmetric, so RotatE models 1-to-1, inverse and compositional
    relations that TransE and DistMult cannot all handle. Entity vectors stay on the unit sphere, as
    TransE's (``unit_norm=False`` frees them). Train it with :class:`MarginRankingLoss` (``gamma`` then
    cancels out), or with :class:`LogisticKGELoss`, where ``gamma`` shifts the score into a logit.
    """

    kind = "RotatE"
    default_unit_norm = True

    def __init__(self, n_entities: int, n_relations: int, dim: int = 32, gamma: float = 1.0, **kwargs: Any) -> None:
        if int(dim) < 2 or int(dim) % 2:
            raise ValueError(f"RotatE needs an even dim (real and imaginary halves), got {dim}")
        super().__init__(n_entities, n_relations, dim, **kwargs)
        self.gamma = float(gamma)

    def _relation_dim(self) -> int:
        return self.dim // 2

    def _relation_initializer(self) -> keras.initializers.Initializer:
        return keras.initializers.RandomUniform(-math.pi, math.pi)

    def score(self, h: Any, r: Any, t: Any) -> Any:
        return self.gamma + transe_score(_rotate(h, r), 0.0, t)

    def score_tails(self, heads: Any, relations: Any) -> np.ndarray:
        h, r = self._vectors(np.asarray(heads), np.asarray(relations))
        return self.gamma + _all_distances(_rotate(h, r), self.entity_embedding.embeddings)

    def score_heads(self, relations: Any, tails: Any) -> np.ndarray:
        # |r| = 1, so ||h r - t|| = ||h - conj(r) t||: the head nearest to t rotated back.
        t, r = self._vectors(np.asarray(tails), np.asarray(relations))
        return self.gamma + _all_distances(_rotate(t, r, conjugate=True), self.entity_embedding.embeddings)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "gamma": self.gamma}


#: The embedding models by name.
KGE_MODELS: dict[str, type[KGEModel]] = {"TransE": TransE, "DistMult": DistMult, "RotatE": RotatE}


# --------------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------------


def _split_scores(y_pred: Any) -> tuple[Any, Any]:
    """Column 0 (the true triple) and columns 1.. (its corruptions) of a ``(batch, 1 + k)`` score matrix."""
    if len(y_pred.shape) != 2:
        raise ValueError(f"expected scores of shape (batch, 1 + k) with the true triple first, got {y_pred.shape}")
    return y_pred[:, :1], y_pred[:, 1:]


@keras.saving.register_keras_serializable(package="course")
class MarginRankingLoss(keras.losses.Loss):
    """``mean_k max(0, margin - s(true) + s(corrupted_k))`` per triple: a true triple must outscore each of
    its corruptions by ``margin`` (TransE's loss). ``y_pred`` is ``(batch, 1 + k)``; ``y_true`` is ignored."""

    def __init__(self, margin: float = 1.0, name: str = "margin_ranking", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        if margin <= 0:
            raise ValueError(f"margin must be > 0, got {margin}")
        self.margin = float(margin)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        positive, negative = _split_scores(y_pred)
        return ops.mean(ops.relu(self.margin - positive + negative), axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "margin": self.margin}


@keras.saving.register_keras_serializable(package="course")
class LogisticKGELoss(keras.losses.Loss):
    """``softplus(-s(true)) + mean_k softplus(s(corrupted_k))`` per triple: the log loss of calling the true
    triple true and its corruptions false (scores are logits). ``y_true`` is ignored."""

    def __init__(self, name: str = "logistic_kge", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        positive, negative = _split_scores(y_pred)
        return ops.softplus(-positive[:, 0]) + ops.mean(ops.softplus(negative), axis=-1)


# --------------------------------------------------------------------------------------------------
# Negative sampling
# --------------------------------------------------------------------------------------------------


def corrupt_triples(triples: Any, n_entities: int, num_negatives: int = 1, seed: int = 0) -> np.ndarray:
    """``(n, num_negatives, 3)`` corruptions of each triple: head or tail (each with probability 1/2)
    replaced by an entity drawn uniformly among the *other* ones, so a corruption never equals its triple.

    Corruptions may still be true triples found elsewhere in the graph (false negatives); with thousands
    of entities they are rare, and filtering them would cost more than they harm.
    """
    triples = _check_triples(triples, n_entities)
    if n_entities < 2:
        raise ValueError("corrupting needs at least 2 entities")
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
    rng = np.random.default_rng(seed)
    out = np.repeat(triples[:, None, :], num_negatives, axis=1)
    column = np.where(rng.random(out.shape[:2]) < 0.5, 0, 2)
    original = np.take_along_axis(out, column[..., None], axis=2)[..., 0]
    draw = rng.integers(0, n_entities - 1, size=out.shape[:2])
    replacement = draw + (draw >= original)  # skip the original entity: uniform over the others
    np.put_along_axis(out, column[..., None], replacement[..., None], axis=2)
    return out


def negative_sampling_dataset(triples: Any, n_entities: int, num_negatives: int = 16, batch_size: int = 1024,
                              seed: int = 0, shuffle: bool = True) -> tf.data.Dataset:
    """Batches ``(x, y)`` for ``fit``: ``x`` is ``(batch, 1 + k, 3)`` int32 (each true triple, then ``k``
    fresh corruptions as in :func:`corrupt_triples`, drawn anew every epoch), ``y`` zeros (unused).

    Shuffles whole index permutations once per epoch; reproducible from ``seed`` (and the global seed).
    """
    triples = _check_triples(triples, n_entities)
    if n_entities < 2:
        raise ValueError("corrupting needs at least 2 entities")
    if num_negatives < 1 or batch_size < 1:
        raise ValueError(f"need num_negatives >= 1 and batch_size >= 1, got {num_negatives} and {batch_size}")
    n, k = len(triples), int(num_negatives)
    table = tf.constant(triples.astype(np.int32))
    n_batches = -(-n // batch_size)

    def epoch(key: tf.Tensor) -> tf.data.Dataset:
        order = tf.range(n, dtype=tf.int64)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(order, seed=tf.stack([key, tf.constant(seed, tf.int64)]))
        starts = tf.data.Dataset.range(n_batches)
        return starts.map(lambda b: (order[b * batch_size:(b + 1) * batch_size], tf.stack([key, b])))

    def make(index: tf.Tensor, batch_seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        positive = tf.gather(table, index)
        m = tf.shape(positive)[0]
        side_seed, draw_seed = tf.unstack(tf.random.experimental.stateless_split(batch_seed, 2))
        corrupt_head = tf.random.stateless_uniform((m, k), seed=side_seed) < 0.5
        repeated = tf.repeat(positive[:, None, :], k, axis=1)
        original = tf.where(corrupt_head, repeated[..., 0], repeated[..., 2])
        draw = tf.random.stateless_uniform((m, k), seed=draw_seed, minval=0, maxval=n_entities - 1, dtype=tf.int32)
        replacement = draw + tf.cast(draw >= original, tf.int32)
        heads = tf.where(corrupt_head, replacement, repeated[..., 0])
        tails = tf.where(corrupt_head, repeated[..., 2], replacement)
        negative = tf.stack([heads, repeated[..., 1], tails], axis=-1)
        return tf.concat([positive[:, None, :], negative], axis=1), tf.zeros((m,), tf.float32)

    keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
    batches = keys.flat_map(epoch).apply(tf.data.experimental.assert_cardinality(n_batches))
    return batches.map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


class FilteredMRR(keras.callbacks.Callback):
    """After each epoch, the filtered MRR (heads and tails) of the model on held-out ``triples``, logged as
    ``name`` so that early stopping (:class:`utils.training.BestWeights`) and the history can follow it."""

    def __init__(self, triples: Any, known: Any, n_entities: int, name: str = "val_mrr",
                 batch_size: int = 512) -> None:
        super().__init__()
        self.triples = _check_triples(triples, n_entities)
        if len(self.triples) == 0:
            raise ValueError("no validation triples to rank")
        self.known = _check_triples(known, n_entities)
        self.n_entities, self.name, self.batch_size = int(n_entities), name, int(batch_size)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        ranks = filtered_ranks(self.model, self.triples, self.known, self.n_entities, batch_size=self.batch_size)
        if logs is not None:
            logs[self.name] = link_prediction_metrics(ranks)["mrr"]


def fit_kge(model: KGEModel, triples: Any, loss: keras.losses.Loss, epochs: int = 20, batch_size: int = 1024,
            num_negatives: int = 16, learning_rate: float = 1e-2, seed: int = 0, valid: Any = None,
            known: Any = None, patience: int = 5, max_valid: int = 2000,
            **fit_kwargs: Any) -> keras.callbacks.History:
    """Compile ``model`` with Adam and ``loss`` and fit it on ``triples`` with fresh negatives every epoch.

    With ``valid`` (held-out triples), training follows the course's protocol: after each epoch the filtered MRR
    on a seeded sample of at most ``max_valid`` of them is logged as ``val_mrr``; training stops once it has not
    improved for ``patience`` epochs (``epochs`` is then the cap) and the model keeps its best epoch's weights.
    The patience is longer than the rankers' (5, not 2): an MRR on a sample is noisy, and TransE's can stay flat
    for several epochs before it climbs again (on MovieLens's Freebase graph split by pair, patience 2 stopped it
    at epoch 7 with a test MRR of 0.054; patience 5 ran to epoch 28, 0.089).
    ``known`` is every true triple to filter from the ranking (train, valid and test; by default ``triples`` and
    ``valid``). The history's ``best_epoch`` says which epoch was kept (1-based; the last one without ``valid``).
    """
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)
    data = negative_sampling_dataset(triples, model.n_entities, num_negatives, batch_size, seed=seed)
    callbacks = list(fit_kwargs.pop("callbacks", []))
    keeper = None
    if valid is not None:
        valid = _check_triples(valid, model.n_entities)
        if max_valid < 1:
            raise ValueError(f"max_valid must be >= 1, got {max_valid}")
        if len(valid) > max_valid:
            valid = valid[np.sort(np.random.default_rng(seed).choice(len(valid), max_valid, replace=False))]
        known = np.concatenate([_check_triples(triples), valid]) if known is None else known
        keeper = BestWeights({"val_mrr": "max"}, patience=patience)
        callbacks = [FilteredMRR(valid, known, model.n_entities), keeper, *callbacks]
    elif known is not None:
        raise ValueError("known is for filtering the validation ranks: pass valid as well")
    history = model.fit(data, epochs=epochs, verbose=fit_kwargs.pop("verbose", 0), shuffle=False,
                        callbacks=callbacks, **fit_kwargs)
    history.best_epoch = keeper.best_epoch["val_mrr"] if keeper is not None else len(history.epoch)
    return history


# --------------------------------------------------------------------------------------------------
# Export as item features
# --------------------------------------------------------------------------------------------------


def item_entity_table(index: TripleIndex, item_entity: pd.Series | dict[int, str]) -> np.ndarray:
    """An int array indexed by item id: the entity id of each item, ``-1`` for ids absent from the graph.

    ``item_entity`` maps item id to entity name (ShopSim: ``item:<id>``; MovieLens: the Freebase id).
    """
    series = pd.Series(item_entity)
    if len(series) == 0:
        raise ValueError("item_entity is empty: map at least one item id to its entity name")
    ids = series.index.to_numpy()
    if not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0:
        raise TypeError("item_entity must be indexed by non-negative integer item ids")
    position = pd.Index(index.entities).get_indexer(series.astype(str).to_numpy())
    table = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
    table[ids] = position
    return table


def item_features(vectors: np.ndarray | KGEModel, index: TripleIndex, item_entity: pd.Series | dict[int, str],
                  prefix: str = "kg_") -> pd.DataFrame:
    """The entity vectors of the items as a feature table indexed by ``item_id`` (columns ``kg_0``, ...).

    An item without an entity in the graph gets a row of zeros; ``table.attrs["missing"]`` counts them.
    """
    if isinstance(vectors, KGEModel):
        vectors = vectors.entity_vectors()
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != index.n_entities:
        raise ValueError(f"expected one vector per entity, shape ({index.n_entities}, dim), got {vectors.shape}")
    series = pd.Series(item_entity)
    position = pd.Index(index.entities).get_indexer(series.astype(str).to_numpy())
    values = np.where(position[:, None] >= 0, vectors[np.maximum(position, 0)], 0.0).astype(np.float32)
    table = pd.DataFrame(values, index=pd.Index(series.index, name="item_id"),
                         columns=[f"{prefix}{j}" for j in range(vectors.shape[1])])
    table.attrs["missing"] = int((position < 0).sum())
    return table
