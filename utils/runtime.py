"""Where a notebook runs: versions, the accelerator, Colab or local, and seeding.

Importing this module first (the setup cell does) quiets TensorFlow's C++ start-up lines about missing
CUDA drivers on machines without a GPU, which Jupyter would otherwise show under the first cell. Set
``TF_CPP_MIN_LOG_LEVEL=0`` before starting Jupyter to see them.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from collections.abc import Iterator
from dataclasses import dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_QUIET = os.environ["TF_CPP_MIN_LOG_LEVEL"] >= "2"


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Send the process's native stderr (file descriptor 2) to /dev/null for the duration.

    TensorFlow's CUDA probing writes there directly, bypassing its own log level; Python exceptions are
    unaffected.
    """
    if not _QUIET:
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:  # no real stderr (some embedded runtimes): nothing to quiet
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


with _quiet_native_stderr():
    import keras
    import numpy as np
    import pandas as pd
    import tensorflow as tf

    _GPUS = tuple(d.name for d in tf.config.list_physical_devices("GPU"))


@dataclass(frozen=True)
class Environment:
    """What a notebook needs to know about where it runs."""

    python: str
    tensorflow: str
    keras: str
    numpy: str
    pandas: str
    on_colab: bool
    gpus: tuple[str, ...]
    tpu: bool

    @property
    def accelerator(self) -> str:
        """``"GPU"``, ``"TPU"`` or ``"CPU"``: what the models will train on."""
        return "TPU" if self.tpu else ("GPU" if self.gpus else "CPU")


def environment() -> Environment:
    """Inspect the running Python, library versions and accelerators."""
    return Environment(
        python=platform.python_version(),
        tensorflow=tf.__version__,
        keras=keras.__version__,
        numpy=np.__version__,
        pandas=pd.__version__,
        on_colab="google.colab" in sys.modules,
        gpus=_GPUS,
        tpu=bool(tf.config.list_logical_devices("TPU")) or "COLAB_TPU_ADDR" in os.environ,
    )


def show_environment() -> None:
    """Print versions and the accelerator, and warn about versions the course does not support."""
    env = environment()
    where = "Google Colab" if env.on_colab else "local"
    print(
        f"Python {env.python} | TensorFlow {env.tensorflow} | Keras {env.keras} | "
        f"NumPy {env.numpy} | pandas {env.pandas} | {where}"
    )
    if env.gpus:
        print(f"Accelerator: {len(env.gpus)} GPU(s): {', '.join(env.gpus)}")
    elif env.tpu:
        print("Accelerator: TPU")
    else:
        print("Accelerator: none, training runs on the CPU (every lesson is sized for that)")
    if int(env.keras.split(".")[0]) < 3:
        print("WARNING: the course needs Keras 3; this runtime has Keras " + env.keras)


def set_seed(seed: int, deterministic: bool | None = None) -> None:
    """Seed Python, NumPy and TensorFlow at once, so a rerun gives the same weights, batches and numbers.

    ``deterministic`` turns on TensorFlow's op determinism (``enable_op_determinism``): ops with a faster
    non-deterministic kernel (parallel sums and scatters on a GPU) use a deterministic one, or raise instead of
    silently varying. The default, ``None``, turns it on where such kernels run, on a GPU. On a CPU the course's
    lessons gave bit-identical recorded metrics without it, idle and busy (``python -m utils.runner compare``),
    so it stays off there: it is not needed, it runs other kernels for some ops (lesson 03's multi-task results
    then move within their noise, so they would no longer match the committed outputs), and with it TensorFlow
    2.21 writes a spurious C++ error line at every ``predict``. Once on, it stays on for the process.
    Bit-identical results also need the same hardware and library versions: another CPU or GPU picks other
    kernels, which round differently.
    """
    keras.utils.set_random_seed(seed)
    if deterministic or (deterministic is None and _GPUS):
        tf.config.experimental.enable_op_determinism()
