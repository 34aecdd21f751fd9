"""One watched host: connect, subscribe, notice a lost connection, reconnect with backoff.

A connection counts as lost when libvirt's close callback fires (end of file, keepalive
timeout) or when a periodic ``isAlive`` check (local, no round trip) says so. Each time the
connection comes (back) up, ``on_up`` is awaited: the daemon runs a full reconcile then, so
whatever happened while it was away (a VM defined or started) is still found.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from vmwarden.connectors.base import Connector, EventFeed, NoEventFeedError, open_event_feed
from vmwarden.engine.watch.poll import POLL_EVERY, PollFeed
from vmwarden.errors import VmwardenError
from vmwarden.model.events import VmEvent

log = logging.getLogger(__name__)

LIVENESS_EVERY = 1.0  # seconds between isAlive checks (a local flag read, no RPC)


class HostWatch:
    """Keeps one URI connected for as long as ``run`` runs."""

    def __init__(
        self,
        uri: str,
        *,
        on_event: Callable[[VmEvent], None],
        on_up: Callable[[HostWatch], Awaitable[None]],
        on_state: Callable[[HostWatch], None],
        backoff: tuple[float, float] = (0.5, 30.0),
        keepalive: tuple[int, int] = (5, 3),
        poll_every: float = POLL_EVERY,
    ) -> None:
        self.uri = uri
        self.on_up = on_up
        self.on_state = on_state
        self.backoff = backoff
        self.source: EventFeed
        try:
            self.source = open_event_feed(
                uri, on_event=on_event, on_close=self._on_close, keepalive=keepalive
            )
        except NoEventFeedError:  # a platform without push events: poll its inventory
            self.source = PollFeed(
                uri, on_event=on_event, on_close=self._on_close, interval=poll_every
            )
        self.state = "connecting"  # connecting | up | down
        self.last_error: str | None = None
        self.connects = 0
        self.reconciled = False  # a reconcile has run since the host was first connected
        self._lost: asyncio.Event | None = None
        self._up: asyncio.Event | None = None

    @property
    def connector(self) -> Connector | None:
        return self.source.connector if self.state == "up" else None

    @property
    def host(self) -> str | None:
        return self.source.host

    async def wait_up(self) -> None:
        if self._up is None:
            self._up = asyncio.Event()
        await self._up.wait()

    def _on_close(self, reason: str) -> None:
        log.warning("connection to %s lost: %s", self.uri, reason)
        self.last_error = f"connection lost: {reason}"
        if self._lost is not None:
            self._lost.set()

    def _set(self, state: str) -> None:
        self.state = state
        if self._up is None:
            self._up = asyncio.Event()
        if state == "up":
            self._up.set()
        else:
            self._up.clear()
        self.on_state(self)

    async def run(self) -> None:
        self._lost = asyncio.Event()
        delay = self.backoff[0]
        try:
            while True:
                try:
                    await asyncio.to_thread(self.source.open)
                except VmwardenError as exc:
                    self.last_error = str(exc)
                    if self.state != "down":
                        log.warning("%s; retrying in %.1f s", exc, delay)
                    self._set("down")
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.backoff[1])
                    continue
                delay = self.backoff[0]
                self._lost.clear()
                self.connects += 1
                self.last_error = None
                self._set("up")
                log.info("connected to %s (%s)", self.uri, self.host)
                await self.on_up(self)
                await self._until_lost(self._lost)
                self._set("down")
                await asyncio.to_thread(self.source.close)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.source.close)

    async def _until_lost(self, lost: asyncio.Event) -> None:
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), LIVENESS_EVERY)
            if not lost.is_set() and not self.source.alive():
                self._on_close("connection no longer alive")
