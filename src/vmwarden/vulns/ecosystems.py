"""Which OSV ecosystems apply to a guest, and how each compares versions (univers).

OSV names a distribution release in the ecosystem (``Debian:12``, ``Ubuntu:22.04:LTS``,
``AlmaLinux:9``, ``Rocky Linux:9``, ``Alpine:v3.18``, ``Red Hat:enterprise_linux:9::appstream``).
vmwarden reduces each to a *family* and an optional *release*; a guest gets the advisories of
its family (from ``os_name``) for its release (from ``os_version``) plus the family's
release-less ones. Versions compare with univers' Debian (dpkg), RPM and Alpine (apk) rules.
"""

from __future__ import annotations

import re
from functools import lru_cache

from univers.versions import (
    AlpineLinuxVersion,
    DebianVersion,
    InvalidVersion,
    RpmVersion,
    SemverVersion,
    Version,
)

from vmwarden.model import GuestFacts

EcosystemKey = tuple[str, str | None]  # (family, release or None)

# OSV ecosystem base name (lower-case) → family.
_ECOSYSTEM_FAMILY = {
    "debian": "debian",
    "ubuntu": "ubuntu",
    "red hat": "rhel",
    "almalinux": "almalinux",
    "rocky linux": "rocky",
    "alpine": "alpine",
}
# os-release ID (GuestFacts.os_name, lower-case) → family.
_OS_FAMILY = {
    "debian": "debian",
    "ubuntu": "ubuntu",
    "rhel": "rhel",
    "redhat": "rhel",
    "red hat enterprise linux": "rhel",
    "almalinux": "almalinux",
    "rocky": "rocky",
    "rocky linux": "rocky",
    "alpine": "alpine",
}
FAMILY_VERSIONS: dict[str, type[Version]] = {
    "debian": DebianVersion,
    "ubuntu": DebianVersion,
    "rhel": RpmVersion,
    "almalinux": RpmVersion,
    "rocky": RpmVersion,
    "alpine": AlpineLinuxVersion,
}
#: Package manager (``Package.manager``) → univers version class.
MANAGER_VERSIONS: dict[str, type[Version]] = {
    "dpkg": DebianVersion,
    "rpm": RpmVersion,
    "apk": AlpineLinuxVersion,
}
#: Families whose OSV records name *source* packages (Alpine: the apk "origin").
SOURCE_NAMED = frozenset({"debian", "ubuntu", "alpine"})

_RELEASE = re.compile(r"^v?(\d+(?:\.\d+)*)$")


def parse_ecosystem(ecosystem: str) -> EcosystemKey | None:
    """``Debian:12`` → ``("debian", "12")``; None for ecosystems vmwarden does not match."""
    base, _, rest = ecosystem.partition(":")
    family = _ECOSYSTEM_FAMILY.get(base.strip().lower())
    if family is None:
        return None
    for part in rest.split(":"):
        found = _RELEASE.match(part.strip())
        if found:
            return family, found.group(1)
        if family == "rhel" and (tail := re.search(r"(\d+)$", part.strip())):
            return family, tail.group(1)  # enterprise_linux_9 style
    return family, None


def guest_ecosystems(facts: GuestFacts) -> list[EcosystemKey]:
    """The ecosystem keys whose advisories apply to the guest; empty when its OS is unknown
    or not one vmwarden matches. ``12.5`` matches ``12.5``, ``12`` and release-less records."""
    family = _OS_FAMILY.get((facts.os_name or "").strip().lower())
    if family is None:
        return []
    keys: list[EcosystemKey] = [(family, None)]
    version = (facts.os_version or "").strip().lstrip("v")
    if _RELEASE.match(version):
        parts = version.split(".")
        for n in range(len(parts), 0, -1):
            key = (family, ".".join(parts[:n]))
            if key not in keys:
                keys.append(key)
    return keys


@lru_cache(maxsize=1 << 16)
def parse_version(cls: type[Version], text: str) -> Version | None:
    """``text`` as a univers version of ``cls``, None when it is not one (cached: fleets of
    clones repeat the same few versions, and univers parsing costs microseconds)."""
    try:
        return cls(text)
    except (InvalidVersion, ValueError, TypeError):
        return None


def range_version_class(range_type: str, family: str) -> type[Version] | None:
    """Version class of an OSV range: the family's for ECOSYSTEM, semver for SEMVER."""
    if range_type == "ECOSYSTEM":
        return FAMILY_VERSIONS[family]
    if range_type == "SEMVER":
        return SemverVersion
    return None  # GIT ranges name commits, not installed versions
