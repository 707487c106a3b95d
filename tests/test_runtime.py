"""The precision policy: picked from the hardware, forced by COURSE_PRECISION, and the course's models keep
float32 outputs (and their saved-model round trips) under mixed_bfloat16."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from utils import runtime
from utils.runtime import PRECISION_ENV, precision, precision_policy, use_fast_precision

NO_ACCELERATOR = {"gpu_capabilities": [], "tpu": False}


@pytest.fixture(autouse=True)
def restore_policy():
    before = keras.mixed_precision.global_policy().name
    yield
    keras.mixed_precision.set_global_policy(before)


@pytest.mark.parametrize(("flags", "policy"), [
    ("fpu sse avx2 avx512f avx512_bf16 avx512_vnni", "mixed_bfloat16"),
    ("fpu avx2 amx_tile amx_bf16", "mixed_bfloat16"),
    ("fpu sse avx2 avx512f", "float32"),
    ("fp asimd bf16", "float32"),  # an ARM flag spelling the helper does not claim to know
    ("", "float32"),
])
def test_cpu_policy_from_flags(flags: str, policy: str) -> None:
    choice = precision_policy(flags=flags, env={}, **NO_ACCELERATOR)
    assert choice.policy == policy
    assert str(choice).startswith(f"Precision: {policy} (") and "\n" not in str(choice)


def test_avx512_bf16_is_a_whole_flag_not_a_substring() -> None:
    assert precision_policy(flags="avx512_bf16x", env={}, **NO_ACCELERATOR).policy == "float32"


@pytest.mark.parametrize(("capabilities", "policy"), [
    ([(8, 0)], "mixed_bfloat16"), ([(9, 0), (8, 6)], "mixed_bfloat16"),
    ([(7, 5)], "float32"), ([(8, 0), (7, 0)], "float32"),
])
def test_gpu_policy_from_compute_capability(capabilities: list[tuple[int, int]], policy: str) -> None:
    # a GPU decides, whatever the CPU has
    assert precision_policy(flags="avx512_bf16", gpu_capabilities=capabilities, tpu=False, env={}).policy == policy


def test_tpu_uses_bfloat16() -> None:
    assert precision_policy(flags="", gpu_capabilities=[], tpu=True, env={}).policy == "mixed_bfloat16"


@pytest.mark.parametrize("forced", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_environment_variable_wins(forced: str) -> None:
    choice = precision_policy(flags="avx512_bf16", gpu_capabilities=[(7, 5)], tpu=False, env={PRECISION_ENV: forced})
    assert choice.policy == forced and PRECISION_ENV in choice.reason


def test_environment_variable_auto_and_bad_values() -> None:
    assert precision_policy(flags="amx_bf16", env={PRECISION_ENV: "auto"}, **NO_ACCELERATOR).policy == "mixed_bfloat16"
    with pytest.raises(ValueError, match=PRECISION_ENV):
        precision_policy(flags="", env={PRECISION_ENV: "bf16"}, **NO_ACCELERATOR)


def test_use_fast_precision_sets_the_policy_and_says_why(monkeypatch, capsys) -> None:
    monkeypatch.setenv(PRECISION_ENV, "mixed_bfloat16")
    choice = use_fast_precision()
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16" == choice.policy
    assert capsys.readouterr().out == f"Precision: mixed_bfloat16 (set by {PRECISION_ENV})\n"
    monkeypatch.setenv(PRECISION_ENV, "float32")
    use_fast_precision(verbose=False)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert capsys.readouterr().out == ""


def test_cpu_flags_reads_this_machine() -> None:
    assert isinstance(runtime.cpu_flags(), str)


def test_precision_context_restores_the_policy() -> None:
    before = keras.mixed_precision.global_policy().name
    with precision("mixed_bfloat16"):
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
        assert keras.layers.Dense(2).compute_dtype == "bfloat16"
    assert keras.mixed_precision.global_policy().name == before
    with pytest.raises(ValueError, match="unknown policy"):
        with precision("bf16"):
            pass


@pytest.fixture(scope="module")
def tiny_data():
    from utils import bench

    return bench.bench_data("tiny", seed=1, rows=3000)


def _builders(spec):
    from utils.esmm import esmm_model
    from utils.experts import mmoe_model, ple_model
    from utils.models import Task, shared_bottom_model, single_task_model

    tasks = [Task("click", "binary", label="click"), Task("purchase", "binary", label="purchase")]
    return {
        "single_task": lambda: single_task_model(spec, tasks[0], hidden=(16,)),
        "shared_bottom": lambda: shared_bottom_model(spec, tasks, bottom=(16,), tower=(8,)),
        "shared_bottom_fm": lambda: shared_bottom_model(spec, tasks, bottom=(16,), tower=(8,),
                                                        interactions=["user_id", "item_id"], factors=4),
        "mmoe": lambda: mmoe_model(spec, tasks, num_experts=2, expert_units=(8,), tower=(4,)),
        "ple": lambda: ple_model(spec, tasks, levels=2, task_experts=1, shared_experts=1, expert_units=(8,), tower=(4,)),
        "esmm": lambda: esmm_model(spec, tower=(8,)),
        "esmm_mmoe": lambda: esmm_model(spec, bottom="mmoe", tower=(8,), expert_units=(8,)),
    }


@pytest.mark.parametrize("name", ["single_task", "shared_bottom", "shared_bottom_fm", "mmoe", "ple", "esmm", "esmm_mmoe"])
def test_models_keep_float32_outputs_under_mixed_bfloat16(tiny_data, tmp_path, name: str) -> None:
    from utils.models import feature_arrays

    _, test, spec = tiny_data
    x = {k: v[:256] for k, v in feature_arrays(test, spec).items()}
    with precision("mixed_bfloat16"):
        model = _builders(spec)[name]()
        hidden = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)
                  and not layer.name.startswith(("head_", "interaction_"))]
        assert hidden and all(layer.compute_dtype == "bfloat16" for layer in hidden)
        assert all(w.dtype == "float32" for w in model.weights if w.dtype.startswith(("float", "bfloat")))
        outputs = model.output if isinstance(model.output, dict) else dict(zip(model.output_names, model.outputs))
        assert all(t.dtype == "float32" for t in outputs.values()), {k: t.dtype for k, t in outputs.items()}
        pred = model.predict(x, batch_size=128, verbose=0)
        assert all(np.asarray(p).dtype == np.float32 for p in pred.values())
        path = tmp_path / f"{name}.keras"
        model.save(path)
    again = keras.models.load_model(path)  # the file keeps each layer's policy, whatever the global one
    reloaded = again.predict(x, batch_size=128, verbose=0)
    for key in pred:
        np.testing.assert_array_equal(reloaded[key], pred[key])
