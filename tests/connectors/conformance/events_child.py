"""Watch one host the way ``watch`` does and report the first ``started`` of one VM.

``python -m tests.connectors.conformance.events_child URI VM_ID POLL_INTERVAL``

Prints ``ready`` once subscribed (the test then starts the VM by the platform's own API),
then one JSON line ``{"kind", "vm_id", "host", "feed"}`` when the start is seen. A child
process: libvirt keeps the first event loop a process registers for good.
"""

from __future__ import annotations

import asyncio
import json
import sys

from vmwarden.connectors.base import NoEventFeedError, open_event_feed
from vmwarden.engine.watch.poll import PollFeed
from vmwarden.model.events import VmEvent


async def main(uri: str, vm_id: str, interval: float) -> int:
    seen: asyncio.Queue[VmEvent] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def on_event(event: VmEvent) -> None:
        loop.call_soon_threadsafe(seen.put_nowait, event)

    def on_close(why: str) -> None:
        print(json.dumps({"closed": why}), flush=True)

    try:
        feed = open_event_feed(uri, on_event=on_event, on_close=on_close)
        kind = "events"
    except NoEventFeedError:
        feed = PollFeed(uri, on_event=on_event, on_close=on_close, interval=interval)
        kind = "poll"
    feed.attach(loop)
    await asyncio.to_thread(feed.open)
    print("ready", flush=True)
    try:
        while True:
            event = await seen.get()
            if event.vm_id == vm_id and event.kind == "started":
                out = {"kind": event.kind, "vm_id": event.vm_id, "host": event.host, "feed": kind}
                print(json.dumps(out), flush=True)
                return 0
    finally:
        await asyncio.to_thread(feed.close)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]))))
