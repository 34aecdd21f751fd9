"""Per-VM coalescing: a burst of events for one VM becomes a few serialized updates.

Events are appended to the VM's pending list; one task per VM drains it, taking *everything*
pending each time, so 500 events for one VM become as many updates as the handler takes
turns (often two or three), each seeing every event it covers. Nothing is dropped (each
event is in exactly one batch) and updates of one VM never overlap; different VMs proceed
concurrently. Runs on the event loop's thread only (no locks needed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from vmwarden.model.events import VmEvent

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (uri, vm uuid)
Handler = Callable[[Key, list[VmEvent]], Awaitable[None]]


class VmQueue:
    def __init__(self, handler: Handler, on_handled: Callable[[list[VmEvent]], None]) -> None:
        self._handler = handler
        self._on_handled = on_handled
        self._pending: dict[Key, list[VmEvent]] = {}
        self._tasks: dict[Key, asyncio.Task[None]] = {}
        self.received = 0
        self.handled = 0
        self.batches = 0

    def put(self, event: VmEvent) -> None:
        key = (event.uri, event.vm_id)
        self.received += 1
        self._pending.setdefault(key, []).append(event)
        if key not in self._tasks:
            self._tasks[key] = asyncio.get_running_loop().create_task(self._drain(key))

    async def _drain(self, key: Key) -> None:
        try:
            while batch := self._pending.pop(key, None):
                try:
                    await self._handler(key, batch)
                except Exception:  # one VM's failed update must not stop its later events
                    log.exception("update of VM %s on %s failed", key[1], key[0])
                self.batches += 1
                self.handled += len(batch)
                self._on_handled(batch)
        finally:
            del self._tasks[key]

    @property
    def idle(self) -> bool:
        return not self._pending and not self._tasks

    async def join(self) -> None:
        """Wait until every event received so far is handled."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)
