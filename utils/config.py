"""Course-wide settings that more than one module reads.

The repository URL lives here and only here: every Colab button and every setup cell is generated
from it (``python -m utils.exercises`` rewrites them), so a teacher's fork changes one line.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The public repository of the course. A fork changes this line, then runs ``make exercises``.
REPOSITORY_URL = "https://github.com/mtl-recsys-course/mtl-recsys-course"
#: The branch that Colab buttons and the Colab setup cell point at.
BRANCH = "main"

#: The data scales every notebook understands, smallest first.
SCALES = ("tiny", "small", "full")
#: The scale a notebook runs at when nobody overrides its parameters cell.
DEFAULT_SCALE = "small"

#: Environment variable that moves the dataset cache.
DATA_DIR_ENV = "COURSE_DATA_DIR"


def repo_root() -> Path:
    """The checkout's root folder (the parent of ``utils/``)."""
    return Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """Where downloaded datasets are cached: ``$COURSE_DATA_DIR``, else ``datasets/.cache`` in the checkout.

    Outside a checkout (a plain ``pip install``) the cache goes to ``~/.cache/mtl-recsys-course``.
    """
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    root = repo_root()
    if (root / "datasets").is_dir() and os.access(root / "datasets", os.W_OK):
        return root / "datasets" / ".cache"
    return Path.home() / ".cache" / "mtl-recsys-course"


def check_scale(scale: str) -> str:
    """Return ``scale`` if it is one of :data:`SCALES`, else raise a ``ValueError`` that lists them."""
    if scale not in SCALES:
        raise ValueError(
            f"unknown scale {scale!r}: choose one of {', '.join(repr(s) for s in SCALES)} "
            "('tiny' for tests, 'small' for a CPU, 'full' for a GPU)"
        )
    return scale

#: The syllabus: lesson number → title. Lessons without a notebook yet show as planned in the README.
SYLLABUS = {
    "00": "Setup: how this course works",
    "01": "Data preparation",
    "02": "Single-task baselines",
    "03": "Shared-feature multi-task learning",
    "04": "The joint log loss",
    "05": "Experts: MMoE and PLE",
    "06": "Entire space: ESMM",
    "07": "Transfer and fine-tuning",
    "08": "Knowledge-graph features",
    "09": "Meta-learning for cold start",
    "10": "A system: retrieval, ranking, serving, monitoring, scale",
}
