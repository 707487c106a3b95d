"""Notebook hygiene: the anatomy every lesson shares, generated cells, no outputs in exercises, no local paths."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from utils import notebooks
from utils.colab import BUTTONS_TAG, SETUP_TAG, buttons_markdown, colab_extras, github_path, setup_source
from utils.config import REPOSITORY_URL

SOLUTIONS = notebooks.lesson_notebooks()
EXERCISES = notebooks.lesson_notebooks(notebooks.exercises_dir())
ALL = SOLUTIONS + EXERCISES
LOCAL_PATH = re.compile(r"(/home/|/Users/|/root/|/work/|/tmp/|[A-Z]:\\\\)")
MAX_NOTEBOOK_BYTES = 1_500_000


def _ids(paths: list[Path]) -> list[str]:
    return [f"{p.parent.name}/{p.name}" for p in paths]


def test_every_solution_has_an_exercise_version() -> None:
    assert [p.name for p in SOLUTIONS] == [p.name for p in EXERCISES]


@pytest.mark.parametrize("path", ALL, ids=_ids(ALL))
def test_anatomy(path: Path) -> None:
    nb = notebooks.read(path)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith(f"# {path.name[:2]} · "), "title '# NN · Title'"
    assert nb.cells[1].source == buttons_markdown(path.name) and BUTTONS_TAG in notebooks.tags(nb.cells[1])
    setup = notebooks.find_tagged(nb, SETUP_TAG)
    assert len(setup) == 1 and nb.cells[setup[0]].source == setup_source(colab_extras(nb.metadata))
    params = notebooks.parameters_index(nb, path.name)
    assert setup[0] < params, "the setup cell comes before the parameters cell"
    assert {"SEED", "SCALE"} <= set(notebooks.parameter_names(nb.cells[params].source))
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown").lower()
    for heading in ("learning objectives", "prerequisites", "run time", "summary", "further reading",
                    "recorded metrics"):
        assert heading in text, f"missing the '{heading}' part of a lesson"
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", ALL, ids=_ids(ALL))
def test_no_local_paths(path: Path) -> None:
    nb = notebooks.read(path)
    for index, cell in enumerate(nb.cells):
        if SETUP_TAG in notebooks.tags(cell):
            continue
        sources = [cell.source] + [json.dumps(o) for o in cell.get("outputs", [])]
        for text in sources:
            found = LOCAL_PATH.search(text)
            assert not found, f"cell {index} mentions a local path ({found.group(0)}…)"


@pytest.mark.parametrize("path", EXERCISES, ids=_ids(EXERCISES))
def test_exercise_notebooks_carry_no_outputs(path: Path) -> None:
    for cell in notebooks.read(path).cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@pytest.mark.parametrize("path", SOLUTIONS, ids=_ids(SOLUTIONS))
def test_solutions_are_executed_in_order_and_small(path: Path) -> None:
    nb = notebooks.read(path)
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert all(c is not None for c in counts), "every code cell of a solution has been run (make solutions)"
    assert counts == sorted(counts), "cells were run out of order: re-execute with make solutions"
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
    assert path.stat().st_size < MAX_NOTEBOOK_BYTES, "outputs too large: show less"


def test_repository_url_is_a_github_repo() -> None:
    assert github_path(REPOSITORY_URL).count("/") == 1
    with pytest.raises(ValueError, match="OWNER/NAME"):
        github_path("https://gitlab.com/a/b")


def test_readme_buttons_use_the_configured_url() -> None:
    readme = (notebooks.solutions_dir().parent / "README.md").read_text(encoding="utf-8")
    repo = github_path(REPOSITORY_URL)
    links = re.findall(r"colab\.research\.google\.com/github/([^/]+/[^/]+)/", readme)
    assert links and set(links) == {repo}, "README's Colab buttons must point at utils.config.REPOSITORY_URL"


def test_setup_cell_installs_colab_extras() -> None:
    source = setup_source(["keras-tuner"])
    assert "    %pip install -q keras-tuner\n" in source
    assert "keras-tuner" not in setup_source()
    with pytest.raises(ValueError, match="colab_pip"):
        colab_extras({"course": {"colab_pip": "keras-tuner"}})
