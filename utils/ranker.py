"""The course's ranker as a system uses it: a shared-bottom model with a click head (pCTR, on every
impression) and a purchase head (pCVR, purchase given click, labelled on clicked impressions), on the
user's and the item's raw features, trained by one function under any ``tf.distribute`` strategy.

    >>> log = ranking_log(shop)                         # impressions + features + the masked CVR label
    >>> train, valid, test = temporal_split(log, 3, 3)
    >>> spec = ranker_spec(train)
    >>> ranker = train_ranker(train, spec, epochs=1)    # or strategy=tf.distribute.MirroredStrategy()

Position is a feature, as lesson 01 teaches: the slot explains the attention an impression got, so training
with it keeps that attention out of what the model learns about users and items. A candidate has no slot yet
when it is scored, so serving fixes it (:func:`at_serving_slot`, position 1): every candidate is then scored
as if it were shown first, and their order is the model's relevance order.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pandas as pd

from utils.models import (FeatureSpec, Task, compile_model, feature_arrays, feature_spec, make_multitask_dataset,
                          shared_bottom_model)
from utils.runtime import set_seed

__all__ = ["ITEM_FEATURES", "RANK_TASKS", "SERVING_POSITION", "USER_FEATURES", "at_serving_slot", "build_ranker",
           "catalogue_click_scores", "ranker_spec", "ranking_log", "train_ranker"]

#: The user's raw features (the query side of retrieval, the user half of the ranker).
USER_FEATURES = ("user_id", "age_band", "city_tier", "purchasing_power")
#: The item's raw categorical features; ``price`` joins them as a log-numeric feature.
ITEM_FEATURES = ("item_id", "category_id", "brand_id", "shop_id")
#: The slot every candidate is scored at when served (the top of the page).
SERVING_POSITION = 1
#: The ranker's tasks: pCTR on every impression, pCVR (purchase given click) on clicked ones.
RANK_TASKS = (Task("click", "binary"), Task("purchase", "binary", label="cvr_label"))


def ranking_log(shop: Any) -> pd.DataFrame:
    """A ShopSim log with item and user features joined and ``cvr_label`` (purchase where clicked, else NA)."""
    log = shop.with_features()
    log["cvr_label"] = log["purchase"].where(log["click"] == 1)
    return log


def ranker_spec(train: pd.DataFrame, embedding_dim: int = 16) -> FeatureSpec:
    """The ranker's features fitted on the training days: user and item ids and attributes, log price, position."""
    return feature_spec(train, categorical=[*USER_FEATURES, *ITEM_FEATURES, "position"], log_numeric=["price"],
                        embedding_dim=embedding_dim)


def at_serving_slot(rows: pd.DataFrame, position: int = SERVING_POSITION) -> pd.DataFrame:
    """A copy of ``rows`` with every position set to the serving slot: how candidates are scored."""
    if position < 1:
        raise ValueError(f"position must be >= 1, got {position}")
    return rows.assign(position=np.int8(position))


def build_ranker(spec: FeatureSpec, learning_rate: float = 2e-3) -> keras.Model:
    """Shared bottom (64) -> one tower (32) and head per task; compiled with each task's loss and metrics."""
    tasks = list(RANK_TASKS)
    return compile_model(shared_bottom_model(spec, tasks, bottom=(64,), tower=(32,), name="ranker"), tasks,
                         learning_rate)


def train_ranker(train: pd.DataFrame, spec: FeatureSpec, epochs: int = 1, batch_size: int = 2048,
                 learning_rate: float = 2e-3, seed: int = 42, shuffle: bool = True,
                 strategy: Any | None = None) -> keras.Model:
    """Build and fit the ranker on ``train``; under ``strategy.scope()`` when a strategy is given.

    The same call trains on one device, on several GPUs (``MirroredStrategy``) or on a TPU
    (``TPUStrategy``): Keras splits each batch of ``batch_size`` rows across the replicas and sums their
    gradients. ``seed`` fixes the initial weights and the batch order.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    set_seed(seed)
    if strategy is None:
        model = build_ranker(spec, learning_rate)
    else:
        with strategy.scope():
            model = build_ranker(spec, learning_rate)
    data = make_multitask_dataset(train, spec, list(RANK_TASKS), batch_size, shuffle=shuffle, seed=seed)
    model.fit(data, epochs=epochs, verbose=0, shuffle=False)
    return model


def catalogue_click_scores(model: keras.Model, spec: FeatureSpec, users: pd.DataFrame, items: pd.DataFrame,
                           users_per_call: int = 256) -> np.ndarray:
    """The ranker's pCTR at the serving slot for every user in ``users`` and every item in ``items``,
    ``(n_users, n_items)``: the ranker used as a retriever over a whole catalogue, ``users_per_call`` users
    at a time. Exact, but one model call per (user, item) pair: a baseline for retrieval, not a way to serve it.

    ``users`` needs :data:`USER_FEATURES`, ``items`` :data:`ITEM_FEATURES` and ``price``.
    """
    for frame, wanted, name in ((users, USER_FEATURES, "users"), (items, (*ITEM_FEATURES, "price"), "items")):
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise KeyError(f"{name} lacks the column(s) {missing}: give one row per {name[:-1]} with {list(wanted)}")
    if users_per_call < 1:
        raise ValueError(f"users_per_call must be >= 1, got {users_per_call}")
    item_part = items[list((*ITEM_FEATURES, "price"))]
    user_part = users[list(USER_FEATURES)]
    out = np.empty((len(user_part), len(item_part)), dtype=np.float32)
    for lo in range(0, len(user_part), users_per_call):
        block = user_part.iloc[lo:lo + users_per_call]
        grid = at_serving_slot(block.merge(item_part, how="cross"))  # user-major: row u * n_items + i
        pred = model.predict(feature_arrays(grid, spec), batch_size=65_536, verbose=0)["click"]
        out[lo:lo + len(block)] = np.asarray(pred, dtype=np.float32).reshape(len(block), len(item_part))
    return out
