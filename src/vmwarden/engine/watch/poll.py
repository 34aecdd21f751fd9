"""The event feed of a platform without push events: poll its inventory, diff, emit ``VmEvent``s.

A connector that can subscribe to its platform's events registers an ``EventFeed``
(libvirt does). One that cannot (EC2 without an EventBridge queue, a vCenter too old for event
collectors) is still watchable: ``PollFeed`` reads the connector's inventory every
``interval`` seconds on a thread of its own and turns each difference into the neutral events
the daemon consumes — a VM new since the last poll is ``defined`` (and ``started`` when it
runs), a VM gone is ``undefined``, a power change is ``started``/``stopped``/``suspended``/
``resumed``, a metadata change ``metadata``, a NIC or disk change ``config``, a host change
``migrated``. Events are handed to the loop's thread (``call_soon_threadsafe``), as a push
feed's are. The bound on noticing a start is therefore ``interval`` plus one inventory.

A failed poll (host unreachable) reports the connection lost (``on_close``): ``HostWatch``
reconnects with backoff and reconciles, as for a push feed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

from vmwarden.connectors.base import Connector, open_connector
from vmwarden.connectors.feed_thread import ThreadedFeed
from vmwarden.model import VM, State
from vmwarden.model import events as ev
from vmwarden.model.events import VmEvent

log = logging.getLogger(__name__)

POLL_EVERY = 5.0  # seconds between inventories of a platform without events
_LIVE = (State.RUNNING, State.PAUSED, State.BLOCKED, State.PMSUSPENDED)
_RUNNING = (State.RUNNING, State.BLOCKED)


class Seen:
    """What one poll saw of one VM, as far as events are concerned."""

    __slots__ = ("config", "host", "meta", "name", "state")

    def __init__(self, vm: VM) -> None:
        self.name, self.state, self.host = vm.name, vm.state, vm.host
        self.meta = repr(vm.meta)
        self.config = repr(
            (
                sorted((n.mac or "", n.type, n.network, n.bridge, n.link) for n in vm.nics),
                sorted(d.target or "" for d in vm.disks),
            )
        )


def diff(uri: str, old: dict[str, Seen], new: dict[str, Seen]) -> list[VmEvent]:
    """The events that turn poll ``old`` into poll ``new`` (VM id → ``Seen``)."""
    out: list[VmEvent] = []

    def emit(vm_id: str, seen: Seen, kind: str, detail: str, migrated: bool = False) -> None:
        out.append(
            VmEvent(uri, vm_id, seen.name, kind, f"poll: {detail}", migrated, host=seen.host)
        )

    for vm_id, now in new.items():
        was = old.get(vm_id)
        if was is None:
            emit(vm_id, now, ev.DEFINED, "new")
            if now.state in _LIVE:
                emit(vm_id, now, ev.STARTED, str(now.state))
            continue
        if was.host != now.host:
            emit(vm_id, now, ev.MIGRATED, f"{was.host} -> {now.host}", migrated=True)
        if was.state != now.state:
            emit(vm_id, now, _power_kind(was.state, now.state), f"{was.state} -> {now.state}")
        if was.meta != now.meta:
            emit(vm_id, now, ev.METADATA, "metadata changed")
        if was.config != now.config:
            emit(vm_id, now, ev.CONFIG, "NICs or disks changed")
    for vm_id, was in old.items():
        if vm_id not in new:
            emit(vm_id, was, ev.UNDEFINED, "gone")
    return out


def _power_kind(was: State, now: State) -> str:
    if was not in _LIVE and now in _LIVE:
        return ev.STARTED
    if was in _LIVE and now not in _LIVE:
        return ev.STOPPED
    if now == State.PAUSED:
        return ev.SUSPENDED
    if was == State.PAUSED and now in _RUNNING:
        return ev.RESUMED
    return ev.OTHER


class PollFeed(ThreadedFeed[Connector]):
    """An ``EventFeed`` over any connector's inventory (see the module docstring)."""

    thread_name = "poll"
    failure = "poll failed"

    def __init__(
        self,
        uri: str,
        *,
        on_event: Callable[[VmEvent], None],
        on_close: Callable[[str], None],
        interval: float = POLL_EVERY,
        opener: Callable[[str], Connector] = open_connector,
    ) -> None:
        super().__init__(uri, on_event=on_event, on_close=on_close, join_timeout=interval + 30)
        self.interval = interval
        self._opener = opener

    def _connect(self) -> Connector:
        return self._opener(self.uri)

    def _subscribe(self, conn: Connector, stop: threading.Event) -> Iterator[VmEvent]:
        """The first inventory (blocking, in ``open``); later polls run on the thread."""
        return self._read(conn, self._poll(conn), stop)

    @staticmethod
    def _poll(conn: Connector) -> dict[str, Seen]:
        return {vm.id: Seen(vm) for vm in conn.inventory().vms}

    def _read(
        self, conn: Connector, last: dict[str, Seen], stop: threading.Event
    ) -> Iterator[VmEvent]:
        while not stop.wait(self.interval):
            now = self._poll(conn)
            yield from diff(self.uri, last, now)
            last = now
