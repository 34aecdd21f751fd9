"""``watch`` with a scheduler: its reconciles read each host's disks on the host's worker,
and /metrics says per host how they were read."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.distributed.conftest import Cluster, Estate
from tests.distributed.test_executor import _executor
from vmwarden.engine.scan import SweepOptions
from vmwarden.engine.watch import WatchConfig, Watcher
from vmwarden.policy import parse_policy
from vmwarden.store import Store


def test_watch_reads_on_the_workers_and_says_so_in_metrics(
    estate: Estate, cluster: Cluster, tmp_path: Path, watch_loop: asyncio.AbstractEventLoop
) -> None:
    loop = watch_loop  # libvirt dispatches events on one loop per process (tests/conftest.py)
    executor = _executor(cluster)
    store = Store.open(f"sqlite:///{tmp_path / 'watch.db'}")
    config = WatchConfig(uris=estate.uris[:2], interval=3600, enforce=False)
    watcher = Watcher(
        config, parse_policy(estate.policy), store, sweep_options=SweepOptions(executor=executor)
    )
    future = asyncio.run_coroutine_threadsafe(watcher.run(), loop)
    try:
        deadline = time.monotonic() + 180
        while not watcher.started.is_set() and not future.done():
            assert time.monotonic() < deadline, "no first reconcile"
            time.sleep(0.1)
        if future.done():
            future.result()
        text = watcher.metrics.render()
        for host in ("host-a", "host-b"):
            assert f'vmwarden_disk_reads{{host="{host}",via="worker"}} 1' in text
        guests = {vm.name: vm.guest for vm in watcher.sweep.inventories[0].vms}
        assert guests and all(g is not None and g.os_name == "debian" for g in guests.values())
    finally:
        watcher.stop()
        future.result(60)
        store.close()
        executor.close()
