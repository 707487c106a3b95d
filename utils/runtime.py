"""Where a notebook runs: versions, the accelerator, Colab or local, seeding, and the precision policy.

Importing this module first (the setup cell does) quiets TensorFlow's C++ start-up lines about missing
CUDA drivers on machines without a GPU, which Jupyter would otherwise show under the first cell. Set
``TF_CPP_MIN_LOG_LEVEL=0`` before starting Jupyter to see them.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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


@contextlib.contextmanager
def random_state_kept() -> Iterator[None]:
    """Run a block without moving the global random streams: Python's, NumPy's and Keras's (its seed and seed
    generator, which every initializer, dropout and ``keras.random`` call draws from) are put back on exit.

    A self-check that builds and trains a small model draws from these streams; inside this block it leaves the
    lesson's later draws as they would be had the check not run (or the exercise not been attempted). TensorFlow's
    own unseeded ``tf.random`` ops keep their state inside cached kernels and are not covered; the course draws
    through Keras and seeds its ``tf.data`` shuffles.
    """
    from keras.src.backend.common import global_state  # Keras keeps its global seed and generator here
    from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR
    from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED

    python_state, numpy_state = random.getstate(), np.random.get_state()
    keras_seed = global_state.get_global_attribute(GLOBAL_RANDOM_SEED)
    generator = global_state.get_global_attribute(GLOBAL_SEED_GENERATOR)
    generator_state = None if generator is None else keras.ops.convert_to_numpy(generator.state)
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        global_state.set_global_attribute(GLOBAL_RANDOM_SEED, keras_seed)
        global_state.set_global_attribute(GLOBAL_SEED_GENERATOR, generator)
        if generator is not None:
            generator.state.assign(generator_state)


#: Environment variable that forces a precision policy (``float32``, ``mixed_bfloat16``, ``mixed_float16``)
#: or, with ``auto`` or unset, lets :func:`precision_policy` choose.
PRECISION_ENV = "COURSE_PRECISION"
PRECISION_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
#: CPU flags (``/proc/cpuinfo``) of bfloat16 arithmetic in hardware: AVX-512 BF16 and AMX (Intel Cooper
#: Lake, Sapphire Rapids and later, AMD Zen 4 and later). Elsewhere bfloat16 is emulated, and slower.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class PrecisionChoice:
    """A Keras dtype policy and why it was chosen."""

    policy: str
    reason: str

    def __str__(self) -> str:
        return f"Precision: {self.policy} ({self.reason})"


def cpu_flags() -> str:
    """The CPU's feature flags from ``/proc/cpuinfo`` (Linux); empty where there is none to read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _gpu_capabilities() -> list[tuple[int, int]]:
    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        except (RuntimeError, ValueError):
            capability = None
        capabilities.append(tuple(capability) if capability else (0, 0))
    return capabilities


def precision_policy(
    flags: str | None = None,
    gpu_capabilities: Sequence[tuple[int, int]] | None = None,
    tpu: bool | None = None,
    env: Mapping[str, str] | None = None,
) -> PrecisionChoice:
    """The fastest Keras dtype policy this machine runs the course's models in without losing AUC, and why.

    - ``COURSE_PRECISION`` set to a policy name wins (``float32`` keeps a lesson's exact values);
    - a TPU: ``mixed_bfloat16``, its native format;
    - GPUs all of compute capability 8.0 or more (Ampere, Hopper and later): ``mixed_bfloat16``. Their
      tensor cores run bfloat16 as fast as float16, and bfloat16 keeps float32's exponent range, so no
      loss scaling is needed; ``mixed_float16`` is only chosen when asked for;
    - an older GPU (a Colab T4 is 7.5): ``float32``. float16 would need loss scaling and has not been
      measured on the course's models there;
    - a CPU with bfloat16 in hardware (:data:`BF16_CPU_FLAGS`): ``mixed_bfloat16``. Measured on a 2-core
      AMX CPU: the course's models kept their test AUC (within its sampling error); a two-task MLP trained
      1.7x as fast and the benchmark's models 1.1-1.35x (medians of three rounds on a shared machine), but a
      lesson-sized model, whose step is mostly embedding lookups and updates, trained no faster per epoch
      (``make bench`` measures it for the benchmark's models);
    - any other CPU: ``float32``, since it would emulate bfloat16 slowly.

    Under a mixed policy the layers compute in 16 bits but keep float32 weights, and the course's output
    heads stay float32 (see :func:`utils.models._head`). The arguments stand in for this machine's
    ``/proc/cpuinfo`` flags, GPUs' compute capabilities, TPU and environment (tests use them).
    """
    env = os.environ if env is None else env
    forced = env.get(PRECISION_ENV, "").strip()
    if forced and forced.lower() != "auto":
        if forced not in PRECISION_POLICIES:
            raise ValueError(f"{PRECISION_ENV}={forced!r}: use one of {PRECISION_POLICIES} or 'auto'")
        return PrecisionChoice(forced, f"set by {PRECISION_ENV}")
    if tpu if tpu is not None else environment().tpu:
        return PrecisionChoice("mixed_bfloat16", "TPU: bfloat16 is its native format")
    capabilities = list(_gpu_capabilities() if gpu_capabilities is None else gpu_capabilities)
    if capabilities:
        oldest = min(tuple(c) for c in capabilities)
        if oldest >= (8, 0):
            return PrecisionChoice("mixed_bfloat16", f"GPU of compute capability {oldest[0]}.{oldest[1]}: "
                                   "bfloat16 tensor cores, no loss scaling needed")
        return PrecisionChoice("float32", f"GPU of compute capability {oldest[0]}.{oldest[1]} (< 8.0): "
                               "no bfloat16 tensor cores")
    present = set((cpu_flags() if flags is None else flags).split())
    found = [f for f in BF16_CPU_FLAGS if f in present]
    if found:
        return PrecisionChoice("mixed_bfloat16", f"CPU with bfloat16 in hardware ({', '.join(found)})")
    return PrecisionChoice("float32", "no bfloat16 hardware found: the CPU would emulate it slowly")


def use_fast_precision(verbose: bool = True, **overrides: Any) -> PrecisionChoice:
    """Set Keras's global dtype policy to :func:`precision_policy`'s choice and print it in one line.

    Call it before building models (a model keeps the policy it was built under). Set
    ``COURSE_PRECISION=float32`` to keep float32 (exact-value checks, recorded metrics). ``overrides`` are
    passed to :func:`precision_policy`. Returns the choice.
    """
    choice = precision_policy(**overrides)
    keras.mixed_precision.set_global_policy(choice.policy)
    if verbose:
        print(choice)
    return choice


@contextlib.contextmanager
def precision(policy: str) -> Iterator[str]:
    """Run a block under the Keras dtype ``policy``, restoring the previous global policy afterwards."""
    if policy not in PRECISION_POLICIES:
        raise ValueError(f"unknown policy {policy!r}: one of {PRECISION_POLICIES}")
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield policy
    finally:
        keras.mixed_precision.set_global_policy(previous)
