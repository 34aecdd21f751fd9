"""The guest's identity: os-release, hostname, machine-id, installed kernels."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from vmwarden.inspect.guest.files import GuestFiles, GuestReadError

OS_RELEASE = ("/etc/os-release", "/usr/lib/os-release")
_BSD = {"freebsd", "openbsd", "netbsd", "dragonfly"}
_MACHINE_ID = re.compile(r"^[0-9a-f]{32}$")
_VMLINUZ = re.compile(r"^(?:vmlinuz|vmlinux|kernel)-(.+)$")


@dataclass(slots=True)
class OsRelease:
    family: str | None
    name: str | None
    version: str | None
    pretty: str | None


def parse_os_release(text: str) -> dict[str, str]:
    """``KEY=value`` lines with shell quoting, as os-release(5) specifies."""
    values: dict[str, str] = {}
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            parts = shlex.split(raw, posix=True)
        except ValueError:
            parts = [raw.strip("\"'")]
        values[key.strip()] = " ".join(parts)
    return values


def read_os_release(files: GuestFiles) -> OsRelease | None:
    """The first os-release found, ``None`` when the guest has none."""
    for path in OS_RELEASE:
        text = files.read_text(path, limit=64 * 1024)
        if text is not None:
            values = parse_os_release(text)
            name = values.get("ID", "linux").lower() or None
            return OsRelease(
                family="bsd" if name in _BSD else "linux",
                name=name,
                version=values.get("VERSION_ID") or None,
                pretty=values.get("PRETTY_NAME") or values.get("NAME") or None,
            )
    return None


def read_hostname(files: GuestFiles) -> str | None:
    """``/etc/hostname`` (first non-comment word), else ``HOSTNAME=`` of sysconfig/network."""
    text = files.read_text("/etc/hostname", limit=4096)
    if text is not None:
        for line in text.splitlines():
            word = line.split("#", 1)[0].strip()
            if word:
                return word
        return None
    text = files.read_text("/etc/sysconfig/network", limit=64 * 1024)
    if text is not None:
        return parse_os_release(text).get("HOSTNAME") or None
    return None


def read_machine_id(files: GuestFiles) -> str | None:
    """``/etc/machine-id``; ``None`` when absent, empty or ``uninitialized`` (a template)."""
    text = files.read_text("/etc/machine-id", limit=4096)
    if text is None:
        return None
    value = text.strip().lower()
    if not value or value == "uninitialized":
        return None
    if not _MACHINE_ID.match(value):
        raise GuestReadError(f"/etc/machine-id: not a machine id: {value[:40]!r}")
    return value


def read_kernels(files: GuestFiles) -> list[str]:
    """Kernel versions installed: ``/boot/vmlinuz-*`` and ``/lib/modules/*``, sorted."""
    found: set[str] = set()
    for name in files.listdir("/boot") or []:
        match = _VMLINUZ.match(name)
        if match:
            found.add(match.group(1))
    for directory in ("/lib/modules", "/usr/lib/modules"):
        for name in files.listdir(directory) or []:
            found.add(name)
    return sorted(found)
