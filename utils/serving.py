"""Serving a ranker: a serving function that takes raw features, a TensorFlow SavedModel with that
signature, scoring in a fresh process, and prediction latency per batch size.

The course's models keep their preprocessing inside (vocabulary lookups, ``log1p``, normalisation), so
the serving signature takes the raw values a request carries: one int64 id (``-1`` when missing) or
one float32 number per feature and candidate. The SavedModel needs TensorFlow only, not this package:
``tf.saved_model.load(path).signatures["serving_default"](**features)`` is the call TensorFlow Serving
makes. ``python -m utils.serving score ...`` does exactly that in a new Python process:

    python -m utils.serving score --model build/ranker_savedmodel --features request.npz --out scores.npz \\
        --batch-sizes 1 32 1024
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "export_saved_model",
    "latency_table",
    "make_serving_function",
    "score_in_fresh_process",
    "serving_signature",
]


def serving_signature(model: Any) -> dict[str, Any]:
    """One ``tf.TensorSpec(shape=(None,))`` per model input, named after it: any batch size, raw dtypes."""
    import tensorflow as tf

    inputs = model.input
    if not isinstance(inputs, Mapping):
        raise TypeError("the model must take a dict of named inputs (the course's models do)")
    return {name: tf.TensorSpec(shape=(None,), dtype=tensor.dtype, name=name) for name, tensor in inputs.items()}


def make_serving_function(model: Any, beta: float = 1.0, gamma: float = 0.0, ctr_output: str = "click",
                          cvr_output: str = "purchase", price_feature: str = "price") -> Callable[..., Any]:
    """A ``tf.function`` with a fixed input signature: raw features -> pCTR, pCVR and the fused score.

    The score is ``utils.fusion.fused_score``'s: ``log pCTR + beta log pCVR + gamma log price``.
    """
    import tensorflow as tf

    signature = serving_signature(model)
    outputs = list(model.output) if isinstance(model.output, Mapping) else []
    missing = [name for name in (ctr_output, cvr_output) if name not in outputs]
    if missing:
        raise ValueError(f"the model has no output(s) {missing}; its outputs are {outputs}")
    if gamma and price_feature not in signature:
        raise ValueError(f"gamma is {gamma} but the model has no input {price_feature!r} to take the price from")

    @tf.function(input_signature=[signature])
    def serve(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        out = model(features, training=False)
        p_click = tf.reshape(out[ctr_output], [-1])
        p_purchase = tf.reshape(out[cvr_output], [-1])
        score = tf.math.log(tf.clip_by_value(p_click, 1e-7, 1.0)) + beta * tf.math.log(
            tf.clip_by_value(p_purchase, 1e-7, 1.0))
        if gamma:
            score += gamma * tf.math.log(tf.cast(features[price_feature], score.dtype))
        return {"p_click": p_click, "p_purchase": p_purchase, "score": score}

    return serve


def export_saved_model(model: Any, serve: Callable[..., Any], path: str | Path) -> Path:
    """Write a SavedModel whose ``serving_default`` signature is ``serve`` (with Keras's ``ExportArchive``)."""
    import keras

    if not hasattr(serve, "get_concrete_function"):
        raise TypeError("serve must be a tf.function with an input_signature (see make_serving_function)")
    path = Path(path)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serve", fn=serve)
    archive.write_out(str(path), verbose=False)
    return path


def latency_table(predict: Callable[[dict[str, Any]], Any], features: Mapping[str, np.ndarray],
                  batch_sizes: Sequence[int] = (1, 32, 1024), repeats: int = 20, warmup: int = 3) -> pd.DataFrame:
    """Wall time of ``predict(batch)`` per batch size, in ms: the best of ``repeats`` calls, the median and the
    90th percentile.

    The best call is the cost of the work itself; the median and the tail add whatever else the machine was
    doing (on a shared machine, a lot). Each batch is the first ``b`` rows, converted to tensors once, so only
    the call is timed; outputs are fetched (converted to NumPy) inside the timing, as a server returns them.
    """
    import tensorflow as tf

    n = min(len(v) for v in features.values())
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    rows = {}
    for b in batch_sizes:
        if not 1 <= b <= n:
            raise ValueError(f"batch size {b} needs 1 <= b <= {n} (the rows given)")
        batch = {k: tf.constant(v[:b]) for k, v in features.items()}
        for _ in range(warmup):
            tf.nest.map_structure(np.asarray, predict(batch))
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            tf.nest.map_structure(np.asarray, predict(batch))
            times.append(time.perf_counter() - start)
        rows[b] = {"best_ms": 1000 * float(np.min(times)), "median_ms": 1000 * float(np.median(times)),
                   "p90_ms": 1000 * float(np.quantile(times, 0.9))}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("batch_size")


def _score_saved_model(model_dir: Path, features_path: Path, out_path: Path, batch_sizes: Sequence[int],
                       repeats: int) -> dict[str, Any]:
    """What the fresh process does: load with TensorFlow alone, score every row, time the signature."""
    import tensorflow as tf

    start = time.perf_counter()
    loaded = tf.saved_model.load(str(model_dir))
    serve = loaded.signatures["serving_default"]
    load_s = time.perf_counter() - start
    with np.load(features_path) as data:
        features = {k: data[k] for k in data.files}
    n = min(len(v) for v in features.values())
    parts: dict[str, list[np.ndarray]] = {}
    for lo in range(0, n, 4096):
        out = serve(**{k: tf.constant(v[lo:lo + 4096]) for k, v in features.items()})
        for key, value in out.items():
            parts.setdefault(key, []).append(value.numpy())
    scores = {key: np.concatenate(value) for key, value in parts.items()}
    table = latency_table(lambda batch: serve(**batch), features, [b for b in batch_sizes if b <= n], repeats)
    np.savez(out_path, **scores, **{f"latency_{c}": table[c].to_numpy() for c in table.columns},
             latency_batch_size=table.index.to_numpy())
    return {"rows": n, "load_s": load_s, "outputs": sorted(scores)}


def score_in_fresh_process(model_dir: str | Path, features: Mapping[str, np.ndarray],
                           batch_sizes: Sequence[int] = (1, 32, 1024), repeats: int = 20,
                           timeout: int = 600) -> tuple[dict[str, np.ndarray], pd.DataFrame, dict[str, Any]]:
    """Load the SavedModel in a new Python process, score ``features`` there and time it.

    Returns the outputs by name, the latency table of :func:`latency_table` (measured in that process)
    and what it reported (rows, seconds to load the model, seconds the whole process took).
    """
    from utils.child_process import json_result, module_env
    from utils.config import repo_root

    model_dir = Path(model_dir)
    if not (model_dir / "saved_model.pb").is_file():
        raise FileNotFoundError(f"no SavedModel in {model_dir}: write one with export_saved_model first")
    with tempfile.TemporaryDirectory() as folder:
        request, answer = Path(folder) / "features.npz", Path(folder) / "scores.npz"
        np.savez(request, **{k: np.asarray(v) for k, v in features.items()})
        command = [sys.executable, "-m", "utils.serving", "score", "--model", str(model_dir.resolve()),
                   "--features", str(request), "--out", str(answer), "--repeats", str(repeats),
                   "--batch-sizes", *map(str, batch_sizes)]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=repo_root(),
                              env=module_env())
        seconds = time.perf_counter() - start
        info = json_result(done.returncode, done.stdout, done.stderr, "scoring in a fresh process")
        with np.load(answer) as data:
            outputs = {k: data[k] for k in data.files if not k.startswith("latency_")}
            columns = [k.removeprefix("latency_") for k in data.files if k.startswith("latency_") and k.endswith("_ms")]
            table = pd.DataFrame({c: data[f"latency_{c}"] for c in columns},
                                 index=pd.Index(data["latency_batch_size"], name="batch_size"))
    return outputs, table, {**info, "process_s": seconds}


def main(argv: list[str] | None = None) -> int:
    """``python -m utils.serving score --model DIR --features IN.npz --out OUT.npz``: score in this process."""
    parser = argparse.ArgumentParser(prog="python -m utils.serving", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    score = sub.add_parser("score", help="load a SavedModel, score a .npz of raw features, time the signature")
    score.add_argument("--model", type=Path, required=True)
    score.add_argument("--features", type=Path, required=True)
    score.add_argument("--out", type=Path, required=True)
    score.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 1024])
    score.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    for path, what in ((args.model, "SavedModel folder"), (args.features, "features file")):
        if not path.exists():
            print(f"error: no {what} at {path}", file=sys.stderr)
            return 2
    info = _score_saved_model(args.model, args.features, args.out, args.batch_sizes, args.repeats)
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
