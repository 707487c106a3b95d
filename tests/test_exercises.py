"""The exercise generator: stubs, conventions it enforces, and the drift check."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from utils import exercises, notebooks
from utils.colab import buttons_markdown, setup_source

SOLVED = """# Exercise 01.2 — split by time
def split(frame):
    "Docstring stays."
    ### BEGIN SOLUTION
    cut = frame.timestamp.quantile(0.8)
    return frame[frame.timestamp <= cut], frame[frame.timestamp > cut]
    ### END SOLUTION"""


def test_strip_solution_replaces_region_with_named_stub() -> None:
    source, exercise = exercises.strip_solution(SOLVED, "x.ipynb: cell 3")
    assert exercise is not None and exercise.number == "01.2" and exercise.title == "split by time"
    assert "quantile" not in source and "### BEGIN" not in source
    assert 'raise NotImplementedError("Exercise 01.2 (split by time)' in source
    assert '"Docstring stays."' in source
    namespace: dict = {}
    exec(source, namespace)  # the stub is valid Python and defines the function
    with pytest.raises(NotImplementedError, match="Exercise 01.2"):
        namespace["split"](None)


def test_cell_without_region_is_untouched() -> None:
    assert exercises.strip_solution("x = 1", "nb: cell 0") == ("x = 1", None)


@pytest.mark.parametrize(
    "source, message",
    [
        (SOLVED.replace("# Exercise 01.2 — split by time", "# split by time"), "must start with '# Exercise"),
        ("# Exercise 01.1 — top level\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION", "inside a function body"),
        (SOLVED.replace("    ### END SOLUTION", ""), "never closed"),
        ("# Exercise 01.1 — t\ndef f():\n    return 1\n    ### END SOLUTION", "without"),
        ("# Exercise 01.1 — t\ndef f():\n    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n    ### END SOLUTION",
         "inside another"),
    ],
)
def test_broken_conventions_are_named(source: str, message: str) -> None:
    with pytest.raises(exercises.ExerciseFormatError, match=message):
        exercises.strip_solution(source, "nb: cell 1")


def _lesson(tmp: Path, name: str = "07_demo.ipynb", extra: str = SOLVED) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 07 · Demo"),
        nbformat.v4.new_markdown_cell("old buttons", metadata={"tags": ["colab-buttons"]}),
        nbformat.v4.new_code_cell("old setup", metadata={"tags": ["setup"]}),
        nbformat.v4.new_code_cell('SCALE = "small"', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(extra),
        nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint('checked')"),
    ]
    nb.cells[4].outputs = [nbformat.v4.new_output("stream", text="out\n")]
    nb.cells[4].execution_count = 3
    path = tmp / "solutions" / name
    notebooks.write(nb, path)
    return path


def test_plan_syncs_generated_cells_and_strips_exercises(tmp_path: Path) -> None:
    path = _lesson(tmp_path)
    files = exercises.plan(tmp_path / "solutions", tmp_path / "notebooks")
    solution = nbformat.reads(files[path], as_version=4)
    assert solution.cells[1].source == buttons_markdown("07_demo.ipynb")
    assert solution.cells[2].source == setup_source()
    assert solution.cells[4].outputs, "solutions keep their outputs"
    exercise = nbformat.reads(files[tmp_path / "notebooks" / "07_demo.ipynb"], as_version=4)
    assert "quantile" not in exercise.cells[4].source
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in exercise.cells if c.cell_type == "code")
    assert "NBVAL" not in exercise.cells[5].source


def test_drift_detects_edits_missing_and_orphans(tmp_path: Path) -> None:
    _lesson(tmp_path)
    ex_dir = tmp_path / "notebooks"
    files = exercises.plan(tmp_path / "solutions", ex_dir)
    assert len(exercises.drift(files, ex_dir)) == 2  # the solution (stale generated cells) and the missing exercise
    for target, text in files.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    assert exercises.drift(files, ex_dir) == []
    exercise = ex_dir / "07_demo.ipynb"
    exercise.write_text(exercise.read_text().replace("NotImplementedError", "NotImplemented"), encoding="utf-8")
    shutil.copy(exercise, ex_dir / "08_orphan.ipynb")
    problems = exercises.drift(files, ex_dir)
    assert any("07_demo" in p and "differs" in p for p in problems)
    assert any("08_orphan" in p and "no solution" in p for p in problems)


def test_repeated_exercise_numbers_are_rejected(tmp_path: Path) -> None:
    path = _lesson(tmp_path, extra=SOLVED + "\n\n" + SOLVED.replace("# Exercise 01.2 — split by time\n", ""))
    nb = notebooks.read(path)
    nb.cells.insert(5, nbformat.v4.new_code_cell(SOLVED))
    notebooks.write(nb, path)
    with pytest.raises(exercises.ExerciseFormatError, match="repeat"):
        exercises.plan(tmp_path / "solutions", tmp_path / "notebooks")


def test_course_notebooks_are_in_sync() -> None:
    """The committed notebooks/ are exactly what the generator writes from solutions/."""
    assert notebooks.lesson_notebooks(), "no solution notebooks found"
    assert exercises.drift(exercises.plan()) == []


def test_every_course_exercise_becomes_a_stub() -> None:
    for path in notebooks.lesson_notebooks():
        _, found = exercises.exercise_version(notebooks.read(path), path.name)
        text = (notebooks.exercises_dir() / path.name).read_text(encoding="utf-8")
        assert "### BEGIN SOLUTION" not in text
        for exercise in found:
            assert f"{exercise.label}: replace this line" in text
