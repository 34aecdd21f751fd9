"""vCenter events for ``watch``: an EventHistoryCollector watched through a PropertyCollector.

``VsphereEventFeed`` (the ``EventFeed`` of ``vsphere://``) logs in twice: one session is the
connector the daemon acts through, the other waits. The waiting session creates an
EventHistoryCollector filtered to the VM events ``watch`` needs (``EVENT_TYPES``) and a
PropertyCollector of its own with one filter on the collector's ``latestPage``; a thread
loops on ``WaitForUpdatesEx`` (``maxWaitSeconds`` = ``wait``) and turns every page update into
neutral ``VmEvent``s, handed to the asyncio loop's thread (``call_soon_threadsafe``).

A page is the collector's newest events, newest first (vcsim and vCenter alike), and a page
update repeats events already seen: events are taken in key order and only keys above the
highest key delivered so far pass (vCenter's event keys only grow). A page that is full and
holds no key already seen may have dropped events in between: that is reported as a lost
connection, so ``HostWatch`` reconnects and reconciles instead of trusting a gap.

Event → ``VmEvent`` kind: powered on/off, suspended → started/stopped/suspended; created,
registered, cloned, deployed → defined (clone and deploy carry the source in ``made_from``:
provenance); removed → undefined; reconfigured → config; migrated/relocated → migrated;
``CustomFieldValueChangedEvent`` on a VM → metadata.

What vcsim 0.24 really emits (simulator/virtual_machine.go, folder.go, event_manager.go):
powered on/off, suspended, created (also for each clone, before ``VmClonedEvent``), cloned
(``sourceVm``), removed (unregister and destroy), reconfigured. It emits no deployed,
registered (``RegisterVM`` posts a created), migrated or relocated event, and ``SetField``
neither posts ``CustomFieldValueChangedEvent`` nor notifies a property change of
``customValue``. So the feed also re-reads every VM's ``customValue`` each ``metadata_every``
seconds (60 by default) through a container view (one retrieval, not a call per VM) and
reports a change as ``metadata``: on vCenter the event comes first, on vcsim the re-read
bounds it (and the daemon's periodic reconcile judges the VM anyway).

A lost session (vCenter restarted, the session terminated, a wait that fails) ends the thread
and calls ``on_close(why)`` once; ``HostWatch`` closes the feed, opens it again (a new
collector: collectors belong to a session) and reconciles.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from vmwarden.connectors.base import register_event_feed
from vmwarden.connectors.feed_thread import ThreadedFeed
from vmwarden.connectors.vsphere import session
from vmwarden.connectors.vsphere.collect import container
from vmwarden.connectors.vsphere.connection import VsphereConnector
from vmwarden.connectors.vsphere.uri import parse_vsphere_uri
from vmwarden.errors import ConnectorError, UnreachableError, VmwardenError
from vmwarden.model import events as ev
from vmwarden.model.events import VmEvent

log = logging.getLogger(__name__)

#: vCenter event type → the neutral kind (``migrated`` kinds also set ``VmEvent.migrated``).
EVENT_KINDS: dict[str, str] = {
    "VmPoweredOnEvent": ev.STARTED,
    "VmPoweredOffEvent": ev.STOPPED,
    "VmSuspendedEvent": ev.SUSPENDED,
    "VmCreatedEvent": ev.DEFINED,
    "VmClonedEvent": ev.DEFINED,
    "VmDeployedEvent": ev.DEFINED,
    "VmRegisteredEvent": ev.DEFINED,
    "VmRemovedEvent": ev.UNDEFINED,
    "VmReconfiguredEvent": ev.CONFIG,
    "VmMigratedEvent": ev.MIGRATED,
    "VmRelocatedEvent": ev.MIGRATED,
    "CustomFieldValueChangedEvent": ev.METADATA,
}
EVENT_TYPES = tuple(EVENT_KINDS)
PAGE = 200  # events per collector page (the whole page travels with each update)
WAIT = 2.0  # seconds a WaitForUpdatesEx may block: how soon a stop or a dead session is seen
# seconds between customValue re-reads (vcsim posts no event for them); one re-read of
# 2,000 VMs costs ~0.9 s of client and server time, so an idle feed spends ~1.5% of a core
METADATA_EVERY = 60.0
_VIEW_PROPS = ["name", "config.instanceUuid", "customValue"]


def kind_of(event: Any) -> str:
    """The vCenter event's type name (``vim.event.VmPoweredOnEvent`` → ``VmPoweredOnEvent``)."""
    return type(event).__name__.rsplit(".", 1)[-1]


def made_from(event: Any) -> str | None:
    """Provenance: the template a ``VmDeployedEvent`` deployed, the VM or template a
    ``VmClonedEvent`` cloned (None for any other event)."""
    for attr in ("srcTemplate", "sourceVm"):
        arg = getattr(event, attr, None)
        if arg is not None and getattr(arg, "name", None):
            return str(arg.name)
    return None


def vm_ref_of(event: Any) -> tuple[str, str] | None:
    """(VM moId, name) the event is about, or None (an attribute of a host, a datastore)."""
    arg = getattr(event, "vm", None)
    if arg is not None and getattr(arg, "vm", None) is not None:
        return arg.vm._moId, str(arg.name or arg.vm._moId)
    entity = getattr(event, "entity", None)  # CustomFieldValueChangedEvent
    ref = getattr(entity, "entity", None)
    if ref is not None and type(ref).__name__.endswith("VirtualMachine"):
        return ref._moId, str(entity.name or ref._moId)
    return None


def new_events(page: Iterable[Any], last_key: int) -> list[Any]:
    """Events of a page not delivered yet (key above ``last_key``), oldest first, once each."""
    fresh: dict[int, Any] = {}
    for event in page or []:
        key = int(event.key)
        if key > last_key:
            fresh.setdefault(key, event)
    return [fresh[k] for k in sorted(fresh)]


@register_event_feed("vsphere")
class VsphereEventFeed(ThreadedFeed[VsphereConnector]):
    """Events of one vCenter (or one datacenter of it), see the module docstring."""

    thread_name = "events"
    failure = "vSphere event wait failed"

    def __init__(
        self,
        uri: str,
        *,
        on_event: Callable[[VmEvent], None],
        on_close: Callable[[str], None],
        keepalive: tuple[int, int] = (5, 3),
        wait: float = WAIT,
        metadata_every: float = METADATA_EVERY,
    ) -> None:
        # a vCenter that stops answering is given keepalive interval x count past the wait
        timeout = wait + max(1, keepalive[0]) * max(1, keepalive[1])
        super().__init__(uri, on_event=on_event, on_close=on_close, join_timeout=timeout + 5)
        self.wait = wait
        self.metadata_every = metadata_every
        self.timeout = timeout
        self._watch: _Subscription | None = None

    def _connect(self) -> VsphereConnector:
        return VsphereConnector(self.uri)

    def _subscribe(self, conn: VsphereConnector, stop: threading.Event) -> Iterator[VmEvent]:
        """Log in a second time (the waiting session) and subscribe to its events."""
        conn.observe_context()  # the first power-on's read then costs one VM's properties
        self._watch = sub = _Subscription.open(self.uri, self.timeout)
        return self._read(sub, stop)

    def _interrupt(self) -> None:
        if self._watch is not None:
            self._watch.cancel()

    def _release(self) -> None:
        """Drop the collector and log the waiting session out. Safe on a dead session."""
        sub, self._watch = self._watch, None
        if sub is not None:
            sub.close()

    def _describe(self, exc: Exception) -> str:
        return _describe(exc)

    def _read(self, sub: _Subscription, stop: threading.Event) -> Iterator[VmEvent]:
        next_poll = 0.0
        while not stop.is_set():
            yield from sub.wait(self.wait)
            if stop.is_set():
                return
            now = time.monotonic()
            if now >= next_poll:
                yield from sub.poll_metadata()
                next_poll = now + self.metadata_every


class _Subscription:
    """The waiting session: collector, property collector and filter, VM view, the key
    high-water mark and what is known of each VM (moId → instanceUuid, customValue)."""

    def __init__(self, uri: str, si: Any, dc: Any) -> None:
        from pyVmomi import vim, vmodl

        self.uri = uri
        self.si = si
        content = si.content
        spec = vim.event.EventFilterSpec(
            eventTypeId=list(EVENT_TYPES),
            entity=vim.event.EventFilterSpec.ByEntity(entity=dc, recursion="all"),
            maxCount=PAGE,
        )
        self.collector = content.eventManager.CreateCollectorForEvents(filter=spec)
        self.pc = content.propertyCollector.CreatePropertyCollector()
        pcs = vmodl.query.PropertyCollector
        self.filter = self.pc.CreateFilter(
            pcs.FilterSpec(
                objectSet=[pcs.ObjectSpec(obj=self.collector, skip=False)],
                propSet=[pcs.PropertySpec(type=type(self.collector), pathSet=["latestPage"])],
            ),
            partialUpdates=False,
        )
        self.view = content.viewManager.CreateContainerView(dc, [vim.VirtualMachine], True)
        self.version = ""
        self.last_key = -1
        self.ids: dict[str, str] = {}  # VM moId → instanceUuid (the VM's id in vmwarden)
        self.meta: dict[str, str] = {}  # VM moId → its custom values, as compared text
        self.hosts: dict[str, str] = {}  # VM moId → its ESXi host as the last event named it

    @classmethod
    def open(cls, uri: str, timeout: float) -> _Subscription:
        target = parse_vsphere_uri(uri)
        si = session.connect(target, timeout=timeout)
        try:
            sub = cls(uri, si, container(si, target.datacenter))
            sub.wait(0)  # the page as it is now: history, not news
            sub.poll_metadata()  # the baseline of custom attributes, and every VM's id
        except VmwardenError:
            session.disconnect(si)
            raise
        except Exception as exc:  # a fault while subscribing: the host is not watchable now
            session.disconnect(si)
            raise UnreachableError(
                f"cannot subscribe to vSphere events of {target.host}: {_describe(exc)}"
            ) from None
        return sub

    def wait(self, seconds: float) -> list[VmEvent]:
        """One ``WaitForUpdatesEx``: the events new since the last (none on a timeout)."""
        from pyVmomi import vmodl

        options = vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=int(seconds))
        first = self.version == ""
        result = self.pc.WaitForUpdatesEx(version=self.version, options=options)
        if result is None:
            return []
        self.version = result.version
        page: list[Any] = []
        for fu in result.filterSet or []:
            for ou in fu.objectSet or []:
                for change in ou.changeSet or []:
                    if change.name == "latestPage":
                        page = list(change.val or [])
        fresh = new_events(page, self.last_key)
        if fresh:
            self.last_key = int(fresh[-1].key)
        if first:
            return []  # the page as found at subscription: the reconcile covers it
        if len(page) >= PAGE and len(fresh) == len(page):
            raise ConnectorError(f"more than {PAGE} vSphere events at once: some may be missed")
        return [e for e in (self._to_event(x) for x in fresh) if e is not None]

    def _to_event(self, event: Any) -> VmEvent | None:
        name = kind_of(event)
        kind = EVENT_KINDS.get(name)
        ref = vm_ref_of(event)
        if kind is None or ref is None:
            return None
        moid, vm_name = ref
        host_arg = getattr(event, "host", None)
        if host_arg is not None and getattr(host_arg, "name", None):
            self.hosts[moid] = str(host_arg.name)
        vm_id = self.ids.get(moid) or self._resolve(moid) or moid
        if kind == ev.UNDEFINED:
            self.ids.pop(moid, None)
            self.meta.pop(moid, None)
        return VmEvent(
            self.uri,
            vm_id,
            vm_name,
            kind,
            name,
            migrated=kind == ev.MIGRATED,
            host=self.hosts.get(moid),
            made_from=made_from(event) if kind == ev.DEFINED else None,
        )

    def _resolve(self, moid: str) -> str | None:
        """A VM not known yet (created since the last read): its instanceUuid, or None when
        it is gone already (the event then names it by moId; the daemon reconciles)."""
        from pyVmomi import vim, vmodl

        pcs = vmodl.query.PropertyCollector
        spec = pcs.FilterSpec(
            objectSet=[pcs.ObjectSpec(obj=vim.VirtualMachine(moid, self.si._stub), skip=False)],
            propSet=[pcs.PropertySpec(type=vim.VirtualMachine, pathSet=["config.instanceUuid"])],
        )
        try:  # that one property, not the whole ``config`` (every device) pyvmomi would fetch
            found = self.pc.RetrieveContents([spec])
            uuid = next((p.val for o in found or [] for p in o.propSet), None)
        except Exception as exc:  # gone, or not readable: named by moId
            log.debug("%s: VM %s unreadable: %s", self.uri, moid, exc)
            return None
        if uuid:
            self.ids[moid] = str(uuid)
        return uuid or None

    def poll_metadata(self) -> list[VmEvent]:
        """Every VM's custom values through the view, in one retrieval; a VM whose values
        differ from the last read is a ``metadata`` event (see the module docstring)."""
        from pyVmomi import vim, vmodl

        pcs = vmodl.query.PropertyCollector
        spec = pcs.FilterSpec(
            objectSet=[
                pcs.ObjectSpec(
                    obj=self.view,
                    skip=True,
                    selectSet=[
                        pcs.TraversalSpec(name="v", path="view", skip=False, type=type(self.view))
                    ],
                )
            ],
            propSet=[pcs.PropertySpec(type=vim.VirtualMachine, pathSet=_VIEW_PROPS)],
        )
        out: list[VmEvent] = []
        seen: dict[str, str] = {}
        options = pcs.RetrieveOptions(maxObjects=500)
        result = self.pc.RetrievePropertiesEx(specSet=[spec], options=options)
        while result is not None:
            for obj in result.objects or []:
                moid = obj.obj._moId
                props = {p.name: p.val for p in obj.propSet}
                if props.get("config.instanceUuid"):
                    self.ids[moid] = str(props["config.instanceUuid"])
                # a later value of one key replaces an earlier one (vcsim appends on SetField)
                values = props.get("customValue") or []
                last = {int(v.key): str(getattr(v, "value", "")) for v in values}
                seen[moid] = repr(sorted(last.items()))
                old = self.meta.get(moid)
                if old is not None and old != seen[moid]:
                    out.append(
                        VmEvent(
                            self.uri,
                            self.ids.get(moid, moid),
                            str(props.get("name") or moid),
                            ev.METADATA,
                            "customValue changed (poll)",
                            host=self.hosts.get(moid),
                        )
                    )
            if not result.token:
                break
            result = self.pc.ContinueRetrievePropertiesEx(token=result.token)
        self.meta = seen
        return out

    def cancel(self) -> None:
        """Wake a blocked wait (from another thread); a dead session has nothing to wake."""
        with contextlib.suppress(Exception):
            self.pc.CancelWaitForUpdates()

    def close(self) -> None:
        steps = (self.filter.DestroyPropertyFilter, self.view.DestroyView)
        for step in (*steps, self.collector.DestroyCollector, self.pc.DestroyPropertyCollector):
            with contextlib.suppress(Exception):  # a dead session has nothing left to free
                step()
        session.disconnect(self.si)


def _describe(exc: BaseException) -> str:
    msg = getattr(exc, "msg", None) or str(exc) or ""
    return f"{type(exc).__name__}: {msg}".rstrip(": ")
