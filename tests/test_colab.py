"""The setup cell's Colab branch, run here with Colab faked: a failed clone stops with git's message and what to
check; a good clone installs the course once and a re-run does not clone again."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest
from IPython.core.inputtransformer2 import TransformerManager

from utils.colab import COLAB_CHECKOUT, setup_source
from utils.config import BRANCH, REPOSITORY_URL


class _Shell:
    """Stands in for IPython: records the line magics (``%pip``) the cell runs, with ``{name}`` expanded from the
    cell's variables as IPython expands them."""

    def __init__(self) -> None:
        self.magics: list[tuple[str, str]] = []
        self.namespace: dict = {"get_ipython": lambda: self}

    def run_line_magic(self, name: str, line: str) -> None:
        self.magics.append((name, line.format(**self.namespace)))


def _run_colab_branch(source: str, monkeypatch: pytest.MonkeyPatch) -> _Shell:
    """Execute a setup cell as Colab would (``google.colab`` imported), up to and excluding show_environment()."""
    code = TransformerManager().transform_cell(source.split("from utils.runtime import")[0])
    shell = _Shell()
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    exec(compile(code, "<setup cell>", "exec"), shell.namespace)
    return shell


def _cell(url: str, checkout: Path) -> str:
    return setup_source().replace(REPOSITORY_URL, url).replace(COLAB_CHECKOUT, str(checkout))


def test_a_failed_clone_says_what_failed_and_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "no-such-fork"
    with pytest.raises(RuntimeError) as err:
        _run_colab_branch(_cell(str(missing), tmp_path / "course"), monkeypatch)
    message = str(err.value)
    assert message.startswith(f"could not fetch the course: git clone {missing} (branch {BRANCH}) said: ")
    assert "does not exist" in message  # git's own reason
    assert "Check the URL and the branch" in message and "a fork must be public" in message
    assert not (tmp_path / "course").exists()  # nothing half-written to install from


def test_a_good_clone_installs_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    origin = tmp_path / "origin"
    (origin / "utils").mkdir(parents=True)
    (origin / "utils" / "__init__.py").write_text("")
    git = ["git", "-C", str(origin), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", "init", "-q", "-b", BRANCH, str(origin)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "course"], check=True)
    checkout = tmp_path / "course"
    cell = _cell(origin.as_uri(), checkout)
    first = _run_colab_branch(cell, monkeypatch)
    assert (checkout / "utils" / "__init__.py").exists()
    assert first.magics == [("pip", f"install -q --no-deps -e {checkout}")]
    (origin / "utils" / "new.py").write_text("")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "more"], check=True)
    again = _run_colab_branch(cell, monkeypatch)  # a re-run keeps the first clone instead of failing on it
    assert again.magics == first.magics and not (checkout / "utils" / "new.py").exists()
