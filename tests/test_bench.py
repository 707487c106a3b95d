"""The benchmark feeds both implementations the same features, compares them fairly, and says what to
do when DeepCTR is missing (it lives only in the bench environment)."""

from __future__ import annotations

import importlib.util

import keras
import numpy as np
import pytest

from utils import bench
from utils.models import feature_arrays


@pytest.fixture(scope="module")
def tiny():
    return bench.bench_data("tiny", seed=1, rows=3000)


def test_deepctr_ids_are_our_lookup_indices(tiny) -> None:
    train, test, spec = tiny
    ours = feature_arrays(test, spec)
    theirs = bench.deepctr_inputs(test, spec)
    for f in spec:
        if f.kind == "numeric":
            want = (np.log1p(ours[f.name]) - f.mean) / np.sqrt(f.variance)
            np.testing.assert_allclose(theirs[f.name], want, rtol=1e-5)
            continue
        lookup = keras.layers.IntegerLookup(vocabulary=f.vocabulary, num_oov_indices=1, mask_token=None)
        np.testing.assert_array_equal(theirs[f.name], keras.ops.convert_to_numpy(lookup(ours[f.name])))
        assert theirs[f.name].max() < f.input_dim


def test_ratio_table() -> None:
    rows = [bench.BenchResult("mmoe", "ours", 10, 100, 150.0, 300.0, 500.0, 0.70, 0.80),
            bench.BenchResult("mmoe", "deepctr", 10, 100, 100.0, 200.0, 1000.0, 0.71, 0.78)]
    table = bench.ratio_table(rows)
    assert table.loc["mmoe", "train ours/deepctr"] == pytest.approx(1.5)
    assert table.loc["mmoe", "peak memory ours/deepctr"] == pytest.approx(0.5)
    assert table.loc["mmoe", "AUC 1 ours-deepctr"] == pytest.approx(-0.01)
    assert bench.ratio_table(rows[:1]).empty


def test_run_one_ours_measures_everything() -> None:
    result = bench.run_one("mmoe", "ours", "tiny", seed=1, epochs=2, batch=1024, rows=4000)
    assert result.train_rows == 4000 and result.params > 0
    assert result.train_samples_per_s > 0 and result.predict_samples_per_s > 0 and result.peak_rss_mb > 0
    assert 0.0 <= result.auc_1 <= 1.0 and 0.0 <= result.auc_2 <= 1.0


def test_bad_requests_are_refused() -> None:
    with pytest.raises(ValueError, match="epochs must be >= 2"):
        bench.run_one("mmoe", "ours", "tiny", seed=1, epochs=1, batch=1024, rows=100)
    with pytest.raises(ValueError, match="unknown model"):
        bench.run_one("dcn", "ours", "tiny", seed=1, epochs=2, batch=1024, rows=100)


@pytest.mark.skipif(importlib.util.find_spec("deepctr") is not None, reason="DeepCTR is installed here")
def test_missing_deepctr_says_how_to_get_it(tiny) -> None:
    with pytest.raises(SystemExit, match="make bench"):
        bench._import_deepctr()


def test_course_never_imports_deepctr() -> None:
    import subprocess
    import sys

    code = "import utils.bench, utils.esmm, utils.experts, utils.models, sys; print('deepctr' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"
