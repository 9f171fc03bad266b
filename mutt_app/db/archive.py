"""Retention archives: gzip-compressed JSON lines with a manifest beside them.

An archive is ``<stem>.jsonl.gz`` (one JSON object per row) plus ``<stem>.manifest.json``:

- ``rows``: how many lines;
- ``sha256``: SHA-256 of the *uncompressed* JSON lines. Chosen over the compressed bytes because it
  is what can be recomputed from the table (the same rows serialised the same way), so one number
  ties the archive to the data it replaced, whatever gzip level or library wrote the file;
- ``gzip_sha256``: SHA-256 of the file as stored, for a plain ``sha256sum`` integrity check.

Both files are written to a temporary name, flushed to disk and renamed, the manifest last: an archive
whose manifest exists is complete, and a process killed at any moment leaves either nothing, a stray
``.tmp`` file (ignored and removed later), or a complete archive.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from mutt_app.config import VERSION

log = logging.getLogger(__name__)

ARCHIVE_SUFFIX = ".jsonl.gz"
MANIFEST_SUFFIX = ".manifest.json"
TEMP_MARK = ".tmp-"
FORMAT = 1
_CHUNK = 1 << 20


class ArchiveError(RuntimeError):
    """An archive is missing, unreadable, or does not match its manifest or its table."""


@dataclass(frozen=True, slots=True)
class Digest:
    """Row count and SHA-256 of a sequence of JSON lines."""

    rows: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Manifest:
    """The sidecar of one archive file."""

    file: str
    table: str
    source: str
    rows: int
    sha256: str
    gzip_sha256: str
    created_at: str
    mutt_version: str
    format: int = FORMAT
    details: dict[str, Any] | None = None


def _default(value: Any) -> Any:
    # orjson handles datetime, UUID and dict natively; the rest of what a driver may return:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot archive a {type(value).__name__}")


def row_line(row: dict[str, Any]) -> bytes:
    """One row as a JSON line: keys sorted, so a row always serialises to the same bytes."""
    return orjson.dumps(row, default=_default, option=orjson.OPT_SORT_KEYS) + b"\n"


def digest(lines: Iterable[bytes]) -> Digest:
    """Count and hash ``lines`` (the table side of a verification)."""
    sha = hashlib.sha256()
    rows = 0
    for line in lines:
        sha.update(line)
        rows += 1
    return Digest(rows, sha.hexdigest())


def archive_path(directory: Path, stem: str) -> Path:
    return directory / f"{stem}{ARCHIVE_SUFFIX}"


def manifest_path(directory: Path, stem: str) -> Path:
    return directory / f"{stem}{MANIFEST_SUFFIX}"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_name(final: Path) -> Path:
    return final.with_name(f".{final.name}{TEMP_MARK}{os.getpid()}")


def write_archive(
    directory: Path,
    name: Callable[[Digest], str],
    lines: Iterable[bytes],
    *,
    table: str,
    source: str,
    details: dict[str, Any] | None = None,
) -> Manifest:
    """Write ``lines`` as a complete archive in ``directory``; returns its manifest.

    ``name(digest)`` gives the archive's stem once the content is known, so the name can carry the
    content's hash: writing the same rows twice yields the same archive, never a second one.
    """
    directory.mkdir(parents=True, exist_ok=True)
    temp = directory / f".{source}{TEMP_MARK}{os.getpid()}{ARCHIVE_SUFFIX}"
    sha = hashlib.sha256()
    rows = 0
    with open(temp, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as gz:
            for line in lines:
                gz.write(line)
                sha.update(line)
                rows += 1
        raw.flush()
        os.fsync(raw.fileno())
    stem = name(Digest(rows, sha.hexdigest()))
    final = archive_path(directory, stem)
    os.replace(temp, final)
    manifest = Manifest(
        file=final.name,
        table=table,
        source=source,
        rows=rows,
        sha256=sha.hexdigest(),
        gzip_sha256=_file_sha256(final),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        mutt_version=VERSION,
        details=details,
    )
    target = manifest_path(directory, stem)
    temp_manifest = _temp_name(target)
    with open(temp_manifest, "w", encoding="utf-8") as out:
        json.dump(asdict(manifest), out, indent=2, sort_keys=True)
        out.write("\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp_manifest, target)
    _fsync_dir(directory)
    return manifest


def _file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def read_manifest(directory: Path, stem: str) -> Manifest | None:
    """The manifest of archive ``stem``, or None when there is no complete archive by that name."""
    path = manifest_path(directory, stem)
    if not path.exists() or not archive_path(directory, stem).exists():
        return None
    try:
        return Manifest(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as exc:
        raise ArchiveError(f"{path}: unreadable manifest ({exc})") from None


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of an archive file, as dicts (to restore or inspect)."""
    with gzip.open(path, "rb") as gz:
        for line in gz:
            yield orjson.loads(line)


def verify_archive(directory: Path, stem: str, expected: Digest | None = None) -> Manifest:
    """Read archive ``stem`` back and check it against its manifest (and ``expected``, if given).

    Every line must parse as JSON; the file's SHA-256, the uncompressed content's SHA-256 and the line
    count must all match. Raises :class:`ArchiveError` on any difference.
    """
    manifest = read_manifest(directory, stem)
    if manifest is None:
        raise ArchiveError(f"archive {stem} is incomplete or missing")
    path = archive_path(directory, stem)
    if _file_sha256(path) != manifest.gzip_sha256:
        raise ArchiveError(f"{path}: file checksum differs from its manifest")
    sha = hashlib.sha256()
    rows = 0
    try:
        with gzip.open(path, "rb") as gz:
            for line in gz:
                orjson.loads(line)
                sha.update(line)
                rows += 1
    except (OSError, EOFError, orjson.JSONDecodeError) as exc:
        raise ArchiveError(f"{path}: unreadable ({exc})") from None
    found = Digest(rows, sha.hexdigest())
    if found != Digest(manifest.rows, manifest.sha256):
        raise ArchiveError(
            f"{path}: holds {rows} rows / sha256 {found.sha256[:12]}, manifest says "
            f"{manifest.rows} / {manifest.sha256[:12]}"
        )
    if expected is not None and found != expected:
        raise ArchiveError(
            f"{path}: holds {rows} rows / sha256 {found.sha256[:12]}, the table "
            f"{expected.rows} / {expected.sha256[:12]}"
        )
    return manifest


def check_writable(directory: Path) -> None:
    """Create ``directory`` if needed and prove a file can be written there; raises OSError."""
    directory.mkdir(parents=True, exist_ok=True)
    probe = directory / f".probe{TEMP_MARK}{os.getpid()}"
    with open(probe, "wb") as f:
        f.write(b"ok")
        f.flush()
        os.fsync(f.fileno())
    probe.unlink()


def remove_stale_temps(directory: Path) -> int:
    """Delete temporary files a killed run left in ``directory``; returns how many."""
    if not directory.is_dir():
        return 0
    removed = 0
    for path in directory.iterdir():
        if path.name.startswith(".") and TEMP_MARK in path.name:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def ensure_archive(
    directory: Path,
    stem: Callable[[Digest], str],
    expected: Digest,
    lines: Callable[[], Iterable[bytes]],
    *,
    table: str,
    source: str,
    details: dict[str, Any] | None = None,
) -> Manifest:
    """A verified archive of ``lines`` (whose digest is ``expected``): found, or written now."""
    name = stem(expected)
    if read_manifest(directory, name) is not None:
        try:
            return verify_archive(directory, name, expected)
        except ArchiveError as exc:
            log.warning("retention: rewriting archive %s: %s", name, exc)
    written = write_archive(directory, stem, lines(), table=table, source=source, details=details)
    if Digest(written.rows, written.sha256) != expected:
        raise ArchiveError(f"{source} changed while it was archived; nothing removed")
    return verify_archive(directory, name, expected)
