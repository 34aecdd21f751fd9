"""Keyset paging (``store/pages.py`` ``after``): walking a listing page by page gives every
row once, in the offset listing's order, even when rows come and go between pages, where
offset paging repeats or skips rows. On SQLite, and on PostgreSQL with
``VMWARDEN_TEST_PG_URL``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from tests.store.store_builders import T0, fresh_pg_store, make_vm
from vmwarden.model import VM, Finding, Severity, State
from vmwarden.store import Store
from vmwarden.store.pages import (
    HISTORY_KEY,
    VM_KEY,
    FindingQuery,
    Pages,
    VmQuery,
    decode,
    encode,
    vm_key,
)

PG_URL = os.environ.get("VMWARDEN_TEST_PG_URL")
HOSTS = ("kvm1", "kvm2", "kvm3")
LIMIT = 7


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Store]:
    if request.param == "sqlite":
        with Store.open(f"sqlite:///{tmp_path / 'k.db'}") as opened:
            yield opened
    else:
        if not PG_URL:
            pytest.skip("set VMWARDEN_TEST_PG_URL to test PostgreSQL")
        with fresh_pg_store(PG_URL) as opened:
            yield opened


def _estate(n: int) -> list[VM]:
    """``n`` VMs over three hosts; names repeat across hosts (the id breaks the tie)."""
    return [make_vm(i, host=HOSTS[i % 3], name=f"vm{i // 3:04d}") for i in range(n)]


def _walk(
    page: Callable[[Any], list[dict[str, Any]]],
    key: Callable[[dict[str, Any]], tuple[Any, ...]],
    between: Callable[[int], None] = lambda _n: None,
) -> list[dict[str, Any]]:
    """Every page by keyset (the cursor round-tripped as the API hands it out);
    ``between(n)`` runs after the n-th page."""
    out: list[dict[str, Any]] = []
    after = None
    for n in range(1, 1000):
        items = page(after)
        out += items
        if len(items) < LIMIT:
            return out
        after = decode(encode(key(items[-1])), VM_KEY if len(key(items[-1])) == 3 else HISTORY_KEY)
        between(n)
    raise AssertionError("the walk did not end")


def test_a_keyset_walk_gives_every_vm_once_in_order(store: Store) -> None:
    vms = _estate(100)
    store.record_inventory(vms, now=T0, complete_hosts=set(HOSTS))
    pages = Pages(store)
    everything, total = pages.vms(VmQuery(), limit=500, offset=0)
    walked = _walk(lambda a: pages.vms(VmQuery(), limit=LIMIT, offset=0, after=a)[0], vm_key)
    assert total == 100
    assert [v["id"] for v in walked] == [v["id"] for v in everything]
    by_host = _walk(
        lambda a: pages.vms(VmQuery(host="kvm2"), limit=LIMIT, offset=0, after=a)[0], vm_key
    )
    assert [v["id"] for v in by_host] == [v["id"] for v in everything if v["host"] == "kvm2"]


def test_rows_that_come_and_go_between_pages_neither_repeat_nor_vanish(store: Store) -> None:
    """After the third page, a VM already listed is removed and one is added before the
    cursor: the keyset walk still lists each VM that was there throughout exactly once;
    offset paging, walked the same way, lists one of them twice."""
    vms = _estate(60)
    store.record_inventory(vms, now=T0, complete_hosts=set(HOSTS))
    early = sorted(vms, key=lambda v: (v.host, v.name, v.id))[0]
    pages = Pages(store)

    def churn(n: int) -> None:
        if n == 3:
            kept = [v for v in vms if v.id != early.id]
            added = make_vm(10_000, host="kvm1", name="vm0000")  # sorts before the cursor
            store.record_inventory(
                [*kept, added], now=T0 + timedelta(minutes=1), complete_hosts=set(HOSTS)
            )

    walked = _walk(lambda a: pages.vms(VmQuery(), limit=LIMIT, offset=0, after=a)[0], vm_key, churn)
    ids = [v["id"] for v in walked]
    assert len(ids) == len(set(ids)) == 60  # the removed one was listed before it went
    assert {v.id for v in vms} == set(ids)

    store.record_inventory(vms, now=T0 + timedelta(minutes=2), complete_hosts=set(HOSTS))
    by_offset: list[str] = []
    for n, offset in enumerate(range(0, 70, LIMIT), 1):
        by_offset += [v["id"] for v in pages.vms(VmQuery(), limit=LIMIT, offset=offset)[0]]
        if n == 3:
            kept = [v for v in vms if v.id != early.id]
            store.record_inventory(kept, now=T0 + timedelta(minutes=3), complete_hosts=set(HOSTS))
    assert len(by_offset) != len(set(by_offset)) or set(by_offset) != {v.id for v in vms}


def test_findings_and_history_walk_by_keyset(store: Store) -> None:
    """Findings by id; history newest first, many changes at the same instant (the id
    breaks the tie, so no page boundary splits them wrongly)."""
    vms = _estate(30)
    store.record_inventory(vms, now=T0, complete_hosts=set(HOSTS))
    for step in (1, 2):  # every VM changes state twice, all at the same two instants
        for vm in vms:
            vm.state = State.SHUTOFF if vm.state != State.SHUTOFF else State.RUNNING
        store.record_inventory(vms, now=T0 + timedelta(hours=step), complete_hosts=set(HOSTS))
    found = [Finding("r", "vm", v.id, v.name, v.host, Severity.LOW, {}) for v in vms]
    store.record_findings(found, now=T0)
    pages = Pages(store)
    query = FindingQuery(status="open")
    every, _ = pages.findings(query, limit=500, offset=0)
    walked: list[dict[str, Any]] = []
    after = None
    while True:
        items, _ = pages.findings(query, limit=LIMIT, offset=0, after=after)
        walked += items
        if len(items) < LIMIT:
            break
        after = (items[-1]["id"],)
    assert [f["id"] for f in walked] == [f["id"] for f in every] and len(walked) == 30

    history, total = pages.history(vm_id=None, field="state", value=None, limit=500, offset=0)
    assert total == 90  # each VM: its first state, then two changes

    def hist(a: Any) -> list[dict[str, Any]]:
        return pages.history(vm_id=None, field="state", value=None, limit=LIMIT, offset=0, after=a)[
            0
        ]

    walked_h = _walk(hist, lambda h: (h["at"], h["id"]))
    assert [h["id"] for h in walked_h] == [h["id"] for h in history]


def test_a_cursor_of_another_listing_is_refused() -> None:
    with pytest.raises(ValueError, match="not a cursor"):
        decode(encode((5,)), VM_KEY)
    with pytest.raises(ValueError, match="not a cursor"):
        decode("%%%", VM_KEY)
    with pytest.raises(ValueError, match="not a cursor"):
        decode(encode(("a", "b", 3)), VM_KEY)
