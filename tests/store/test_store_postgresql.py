"""The same store on PostgreSQL, when ``VMWARDEN_TEST_PG_URL`` names a scratch database.

Skipped otherwise (CI uses SQLite). Example::

    VMWARDEN_TEST_PG_URL=postgresql+psycopg://vm@127.0.0.1:54329/vmwarden pytest tests/store
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from tests.store.store_builders import T0, fresh_pg_store, make_vm
from vmwarden.model import State
from vmwarden.store import Store
from vmwarden.store.tables import full_metadata

PG_URL = os.environ.get("VMWARDEN_TEST_PG_URL")
pytestmark = pytest.mark.skipif(not PG_URL, reason="set VMWARDEN_TEST_PG_URL to test PostgreSQL")


@pytest.fixture
def pg() -> Iterator[Store]:
    with fresh_pg_store(PG_URL) as opened:
        yield opened


def test_pg_schema_matches_tables(pg: Store) -> None:
    engine = create_engine(PG_URL)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), full_metadata()) == []
    engine.dispose()


def test_pg_inventory_roundtrip(pg: Store) -> None:
    vms = [make_vm(i, host=f"kvm{i % 3}") for i in range(300)]
    hosts = {"kvm0", "kvm1", "kvm2"}
    assert len(pg.record_inventory(vms, now=T0, complete_hosts=hosts).new) == 300
    again = [make_vm(i, host=f"kvm{i % 3}") for i in range(299)]
    again[0].state = State.SHUTOFF
    delta = pg.record_inventory(again, now=T0 + timedelta(hours=1), complete_hosts=hosts)
    assert delta.changed == [again[0].id] and delta.gone == [vms[-1].id]
    assert again[0].state_since == T0 + timedelta(hours=1)
    assert pg.get_vm(vms[5].id)["last_seen"] == T0 + timedelta(hours=1)
    assert pg.get_vm(vms[-1].id)["last_seen"] == T0


def test_pg_journal(pg: Store) -> None:
    q = pg.journal_begin(
        "quarantine", vm_id="u1", vm_name="n", host="h", uri="qemu:///system", actor="engine"
    )
    pg.journal_update(q, status="done", changes={"nics": {}})
    assert pg.active_quarantine("u1").journal_id == q
