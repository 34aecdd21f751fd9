"""A platform without push events is watched by polling its inventory (``PollFeed``).

Real parts: the libvirt test driver behind a connector registered under a scheme that has no
event feed (as EC2 without a queue will be), a real asyncio loop, the feed's own thread.
"""

from __future__ import annotations

import asyncio
import time

from vmwarden.connectors.base import Connector, register_connector
from vmwarden.connectors.libvirt.connection import LibvirtConnector
from vmwarden.engine.watch.hosts import HostWatch
from vmwarden.engine.watch.poll import PollFeed, Seen, diff
from vmwarden.model import VM, State, VmMeta
from vmwarden.model.events import VmEvent

SCHEME = "vmwn-polled"


@register_connector(SCHEME)
def _polled_only(uri: str) -> Connector:
    """A connector whose platform has no event feed (libvirt's test driver underneath)."""
    return LibvirtConnector("test:///default")


def _vm(state: State, **kw: object) -> VM:
    fields: dict[str, object] = {"id": "id-1", "name": "web", "host": "hv1", "uri": "x://"}
    return VM(state=state, **{**fields, **kw})  # type: ignore[arg-type]


def test_diff_names_every_change_in_neutral_kinds() -> None:
    off, on = Seen(_vm(State.SHUTOFF)), Seen(_vm(State.RUNNING))
    paused = Seen(_vm(State.PAUSED))
    tagged = Seen(_vm(State.RUNNING, meta=VmMeta(owner="bob")))
    moved = Seen(_vm(State.RUNNING, host="hv2"))

    def kinds(old: dict[str, Seen], new: dict[str, Seen]) -> list[str]:
        return [e.kind for e in diff("x://", old, new)]

    assert kinds({}, {"id-1": on}) == ["defined", "started"]
    assert kinds({}, {"id-1": off}) == ["defined"]
    assert kinds({"id-1": off}, {"id-1": on}) == ["started"]
    assert kinds({"id-1": on}, {"id-1": off}) == ["stopped"]
    assert kinds({"id-1": on}, {"id-1": paused}) == ["suspended"]
    assert kinds({"id-1": paused}, {"id-1": on}) == ["resumed"]
    assert kinds({"id-1": on}, {"id-1": tagged}) == ["metadata"]
    assert kinds({"id-1": on}, {"id-1": moved}) == ["migrated"]
    (event,) = diff("x://", {"id-1": on}, {"id-1": moved})
    assert (event.host, event.migrated) == ("hv2", True)
    assert kinds({"id-1": on}, {}) == ["undefined"]
    assert kinds({"id-1": on}, {"id-1": on}) == []


async def _watch_by_polling() -> tuple[HostWatch, list[VmEvent], float]:
    got: list[VmEvent] = []
    host = HostWatch(
        f"{SCHEME}://hv",
        on_event=got.append,
        on_up=lambda _h: asyncio.sleep(0),
        on_state=lambda _h: None,
        poll_every=0.05,
    )
    feed = host.source
    assert isinstance(feed, PollFeed)  # no push events for this scheme: polled
    feed.attach(asyncio.get_running_loop())
    conn = await asyncio.to_thread(feed.open)
    try:
        dom = conn.conn.lookupByName("test")  # type: ignore[attr-defined]
        t0 = time.monotonic()
        dom.suspend()
        while not any(e.kind == "suspended" for e in got) and time.monotonic() - t0 < 5:
            await asyncio.sleep(0.01)
        took = time.monotonic() - t0
        dom.resume()
        dom.destroy()
        while len(got) < 2 and time.monotonic() - t0 < 5:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        assert feed.alive()
    finally:
        await asyncio.to_thread(feed.close)
    return host, got, took


def test_a_platform_without_events_is_polled_and_sees_a_change_within_the_interval() -> None:
    _host, got, took = asyncio.run(_watch_by_polling())
    assert got[0].kind == "suspended" and got[0].name == "test"
    assert got[0].uri == f"{SCHEME}://hv"
    assert got[-1].kind == "stopped"  # resume + destroy between two polls: the net change
    assert took < 1.0  # interval 0.05 s plus one inventory, on a loaded machine
