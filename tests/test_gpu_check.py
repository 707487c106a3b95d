"""The GPU check refuses to run without a GPU unless told to, and reports each notebook's time and device."""

from __future__ import annotations

import json

import nbformat
import pytest

from utils import gpu_check


def test_refuses_without_a_gpu(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setattr(gpu_check, "physical_gpus", lambda: [])
    assert gpu_check.main(["--only", "00", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no GPU found" in err and "--allow-cpu" in err
    assert not (tmp_path / "report.md").exists()


def test_rejects_an_unknown_scale(monkeypatch) -> None:
    monkeypatch.setattr(gpu_check, "physical_gpus", lambda: ["/physical_device:GPU:0"])
    with pytest.raises(ValueError, match="unknown scale"):
        gpu_check.main(["--scale", "huge"])


def _notebook(path, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('SEED = 0\nSCALE = "small"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)


def test_check_notebook_reports_time_device_and_failures(tmp_path) -> None:
    _notebook(tmp_path / "90_fine.ipynb", 'assert SCALE == "tiny"\nprint(sum(range(10)))')
    _notebook(tmp_path / "91_broken.ipynb", "1 / 0")
    out = tmp_path / "out"
    fine = gpu_check.check_notebook(tmp_path / "90_fine.ipynb", "tiny", out)
    broken = gpu_check.check_notebook(tmp_path / "91_broken.ipynb", "tiny", out)
    assert fine.ok and fine.device == "CPU (TensorFlow not used)" and fine.seconds > 0
    assert not broken.ok and "ZeroDivisionError" in broken.error
    assert (out / "90_fine.ipynb").exists()
    text = gpu_check.report([fine, broken], "tiny", [])
    assert "| 90_fine | ok |" in text and "FAILED" in text and "GPUs visible: none" in text
    json.dumps([vars(fine)])


@pytest.mark.parametrize("info, device", [
    ({}, "unknown (the probe did not run)"),
    ({"tensorflow_used": True, "gpus": [], "gpu_peak_bytes": 0}, "CPU"),
    ({"tensorflow_used": True, "gpus": ["NVIDIA H100"], "gpu_peak_bytes": 0}, "CPU (a GPU was present but unused)"),
    ({"tensorflow_used": True, "gpus": ["NVIDIA H100"], "gpu_peak_bytes": 2**30}, "GPU: NVIDIA H100"),
])
def test_device_from_the_probe(info, device) -> None:
    assert gpu_check._device(info) == device
