"""Meta-learning for cold-start users: every user is a task with a support set (what they did first) and a query
set (what they did later); MAML, first-order MAML and plain fine-tuning adapt the same personal weights.

    >>> histories = UserHistories(log, spec)                 # every user's impressions in time order, once
    >>> users = histories.eligible(k_max=20, query_size=50)
    >>> episodes = histories.episodes(users, k=5, query_size=50, query_after=20, max_support=64)
    >>> model = cold_start_model(spec, taste_features=["category_id", "brand_id"])   # fit it: the global model
    >>> learner = MetaLearner(model, inner_lr=0.03, inner_steps=3, order="second", frozen=global_layers(model))
    >>> learner.fit({5: episodes}, steps=300)
    >>> probs = adapt_and_predict(model, episodes, lr=0.03, steps=3)   # (n_users, query_size)

The model follows MeLU (Lee et al., KDD 2019) in keeping every embedding fixed in the inner loop and adapting only
the decision weights, here the last, personal layer (as ANIL does, Raghu et al., ICLR 2020): a user's taste
vector ``w`` and click propensity ``b`` on top of an item vector ``t`` and a global logit ``g``. The head's forward
pass is a pure function of an explicit weight list (``keras.ops`` on tensors), so the inner loop holds one copy of
the weights per user on a leading task axis and differentiates through itself with nested ``tf.GradientTape``\\ s:
second-order MAML (Finn, Abbeel and Levine, ICML 2017). Libraries such as learn2learn (PyTorch) or ``jax.vmap``
over ``jax.grad`` package the same idea; here it is written out to be read. The tapes tie this module to Keras 3
on the TensorFlow backend, the course's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from utils import metrics as course_metrics
from utils.models import FeatureSpec, Task, encode_features, feature_arrays
from utils.training import base_rate_biases

__all__ = [
    "TASTE_PREFIX",
    "AdaptiveHead",
    "Episodes",
    "MetaLearner",
    "PersonalLogit",
    "UserHistories",
    "adapt",
    "adapt_and_predict",
    "adapt_logistic",
    "cold_start_model",
    "encode_episodes",
    "fomaml_gradient_logistic",
    "global_layers",
    "head_from_user_vectors",
    "ideal_kshot_curve",
    "init_head_bias",
    "kshot_scores",
    "maml_gradient_logistic",
    "split_model",
    "shopsim_taste_truth",
    "split_users",
    "task_losses",
    "taste_posterior_scores",
    "with_user_vectors",
]

Order = Literal["second", "first"]
#: Layers of the personal path of :func:`cold_start_model` start with this prefix.
TASTE_PREFIX = "taste_"


# --------------------------------------------------------------------------------------------------
# Users as tasks
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Episodes:
    """One K-shot task per user: padded support and query arrays with masks (1 = a real impression, 0 = padding).

    ``support[f]`` is ``(n_users, S)`` and ``query[f]`` is ``(n_users, Q)`` for each model feature ``f``; labels and
    masks are float32 of the same shapes. Padding never counts in a loss or a metric. ``support_rows`` and
    ``query_rows`` give each cell's row position in the frame the episodes were cut from (-1 for padding), so any
    other column can be laid out on the same grid.
    """

    users: np.ndarray
    k: int
    support: dict[str, np.ndarray]
    support_y: np.ndarray
    support_mask: np.ndarray
    query: dict[str, np.ndarray]
    query_y: np.ndarray
    query_mask: np.ndarray
    support_rows: np.ndarray
    query_rows: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    def take(self, index: Any) -> Episodes:
        """The episodes of a subset of users (an index array or a slice)."""
        return Episodes(
            users=self.users[index], k=self.k,
            support={f: v[index] for f, v in self.support.items()},
            support_y=self.support_y[index], support_mask=self.support_mask[index],
            query={f: v[index] for f, v in self.query.items()},
            query_y=self.query_y[index], query_mask=self.query_mask[index],
            support_rows=self.support_rows[index], query_rows=self.query_rows[index],
        )

    def on_grid(self, values: Any, part: Literal["support", "query"]) -> np.ndarray:
        """A per-row array of the source frame (``(n_rows, ...)``) laid out on the support or query grid."""
        rows = self.support_rows if part == "support" else self.query_rows
        return np.asarray(values)[np.maximum(rows, 0)]

    @staticmethod
    def concat(parts: Sequence[Episodes]) -> Episodes:
        """Episodes of the same K and widths stacked (e.g. several support windows of the same users)."""
        if not parts:
            raise ValueError("nothing to concatenate")
        first = parts[0]
        for p in parts[1:]:
            if p.k != first.k or p.support_y.shape[1] != first.support_y.shape[1] or \
                    p.query_y.shape[1] != first.query_y.shape[1]:
                raise ValueError("episodes to concatenate need the same k, support width and query width")

        def stack(name: str) -> np.ndarray:
            return np.concatenate([getattr(p, name) for p in parts])

        return Episodes(
            users=stack("users"), k=first.k,
            support={f: np.concatenate([p.support[f] for p in parts]) for f in first.support},
            support_y=stack("support_y"), support_mask=stack("support_mask"),
            query={f: np.concatenate([p.query[f] for p in parts]) for f in first.query},
            query_y=stack("query_y"), query_mask=stack("query_mask"),
            support_rows=stack("support_rows"), query_rows=stack("query_rows"),
        )

    def summary(self) -> dict[str, float]:
        """Sizes: users, padded widths, mean real support and query impressions, click rates of each."""
        s, q = self.support_mask, self.query_mask
        return {
            "k": self.k, "users": len(self), "support width": s.shape[1],
            "support impressions": float(s.sum(1).mean()),
            "support CTR": float((self.support_y * s).sum() / s.sum()),
            "query width": q.shape[1], "query impressions": float(q.sum(1).mean()),
            "query CTR": float((self.query_y * q).sum() / q.sum()),
        }


class UserHistories:
    """Every user's impressions in time order with the model inputs, prepared once; episodes are cut from it.

    A new user is a task: their first ``k`` clicks, with the items they skipped on the way, are the support set
    (what a shop knows after K clicks); their later impressions are the query set (what it must rank next).
    Without a ``spec`` it holds no model inputs: enough to find the eligible users before a spec is fitted.
    """

    def __init__(self, frame: pd.DataFrame, spec: FeatureSpec | None = None) -> None:
        missing = [c for c in ("user_id", "timestamp", "click") if c not in frame.columns]
        if missing:
            raise KeyError(f"column(s) {missing} not in the frame; user histories need user_id, timestamp, click")
        keys = ["user_id", "timestamp"] + (["impression_id"] if "impression_id" in frame.columns else [])
        ordered = frame.reset_index(drop=True).sort_values(keys, kind="stable")
        self.spec = spec
        self.position = ordered.index.to_numpy()  # row positions in the frame given
        self.user = ordered["user_id"].to_numpy()
        self.click = ordered["click"].to_numpy(dtype=np.int64)
        self.features = feature_arrays(ordered, spec) if spec is not None else {}
        self.users, first_row, self._group = np.unique(self.user, return_index=True, return_inverse=True)
        self._first_row = first_row
        clicks_so_far = np.cumsum(self.click)
        # Clicks the user made strictly before each row.
        self.clicks_before = clicks_so_far - self.click - (clicks_so_far - self.click)[first_row][self._group]

    def __len__(self) -> int:
        return len(self.user)

    def _rank(self, selected: np.ndarray) -> np.ndarray:
        """For each row, how many selected rows of the same user come before it (meaningful on selected rows)."""
        count = np.cumsum(selected)
        before_user = (count - selected)[self._first_row][self._group]
        return count - selected - before_user

    def _query_rows(self, selected: np.ndarray, query_after: int, query_size: int) -> np.ndarray:
        later = selected & (self.clicks_before >= query_after)
        return later & (self._rank(later) < query_size)

    def eligible(self, k_max: int, query_size: int) -> np.ndarray:
        """Users with at least ``k_max`` clicks whose query set (the next ``query_size`` impressions after the
        ``k_max``-th click) holds a click and a skip: those a K-shot curve up to ``k_max`` can use and score."""
        _check_sizes(k_max, k_max, query_size)
        query = self._query_rows(np.ones(len(self), dtype=bool), k_max, query_size)
        n = np.bincount(self._group, weights=query, minlength=len(self.users))
        clicks = np.bincount(self._group, weights=query * self.click, minlength=len(self.users))
        return self.users[(clicks > 0) & (clicks < n)]

    def episodes(self, users: Sequence[int], k: int, query_size: int, query_after: int | None = None,
                 max_support: int | None = None, skip_clicks: int = 0) -> Episodes:
        """K-shot click tasks of ``users``.

        Support: the impressions after the user's ``skip_clicks``-th click (0: from their first impression) up to
        and including the next ``k`` clicks. Beyond ``max_support`` impressions the oldest skips are dropped; all
        ``k`` clicks stay. Query: the next ``query_size`` impressions after the ``query_after``-th click (default:
        right after the support). For a K-shot curve give every ``k`` the same ``query_after = k_max``: the curve
        then compares like with like, and no support impression is ever in a query.
        """
        query_after = skip_clicks + k if query_after is None else query_after
        if not (isinstance(skip_clicks, (int, np.integer)) and skip_clicks >= 0):
            raise ValueError(f"skip_clicks must be an int >= 0, got {skip_clicks!r}")
        _check_sizes(k, query_after - skip_clicks, query_size)
        users = np.asarray(users)
        if len(users) == 0:
            raise ValueError("no users given: see eligible() (too few clicks per user at these knobs?)")
        if max_support is not None and max_support < k:
            raise ValueError(f"max_support must be >= k = {k} so that every click fits, got {max_support}")
        unknown = np.setdiff1d(users, self.users)
        if len(unknown):
            raise ValueError(f"{len(unknown)} user(s) have no impressions here, e.g. {unknown[:3].tolist()}")
        slot = np.full(len(self.users), -1)
        slot[np.searchsorted(self.users, users)] = np.arange(len(users))
        row_slot = slot[self._group]
        chosen = row_slot >= 0

        query = self._query_rows(chosen, query_after, query_size)
        has_query = np.bincount(row_slot[query], minlength=len(users)) > 0
        if not has_query.all():
            short = users[~has_query]
            raise ValueError(f"{len(short)} user(s) have no impression after their {query_after}-th click, e.g. "
                             f"{short[:3].tolist()}: pass users from eligible({query_after}, query_size)")
        support = chosen & (self.clicks_before >= skip_clicks) & (self.clicks_before < skip_clicks + k)
        if max_support is not None:
            skips = support & (self.click == 0)
            n_skips = np.bincount(row_slot[skips], minlength=len(users))
            keep_from = n_skips - (max_support - k)  # the oldest skips, ranked below this, are dropped
            support &= (self.click == 1) | (self._rank(skips) >= keep_from[np.maximum(row_slot, 0)])
        s_width = int(np.bincount(row_slot[support], minlength=len(users)).max()) if max_support is None \
            else int(max_support)
        s_feat, s_y, s_mask, s_rows = self._pad(support, row_slot, len(users), s_width)
        q_feat, q_y, q_mask, q_rows = self._pad(query, row_slot, len(users), query_size)
        return Episodes(users, int(k), s_feat, s_y, s_mask, q_feat, q_y, q_mask, s_rows, q_rows)

    def _pad(self, rows: np.ndarray, row_slot: np.ndarray, n_users: int, width: int
             ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
        """Scatter the selected rows into ``(n_users, width)`` arrays in time order: features, labels, mask, rows."""
        slots, cols = row_slot[rows], self._rank(rows)[rows]
        features = {}
        for name, values in self.features.items():
            out = np.zeros((n_users, width), dtype=values.dtype)
            if values.dtype != np.float32:
                out[:] = -1  # padding reads as a missing id; the mask keeps it out of every loss
            out[slots, cols] = values[rows]
            features[name] = out
        y = np.zeros((n_users, width), dtype=np.float32)
        y[slots, cols] = self.click[rows]
        mask = np.zeros((n_users, width), dtype=np.float32)
        mask[slots, cols] = 1.0
        positions = np.full((n_users, width), -1, dtype=np.int64)
        positions[slots, cols] = self.position[rows]
        return features, y, mask, positions


def _check_sizes(k: int, k_max: int, query_size: int) -> None:
    if not (isinstance(k, (int, np.integer)) and 1 <= k <= k_max):
        raise ValueError(f"k must be an int in [1, {k_max}] (clicks before the query starts), got {k!r}")
    if not (isinstance(query_size, (int, np.integer)) and query_size >= 2):
        raise ValueError(f"query_size must be an int >= 2 (a query needs a click and a skip), got {query_size!r}")


def split_users(users: Sequence[int], fractions: Sequence[float] = (0.6, 0.2, 0.2),
                seed: int = 0) -> tuple[np.ndarray, ...]:
    """Disjoint random groups of users (e.g. meta-training, validation, new users), each sorted."""
    users = np.asarray(users)
    fractions = np.asarray(fractions, dtype=float)
    if fractions.ndim != 1 or (fractions <= 0).any() or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"fractions must be positive and sum to 1, got {fractions.tolist()}")
    order = np.random.default_rng(seed).permutation(users)
    cuts = np.round(np.cumsum(fractions)[:-1] * len(users)).astype(int)
    return tuple(np.sort(part) for part in np.split(order, cuts))


# --------------------------------------------------------------------------------------------------
# The model: a global logit, an item vector, and the personal head
# --------------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="course")
class AdaptiveHead(keras.layers.Layer):
    """The personal decision layer: ``logit = g + t . w + b`` on an input ``[g, t]`` (a global logit, an item vector).

    ``w`` (a user's taste vector) and ``b`` (their click propensity) are the weights the inner loop adapts.
    ``call(x)`` uses the layer's own variables, one ``(w, b)`` for everybody, as a global model has. :meth:`forward`
    takes the weights explicitly, either shaped like the variables or with a leading task axis, ``w`` ``(B, D)`` and
    ``b`` ``(B,)`` for inputs ``(B, S, 1 + D)``: one ``(w, b)`` per user, all evaluated at once.
    """

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        width = int(input_shape[-1]) - 1
        if width < 1:
            raise ValueError(f"AdaptiveHead needs inputs [g, t] of width >= 2, got {input_shape[-1]}")
        self.taste = self.add_weight(shape=(width,), initializer="zeros", name="taste")
        self.bias = self.add_weight(shape=(), initializer="zeros", name="bias")

    @property
    def params(self) -> list[keras.Variable]:
        """The adaptable weights, in the order :meth:`forward` takes them: ``[w, b]``."""
        return [self.taste, self.bias]

    def forward(self, params: Sequence[Any], x: Any, per_task: bool = False) -> Any:
        """Logits ``x[..., 0] + x[..., 1:] . w + b`` (without the last axis); ``per_task``: one ``(w, b)`` per row."""
        taste, bias = params
        offset, items = x[..., 0], x[..., 1:]
        if per_task:
            return offset + keras.ops.einsum("bsd,bd->bs", items, taste) + keras.ops.expand_dims(bias, 1)
        return offset + keras.ops.matmul(items, taste) + bias

    def call(self, x: Any) -> Any:
        return keras.ops.expand_dims(self.forward(self.params, x), -1)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (*input_shape[:-1], 1)


def cold_start_model(spec: FeatureSpec, taste_features: Sequence[str], hidden: Sequence[int] = (64,),
                     taste_dim: int = 8, name: str = "cold_start") -> keras.Model:
    """A click model for new users: a global logit ``g`` (an MLP on every feature) plus a personal term ``t . w + b``.

    ``g``: inputs -> embeddings -> ``global_dense_i`` -> ``global_logit``. ``t``: the item's ``taste_features``
    (categorical ids) through their own embeddings (``taste_<feature>``) -> ``taste_vector`` (``taste_dim``). The
    :class:`AdaptiveHead` ``head`` adds ``t . w + b``; output ``click`` (sigmoid). The personal path has its own
    embeddings, so meta-training can shape it without touching ``g``. No ``user_id``: a new user's id was never
    seen. The same model is the global model (``fit`` on pooled impressions: one ``w`` for all) and the
    meta-learned one.
    """
    if "user_id" in spec.names:
        raise ValueError("drop user_id from the spec: a cold-start user's id is out of vocabulary by definition")
    bad = [f for f in taste_features if f not in spec.names or spec[f].kind != "categorical"]
    if bad or not taste_features:
        raise ValueError(f"taste_features must be categorical features of the spec {spec.names}; not usable: {bad}")
    if taste_dim < 1:
        raise ValueError(f"taste_dim must be >= 1, got {taste_dim}")
    inputs = {f.name: keras.Input(shape=(), dtype=f.dtype, name=f.name) for f in spec}
    encoded = list(encode_features(spec, inputs).values())
    x = keras.layers.Concatenate(name="all_features")(encoded) if len(encoded) > 1 else encoded[0]
    for i, units in enumerate(hidden, start=1):
        x = keras.layers.Dense(int(units), activation="relu", name=f"global_dense_{i}")(x)
    g = keras.layers.Dense(1, name="global_logit")(x)
    parts = []
    for feature in taste_features:
        f = spec[feature]
        index = keras.layers.IntegerLookup(vocabulary=f.vocabulary, num_oov_indices=1, mask_token=None,
                                           name=f"{TASTE_PREFIX}{feature}_lookup")(inputs[feature])
        parts.append(keras.layers.Embedding(f.input_dim, int(taste_dim), name=f"{TASTE_PREFIX}{feature}")(index))
    t = keras.layers.Concatenate(name=f"{TASTE_PREFIX}features")(parts) if len(parts) > 1 else parts[0]
    t = keras.layers.Dense(int(taste_dim), name=f"{TASTE_PREFIX}vector")(t)
    features = keras.layers.Concatenate(name="features")([g, t])
    logit = AdaptiveHead(name="head")(features)
    out = keras.layers.Activation("sigmoid", name="click")(logit)
    return keras.Model(inputs, {"click": out}, name=name)


def global_layers(model: keras.Model) -> list[str]:
    """Names of the layers of a :func:`cold_start_model` that compute the global logit ``g`` (not the personal path)."""
    split_model(model)
    return [layer.name for layer in model.layers
            if not layer.name.startswith(TASTE_PREFIX) and layer.name not in ("head", "features", "click")]


def split_model(model: keras.Model) -> tuple[keras.Model, AdaptiveHead]:
    """(encoder: inputs -> ``[g, t]``, head) of a :func:`cold_start_model`, sharing its layers and weights."""
    try:
        head = model.get_layer("head")
    except ValueError as err:
        raise ValueError(f"{model.name!r} has no layer 'head': build it with cold_start_model") from err
    if not isinstance(head, AdaptiveHead):
        raise TypeError(f"layer 'head' of {model.name!r} is a {type(head).__name__}, not an AdaptiveHead")
    encoder = keras.Model(model.inputs, model.get_layer("features").output, name=f"{model.name}_encoder")
    return encoder, head


@keras.saving.register_keras_serializable(package="course")
class PersonalLogit(keras.layers.Layer):
    """``g + t . w + b`` from ``[g, t]`` and a per-row ``[w, b]`` (a known user's own vector): no weights of its own."""

    def call(self, inputs: Sequence[Any]) -> Any:
        features, vectors = inputs
        personal = keras.ops.sum(features[:, 1:] * vectors[:, :-1], axis=-1, keepdims=True)
        return features[:, :1] + personal + vectors[:, -1:]

    def compute_output_shape(self, input_shapes: Sequence[tuple[int | None, ...]]) -> tuple[int | None, ...]:
        return (input_shapes[0][0], 1)


def with_user_vectors(model: keras.Model, user_ids: Sequence[int]) -> keras.Model:
    """A training model with one ``(w, b)`` per known user (an embedding ``user_vectors``) in place of the shared head.

    It shares every other layer with ``model``: fitting it trains ``g`` and the item vectors as a matrix
    factorisation would, with the known users' own taste vectors. It takes a ``user_id`` input besides the
    features; unknown users map to one extra row. :func:`head_from_user_vectors` then starts new users from the mean.
    """
    split_model(model)
    features = model.get_layer("features").output
    width = int(features.shape[-1])
    user = keras.Input(shape=(), dtype="int64", name="user_id")
    index = keras.layers.IntegerLookup(vocabulary=np.unique(np.asarray(user_ids, dtype=np.int64)),
                                       num_oov_indices=1, mask_token=None, name="user_lookup")(user)
    vectors = keras.layers.Embedding(len(np.unique(user_ids)) + 1, width,
                                     embeddings_initializer=keras.initializers.RandomNormal(stddev=0.01),
                                     name="user_vectors")(index)
    logit = PersonalLogit(name="personal_logit")([features, vectors])
    out = keras.layers.Activation("sigmoid", name="click")(logit)
    return keras.Model({**model.input, "user_id": user}, {"click": out}, name=f"{model.name}_user_vectors")


def head_from_user_vectors(model: keras.Model, trained: keras.Model) -> None:
    """Set ``model``'s head to the mean ``(w, b)`` of the known users of ``trained`` (:func:`with_user_vectors`):
    where a new user starts before fine-tuning."""
    _, head = split_model(model)
    vectors = trained.get_layer("user_vectors").embeddings.numpy()[1:]  # row 0: unknown ids
    head.taste.assign(vectors[:, :-1].mean(axis=0))
    head.bias.assign(vectors[:, -1].mean())


def init_head_bias(model: keras.Model, frame: pd.DataFrame, label: str = "click") -> float:
    """Start a :func:`cold_start_model` at the base rate: its head's bias ``b`` to the log-odds of ``frame``'s
    click rate (the global logit's own bias starts at 0), as :func:`utils.training.init_output_biases` does for
    the course's other builders; for a :func:`with_user_vectors` model, the global logit's bias. Returns it."""
    if label not in frame:
        raise KeyError(f"the frame has no column {label!r}; it has {list(frame.columns)}")
    y = frame[label].to_numpy(dtype=np.float64)
    if np.isnan(y).any() or not len(y):
        raise ValueError(f"{label!r} must be non-empty and have no NaN labels")
    bias = float(base_rate_biases([Task(label, "binary")], frame)[label][0])
    names = [layer.name for layer in model.layers]
    if "user_vectors" in names:  # a with_user_vectors model: its b is per user, so the global logit carries the rate
        model.get_layer("global_logit").bias.assign(np.full((1,), bias, dtype="float32"))
    else:
        _, head = split_model(model)
        head.bias.assign(bias)
    return bias


def encode_episodes(encoder: keras.Model, features: Mapping[str, Any], training: bool = False) -> Any:
    """The encoder applied to ``(B, S)`` feature arrays: a ``(B, S, 1 + D)`` representation ``[g, t]``."""
    first = next(iter(features.values()))
    shape = keras.ops.shape(first)
    flat = {name: keras.ops.reshape(v, (-1,)) for name, v in features.items()}
    x = encoder(flat, training=training)
    return keras.ops.reshape(x, (shape[0], shape[1], -1))


# --------------------------------------------------------------------------------------------------
# Inner loop, outer loop
# --------------------------------------------------------------------------------------------------


def task_losses(logits: Any, y: Any, mask: Any, reduction: Literal["mean", "sum"] = "mean") -> Any:
    """Masked binary cross-entropy of each task: ``(B,)`` from ``(B, S)`` logits, labels and mask.

    ``"mean"`` averages over each task's own real impressions (padding has mask 0): the query loss, which does not
    depend on a task's padding nor on the other tasks in the batch. ``"sum"`` adds them up: the inner loop's loss,
    a negative log-likelihood whose gradient grows with the evidence, so a user with 150 support impressions moves
    further from the starting point than a user with 5, as a Bayesian update would.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    total = keras.ops.sum(keras.ops.binary_crossentropy(y, logits, from_logits=True) * mask, axis=1)
    if reduction == "sum":
        return total
    return total / keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0)


def _tile(params: Sequence[Any], n_tasks: Any) -> list[Any]:
    """One copy of every weight per task, stacked on a new leading axis (its gradient sums back over tasks)."""
    return [keras.ops.broadcast_to(keras.ops.expand_dims(p, 0), (n_tasks, *p.shape)) for p in params]


def adapt(head: AdaptiveHead, params: Sequence[Any], x: Any, y: Any, mask: Any, lr: Any, steps: int,
          order: Order = "second") -> list[Any]:
    """The inner loop: ``steps`` gradient steps on each task's summed support loss, from ``params`` (tiled here).

    Returns per-task weights ``(B, ...)``. Summing the losses over tasks gives each task's copy the gradient of its
    own loss. ``order="second"`` keeps the inner gradients differentiable (under an outer tape: MAML); ``"first"``
    stops them (first-order MAML; also plain fine-tuning, where no outer tape watches).
    """
    if order not in ("second", "first"):
        raise ValueError(f"order must be 'second' or 'first', got {order!r}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    fast = _tile(params, keras.ops.shape(x)[0])
    for _ in range(steps):
        with tf.GradientTape() as tape:
            tape.watch(fast)
            loss = keras.ops.sum(task_losses(head.forward(fast, x, per_task=True), y, mask, "sum"))
        grads = tape.gradient(loss, fast)
        if order == "first":
            grads = [keras.ops.stop_gradient(g) for g in grads]
        fast = [w - lr * g for w, g in zip(fast, grads)]
    return fast


def _reset_optimizer(optimizer: keras.optimizers.Optimizer) -> None:
    """Zero an optimizer's state (step count, moments), keeping its learning rate."""
    rate = float(optimizer.learning_rate.numpy())
    for variable in optimizer.variables:
        variable.assign(keras.ops.zeros_like(variable))
    optimizer.learning_rate = rate


def restart(model: keras.Model, weights: Sequence[np.ndarray]) -> None:
    """Give a compiled model new weights (e.g. a fresh model's, for another seed) and a fresh optimizer state.

    Training again then reuses the functions TensorFlow already traced for this model: building and compiling a new
    model per seed would trace them anew, which costs more than a short training run.
    """
    model.set_weights(list(weights))
    if getattr(model, "optimizer", None) is not None:
        _reset_optimizer(model.optimizer)


def _tensors(episodes: Episodes) -> tuple[Any, ...]:
    return (episodes.support, episodes.support_y, episodes.support_mask,
            episodes.query, episodes.query_y, episodes.query_mask)


class MetaLearner:
    """Meta-trains a :func:`cold_start_model` so that a few inner steps on a user's support set fit their query set.

    The outer loss is the mean query loss of the adapted weights over a batch of users. Its gradient reaches the
    head's starting weights through the inner loop, and the item vectors through the query and (second order only)
    the support. ``order="second"`` is MAML with nested tapes; ``"first"`` is first-order MAML (FOMAML: the inner
    gradients count as constants). Adam applies the meta-gradient to every trainable weight outside the ``frozen``
    layers (e.g. :func:`global_layers`, to keep a trained global logit as it is).
    """

    def __init__(self, model: keras.Model, inner_lr: float = 0.03, inner_steps: int = 3, order: Order = "second",
                 meta_lr: float = 5e-3, frozen: Sequence[str] = ()) -> None:
        if order not in ("second", "first"):
            raise ValueError(f"order must be 'second' (MAML) or 'first' (FOMAML), got {order!r}")
        if not inner_lr > 0 or int(inner_steps) < 1:
            raise ValueError(f"inner_lr must be > 0 and inner_steps >= 1, got {inner_lr}, {inner_steps}")
        self.model = model
        self.encoder, self.head = split_model(model)
        self.inner_lr, self.inner_steps, self.order = float(inner_lr), int(inner_steps), order
        names = [layer.name for layer in model.layers]
        unknown = sorted(set(frozen) - set(names))
        if unknown:
            raise ValueError(f"frozen names layer(s) {unknown} that {model.name!r} does not have; it has {names}")
        self.frozen = tuple(frozen)
        self.variables = [v for layer in model.layers if layer.name not in self.frozen
                          for v in layer.trainable_variables]
        if not self.variables:
            raise ValueError("every layer is frozen: nothing to meta-train")
        self.optimizer = keras.optimizers.Adam(meta_lr)
        self._step: Any = None
        #: The step whose weights :meth:`fit` ended with (0: the start; the last step when not validated).
        self.best_step: int | None = None

    def _meta_loss(self, support: Any, sy: Any, sm: Any, query: Any, qy: Any, qm: Any) -> Any:
        x_s = encode_episodes(self.encoder, support, training=True)
        x_q = encode_episodes(self.encoder, query, training=True)
        fast = adapt(self.head, self.head.params, x_s, sy, sm, self.inner_lr, self.inner_steps, self.order)
        return keras.ops.mean(task_losses(self.head.forward(fast, x_q, per_task=True), qy, qm))

    def _meta_step(self, support: Any, sy: Any, sm: Any, query: Any, qy: Any, qm: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = self._meta_loss(support, sy, sm, query, qy, qm)
        grads = tape.gradient(loss, self.variables)
        self.optimizer.apply_gradients(zip(grads, self.variables))
        return loss

    def step(self, episodes: Episodes) -> float:
        """One meta-update on a batch of users' episodes; returns their query loss before the update.

        The update is a ``tf.function`` traced once, for any number of users and any support and query widths.
        """
        args = _tensors(episodes)
        if self._step is None:
            signature = tf.nest.map_structure(lambda a: tf.TensorSpec((None, None), tf.as_dtype(a.dtype)), args)
            self._step = tf.function(self._meta_step, input_signature=signature)
        return float(self._step(*args))

    def restart(self, weights: Sequence[np.ndarray]) -> None:
        """New starting weights for the model and a fresh meta-optimizer: another seed, without tracing again."""
        self.model.set_weights(list(weights))
        _reset_optimizer(self.optimizer)

    def meta_gradient(self, episodes: Episodes) -> list[Any]:
        """The meta-gradient for :attr:`variables` on a batch of episodes, without applying it."""
        with tf.GradientTape() as tape:
            loss = self._meta_loss(*_tensors(episodes))
        return tape.gradient(loss, self.variables)

    def fit(self, episodes_by_k: Mapping[int, Episodes], steps: int, tasks_per_step: int = 32,
            seed: int = 0, validate: Callable[[], float] | None = None, every: int = 100,
            patience: int = 3) -> pd.DataFrame:
        """At most ``steps`` meta-updates; each draws ``tasks_per_step`` users of one K, cycling through the Ks.

        With ``validate`` (a score of the current model, higher is better, e.g. the validation users' group AUC
        after adaptation) the learner is early-stopped like every other model: it scores every ``every`` steps,
        stops after ``patience`` scores without a gain and ends with the best-scoring weights (:attr:`best_step`;
        step 0 is the starting point). Returns one row per step: K, the batch's query loss, its wall-clock
        seconds and, where scored, ``valid``.
        """
        if not episodes_by_k:
            raise ValueError("episodes_by_k is empty: pass {k: episodes} for at least one K")
        if validate is not None and (int(every) < 1 or int(patience) < 1):
            raise ValueError(f"every and patience must be >= 1, got {every} and {patience}")
        rng = np.random.default_rng(seed)
        ks = sorted(episodes_by_k)
        rows: list[dict[str, Any]] = []
        best, best_weights, waited = -np.inf, None, 0
        self.best_step = int(steps)
        if validate is not None:
            best, best_weights, self.best_step = float(validate()), self.model.get_weights(), 0
        for i in range(int(steps)):
            k = ks[i % len(ks)]
            pool = episodes_by_k[k]
            batch = pool.take(rng.choice(len(pool), size=min(tasks_per_step, len(pool)), replace=False))
            start = time.perf_counter()
            loss = self.step(batch)
            rows.append({"step": i + 1, "k": k, "query_loss": loss, "seconds": time.perf_counter() - start})
            if validate is not None and ((i + 1) % int(every) == 0 or i + 1 == int(steps)):
                score = float(validate())
                rows[-1]["valid"] = score
                if score > best:
                    best, best_weights, self.best_step, waited = score, self.model.get_weights(), i + 1, 0
                else:
                    waited += 1
                    if waited >= int(patience):
                        break
        if best_weights is not None:
            self.model.set_weights(best_weights)
        history = pd.DataFrame(rows)
        if validate is not None and "valid" not in history:
            history["valid"] = np.nan
        return history


def adapt_and_predict(model: keras.Model, episodes: Episodes, lr: float, steps: int,
                      batch_users: int = 512) -> np.ndarray:
    """Click probabilities ``(n_users, Q)`` on each user's query after ``steps`` inner steps on their support.

    ``steps=0`` is the model as it is (the global model's prediction). For a global model this is fine-tuning;
    for a meta-learned one, its adaptation: the same procedure from different starting weights. It runs eagerly:
    a few large batched calls, so tracing a graph per model would cost more than it saves.
    """
    if steps < 0 or lr < 0:
        raise ValueError(f"steps and lr must be >= 0, got {steps}, {lr}")
    encoder, head = split_model(model)
    out = []
    for lo in range(0, len(episodes), batch_users):
        part = episodes.take(slice(lo, lo + batch_users))
        fast = adapt(head, head.params, encode_episodes(encoder, part.support), part.support_y, part.support_mask,
                     float(lr), int(steps), order="first")
        probs = keras.ops.sigmoid(head.forward(fast, encode_episodes(encoder, part.query), per_task=True))
        out.append(keras.ops.convert_to_numpy(probs))
    return np.concatenate(out)


def kshot_scores(episodes: Episodes, probs: np.ndarray) -> dict[str, float]:
    """Scores of query predictions: ``gauc``, each user's AUC on their own later impressions averaged over users
    (how well the feed is ordered for them); ``auc`` pooled over every query impression; ``logloss``."""
    probs = np.asarray(probs)
    if probs.shape != episodes.query_y.shape:
        raise ValueError(f"probs must have the query shape {episodes.query_y.shape}, got {probs.shape}")
    real = episodes.query_mask > 0
    users = np.broadcast_to(episodes.users[:, None], real.shape)[real]
    y, p = episodes.query_y[real], probs[real]
    return {"gauc": course_metrics.group_auc(y, p, users, weight="uniform"),
            "auc": course_metrics.auc(y, p), "logloss": course_metrics.log_loss(y, p)}


# --------------------------------------------------------------------------------------------------
# What any learner could reach: the posterior of a user's true taste (simulator ground truth)
# --------------------------------------------------------------------------------------------------


def shopsim_taste_truth(shop: Any) -> dict[str, np.ndarray]:
    """Per impression of ``shop.impressions`` (ground truth, never a feature): the item's true click taste scaled
    into the logit (``taste``, ``(n, d)``), the true click logit without the user's taste term (``rest``), and the
    examination probability of the position (``examine``). Inputs of :func:`taste_posterior_scores`."""
    imp = shop.impressions
    d = shop.config.latent_dim
    item_taste = shop.latent["item_taste_click"][imp["item_id"].to_numpy()] * np.sqrt(d)
    user_taste = shop.latent["user_taste_click"][imp["user_id"].to_numpy()]
    examine = imp["p_examine"].to_numpy(dtype=np.float64)
    ratio = np.clip(imp["p_click"].to_numpy(dtype=np.float64) / examine, 1e-9, 1 - 1e-9)
    logit = np.log(ratio) - np.log1p(-ratio)
    return {"taste": item_taste, "rest": logit - np.einsum("nd,nd->n", item_taste, user_taste), "examine": examine}


def taste_posterior_scores(episodes: Episodes, truth: Mapping[str, np.ndarray], prior_precision: float,
                           newton_steps: int = 15) -> np.ndarray:
    """Query click probabilities ``(n_users, Q)`` of an ideal few-shot learner that knows everything but the taste.

    ``truth`` holds per-row arrays of the frame the episodes were cut from (:func:`shopsim_taste_truth`). For each
    user the learner finds the most probable taste vector ``u`` given their support clicks, under the prior
    ``N(0, I / prior_precision)`` (:func:`utils.ceilings.posterior_mode`, the solver of the course's ideal learner,
    on ``p = examine * sigmoid(rest + taste . u)``), and predicts the query with it. Only a simulator allows it: it
    is the best K clicks can teach about a user's taste under the simulator's model (a MAP estimate, not a strict
    bound: a model can beat it by chance or by using what it ignores).
    """
    from utils.ceilings import Block, posterior_mode

    v = episodes.on_grid(truth["taste"], "support").astype(np.float64)
    rest = episodes.on_grid(truth["rest"], "support")
    exam = episodes.on_grid(truth["examine"], "support")
    y, m = episodes.support_y.astype(np.float64), episodes.support_mask.astype(bool)
    n, _, d = v.shape
    users = np.broadcast_to(np.arange(n)[:, None], m.shape)
    block = Block.bernoulli(users[m], slice(0, d), v[m], rest[m], y[m], exam[m])
    u, _ = posterior_mode([block], np.zeros((n, d)), np.tile(prior_precision * np.eye(d), (n, 1, 1)),
                          steps=newton_steps, tol=1e-8)
    qv = episodes.on_grid(truth["taste"], "query").astype(np.float64)
    logit = episodes.on_grid(truth["rest"], "query") + np.einsum("nwd,nd->nw", qv, u)
    return episodes.on_grid(truth["examine"], "query") / (1 + np.exp(-logit))


def ideal_kshot_curve(shop: Any, episodes_by_k: Mapping[int, Episodes]) -> pd.Series:
    """Group AUC of the ideal few-shot learner (:func:`taste_posterior_scores`) at K = 0 (no taste), each K of
    ``episodes_by_k`` (cut from ``shop.impressions``), and the oracle that knows every user's taste.

    A reference, not a bound: the learner ignores what a user's profile says about their taste, which a model
    that sees the profile can use, and a MAP estimate can be beaten by chance on a finite set of users.
    """
    if not episodes_by_k:
        raise ValueError("episodes_by_k is empty: pass {k: episodes} for at least one K")
    truth = shopsim_taste_truth(shop)
    d = shop.config.latent_dim
    first = episodes_by_k[min(episodes_by_k)]
    curve = {"K = 0 (no taste)": kshot_scores(first, taste_posterior_scores(first, truth, d, newton_steps=0))}
    for k, episodes in sorted(episodes_by_k.items()):
        curve[f"K = {k}"] = kshot_scores(episodes, taste_posterior_scores(episodes, truth, prior_precision=d))
    curve["oracle (knows u)"] = kshot_scores(first, first.on_grid(shop.impressions["p_click"], "query"))
    return pd.Series({name: scores["gauc"] for name, scores in curve.items()}, name="group AUC")


# --------------------------------------------------------------------------------------------------
# NumPy references for one user's personal layer (the exercises)
# --------------------------------------------------------------------------------------------------


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _as_arrays(*arrays: Any) -> list[np.ndarray]:
    return [np.asarray(a, dtype=float) for a in arrays]


def _support_grad(w: np.ndarray, b: float, t: np.ndarray, g: np.ndarray, y: np.ndarray, mask: np.ndarray
                  ) -> tuple[np.ndarray, float]:
    """Gradient of the summed masked log loss sum_i m_i bce(y_i, sigmoid(g_i + t_i . w + b)) in (w, b)."""
    r = (_sigmoid(g + t @ w + b) - y) * mask
    return t.T @ r, float(r.sum())


def adapt_logistic(w: Any, b: float, t: Any, g: Any, y: Any, mask: Any, lr: float, steps: int
                   ) -> tuple[np.ndarray, float]:
    """The inner loop for one user: ``steps`` gradient steps of size ``lr`` on the summed masked log loss of
    ``p_i = sigmoid(g_i + t_i . w + b)`` over the support set; returns the adapted ``(w, b)``."""
    w, t, g, y, mask = _as_arrays(w, t, g, y, mask)
    b = float(b)
    for _ in range(int(steps)):
        gw, gb = _support_grad(w, b, t, g, y, mask)
        w, b = w - lr * gw, b - lr * gb
    return w, b


def _query_grad(w: np.ndarray, b: float, query: Sequence[Any]) -> tuple[np.ndarray, float]:
    """Gradient of the query's MEAN masked log loss (the outer loss of one task) in (w, b)."""
    t, g, y, mask = _as_arrays(*query)
    gw, gb = _support_grad(w, b, t, g, y, mask)
    return gw / mask.sum(), gb / mask.sum()


def fomaml_gradient_logistic(w: Any, b: float, support: Sequence[Any], query: Sequence[Any], lr: float,
                             steps: int) -> tuple[np.ndarray, float]:
    """First-order meta-gradient of one task: the gradient of the mean query loss at the adapted weights, used as
    the gradient with respect to the starting weights (the inner loop's Jacobian replaced by the identity).
    ``support`` and ``query`` are ``(t, g, y, mask)``."""
    w_k, b_k = adapt_logistic(w, b, *support, lr=lr, steps=steps)
    return _query_grad(w_k, b_k, query)


def maml_gradient_logistic(w: Any, b: float, support: Sequence[Any], query: Sequence[Any], lr: float
                           ) -> tuple[np.ndarray, float]:
    """Exact meta-gradient of one inner step: ``(I - lr H_s) g_q``, where ``g_q`` is the query gradient at the adapted
    weights and ``H_s = sum_i m_i p_i (1 - p_i) [t_i, 1][t_i, 1]^T`` the Hessian of the summed support loss at the
    starting weights (the bias as a last coordinate)."""
    t, g, y, mask = _as_arrays(*support)
    w = np.asarray(w, dtype=float)
    w1, b1 = adapt_logistic(w, b, t, g, y, mask, lr=lr, steps=1)
    gq_w, gq_b = _query_grad(w1, b1, query)
    p = _sigmoid(g + t @ w + b)
    t1 = np.hstack([t, np.ones((len(t), 1))])
    hessian = t1.T @ (t1 * (mask * p * (1 - p))[:, None])
    gq = np.append(gq_w, gq_b)
    meta = gq - lr * hessian @ gq
    return meta[:-1], float(meta[-1])
