"""Feed a pandas frame to Keras through ``tf.data``: features as a dict of columns, labels beside them."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import tensorflow as tf


def make_dataset(
    frame: pd.DataFrame,
    features: Sequence[str],
    labels: str | Sequence[str],
    batch_size: int = 1024,
    shuffle: bool = False,
    seed: int = 0,
) -> tf.data.Dataset:
    """A batched, prefetched ``tf.data.Dataset`` of ``(features_dict, labels)`` from a frame.

    ``labels`` is one column (a tensor) or several (a dict, as a multi-task model wants). Shuffling is
    seeded and reshuffles each epoch. A label among the features is refused: that is a leak.
    """
    label_list = [labels] if isinstance(labels, str) else list(labels)
    missing = [c for c in [*features, *label_list] if c not in frame.columns]
    if missing:
        raise KeyError(f"the frame has no column(s) {missing}")
    leaked = sorted(set(features) & set(label_list))
    if leaked:
        raise ValueError(f"{leaked} is both a feature and a label: the model would see the answer")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for column in label_list:
        if frame[column].isna().any():
            raise ValueError(f"label {column!r} has missing values: mask them (sample weights) or drop the rows")
    x = {name: frame[name].to_numpy() for name in features}
    y = frame[labels].to_numpy() if isinstance(labels, str) else {name: frame[name].to_numpy() for name in label_list}
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(min(len(frame), 100_000), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
