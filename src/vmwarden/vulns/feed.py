"""Reading an OSV feed from disk: a directory of ``.json`` files, a ``.zip``, or one file.

Feeds come from outside and are treated as hostile: every file is size-capped before it is
read, zip members are read into memory only (never extracted, so a ``../`` member name cannot
write anywhere, and such names are refused outright), symlinks and special files are skipped,
and a file that does not decode is a warning naming it, never an exception.
"""

from __future__ import annotations

import json
import os
import stat
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from vmwarden.errors import VmwardenError

MAX_FILE_BYTES = 8 * 1024 * 1024  # the largest real OSV record is well under 1 MiB
MAX_FILES = 2_000_000

Warn = Callable[[str], None]


class VulnFeedError(VmwardenError):
    """The feed itself cannot be read (missing path, not a zip): nothing to match against."""


def read_feed(
    path: Path,
    warn: Warn,
    *,
    max_file_bytes: int = MAX_FILE_BYTES,
    max_files: int = MAX_FILES,
) -> Iterator[tuple[str, Any]]:
    """(source name, decoded record) for every record of the feed at ``path``.

    A file may hold one record, a list of records, or ``{"vulns": [...]}`` (the osv.dev API).
    """
    if not path.exists():
        raise VulnFeedError(
            f"vulnerability feed {path} does not exist",
            hint="give a directory of OSV .json files or a zip such as osv.dev's Debian.zip",
        )
    if path.is_dir():
        blobs = _directory(path, warn, max_file_bytes, max_files)
    elif zipfile.is_zipfile(path):
        blobs = _zip(path, warn, max_file_bytes, max_files)
    else:
        blobs = _single(path, warn, max_file_bytes)
    for source, blob in blobs:
        yield from _decode(source, blob, warn)


def _decode(source: str, blob: bytes, warn: Warn) -> Iterator[tuple[str, Any]]:
    try:
        data = json.loads(blob)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        warn(f"{source}: skipped, not valid JSON: {str(exc)[:200]}")
        return
    if isinstance(data, dict) and isinstance(data.get("vulns"), list) and "id" not in data:
        data = data["vulns"]
    if isinstance(data, list):
        for i, item in enumerate(data):
            yield f"{source}[{i}]", item
    else:
        yield source, data


def _read_capped(fd: int, cap: int) -> bytes | None:
    chunks: list[bytes] = []
    total = 0
    while chunk := os.read(fd, min(1 << 20, cap + 1 - total)):
        chunks.append(chunk)
        total += len(chunk)
        if total > cap:
            return None
    return b"".join(chunks)


def _read_file(path: Path, source: str, warn: Warn, cap: int) -> bytes | None:
    try:
        fd = os.open(
            path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        )
    except OSError as exc:
        warn(f"{source}: skipped, cannot open: {exc.strerror or exc}")
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            warn(f"{source}: skipped, not a regular file")
            return None
        if info.st_size > cap:
            warn(f"{source}: skipped, {info.st_size} bytes is over the {cap}-byte limit")
            return None
        blob = _read_capped(fd, cap)
    except OSError as exc:
        warn(f"{source}: skipped, cannot read: {exc.strerror or exc}")
        return None
    finally:
        os.close(fd)
    if blob is None:
        warn(f"{source}: skipped, grew over the {cap}-byte limit while read")
    return blob


def _single(path: Path, warn: Warn, cap: int) -> Iterator[tuple[str, bytes]]:
    blob = _read_file(path, str(path), warn, cap)
    if blob is not None:
        yield str(path), blob


def _directory(root: Path, warn: Warn, cap: int, max_files: int) -> Iterator[tuple[str, bytes]]:
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):  # does not follow symlinked dirs
        dirnames.sort()
        for name in sorted(filenames):
            if not name.endswith(".json"):
                continue
            path = Path(dirpath, name)
            if path.is_symlink():
                warn(f"{path}: skipped, a symlink (feeds are read without following links)")
                continue
            count += 1
            if count > max_files:
                warn(f"{root}: stopped after {max_files} files (max_files)")
                return
            blob = _read_file(path, str(path), warn, cap)
            if blob is not None:
                yield str(path), blob


def _unsafe_member(name: str) -> str | None:
    """Why a zip member name is refused, or None. Nothing is extracted, but a feed carrying
    ``../`` or absolute names was not made by osv.dev and is not trusted."""
    if "\\" in name or "\x00" in name:
        return "a backslash or NUL in its name"
    pure = PurePosixPath(name)
    if pure.is_absolute() or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if ".." in pure.parts:
        return "a '..' component (zip-slip)"
    return None


def _zip(path: Path, warn: Warn, cap: int, max_files: int) -> Iterator[tuple[str, bytes]]:
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise VulnFeedError(f"{path}: not a readable zip: {exc}") from None
    with archive:
        count = 0
        for info in archive.infolist():
            source = f"{path}:{info.filename}"
            if info.is_dir() or not info.filename.endswith(".json"):
                continue
            why = _unsafe_member(info.filename)
            if why:
                warn(f"{source}: skipped member with {why}")
                continue
            count += 1
            if count > max_files:
                warn(f"{path}: stopped after {max_files} members (max_files)")
                return
            if info.file_size > cap:
                warn(f"{source}: skipped, {info.file_size} bytes is over the {cap}-byte limit")
                continue
            try:
                with archive.open(info) as member:
                    blob = member.read(cap + 1)  # the header's size may lie: read one past it
            except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError,
                    EOFError, RuntimeError) as exc:  # fmt: skip
                warn(f"{source}: skipped, cannot decompress: {exc}")
                continue
            if len(blob) > cap:
                warn(f"{source}: skipped, over the {cap}-byte limit when decompressed")
                continue
            yield source, blob
