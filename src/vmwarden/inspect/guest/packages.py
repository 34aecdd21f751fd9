"""Installed packages: the dpkg status file, and the rpm database (sqlite) where present."""

from __future__ import annotations

import struct
from collections.abc import Iterator

from vmwarden.inspect.guest.files import GuestFiles, GuestReadError
from vmwarden.model import Package

DPKG_STATUS = "/var/lib/dpkg/status"
RPMDB_SQLITE = ("/var/lib/rpm/rpmdb.sqlite", "/usr/lib/sysimage/rpm/rpmdb.sqlite")
RPMDB_BDB = ("/var/lib/rpm/Packages", "/usr/lib/sysimage/rpm/Packages")
#: dpkg states in which a package's files are on disk and configured (dpkg-query "ii").
_INSTALLED = {"installed", "triggers-awaiting", "triggers-pending"}

# rpm header tags (rpmtag.h)
_TAG_NAME, _TAG_VERSION, _TAG_RELEASE, _TAG_EPOCH = 1000, 1001, 1002, 1003
_TAG_ARCH, _TAG_SOURCERPM = 1022, 1044
_TAGS = {_TAG_NAME, _TAG_VERSION, _TAG_RELEASE, _TAG_EPOCH, _TAG_ARCH, _TAG_SOURCERPM}
_RPM_STRING, _RPM_INT32 = 6, 4
_MAX_RPM_ENTRIES = 100_000


def dpkg_paragraphs(text: str) -> Iterator[dict[str, str]]:
    """deb822 paragraphs: ``Field: value`` with continuation lines, blank-line separated."""
    fields: dict[str, str] = {}
    last: str | None = None
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields, last = {}, None
        elif line[0] in " \t":
            if last is not None:
                fields[last] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            last = key.strip().lower()
            fields[last] = value.strip()
    if fields:
        yield fields


def parse_dpkg_status(text: str) -> list[Package]:
    """Installed packages of a dpkg status file, sorted by name then arch.

    ``source`` is the ``Source:`` field without its version, else the package's own name
    (what ``dpkg-query -f '${source:Package}'`` prints).
    """
    packages: list[Package] = []
    for p in dpkg_paragraphs(text):
        name, version = p.get("package"), p.get("version")
        status = p.get("status", "").split()
        if not name or not version or len(status) != 3 or status[2] not in _INSTALLED:
            continue
        source = p.get("source", "").split(" ", 1)[0] or name
        packages.append(
            Package(name=name, version=version, arch=p.get("architecture"), source=source)
        )
    packages.sort(key=lambda pkg: (pkg.name, pkg.arch or ""))
    return packages


def read_packages(files: GuestFiles) -> list[Package] | None:
    """dpkg and rpm packages together; ``None`` when the guest has neither database."""
    found = False
    packages: list[Package] = []
    text = files.read_text(DPKG_STATUS)
    if text is not None:
        found = True
        packages += parse_dpkg_status(text)
    for path in RPMDB_SQLITE:
        data = files.read_bytes(path, limit=512 * 1024 * 1024)
        if data is not None:
            found = True
            packages += parse_rpmdb_sqlite(data, path)
            break
    else:
        for path in RPMDB_BDB:
            if files.exists(path):
                raise GuestReadError(f"{path}: Berkeley DB rpm databases are not read yet")
    return packages if found else None


def parse_rpmdb_sqlite(data: bytes, path: str) -> list[Package]:
    """Packages of an rpm sqlite database (RHEL 9, Fedora 33+), read in pure Python."""
    import io

    from dissect.database.sqlite3 import SQLite3

    try:
        db = SQLite3(io.BytesIO(data))
        table = db.table("Packages")
        if table is None:
            raise GuestReadError(f"{path}: no Packages table")
        packages = []
        for row in table.rows():
            blob = row["blob"]
            if isinstance(blob, bytes | bytearray):
                pkg = parse_rpm_header(bytes(blob))
                if pkg is not None and pkg.name != "gpg-pubkey":
                    packages.append(pkg)
    except GuestReadError:
        raise
    except Exception as exc:  # a corrupt database in a hostile guest
        raise GuestReadError(f"{path}: {type(exc).__name__}: {exc}") from None
    packages.sort(key=lambda pkg: (pkg.name, pkg.arch or ""))
    return packages


def parse_rpm_header(blob: bytes) -> Package | None:
    """An rpm header blob (as stored in rpmdb, without the magic): index entries + data."""
    if len(blob) < 8:
        return None
    count, size = struct.unpack_from(">II", blob, 0)
    if count > _MAX_RPM_ENTRIES or 8 + 16 * count + size > len(blob):
        return None
    data = 8 + 16 * count
    values: dict[int, str | int] = {}
    for i in range(count):
        tag, kind, offset, _n = struct.unpack_from(">IIiI", blob, 8 + 16 * i)
        if tag not in _TAGS:
            continue
        if offset < 0 or offset >= size:
            continue
        start = data + offset
        if kind == _RPM_STRING:
            end = blob.find(b"\x00", start, data + size)
            if end >= 0:
                values[tag] = blob[start:end].decode("utf-8", "replace")
        elif kind == _RPM_INT32 and start + 4 <= data + size:
            values[tag] = struct.unpack_from(">I", blob, start)[0]
    name, version = values.get(_TAG_NAME), values.get(_TAG_VERSION)
    release = values.get(_TAG_RELEASE)
    if not isinstance(name, str) or not isinstance(version, str):
        return None
    full = f"{version}-{release}" if isinstance(release, str) else version
    epoch = values.get(_TAG_EPOCH)
    if isinstance(epoch, int) and epoch:
        full = f"{epoch}:{full}"
    arch = values.get(_TAG_ARCH)
    source = values.get(_TAG_SOURCERPM)
    return Package(
        name=name,
        version=full,
        arch=arch if isinstance(arch, str) else None,
        source=source if isinstance(source, str) else None,
        manager="rpm",
    )
