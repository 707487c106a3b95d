"""ESMM, the Entire Space Multi-task Model (Ma et al., SIGIR 2018): a CTR tower and a CVR tower whose
probabilities multiply into pCTCVR, trained on every impression with the click and click-and-buy labels.

    >>> model = compile_esmm(esmm_model(spec, bottom="embedding"))
    >>> model.fit(esmm_dataset(train, spec, 4096, shuffle=True), epochs=3, shuffle=False)
    >>> model.predict(feature_arrays(test, spec))["cvr"]     # pCVR for every impression
    >>> result = train_esmm(esmm_model(spec), spec, train, valid)  # the course's protocol: early-stopped

The CVR tower never sees a label of its own: its output is learned through
p(click & buy | x) = p(click | x) · p(buy | click, x), on the entire space of impressions, which is what
removes the sample-selection bias of a CVR model trained on clicks alone. The product is of
probabilities (sigmoid outputs), never of logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import pandas as pd
import tensorflow as tf

from utils.experts import EXPERT_LAYER, MixtureOfExperts, ProgressiveLayeredExtraction
from utils.models import FeatureSpec, Task, build_inputs, make_multitask_dataset, mlp
from utils.training import FitResult, fit, init_output_biases

__all__ = ["BOTTOMS", "ESMM_MONITORS", "ESMM_TASKS", "compile_esmm", "esmm_dataset", "esmm_model",
           "init_esmm_biases", "train_esmm"]

#: What the two towers can share: the embeddings only (the paper's design), an MLP, MMoE or PLE experts.
BOTTOMS = ("embedding", "shared_bottom", "mmoe", "ple")
#: The two supervised outputs and their labels: click, and purchase (0 on every non-clicked impression,
#: so it is the click-and-buy label over the entire space).
ESMM_TASKS = (Task("ctr", "binary", label="click"), Task("ctcvr", "binary", label="purchase"))
#: What early stopping follows by default: the validation log loss of the entire-space loss (click and buy), which
#: a real log has (the CVR output has no label of its own on the entire space; CTR alone is not the goal). Not
#: Keras's AUC: it bins predictions at evenly spaced thresholds, and a pCTCVR of 0.02 % falls into the first bin.
ESMM_MONITORS = {"val_ctcvr_log_loss": "min"}


def esmm_model(
    spec: FeatureSpec,
    bottom: str = "embedding",
    tower: Sequence[int] = (64, 32),
    bottom_units: Sequence[int] = (128,),
    num_experts: int = 4,
    expert_units: Sequence[int] = (64,),
    name: str = "esmm",
) -> keras.Model:
    """ESMM on ``spec``'s features: outputs ``{"ctr", "cvr", "ctcvr"}``, each (n, 1), ctcvr = ctr × cvr.

    ``bottom`` chooses what the CTR and CVR towers share below them (:data:`BOTTOMS`); the expert
    bottoms use ``num_experts`` experts of ``expert_units`` (PLE: one expert per task and
    ``num_experts - 2`` shared, at least one). Layers: ``tower_ctr_dense_i``, ``head_ctr``, the same for
    cvr, ``bottom_dense_i`` or ``experts``, and the product ``ctcvr``.
    """
    if bottom not in BOTTOMS:
        raise ValueError(f"bottom must be one of {BOTTOMS}, got {bottom!r}")
    inputs, x = build_inputs(spec)
    if bottom == "embedding":
        reps = [x, x]
    elif bottom == "shared_bottom":
        shared = mlp(bottom_units, name="bottom")(x)
        reps = [shared, shared]
    elif bottom == "mmoe":
        reps, _ = MixtureOfExperts(num_experts, expert_units, 2, task_names=["ctr", "cvr"], name=EXPERT_LAYER)(x)
    else:
        reps, _ = ProgressiveLayeredExtraction(2, levels=2, task_experts=1, shared_experts=max(num_experts - 2, 1),
                                               expert_units=expert_units, task_names=["ctr", "cvr"],
                                               name=EXPERT_LAYER)(x)
    # The heads and the product compute in float32 whatever the global policy (see utils.models._head).
    p_ctr = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="head_ctr")(mlp(tower, name="tower_ctr")(reps[0]))
    p_cvr = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="head_cvr")(mlp(tower, name="tower_cvr")(reps[1]))
    p_ctcvr = keras.layers.Multiply(dtype="float32", name="ctcvr")([p_ctr, p_cvr])
    return keras.Model(inputs, {"ctr": p_ctr, "cvr": p_cvr, "ctcvr": p_ctcvr}, name=name)


def compile_esmm(
    model: keras.Model,
    learning_rate: float = 1e-3,
    ctcvr_weight: float = 1.0,
    jit_compile: bool = False,
    steps_per_execution: int = 1,
) -> keras.Model:
    """Compile with the entire-space loss: BCE(click, pCTR) + ``ctcvr_weight`` · BCE(purchase, pCTCVR).

    The ``cvr`` output gets no loss (it has no label on most impressions); AUC and log loss are tracked
    for ctr and ctcvr. ``steps_per_execution`` runs that many batches per call (same arithmetic). Returns the model.
    """
    outputs = model.output
    missing = [k for k in ("ctr", "cvr", "ctcvr") if not isinstance(outputs, dict) or k not in outputs]
    if missing:
        raise ValueError(f"not an ESMM model: outputs {missing} are missing (build it with esmm_model)")
    metrics = {t.name: [keras.metrics.AUC(name="auc"), keras.metrics.BinaryCrossentropy(name="log_loss")]
               for t in ESMM_TASKS}
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss={"ctr": "binary_crossentropy", "ctcvr": "binary_crossentropy", "cvr": None},
        loss_weights={"ctr": 1.0, "ctcvr": float(ctcvr_weight), "cvr": 0.0},
        weighted_metrics=metrics,
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    return model


def _require_funnel_columns(frame: pd.DataFrame) -> None:
    """ESMM's labels are a log's ``click`` and ``purchase`` columns: refuse a frame without them."""
    for column in ("click", "purchase"):
        if column not in frame.columns:
            raise ValueError(f"ESMM needs a {column!r} column; the frame has {list(frame.columns)}")


def init_esmm_biases(model: keras.Model, frame: pd.DataFrame) -> dict[str, float]:
    """Set the CTR head's bias to the logit of the click rate on ``frame`` and the CVR head's to the logit of the
    purchase rate among its clicks, so that pCTCVR = pCTR · pCVR starts at the click-and-buy rate.

    Returns the two rates. A frame without a click or without a purchase among the clicks is refused.
    """
    _require_funnel_columns(frame)
    clicked = frame[frame["click"].to_numpy() == 1]
    if clicked.empty or not clicked["purchase"].any():
        raise ValueError("the frame needs clicks and purchases among them to take the base rates from")
    init_output_biases(model, [Task("ctr", "binary", label="click")], frame)
    init_output_biases(model, [Task("cvr", "binary", label="purchase")], clicked)
    return {"ctr": float(frame["click"].mean()), "cvr": float(clicked["purchase"].mean())}


def train_esmm(
    model: keras.Model,
    spec: FeatureSpec,
    train_rows: pd.DataFrame,
    valid_rows: pd.DataFrame,
    batch_size: int = 8192,
    seed: int = 0,
    learning_rate: float = 1e-3,
    max_epochs: int = 30,
    patience: int = 2,
    monitors: dict[str, str] | None = None,
    steps_per_execution: int = 8,
) -> FitResult:
    """ESMM under the course's protocol: compile, output biases at the base rates (:func:`init_esmm_biases`),
    early stopping on :data:`ESMM_MONITORS` (or ``monitors``) with the first monitor's best weights restored.

    Every impression of ``train_rows`` trains both losses; ``valid_rows`` are every impression of the
    validation days. With ``monitors={"val_ctcvr_log_loss": "min", "val_ctr_log_loss": "min"}``,
    ``FitResult.use("val_ctr_log_loss")`` switches to the CTR monitor's best weights.
    """
    compile_esmm(model, learning_rate, steps_per_execution=steps_per_execution)
    init_esmm_biases(model, train_rows)
    data = esmm_dataset(train_rows, spec, batch_size, shuffle=True, seed=seed)
    valid = esmm_dataset(valid_rows, spec, max(batch_size, 8192))
    return fit(model, data, valid, dict(monitors or ESMM_MONITORS), max_epochs=max_epochs, patience=patience)


def esmm_dataset(
    frame: pd.DataFrame,
    spec: FeatureSpec,
    batch_size: int = 4096,
    shuffle: bool = False,
    seed: int = 0,
) -> tf.data.Dataset:
    """``(x, y, sample_weight)`` batches for ESMM: every impression, labels ``ctr`` = click and
    ``ctcvr`` = purchase (and a ``cvr`` target of weight 0, since Keras wants one per output). A frame
    where a purchase has no click is refused (it is not a funnel)."""
    _require_funnel_columns(frame)
    if ((frame["purchase"] == 1) & (frame["click"] != 1)).any():
        raise ValueError("some rows have purchase=1 without click=1: ESMM's labels must form a funnel")
    ds = make_multitask_dataset(frame, spec, list(ESMM_TASKS), batch_size=batch_size, shuffle=shuffle, seed=seed)

    def add_cvr(x: dict, y: dict, w: dict) -> tuple[dict, dict, dict]:
        # Keras wants a target for every output; the cvr one weighs 0 (and has no loss): it is unlabelled.
        return x, {**y, "cvr": tf.zeros_like(y["ctr"])}, {**w, "cvr": tf.zeros_like(w["ctr"])}

    return ds.map(add_cvr)

