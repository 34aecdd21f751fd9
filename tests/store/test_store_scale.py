"""Scale: a 50,000-VM estate in one call, and an unchanged re-scan that writes nothing.

Timings are printed (``pytest -s``), not asserted: wall-clock belongs in ``make bench``.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

from tests.store.store_builders import T0, make_vm
from vmwarden.store import Store

N = 50_000


def _wal_bytes(db_path: Path) -> int:
    wal = db_path.with_name(db_path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


@pytest.mark.slow
def test_fifty_thousand_vms(store: Store, db_path: Path) -> None:
    hosts = {f"kvm{h:02d}" for h in range(50)}
    first = [make_vm(i, host=f"kvm{i % 50:02d}") for i in range(N)]
    started = time.perf_counter()
    delta = store.record_inventory(first, now=T0, complete_hosts=hosts)
    insert_s = time.perf_counter() - started
    assert len(delta.new) == N

    with store._engine.connect() as conn:  # start the re-scan from an empty WAL
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    second = [make_vm(i, host=f"kvm{i % 50:02d}") for i in range(N)]
    started = time.perf_counter()
    delta = store.record_inventory(second, now=T0 + timedelta(minutes=5), complete_hosts=hosts)
    rescan_s = time.perf_counter() - started
    wal = _wal_bytes(db_path)

    print(f"\n50k VMs: first insert {insert_s:.2f}s, unchanged re-scan {rescan_s:.2f}s, WAL {wal}B")
    assert len(delta.unchanged) == N and delta.vm_rows == 0 and delta.history_rows == 0
    assert wal < 64 * 1024  # a page or two (the hosts table), not the 50k-row vms table
