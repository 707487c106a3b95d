"""The course runner: parameter injection, test copies, execution in a fresh kernel, the report."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from utils import notebooks, runner


def _notebook(tmp_path: Path, body: str = "from utils.report import record_metrics\nrecord_metrics(rows=ROWS * 2)") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 09 · Demo"),
        nbformat.v4.new_code_cell('ROWS = 10\nSCALE = "small"', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(body),
    ]
    path = tmp_path / "09_demo.ipynb"
    notebooks.write(nb, path)
    return path


def test_parameter_names_in_order() -> None:
    assert notebooks.parameter_names('SEED = 1\nSCALE: str = "x"\nA = B = 2\nprint(1)') == ["SEED", "SCALE", "A", "B"]


def test_inject_parameters_after_the_parameters_cell(tmp_path: Path) -> None:
    nb = runner.prepared(_notebook(tmp_path), {"SCALE": "tiny"})
    assert nb.cells[2].source.endswith("SCALE = 'tiny'")
    assert notebooks.INJECTED_TAG in nb.cells[2].metadata["tags"]
    assert len({c.id for c in nb.cells}) == len(nb.cells)
    nbformat.validate(nb)


def test_inject_rejects_unknown_parameter(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['SCLAE'\]"):
        runner.prepared(_notebook(tmp_path), {"SCLAE": "tiny"})


def test_parameters_cell_must_be_unique(tmp_path: Path) -> None:
    nb = notebooks.read(_notebook(tmp_path))
    nb.cells[2].metadata["tags"] = ["parameters"]
    with pytest.raises(ValueError, match="exactly one cell tagged 'parameters', found 2"):
        notebooks.inject_parameters(nb, {"SCALE": "tiny"})


def test_run_one_executes_in_a_fresh_kernel_and_reads_metrics(tmp_path: Path) -> None:
    result = runner.run_one(_notebook(tmp_path), {"ROWS": 21}, tmp_path / "out")
    assert result.ok and result.metrics == {"rows": 42}
    assert (tmp_path / "out" / "09_demo.ipynb").is_file()


def test_run_one_reports_a_failing_cell(tmp_path: Path) -> None:
    result = runner.run_one(_notebook(tmp_path, "raise ValueError('boom')"), {}, tmp_path / "out")
    assert not result.ok and "boom" in result.error


def test_course_report_lists_lessons_and_metrics() -> None:
    text = runner.course_report(
        [runner.RunResult("00_setup", 3.2, True, {"gpus": 0, "auc": 0.7512345}),
         runner.RunResult("01_data", 5.0, False, {}, "ValueError: boom")], "tiny")
    assert "| 00_setup | ok | 3.2 | 2 | no ranges |" in text and "| 01_data | FAILED | 5.0 | 0 | no ranges |" in text
    assert "| auc | 0.751235 |" in text and "Total run time: 8.2 s." in text and "ValueError: boom" in text


def test_prepare_tests_writes_copies_with_checks(tmp_path: Path) -> None:
    runner.prepare_tests("tiny", tmp_path)
    solutions = notebooks.lesson_notebooks(tmp_path / "solutions")
    assert [p.name for p in solutions] == [p.name for p in notebooks.lesson_notebooks()]
    nb = notebooks.read(solutions[0])
    assert "check_expected" in nb.cells[-1].source
    assert any("SCALE = 'tiny'" in c.source for c in nb.cells)
    exercise = notebooks.read(notebooks.lesson_notebooks(tmp_path / "notebooks")[0])
    assert "check_expected" not in exercise.cells[-1].source
    with pytest.raises(ValueError, match="unknown scale"):
        runner.prepare_tests("huge", tmp_path)


def test_tiny_settings_are_parameters_of_the_notebook() -> None:
    """What tiny changes lives in each notebook, right after its parameters, and only there: it sets only names the
    parameters cell defines (a typo cannot pass silently), and the tests inject SCALE alone."""
    found = {}
    for path in notebooks.lesson_notebooks():
        nb = notebooks.read(path)
        names = notebooks.tiny_settings(nb, path.name)
        known = notebooks.parameter_names(nb.cells[notebooks.parameters_index(nb, path.name)].source)
        assert set(names) <= set(known), f"{path.name}: tiny sets {set(names) - set(known)}, not parameters"
        found[path.stem] = names
    assert "N_BOOT" in found["02_single_task_baselines"] and "SEESAW_RUNS" in found["05_experts_mmoe_ple"]
    assert "CVR" in found["06_esmm_entire_space"] and "MAX_STEPS" in found["07_transfer_finetuning"]
    assert all(found[p.stem] for p in notebooks.lesson_notebooks() if p.stem[:2] >= "02"), "every training lesson"


def test_tiny_settings_read_the_if_block() -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('SCALE = "small"\nA = 1\nB = 2', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell('if SCALE == "tiny":\n    A, B = 0, 0\nC = 3')]
    assert notebooks.tiny_settings(nb) == ["A", "B"]
    nb.cells.pop()
    assert notebooks.tiny_settings(nb) == []


def test_expectation_problems_at_a_scale() -> None:
    assert runner.expectation_problems("no_such_lesson", "tiny", {}) is None
    problems = runner.expectation_problems("00_setup", "tiny", {"gpus": 0, "keras_log_loss": 0.5})
    assert problems and any("keras_log_loss" in p for p in problems) and any("not recorded" in p for p in problems)
    result = runner.RunResult("00_setup", 1.0, True, {}, problems=["x is above the expected maximum 1"])
    text = runner.course_report([result], "tiny")
    assert "| 1 outside |" in text and "- x is above the expected maximum 1" in text
