"""Scaling training out with ``tf.distribute``: the course's ranker trained on one device and under
``MirroredStrategy`` on several, and the two models' predictions compared.

A laptop has one CPU, so the comparison splits it into logical devices. TensorFlow allows that only
before it initialises its devices (before the first operation runs), which a notebook has long
passed; so the comparison runs in a fresh process:

    python -m utils.distributed --scale tiny --rows 20000 --epochs 1 --devices 2

It prints one line of JSON. :func:`start_comparison` starts it from a notebook (it runs while the notebook goes
on), :func:`compare_in_subprocess` starts it and waits. On a machine with
several GPUs, ``tf.distribute.MirroredStrategy()`` takes them all; on a Colab TPU,
:func:`strategy_for_this_machine` returns a ``TPUStrategy``. The training code does not change.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from utils.child_process import json_result, module_env

__all__ = ["Comparison", "compare_in_subprocess", "compare_strategies", "split_cpu", "start_comparison",
           "strategy_for_this_machine"]

_STARTED = time.perf_counter()  # when this module was imported: a fresh process's start, near enough


def split_cpu(devices: int = 2) -> list[str]:
    """Split the CPU into ``devices`` logical devices; call it before TensorFlow runs any operation."""
    import tensorflow as tf

    if devices < 1:
        raise ValueError(f"devices must be >= 1, got {devices}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
    except RuntimeError as err:
        raise RuntimeError(
            "TensorFlow has initialised its devices already, so the CPU can no longer be split: run this in a "
            "new process (python -m utils.distributed) or restart the kernel and call split_cpu first"
        ) from err
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def _tpu_address() -> str | None:
    """Where a TPU is, if this runtime has one: "" (the resolver reads ``COLAB_TPU_ADDR``/``TPU_NAME``),
    "local" on a TPU VM, None elsewhere (so that no CPU or GPU machine waits on a TPU lookup)."""
    if os.environ.get("COLAB_TPU_ADDR") or os.environ.get("TPU_NAME"):
        return ""
    if Path("/dev/accel0").exists():
        return "local"
    return None


def strategy_for_this_machine() -> Any:
    """A ``TPUStrategy`` on a TPU runtime, ``MirroredStrategy`` over every GPU when there are any, else the
    default strategy (one device)."""
    import tensorflow as tf

    address = _tpu_address()
    if address is not None:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if tf.config.list_logical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def compare_strategies(scale: str = "tiny", rows: int = 20_000, epochs: int = 1, batch_size: int = 1024,
                       seed: int = 42, devices: int = 2, test_rows: int = 20_000) -> dict[str, Any]:
    """Train the ranker twice on the same rows, as a notebook does (default strategy, one device) and
    mirrored over ``devices``; compare.

    Needs ``devices`` logical devices (:func:`split_cpu`, or GPUs). Returns both trainings' seconds,
    whether the initial weights were identical, and the largest absolute difference between the two
    models' predictions (pCTR and pCVR) on up to ``test_rows`` test impressions. Both runs read the same
    rows in the same order (shuffled once beforehand, not by the pipeline), so only the arithmetic differs.
    """
    import tensorflow as tf

    from utils import ranker
    from utils.datasets import load_dataset
    from utils.models import feature_arrays
    from utils.splits import temporal_split

    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    names = gpus if len(gpus) >= devices else [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(names) < devices:
        raise RuntimeError(f"{devices} devices wanted, {len(names)} found ({names}): call split_cpu({devices}) first")
    log = ranker.ranking_log(load_dataset("shopsim", scale=scale, seed=seed))
    train, _, test = temporal_split(log, valid_days=3, test_days=3)
    # The rows in one random order, kept by both runs (no shuffle in the pipeline): batch for batch the same data.
    train = train.sample(min(rows, len(train)), random_state=seed)
    test = test.head(test_rows)
    spec = ranker.ranker_spec(train)
    x_test = feature_arrays(test, spec)
    result: dict[str, Any] = {"devices": names[:devices], "rows": len(train), "epochs": epochs,
                              "batch_size": batch_size, "test_rows": len(test)}
    predictions, initial = {}, {}
    strategies = {"single": None, "mirrored": tf.distribute.MirroredStrategy(names[:devices])}
    for label, strategy in strategies.items():
        ranker.set_seed(seed)
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            initial[label] = [np.array(w) for w in ranker.build_ranker(spec).get_weights()]
        start = time.perf_counter()
        model = ranker.train_ranker(train, spec, epochs=epochs, batch_size=batch_size, seed=seed, strategy=strategy,
                                    shuffle=False)
        result[f"{label}_train_s"] = time.perf_counter() - start
        result[f"{label}_replicas"] = 1 if strategy is None else int(strategy.num_replicas_in_sync)
        predictions[label] = model.predict(x_test, batch_size=8192, verbose=0)
    result["initial_weights_equal"] = all(np.array_equal(a, b) for a, b in zip(initial["single"], initial["mirrored"],
                                                                                strict=True))
    for task in predictions["single"]:
        diff = np.abs(predictions["single"][task] - predictions["mirrored"][task])
        result[f"{task}_max_abs_diff"] = float(diff.max())
        result[f"{task}_mean_prediction"] = float(predictions["single"][task].mean())
    result["max_abs_diff"] = max(result[f"{task}_max_abs_diff"] for task in predictions["single"])
    return result


@dataclass
class Comparison:
    """A comparison running in its own process (:func:`start_comparison`); :meth:`result` waits for it."""

    process: subprocess.Popen

    def done(self) -> bool:
        """Whether the process has finished."""
        return self.process.poll() is not None

    def result(self, timeout: float = 600) -> dict[str, Any]:
        """Wait for the process and return what it printed (see :func:`compare_strategies`), with
        ``process_s``, the seconds it ran from its start to its answer."""
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            raise RuntimeError(f"the strategy comparison took longer than {timeout} s and was stopped") from None
        return json_result(self.process.returncode, out, err, "the strategy comparison")


def start_comparison(scale: str = "tiny", rows: int = 20_000, epochs: int = 1, batch_size: int = 1024,
                     seed: int = 42, devices: int = 2) -> Comparison:
    """Start :func:`compare_strategies` in a new Python process with the CPU split into ``devices``;
    it runs while the caller goes on. Collect it with ``.result()``."""
    from utils.config import repo_root

    command = [sys.executable, "-m", "utils.distributed", "--scale", scale, "--rows", str(rows), "--epochs",
               str(epochs), "--batch-size", str(batch_size), "--seed", str(seed), "--devices", str(devices)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=repo_root(), env=module_env())
    return Comparison(process)


def compare_in_subprocess(scale: str = "tiny", rows: int = 20_000, epochs: int = 1, batch_size: int = 1024,
                          seed: int = 42, devices: int = 2, timeout: int = 600) -> dict[str, Any]:
    """Run :func:`compare_strategies` in a new Python process and wait for its result."""
    return start_comparison(scale, rows, epochs, batch_size, seed, devices).result(timeout)


def main(argv: list[str] | None = None) -> int:
    """Command line: split the CPU, compare single-device and mirrored training, print JSON."""
    parser = argparse.ArgumentParser(prog="python -m utils.distributed", description=__doc__.split("\n")[0])
    parser.add_argument("--scale", default="tiny")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--devices", type=int, default=2)
    args = parser.parse_args(argv)
    from utils import runtime  # noqa: F401, I001  (first: it quiets TensorFlow's start-up lines)

    import tensorflow as tf

    if len(tf.config.list_physical_devices("GPU")) < args.devices:
        split_cpu(args.devices)
    result = compare_strategies(args.scale, args.rows, args.epochs, args.batch_size, args.seed, args.devices)
    print(json.dumps({**result, "process_s": time.perf_counter() - _STARTED}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
