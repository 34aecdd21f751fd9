"""The dashboard's and API's paged queries use an index on PostgreSQL (migration 0008).

A store of 4,000 VMs on 40 hosts with ~12,000 findings and their history; each list the API
serves (``store/pages.py``) and the streaming sweep's per-host reads run once while their
SQL is captured, then each statement is EXPLAINed with ``enable_seqscan = off``. That
setting makes a sequential scan the planner's last resort, so a ``Seq Scan`` on ``vms``,
``findings`` or ``vm_history`` in a plan means no index can serve the query at all (at a few
thousand rows the planner would otherwise rightly prefer a scan, and the test would say
nothing about a million rows). Substring search (``q=``, history ``value=``) is left out:
``LIKE '%x%'`` cannot use a btree index (that would take pg_trgm).

Needs ``VMWARDEN_TEST_PG_URL`` (``scripts/start-postgres.sh``); skipped without it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, text

from tests.store.store_builders import T0, fresh_pg_store, make_vm
from vmwarden.model import Finding, Severity, State
from vmwarden.store import Store
from vmwarden.store.pages import FindingQuery, Pages, VmQuery

PG_URL = os.environ.get("VMWARDEN_TEST_PG_URL")
pytestmark = pytest.mark.skipif(not PG_URL, reason="set VMWARDEN_TEST_PG_URL to test PostgreSQL")

BIG = ("vms", "findings", "vm_history")
HOSTS, VMS = 40, 4000
RULES = ("zone", "dupmac", "ownerless")
SEVERITIES = (Severity.LOW, Severity.MEDIUM, Severity.HIGH)


@pytest.fixture(scope="module")
def loaded() -> Iterator[Store]:
    with fresh_pg_store(PG_URL) as store:
        states = (State.RUNNING, State.PAUSED, State.SHUTOFF)
        vms = [make_vm(i, host=f"kvm{i % HOSTS:02d}", state=states[i % 3]) for i in range(VMS)]
        hosts = {vm.host for vm in vms}
        store.record_inventory(vms, now=T0, complete_hosts=hosts)
        for vm in vms[::2]:  # history: every other VM changes state once
            vm.state = State.SHUTOFF if vm.state != State.SHUTOFF else State.RUNNING
        store.record_inventory(vms, now=T0 + timedelta(hours=1), complete_hosts=hosts)
        found = [
            Finding(rule, "vm", vm.id, vm.name, vm.host, SEVERITIES[(i + r) % 3], {"n": i})
            for i, vm in enumerate(vms)
            for r, rule in enumerate(RULES)
        ]
        store.record_findings(found, now=T0)
        store.record_findings(found[: len(found) // 2], now=T0 + timedelta(hours=1))  # resolve
        with store._engine.begin() as conn:
            for table in BIG:
                conn.execute(text(f"ANALYZE {table}"))
        yield store


def _captured(store: Store, call: Callable[[], Any]) -> list[tuple[str, Any]]:
    statements: list[tuple[str, Any]] = []

    def grab(_conn: Any, _cursor: Any, statement: str, params: Any, *_a: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, params))

    event.listen(store._engine, "before_cursor_execute", grab)
    try:
        call()
    finally:
        event.remove(store._engine, "before_cursor_execute", grab)
    assert statements
    return statements


def _plans(store: Store, call: Callable[[], Any]) -> list[str]:
    plans = []
    with store._engine.connect() as conn:
        conn.exec_driver_sql("SET enable_seqscan = off")
        for statement, params in _captured(store, call):
            rows = conn.exec_driver_sql("EXPLAIN " + statement, params).all()
            plans.append("\n".join(r[0] for r in rows))
        conn.exec_driver_sql("RESET enable_seqscan")
    return plans


QUERIES: dict[str, Callable[[Store], Any]] = {
    "vms (all, first page)": lambda s: Pages(s).vms(VmQuery(), limit=50, offset=0),
    "vms by host": lambda s: Pages(s).vms(VmQuery(host="kvm07"), limit=50, offset=0),
    "vms by state": lambda s: Pages(s).vms(VmQuery(state="paused"), limit=50, offset=100),
    "vms by host and state": lambda s: Pages(s).vms(
        VmQuery(host="kvm07", state="running"), limit=50, offset=0
    ),
    "open findings": lambda s: Pages(s).findings(FindingQuery(status="open"), limit=50, offset=0),
    "open findings by rule": lambda s: Pages(s).findings(
        FindingQuery(status="open", rule="dupmac"), limit=50, offset=50
    ),
    "open findings by severity": lambda s: Pages(s).findings(
        FindingQuery(status="open", severity="high"), limit=50, offset=0
    ),
    "open findings by host": lambda s: Pages(s).findings(
        FindingQuery(status="open", host="kvm03"), limit=50, offset=0
    ),
    "findings of a VM": lambda s: Pages(s).findings(
        FindingQuery(resource="vm", resource_id=make_vm(17).id), limit=50, offset=0
    ),
    "a VM's history": lambda s: Pages(s).history(
        vm_id=make_vm(42).id, field=None, value=None, limit=50, offset=0
    ),
    "vms, a keyset page deep in": lambda s: Pages(s).vms(
        VmQuery(), limit=50, offset=0, after=("kvm30", "vm03030", make_vm(3030).id)
    ),
    "vms by state, a keyset page": lambda s: Pages(s).vms(
        VmQuery(state="paused"), limit=50, offset=0, after=("kvm20", "vm02020", make_vm(2020).id)
    ),
    "open findings by rule, a keyset page": lambda s: Pages(s).findings(
        FindingQuery(status="open", rule="dupmac"), limit=50, offset=0, after=(9000,)
    ),
    "a host's VMs read back (streaming sweep)": lambda s: s.host_records("kvm05"),
    "a host's findings compared (streaming sweep)": lambda s: s.record_findings(
        [Finding("zone", "vm", make_vm(5).id, "vm00005", "kvm05", Severity.LOW, {"n": 5})],
        now=T0 + timedelta(hours=2),
        scope_hosts={"kvm05"},
        only_hosts=True,
        scope_rules={"zone"},
    ),
}


@pytest.mark.parametrize("name", list(QUERIES))
def test_each_dashboard_query_uses_an_index(loaded: Store, name: str) -> None:
    plans = _plans(loaded, lambda: QUERIES[name](loaded))
    for plan in plans:
        scanned = re.findall(r"Seq Scan on (\w+)", plan)
        assert not [t for t in scanned if t in BIG], f"{name}:\n{plan}"
    assert any(re.search(r"Index (Only )?Scan", p) for p in plans), "\n\n".join(plans)
