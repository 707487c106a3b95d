"""Scale-out: a CPU split too late says so; the strategy picker; one-device and mirrored training agree."""

from __future__ import annotations

import pytest
import tensorflow as tf

from utils import distributed


def test_split_cpu_after_initialisation_explains_what_to_do() -> None:
    tf.constant(1.0) + 1.0  # this process has run an op: its devices are initialised
    with pytest.raises(RuntimeError, match="new process"):
        distributed.split_cpu(2)
    with pytest.raises(ValueError, match="devices"):
        distributed.split_cpu(0)


def test_strategy_for_this_machine_without_accelerators(monkeypatch) -> None:
    monkeypatch.delenv("COLAB_TPU_ADDR", raising=False)
    monkeypatch.delenv("TPU_NAME", raising=False)
    assert distributed._tpu_address() in (None, "local")
    if distributed._tpu_address() is None and not tf.config.list_logical_devices("GPU"):
        assert distributed.strategy_for_this_machine().num_replicas_in_sync == 1
    monkeypatch.setenv("COLAB_TPU_ADDR", "10.0.0.2:8470")
    assert distributed._tpu_address() == ""


def test_mirrored_training_matches_one_device() -> None:
    result = distributed.compare_in_subprocess(scale="tiny", rows=2048, epochs=1, batch_size=512, seed=3)
    assert result["mirrored_replicas"] == 2 and result["devices"] == ["/device:CPU:0", "/device:CPU:1"]
    assert result["initial_weights_equal"]
    assert result["max_abs_diff"] < 1e-5
    assert result["single_train_s"] > 0 and result["mirrored_train_s"] > 0
