"""The vSphere event feed against vcsim: what an administrator does in vCenter (power, clone,
reconfigure, custom attributes) reaches ``watch`` as the right neutral ``VmEvent`` within a
bound, and a lost session is reconnected by ``HostWatch`` (then events flow again)."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pyVim.task import WaitForTask
from pyVmomi import vim

from tests.connectors.vsphere.conftest import Vcsim
from tests.connectors.vsphere.vcsim_ops import admin, power_off, set_attribute, vm_named
from vmwarden.connectors.base import open_event_feed
from vmwarden.connectors.vsphere.events import VsphereEventFeed
from vmwarden.engine.watch.hosts import HostWatch
from vmwarden.model.events import VmEvent

BOUND = 5.0  # seconds: vcsim batches updates every 250 ms, the feed waits at most 2 s
META_EVERY = 1.0  # the feed's customValue re-read in these tests (vcsim posts no event)
VM = "DC0_H0_VM0"


def run_async(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """A test body run on a fresh event loop (the project uses no asyncio test plugin)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


class Seen:
    """Events as the feed delivered them on the loop, with their arrival times."""

    def __init__(self) -> None:
        self.events: list[VmEvent] = []
        self.closed: list[str] = []
        self._changed = asyncio.Event()

    def add(self, event: VmEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def close(self, why: str) -> None:
        self.closed.append(why)
        self._changed.set()

    async def first(self, match: Callable[[VmEvent], bool], bound: float) -> VmEvent:
        """The first event ``match`` accepts, within ``bound`` seconds (else the test fails)."""
        deadline = time.monotonic() + bound
        while True:
            hit = next((e for e in self.events if match(e)), None)
            if hit is not None:
                return hit
            left = deadline - time.monotonic()
            if left <= 0:
                got = [(e.kind, e.name, e.detail) for e in self.events]
                pytest.fail(f"no matching event within {bound}s; got {got}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                continue


@asynccontextmanager
async def watching(sim: Vcsim) -> AsyncIterator[tuple[VsphereEventFeed, Seen]]:
    seen = Seen()
    feed = VsphereEventFeed(
        sim.uri(), on_event=seen.add, on_close=seen.close, metadata_every=META_EVERY
    )
    feed.attach(asyncio.get_running_loop())
    await asyncio.to_thread(feed.open)
    try:
        yield feed, seen
    finally:
        await asyncio.to_thread(feed.close)


def _do(sim: Vcsim, act: Callable[[Any], Any]) -> Any:
    with admin(sim) as content:
        return act(content)


def _uuid(sim: Vcsim, name: str) -> str:
    return str(_do(sim, lambda c: vm_named(c, name).config.instanceUuid))


def _power_on(content: Any, name: str) -> None:
    vm = vm_named(content, name)
    if vm.runtime.powerState != "poweredOn":
        WaitForTask(vm.PowerOnVM_Task())


def _clone(content: Any, source: str, name: str, *, template: bool = False) -> None:
    src = vm_named(content, source)
    # a template has no pool, and vcsim 0.24 panics on reading it: VM0's pool for both
    pool = vm_named(content, VM).resourcePool
    spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=pool))
    WaitForTask(src.CloneVM_Task(folder=vm_named(content, VM).parent, name=name, spec=spec))
    if template:  # vcsim 0.24 drops the connection on CloneSpec(template=True): mark after
        vm_named(content, name).MarkAsTemplate()


@pytest.mark.usefixtures("vsphere_password")
def test_the_vsphere_scheme_has_a_push_feed(vcsim: Vcsim) -> None:
    feed = open_event_feed(vcsim.uri(), on_event=print, on_close=print)
    assert isinstance(feed, VsphereEventFeed)


@pytest.mark.usefixtures("vsphere_password")
@run_async
async def test_power_off_then_on_is_stopped_then_started_within_the_bound(vcsim: Vcsim) -> None:
    vm_id = _uuid(vcsim, VM)
    _do(vcsim, lambda c: _power_on(c, VM))
    async with watching(vcsim) as (feed, seen):
        t0 = time.monotonic()
        await asyncio.to_thread(_do, vcsim, lambda c: power_off(vm_named(c, VM)))
        await asyncio.to_thread(_do, vcsim, lambda c: _power_on(c, VM))
        started = await seen.first(lambda e: e.kind == "started", BOUND)
        assert started.received - t0 <= BOUND
        mine = [e for e in seen.events if e.vm_id == vm_id]
        assert [(e.kind, e.detail) for e in mine] == [
            ("stopped", "VmPoweredOffEvent"),
            ("started", "VmPoweredOnEvent"),
        ]  # in the order they happened, once each (pages repeat events; keys dedupe them)
        assert (started.name, started.host, started.uri) == (VM, "DC0_H0", vcsim.uri())
        assert feed.alive() and not seen.closed
        # the connector the daemon acts through sees what the event says
        assert feed.connector is not None
        assert feed.connector.observe(vm_id).vm.state == "running"


@pytest.mark.usefixtures("vsphere_password")
@run_async
async def test_events_before_the_subscription_are_not_replayed(vcsim: Vcsim) -> None:
    _do(vcsim, lambda c: power_off(vm_named(c, "DC0_H0_VM1")))
    _do(vcsim, lambda c: _power_on(c, "DC0_H0_VM1"))  # on the page when the feed subscribes
    async with watching(vcsim) as (_, seen):
        await asyncio.sleep(2.5)  # > one wait and one metadata re-read
        assert seen.events == []


@pytest.mark.usefixtures("vsphere_password")
@run_async
async def test_a_clone_of_a_template_is_defined_with_the_template_as_provenance(
    vcsim: Vcsim,
) -> None:
    _do(vcsim, lambda c: _clone(c, VM, "vmw-v3-tmpl", template=True))
    async with watching(vcsim) as (_, seen):
        await asyncio.to_thread(_do, vcsim, lambda c: _clone(c, "vmw-v3-tmpl", "vmw-v3-child"))
        child = _uuid(vcsim, "vmw-v3-child")
        made = await seen.first(lambda e: e.made_from is not None, BOUND)
        assert (made.kind, made.vm_id, made.name) == ("defined", child, "vmw-v3-child")
        assert made.made_from == "vmw-v3-tmpl"
        created = [e for e in seen.events if e.detail == "VmCreatedEvent"]
        assert [(e.kind, e.vm_id, e.made_from) for e in created] == [("defined", child, None)]


@pytest.mark.usefixtures("vsphere_password")
@run_async
async def test_a_reconfigure_is_a_config_event_and_a_removal_undefined(vcsim: Vcsim) -> None:
    _do(vcsim, lambda c: _clone(c, VM, "vmw-v3-doomed"))
    doomed = _uuid(vcsim, "vmw-v3-doomed")
    async with watching(vcsim) as (_, seen):

        def reconfigure_and_destroy(content: Any) -> None:
            vm = vm_named(content, "vmw-v3-doomed")
            WaitForTask(vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(annotation="vmw-v3")))
            WaitForTask(vm.Destroy_Task())

        await asyncio.to_thread(_do, vcsim, reconfigure_and_destroy)
        gone = await seen.first(lambda e: e.kind == "undefined", BOUND)
        kinds = [(e.kind, e.detail) for e in seen.events if e.vm_id == doomed]
        assert kinds == [("config", "VmReconfiguredEvent"), ("undefined", "VmRemovedEvent")]
        assert gone.name == "vmw-v3-doomed"


@pytest.mark.usefixtures("vsphere_password")
@run_async
async def test_a_custom_attribute_change_is_a_metadata_event(vcsim: Vcsim) -> None:
    vm_id = _uuid(vcsim, VM)
    async with watching(vcsim) as (_, seen):
        t0 = time.monotonic()
        await asyncio.to_thread(
            _do, vcsim, lambda c: set_attribute(c, vm_named(c, VM), "vmwarden.owner", "mallory")
        )
        # vcsim 0.24 posts no CustomFieldValueChangedEvent: the feed's re-read bounds it
        event = await seen.first(lambda e: e.kind == "metadata", META_EVERY + BOUND)
        assert (event.vm_id, event.name) == (vm_id, VM)
        assert event.received - t0 <= META_EVERY + BOUND
        assert [e.vm_id for e in seen.events if e.kind == "metadata"] == [vm_id]


def _terminate_other_sessions(content: Any) -> int:
    """End every session but this one (as an administrator does in vCenter's Sessions view)."""
    sm = content.sessionManager
    mine = sm.currentSession.key
    others = [s.key for s in sm.sessionList or [] if s.key != mine]
    for key in others:
        sm.TerminateSession(sessionId=[key])
    return len(others)


@pytest.mark.usefixtures("vsphere_password")
@run_async
async def test_a_dropped_session_is_reconnected_and_reconciled_then_events_flow(
    vcsim: Vcsim,
) -> None:
    seen = Seen()
    ups: list[float] = []

    async def on_up(_: HostWatch) -> None:
        ups.append(time.monotonic())  # the daemon reconciles here

    host = HostWatch(
        vcsim.uri(), on_event=seen.add, on_up=on_up, on_state=lambda h: None,
        backoff=(0.2, 1.0),
    )  # fmt: skip
    assert isinstance(host.source, VsphereEventFeed)
    host.source.attach(asyncio.get_running_loop())
    task = asyncio.get_running_loop().create_task(host.run())
    try:
        await asyncio.wait_for(host.wait_up(), 30)
        assert len(ups) == 1
        ended = await asyncio.to_thread(_do, vcsim, _terminate_other_sessions)
        assert ended >= 2  # the feed's connector session and its waiting session
        deadline = time.monotonic() + 20
        while len(ups) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert len(ups) == 2, f"not reconnected: {host.state} {host.last_error}"
        assert host.connects == 2 and "connection lost" in (host.last_error or "connection lost")
        vm_id = _uuid(vcsim, VM)
        await asyncio.to_thread(_do, vcsim, lambda c: power_off(vm_named(c, VM)))
        event = await seen.first(lambda e: e.kind == "stopped" and e.vm_id == vm_id, BOUND)
        assert event.name == VM
        assert host.connector is not None and host.connector.lookup(vm_id).state == "shutoff"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.usefixtures("vsphere_password")
def test_observe_reads_one_vm_and_learns_a_portgroup_it_did_not_know(vcsim: Vcsim) -> None:
    """``observe`` maps one VM's properties with what the last full read knew; a NIC moved
    onto a portgroup created since then makes it read that again (never a nameless NIC)."""
    from tests.connectors.vsphere.quarantine_ops import add_distributed_portgroup, add_nic
    from vmwarden.connectors.vsphere.connection import VsphereConnector

    name = "DC0_H0_VM1"
    with VsphereConnector(vcsim.uri()) as conn:
        listed = {vm.id: vm for vm in conn.inventory().vms}
        vm_id = next(i for i, vm in listed.items() if vm.name == name)
        conn.observe_context()
        seen = conn.observe(vm_id).vm
        assert (seen.id, seen.name, seen.host, seen.state) == (
            vm_id, name, listed[vm_id].host, listed[vm_id].state,
        )  # fmt: skip
        assert [(n.mac, n.network, n.type) for n in seen.nics] == [
            (n.mac, n.network, n.type) for n in listed[vm_id].nics
        ]

        def plug(content: Any) -> None:
            add_distributed_portgroup(content, "vmw-v3-new-dvpg")
            add_nic(vm_named(content, name), "vmw-v3-new-dvpg", "00:50:56:3f:00:33")

        _do(vcsim, plug)
        nics = {n.mac: n.network for n in conn.observe(vm_id).vm.nics}
        assert nics["00:50:56:3f:00:33"] == "vmw-v3-new-dvpg"
        assert conn.observe(name).vm.id == vm_id  # by name: the full read


@pytest.mark.usefixtures("vsphere_password")
def test_a_page_of_unseen_events_is_a_lost_connection_never_a_silent_gap(
    vcsim: Vcsim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The collector's page holds the newest events only: more new ones than a page between
    two waits means some were dropped, and the feed says so (HostWatch then reconnects and
    reconciles) instead of delivering a page with a hole before it."""
    from vmwarden.connectors.vsphere import events
    from vmwarden.errors import ConnectorError

    monkeypatch.setattr(events, "PAGE", 3)
    names = ["DC0_H0_VM0", "DC0_H0_VM1"]
    for name in names:
        _do(vcsim, lambda c, name=name: _power_on(c, name))
    sub = events._Subscription.open(vcsim.uri(), 30)  # no thread: waits only when told
    try:

        def cycle(count: int) -> None:
            def act(content: Any) -> None:
                for i in range(count):
                    vm = vm_named(content, names[i % 2])
                    power_off(vm)
                    WaitForTask(vm.PowerOnVM_Task())

            _do(vcsim, act)

        cycle(1)  # two events: within a page of three
        got = sub.wait(1)
        assert [(e.kind, e.name) for e in got] == [("stopped", names[0]), ("started", names[0])]
        cycle(2)  # four new events: a page of three cannot hold them
        with pytest.raises(ConnectorError, match="more than 3 vSphere events at once"):
            sub.wait(1)
    finally:
        sub.close()


@pytest.mark.usefixtures("vsphere_password")
@run_async
async def test_a_datacenter_uri_watches_that_datacenter(vcsim: Vcsim) -> None:
    """``vsphere://…/DC0``: the collector is scoped to the datacenter (events of its VMs);
    a datacenter vCenter does not have is refused at subscription, naming the URI's form."""
    from vmwarden.errors import ConnectorError

    seen = Seen()
    feed = VsphereEventFeed(vcsim.uri(path="/DC0"), on_event=seen.add, on_close=seen.close)
    feed.attach(asyncio.get_running_loop())
    await asyncio.to_thread(feed.open)
    try:
        await asyncio.to_thread(_do, vcsim, lambda c: power_off(vm_named(c, VM)))
        event = await seen.first(lambda e: e.kind == "stopped", BOUND)
        assert (event.name, event.uri) == (VM, vcsim.uri(path="/DC0"))
    finally:
        await asyncio.to_thread(feed.close)
    missing = VsphereEventFeed(vcsim.uri(path="/vmw-v3-no-dc"), on_event=seen.add,
                               on_close=seen.close)  # fmt: skip
    missing.attach(asyncio.get_running_loop())
    with pytest.raises(ConnectorError, match="no datacenter 'vmw-v3-no-dc'"):
        await asyncio.to_thread(missing.open)
    assert missing.connector is None and not missing.alive()
