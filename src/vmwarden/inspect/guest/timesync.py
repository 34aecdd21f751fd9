"""Time synchronisation: which of chrony, ntpd and systemd-timesyncd is installed, enabled,
and which servers each is configured with."""

from __future__ import annotations

from typing import Any

from vmwarden.inspect.guest.files import GuestFiles

DAEMONS: dict[str, dict[str, tuple[str, ...]]] = {
    "chrony": {
        "packages": ("chrony",),
        "binaries": ("/usr/sbin/chronyd",),
        "units": ("chrony.service", "chronyd.service"),
    },
    "ntp": {
        "packages": ("ntp", "ntpsec", "openntpd"),
        "binaries": ("/usr/sbin/ntpd",),
        "units": ("ntp.service", "ntpd.service", "ntpsec.service", "openntpd.service"),
    },
    "timesyncd": {
        "packages": ("systemd-timesyncd",),
        "binaries": ("/lib/systemd/systemd-timesyncd", "/usr/lib/systemd/systemd-timesyncd"),
        "units": ("systemd-timesyncd.service",),
    },
}
MAX_SERVERS = 64


def read_time_sync(
    files: GuestFiles, packages: set[str] | None, enabled: set[str] | None
) -> dict[str, Any]:
    """``{"chrony": bool, "ntp": bool, "timesyncd": bool, "installed": [...], "enabled": [...],
    "servers": {daemon: [host, ...]}}``; a daemon's bool is true when installed and enabled.

    ``packages`` and ``enabled`` are the names already read (``None`` when unknown: then
    the binary on disk decides "installed" and "enabled" stays false).
    """
    result: dict[str, Any] = {"installed": [], "enabled": [], "servers": {}}
    for daemon, where in DAEMONS.items():
        installed = bool(packages and packages.intersection(where["packages"])) or any(
            files.exists(b) for b in where["binaries"]
        )
        is_enabled = bool(enabled and enabled.intersection(where["units"]))
        if installed:
            result["installed"].append(daemon)
        if is_enabled:
            result["enabled"].append(daemon)
        result[daemon] = installed and is_enabled
    servers = {
        "chrony": _chrony_servers(files),
        "ntp": _ntp_servers(files),
        "timesyncd": _timesyncd_servers(files),
    }
    result["servers"] = {k: v for k, v in servers.items() if v}
    return result


def _directive_hosts(text: str, keywords: tuple[str, ...]) -> list[str]:
    hosts: list[str] = []
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split()
        if len(parts) >= 2 and parts[0].lower() in keywords:
            hosts.append(parts[1])
    return hosts


def _chrony_servers(files: GuestFiles) -> list[str]:
    paths = ["/etc/chrony/chrony.conf", "/etc/chrony.conf"]
    paths += files.glob("/etc/chrony/conf.d", "*.conf")
    paths += files.glob("/etc/chrony/sources.d", "*.sources")
    return _collect(files, paths, ("server", "pool", "peer"))


def _ntp_servers(files: GuestFiles) -> list[str]:
    paths = ["/etc/ntp.conf", "/etc/ntpsec/ntp.conf", "/etc/openntpd/ntpd.conf"]
    return _collect(files, paths, ("server", "pool", "peer", "servers"))


def _timesyncd_servers(files: GuestFiles) -> list[str]:
    paths = ["/etc/systemd/timesyncd.conf"]
    paths += files.glob("/etc/systemd/timesyncd.conf.d", "*.conf")
    hosts: list[str] = []
    for path in paths:
        text = files.read_text(path, limit=1024 * 1024)
        for line in (text or "").splitlines():
            key, sep, value = line.split("#", 1)[0].partition("=")
            if sep and key.strip() in ("NTP", "FallbackNTP"):
                hosts += value.split()
    return _unique(hosts)


def _collect(files: GuestFiles, paths: list[str], keywords: tuple[str, ...]) -> list[str]:
    hosts: list[str] = []
    for path in paths:
        text = files.read_text(path, limit=1024 * 1024)
        if text:
            hosts += _directive_hosts(text, keywords)
    return _unique(hosts)


def _unique(hosts: list[str]) -> list[str]:
    return list(dict.fromkeys(hosts))[:MAX_SERVERS]
