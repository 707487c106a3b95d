"""The GPU check: execute every solution notebook at the ``full`` scale on a GPU and report, for each,
its wall time and the device it used.

    python -m utils.gpu_check                          # every lesson, full scale; needs a GPU
    python -m utils.gpu_check --only 05 06             # some lessons
    python -m utils.gpu_check --scale tiny --only 00 --allow-cpu   # try the machinery on a CPU

It reuses the course runner's execution (a fresh kernel per notebook, parameters injected after the
``parameters`` cell) and appends one probe cell to each copy. The probe asks TensorFlow which GPUs it
sees and how much GPU memory the notebook's kernel allocated at its peak: a notebook whose models ran
on the GPU shows a peak above zero; one that never touched TensorFlow, or ran on the CPU, shows zero.
Work a notebook sends to a subprocess of its own (lesson 10 does, on purpose on the CPU) is not
counted. Executed copies and ``report.md`` / ``report.json`` go to ``build/gpu-check/``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from nbclient.exceptions import CellExecutionError

from utils import notebooks, runner
from utils.config import check_scale, repo_root

#: The output type of the probe cell.
DEVICE_MIME = "application/vnd.mtl-course.device+json"
PROBE_TAG = "gpu-check"
PROBE = f'''# GPU check: which device did this notebook's kernel use?
import sys

from IPython.display import display

info = {{"tensorflow_used": "tensorflow" in sys.modules, "gpus": [], "gpu_peak_bytes": 0}}
if info["tensorflow_used"]:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    info["gpus"] = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
    info["gpu_peak_bytes"] = int(sum(tf.config.experimental.get_memory_info(f"GPU:{{i}}")["peak"]
                                     for i in range(len(gpus))))
display({{"{DEVICE_MIME}": info, "text/plain": str(info)}}, raw=True)
'''


@dataclass
class DeviceRun:
    """One notebook's result: wall time, status, and what the probe found."""

    name: str
    seconds: float
    ok: bool
    device: str
    gpu_peak_gib: float
    error: str = ""


def physical_gpus() -> list[str]:
    """The GPUs TensorFlow sees in this process (names), without initialising them."""
    import tensorflow as tf

    return [d.name for d in tf.config.list_physical_devices("GPU")]


def _device(info: dict) -> str:
    if not info:
        return "unknown (the probe did not run)"
    if not info.get("tensorflow_used"):
        return "CPU (TensorFlow not used)"
    if info.get("gpu_peak_bytes", 0) > 0:
        return "GPU: " + ", ".join(info.get("gpus") or ["?"])
    return "CPU" + (" (a GPU was present but unused)" if info.get("gpus") else "")


def _probe_result(nb: dict) -> dict:
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) or []:
            if DEVICE_MIME in output.get("data", {}):
                return dict(output["data"][DEVICE_MIME])
    return {}


def check_notebook(path: Path, scale: str, out: Path, extra: dict[str, object] | None = None) -> DeviceRun:
    """Execute one notebook at ``scale`` with the probe appended; write the executed copy to ``out``."""
    nb = runner.prepared(path, {"SCALE": scale, **(extra or {})})
    notebooks.append_code(nb, PROBE, PROBE_TAG)
    start = time.perf_counter()
    error = ""
    try:
        runner.execute(nb, cwd=path.parent)
    except CellExecutionError as err:
        error = runner._last_line(err)
    seconds = time.perf_counter() - start
    notebooks.write(nb, out / path.name)
    info = _probe_result(nb)
    return DeviceRun(path.stem, seconds, not error, _device(info),
                     round(info.get("gpu_peak_bytes", 0) / 2**30, 3), error)


def report(results: list[DeviceRun], scale: str, gpus: list[str]) -> str:
    """The check's report in Markdown: one row per notebook."""
    lines = [
        "# GPU check",
        "",
        f"Scale `{scale}`; GPUs visible: {', '.join(gpus) if gpus else 'none'}.",
        "",
        "| lesson | status | wall time (s) | device used | GPU peak memory (GiB) |",
        "|---|---|---:|---|---:|",
    ]
    for r in results:
        status = "ok" if r.ok else f"FAILED: {r.error}"
        lines.append(f"| {r.name} | {status} | {r.seconds:.1f} | {r.device} | {r.gpu_peak_gib:.3f} |")
    lines += ["", f"Total wall time: {sum(r.seconds for r in results):.1f} s.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: refuse without a GPU unless ``--allow-cpu``; run, print and write the report."""
    parser = argparse.ArgumentParser(prog="python -m utils.gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("--scale", default="full", help="the scale every notebook runs at (default: full)")
    parser.add_argument("--only", nargs="*", help="lesson numbers or name prefixes, e.g. 00 05")
    parser.add_argument("--allow-cpu", action="store_true", help="run even when no GPU is found")
    parser.add_argument("--out", type=Path, default=repo_root() / "build" / "gpu-check")
    args = parser.parse_args(argv)
    check_scale(args.scale)
    gpus = physical_gpus()
    if not gpus:
        message = ("no GPU found: TensorFlow sees none on this machine (check `nvidia-smi` and that this "
                   "TensorFlow build has CUDA support, e.g. `pip install tensorflow[and-cuda]`).")
        if not args.allow_cpu:
            print(f"error: {message} Refusing to run; pass --allow-cpu to run on the CPU anyway "
                  "(slow at the full scale).", file=sys.stderr)
            return 2
        print(f"warning: {message} Running on the CPU because --allow-cpu was given.", file=sys.stderr)
    paths = runner._select(args.only)
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for path in paths:
        result = check_notebook(path, args.scale, args.out)
        failure = "" if result.ok else f"; FAILED: {result.error}"
        print(f"{result.name}: {result.seconds:.1f} s on {result.device}{failure}", flush=True)
        results.append(result)
    text = report(results, args.scale, gpus)
    (args.out / "report.md").write_text(text, encoding="utf-8")
    (args.out / "report.json").write_text(json.dumps([asdict(r) for r in results], indent=2), encoding="utf-8")
    print(text)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
