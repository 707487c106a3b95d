"""Two-tower retrieval trained jointly with a ranking task on shared embeddings, and its evaluation.

A shop serves in two stages: **retrieval** picks a few hundred candidates out of the whole catalogue
cheaply (a user embedding against every item embedding, top K by dot product), then a **ranker**
scores those few carefully. :class:`TwoTowerModel` is the first stage, built as the multi-task
lesson of the TensorFlow Recommenders tutorials did it (a retrieval task and a ranking task on the
same embeddings, each with a loss weight), in Keras 3 with keras-rs's retrieval layers. The query tower can
read the user's earlier clicks (:func:`click_history`, pooled by :class:`HistoryPooling`):

    >>> history = click_history(train[train["click"] == 1], rows, length=20)   # clicks strictly before each row
    >>> query = tower(spec.select(PROFILE), name="query_tower", history_items=train_items)
    >>> candidate = tower(spec.select(ITEM_FEATURES), name="candidate_tower")
    >>> model = TwoTowerModel(query, candidate, ranking_head(32), retrieval_weight=1.0, ranking_weight=1.0)
    >>> model.compile(keras.optimizers.Adam(1e-3))
    >>> data = retrieval_dataset(rows, spec, probability, 4096, shuffle=True, history=history)
    >>> keeper = fit_two_tower(model, rows, data, [RecallAtKLog(users, user_history, relevant, items, 100)])

Training batches are impressions. The **retrieval loss** is an in-batch softmax over the clicked
impressions of the batch: each clicked row's item is the positive, every other item of the batch a
negative; the logits are corrected for how often an item lands in a batch (log-Q correction,
``keras_rs.layers.SamplingProbabilityCorrection``), and another row with the same item is not a
negative (:func:`mask_accidental_hits`). The **ranking loss** is the binary cross-entropy
of a click head on the concatenated user and item embeddings, over every impression. :func:`fit_two_tower`
trains on the course's protocol: the click bias at the base rate, early stopping on validation Recall@K
(and click AUC), the best weights restored.
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
from utils.training import BestWeights, base_rate_biases
from utils.models import _batches as batches  # the course's fast, seeded row shuffler

__all__ = [
    "CANDIDATE_PROBABILITY",
    "HISTORY",
    "ClickAUCLog",
    "HistoryPooling",
    "RecallAtKLog",
    "fit_two_tower",
    "item_knn_scores",
    "recall_by_group",
    "recall_per_query",
    "top_k_ids",
    "click_history",
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
    "with_log_prior",
]

_MASKED_LOGIT = -1e9
#: The key under which a training batch carries each row's item sampling probability (log-Q correction).
CANDIDATE_PROBABILITY = "candidate_probability"
#: The query tower's input of the user's last clicked items, ``(n, length)`` item ids, ``-1`` where there is none.
HISTORY = "history"


def click_history(clicks: pd.DataFrame, rows: pd.DataFrame, length: int = 20, user_col: str = "user_id",
                  item_col: str = "item_id", time_col: str = "timestamp") -> np.ndarray:
    """Per row of ``rows``, the ids of that user's last ``length`` clicks in ``clicks`` made strictly before the
    row's time (oldest first, ``-1``-padded on the left): ``(len(rows), length)`` int64.

    Strictly before: a training click never sees itself, and a test row sees only what happened before it.
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    for frame, what in ((clicks, "clicks"), (rows, "rows")):
        missing = [c for c in (user_col, time_col) if c not in frame.columns]
        if missing:
            raise KeyError(f"{what} lack column(s) {missing}")
    if item_col not in clicks.columns:
        raise KeyError(f"clicks lack the column {item_col!r}")
    order = np.lexsort((clicks[time_col].to_numpy(), clicks[user_col].to_numpy()))
    c_user = clicks[user_col].to_numpy(np.int64)[order]
    c_time = clicks[time_col].to_numpy(np.int64)[order]
    c_item = clicks[item_col].to_numpy(np.int64)[order]
    r_user, r_time = rows[user_col].to_numpy(np.int64), rows[time_col].to_numpy(np.int64)
    # Position of (user, time) in the sorted clicks: clicks of the same user strictly earlier lie before it.
    scale = int(max(c_time.max(initial=0), r_time.max(initial=0))) + 1
    end = np.searchsorted(c_user * scale + c_time, r_user * scale + r_time, side="left")
    start = np.searchsorted(c_user, r_user, side="left")
    index = end[:, None] - length + np.arange(length)[None, :]
    valid = index >= start[:, None]
    padded = np.concatenate([c_item, [-1]])
    return np.where(valid, padded[np.where(valid, index, len(c_item))], -1).astype(np.int64)


@keras.saving.register_keras_serializable(package="course")
class HistoryPooling(keras.layers.Layer):
    """The mean embedding of a user's clicked items, ``(n, length)`` ids -> ``(n, dim)``, padding (``-1``) and
    unknown items left out; all zeros for a user without history, so the tower falls back on the profile."""

    def __init__(self, vocabulary: Sequence[int], dim: int = 32, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.vocabulary = [int(v) for v in vocabulary]
        if not self.vocabulary:
            raise ValueError("the history's item vocabulary is empty")
        self.dim = int(dim)
        self.lookup = keras.layers.IntegerLookup(vocabulary=self.vocabulary, num_oov_indices=1, mask_token=None,
                                                 name="history_lookup")
        self.embedding = keras.layers.Embedding(len(self.vocabulary) + 1, self.dim, name="history_embedding")

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.embedding.build((None,))
        self.built = True

    def call(self, ids: Any) -> Any:
        index = self.lookup(ids)
        known = ops.cast(ops.greater(index, 0), "float32")  # index 0: padding or an item unseen in training
        vectors = self.embedding(index) * ops.expand_dims(known, -1)
        return ops.sum(vectors, axis=1) / ops.maximum(ops.sum(known, axis=1, keepdims=True), 1.0)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (input_shape[0], self.dim)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "vocabulary": self.vocabulary, "dim": self.dim}


def tower(spec: FeatureSpec, hidden: Sequence[int] = (64,), output_dim: int = 32, name: str = "tower",
          history_items: Sequence[int] | None = None, history_length: int = 20, normalise: bool = False) -> keras.Model:
    """A tower: raw features -> embeddings -> MLP -> a linear ``output_dim`` embedding (functional model).

    The preprocessing (vocabulary lookups, normalisation) is inside, so the tower takes raw values. With
    ``history_items`` (the training items) it also takes :data:`HISTORY`, the user's last clicked items, pooled
    by :class:`HistoryPooling`; ``normalise`` L2-normalises the output (dot products become cosines).
    """
    if output_dim < 1:
        raise ValueError(f"output_dim must be >= 1, got {output_dim}")
    inputs, x = build_inputs(spec)
    if history_items is not None:
        inputs[HISTORY] = keras.Input(shape=(history_length,), dtype="int64", name=HISTORY)
        pooled = HistoryPooling(history_items, output_dim, name=f"{name}_history")(inputs[HISTORY])
        x = keras.layers.Concatenate(name=f"{name}_with_history")([x, pooled])
    x = mlp(hidden, name=f"{name}_hidden")(x)
    out = keras.layers.Dense(output_dim, name=f"{name}_output")(x)
    if normalise:
        out = keras.layers.UnitNormalization(name=f"{name}_l2")(out)
    return keras.Model(inputs, out, name=name)


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
    history: np.ndarray | None = None,
) -> tf.data.Dataset:
    """Batches of ``(x, {"click": y}, {"click": w})`` for :class:`TwoTowerModel`, one row per impression.

    ``x`` holds the spec's features, plus each row's item sampling probability under
    :data:`CANDIDATE_PROBABILITY` when ``probability`` (from :func:`item_sampling_probability`) is given, and
    :data:`HISTORY` when ``history`` (from :func:`click_history`, one row per row of ``frame``) is. Shuffled once per epoch like ``utils.models.make_multitask_dataset``; pass ``shuffle=False`` to ``fit``.
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
    if history is not None:
        if len(history) != len(frame):
            raise ValueError(f"history has {len(history)} rows for a frame of {len(frame)}")
        x[HISTORY] = np.asarray(history, np.int64)
    y, w = task_arrays(frame, [Task("click", "binary")])
    return batches((x, y, w), len(frame), batch_size, shuffle, seed)


def query_embeddings(model: TwoTowerModel, users: pd.DataFrame, history: np.ndarray | None = None,
                     batch_size: int = 8192) -> np.ndarray:
    """The query tower's embedding of each row of ``users`` (a frame with the user features), with each row's
    click history (:func:`click_history`) when the tower takes one."""
    spec_names = [name for name in model.query_features if name != HISTORY]
    missing = [c for c in spec_names if c not in users.columns]
    if missing:
        raise KeyError(f"the users frame lacks the query feature(s) {missing}")
    x = {name: _column(users, name, model.query_tower.input[name].dtype) for name in spec_names}
    if HISTORY in model.query_features:
        if history is None or len(history) != len(users):
            raise ValueError("this query tower takes each user's click history: pass history, one row per user")
        x[HISTORY] = np.asarray(history, np.int64)
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


def with_log_prior(queries: np.ndarray, candidates: np.ndarray, item_log_prior: np.ndarray,
                   temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Query and candidate vectors one column longer, so that their dot product is ``q . c + temperature * log p``
    (and the retrieval logit ``q . c / temperature + log p``): an exposure prior added back at serving to a model
    trained without log-Q correction, with the same exact top-K search."""
    if len(item_log_prior) != len(candidates):
        raise ValueError(f"{len(item_log_prior)} prior values for {len(candidates)} candidates")
    ones = np.ones((len(queries), 1), np.float32)
    prior = temperature * np.asarray(item_log_prior, np.float32).reshape(-1, 1)
    return (np.concatenate([np.asarray(queries, np.float32), ones], 1),
            np.concatenate([np.asarray(candidates, np.float32), prior], 1))


def recall_per_query(top_ids: np.ndarray, relevant: Sequence[set[int]] | Sequence[Sequence[int]]) -> np.ndarray:
    """Per query, ``|top ∩ relevant| / |relevant|`` (NaN where nothing is relevant). ``top_ids`` is ``(n_queries, k)``."""
    top_ids = np.asarray(top_ids)
    if top_ids.ndim != 2 or len(top_ids) != len(relevant):
        raise ValueError(f"top_ids must be (n_queries, k) with one row per relevant set: got {top_ids.shape} "
                         f"for {len(relevant)} sets")
    return np.array([len(set(row.tolist()) & set(rel)) / len(set(rel)) if len(rel) else np.nan
                     for row, rel in zip(top_ids, relevant, strict=True)])


def recall_of_retrieved(top_ids: np.ndarray, relevant: Sequence[set[int]] | Sequence[Sequence[int]]) -> float:
    """Recall of retrieved id lists: ``|top ∩ relevant| / |relevant|`` per query, averaged over the queries
    with at least one relevant id (NaN when none has one). ``top_ids`` is ``(n_queries, k)``."""
    recalls = recall_per_query(top_ids, relevant)
    return float(np.nanmean(recalls)) if np.isfinite(recalls).any() else float("nan")


def recall_by_group(recalls: Mapping[str, np.ndarray], group: np.ndarray, baseline: str | None = None,
                    n_boot: int = 500, seed: int = 0, overall: bool = True) -> pd.DataFrame:
    """Mean per-query recall of each method in each group of queries (first "all users" when ``overall``), with
    its bootstrap standard error (queries resampled within the group), and, given a ``baseline``, each method's
    paired difference from it with the error of that difference (the same resamples, so shared noise cancels)."""
    group = np.asarray(group)
    if baseline is not None and baseline not in recalls:
        raise KeyError(f"baseline {baseline!r} is not among the methods {list(recalls)}")
    rng = np.random.default_rng(seed)
    rows = []
    groups = [("all users", np.arange(len(group)))] if overall else []
    groups += [(g, np.flatnonzero(group == g)) for g in sorted(pd.unique(group))]
    for g, members in groups:
        draws = rng.integers(0, len(members), (n_boot, len(members)))
        for name, r in recalls.items():
            if len(r) != len(group):
                raise ValueError(f"{name}: {len(r)} recalls for {len(group)} queries")
            x = np.asarray(r, np.float64)[members]
            row = {"group": g, "method": name, "users": len(members), "recall": x.mean(),
                   "± se": x[draws].mean(axis=1).std()}
            if baseline is not None:
                diff = x - np.asarray(recalls[baseline], np.float64)[members]
                row[f"vs {baseline}"], row["± se of difference"] = diff.mean(), diff[draws].mean(axis=1).std()
            rows.append(row)
    return pd.DataFrame(rows).set_index(["group", "method"])


def top_k_ids(scores: np.ndarray, candidate_ids: np.ndarray, k: int = 100) -> np.ndarray:
    """The ``k`` best-scored candidate ids per row of a ``(n_queries, n_candidates)`` score matrix, best first."""
    scores = np.asarray(scores)
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"k must be in [1, {scores.shape[1]}], got {k}")
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.asarray(candidate_ids)[np.take_along_axis(part, order, axis=1)]


def item_knn_scores(history: np.ndarray, clicks: pd.DataFrame, candidate_ids: np.ndarray,
                    user_col: str = "user_id", item_col: str = "item_id") -> np.ndarray:
    """Item-kNN: per user, the summed cosine similarity (on the user x item co-click matrix of ``clicks``) of each
    candidate to the items of the user's ``history`` (:func:`click_history`); the user's own history items
    stay candidates. ``(n_users, n_candidates)``. In practice: implicit's ItemItemRecommender, or a
    nearest-neighbour index over item vectors."""
    from scipy import sparse
    from sklearn.metrics.pairwise import cosine_similarity

    candidate_ids = np.asarray(candidate_ids)
    column = pd.Series(np.arange(len(candidate_ids)), index=candidate_ids)
    pairs = clicks[[user_col, item_col]].drop_duplicates()
    pairs = pairs[pairs[item_col].isin(column.index)]
    user_codes, _ = pd.factorize(pairs[user_col])
    matrix = sparse.csr_matrix((np.ones(len(pairs)), (user_codes, column.loc[pairs[item_col]].to_numpy())),
                               shape=(user_codes.max(initial=-1) + 1, len(candidate_ids)))
    similarity = cosine_similarity(matrix.T, dense_output=False).tocsr()  # item x item
    history = np.asarray(history)
    known = np.isin(history, candidate_ids)
    rows = np.repeat(np.arange(len(history)), history.shape[1])[known.ravel()]
    cols = column.reindex(history.ravel()[known.ravel()]).to_numpy()
    profile = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(history), len(candidate_ids)))
    return np.asarray((profile @ similarity).todense())


class RecallAtKLog(keras.callbacks.Callback):
    """After every epoch, write the Recall@K of retrieval on held-out clicks into the logs (``val_recall_at_<k>``),
    so that :class:`utils.training.BestWeights` can early-stop on what retrieval is for. Put it before BestWeights.

    ``users`` holds the query features (one row per user), ``history`` their click histories (or None),
    ``relevant`` each user's held-out clicked items, ``items`` the catalogue to retrieve from.
    """

    def __init__(self, users: pd.DataFrame, history: np.ndarray | None, relevant: Sequence[set[int]],
                 items: pd.DataFrame, k: int = 100, item_log_prior: np.ndarray | None = None) -> None:
        super().__init__()
        if len(users) != len(relevant):
            raise ValueError(f"{len(users)} users for {len(relevant)} relevant sets")
        self.users, self.history, self.relevant, self.items, self.k = users, history, list(relevant), items, k
        self.item_log_prior = item_log_prior
        self.name = f"val_recall_at_{k}"

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        queries = query_embeddings(self.model, self.users, self.history)
        candidates = candidate_embeddings(self.model, self.items)
        if self.item_log_prior is not None:
            queries, candidates = with_log_prior(queries, candidates, self.item_log_prior, self.model.temperature)
        _, top = retrieve(queries, candidates, self.items["item_id"].to_numpy(), self.k)
        if logs is not None:
            logs[self.name] = recall_of_retrieved(top, self.relevant)


class ClickAUCLog(keras.callbacks.Callback):
    """After every epoch, write the AUC of the ranking head on held-out impressions into the logs
    (``val_click_auc``), for :class:`utils.training.BestWeights`. Put it before BestWeights."""

    def __init__(self, x: Mapping[str, np.ndarray], clicks: np.ndarray) -> None:
        super().__init__()
        self.x, self.clicks, self.name = x, np.asarray(clicks), "val_click_auc"

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        from sklearn.metrics import roc_auc_score

        p = self.model.predict(self.x, batch_size=16384, verbose=0)["click"].ravel()
        if logs is not None:
            logs[self.name] = float(roc_auc_score(self.clicks, p))


def fit_two_tower(model: TwoTowerModel, rows: pd.DataFrame, train_data: tf.data.Dataset,
                  monitors: Sequence[keras.callbacks.Callback], max_epochs: int = 10,
                  patience: int = 1) -> BestWeights:
    """The course's protocol for a :class:`TwoTowerModel`: the click head's bias at the base rate of ``rows``,
    early stopping on the validation logs that ``monitors`` write (Recall@K, click AUC: higher is better), the
    best weights of the first monitor restored. Returns the BestWeights keeper (best epochs, every monitor's
    weights)."""
    if not monitors:
        raise ValueError("give at least one monitor callback (RecallAtKLog, ClickAUCLog)")
    head = model.ranking.get_layer("click")
    head.bias.assign(base_rate_biases([Task("click", "binary")], rows)["click"].astype("float32"))
    keeper = BestWeights({m.name: "max" for m in monitors}, patience=patience)
    model.fit(train_data, epochs=max_epochs, verbose=0, shuffle=False, callbacks=[*monitors, keeper])
    return keeper
