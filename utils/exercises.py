"""Generate the exercise notebooks (``notebooks/``) from the solutions, and check that nothing drifted.

``solutions/`` is the only source. A solution region sits between ``### BEGIN SOLUTION`` and
``### END SOLUTION`` (nbgrader's markers) inside a function of a cell whose first line is
``# Exercise NN.K — title``. The exercise version replaces the region with a stub that raises
``NotImplementedError`` naming the exercise, clears outputs, and drops the ``# NBVAL_…`` test markers.
Because a region always sits inside a function, an exercise notebook still runs to its end.

    python -m utils.exercises           # refresh generated cells in solutions/, write notebooks/
    python -m utils.exercises --check   # exit 1 if anything differs from what would be written
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from utils import notebooks
from utils.colab import (
    BUTTONS_TAG,
    SETUP_TAG,
    SYLLABUS_END,
    SYLLABUS_START,
    buttons_markdown,
    colab_extras,
    setup_source,
    syllabus_table,
)

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
HEADER = re.compile(r"^# Exercise (?P<number>\d\d\.\d+)\s+[—-]\s+(?P<title>\S.*)$")
NBVAL_MARKER = re.compile(r"^\s*# NBVAL_[A-Z_]+\s*$")


class ExerciseFormatError(ValueError):
    """A solution notebook breaks the conventions the generator relies on."""


@dataclass(frozen=True)
class Exercise:
    """One exercise found in a solution notebook."""

    number: str
    title: str
    notebook: str

    @property
    def label(self) -> str:
        """How messages name the exercise, e.g. ``Exercise 01.2 (split by time)``."""
        return f"Exercise {self.number} ({self.title})"


def stub_lines(exercise: Exercise, indent: str) -> list[str]:
    """The lines that replace a solution region in the exercise notebook."""
    return [
        f"{indent}# Your code here: {exercise.label}.",
        f'{indent}raise NotImplementedError("{exercise.label}: replace this line with your code")',
    ]


def strip_solution(source: str, where: str) -> tuple[str, Exercise | None]:
    """Replace every solution region of one cell's source with a stub; return it and its exercise."""
    if BEGIN not in source and END not in source:
        return source, None
    lines = source.split("\n")
    match = HEADER.match(lines[0])
    if not match:
        raise ExerciseFormatError(
            f"{where}: a cell with a solution region must start with '# Exercise NN.K — title', "
            f"found {lines[0]!r}"
        )
    exercise = Exercise(match["number"], match["title"].strip(), where.split(":")[0])
    out: list[str] = []
    inside = False
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ExerciseFormatError(f"{where} line {number}: {BEGIN} inside another solution region")
            indent = line[: len(line) - len(line.lstrip())]
            if not indent:
                raise ExerciseFormatError(
                    f"{where} line {number}: a solution region must sit inside a function body, so that "
                    "the exercise notebook still runs to its end"
                )
            out += stub_lines(exercise, indent)
            inside = True
        elif stripped == END:
            if not inside:
                raise ExerciseFormatError(f"{where} line {number}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ExerciseFormatError(f"{where}: {BEGIN} is never closed by {END}")
    return "\n".join(out), exercise


def _compiles(source: str, where: str) -> None:
    """Fail loudly if a generated cell is not valid (IPython) Python."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        compile(TransformerManager().transform_cell(source), where, "exec")
    except SyntaxError as err:
        raise ExerciseFormatError(f"{where}: the generated stub does not compile: {err}") from err


def sync_generated_cells(nb: nbformat.NotebookNode, filename: str) -> None:
    """Rewrite the buttons and setup cells from the configured repository URL."""
    setup = setup_source(colab_extras(nb.metadata))
    for tag, source in ((BUTTONS_TAG, buttons_markdown(filename)), (SETUP_TAG, setup)):
        found = notebooks.find_tagged(nb, tag)
        if len(found) != 1:
            raise ExerciseFormatError(f"{filename} must have exactly one cell tagged {tag!r}, found {len(found)}")
        nb.cells[found[0]].source = source


def exercise_version(solution: nbformat.NotebookNode, filename: str) -> tuple[nbformat.NotebookNode, list[Exercise]]:
    """The exercise notebook for one (already synced) solution notebook, and the exercises in it."""
    nb = copy.deepcopy(solution)
    found: list[Exercise] = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        where = f"{filename}: cell {index}"
        source, exercise = strip_solution(cell.source, where)
        source = "\n".join(line for line in source.split("\n") if not NBVAL_MARKER.match(line))
        if exercise:
            _compiles(source, where)
            found.append(exercise)
        cell.source = source
    notebooks.clear_outputs(nb)
    numbers = [e.number for e in found]
    if len(set(numbers)) != len(numbers):
        raise ExerciseFormatError(f"{filename}: exercise numbers repeat: {numbers}")
    return nb, found


def promise(nb: nbformat.NotebookNode) -> str:
    """The one-line promise under a notebook's title (its first italic line)."""
    for line in nb.cells[0].source.split("\n")[1:]:
        if line.startswith("*") and line.endswith("*"):
            return line.strip("*")
    return ""


def readme_text(readme: str, lessons: dict[str, tuple[str, str]]) -> str:
    """The README with its syllabus table regenerated between the markers."""
    start, end = readme.find(SYLLABUS_START), readme.find(SYLLABUS_END)
    if start < 0 or end < start:
        raise ExerciseFormatError(f"README.md must contain the syllabus markers {SYLLABUS_START!r} … {SYLLABUS_END!r}")
    return readme[:start] + syllabus_table(lessons) + readme[end + len(SYLLABUS_END):]


def plan(solutions: Path | None = None, exercises: Path | None = None, readme: Path | None = None) -> dict[Path, str]:
    """Every file the generator would write (synced solutions, exercise notebooks, README) and its text."""
    solutions = solutions or notebooks.solutions_dir()
    exercises = exercises or notebooks.exercises_dir()
    files: dict[Path, str] = {}
    lessons: dict[str, tuple[str, str]] = {}
    for path in notebooks.lesson_notebooks(solutions):
        solution = notebooks.read(path)
        sync_generated_cells(solution, path.name)
        files[path] = notebooks.dumps(solution)
        exercise, _ = exercise_version(solution, path.name)
        files[exercises / path.name] = notebooks.dumps(exercise)
        lessons[path.name[:2]] = (path.name, promise(solution))
    readme = readme or solutions.parent / "README.md"
    if readme.exists():
        files[readme] = readme_text(readme.read_text(encoding="utf-8"), lessons)
    return files


def drift(files: dict[Path, str], exercises: Path | None = None) -> list[str]:
    """What differs on disk from the planned files, and exercise notebooks with no solution."""
    exercises = exercises or notebooks.exercises_dir()
    problems = []
    for path, text in files.items():
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: differs from what the generator writes")
    for path in notebooks.lesson_notebooks(exercises):
        if path not in files:
            problems.append(f"{path}: has no solution notebook (remove it)")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Write (or, with ``--check``, verify) the exercise notebooks and the generated cells."""
    parser = argparse.ArgumentParser(prog="python -m utils.exercises", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="report drift and exit 1 instead of writing")
    args = parser.parse_args(argv)
    try:
        files = plan()
    except ExerciseFormatError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.check:
        problems = drift(files)
        for line in problems:
            print(f"drift: {line}", file=sys.stderr)
        if problems:
            print("Run `python -m utils.exercises` (or `make exercises`) to regenerate.", file=sys.stderr)
            return 1
        print(f"{len(notebooks.lesson_notebooks())} solution notebooks, their exercise versions and the README are in sync")
        return 0
    for path, text in files.items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(notebooks.solutions_dir().parent)}")
    for path in notebooks.lesson_notebooks(notebooks.exercises_dir()):
        if path not in files:
            path.unlink()
            print(f"removed {path.name} (no solution notebook)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
