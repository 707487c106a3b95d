"""``make bench``: the course's Shared-Bottom, MMoE, PLE and ESMM against DeepCTR's ``SharedBottom``,
``MMOE``, ``PLE`` and ``ESMM`` on the same ShopSim data, features, layer sizes and batches, in float32 and
under Keras's ``mixed_bfloat16`` policy.

    python -m utils.bench [--scale small] [--epochs 3] [--batch 4096] [--models mmoe ple]
                          [--policies float32 mixed_bfloat16] [--repeats 1] [--rows N]

Both implementations are fed by the course's own ``tf.data`` pipeline, so the table compares the models,
not the input code; training throughput is the median over the epochs after the first (which holds
tracing), prediction throughput the median of three timed passes over the test set. Each (implementation,
model, policy) trains in a fresh subprocess, so peak memory is its own and no graph, cache or global
policy is shared; the runs alternate implementations and policies model by model (and, with
``--repeats``, round after round, each number then the median over rounds), so a machine whose load
changes slows both sides alike. The data are generated once and handed to every run.

For each model the comparison takes each implementation at its best policy: the fastest to train among
the policies that ran and whose AUCs stay within :data:`AUC_TOLERANCE` of its own float32 ones. It gives
the throughput and memory ratios (ours / DeepCTR), each task's AUC difference (ours - DeepCTR) with its
paired standard error (DeLong et al. 1988: both models scored on the same test rows, so their errors are
correlated and the difference is more precise than two separate Hanley-McNeil errors would say), and
whether the goal is met: :data:`GOAL_SPEEDUP` x DeepCTR's training throughput at an AUC no lower than
DeepCTR's - :data:`AUC_TOLERANCE` on both tasks. A run that fails (DeepCTR under a policy it does not
support, say) is kept in the table with its error instead of stopping the benchmark.

The parent prints the tables and writes ``build/bench/bench.{md,json}``. DeepCTR is imported only inside
its subprocess and only from the ``bench`` environment (``make bench`` builds ``.venv-bench``); the course
never imports it. Its import starts a version-check request, which is answered locally with "no news" (no
network is used).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import resource
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MODELS = ("shared_bottom", "mmoe", "ple", "esmm")
IMPLEMENTATIONS = ("ours", "deepctr")
#: Keras dtype policies benchmarked: float32, and bfloat16 compute with float32 weights.
POLICIES = ("float32", "mixed_bfloat16")
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
#: The goal: ours trains this many times as fast as DeepCTR, each at its best policy ...
GOAL_SPEEDUP = 1.5
#: ... at an AUC no lower than DeepCTR's minus this, on both tasks; a policy whose AUCs fall further than
#: this below its own float32 AUCs does not count as an implementation's best.
AUC_TOLERANCE = 0.002


@dataclass
class BenchResult:
    """One trained model: throughput, memory and the test AUC (with its Hanley-McNeil error) of its two
    tasks; ``error`` says why a run that failed has no numbers."""

    model: str
    impl: str
    policy: str = "float32"
    params: int = 0
    train_rows: int = 0
    test_rows: int = 0
    train_samples_per_s: float = math.nan
    predict_samples_per_s: float = math.nan
    peak_rss_mb: float = math.nan
    auc_1: float = math.nan
    auc_2: float = math.nan
    auc_1_se: float = math.nan
    auc_2_se: float = math.nan
    repeats: int = 1
    train_rates: list[float] = field(default_factory=list)
    #: dtype of the predicted probabilities (float32 heads keep distinct scores; bfloat16 ones tie, lowering AUC)
    output_dtype: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


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


def _load_data(scale: str, seed: int, rows: int | None, data: Path | None) -> tuple[pd.DataFrame, pd.DataFrame, Any]:
    if data is None:
        return bench_data(scale, seed, rows)
    with open(data, "rb") as f:
        return pickle.load(f)


def save_data(path: Path, scale: str, seed: int, rows: int | None) -> tuple[pd.DataFrame, pd.DataFrame, Any]:
    """Generate the benchmark's data once and pickle the columns the runs need to ``path``."""
    train, test, spec = bench_data(scale, seed, rows)
    columns = [*CATEGORICAL, *NUMERIC, "click", "purchase"]
    parts = (train[columns].reset_index(drop=True), test[columns].reset_index(drop=True), spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(parts, f, protocol=pickle.HIGHEST_PROTOCOL)
    return parts


def run_one(model: str, impl: str, scale: str, seed: int, epochs: int, batch: int, rows: int | None,
            policy: str = "float32", data: Path | None = None, predictions: Path | None = None) -> BenchResult:
    """Train and score one model in this process under the Keras dtype ``policy``; returns its measurements.

    ``data`` is a pickle written by :func:`save_data` (else the data are generated here); ``predictions``,
    where given, receives the two tasks' test scores (``.npz``) for the paired AUC comparison. The global
    policy is restored afterwards.
    """
    import keras
    import tensorflow as tf

    from utils.metrics import auc, auc_standard_error
    from utils.models import _batches, feature_arrays
    from utils.runtime import set_seed

    if model not in MODELS or impl not in IMPLEMENTATIONS:
        raise ValueError(f"unknown model {model!r} or implementation {impl!r}: models {MODELS}, {IMPLEMENTATIONS}")
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}: one of {POLICIES}")
    if epochs < 2:
        raise ValueError("epochs must be >= 2: the first epoch includes tracing and is not timed")
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        set_seed(seed)
        tf.get_logger().setLevel("ERROR")
        train, test, spec = _load_data(scale, seed, rows, data)
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
        ds = _batches((encode(train, spec), y), len(train), batch, shuffle=True, seed=seed)
        timer = _EpochTimes()
        net.fit(ds, epochs=epochs, verbose=0, shuffle=False, callbacks=[timer.callback])
        train_rate = len(train) / float(np.median(timer.times[1:]))
        x_test = encode(test, spec)
        net.predict(x_test, batch_size=batch, verbose=0)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            pred = net.predict(x_test, batch_size=batch, verbose=0)
            times.append(time.perf_counter() - start)
        predict_rate = len(test) / float(np.median(times))
        if not isinstance(pred, dict):
            pred = dict(zip(names, pred))
        output_dtype = str(np.asarray(pred[names[0]]).dtype)
        scores = [np.asarray(pred[name], dtype=np.float64).ravel() for name in names]
        truths = [test[label].to_numpy() for _, label in tasks_of(model)]
        if predictions is not None:
            predictions.parent.mkdir(parents=True, exist_ok=True)
            np.savez(predictions, score_1=scores[0], score_2=scores[1])
        aucs = [auc(t, p) for t, p in zip(truths, scores)]
        ses = [auc_standard_error(t, p) for t, p in zip(truths, scores)]
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        return BenchResult(model, impl, policy, int(net.count_params()), len(train), len(test), train_rate,
                           predict_rate, peak, aucs[0], aucs[1], ses[0], ses[1], 1, [train_rate], output_dtype)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def paired_auc_difference(y_true: Any, score_a: Any, score_b: Any) -> tuple[float, float]:
    """AUC(a) - AUC(b) of two scores of the same rows, and its standard error (DeLong, DeLong and
    Clarke-Pearson, Biometrics 1988): each AUC is the mean over positives of the share of negatives scored
    below them (ties count one half); the variance of the difference comes from the covariance of these
    per-row shares between the two scores, which is what makes it paired."""
    from scipy.stats import rankdata

    y = np.asarray(y_true).astype(bool).ravel()
    m, n = int(y.sum()), int((~y).sum())
    if m < 2 or n < 2:
        raise ValueError(f"need at least two positives and two negatives, got {m} and {n}")
    v10, v01 = [], []
    for score in (score_a, score_b):
        s = np.asarray(score, dtype=np.float64).ravel()
        if len(s) != len(y):
            raise ValueError(f"{len(s)} scores for {len(y)} labels")
        ranks = rankdata(s)
        v10.append((ranks[y] - rankdata(s[y])) / n)  # per positive: negatives below it
        v01.append(1.0 - (ranks[~y] - rankdata(s[~y])) / m)  # per negative: positives above it
    contrast = np.array([1.0, -1.0])
    variance = contrast @ np.cov(np.vstack(v10)) @ contrast / m + contrast @ np.cov(np.vstack(v01)) @ contrast / n
    return float(v10[0].mean() - v10[1].mean()), float(np.sqrt(max(variance, 0.0)))


def best_policy(results: Sequence[BenchResult], model: str, impl: str) -> BenchResult | None:
    """An implementation's best run of a model: the fastest to train among the policies that ran and whose
    AUCs are within :data:`AUC_TOLERANCE` of its own float32 AUCs (any that ran, where float32 did not)."""
    runs = [r for r in results if r.model == model and r.impl == impl and r.ok]
    base = next((r for r in runs if r.policy == "float32"), None)
    if base is not None:
        runs = [r for r in runs if r.auc_1 >= base.auc_1 - AUC_TOLERANCE and r.auc_2 >= base.auc_2 - AUC_TOLERANCE]
    return max(runs, key=lambda r: r.train_samples_per_s, default=None)


Paired = Mapping[tuple[str, str, str], Sequence[tuple[float, float]]]


def ratio_table(results: Sequence[BenchResult], paired: Paired | None = None) -> pd.DataFrame:
    """Ours at its best policy against DeepCTR at its best, per model: throughput and memory ratios (ours /
    DeepCTR), the AUC differences (ours - DeepCTR) with their standard errors and whether the goal is met.

    ``paired`` maps ``(model, our policy, DeepCTR's policy)`` to the two tasks' (difference, paired standard
    error) from :func:`paired_auc_difference`; without it the error is the unpaired one, ``sqrt(se_ours^2 +
    se_deepctr^2)`` of the two Hanley-McNeil errors, which overstates it. Also: the training ratio at each
    policy where both ran.
    """
    rows = []
    for model in [m for m in MODELS if any(r.model == m for r in results)]:
        o, d = best_policy(results, model, "ours"), best_policy(results, model, "deepctr")
        if o is None or d is None:
            continue
        row: dict[str, Any] = {
            "model": model, "ours policy": o.policy, "deepctr policy": d.policy,
            "train ours/deepctr": o.train_samples_per_s / d.train_samples_per_s,
            "predict ours/deepctr": o.predict_samples_per_s / d.predict_samples_per_s,
            "peak memory ours/deepctr": o.peak_rss_mb / d.peak_rss_mb,
        }
        pairs = (paired or {}).get((model, o.policy, d.policy))
        for i in (1, 2):
            if pairs is not None:
                diff, se = pairs[i - 1]
            else:
                diff = getattr(o, f"auc_{i}") - getattr(d, f"auc_{i}")
                se = math.hypot(getattr(o, f"auc_{i}_se"), getattr(d, f"auc_{i}_se"))
            row[f"AUC {i} ours-deepctr"], row[f"AUC {i} SE"] = diff, se
        row["SE"] = "paired DeLong" if pairs is not None else "unpaired Hanley-McNeil"
        row["goal met"] = bool(row["train ours/deepctr"] >= GOAL_SPEEDUP
                               and row["AUC 1 ours-deepctr"] >= -AUC_TOLERANCE
                               and row["AUC 2 ours-deepctr"] >= -AUC_TOLERANCE)
        for policy in POLICIES:
            same = [next((r for r in results if (r.model, r.impl, r.policy) == (model, impl, policy) and r.ok), None)
                    for impl in IMPLEMENTATIONS]
            if all(same):
                row[f"train ours/deepctr {policy}"] = same[0].train_samples_per_s / same[1].train_samples_per_s
        rows.append(row)
    return pd.DataFrame(rows).set_index("model") if rows else pd.DataFrame()


def _paired_differences(results: Sequence[BenchResult], test: pd.DataFrame, pred_dir: Path) -> dict:
    out = {}
    for model in MODELS:
        o, d = best_policy(results, model, "ours"), best_policy(results, model, "deepctr")
        if o is None or d is None:
            continue
        files = [np.load(pred_dir / f"{model}_{r.impl}_{r.policy}.npz") for r in (o, d)]
        out[(model, o.policy, d.policy)] = [
            paired_auc_difference(test[label].to_numpy(), files[0][f"score_{i}"], files[1][f"score_{i}"])
            for i, (_, label) in enumerate(tasks_of(model), start=1)]
    return out


def _error_line(text: str) -> str:
    """The exception line of a traceback (``TypeError: ...``), else its last line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if ":" in line and head.replace(".", "").isidentifier() and (head.endswith("Error") or head.endswith("Exception")):
            return line[:400]
    return (lines[-1] if lines else "no output")[:400]


def _subprocess(model: str, impl: str, policy: str, args: argparse.Namespace, data: Path) -> BenchResult:
    cmd = [sys.executable, "-m", "utils.bench", "--one", model, impl, policy, "--scale", args.scale,
           "--seed", str(args.seed), "--epochs", str(args.epochs), "--batch", str(args.batch),
           "--data", str(data), "--predictions", str(args.out / "predictions" / f"{model}_{impl}_{policy}.npz")]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return BenchResult(model, impl, policy, error=f"exit {done.returncode}: {_error_line(done.stderr or done.stdout)}")
    return BenchResult(**json.loads(lines[-1]))


def _median_of(runs: Sequence[BenchResult]) -> BenchResult:
    """One result from repeated runs: the median throughputs and memory, the first run's AUCs."""
    ok = [r for r in runs if r.ok]
    if not ok:
        return runs[0]
    first = ok[0]
    return BenchResult(**{**asdict(first),
                          "train_samples_per_s": float(np.median([r.train_samples_per_s for r in ok])),
                          "predict_samples_per_s": float(np.median([r.predict_samples_per_s for r in ok])),
                          "peak_rss_mb": float(np.median([r.peak_rss_mb for r in ok])),
                          "repeats": len(ok), "train_rates": [r.train_samples_per_s for r in ok]})


def results_table(results: Sequence[BenchResult]) -> pd.DataFrame:
    """One row per (model, implementation, policy): throughputs, memory, AUCs with errors, any error."""
    frame = pd.DataFrame([asdict(r) for r in results]).drop(columns=["train_rates", "test_rows"])
    return frame.set_index(["model", "impl", "policy"])


def _describe(args: argparse.Namespace, results: Sequence[BenchResult]) -> str:
    rows = {r.train_rows for r in results if r.ok} or {0}
    tests = {r.test_rows for r in results if r.ok} or {0}
    return (f"scale {args.scale} ({max(rows):,} training and {max(tests):,} test rows), {args.epochs} epochs, "
            f"batch {args.batch}, seed {args.seed}, {args.repeats} round(s); train = median samples/s over "
            f"epochs 2..{args.epochs} (median over rounds), predict = median of 3 passes, peak RSS of the run's "
            f"process, AUC ± Hanley-McNeil SE; AUC differences ± paired (DeLong) SE. Both errors are the test "
            f"set's sampling error alone, not the spread between training seeds. Best policy: the fastest whose "
            f"AUCs stay within {AUC_TOLERANCE} of the implementation's float32 ones. Goal: ours at its best "
            f">= {GOAL_SPEEDUP}x DeepCTR's training throughput at its best, AUC >= DeepCTR's - {AUC_TOLERANCE} "
            f"on both tasks.")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (every model, implementation and policy) and print the tables."""
    parser = argparse.ArgumentParser(prog="python -m utils.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="small")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--rows", type=int, default=None, help="keep only the first N training rows (smoke runs)")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    parser.add_argument("--impls", nargs="*", default=list(IMPLEMENTATIONS), choices=IMPLEMENTATIONS)
    parser.add_argument("--policies", nargs="*", default=list(POLICIES), choices=POLICIES)
    parser.add_argument("--repeats", type=int, default=1, help="rounds of every run; numbers are medians over them")
    parser.add_argument("--out", type=Path, default=Path("build/bench"))
    parser.add_argument("--one", nargs=3, metavar=("MODEL", "IMPL", "POLICY"), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--predictions", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        result = run_one(*args.one[:2], args.scale, args.seed, args.epochs, args.batch, args.rows,
                         policy=args.one[2], data=args.data, predictions=args.predictions)
        print(json.dumps(asdict(result)))
        return 0
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    data = args.out / "data.pkl"
    _, test, _ = save_data(data, args.scale, args.seed, args.rows)
    runs: dict[tuple[str, str, str], list[BenchResult]] = {}
    for round_ in range(1, args.repeats + 1):
        for model in args.models:
            for policy in args.policies:
                for impl in args.impls:
                    r = _subprocess(model, impl, policy, args, data)
                    runs.setdefault((model, impl, policy), []).append(r)
                    what = (f"{r.train_samples_per_s:>10,.0f} samples/s train, {r.predict_samples_per_s:>10,.0f} "
                            f"predict, {r.peak_rss_mb:,.0f} MB, AUC {r.auc_1:.4f} / {r.auc_2:.4f}") if r.ok else r.error
                    print(f"[{round_}/{args.repeats}] {impl:>8} {model:<14} {policy:<15} {what}", flush=True)
    results = [_median_of(v) for v in runs.values()]
    order = {(m, i, p): k for k, (m, i, p) in enumerate(
        (m, i, p) for m in MODELS for i in IMPLEMENTATIONS for p in POLICIES)}
    results.sort(key=lambda r: order[(r.model, r.impl, r.policy)])
    table = results_table(results)
    ratios = ratio_table(results, _paired_differences(results, test, args.out / "predictions"))
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 50)
    shown = table.drop(columns=["error"]) if not table["error"].any() else table
    errors = [f"- {r.impl} {r.model} {r.policy}: {r.error}" for r in results if not r.ok]
    text = shown.round(4).to_string() + "\n\n" + (ratios.round(4).T.to_string() if not ratios.empty else "")
    print("\n" + text)
    if errors:
        print("\nfailed runs:\n" + "\n".join(errors))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps({
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": [asdict(r) for r in results],
        "comparison": json.loads(ratios.reset_index().to_json(orient="records")) if not ratios.empty else [],
    }, indent=1))
    (args.out / "bench.md").write_text(_describe(args, results) + "\n\n```\n" + text + "\n```\n"
                                       + ("\nFailed runs:\n\n" + "\n".join(errors) + "\n" if errors else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
