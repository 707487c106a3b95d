"""The three tasks of a shop on one row per impression, for lesson 03: user profile (purchasing power),
item attribute (price band) and purchase/rating, and their MovieLens-100k counterparts.

    >>> frame = shop_task_frame(shop)                                # one row per impression
    >>> spec = feature_spec(train, categorical=SHOP_FEATURES)        # the shared input
    >>> probs = model.predict(feature_arrays(rows, spec))["power"]   # one distribution per row
    >>> entity_class_metrics(rows["user_id"], probs, truth, among=hidden)   # one prediction per user

An entity-level label (a user's purchasing power, an item's price band) is written on every row of that
entity and is missing (``<NA>``) where the entity has none, so ``utils.models.task_arrays`` masks those rows
with sample weight 0. Evaluation goes back to one prediction per entity: the mean of the per-row predicted
distributions over the entity's rows, compared with the simulator's true value for the entities whose label
was hidden. Only a simulator can do that: a real shop never learns the level of a user who left it empty.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import pandas as pd

from utils import metrics

__all__ = [
    "ML_FEATURES",
    "ML_GENRE_COLUMNS",
    "SHOP_FEATURES",
    "SHOP_LABELS",
    "EpochTimer",
    "entity_class_metrics",
    "entity_multilabel_auc",
    "entity_predictions",
    "paired_errors",
    "score_shop_tasks",
    "ShopScores",
    "hold_out_entities",
    "class_metrics",
    "keep_labels",
    "layer_usage",
    "movielens_task_frame",
    "shop_task_frame",
]

#: The shared input of the shop model: the item and its catalogue ids, the slot, and the user's profile
#: fields that are not a label. Neither ``user_id`` (a profile head would memorise the labelled users) nor
#: ``price`` (it determines the price band: a leak) is in it.
SHOP_FEATURES = ("item_id", "category_id", "top_category_id", "brand_id", "shop_id", "position",
                 "age_band", "city_tier")
#: The label columns of :func:`shop_task_frame`, one per task.
SHOP_LABELS = ("purchase", "rating", "power", "price_band")
#: The label columns of the 19 genres in :func:`movielens_task_frame` (``genre_00`` .. ``genre_18``).
ML_GENRE_COLUMNS = tuple(f"genre_{k:02d}" for k in range(19))
#: The shared input of the MovieLens model: the movie, its decade, and the one profile field that is not
#: a label (gender).
ML_FEATURES = ("item_id", "decade", "gender")

_SECONDS_PER_DAY = 86_400


# --------------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------------


def keep_labels(labels: pd.Series, fraction: float | None, seed: int = 0) -> pd.Series:
    """A copy of entity-level ``labels`` (one per entity, ``<NA>`` where unknown) with only
    ``round(fraction * len(labels))`` of them kept, the others set to ``<NA>``.

    The kept labels are the known ones with the smallest seeded random keys, so for one seed a smaller
    fraction keeps a subset of a larger one (a sweep over fractions compares nested label sets).
    ``None`` keeps every known label. A fraction above the share of known labels raises a ValueError.
    """
    if fraction is None:
        return labels.copy()
    fraction = float(fraction)
    known = labels.notna().to_numpy()
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    wanted = round(fraction * len(labels))
    if wanted > known.sum():
        raise ValueError(
            f"cannot keep {fraction:.0%} of the labels: only {known.mean():.1%} are known "
            f"({int(known.sum())} of {len(labels)})"
        )
    key = np.random.default_rng(seed).random(len(labels))
    key[~known] = np.inf
    keep = np.zeros(len(labels), dtype=bool)
    keep[np.argsort(key, kind="stable")[:wanted]] = True
    out = labels.copy()
    out[~keep] = pd.NA
    return out


def _as_entity_series(values: Any, name: str) -> pd.Series:
    """Entity-level values as a Series whose index is the entity id (position = id in ShopSim frames)."""
    if isinstance(values, pd.Series):
        return values
    return pd.Series(np.asarray(values), name=name)


def shop_task_frame(
    shop: Any,
    user_label_fraction: float | None = None,
    item_label_fraction: float | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per impression of a ShopSim log with the shared features and the four tasks' labels.

    Columns: ``impression_id, day, user_id`` and :data:`SHOP_FEATURES` (observable only), then the labels
    ``purchase`` (0/1), ``rating`` (NaN unless purchased), ``power`` (the user's observed purchasing-power
    level on each of the user's rows, ``<NA>`` where unobserved) and ``price_band`` (the item's observed band,
    likewise). ``user_label_fraction`` / ``item_label_fraction`` keep the labels of only that share of all
    users / items (:func:`keep_labels`, nested across fractions for one ``seed``); ``None`` keeps what the
    shop observed. Prices are left out: the band is a function of the price and the leaf category.
    """
    users, items, log = shop.users, shop.items, shop.impressions
    power = keep_labels(users["purchasing_power"].reset_index(drop=True), user_label_fraction, seed)
    band = keep_labels(items["price_band"].reset_index(drop=True), item_label_fraction, seed + 1)
    user = log["user_id"].to_numpy()
    item = log["item_id"].to_numpy()
    frame = pd.DataFrame({
        "impression_id": log["impression_id"].to_numpy(),
        "day": log["day"].to_numpy(),
        "user_id": user,
    })
    for column in SHOP_FEATURES:
        if column == "position":
            frame[column] = log[column].to_numpy()
        elif column in ("age_band", "city_tier"):
            frame[column] = users[column].array.take(user)
        else:
            frame[column] = items[column].to_numpy()[item]
    frame["purchase"] = log["purchase"].to_numpy()
    frame["rating"] = log["rating"].to_numpy()
    frame["power"] = power.array.take(user)
    frame["price_band"] = band.array.take(item)
    return frame


def movielens_task_frame(
    ml: Any, user_label_fraction: float = 0.5, item_label_fraction: float = 0.5, seed: int = 0
) -> pd.DataFrame:
    """One row per MovieLens-100k rating with the shared features and the labels of four tasks.

    Columns: ``timestamp, day`` (days since the first rating), ``user_id`` and :data:`ML_FEATURES`
    (``decade`` of release, e.g. 1990, ``<NA>`` if unknown; ``gender`` 0 = F, 1 = M), then the labels
    ``rating`` (1-5), ``age_band`` (0..6, the MovieLens-1M bands), ``occupation`` (0..7, the occupation
    groups) and the 19 genre flags :data:`ML_GENRE_COLUMNS`. Every user and movie has its profile and genres
    on MovieLens, so the lab hides them: only ``user_label_fraction`` of the users keep their age band and
    occupation group (``<NA>`` for the others), and ``item_label_fraction`` of the movies their genres (NaN).
    """
    users = ml.users.set_index("user_id")
    items = ml.items.set_index("item_id")
    ratings = ml.ratings.sort_values("timestamp", kind="stable").reset_index(drop=True)
    user, item = ratings["user_id"].to_numpy(), ratings["item_id"].to_numpy()
    age = pd.Series(users["age_band"].cat.codes.to_numpy(), index=users.index).astype("Int8")
    occupation = pd.Series(users["occupation_group"].cat.codes.to_numpy(), index=users.index).astype("Int8")
    user_keep = keep_labels(pd.Series(np.ones(len(users)), index=users.index), user_label_fraction, seed).notna()
    item_keep = keep_labels(pd.Series(np.ones(len(items)), index=items.index), item_label_fraction, seed + 1).notna()
    age[~user_keep.to_numpy()] = pd.NA
    occupation[~user_keep.to_numpy()] = pd.NA
    decade = (items["year"] // 10 * 10).astype("Int16")
    first = int(ratings["timestamp"].min())
    frame = pd.DataFrame({
        "timestamp": ratings["timestamp"].to_numpy(),
        "day": ((ratings["timestamp"].to_numpy() - first) // _SECONDS_PER_DAY).astype(np.int16),
        "user_id": user,
        "item_id": item,
        "decade": decade.reindex(item).array,
        "gender": (users["gender"].reindex(user).to_numpy() == "M").astype(np.int8),
        "rating": ratings["rating"].to_numpy(dtype=np.float32),
        "age_band": age.reindex(user).array,
        "occupation": occupation.reindex(user).array,
    })
    genres = ml.genre_matrix().astype(np.float32)
    genres[~item_keep.reindex(genres.index).to_numpy()] = np.nan
    block = genres.reindex(item).to_numpy()
    for k, column in enumerate(ML_GENRE_COLUMNS):
        frame[column] = block[:, k]
    return frame


def hold_out_entities(train: pd.DataFrame, valid: pd.DataFrame, label: str | Sequence[str], entity: str,
                      fraction: float = 0.2, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validation entities for an entity-level task: ``fraction`` of the labelled entities lose their label in
    ``train``, and in ``valid`` only they keep it.

    Early stopping on an entity-level task (a user's profile, an item's attribute) must watch entities the model
    has not been taught, or it rewards memorising the labelled ones through their ids. ``label`` is one column
    or several (a multi-label task's). Returns copies of ``train`` and ``valid``; the held-out entities are the
    same for one ``seed`` whatever the frames.
    """
    labels = [label] if isinstance(label, str) else list(label)
    for frame, name in ((train, "train"), (valid, "valid")):
        missing = [c for c in (*labels, entity) if c not in frame.columns]
        if missing:
            raise KeyError(f"the {name} frame has no column(s) {missing}")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    labelled = np.unique(train.loc[train[labels[0]].notna(), entity].to_numpy())
    if labelled.size < 2:
        raise ValueError(f"{labels[0]!r} is known for {labelled.size} {entity} value(s) in train: too few to hold out")
    rng = np.random.default_rng(seed)
    held = rng.choice(labelled, size=max(1, round(fraction * labelled.size)), replace=False)
    train, valid = train.copy(), valid.copy()
    for column in labels:
        missing = pd.NA if pd.api.types.is_extension_array_dtype(train[column].dtype) else np.nan
        train.loc[train[entity].isin(held), column] = missing
        valid.loc[~valid[entity].isin(held), column] = missing
    return train, valid


# --------------------------------------------------------------------------------------------------
# From rows back to entities
# --------------------------------------------------------------------------------------------------


def entity_predictions(entity_ids: Any, probs: Any) -> pd.DataFrame:
    """The mean of the per-row predicted distributions of each entity: one row per entity id (sorted),
    one column per class; rows of a distribution that summed to 1 still sum to 1."""
    ids = np.asarray(entity_ids).ravel()
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 1:
        p = p[:, None]
    if p.ndim != 2 or len(p) != len(ids):
        raise ValueError(f"probs must be (n_rows, n_classes) with one row per id: got {p.shape} for {len(ids)} ids")
    if len(ids) == 0:
        raise ValueError("no rows to aggregate")
    if np.isnan(p).any():
        raise ValueError("probs has NaN values")
    frame = pd.DataFrame(p).groupby(ids, sort=True).mean()
    frame.index.name = "entity"
    return frame


def class_metrics(y_true: Any, probs: Any) -> dict[str, float]:
    """Accuracy, balanced accuracy (mean recall over the classes present) and macro-F1 of ``argmax(probs)``."""
    y = np.asarray(y_true).astype(np.int64).ravel()
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) != len(y):
        raise ValueError(f"probs must be (n, n_classes) for {len(y)} labels, got shape {p.shape}")
    predicted = p.argmax(axis=1)
    classes = np.unique(y)
    recall = [np.mean(predicted[y == c] == c) for c in classes]
    f1 = []
    for c in np.union1d(classes, np.unique(predicted)):
        true_pos = np.sum((predicted == c) & (y == c))
        denominator = np.sum(predicted == c) + np.sum(y == c)
        f1.append(2 * true_pos / denominator if denominator else 0.0)
    return {
        "accuracy": float(np.mean(predicted == y)),
        "balanced_accuracy": float(np.mean(recall)),
        "macro_f1": float(np.mean(f1)),
    }


def _truth_for(index: pd.Index, truth: Any, name: str) -> np.ndarray:
    series = _as_entity_series(truth, name)
    missing = index.difference(series.index)
    if len(missing):
        raise KeyError(f"{name} has no value for {len(missing)} entity id(s), e.g. {list(missing[:3])}")
    return series.reindex(index).to_numpy()


def _select(aggregated: pd.DataFrame, among: Any) -> pd.DataFrame:
    if among is None:
        return aggregated
    mask = _as_entity_series(among, "among").astype(bool)
    chosen = mask.reindex(aggregated.index, fill_value=False).to_numpy()
    return aggregated[chosen]


def entity_class_metrics(entity_ids: Any, probs: Any, truth: Any, among: Any = None) -> dict[str, float]:
    """Aggregate per-row class probabilities per entity (:func:`entity_predictions`), keep the entities
    flagged in ``among`` (a boolean Series or array indexed by entity id; ``None`` keeps all) and score the
    argmax against ``truth`` (indexed by entity id): :func:`class_metrics` plus ``n``, the entities scored."""
    aggregated = _select(entity_predictions(entity_ids, probs), among)
    if aggregated.empty:
        raise ValueError("no entity left to score: none of the rows belongs to an entity in `among`")
    result = class_metrics(_truth_for(aggregated.index, truth, "truth"), aggregated.to_numpy())
    result["n"] = len(aggregated)
    return result


@dataclass
class ShopScores:
    """Lesson 03's test metrics of one model, and the per-unit values their sampling errors are drawn from.

    ``units[metric]`` holds one value per unit the metric averages over: the purchase scores of the test rows,
    the predicted ratings of the rated rows, the 0/1 correctness of each hidden user or item.
    """

    metrics: dict[str, float]
    units: dict[str, pd.Series]


def score_shop_tasks(pred: Mapping[str, Any], rows: pd.DataFrame, hidden_users: Any, hidden_items: Any,
                     true_power: Any, true_band: Any) -> ShopScores:
    """Score whichever of the four tasks ``pred`` holds (per-row outputs on ``rows``): purchase AUC, rating RMSE,
    and the accuracy (and balanced accuracy, for power) of the hidden users' and items' aggregated predictions."""
    out: dict[str, float] = {}
    units: dict[str, pd.Series] = {}
    if "purchase" in pred:
        p = np.asarray(pred["purchase"], dtype=np.float64).ravel()
        out["purchase_auc"] = metrics.auc(rows["purchase"], p)
        units["purchase_auc"] = pd.Series(p, index=rows.index)
    if "rating" in pred:
        rated = rows["rating"].notna().to_numpy()
        r = np.asarray(pred["rating"], dtype=np.float64).ravel()[rated]
        out["rating_rmse"] = metrics.rmse(rows["rating"].to_numpy()[rated], r)
        units["rating_rmse"] = pd.Series(r, index=rows.index[rated])
    for task, entity, hidden, truth, metric in (("power", "user_id", hidden_users, true_power, "power_accuracy"),
                                                ("price_band", "item_id", hidden_items, true_band, "price_band_accuracy")):
        if task not in pred:
            continue
        aggregated = _select(entity_predictions(rows[entity], pred[task]), hidden)
        if aggregated.empty:
            raise ValueError(f"no hidden {entity} among the rows: nothing to score {task} on")
        want = _truth_for(aggregated.index, truth, "truth")
        result = class_metrics(want, aggregated.to_numpy())
        out[metric] = result["accuracy"]
        if task == "power":
            out["power_balanced_accuracy"] = result["balanced_accuracy"]
        correct = aggregated.to_numpy().argmax(1) == want
        units[metric] = pd.Series(correct.astype(np.float64), index=aggregated.index)
        if task == "power":  # balanced accuracy = the mean of each class's recall: weigh each entity by 1 / its class size
            counts = pd.Series(want).value_counts()
            weight = 1.0 / (len(counts) * counts.reindex(want).to_numpy())
            units["power_balanced_accuracy"] = pd.Series(correct * weight * len(want), index=aggregated.index)
    return ShopScores(out, units)


def paired_errors(reference: ShopScores, other: ShopScores, rows: pd.DataFrame, n_boot: int = 200,
                  seed: int = 0) -> dict[str, float]:
    """The sampling error of ``other`` minus ``reference`` on each metric both have, by a paired bootstrap: test
    rows resampled by user (purchase AUC, rating RMSE), hidden entities resampled one by one (accuracies)."""
    errors = {}
    for name in sorted(set(reference.units) & set(other.units)):
        a, b = reference.units[name], other.units[name]
        if name == "purchase_auc":
            reps = metrics.bootstrap_replicates(rows.loc[a.index, "purchase"], {"a": a, "b": b},
                                                rows.loc[a.index, "user_id"], "auc", n_boot, seed)
        elif name == "rating_rmse":
            reps = metrics.bootstrap_replicates(rows.loc[a.index, "rating"], {"a": a, "b": b.loc[a.index]},
                                                rows.loc[a.index, "user_id"], "rmse", n_boot, seed)
        else:
            both = a.index.intersection(b.index)
            reps = metrics.bootstrap_replicates(np.zeros(len(both)), {"a": a.loc[both], "b": b.loc[both]},
                                                both.to_numpy(), "mean", n_boot, seed)
        errors[name] = float((reps["b"] - reps["a"]).std())
    return errors


def entity_multilabel_auc(entity_ids: Any, scores: Any, truth: Any, among: Any = None) -> dict[str, float]:
    """Per-entity mean scores of a multi-label task against ``truth`` (an entity × label 0/1 frame): the
    macro AUC (mean over labels with both classes among the scored entities), the micro AUC (all entity ×
    label pairs pooled) and ``n``, the entities scored."""
    aggregated = _select(entity_predictions(entity_ids, scores), among)
    if aggregated.empty:
        raise ValueError("no entity left to score: none of the rows belongs to an entity in `among`")
    table = truth if isinstance(truth, pd.DataFrame) else pd.DataFrame(np.asarray(truth))
    missing = aggregated.index.difference(table.index)
    if len(missing):
        raise KeyError(f"truth has no row for {len(missing)} entity id(s), e.g. {list(missing[:3])}")
    y = table.reindex(aggregated.index).to_numpy(dtype=np.float64)
    s = aggregated.to_numpy()
    if y.shape != s.shape:
        raise ValueError(f"truth has {y.shape[1]} labels, the scores {s.shape[1]}")
    per_label = [metrics.auc(y[:, k], s[:, k]) for k in range(y.shape[1]) if 0 < y[:, k].sum() < len(y)]
    return {
        "macro_auc": float(np.mean(per_label)) if per_label else float("nan"),
        "micro_auc": metrics.auc(y.ravel(), s.ravel()),
        "n": len(aggregated),
    }


# --------------------------------------------------------------------------------------------------
# Models: which layers each head uses, and training speed
# --------------------------------------------------------------------------------------------------


def layer_usage(model: Any, outputs: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per layer that has weights: its parameters and the outputs (heads) whose value depends on it.

    A layer used by every head is shared; a layer used by one head belongs to that task. Works for
    functional Keras models whose outputs are a dict (as ``utils.models`` builds them) or a list.
    """
    output = model.output
    if isinstance(output, dict):
        named = dict(output)
    else:
        tensors = output if isinstance(output, list | tuple) else [output]
        named = dict(zip(model.output_names, tensors, strict=True))
    names = list(outputs) if outputs is not None else list(named)
    used: dict[str, list[str]] = {}
    for name in names:
        sub = keras.Model(model.inputs, named[name])
        for layer in sub.layers:
            if layer.weights:
                used.setdefault(layer.name, []).append(name)
    rows = []
    for layer in model.layers:
        if layer.name in used:
            rows.append({"layer": layer.name, "type": type(layer).__name__, "params": int(layer.count_params()),
                         "used by": ", ".join(used[layer.name]), "n_heads": len(used[layer.name])})
    return pd.DataFrame(rows).set_index("layer")


class EpochTimer(keras.callbacks.Callback):
    """Wall-clock seconds of each training epoch (``seconds``), to measure throughput after warm-up."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.seconds.append(time.perf_counter() - self._start)

    def samples_per_s(self, n_samples: int) -> float:
        """Samples per second over the epochs after the first (the first also pays for tracing)."""
        if not self.seconds:
            raise ValueError("no epoch has been timed: pass the timer to model.fit(callbacks=[...])")
        later = self.seconds[1:] or self.seconds
        return float(n_samples * len(later) / sum(later))
