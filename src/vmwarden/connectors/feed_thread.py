"""``ThreadedFeed``: the one thread skeleton of every ``EventFeed`` that reads by blocking.

A platform whose events arrive by a blocking call (an inventory every few seconds, a vCenter
``WaitForUpdatesEx``, an SQS long poll) cannot run on the asyncio loop: its feed reads on a
daemon thread of its own and hands each event to the loop's thread
(``call_soon_threadsafe``), as libvirt's callbacks are. What that takes is the same for every
such feed, so it is written once here, and a feed keeps only how it connects and how it reads:

- ``_connect()`` opens the connector the daemon acts through; ``_subscribe(conn, stop)`` opens
  whatever else the reading needs (a second session, a queue, the first inventory) and returns
  the reader: a generator of ``VmEvent``s that runs on the thread until ``stop`` is set. It is
  bound to this opening's objects, so a thread outliving a ``close`` never reads the next
  opening's. A failure in ``_subscribe`` closes the connector and reaches the caller of
  ``open``.
- Each event the reader yields is handed to ``on_event`` on the loop before the reader resumes
  (so work after a ``yield``, such as deleting an SQS message, follows its delivery).
- The reader raising (while ``stop`` is not set) is a lost connection: ``alive()`` turns
  False and ``on_close(f"{failure}: {why}")`` is called once on the loop; ``HostWatch`` then
  closes the feed, opens it again and reconciles. ``why`` is a ``VmwardenError`` as it is,
  anything else ``_describe(exc)``. An exception after ``stop`` is set (a session torn down
  by ``close``) is the stop, not news.
- ``close()`` sets ``stop``, lets the feed wake a blocked read (``_interrupt``), joins the
  thread for at most ``join_timeout`` seconds (never from the thread itself), frees the
  feed's own resources (``_release``), then closes the connector. Safe on a dead connection
  and when never opened.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import ClassVar, Generic, TypeVar

from vmwarden.connectors.base import Connector
from vmwarden.errors import VmwardenError
from vmwarden.model.events import VmEvent

C = TypeVar("C", bound=Connector)


class ThreadedFeed(Generic[C]):
    """An ``EventFeed`` whose reader runs on a daemon thread (see the module docstring)."""

    #: the thread's name is ``f"{thread_name} {uri}"`` (what ``py-spy`` and logs show)
    thread_name: ClassVar[str] = "feed"
    #: ``on_close`` says ``f"{failure}: {why}"`` when the reader fails
    failure: ClassVar[str] = "event feed failed"

    def __init__(
        self,
        uri: str,
        *,
        on_event: Callable[[VmEvent], None],
        on_close: Callable[[str], None],
        join_timeout: float,
    ) -> None:
        self.uri = uri
        self.on_event = on_event
        self.on_close = on_close
        self.join_timeout = join_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: C | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed = False

    # --- what a feed supplies ---------------------------------------------------------

    def _connect(self) -> C:
        """Open the connector the daemon acts through (blocking; raises when unreachable)."""
        raise NotImplementedError

    def _subscribe(self, conn: C, stop: threading.Event) -> Iterator[VmEvent]:
        """Open what reading needs and return the reader (not started: it runs on the thread
        and returns once ``stop`` is set). Raising here closes ``conn`` and fails ``open``."""
        raise NotImplementedError

    def _interrupt(self) -> None:
        """Wake a read blocked on the platform (called from ``close``, before the join)."""

    def _release(self) -> None:
        """Free what ``_subscribe`` opened besides the connector (after the join)."""

    def _describe(self, exc: Exception) -> str:
        """How ``on_close`` names a failure that is not a ``VmwardenError``."""
        return f"{type(exc).__name__}: {exc}"

    # --- the EventFeed ------------------------------------------------------------------

    @property
    def connector(self) -> C | None:
        return self._conn

    @property
    def host(self) -> str | None:
        return None if self._conn is None else self._conn.host

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def open(self) -> C:
        """Connect and subscribe (blocking), then start the reading thread."""
        if self._loop is None:
            raise VmwardenError(f"{type(self).__name__}.attach(loop) must be called before open()")
        conn = self._connect()
        stop = threading.Event()
        try:
            events = self._subscribe(conn, stop)
        except BaseException:
            conn.close()
            raise
        self._conn, self._failed, self._stop = conn, False, stop
        self._thread = threading.Thread(
            target=self._run,
            args=(self._loop, events, stop),
            name=f"{self.thread_name} {self.uri}",
            daemon=True,
        )
        self._thread.start()
        return conn

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._failed

    def close(self) -> None:
        """Stop reading, join the thread, free the feed's resources, close the connector."""
        self._stop.set()
        self._interrupt()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.join_timeout)
        self._release()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _run(
        self, loop: asyncio.AbstractEventLoop, events: Iterator[VmEvent], stop: threading.Event
    ) -> None:
        try:
            for event in events:
                loop.call_soon_threadsafe(self.on_event, event)
        except Exception as exc:  # any failure of a read: the host counts as lost
            if stop.is_set():
                return
            self._failed = True
            why = exc if isinstance(exc, VmwardenError) else self._describe(exc)
            loop.call_soon_threadsafe(self.on_close, f"{self.failure}: {why}")
