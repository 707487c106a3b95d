"""Same seed, same numbers: one lesson executed twice in fresh kernels records identical metrics."""

from __future__ import annotations

from pathlib import Path

from utils import notebooks, report, runner

LESSON = "02_single_task_baselines"  # trains, early-stops, bootstraps and tunes: most of what could vary


def test_a_lesson_records_identical_metrics_twice(tmp_path: Path) -> None:
    path = notebooks.solutions_dir() / f"{LESSON}.ipynb"
    params = {"SCALE": "tiny"}
    first = runner.run_one(path, params, tmp_path / "first")
    second = runner.run_one(path, params, tmp_path / "second")
    assert first.ok and second.ok, first.error or second.error
    assert len(first.metrics) > 20
    assert report.differences(first.metrics, second.metrics) == []


def test_differences_name_what_changed() -> None:
    a = {"auc": 0.75, "n": 10, "lesson_s": 3.0, "gone": 1.0}
    b = {"auc": 0.76, "n": 10, "lesson_s": 9.0, "new": 2.0}
    lines = report.differences(a, b)
    assert any(line.startswith("auc: 0.75 -> 0.76") for line in lines)
    assert "gone: missing from the new run" in lines and "new: missing from the reference" in lines
    assert not any("lesson_s" in line for line in lines) and not any(line.startswith("n:") for line in lines)
    assert any("lesson_s" in line for line in report.differences(a, b, include_timing=True))
    assert report.is_timing("ctr_train_samples_per_s") and report.is_timing("matmul_gflops")
    assert not report.is_timing("ctr_auc_se")
