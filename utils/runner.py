"""The course runner: execute every solution notebook in a fresh kernel and write the course report.

    python -m utils.runner course [--scale small] [--only 01 ...]   # `make course`: build/course/
    python -m utils.runner prepare-tests --scale tiny                # copies for the notebook tests
    python -m utils.runner refresh [--only 01 ...]                   # maintainers: rerun solutions in place
    python -m utils.runner compare [--only 01 ...]                   # maintainers: rerun, list changed metrics

Executed copies go to a build folder, so tracked files stay untouched; only ``refresh`` writes the
committed outputs of ``solutions/``, and it does so by executing them, never by editing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from tqdm.auto import tqdm

from utils import notebooks, report
from utils.config import DEFAULT_SCALE, check_scale, repo_root

CHECK_TAG = "metric-checks"
#: Seconds one cell may run before the runner gives up on it.
CELL_TIMEOUT = 1800


class _CurrentPythonSpecs(KernelSpecManager):
    """Kernel specs that always start this very interpreter, whatever kernels are installed."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        return KernelSpec(
            argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name="Python (course)",
            language="python",
        )


class _CurrentPythonKernel(KernelManager):
    """A kernel manager bound to :class:`_CurrentPythonSpecs`."""

    def _kernel_spec_manager_default(self) -> KernelSpecManager:
        return _CurrentPythonSpecs()


@dataclass
class RunResult:
    """The outcome of executing one notebook."""

    name: str
    seconds: float
    ok: bool
    metrics: dict[str, float | int] = field(default_factory=dict)
    error: str = ""
    #: Recorded metrics outside the ranges of ``tests/expected_metrics.toml`` for this scale (None: no table).
    problems: list[str] | None = None


def _select(only: list[str] | None) -> list[Path]:
    """The solution notebooks to run: all, or those whose name starts with one of ``only``."""
    paths = notebooks.lesson_notebooks()
    if only:
        paths = [p for p in paths if any(p.name.startswith(prefix) for prefix in only)]
        if not paths:
            raise SystemExit(f"error: no solution notebook matches {only}")
    return paths


def prepared(path: Path, params: dict[str, object]) -> nbformat.NotebookNode:
    """A copy of a notebook with some parameters overridden, papermill-style."""
    nb = notebooks.read(path)
    notebooks.inject_parameters(nb, params, name=path.name)
    return nb


def execute(nb: nbformat.NotebookNode, cwd: Path, timeout: int = CELL_TIMEOUT) -> None:
    """Run a notebook top to bottom in a fresh kernel started from this Python; outputs land in ``nb``."""
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        kernel_manager_class=_CurrentPythonKernel,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()


def _last_line(err: Exception) -> str:
    """The last line of a cell error (the exception itself), or its type when the message is empty."""
    text = str(err).strip()
    return text.splitlines()[-1] if text else type(err).__name__


def run_one(path: Path, params: dict[str, object], out: Path) -> RunResult:
    """Execute one solution notebook with ``params`` into ``out``; never raises for a failing cell."""
    nb = prepared(path, params)
    start = time.perf_counter()
    error = ""
    try:
        execute(nb, cwd=path.parent)
    except CellExecutionError as err:
        error = _last_line(err)
    seconds = time.perf_counter() - start
    notebooks.write(nb, out / path.name)
    return RunResult(path.stem, seconds, not error, report.read_metrics(out / path.name), error)


def expectation_problems(name: str, scale: str | None, metrics: dict[str, float | int]) -> list[str] | None:
    """What misses the expected ranges for ``name`` at ``scale`` (None when no ranges are written down)."""
    table = report.load_expectations().get(name, {}).get(scale or DEFAULT_SCALE)
    return None if table is None else report.compare(metrics, table)


def course_report(results: list[RunResult], scale: str) -> str:
    """The course report in Markdown: one section per lesson, with its run time and recorded metrics."""
    total = sum(r.seconds for r in results)
    lines = [
        "# Course report",
        "",
        f"Scale `{scale}`; every solution notebook executed in a fresh kernel by `make course`.",
        "",
        "| lesson | status | run time (s) | metrics recorded | within expected ranges |",
        "|---|---|---:|---:|---|",
    ]
    for r in results:
        ranges = "no ranges" if r.problems is None else ("yes" if not r.problems else f"{len(r.problems)} outside")
        lines.append(f"| {r.name} | {'ok' if r.ok else 'FAILED'} | {r.seconds:.1f} | {len(r.metrics)} | {ranges} |")
    lines += ["", f"Total run time: {total:.1f} s.", ""]
    for r in results:
        lines += [f"## {r.name}", ""]
        if r.error:
            lines += [f"Failed: `{r.error}`", ""]
        if r.problems:
            lines += ["Outside the expected ranges (tests/expected_metrics.toml):", ""]
            lines += [f"- {p}" for p in r.problems] + [""]
        if r.metrics:
            lines += ["| metric | value |", "|---|---:|"]
            lines += [f"| {k} | {v:.6g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in r.metrics.items()]
            lines.append("")
    return "\n".join(lines)


def course(scale: str | None, out: Path, only: list[str] | None) -> int:
    """Execute the selected solution notebooks into ``out`` and write ``report.md`` and ``report.json``."""
    params = {"SCALE": check_scale(scale)} if scale else {}
    out.mkdir(parents=True, exist_ok=True)
    results = []
    bar = tqdm(_select(only), desc="course", unit="notebook")
    for path in bar:
        bar.set_postfix_str(path.stem)
        result = run_one(path, params, out)
        result.problems = expectation_problems(result.name, scale, result.metrics)
        status = "ok" if result.ok else f"FAILED: {result.error}"
        if result.problems:
            status += f"; outside expected ranges: {'; '.join(result.problems)}"
        tqdm.write(f"{path.stem}: {result.seconds:.1f} s, {len(result.metrics)} metrics, {status}")
        results.append(result)
    label = scale or "each notebook's default"
    (out / "report.md").write_text(course_report(results, label), encoding="utf-8")
    (out / "report.json").write_text(
        json.dumps({r.name: {"seconds": round(r.seconds, 2), "ok": r.ok, "metrics": r.metrics} for r in results},
                   indent=2),
        encoding="utf-8",
    )
    print(f"Course report: {out / 'report.md'} ({sum(r.seconds for r in results):.0f} s in all)")
    return 0 if all(r.ok for r in results) else 1


def prepare_tests(scale: str, out: Path) -> int:
    """Write test copies of solutions and exercises at ``scale``; solutions end with their metric checks."""
    check_scale(scale)
    if out.exists():
        shutil.rmtree(out)
    count = 0
    for folder in (notebooks.solutions_dir(), notebooks.exercises_dir()):
        for path in notebooks.lesson_notebooks(folder):
            nb = prepared(path, {"SCALE": scale})  # what else tiny changes, each notebook says itself
            if folder == notebooks.solutions_dir():
                notebooks.append_code(
                    nb, f"from utils.report import check_expected\n\ncheck_expected({path.stem!r}, scale={scale!r})",
                    CHECK_TAG,
                )
            notebooks.write(nb, out / folder.name / path.name)
            count += 1
    print(f"prepared {count} notebooks at scale {scale!r} in {out}")
    return 0


def refresh(only: list[str] | None) -> int:
    """Re-execute solution notebooks in place at their default parameters (the committed outputs)."""
    failed = []
    for path in tqdm(_select(only), desc="refresh", unit="notebook"):
        nb = notebooks.read(path)
        start = time.perf_counter()
        try:
            execute(nb, cwd=path.parent)
        except CellExecutionError as err:
            failed.append(f"{path.name}: {_last_line(err)}")
            continue
        for cell in nb.cells:
            cell.get("metadata", {}).pop("execution", None)
        notebooks.write(nb, path)
        tqdm.write(f"{path.name}: {time.perf_counter() - start:.1f} s")
    for line in failed:
        print(f"FAILED {line}", file=sys.stderr)
    return 1 if failed else 0


def compare(only: list[str] | None, out: Path) -> int:
    """Re-execute solutions at their default parameters into ``out`` and list every recorded metric (timings left
    out) that differs from the committed outputs: run it before committing refreshed outputs. Exit 1 on any."""
    out.mkdir(parents=True, exist_ok=True)
    changed = 0
    for path in tqdm(_select(only), desc="compare", unit="notebook"):
        committed = report.read_metrics(path)
        result = run_one(path, {}, out)
        if not result.ok:
            tqdm.write(f"{path.stem}: FAILED: {result.error}")
            changed += 1
            continue
        lines = report.differences(committed, result.metrics)
        same = sum(1 for k, v in committed.items() if not report.is_timing(k) and result.metrics.get(k) == v)
        tqdm.write(f"{path.stem}: {same} recorded metrics identical, {len(lines)} differ ({result.seconds:.0f} s)")
        for line in lines:
            tqdm.write(f"  {line}")
        changed += bool(lines)
    return 1 if changed else 0


def main(argv: list[str] | None = None) -> int:
    """Command line: ``course``, ``prepare-tests``, ``refresh`` and ``compare``."""
    parser = argparse.ArgumentParser(prog="python -m utils.runner", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_course = sub.add_parser("course", help="execute every solution notebook and write the course report")
    p_course.add_argument("--scale", default=None, help="override every notebook's SCALE")
    p_course.add_argument("--out", type=Path, default=repo_root() / "build" / "course")
    p_course.add_argument("--only", nargs="*")
    p_tests = sub.add_parser("prepare-tests", help="write test copies of every notebook")
    p_tests.add_argument("--scale", default="tiny")
    p_tests.add_argument("--out", type=Path, default=repo_root() / "build" / "nbtest")
    p_refresh = sub.add_parser("refresh", help="re-execute the solutions in place (committed outputs)")
    p_refresh.add_argument("--only", nargs="*")
    p_compare = sub.add_parser("compare", help="re-execute the solutions and list metrics that differ from the committed")
    p_compare.add_argument("--only", nargs="*")
    p_compare.add_argument("--out", type=Path, default=repo_root() / "build" / "compare")
    args = parser.parse_args(argv)
    if args.command == "course":
        return course(args.scale, args.out, args.only)
    if args.command == "prepare-tests":
        return prepare_tests(args.scale, args.out)
    if args.command == "compare":
        return compare(args.only, args.out)
    return refresh(args.only)


if __name__ == "__main__":
    raise SystemExit(main())
