"""Recorded metrics: how a notebook publishes its numbers, and how the tests and the course report read them.

A notebook calls :func:`record_metrics` once per result. Each call displays a small table for the
reader and, alongside it, the same numbers as JSON under :data:`METRICS_MIME`, so they survive in the
saved notebook. ``python -m utils.report NOTEBOOK`` reads them back from the stored outputs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from utils.config import repo_root

#: The output type that carries recorded metrics inside a notebook's outputs.
METRICS_MIME = "application/vnd.mtl-course.metrics+json"

_RECORDED: dict[str, float | int] = {}


def _valid_name(name: str) -> bool:
    """A Python identifier, optionally with dots between digits for a setting (``synth_mmoe_loss_p0.5``)."""
    head, *rest = name.split(".")
    return head.isidentifier() and all(part and (part.isalnum() or part.replace("_", "").isalnum()) and part.isascii()
                                       for part in rest)


def _clean(name: str, value: Any) -> float | int:
    """Turn a metric into a plain finite int or float, or say why it cannot be one."""
    if not _valid_name(name):
        raise ValueError(f"metric name {name!r} must look like a Python identifier (letters, digits, _), "
                         "optionally with a decimal setting such as p0.5")
    if hasattr(value, "item"):  # numpy and tensorflow scalars
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"metric {name!r} must be a number, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"metric {name!r} is {value}: record only finite numbers (check the computation)")
    return value


def _as_table(metrics: Mapping[str, float | int]) -> str:
    width = max(len(k) for k in metrics)
    lines = []
    for key, value in metrics.items():
        text = f"{value:,}" if isinstance(value, int) else f"{value:.4g}"
        lines.append(f"{key:<{width}}  {text}")
    return "\n".join(lines)


def record_metrics(**metrics: Any) -> None:
    """Record named results of this notebook for the course report and the tests, and show them."""
    if not metrics:
        raise ValueError("record_metrics needs at least one name=value pair")
    cleaned = {name: _clean(name, value) for name, value in metrics.items()}
    _RECORDED.update(cleaned)
    try:
        from IPython.display import display

        display({METRICS_MIME: cleaned, "text/plain": "recorded:\n" + _as_table(cleaned)}, raw=True)
    except ImportError:  # plain Python: print instead
        print("recorded:\n" + _as_table(cleaned))


def tiny_caveat(scale: str) -> None:
    """At the ``tiny`` scale, print one line saying that the results beside it are noise; otherwise nothing.

    A lesson's text interprets its ``small`` run; a learner running the quick ``tiny`` smoke test needs to be told,
    next to the table, that its numbers will differ and carry no lesson.
    """
    if scale == "tiny":
        print("SCALE = 'tiny': a smoke test on a few thousand rows. The numbers below are noise; "
              "the text describes the 'small' run.")


def recorded() -> dict[str, float | int]:
    """The metrics recorded so far in this process (this notebook's kernel)."""
    return dict(_RECORDED)


def read_metrics(notebook: str | Path) -> dict[str, float | int]:
    """Read the metrics a notebook recorded from its stored outputs (later records win)."""
    path = Path(notebook)
    if not path.is_file():
        raise FileNotFoundError(f"no notebook at {path}")
    nb = json.loads(path.read_text(encoding="utf-8"))
    metrics: dict[str, float | int] = {}
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) or []:
            data = output.get("data", {})
            if METRICS_MIME in data:
                metrics.update(data[METRICS_MIME])
    return metrics


def is_timing(name: str) -> bool:
    """Whether a recorded metric measures time or speed (``lesson_s``, ``samples_per_s``, ``matmul_gflops``):
    those differ between runs by nature, and reproducibility checks leave them out."""
    return name.endswith("_s") or "_per_s" in name or name.endswith("gflops") or name.endswith("seconds")


def differences(reference: Mapping[str, float | int], other: Mapping[str, float | int],
                include_timing: bool = False) -> list[str]:
    """Every recorded metric that is not identical in ``reference`` and ``other`` (or is missing from one), each as
    a line with both values and the relative difference; timings are left out unless ``include_timing``."""
    lines = []
    for name in sorted(set(reference) | set(other)):
        if is_timing(name) and not include_timing:
            continue
        if name not in other or name not in reference:
            where = "the new run" if name not in other else "the reference"
            lines.append(f"{name}: missing from {where}")
            continue
        a, b = reference[name], other[name]
        if a != b:
            relative = abs(b - a) / abs(a) if a else math.inf
            lines.append(f"{name}: {a!r} -> {b!r} ({relative:.2%})")
    return lines


def expectations_path() -> Path:
    """The file of tolerances that the notebook tests hold recorded metrics to."""
    return repo_root() / "tests" / "expected_metrics.toml"


def load_expectations(path: str | Path | None = None) -> dict[str, Any]:
    """Parse the expectations file: ``[notebook.scale]`` tables of ``metric = {min=…, max=…}``."""
    return tomllib.loads(Path(path or expectations_path()).read_text(encoding="utf-8"))


def compare(metrics: Mapping[str, float | int], expected: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Return one line per metric that is missing or outside its ``min``/``max`` bounds."""
    problems = []
    for name, bounds in expected.items():
        unknown = set(bounds) - {"min", "max"}
        if unknown or not bounds:
            raise ValueError(f"expectation for {name!r} must have 'min' and/or 'max', got {dict(bounds)}")
        if name not in metrics:
            problems.append(f"{name}: not recorded")
            continue
        value = metrics[name]
        if "min" in bounds and value < bounds["min"]:
            problems.append(f"{name} = {value:.6g} is below the expected minimum {bounds['min']}")
        if "max" in bounds and value > bounds["max"]:
            problems.append(f"{name} = {value:.6g} is above the expected maximum {bounds['max']}")
    return problems


def check_expected(notebook: str, scale: str, path: str | Path | None = None) -> None:
    """Assert that this kernel's recorded metrics meet the expectations for ``notebook`` at ``scale``."""
    table = load_expectations(path).get(notebook, {}).get(scale)
    if table is None:
        raise AssertionError(
            f"no expectations for {notebook!r} at scale {scale!r} in {path or expectations_path()}: add them"
        )
    problems = compare(recorded(), table)
    if problems:
        raise AssertionError(f"{notebook} at scale {scale}:\n  " + "\n  ".join(problems))
    print(f"{len(table)} recorded metrics of {notebook} are within their expected ranges ({scale} scale)")


def main(argv: list[str] | None = None) -> int:
    """``python -m utils.report NOTEBOOK...``: print each notebook's recorded metrics as JSON."""
    parser = argparse.ArgumentParser(prog="python -m utils.report", description=main.__doc__)
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    result = {}
    for path in args.notebooks:
        try:
            result[path.stem] = read_metrics(path)
        except (FileNotFoundError, json.JSONDecodeError) as err:
            print(f"error: {path}: {err}", file=sys.stderr)
            return 1
    print(json.dumps(result if len(result) > 1 else next(iter(result.values())), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
