"""Enabled services: the units linked into ``*.wants``/``*.requires`` under /etc/systemd/system."""

from __future__ import annotations

import posixpath

from vmwarden.inspect.guest.files import GuestFiles

SYSTEMD_DIRS = ("/etc/systemd/system",)
_UNIT_SUFFIXES = (".service", ".socket", ".timer", ".path", ".mount", ".target")


def read_enabled_services(files: GuestFiles) -> list[str] | None:
    """Unit names enabled by ``systemctl enable`` (the entries of its ``.wants`` dirs), sorted.

    ``None`` when the guest has no /etc/systemd/system (no systemd, or not Linux).
    """
    found: set[str] = set()
    any_dir = False
    for base in SYSTEMD_DIRS:
        names = files.listdir(base)
        if names is None:
            continue
        any_dir = True
        for name in names:
            if not name.endswith((".wants", ".requires")):
                continue
            for unit in files.listdir(posixpath.join(base, name)) or []:
                if unit.endswith(_UNIT_SUFFIXES):
                    found.add(unit)
    return sorted(found) if any_dir else None
