"""The course's dataset registry: one entry point for every data set a notebook loads.

    >>> from utils.datasets import load_dataset, list_datasets
    >>> list_datasets()                                        # doctest: +SKIP
    >>> shop = load_dataset("shopsim", scale="tiny", seed=0)   # doctest: +SKIP
    >>> ml = load_dataset("movielens-100k", kg=True)           # doctest: +SKIP

Each data set has a data card in ``datasets/<name>.md`` and, when it is downloaded, a cache
folder ``<utils.config.data_dir()>/<name>`` (move it with the ``COURSE_DATA_DIR`` variable).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from utils.config import data_dir, repo_root

_DATASETS: dict[str, str] = {
    "shopsim": "Synthetic marketplace (catalog, users, impressions with click/cart/purchase, KG); "
    "seeded, generated in seconds.",
    "movielens-100k": "100,000 real movie ratings by 943 users on 1,682 movies (GroupLens), "
    "with user profiles, genres and an optional Freebase knowledge graph.",
}


def list_datasets() -> dict[str, str]:
    """The registered data sets, name to one-line description, so a notebook can show the choice."""
    return dict(_DATASETS)


def _check_name(name: str) -> str:
    """Return ``name`` if registered, else raise ValueError listing the names and the closest one."""
    if name in _DATASETS:
        return name
    known = ", ".join(repr(n) for n in sorted(_DATASETS))
    close = difflib.get_close_matches(name, list(_DATASETS), n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown dataset {name!r}.{hint} Known datasets: {known}.")


def load_dataset(name: str, **kwargs: Any) -> Any:
    """Load a registered data set by name; keyword arguments go to its loader unchanged.

    "shopsim" calls ``utils.shopsim.generate(**kwargs)`` (``scale``, ``seed`` and knobs);
    "movielens-100k" calls ``utils.movielens.load_movielens_100k(**kwargs)`` (``source``, ``kg``).
    """
    _check_name(name)
    if name == "shopsim":
        from utils import shopsim

        return shopsim.generate(**kwargs)
    from utils.movielens import load_movielens_100k

    return load_movielens_100k(**kwargs)


def dataset_card(name: str) -> str:
    """The data card (``datasets/<name>.md``): what the data is, its schema, licence and limits."""
    path = repo_root() / "datasets" / f"{_check_name(name)}.md"
    if not path.is_file():
        raise FileNotFoundError(
            f"the data card of {name!r} is not at {path}: it ships with the course repository, "
            "so use a checkout of the repository"
        )
    return path.read_text(encoding="utf-8")


def cache_dir(name: str) -> Path:
    """The cache folder of a data set, ``<data_dir()>/<name>``, created if missing."""
    folder = data_dir() / _check_name(name)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
