"""``make bench``: the course's Shared-Bottom, MMoE, PLE and ESMM against DeepCTR's ``SharedBottom``,
``MMOE``, ``PLE`` and ``ESMM`` on the same ShopSim data, features, layer sizes and batches.

    python -m utils.bench [--scale small] [--epochs 3] [--batch 4096] [--models mmoe ple] [--rows N]

Both implementations are fed by the course's own ``tf.data`` pipeline, so the table compares the models,
not the input code; training throughput is the median over the epochs after the first (which holds
tracing). Each (implementation, model) pair trains in a fresh subprocess, so peak memory is its own and no
graph or cache is shared; the parent prints one table and writes ``build/bench/bench.{md,json}``.
DeepCTR is imported only inside its subprocess and only from the ``bench`` environment (``make bench``
builds ``.venv-bench``); the course never imports it. Its import starts a version-check request, which
is answered locally with "no news" (no network is used).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MODELS = ("shared_bottom", "mmoe", "ple", "esmm")
IMPLEMENTATIONS = ("ours", "deepctr")
CATEGORICAL = ("user_id", "item_id", "position", "category_id", "brand_id", "shop_id",
               "age_band", "city_tier", "purchasing_power")
NUMERIC = ("price",)
EMBEDDING_DIM = 16
#: Layer sizes shared by both implementations.
SIZES: dict[str, dict[str, Any]] = {
    "shared_bottom": {"bottom": (256, 128), "tower": (64,)},
    "mmoe": {"num_experts": 4, "expert_units": (128, 64), "tower": (64,)},
    "ple": {"task_experts": 1, "shared_experts": 2, "levels": 2, "expert_units": (128, 64), "tower": (64,)},
    "esmm": {"tower": (128, 64)},
}
#: (task name, label column) of the two outputs each model is trained and scored on.
TASKS = {"esmm": (("ctr", "click"), ("ctcvr", "purchase")),
         "default": (("click", "click"), ("purchase", "purchase"))}


@dataclass
class BenchResult:
    """One trained model: throughput, memory and the test AUC of its two tasks."""

    model: str
    impl: str
    params: int
    train_rows: int
    train_samples_per_s: float
    predict_samples_per_s: float
    peak_rss_mb: float
    auc_1: float
    auc_2: float


def tasks_of(model: str) -> tuple[tuple[str, str], ...]:
    """The (output, label) pairs of a model."""
    return TASKS["esmm"] if model == "esmm" else TASKS["default"]


def bench_data(scale: str, seed: int, rows: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame, Any]:
    """ShopSim impressions with item and user attributes, split by time (last 6 days = test), and the
    feature spec fitted on the training part. ``rows`` keeps the first rows of each part (smoke runs)."""
    from utils.models import feature_spec
    from utils.shopsim import generate
    from utils.splits import temporal_split

    data = generate(scale, seed=seed)
    frame = data.with_features()
    train, _, test = temporal_split(frame, valid_days=0, test_days=6)
    if rows:
        train, test = train.head(rows), test.head(max(rows // 4, 1000))
    spec = feature_spec(train, categorical=CATEGORICAL, log_numeric=NUMERIC, embedding_dim=EMBEDDING_DIM)
    return train, test, spec


def deepctr_inputs(frame: pd.DataFrame, spec: Any) -> dict[str, np.ndarray]:
    """The same features as DeepCTR wants them: ids re-indexed 1..V by the spec's vocabulary (0 for
    unknown or missing, the slot our ``IntegerLookup`` uses), and the price log1p-normalised."""
    from utils.models import feature_arrays

    raw = feature_arrays(frame, spec)
    out = {}
    for f in spec:
        if f.kind == "numeric":
            x = np.log1p(raw[f.name]) if f.log else raw[f.name]
            out[f.name] = ((x - f.mean) / np.sqrt(f.variance)).astype("float32")
        else:
            vocab = np.asarray(f.vocabulary)
            pos = np.searchsorted(vocab, raw[f.name])
            pos = np.clip(pos, 0, len(vocab) - 1)
            hit = vocab[pos] == raw[f.name]
            out[f.name] = np.where(hit, pos + 1, 0).astype("int32")
    return out


def _ours(model: str, spec: Any) -> Any:
    import keras

    from utils.esmm import esmm_model
    from utils.experts import mmoe_model, ple_model
    from utils.models import Task, shared_bottom_model

    tasks = [Task(name, "binary", label=label) for name, label in tasks_of(model)]
    s = SIZES[model]
    if model == "shared_bottom":
        net = shared_bottom_model(spec, tasks, bottom=s["bottom"], tower=s["tower"])
    elif model == "mmoe":
        net = mmoe_model(spec, tasks, num_experts=s["num_experts"], expert_units=s["expert_units"], tower=s["tower"])
    elif model == "ple":
        net = ple_model(spec, tasks, levels=s["levels"], task_experts=s["task_experts"],
                        shared_experts=s["shared_experts"], expert_units=s["expert_units"], tower=s["tower"])
    else:
        net = esmm_model(spec, bottom="embedding", tower=s["tower"])
    loss = {name: "binary_crossentropy" for name, _ in tasks_of(model)}
    if model == "esmm":
        loss["cvr"] = None
    net.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    return net


def _import_deepctr() -> Any:
    """Import DeepCTR with its version check answered locally (no request leaves the machine)."""
    try:
        import requests
    except ImportError as err:  # pragma: no cover - only outside the bench environment
        raise SystemExit("DeepCTR is not installed here: run `make bench` (it builds .venv-bench)") from err

    class _NoNews:
        status_code = 0
        text = ""

    requests.get = lambda *args, **kwargs: _NoNews()
    try:
        import deepctr.feature_column
        import deepctr.models.multitask
    except ImportError as err:
        raise SystemExit("DeepCTR is not installed here: run `make bench` (it builds .venv-bench)") from err
    return deepctr


def _deepctr(model: str, spec: Any) -> Any:
    import keras

    deepctr = _import_deepctr()
    from deepctr.feature_column import DenseFeat, SparseFeat
    from deepctr.models import multitask

    columns = [DenseFeat(f.name, 1) if f.kind == "numeric" else
               SparseFeat(f.name, vocabulary_size=f.input_dim, embedding_dim=EMBEDDING_DIM)
               for f in spec]
    names = [name for name, _ in tasks_of(model)]
    common = {"l2_reg_embedding": 0.0, "l2_reg_dnn": 0.0, "task_names": names, "seed": 0}
    s = SIZES[model]
    if model == "shared_bottom":
        net = multitask.SharedBottom(columns, bottom_dnn_hidden_units=s["bottom"], tower_dnn_hidden_units=s["tower"],
                                     task_types=["binary", "binary"], **common)
    elif model == "mmoe":
        net = multitask.MMOE(columns, num_experts=s["num_experts"], expert_dnn_hidden_units=s["expert_units"],
                             tower_dnn_hidden_units=s["tower"], task_types=["binary", "binary"], **common)
    elif model == "ple":
        net = multitask.PLE(columns, shared_expert_num=s["shared_experts"], specific_expert_num=s["task_experts"],
                            num_levels=s["levels"], expert_dnn_hidden_units=s["expert_units"],
                            tower_dnn_hidden_units=s["tower"], task_types=["binary", "binary"], **common)
    else:
        net = multitask.ESMM(columns, tower_dnn_hidden_units=s["tower"], task_types=["binary", "binary"], **common)
    net.compile(optimizer=keras.optimizers.Adam(1e-3), loss=("binary_crossentropy", "binary_crossentropy"))
    del deepctr
    return net


class _EpochTimes:
    """Wall time of every epoch (the first includes tracing, so throughput uses the later ones)."""

    def __init__(self) -> None:
        import keras

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(cb, epoch: int, logs: Any = None) -> None:
                cb.start = time.perf_counter()

            def on_epoch_end(cb, epoch: int, logs: Any = None) -> None:
                self.times.append(time.perf_counter() - cb.start)

        self.times: list[float] = []
        self.callback = Callback()


def run_one(model: str, impl: str, scale: str, seed: int, epochs: int, batch: int, rows: int | None) -> BenchResult:
    """Train and score one model in this process; returns its measurements."""
    import tensorflow as tf

    from utils.metrics import auc
    from utils.models import _batches, feature_arrays
    from utils.runtime import set_seed

    if model not in MODELS or impl not in IMPLEMENTATIONS:
        raise ValueError(f"unknown model {model!r} or implementation {impl!r}: models {MODELS}, {IMPLEMENTATIONS}")
    if epochs < 2:
        raise ValueError("epochs must be >= 2: the first epoch includes tracing and is not timed")
    set_seed(seed)
    tf.get_logger().setLevel("ERROR")
    train, test, spec = bench_data(scale, seed, rows)
    net = _ours(model, spec) if impl == "ours" else _deepctr(model, spec)
    encode = feature_arrays if impl == "ours" else deepctr_inputs
    labels = [train[label].to_numpy("float32")[:, None] for _, label in tasks_of(model)]
    names = [name for name, _ in tasks_of(model)]
    if impl == "ours":
        y = dict(zip(names, labels))
        if model == "esmm":
            y["cvr"] = np.zeros_like(labels[0])
    else:
        y = tuple(labels)
    data = _batches((encode(train, spec), y), len(train), batch, shuffle=True, seed=seed)
    timer = _EpochTimes()
    net.fit(data, epochs=epochs, verbose=0, shuffle=False, callbacks=[timer.callback])
    train_rate = len(train) / float(np.median(timer.times[1:]))
    x_test = encode(test, spec)
    net.predict(x_test, batch_size=batch, verbose=0)
    start = time.perf_counter()
    pred = net.predict(x_test, batch_size=batch, verbose=0)
    predict_rate = len(test) / (time.perf_counter() - start)
    if not isinstance(pred, dict):
        pred = dict(zip(names, pred))
    aucs = [auc(test[label].to_numpy(), np.asarray(pred[name]).ravel()) for name, label in tasks_of(model)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return BenchResult(model, impl, int(net.count_params()), len(train), train_rate, predict_rate, peak, *aucs)


def ratio_table(results: Sequence[BenchResult]) -> pd.DataFrame:
    """Ours against DeepCTR per model: throughput and memory ratios (ours / DeepCTR), AUC differences."""
    frame = pd.DataFrame([asdict(r) for r in results])
    rows = []
    for model in [m for m in MODELS if m in set(frame["model"])]:
        sub = frame[frame["model"] == model].set_index("impl")
        if not {"ours", "deepctr"} <= set(sub.index):
            continue
        o, d = sub.loc["ours"], sub.loc["deepctr"]
        rows.append({
            "model": model,
            "train ours/deepctr": o["train_samples_per_s"] / d["train_samples_per_s"],
            "predict ours/deepctr": o["predict_samples_per_s"] / d["predict_samples_per_s"],
            "peak memory ours/deepctr": o["peak_rss_mb"] / d["peak_rss_mb"],
            "AUC 1 ours-deepctr": o["auc_1"] - d["auc_1"],
            "AUC 2 ours-deepctr": o["auc_2"] - d["auc_2"],
        })
    return pd.DataFrame(rows).set_index("model") if rows else pd.DataFrame()


def _subprocess(model: str, impl: str, args: argparse.Namespace) -> BenchResult:
    cmd = [sys.executable, "-m", "utils.bench", "--one", model, impl, "--scale", args.scale, "--seed", str(args.seed),
           "--epochs", str(args.epochs), "--batch", str(args.batch)] + (["--rows", str(args.rows)] if args.rows else [])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise SystemExit(f"{impl} {model} failed (exit {done.returncode}):\n{tail}")
    return BenchResult(**json.loads(lines[-1]))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (every model, both implementations) and print the tables."""
    parser = argparse.ArgumentParser(prog="python -m utils.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="small")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--rows", type=int, default=None, help="keep only the first N training rows (smoke runs)")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    parser.add_argument("--impls", nargs="*", default=list(IMPLEMENTATIONS), choices=IMPLEMENTATIONS)
    parser.add_argument("--out", type=Path, default=Path("build/bench"))
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        result = run_one(args.one[0], args.one[1], args.scale, args.seed, args.epochs, args.batch, args.rows)
        print(json.dumps(asdict(result)))
        return 0
    results = []
    for model in args.models:
        for impl in args.impls:
            result = _subprocess(model, impl, args)
            print(f"{impl:>8} {model:<14} {result.train_samples_per_s:>10,.0f} samples/s train, "
                  f"{result.predict_samples_per_s:>10,.0f} predict, {result.peak_rss_mb:,.0f} MB, "
                  f"AUC {result.auc_1:.4f} / {result.auc_2:.4f}", flush=True)
            results.append(result)
    table = pd.DataFrame([asdict(r) for r in results]).set_index(["model", "impl"])
    ratios = ratio_table(results)
    pd.set_option("display.width", 160)
    print("\n" + table.round(4).to_string())
    if not ratios.empty:
        print("\n" + ratios.round(3).to_string())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps([asdict(r) for r in results], indent=1))
    (args.out / "bench.md").write_text(
        f"scale {args.scale}, {args.epochs} epochs, batch {args.batch}, seed {args.seed}\n\n```\n"
        + table.round(4).to_string() + "\n\n" + (ratios.round(3).to_string() if not ratios.empty else "") + "\n```\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
