"""Is a libvirt daemon running on this machine? Asked of the daemon, not of the URI.

Why: a domain's disk paths are paths on the daemon's host. Reading them here is right only
when that host is this machine, and the URI cannot tell: ``qemu+tcp://localhost:16509`` is a
common SSH tunnel to another host, and a unix socket can be forwarded as well. Reading the
local file of the same name would judge a remote VM by a local image (a rogue on host B
cleared by a clean image on host A).

The daemon says which host it is: the ``<host><uuid>`` of its capabilities (libvirt's host
UUID: ``host_uuid`` from its configuration, else SMBIOS, else ``/etc/machine-id`` when so
configured, else random per daemon start) and its hostname. This machine's identities are its
DMI ``product_uuid`` (when readable), ``/etc/machine-id``, and what the local system daemon
reports over the unix socket in this machine's filesystem (``qemu:///system``, read-only):
the only way to know the UUID of a daemon that made a random one. A connection is local when
its host UUID is one of those *and* its hostname is this machine's; anything else, including
a daemon that will not say, is remote (its disks unknown, never read from here).

The test driver (``test:///…``) is local by definition: its "hypervisor" is a file here.
Served by a daemon (``test+unix:///…``, ``test+tcp://…``) it reports no host UUID, so the
daemon at the other end of the same transport is asked (``qemu+unix:///system`` with the same
socket, host and parameters): the file, and the paths in it, are that daemon's host's.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import libvirt
from lxml import etree

log = logging.getLogger(__name__)

LOCAL_DAEMON_URI = "qemu:///system"
_DMI_FILES = ("/sys/class/dmi/id/product_uuid", "/sys/devices/virtual/dmi/id/product_uuid")
_MACHINE_ID = "/etc/machine-id"


@dataclass(frozen=True, slots=True)
class Locality:
    """What a connection's daemon is: ``local`` (its files are this machine's files), its
    host UUID and hostname as it reported them, and ``key``: equal for two URIs that reach
    the same daemon (so a sweep counts its VMs once)."""

    local: bool
    uuid: str | None
    hostname: str | None
    key: str
    reason: str


def _norm_uuid(text: str | None) -> str | None:
    if not text:
        return None
    try:
        return str(uuidlib.UUID(text.strip()))
    except ValueError:
        return None


def host_uuid(conn: libvirt.virConnect) -> str | None:
    """The ``<host><uuid>`` of the daemon's capabilities (None when it will not say)."""
    try:
        root = etree.fromstring(
            conn.getCapabilities().encode(), etree.XMLParser(resolve_entities=False)
        )
    except (libvirt.libvirtError, etree.XMLSyntaxError, ValueError) as exc:
        log.debug("capabilities unavailable: %s", exc)
        return None
    return _norm_uuid(root.findtext("host/uuid"))


def machine_uuids() -> set[str]:
    """This machine's own identities: DMI product_uuid and machine-id (each when readable)."""
    found: set[str] = set()
    for name in (*_DMI_FILES, _MACHINE_ID):
        try:
            text = Path(name).read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        uid = _norm_uuid(text)
        if uid is not None and len(set(uid.replace("-", ""))) > 1:  # all-zero/ff is no id
            found.add(uid)
    return found


class _LocalDaemon:
    """The local system daemon's (host UUID, hostname), asked once and again on a miss (its
    UUID may be random per start, so a restart changes it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: tuple[str | None, str | None] | None = None

    def identity(self, *, refresh: bool = False) -> tuple[str | None, str | None]:
        with self._lock:
            if self._seen is None or refresh:
                self._seen = self._ask()
            return self._seen

    @staticmethod
    def _ask() -> tuple[str | None, str | None]:
        return _ask(LOCAL_DAEMON_URI)


def _ask(uri: str) -> tuple[str | None, str | None]:
    """(host UUID, hostname) of the daemon at ``uri``, read-only; (None, None) if it will not
    answer."""
    try:
        conn = libvirt.openReadOnly(uri)
    except libvirt.libvirtError as exc:
        log.debug("daemon %s not reachable: %s", uri, exc)
        return (None, None)
    try:
        return host_uuid(conn), _hostname(conn)
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


def _sibling(uri: str) -> str | None:
    """For a daemon-served test driver (``test+unix:///f.xml?socket=S``), the daemon's own
    URI over the same transport (``qemu+unix:///system?socket=S``); else None."""
    parsed = urlparse(uri)
    driver, plus, transport = parsed.scheme.partition("+")
    if driver != "test" or not plus or not transport:
        return None
    return urlunparse((f"qemu+{transport}", parsed.netloc, "/system", "", parsed.query, ""))


_local_daemon = _LocalDaemon()


def _hostname(conn: libvirt.virConnect) -> str | None:
    try:
        return conn.getHostname() or None
    except libvirt.libvirtError:
        return None


def _short(name: str | None) -> str:
    return (name or "").split(".", 1)[0].strip().lower()


def _same_name(theirs: str | None, ours: set[str | None]) -> bool:
    return bool(_short(theirs)) and _short(theirs) in {_short(n) for n in ours if n}


def decide(uri: str, conn: libvirt.virConnect) -> Locality:
    """Where the daemon behind ``conn`` (opened from ``uri``) runs, and its identity key."""
    parsed = urlparse(uri)
    if parsed.scheme == "test":
        return Locality(True, None, None, uri, "libvirt test driver (a file on this machine)")
    uid, name = host_uuid(conn), _hostname(conn)
    key = _key(uri, conn, uid)
    sibling = _sibling(uri)
    if uid is None and sibling is not None:  # a daemon's test driver: ask the daemon itself
        uid, name = _ask(sibling)
    if uid is None:
        return Locality(False, None, name, key, "the daemon reports no host UUID")
    mine = machine_uuids()
    names: set[str | None] = {socket.gethostname()}
    daemon_uid, daemon_name = _local_daemon.identity()
    if uid not in mine and uid != daemon_uid:
        daemon_uid, daemon_name = _local_daemon.identity(refresh=True)
    names.add(daemon_name)
    if uid not in mine and uid != daemon_uid:
        return Locality(False, uid, name, key, f"host UUID {uid} is not this machine's")
    if not _same_name(name, names):
        return Locality(False, uid, name, key, f"hostname {name!r} is not this machine's")
    return Locality(True, uid, name, key, "host UUID and hostname are this machine's")


def _key(uri: str, conn: libvirt.virConnect, uid: str | None) -> str:
    """One key per daemon: host UUID + driver + ``/system``. Anything else (a session
    daemon, one per user; a daemon without UUID) is keyed by its URI, never merged."""
    path = urlparse(uri).path.rstrip("/")
    if uid is None or path != "/system":
        return uri
    try:
        driver = conn.getType().lower()
    except libvirt.libvirtError:
        return uri
    return f"{uid}/{driver}{path}"
