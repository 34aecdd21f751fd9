"""Domain events from one libvirt connection, dispatched on an asyncio loop (``libvirtaio``).

``EventSource`` opens a connection, turns on libvirt keepalive (so a dead peer is noticed in
seconds, not at the next call), registers a close callback, and subscribes to the events the
watch daemon needs: lifecycle, device added/removed, metadata change and migration progress.
Each libvirt callback becomes a neutral ``VmEvent`` (``model.events``) handed to ``on_event``
on the loop's thread; it does nothing else there (no libvirt call), so a burst of events
never stalls the loop.

The connection doubles as the connector the daemon acts through (``EventSource.connector``):
one connection per host carries events, inventory and quarantine, which is also what makes
the test driver (``test:///``, one private in-memory hypervisor per connection) watchable.

libvirt accepts one event-loop implementation per process: ``use_asyncio_loop(loop)``
registers ``loop`` the first time and refuses another loop afterwards.

Example::

    use_asyncio_loop(asyncio.get_running_loop())
    source = EventSource("qemu:///system", on_event=queue.put_nowait, on_close=print)
    await asyncio.to_thread(source.open)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import libvirt
import libvirtaio

from vmwarden.connectors import locality as known_locality
from vmwarden.connectors.base import register_event_feed
from vmwarden.connectors.libvirt.connection import LibvirtConnector, _quiet_libvirt
from vmwarden.connectors.libvirt.inventory import host_of, message_of
from vmwarden.connectors.libvirt.locality import decide as decide_locality
from vmwarden.connectors.libvirt.schemes import SCHEMES
from vmwarden.errors import ConnectorError, UnreachableError
from vmwarden.model import events as ev
from vmwarden.model.events import VmEvent

log = logging.getLogger(__name__)

LIFECYCLE: dict[int, str] = {
    libvirt.VIR_DOMAIN_EVENT_DEFINED: "defined",
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: "undefined",
    libvirt.VIR_DOMAIN_EVENT_STARTED: "started",
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: "suspended",
    libvirt.VIR_DOMAIN_EVENT_RESUMED: "resumed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED: "stopped",
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: "pmsuspended",
    libvirt.VIR_DOMAIN_EVENT_CRASHED: "crashed",
}
# libvirt's lifecycle word -> the neutral VmEvent kind. ``shutdown`` is the guest *beginning*
# to shut down (a ``stopped`` follows) and ``crashed`` may leave the domain paused: neither
# is a stop by itself.
_KIND: dict[str, str] = {
    "defined": ev.DEFINED,
    "undefined": ev.UNDEFINED,
    "started": ev.STARTED,
    "suspended": ev.SUSPENDED,
    "pmsuspended": ev.SUSPENDED,
    "resumed": ev.RESUMED,
    "stopped": ev.STOPPED,
}
# Lifecycle details that mean a migration (the event is then also a host change).
_MIGRATED = {
    libvirt.VIR_DOMAIN_EVENT_STARTED: libvirt.VIR_DOMAIN_EVENT_STARTED_MIGRATED,
    libvirt.VIR_DOMAIN_EVENT_STOPPED: libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED,
    libvirt.VIR_DOMAIN_EVENT_RESUMED: libvirt.VIR_DOMAIN_EVENT_RESUMED_MIGRATED,
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: libvirt.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED,
}
_CLOSE_REASONS = {
    libvirt.VIR_CONNECT_CLOSE_REASON_ERROR: "error",
    libvirt.VIR_CONNECT_CLOSE_REASON_EOF: "end of file (libvirtd went away)",
    libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE: "keepalive timeout",
    libvirt.VIR_CONNECT_CLOSE_REASON_CLIENT: "closed by client",
}

_impl_lock = threading.Lock()
_impl_loop: asyncio.AbstractEventLoop | None = None


def use_asyncio_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Dispatch libvirt's events on ``loop``; call before opening any ``EventSource``.

    libvirt keeps the first event implementation of a process for good, so a second,
    different loop is refused (run every watcher of a process on one loop).
    """
    global _impl_loop  # noqa: PLW0603 - libvirt's event loop is process-wide, set once
    with _impl_lock:
        if _impl_loop is None:
            _quiet_libvirt()
            libvirtaio.virEventRegisterAsyncIOImpl(loop=loop)
            _impl_loop = loop
        elif _impl_loop is not loop:
            raise ConnectorError(
                "libvirt events are already dispatched on another asyncio loop",
                hint="run every watcher of one process on the same event loop",
            )


class SharedConnector(LibvirtConnector):
    """A ``LibvirtConnector`` over the ``EventSource``'s connection (which it never closes).

    libvirt connections are thread-safe; the daemon's worker threads share this one.
    """

    def __init__(self, uri: str, conn: libvirt.virConnect, host: str) -> None:
        self.uri = uri
        self._conn = conn
        self._host = host
        # as LibvirtConnector.__init__ does: is this daemon on this machine (its disks ours)?
        self.locality = decide_locality(uri, conn)
        known_locality.remember(uri, self.locality.local)

    def close(self) -> None:
        """The owner (``EventSource``) closes the connection, not its users."""
        return None


@register_event_feed(*SCHEMES)
class EventSource:
    """One connection to one URI, with keepalive, a close callback and domain events
    translated into neutral ``VmEvent``s (the ``EventFeed`` of every libvirt scheme)."""

    def __init__(
        self,
        uri: str,
        *,
        on_event: Callable[[VmEvent], None],
        on_close: Callable[[str], None],
        keepalive: tuple[int, int] = (5, 3),
    ) -> None:
        self.uri = uri
        self.on_event = on_event
        self.on_close = on_close
        self.keepalive = keepalive
        self.conn: libvirt.virConnect | None = None
        self.connector: SharedConnector | None = None
        self._callbacks: list[int] = []
        self._closed_reported = False

    @property
    def host(self) -> str | None:
        return None if self.connector is None else self.connector.host

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Dispatch libvirt's events on ``loop`` (``use_asyncio_loop``)."""
        use_asyncio_loop(loop)

    def alive(self) -> bool:
        conn = self.conn
        if conn is None:
            return False
        try:
            return bool(conn.isAlive())
        except libvirt.libvirtError:
            return False

    def open(self) -> SharedConnector:
        """Connect and subscribe (blocking: run it in a thread). Raises ``UnreachableError``."""
        _quiet_libvirt()
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            raise UnreachableError(
                f"cannot connect to {self.uri}: {message_of(exc)}",
                hint="check that libvirtd runs and the URI is right (virsh -c URI list)",
            ) from None
        try:
            host = host_of(self.uri, conn)
            self._keepalive(conn)
            conn.registerCloseCallback(self._closed, None)
            self._subscribe(conn)
        except libvirt.libvirtError as exc:
            _close_quietly(conn)
            raise UnreachableError(
                f"cannot subscribe to events of {self.uri}: {message_of(exc)}"
            ) from None
        self.conn, self._closed_reported = conn, False
        self.connector = SharedConnector(self.uri, conn, host)
        return self.connector

    def _keepalive(self, conn: libvirt.virConnect) -> None:
        try:
            conn.setKeepAlive(*self.keepalive)
        except libvirt.libvirtError as exc:
            # Local drivers (test:///) have no wire to keep alive.
            log.debug("%s: no keepalive: %s", self.uri, message_of(exc))

    def _subscribe(self, conn: libvirt.virConnect) -> None:
        self._callbacks = [
            conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._lc, None
            ),
            conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED, self._dev_added, None
            ),
            conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, self._dev_removed, None
            ),
            conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE, self._metadata, None
            ),
            conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION, self._migration, None
            ),
        ]

    def close(self) -> None:
        """Unsubscribe and close (blocking). Safe on a connection that already died."""
        conn, self.conn, self.connector = self.conn, None, None
        if conn is None:
            return
        for cb in self._callbacks:
            # a dead connection has nothing left to deregister
            with contextlib.suppress(libvirt.libvirtError):
                conn.domainEventDeregisterAny(cb)
        self._callbacks = []
        with contextlib.suppress(libvirt.libvirtError):
            conn.unregisterCloseCallback()
        _close_quietly(conn)

    # --- callbacks: run on the event loop's thread; no libvirt RPC in them ---------------

    def _emit(self, dom: libvirt.virDomain, kind: str, detail: str, migrated: bool = False) -> None:
        try:
            vm_id, name = dom.UUIDString().lower(), dom.name()
        except libvirt.libvirtError as exc:
            log.warning("%s: event %s for an unreadable domain: %s", self.uri, kind, exc)
            return
        self.on_event(VmEvent(self.uri, vm_id, name, kind, detail, migrated, host=self.host))

    def _lc(self, _c: Any, dom: libvirt.virDomain, event: int, detail: int, _o: Any) -> None:
        migrated = _MIGRATED.get(event) == detail
        word = LIFECYCLE.get(event, f"event-{event}")
        self._emit(dom, _KIND.get(word, ev.OTHER), word, migrated)

    def _dev_added(self, _c: Any, dom: libvirt.virDomain, alias: str, _o: Any) -> None:
        self._emit(dom, ev.CONFIG, f"device-added {alias}")

    def _dev_removed(self, _c: Any, dom: libvirt.virDomain, alias: str, _o: Any) -> None:
        self._emit(dom, ev.CONFIG, f"device-removed {alias}")

    def _metadata(self, _c: Any, dom: libvirt.virDomain, _t: int, ns: str | None, _o: Any) -> None:
        self._emit(dom, ev.METADATA, ns or "")

    def _migration(self, _c: Any, dom: libvirt.virDomain, iteration: int, _o: Any) -> None:
        self._emit(dom, ev.MIGRATED, f"iteration {iteration}", migrated=True)

    def _closed(self, _c: Any, reason: int, _o: Any) -> None:
        if self._closed_reported:
            return
        self._closed_reported = True
        self.on_close(_CLOSE_REASONS.get(reason, f"reason {reason}"))


def _close_quietly(conn: libvirt.virConnect) -> None:
    try:
        conn.close()
    except libvirt.libvirtError as exc:
        log.debug("close: %s", message_of(exc))
