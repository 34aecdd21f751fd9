"""vSphere watch (#13.5): how soon ``watch`` sees a power-on, and what reading the VM costs.

On one vcsim estate (2,000 VMs on 50 standalone hosts, as the inventory bench), side by side
in one run:

- ``start seen, event feed``: from ``PowerOnVM_Task`` finishing (an administrator's session)
  to the ``started`` ``VmEvent`` arriving from ``VsphereEventFeed`` (EventHistoryCollector
  watched by ``WaitForUpdatesEx``; vcsim batches property updates every 250 ms);
- ``start seen, inventory poll``: the same through ``PollFeed`` (``engine/watch/poll.py``,
  the engine's default 5 s interval): what a platform without events gets;
- ``observe one VM``: the gate's read of the VM an event names (search index + one VM's
  properties), against the floor it replaced: the sweep's full property retrieval.

Milliseconds per start (p50/p95/max over the starts); seconds per read.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import Any

from bench.vsphere_inventory import HOSTS, PASSWORD, PER_HOST, USER, _vcsim


def _ms_row(name: str, lags: list[float], note: str) -> dict[str, Any]:
    ms = sorted(x * 1000 for x in lags)
    return {
        "name": name,
        "min": min(lags),
        "median": statistics.median(lags),
        "max": max(lags),
        "n": len(ms),
        "p50_ms": statistics.median(ms),
        "p95_ms": ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))],
        "max_ms": ms[-1],
        "note": note,
    }


async def _starts(uri: str, admin: Any, vms: list[Any], feed_kind: str) -> list[float]:
    """Power each VM off then on; the lag from the task's end to its ``started`` event."""
    from pyVim.task import WaitForTask

    from vmwarden.connectors.vsphere.events import VsphereEventFeed
    from vmwarden.engine.watch.poll import POLL_EVERY, PollFeed

    loop = asyncio.get_running_loop()
    got: dict[str, float] = {}
    arrived = asyncio.Event()

    def on_event(event: Any) -> None:
        if event.kind == "started":
            got.setdefault(event.name, event.received)
            arrived.set()

    def on_close(why: str) -> None:
        raise RuntimeError(f"feed lost: {why}")

    feed: Any
    if feed_kind == "events":
        feed = VsphereEventFeed(uri, on_event=on_event, on_close=on_close)
    else:
        feed = PollFeed(uri, on_event=on_event, on_close=on_close, interval=POLL_EVERY)
    feed.attach(loop)
    for vm in vms:
        if vm.runtime.powerState != "poweredOff":
            await asyncio.to_thread(WaitForTask, vm.PowerOffVM_Task())
    await asyncio.to_thread(feed.open)
    lags: list[float] = []
    try:
        for vm in vms:
            await asyncio.to_thread(WaitForTask, vm.PowerOnVM_Task())
            done = time.monotonic()
            deadline = done + 120
            while vm.name not in got and time.monotonic() < deadline:
                arrived.clear()
                try:
                    await asyncio.wait_for(arrived.wait(), max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    break
            if vm.name not in got:
                raise RuntimeError(f"{feed_kind}: start of {vm.name} not seen in 120 s")
            lags.append(max(0.0, got[vm.name] - done))
    finally:
        await asyncio.to_thread(feed.close)
    return lags


def run(repeats: int = 3, hosts: int = HOSTS, per_host: int = PER_HOST) -> list[dict[str, Any]]:
    from pyVim.connect import Disconnect, SmartConnect
    from pyVmomi import vim

    from vmwarden.connectors.vsphere.connection import VsphereConnector

    started = _vcsim(hosts, per_host)
    if isinstance(started, str):
        return [{"name": "vSphere watch", "note": started}]
    proc, host, port = started
    os.environ["VMWARDEN_VSPHERE_PASSWORD"] = PASSWORD
    uri = f"vsphere://{USER}@{host}:{port}?insecure=1"
    si = SmartConnect(host=host, port=port, user=USER, pwd=PASSWORD, disableSslCertValidation=True)
    try:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(
            content.rootFolder, [vim.VirtualMachine], True
        )
        every = list(view.view)
        view.DestroyView()
        pushed = every[: 4 * repeats]
        polled = every[4 * repeats : 4 * repeats + repeats]
        push = asyncio.run(_starts(uri, content, pushed, "events"))
        poll = asyncio.run(_starts(uri, content, polled, "poll"))
        with VsphereConnector(uri) as conn:
            ids = [str(vm.config.instanceUuid) for vm in pushed]
            conn.observe_context()
            one: list[float] = []
            full: list[float] = []
            for vm_id in ids:  # interleaved: noise hits both sides alike
                t0 = time.perf_counter()
                conn.observe(vm_id)
                one.append(time.perf_counter() - t0)
                if len(full) < repeats:
                    t0 = time.perf_counter()
                    conn.observe_context()  # the full retrieval observe used to make
                    full.append(time.perf_counter() - t0)
    finally:
        Disconnect(si)
        proc.terminate()
        proc.wait(timeout=30)
    where = f"{len(every):,} VMs on {hosts} hosts"
    rows = [
        _ms_row(f"start seen, event feed ({where})", push, "WaitForUpdatesEx on latestPage"),
        _ms_row(f"start seen, inventory poll every 5 s ({where})", poll, "PollFeed"),
    ]
    floor, ours = statistics.median(full), statistics.median(one)
    rows.append(
        {"name": f"floor: full property retrieval ({where})", "min": min(full),
         "median": floor, "max": max(full), "n": len(full)}
    )  # fmt: skip
    rows.append(
        {"name": f"observe one VM ({where})", "min": min(one), "median": ours, "max": max(one),
         "n": len(one), "ratio_to_floor": ours / floor}
    )  # fmt: skip
    return rows


if __name__ == "__main__":
    for r in run():
        print(r)
