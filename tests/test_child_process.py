"""utils.child_process: the environment a child module runs in, and reading its JSON answer or its failure."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from utils.child_process import json_result, module_env
from utils.config import repo_root


def test_module_env_puts_the_repository_first_and_keeps_the_rest() -> None:
    env = module_env()
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(repo_root())
    assert env["PATH"] == os.environ["PATH"]


def test_a_child_finds_the_course_from_elsewhere(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-c", "import json, utils.config; print('log'); print(json.dumps({'ok': 1}))"],
                          capture_output=True, text=True, cwd=tmp_path, env=module_env())
    assert json_result(done.returncode, done.stdout, done.stderr, "the child") == {"ok": 1}


def test_a_failure_names_the_work_and_shows_the_last_lines() -> None:
    err = "\n".join(f"line {i}" for i in range(20))
    with pytest.raises(RuntimeError, match=r"^the child failed \(exit 3\):\nline 12\n") as info:
        json_result(3, '{"ok": 1}', err, "the child")
    assert str(info.value).endswith("line 19") and "line 11" not in str(info.value)
    with pytest.raises(RuntimeError, match="only stdout"):
        json_result(1, "only stdout", "", "the child")
