"""Reading, writing and rewriting the course's notebooks: the shared plumbing of the generator and runner.

Notebooks are written in one fixed JSON layout (nbformat's), so regenerating an unchanged notebook
gives the same bytes and a drift check can compare files directly.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import nbformat

from utils.config import repo_root

#: Lesson notebooks are named ``NN_topic.ipynb``.
LESSON_PATTERN = re.compile(r"^\d\d_[a-z0-9_]+\.ipynb$")
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"


def solutions_dir() -> Path:
    """The folder of complete notebooks, the single source of the course."""
    return repo_root() / "solutions"


def exercises_dir() -> Path:
    """The folder of exercise notebooks generated from the solutions."""
    return repo_root() / "notebooks"


def lesson_notebooks(folder: Path | None = None) -> list[Path]:
    """The lesson notebooks in ``folder`` (default: solutions), in syllabus order."""
    folder = folder or solutions_dir()
    return sorted(p for p in folder.glob("*.ipynb") if LESSON_PATTERN.match(p.name))


def read(path: Path) -> nbformat.NotebookNode:
    """Read a notebook as nbformat v4."""
    return nbformat.read(path, as_version=4)


def dumps(nb: nbformat.NotebookNode) -> str:
    """The notebook's canonical text (what :func:`write` puts on disk)."""
    return nbformat.writes(nb) + "\n"


def write(nb: nbformat.NotebookNode, path: Path) -> None:
    """Write a notebook in the canonical layout, creating the folder if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(nb), encoding="utf-8")


def tags(cell: dict[str, Any]) -> list[str]:
    """A cell's tags (an empty list when it has none)."""
    return list(cell.get("metadata", {}).get("tags", []))


def find_tagged(nb: nbformat.NotebookNode, tag: str) -> list[int]:
    """Indices of the cells that carry ``tag``."""
    return [i for i, cell in enumerate(nb.cells) if tag in tags(cell)]


def parameters_index(nb: nbformat.NotebookNode, name: str = "notebook") -> int:
    """Index of the one cell tagged ``parameters``; a clear error when there is none or several."""
    found = find_tagged(nb, PARAMETERS_TAG)
    if len(found) != 1:
        raise ValueError(f"{name} must have exactly one cell tagged 'parameters', found {len(found)}")
    return found[0]


def parameter_names(source: str) -> list[str]:
    """Names assigned at the top level of a parameters cell, in order."""
    names = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return names


def tiny_settings(nb: nbformat.NotebookNode, name: str = "notebook") -> list[str]:
    """Names a notebook sets under ``if SCALE == "tiny":`` in the cell after its parameters cell (its one place
    for what ``tiny`` changes); empty when it has no such cell."""
    index = parameters_index(nb, name)
    if index + 1 >= len(nb.cells) or nb.cells[index + 1].cell_type != "code":
        return []
    names = []
    for node in ast.parse(nb.cells[index + 1].source).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "SCALE == 'tiny'":  # unparse writes either quoting this way
            for statement in node.body:
                for target in getattr(statement, "targets", []):
                    elements = target.elts if isinstance(target, ast.Tuple) else [target]
                    names += [e.id for e in elements if isinstance(e, ast.Name)]
    return names


def inject_parameters(nb: nbformat.NotebookNode, values: dict[str, Any], name: str = "notebook") -> None:
    """Insert a cell right after the parameters cell that overrides some of them (as papermill does).

    Only names that the parameters cell defines may be overridden, so a typo cannot pass silently.
    """
    index = parameters_index(nb, name)
    known = parameter_names(nb.cells[index].source)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{name} has no parameter(s) {unknown}; its parameters cell defines {known}")
    if not values:
        return
    lines = ["# Parameters set by the course runner for this run"]
    lines += [f"{key} = {value!r}" for key, value in values.items()]
    cell = nbformat.v4.new_code_cell("\n".join(lines), metadata={"tags": [INJECTED_TAG]})
    cell.pop("id", None)
    nb.cells.insert(index + 1, cell)
    _renumber_ids(nb)


def append_code(nb: nbformat.NotebookNode, source: str, tag: str) -> None:
    """Append a code cell carrying ``tag`` (used to add the metric checks to test copies)."""
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": [tag]})
    cell.pop("id", None)
    nb.cells.append(cell)
    _renumber_ids(nb)


def _renumber_ids(nb: nbformat.NotebookNode) -> None:
    """Give added cells ids that are unique in the notebook (nbformat 4.5 requires ids)."""
    seen = {c.get("id") for c in nb.cells if c.get("id")}
    for i, cell in enumerate(nb.cells):
        if not cell.get("id"):
            new_id = f"added-{i}"
            while new_id in seen:
                new_id += "x"
            cell["id"] = new_id
            seen.add(new_id)


def clear_outputs(nb: nbformat.NotebookNode) -> None:
    """Remove outputs and execution counts, and the per-cell execution timings some front ends store."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.get("metadata", {}).pop("execution", None)
