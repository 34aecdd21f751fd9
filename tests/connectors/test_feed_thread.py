"""``ThreadedFeed``, the thread skeleton of the polled, vSphere and SQS event feeds.

Real parts: a real asyncio loop, the feed's own thread, libvirt's test driver as the connector.
The reader takes what the test puts in a queue, so the test decides what is read and when a
read fails; each test checks one promise of the module docstring.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from vmwarden.connectors.feed_thread import ThreadedFeed
from vmwarden.connectors.libvirt.connection import LibvirtConnector
from vmwarden.errors import ConnectorError, VmwardenError
from vmwarden.model.events import VmEvent

URI = "test:///default"


class QueueFeed(ThreadedFeed[LibvirtConnector]):
    """Reads ``VmEvent``s from a queue; an exception put in it is a failed read."""

    thread_name = "queue"
    failure = "queue read failed"

    def __init__(self, on_event: Callable[[VmEvent], None], on_close: Callable[[str], None]):
        super().__init__(URI, on_event=on_event, on_close=on_close, join_timeout=5)
        self.q: queue.Queue[object] = queue.Queue()
        self.opened: list[LibvirtConnector] = []
        self.subscribe_fails: Exception | None = None
        self.wake_with: object = None  # what ``_interrupt`` puts in the queue
        self.interrupted = self.released = 0

    def _connect(self) -> LibvirtConnector:
        self.opened.append(LibvirtConnector(self.uri))
        return self.opened[-1]

    def _subscribe(self, conn: LibvirtConnector, stop: threading.Event) -> Iterator[VmEvent]:
        if self.subscribe_fails is not None:
            raise self.subscribe_fails
        return self._read(stop)

    def _interrupt(self) -> None:
        self.interrupted += 1
        self.q.put(self.wake_with)

    def _release(self) -> None:
        self.released += 1

    def _read(self, stop: threading.Event) -> Iterator[VmEvent]:
        while not stop.is_set():
            item = self.q.get()
            if isinstance(item, Exception):
                raise item
            if isinstance(item, VmEvent):
                yield item


class Harness:
    """A loop (not running between steps), a feed attached to it, what reached it and where."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.events: list[VmEvent] = []
        self.closes: list[str] = []
        self.threads: set[int] = set()
        self.feed = QueueFeed(self._on_event, self._on_close)
        self.feed.attach(self.loop)

    def _on_event(self, event: VmEvent) -> None:
        self.threads.add(threading.get_ident())
        self.events.append(event)

    def _on_close(self, why: str) -> None:
        self.threads.add(threading.get_ident())
        self.closes.append(why)

    def run_until(self, done: Callable[[], bool], seconds: float = 5.0) -> None:
        async def wait() -> None:
            end = time.monotonic() + seconds
            while not done() and time.monotonic() < end:
                await asyncio.sleep(0.01)

        self.loop.run_until_complete(wait())


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.feed.close()
    harness.loop.close()


def _event(n: int) -> VmEvent:
    return VmEvent(URI, f"id-{n}", f"vm-{n}", "started", "test")


def _reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"queue {URI}"]


def test_events_reach_the_loop_in_order_and_close_joins_the_thread(h: Harness) -> None:
    conn = h.feed.open()
    assert h.feed.connector is conn and h.feed.host == conn.host
    (thread,) = _reader_threads()
    assert thread.daemon and h.feed.alive()
    for n in range(3):
        h.feed.q.put(_event(n))
    h.run_until(lambda: len(h.events) == 3)
    assert [e.vm_id for e in h.events] == ["id-0", "id-1", "id-2"]
    assert h.threads == {threading.get_ident()}  # on the loop's thread, not the reader's

    h.feed.close()
    assert not thread.is_alive()  # woken by ``_interrupt`` and joined, not left blocked
    assert (h.feed.interrupted, h.feed.released) == (1, 1)
    assert h.feed.connector is None and not h.feed.alive()
    with pytest.raises(ConnectorError, match="closed"):
        _ = conn.conn
    h.run_until(lambda: False, 0.05)
    assert h.closes == []  # a close asked for is not a lost connection


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (RuntimeError("boom"), "queue read failed: RuntimeError: boom"),
        (ConnectorError("host gone"), "queue read failed: host gone"),
    ],
)
def test_a_failed_read_is_reported_once_and_a_reopen_is_alive(
    h: Harness, error: Exception, said: str
) -> None:
    h.feed.open()
    (thread,) = _reader_threads()
    h.feed.q.put(_event(1))
    h.feed.q.put(error)
    h.feed.q.put(_event(2))  # never read: the thread has ended
    h.run_until(lambda: bool(h.closes))
    thread.join(5)
    h.run_until(lambda: False, 0.05)
    assert h.closes == [said]
    assert [e.vm_id for e in h.events] == ["id-1"]
    assert h.threads == {threading.get_ident()}
    assert not h.feed.alive()

    h.feed.close()
    h.feed.open()  # what HostWatch does next
    assert h.feed.alive()


def test_a_failure_after_stop_is_the_stop_not_news(h: Harness) -> None:
    h.feed.open()
    (thread,) = _reader_threads()
    h.feed.wake_with = RuntimeError("session torn down by close")
    h.feed.close()
    assert not thread.is_alive()
    h.run_until(lambda: False, 0.05)
    assert h.closes == []


def test_open_needs_a_loop_and_a_failed_subscribe_closes_the_connector() -> None:
    feed = QueueFeed(lambda _e: None, lambda _w: None)
    with pytest.raises(VmwardenError, match=r"QueueFeed\.attach\(loop\) must be called"):
        feed.open()
    assert feed.opened == []

    loop = asyncio.new_event_loop()
    try:
        feed.attach(loop)
        feed.subscribe_fails = ConnectorError("cannot subscribe")
        with pytest.raises(ConnectorError, match="cannot subscribe"):
            feed.open()
        (conn,) = feed.opened
        with pytest.raises(ConnectorError, match="closed"):
            _ = conn.conn
        assert feed.connector is None and not feed.alive() and _reader_threads() == []
        feed.close()  # safe when never opened
    finally:
        loop.close()
