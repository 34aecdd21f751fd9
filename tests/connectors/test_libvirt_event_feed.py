"""libvirt's events reach the engine as neutral ``VmEvent``s through ``open_event_feed``.

Real libvirt (the test driver's built-in ``test:///default``, whose domain ``test`` runs),
events dispatched on a real asyncio loop by libvirtaio, as ``watch`` runs them.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vmwarden.connectors.base import open_event_feed
from vmwarden.errors import ConnectorError
from vmwarden.model.events import EVENT_KINDS, VmEvent

# Run in a child process: libvirt keeps the first event loop a process registers for good,
# and the watch tests of this pytest process register their own (tests/engine/test_watch.py).
_CHILD = """
import asyncio, json
from vmwarden.connectors.base import open_event_feed

async def main():
    got = []
    feed = open_event_feed("test:///default", on_event=got.append, on_close=lambda _w: None)
    feed.attach(asyncio.get_running_loop())
    conn = await asyncio.to_thread(feed.open)
    try:
        assert feed.alive() and conn.host == feed.host
        dom = feed.conn.lookupByName("test")  # the test acts through libvirt itself
        dom.suspend(); dom.resume(); dom.destroy(); dom.undefine()
        for _ in range(200):
            if len(got) >= 4:
                break
            await asyncio.sleep(0.01)
    finally:
        await asyncio.to_thread(feed.close)
    assert all(e.host == conn.host for e in got), [e.host for e in got]
    return [[e.uri, e.vm_id, e.name, e.kind, e.detail] for e in got]

print(json.dumps(asyncio.run(main())))
"""


def test_libvirt_lifecycle_callbacks_become_neutral_vm_events() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True, timeout=120
    )
    got = [VmEvent(*row) for row in json.loads(out.stdout)]
    assert [e.kind for e in got] == ["suspended", "resumed", "stopped", "undefined"]
    assert {e.name for e in got} == {"test"}
    assert all(e.uri == "test:///default" and e.kind in EVENT_KINDS for e in got)
    assert got[2].detail == "stopped"  # the platform's own word stays, for logs only


def test_a_platform_without_an_event_feed_is_a_clear_error() -> None:
    with pytest.raises(ConnectorError, match="no event feed for URI scheme 'nope'") as exc:
        open_event_feed("nope://host", on_event=lambda _e: None, on_close=lambda _w: None)
    assert "qemu" in (exc.value.hint or "")


def test_an_unknown_event_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown VM event kind 'lifecycle'"):
        VmEvent("test:///default", "id", "vm", "lifecycle")
