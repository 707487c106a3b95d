"""The benchmark feeds both implementations the same features, compares them fairly at each one's best
precision policy with paired AUC errors, keeps failed runs in its table, and says what to do when DeepCTR
is missing (it lives only in the bench environment)."""

from __future__ import annotations

import importlib.util
import json

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


def _result(impl: str, policy: str, train: float, auc_1: float = 0.70, auc_2: float = 0.80, **kw) -> bench.BenchResult:
    return bench.BenchResult("mmoe", impl, policy, params=10, train_rows=100, test_rows=50, train_samples_per_s=train,
                             predict_samples_per_s=2 * train, peak_rss_mb=500.0, auc_1=auc_1, auc_2=auc_2,
                             auc_1_se=0.003, auc_2_se=0.004, **kw)


def test_ratio_table_takes_each_side_at_its_best_policy() -> None:
    rows = [_result("ours", "float32", 100.0), _result("ours", "mixed_bfloat16", 180.0, auc_1=0.699),
            _result("deepctr", "float32", 110.0, auc_1=0.7005), _result("deepctr", "mixed_bfloat16", 120.0)]
    table = bench.ratio_table(rows)
    row = table.loc["mmoe"]
    assert (row["ours policy"], row["deepctr policy"]) == ("mixed_bfloat16", "mixed_bfloat16")
    assert row["train ours/deepctr"] == pytest.approx(1.5) and row["predict ours/deepctr"] == pytest.approx(1.5)
    assert row["AUC 1 ours-deepctr"] == pytest.approx(-0.001) and row["AUC 2 ours-deepctr"] == pytest.approx(0.0)
    assert row["AUC 1 SE"] == pytest.approx(np.hypot(0.003, 0.003)) and row["SE"] == "unpaired Hanley-McNeil"
    assert row["goal met"]
    assert row["train ours/deepctr float32"] == pytest.approx(100 / 110)
    assert row["train ours/deepctr mixed_bfloat16"] == pytest.approx(1.5)
    paired = bench.ratio_table(rows, {("mmoe", "mixed_bfloat16", "mixed_bfloat16"): [(-0.001, 0.0005), (0.0, 0.001)]})
    assert paired.loc["mmoe", "AUC 1 SE"] == pytest.approx(0.0005) and paired.loc["mmoe", "SE"] == "paired DeLong"
    assert bench.ratio_table(rows[:2]).empty


def test_best_policy_skips_failed_runs_and_lost_auc() -> None:
    lossy = [_result("ours", "float32", 100.0), _result("ours", "mixed_bfloat16", 200.0, auc_2=0.797)]
    assert bench.best_policy(lossy, "mmoe", "ours").policy == "float32"
    failed = [_result("deepctr", "float32", 100.0), bench.BenchResult("mmoe", "deepctr", "mixed_bfloat16", error="boom")]
    assert bench.best_policy(failed, "mmoe", "deepctr").policy == "float32"
    assert bench.best_policy(failed[1:], "mmoe", "deepctr") is None
    slow = [_result("ours", "float32", 100.0), _result("deepctr", "float32", 90.0, auc_1=0.71)]
    assert not bench.ratio_table(slow).loc["mmoe", "goal met"]


def test_paired_auc_difference() -> None:
    from utils.metrics import auc, auc_standard_error

    rng = np.random.default_rng(0)
    y = rng.random(4000) < 0.2
    signal = y + rng.normal(0, 1.0, y.size)
    a, b = signal + rng.normal(0, 0.3, y.size), signal + rng.normal(0, 0.3, y.size)
    diff, se = bench.paired_auc_difference(y, a, b)
    assert diff == pytest.approx(auc(y, a) - auc(y, b), abs=1e-12)
    unpaired = np.hypot(auc_standard_error(y, a), auc_standard_error(y, b))
    assert 0 < se < unpaired / 2  # two scores sharing their signal: their errors are correlated
    assert bench.paired_auc_difference(y, a, a) == (0.0, 0.0)
    # against an unrelated score, the difference's error is about the two separate errors together
    _, se_far = bench.paired_auc_difference(y, a, rng.random(y.size))
    assert se_far == pytest.approx(np.hypot(auc_standard_error(y, a), auc_standard_error(y, rng.random(y.size))), rel=0.25)
    with pytest.raises(ValueError, match="two positives"):
        bench.paired_auc_difference([1, 0, 0], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])


def test_error_line_finds_the_exception() -> None:
    trace = "Traceback (most recent call last):\n  File 'x.py'\nTypeError: Input 'y' has type bfloat16\nmore"
    assert bench._error_line(trace) == "TypeError: Input 'y' has type bfloat16"
    assert bench._error_line("just a line\n") == "just a line"


def test_run_one_ours_measures_everything() -> None:
    import keras

    before = keras.mixed_precision.global_policy().name
    for policy in bench.POLICIES:
        result = bench.run_one("mmoe", "ours", "tiny", seed=1, epochs=2, batch=1024, rows=4000, policy=policy)
        assert result.policy == policy and result.ok and result.output_dtype == "float32"
        assert result.train_rows == 4000 and result.params > 0 and result.test_rows == 1000
        assert result.train_samples_per_s > 0 and result.predict_samples_per_s > 0 and result.peak_rss_mb > 0
        assert 0.0 <= result.auc_1 <= 1.0 and 0.0 <= result.auc_2 <= 1.0 and result.auc_1_se > 0
        assert keras.mixed_precision.global_policy().name == before


def test_main_writes_every_policy_and_keeps_failed_runs(tmp_path) -> None:
    impls = ["ours"] if importlib.util.find_spec("deepctr") is not None else ["ours", "deepctr"]
    code = bench.main(["--scale", "tiny", "--rows", "3000", "--epochs", "2", "--batch", "1024", "--models", "esmm",
                       "--impls", *impls, "--out", str(tmp_path)])
    assert code == 0
    saved = json.loads((tmp_path / "bench.json").read_text())
    runs = {(r["impl"], r["policy"]): r for r in saved["results"]}
    assert {("ours", p) for p in bench.POLICIES} <= set(runs)
    assert all(runs[("ours", p)]["error"] == "" and runs[("ours", p)]["auc_1"] > 0 for p in bench.POLICIES)
    text = (tmp_path / "bench.md").read_text()
    assert "mixed_bfloat16" in text and "float32" in text
    if "deepctr" in impls:  # not installed here: the runs fail, are kept and said why
        assert "DeepCTR is not installed here" in runs[("deepctr", "float32")]["error"]
        assert "Failed runs" in text and saved["comparison"] == []


def test_bad_requests_are_refused() -> None:
    with pytest.raises(ValueError, match="epochs must be >= 2"):
        bench.run_one("mmoe", "ours", "tiny", seed=1, epochs=1, batch=1024, rows=100)
    with pytest.raises(ValueError, match="unknown model"):
        bench.run_one("dcn", "ours", "tiny", seed=1, epochs=2, batch=1024, rows=100)
    with pytest.raises(ValueError, match="unknown policy"):
        bench.run_one("mmoe", "ours", "tiny", seed=1, epochs=2, batch=1024, rows=100, policy="mixed_float16")


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
