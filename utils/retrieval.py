"""Two-tower retrieval trained jointly with a ranking task on shared embeddings, and its evaluation.

A shop serves in two stages: **retrieval** picks a few hundred candidates out of the whole catalogue
cheaply (a user embedding against every item embedding, top K by dot product), then a **ranker**
scores those few carefully. :class:`TwoTowerModel` is the first stage, built as the multi-task
lesson of the TensorFlow Recommenders tutorials did it (a retrieval task and a ranking task on the
same embeddings, each with a loss weight), in Keras 3 with keras-rs's retrieval layers:

    >>> query = tower(spec.select(USER_FEATURES), name="query_tower")
    >>> candidate = tower(spec.select(ITEM_FEATURES), name="candidate_tower")
    >>> model = TwoTowerModel(query, candidate, ranking_head(32), retrieval_weight=1.0, ranking_weight=1.0)
    >>> model.compile(keras.optimizers.Adam(1e-3))
    >>> model.fit(retrieval_dataset(train, spec, probability, 2048, shuffle=True), epochs=2, shuffle=False)

Training batches are impressions. The **retrieval loss** is an in-batch softmax over the clicked
impressions of the batch: each clicked row's item is the positive, every other item of the batch a
negative; the logits are corrected for how often an item lands in a batch (log-Q correction,
``keras_rs.layers.SamplingProbabilityCorrection``), and another row with the same item is not a
negative (``keras_rs.layers.RemoveAccidentalHits``). The **ranking loss** is the binary cross-entropy
of a click head on the concatenated user and item embeddings, over every impression.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import keras_rs
import numpy as np
import pandas as pd
import tensorflow as tf
from keras import ops

from utils.models import FeatureSpec, Task, build_inputs, feature_arrays, mlp, task_arrays
from utils.models import _batches as batches  # the course's fast, seeded row shuffler

__all__ = [
    "CANDIDATE_PROBABILITY",
    "TwoTowerModel",
    "candidate_embeddings",
    "in_batch_softmax_loss",
    "item_sampling_probability",
    "mask_accidental_hits",
    "query_embeddings",
    "recall_of_retrieved",
    "ranking_head",
    "retrieval_dataset",
    "retrieve",
    "tower",
]

_MASKED_LOGIT = -1e9
#: The key under which a training batch carries each row's item sampling probability (log-Q correction).
CANDIDATE_PROBABILITY = "candidate_probability"


def tower(spec: FeatureSpec, hidden: Sequence[int] = (64,), output_dim: int = 32, name: str = "tower") -> keras.Model:
    """A tower: raw features -> embeddings -> MLP -> a linear ``output_dim`` embedding (functional model).

    The preprocessing (vocabulary lookups, normalisation) is inside, so the tower takes raw values.
    """
    if output_dim < 1:
        raise ValueError(f"output_dim must be >= 1, got {output_dim}")
    inputs, x = build_inputs(spec)
    x = mlp(hidden, name=f"{name}_hidden")(x)
    return keras.Model(inputs, keras.layers.Dense(output_dim, name=f"{name}_output")(x), name=name)


def ranking_head(embedding_dim: int, hidden: Sequence[int] = (64,), name: str = "ranking_head") -> keras.Model:
    """The ranking task: concatenated user and item embeddings -> MLP -> click probability ``(n, 1)``."""
    both = keras.Input(shape=(2 * embedding_dim,), name="user_and_item_embedding")
    x = mlp(hidden, name=f"{name}_hidden")(both)
    return keras.Model(both, keras.layers.Dense(1, activation="sigmoid", name="click")(x), name=name)


@keras.saving.register_keras_serializable(package="course")
class TwoTowerModel(keras.Model):
    """Query and candidate towers with a retrieval loss and a ranking loss on their shared embeddings.

    ``call`` returns ``{"query": (n, d), "candidate": (n, d), "click": (n, 1)}``. The training loss is
    ``retrieval_weight * L_retrieval + ranking_weight * L_click``: ``L_retrieval`` the in-batch softmax
    cross-entropy averaged over the clicked rows (the positives), ``L_click`` Keras's binary
    cross-entropy averaged over the batch. A weight of 0 trains one task alone. Both losses are
    logged (``retrieval_loss``, ``click_loss``). ``temperature`` divides the retrieval logits.
    """

    def __init__(
        self,
        query_tower: keras.Model,
        candidate_tower: keras.Model,
        ranking: keras.Model,
        retrieval_weight: float = 1.0,
        ranking_weight: float = 1.0,
        temperature: float = 1.0,
        item_key: str = "item_id",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        for label, weight in (("retrieval_weight", retrieval_weight), ("ranking_weight", ranking_weight)):
            if not (np.isfinite(weight) and weight >= 0):
                raise ValueError(f"{label} must be a finite number >= 0, got {weight}")
        if retrieval_weight == 0 and ranking_weight == 0:
            raise ValueError("retrieval_weight and ranking_weight are both 0: nothing would be trained")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.query_tower = query_tower
        self.candidate_tower = candidate_tower
        self.ranking = ranking
        self.retrieval_weight = float(retrieval_weight)
        self.ranking_weight = float(ranking_weight)
        self.temperature = float(temperature)
        self.item_key = item_key
        if item_key not in self.candidate_tower.input:
            raise ValueError(f"the candidate tower has no input {item_key!r}; "
                             f"its inputs are {list(candidate_tower.input)}")
        self.query_features = list(query_tower.input)
        self.candidate_features = list(candidate_tower.input)
        self.correction = keras_rs.layers.SamplingProbabilityCorrection(name="log_q_correction")
        self.retrieval_tracker = keras.metrics.Mean(name="retrieval_loss")
        self.click_tracker = keras.metrics.Mean(name="click_loss")
        self.built = True  # the towers and the head are built models already

    def call(self, inputs: Mapping[str, Any], training: bool = False) -> dict[str, Any]:
        query = self.query_tower({k: inputs[k] for k in self.query_features}, training=training)
        candidate = self.candidate_tower({k: inputs[k] for k in self.candidate_features}, training=training)
        click = self.ranking(ops.concatenate([query, candidate], axis=-1), training=training)
        return {"query": query, "candidate": candidate, "click": click}

    def retrieval_loss(self, query: Any, candidate: Any, positive: Any, item_ids: Any,
                       probability: Any | None = None) -> Any:
        """In-batch softmax cross-entropy of the rows where ``positive`` is 1, averaged over them."""
        logits = ops.matmul(query, ops.transpose(candidate)) / self.temperature
        labels = ops.eye(ops.shape(logits)[0], dtype=logits.dtype)
        if probability is not None:  # log-Q: an item sampled into batches often is not a stronger negative
            logits = self.correction(logits, ops.broadcast_to(ops.reshape(probability, (1, -1)), ops.shape(logits)))
        logits = mask_accidental_hits(logits, item_ids)
        per_row = keras.losses.categorical_crossentropy(labels, logits, from_logits=True)
        positive = ops.cast(ops.reshape(positive, (-1,)), per_row.dtype)
        return ops.sum(per_row * positive) / ops.maximum(ops.sum(positive), 1.0)

    def compute_loss(self, x: Any = None, y: Any = None, y_pred: Any = None, sample_weight: Any = None,
                     training: bool = True) -> Any:
        click_true = ops.cast(y["click"], "float32")
        per_row = keras.losses.binary_crossentropy(click_true, y_pred["click"])
        if sample_weight is not None and sample_weight.get("click") is not None:
            per_row = per_row * ops.cast(ops.reshape(sample_weight["click"], ops.shape(per_row)), per_row.dtype)
        click_loss = ops.sum(per_row) / ops.cast(ops.shape(per_row)[0], per_row.dtype)
        probability = x.get(CANDIDATE_PROBABILITY) if isinstance(x, Mapping) else None
        retrieval = self.retrieval_loss(y_pred["query"], y_pred["candidate"], click_true, x[self.item_key], probability)
        self.retrieval_tracker.update_state(retrieval)
        self.click_tracker.update_state(click_loss)
        return self.retrieval_weight * retrieval + self.ranking_weight * click_loss

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({
            "query_tower": keras.saving.serialize_keras_object(self.query_tower),
            "candidate_tower": keras.saving.serialize_keras_object(self.candidate_tower),
            "ranking": keras.saving.serialize_keras_object(self.ranking),
            "retrieval_weight": self.retrieval_weight,
            "ranking_weight": self.ranking_weight,
            "temperature": self.temperature,
            "item_key": self.item_key,
        })
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TwoTowerModel:
        config = dict(config)
        for key in ("query_tower", "candidate_tower", "ranking"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def mask_accidental_hits(logits: Any, item_ids: Any) -> Any:
    """Set to a large negative number the logit of every off-diagonal column whose item is the row's own.

    Another row of the batch with the same item is not a negative. (keras-rs 0.4.0 has a layer for this,
    ``RemoveAccidentalHits``, but it adds about 1e-40 to those logits, which changes nothing.)
    """
    ids = ops.reshape(item_ids, (-1,))
    same = ops.equal(ops.expand_dims(ids, 1), ops.expand_dims(ids, 0))
    off_diagonal = ops.logical_not(ops.cast(ops.eye(ops.shape(ids)[0]), "bool"))
    return ops.where(ops.logical_and(same, off_diagonal), ops.cast(_MASKED_LOGIT, logits.dtype), logits)


def in_batch_softmax_loss(query: np.ndarray, candidate: np.ndarray, positive: np.ndarray, item_ids: np.ndarray,
                          probability: np.ndarray | None = None, temperature: float = 1.0) -> float:
    """NumPy reference of :meth:`TwoTowerModel.retrieval_loss` (the lesson's exercise).

    Logits ``q_i . c_j / temperature``, minus ``log p_j`` (log-Q) when sampling probabilities are given;
    other rows with the row's own item masked; softmax cross-entropy with the diagonal as the label,
    averaged over the rows where ``positive`` is 1.
    """
    q, c = np.asarray(query, np.float64), np.asarray(candidate, np.float64)
    logits = q @ c.T / temperature
    if probability is not None:
        logits = logits - np.log(np.clip(np.asarray(probability, np.float64), 1e-6, 1.0))[None, :]
    ids = np.asarray(item_ids).ravel()
    accidental = (ids[:, None] == ids[None, :]) & ~np.eye(len(ids), dtype=bool)
    logits = np.where(accidental, -np.inf, logits)
    top = logits.max(axis=1, keepdims=True)
    log_softmax = logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))
    per_row = -np.diag(log_softmax)
    weight = np.asarray(positive, np.float64).ravel()
    return float(np.sum(per_row * weight) / max(weight.sum(), 1.0))


def item_sampling_probability(frame: pd.DataFrame, item_col: str = "item_id") -> pd.Series:
    """How likely each item is to fill one slot of a training batch: its share of the rows of ``frame``."""
    if item_col not in frame.columns:
        raise KeyError(f"the frame has no column {item_col!r}; it has {list(frame.columns)}")
    if frame.empty:
        raise ValueError("the frame is empty: no item has a sampling probability")
    return frame[item_col].value_counts(normalize=True)


def retrieval_dataset(
    frame: pd.DataFrame,
    spec: FeatureSpec,
    probability: pd.Series | None = None,
    batch_size: int = 2048,
    shuffle: bool = False,
    seed: int = 0,
    item_col: str = "item_id",
) -> tf.data.Dataset:
    """Batches of ``(x, {"click": y}, {"click": w})`` for :class:`TwoTowerModel`, one row per impression.

    ``x`` holds the spec's features, plus each row's item sampling probability under
    :data:`CANDIDATE_PROBABILITY` when ``probability`` (from :func:`item_sampling_probability`) is given.
    Shuffled once per epoch like ``utils.models.make_multitask_dataset``; pass ``shuffle=False`` to ``fit``.
    """
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 (in-batch negatives), got {batch_size}")
    x = feature_arrays(frame, spec)
    if probability is not None:
        values = frame[item_col].map(probability).to_numpy(dtype=np.float64)
        if np.isnan(values).any():
            raise ValueError(f"{int(np.isnan(values).sum())} row(s) have an item without a sampling probability: "
                             "compute it on the frame you train on")
        x[CANDIDATE_PROBABILITY] = values.astype(np.float32)
    y, w = task_arrays(frame, [Task("click", "binary")])
    return batches((x, y, w), len(frame), batch_size, shuffle, seed)


def query_embeddings(model: TwoTowerModel, users: pd.DataFrame, batch_size: int = 8192) -> np.ndarray:
    """The query tower's embedding of each row of ``users`` (a frame with the user features)."""
    spec_names = model.query_features
    missing = [c for c in spec_names if c not in users.columns]
    if missing:
        raise KeyError(f"the users frame lacks the query feature(s) {missing}")
    x = {name: _column(users, name, model.query_tower.input[name].dtype) for name in spec_names}
    return model.query_tower.predict(x, batch_size=batch_size, verbose=0)


def candidate_embeddings(model: TwoTowerModel, items: pd.DataFrame, batch_size: int = 8192) -> np.ndarray:
    """The candidate tower's embedding of each row of ``items`` (a frame with the item features)."""
    missing = [c for c in model.candidate_features if c not in items.columns]
    if missing:
        raise KeyError(f"the items frame lacks the candidate feature(s) {missing}")
    x = {name: _column(items, name, model.candidate_tower.input[name].dtype) for name in model.candidate_features}
    return model.candidate_tower.predict(x, batch_size=batch_size, verbose=0)


def _column(frame: pd.DataFrame, name: str, dtype: str) -> np.ndarray:
    if "int" in str(dtype):
        return frame[name].to_numpy(dtype=np.int64, na_value=-1)
    return frame[name].to_numpy(dtype=np.float32)


def retrieve(queries: np.ndarray, candidates: np.ndarray, candidate_ids: np.ndarray, k: int = 100,
             batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` by dot product with ``keras_rs.layers.BruteForceRetrieval``: (scores, ids), best first."""
    queries, candidates = np.asarray(queries, np.float32), np.asarray(candidates, np.float32)
    if queries.ndim != 2 or candidates.ndim != 2 or queries.shape[1] != candidates.shape[1]:
        raise ValueError(f"queries {queries.shape} and candidates {candidates.shape} must be (n, d) and (m, d)")
    if len(candidate_ids) != len(candidates):
        raise ValueError(f"{len(candidate_ids)} candidate ids for {len(candidates)} candidates")
    if not 1 <= k <= len(candidates):
        raise ValueError(f"k must be in [1, {len(candidates)}] (the number of candidates), got {k}")
    layer = keras_rs.layers.BruteForceRetrieval(k=k, return_scores=True)
    layer.update_candidates(candidates, np.asarray(candidate_ids, np.int32))
    scores, ids = [], []
    for start in range(0, len(queries), batch_size):
        s, i = layer(queries[start:start + batch_size])
        scores.append(ops.convert_to_numpy(s))
        ids.append(ops.convert_to_numpy(i))
    return np.concatenate(scores), np.concatenate(ids)


def recall_of_retrieved(top_ids: np.ndarray, relevant: Sequence[set[int]] | Sequence[Sequence[int]]) -> float:
    """Recall of retrieved id lists: ``|top ∩ relevant| / |relevant|`` per query, averaged over the queries
    with at least one relevant id (NaN when none has one). ``top_ids`` is ``(n_queries, k)``."""
    top_ids = np.asarray(top_ids)
    if top_ids.ndim != 2 or len(top_ids) != len(relevant):
        raise ValueError(f"top_ids must be (n_queries, k) with one row per relevant set: got {top_ids.shape} "
                         f"for {len(relevant)} sets")
    recalls = [len(set(row.tolist()) & set(rel)) / len(set(rel))
               for row, rel in zip(top_ids, relevant, strict=True) if len(rel)]
    return float(np.mean(recalls)) if recalls else float("nan")
