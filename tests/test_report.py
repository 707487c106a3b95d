"""Recorded metrics: recording, reading them back from a saved notebook, and tolerance checks."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

from utils import report


def test_record_cleans_numpy_scalars_and_remembers() -> None:
    report.record_metrics(auc=np.float32(0.75), rows=np.int64(10))
    out = report.recorded()
    assert out["auc"] == pytest.approx(0.75) and out["rows"] == 10
    assert isinstance(out["rows"], int)


@pytest.mark.parametrize(
    "kwargs, error",
    [({"auc": math.nan}, ValueError), ({"auc": math.inf}, ValueError), ({"auc": "0.7"}, TypeError),
     ({"ok": True}, TypeError), ({}, ValueError)],
)
def test_record_rejects_bad_values(kwargs: dict, error: type) -> None:
    with pytest.raises(error):
        report.record_metrics(**kwargs)


def test_record_accepts_a_decimal_setting_in_a_name_and_refuses_others() -> None:
    report.record_metrics(**{"synth_mmoe_loss_p0.5": 0.25, "gate_distance_rho_neg0.5": 0.1})
    assert report.recorded()["synth_mmoe_loss_p0.5"] == 0.25
    for name in ("bad name", "1st", "loss.", "a..b", "loss-p0.5"):
        with pytest.raises(ValueError, match="identifier"):
            report.record_metrics(**{name: 1.0})


def _saved_notebook(tmp_path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("record_metrics(...)")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={report.METRICS_MIME: {"a": 1, "b": 0.5}, "text/plain": "x"}),
        nbformat.v4.new_output("display_data", data={report.METRICS_MIME: {"b": 0.25}, "text/plain": "x"}),
        nbformat.v4.new_output("stream", text="noise\n"),
    ]
    nb.cells = [cell]
    path = tmp_path / "01_x.ipynb"
    nbformat.write(nb, path)
    return path


def test_read_metrics_from_outputs_later_wins(tmp_path: Path) -> None:
    assert report.read_metrics(_saved_notebook(tmp_path)) == {"a": 1, "b": 0.25}


def test_cli_prints_json(tmp_path: Path) -> None:
    path = _saved_notebook(tmp_path)
    out = subprocess.run([sys.executable, "-m", "utils.report", str(path)], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {"a": 1, "b": 0.25}
    bad = subprocess.run([sys.executable, "-m", "utils.report", str(tmp_path / "nope.ipynb")], capture_output=True, text=True)
    assert bad.returncode == 1 and "no notebook" in bad.stderr


def test_compare_reports_missing_and_out_of_range() -> None:
    problems = report.compare({"a": 0.5, "b": 2.0}, {"a": {"min": 0.6}, "b": {"max": 1.0}, "c": {"min": 0}})
    assert problems == [
        "a = 0.5 is below the expected minimum 0.6",
        "b = 2 is above the expected maximum 1.0",
        "c: not recorded",
    ]
    assert report.compare({"a": 0.7}, {"a": {"min": 0.6, "max": 0.8}}) == []
    with pytest.raises(ValueError, match="min"):
        report.compare({"a": 1}, {"a": {"value": 1}})


def test_check_expected_uses_the_table(tmp_path: Path) -> None:
    table = tmp_path / "expected.toml"
    table.write_text('["07_demo".tiny]\nzz_metric = { min = 1.0, max = 2.0 }\n', encoding="utf-8")
    report.record_metrics(zz_metric=1.5)
    report.check_expected("07_demo", "tiny", table)
    report.record_metrics(zz_metric=3.0)
    with pytest.raises(AssertionError, match="above the expected maximum"):
        report.check_expected("07_demo", "tiny", table)
    with pytest.raises(AssertionError, match="no expectations"):
        report.check_expected("07_demo", "small", table)


def test_every_lesson_has_tiny_expectations() -> None:
    from utils.notebooks import lesson_notebooks

    table = report.load_expectations()
    for path in lesson_notebooks():
        assert "tiny" in table.get(path.stem, {}), f"add [\"{path.stem}\".tiny] to tests/expected_metrics.toml"


def test_tiny_caveat_speaks_only_at_tiny(capsys: pytest.CaptureFixture[str]) -> None:
    report.tiny_caveat("small")
    report.tiny_caveat("full")
    assert capsys.readouterr().out == ""
    report.tiny_caveat("tiny")
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and "noise" in line and "'small' run" in line
