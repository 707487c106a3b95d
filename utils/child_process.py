"""Running one of the course's modules in a fresh Python process and reading back the JSON it prints.

Lesson 10 does this twice on purpose: to load a SavedModel with TensorFlow alone (``utils.serving``) and to
train under a CPU split into devices (``utils.distributed``), which a running kernel cannot do.
"""

from __future__ import annotations

import json
import os
from typing import Any

from utils.config import repo_root


def module_env() -> dict[str, str]:
    """This process's environment with the repository first on ``PYTHONPATH``, so that ``python -m utils.…``
    finds the course from any working directory."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo_root()), os.environ.get("PYTHONPATH", "")])}


def json_result(returncode: int, out: str, err: str, what: str) -> dict[str, Any]:
    """The JSON object a finished child printed on its last line; if it failed, a ``RuntimeError`` that
    names ``what`` and shows the child's last lines of output."""
    if returncode != 0:
        tail = "\n".join((err or out).strip().splitlines()[-8:])
        raise RuntimeError(f"{what} failed (exit {returncode}):\n{tail}")
    return json.loads(out.strip().splitlines()[-1])
