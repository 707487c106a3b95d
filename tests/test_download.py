"""Tests of utils.download against a local HTTP server on 127.0.0.1 and locally built wheels."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from utils.download import DownloadError, fetch, sha256_file

PAYLOAD = b"course data " * 5000
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
FAST = {"retries": 0, "timeout": 5.0, "backoff": 0.0, "progress": False}


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves a few fixed behaviours; counts requests per path in ``server.hits``."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        """Keep test output quiet."""

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        """Answer according to the path: good, wrong, truncated, error, flaky."""
        hits: Counter[str] = self.server.hits  # type: ignore[attr-defined]
        hits[self.path] += 1
        if self.path == "/good.bin":
            self._send(PAYLOAD)
        elif self.path == "/wrong.bin":
            self._send(b"not the file you want")
        elif self.path == "/truncated.bin":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 3])
            self.wfile.flush()
            self.close_connection = True
        elif self.path == "/flaky.bin" and hits[self.path] == 1:
            self.send_error(503, "try again")
        elif self.path == "/flaky.bin":
            self._send(PAYLOAD)
        else:
            self.send_error(404 if self.path != "/error.bin" else 500)

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def server() -> Iterator[tuple[str, Counter[str]]]:
    """A threaded HTTP server on a free port of 127.0.0.1: yields (base URL, hit counter)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.hits = Counter()  # type: ignore[attr-defined]
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.hits  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/file.bin"


def _only(folder: Path, *names: str) -> None:
    """Assert ``folder`` holds exactly ``names`` (no temp files, nothing half-written)."""
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)


def test_success_puts_verified_file_in_place(server, tmp_path):
    base, hits = server
    dest = tmp_path / "data.bin"
    assert fetch([f"{base}/good.bin"], PAYLOAD_SHA, dest, **FAST) == dest
    assert dest.read_bytes() == PAYLOAD
    assert sha256_file(dest) == PAYLOAD_SHA
    _only(tmp_path, "data.bin")
    assert hits["/good.bin"] == 1


def test_checksum_mismatch_raises_and_leaves_nothing(server, tmp_path):
    base, _ = server
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError, match="checksum mismatch") as info:
        fetch([f"{base}/wrong.bin"], PAYLOAD_SHA, dest, **FAST)
    assert f"{base}/wrong.bin" in str(info.value)
    _only(tmp_path)


def test_truncated_download_raises_and_leaves_nothing(server, tmp_path):
    base, _ = server
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError, match="truncated"):
        fetch([f"{base}/truncated.bin"], PAYLOAD_SHA, dest, **FAST)
    _only(tmp_path)


def test_server_down_names_the_source_and_what_to_do(tmp_path):
    url = _closed_port_url()
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError) as info:
        fetch([url], PAYLOAD_SHA, dest, **FAST)
    message = str(info.value)
    assert url in message and "cannot connect" in message
    assert str(dest) in message and "COURSE_DATA_DIR" in message and PAYLOAD_SHA in message
    assert info.value.failures[0][0] == url
    assert isinstance(info.value, RuntimeError)
    _only(tmp_path)


def test_falls_back_to_the_next_source(server, tmp_path):
    base, hits = server
    dest = tmp_path / "data.bin"
    fetch([f"{base}/missing.bin", f"{base}/good.bin"], PAYLOAD_SHA, dest, **{**FAST, "retries": 1})
    assert dest.read_bytes() == PAYLOAD
    assert hits["/missing.bin"] == 2 and hits["/good.bin"] == 1
    _only(tmp_path, "data.bin")


def test_every_source_is_listed_when_all_fail(server, tmp_path):
    base, _ = server
    sources = [f"{base}/error.bin", f"{base}/wrong.bin", _closed_port_url()]
    with pytest.raises(DownloadError) as info:
        fetch(sources, PAYLOAD_SHA, tmp_path / "data.bin", **FAST)
    assert [source for source, _ in info.value.failures] == sources
    assert "HTTP error 500" in str(info.value)
    _only(tmp_path)


def test_retries_are_counted(server, tmp_path):
    base, hits = server
    with pytest.raises(DownloadError, match=r"\(3 tries\)"):
        fetch([f"{base}/error.bin"], PAYLOAD_SHA, tmp_path / "data.bin", **{**FAST, "retries": 2})
    assert hits["/error.bin"] == 3


def test_a_retry_recovers_from_a_passing_error(server, tmp_path):
    base, hits = server
    dest = tmp_path / "data.bin"
    fetch([f"{base}/flaky.bin"], PAYLOAD_SHA, dest, **{**FAST, "retries": 1})
    assert dest.read_bytes() == PAYLOAD and hits["/flaky.bin"] == 2


def test_cached_file_is_not_downloaded_again(server, tmp_path):
    base, hits = server
    dest = tmp_path / "data.bin"
    fetch([f"{base}/good.bin"], PAYLOAD_SHA, dest, **FAST)
    fetch([f"{base}/good.bin"], PAYLOAD_SHA, dest, **FAST)
    assert hits["/good.bin"] == 1


def test_cached_file_with_wrong_checksum_is_reported_and_replaced(server, tmp_path):
    base, hits = server
    dest = tmp_path / "data.bin"
    dest.write_bytes(b"damaged")
    with pytest.warns(UserWarning, match="downloading it again"):
        fetch([f"{base}/good.bin"], PAYLOAD_SHA, dest, **FAST)
    assert dest.read_bytes() == PAYLOAD and hits["/good.bin"] == 1


def test_damaged_cache_is_not_kept_when_every_source_fails(tmp_path):
    dest = tmp_path / "data.bin"
    dest.write_bytes(b"damaged")
    with pytest.warns(UserWarning, match="damaged"), pytest.raises(DownloadError):
        fetch([_closed_port_url()], PAYLOAD_SHA, dest, **FAST)
    _only(tmp_path)


def test_bad_arguments_are_refused(tmp_path):
    wheel = {"kind": "pip-wheel", "requirement": "x==1", "sha256": "0", "members": {"a": "0"}}
    with pytest.raises(ValueError, match="separate calls"):
        fetch(["http://127.0.0.1/x", wheel], PAYLOAD_SHA, tmp_path / "x")
    with pytest.raises(ValueError, match="unknown source kind"):
        fetch([{"kind": "ftp", "url": "x"}], PAYLOAD_SHA, tmp_path / "x")
    with pytest.raises(ValueError, match="sha256"):
        fetch(["http://127.0.0.1/x"], None, tmp_path / "x")


# --------------------------------------------------------------------------------------------
# pip-wheel sources, with a wheel built here (pip "downloads" a local wheel path without a network)

MEMBERS = {"demo_pkg/data/a.txt": b"alpha\n", "demo_pkg/data/b.tsv": b"x\ty\n1\t2\n"}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture()
def wheel(tmp_path) -> Path:
    """A minimal valid wheel holding :data:`MEMBERS`."""
    path = tmp_path / "src" / "demo_pkg-1.0-py3-none-any.whl"
    path.parent.mkdir()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in MEMBERS.items():
            archive.writestr(name, data)
        archive.writestr(
            "demo_pkg-1.0.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\n",
        )
        archive.writestr(
            "demo_pkg-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        archive.writestr("demo_pkg-1.0.dist-info/RECORD", "")
    return path


def _wheel_source(wheel: Path, **changes: object) -> dict[str, object]:
    source: dict[str, object] = {
        "kind": "pip-wheel",
        "requirement": str(wheel),
        "sha256": sha256_file(wheel),
        "members": {name: _sha(data) for name, data in MEMBERS.items()},
    }
    source.update(changes)
    return source


def test_pip_wheel_members_are_extracted_and_cached(wheel, tmp_path):
    out = tmp_path / "cache"
    out.mkdir()
    dest = out / "demo"
    assert fetch([_wheel_source(wheel)], None, dest, **FAST) == dest
    assert (dest / "a.txt").read_bytes() == MEMBERS["demo_pkg/data/a.txt"]
    assert (dest / "b.tsv").read_bytes() == MEMBERS["demo_pkg/data/b.tsv"]
    _only(out, "demo")
    source = _wheel_source(wheel)
    wheel.unlink()  # a second fetch must use the cache, so pip would now fail
    fetch([source], None, dest, **FAST)
    assert (dest / "a.txt").is_file()


def test_pip_wheel_member_checksum_mismatch_leaves_nothing(wheel, tmp_path):
    out = tmp_path / "cache"
    out.mkdir()
    members = {name: _sha(data) for name, data in MEMBERS.items()}
    members["demo_pkg/data/b.tsv"] = _sha(b"something else")
    with pytest.raises(DownloadError, match="checksum mismatch for member demo_pkg/data/b.tsv"):
        fetch([_wheel_source(wheel, members=members)], None, out / "demo", **FAST)
    _only(out)


def test_pip_wheel_checksum_mismatch_and_pip_failure(wheel, tmp_path):
    out = tmp_path / "cache"
    out.mkdir()
    with pytest.raises(DownloadError, match="checksum mismatch for demo_pkg-1.0"):
        fetch([_wheel_source(wheel, sha256=_sha(b"other"))], None, out / "demo", **FAST)
    missing = _wheel_source(wheel, requirement=str(tmp_path / "nope-1.0-py3-none-any.whl"))
    with pytest.raises(DownloadError, match="pip download failed") as info:
        fetch([missing], None, out / "demo", **FAST)
    assert "pip-wheel" in str(info.value) and "pip download --no-deps" in str(info.value)
    _only(out)


def test_pip_wheel_damaged_cache_is_reported_and_replaced(wheel, tmp_path):
    dest = tmp_path / "demo"
    dest.mkdir()
    (dest / "a.txt").write_bytes(b"damaged")
    with pytest.warns(UserWarning, match="incomplete or damaged"):
        fetch([_wheel_source(wheel)], None, dest, **FAST)
    assert (dest / "a.txt").read_bytes() == MEMBERS["demo_pkg/data/a.txt"]
