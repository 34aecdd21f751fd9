"""A scheduler restart is survived: while it is down the sweep reads every disk itself (never
an exception that would end ``watch``), and once it is back the same executor (``watch``
keeps one for its life) sends the disks to the host's worker again, which rejoined.

A lab cluster (tcp://, ``--insecure``) of its own, on a fixed port so the restarted
scheduler is at the same address."""

from __future__ import annotations

import signal
import socket
from dataclasses import replace
from pathlib import Path

from tests.distributed.conftest import Certs, Cluster, Estate, start_scheduler
from tests.distributed.test_executor import _found, _sweep
from vmwarden.distributed.executor import DaskDisks
from vmwarden.distributed.security import cluster_security


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_scheduler_restart_is_survived(estate: Estate, certs: Certs, tmp_path: Path) -> None:
    port = _free_port()
    scheduler, address = start_scheduler(tmp_path, None, port)
    host_a = replace(estate, uris=estate.uris[:1])
    lab = Cluster(tmp_path, certs, address, scheduler, dict(estate.storage), insecure=True)
    lab.death_timeout = 120  # the sweep during the outage reads every disk itself first
    executor = None
    try:
        lab.start_worker("host-a")
        lab.wait_for({"host-a"})
        security = cluster_security(address, None, insecure=True)
        executor = DaskDisks(address, security, timeout=5)
        before = _sweep(host_a, tmp_path / "1.sqlite", executor)
        assert before.disk_reads == {"host-a": "worker"}

        lab.scheduler.send_signal(signal.SIGKILL)
        lab.scheduler.wait()
        during = _sweep(host_a, tmp_path / "2.sqlite", executor)
        assert during.disk_reads == {"host-a": "local"}

        lab.scheduler, again = start_scheduler(tmp_path, None, port)
        assert again == address
        lab.wait_for({"host-a"})  # the worker rejoined the new scheduler
        after = _sweep(host_a, tmp_path / "3.sqlite", executor)
        assert after.disk_reads == {"host-a": "worker"}
        assert _found(before) == _found(during) == _found(after)
        assert _found(before)  # host-a's VMs have findings to compare
    finally:
        if executor is not None:
            executor.close()
        lab.stop()
