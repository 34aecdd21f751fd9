"""``execute_rows``: SQLite's compiled-once executemany stores exactly what SQLAlchemy would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import insert, select

from vmwarden.store import Store
from vmwarden.store.base import execute_rows, upsert
from vmwarden.store.tables import vm_history, vms

PLUS2 = timezone(timedelta(hours=2))


def _vm_row(i: int, seen: datetime) -> dict[str, object]:
    return {
        "id": f"vm-{i}",
        "name": f"n{i}",
        "host": "h",
        "uri": "test:///h.xml",
        "state": "running",
        "persistent": i % 2 == 0,
        "vcpus": None if i == 1 else i,
        "memory_kib": 2**40 + i,
        "owner": None,
        "classification": "pci",
        "template": None,
        "registered": None if i == 2 else True,
        "record": {"id": f"vm-{i}", "nested": {"list": [1, "two", None]}},
        "record_digest": "d" * 32,
        "first_seen": seen,
        "last_seen": seen,
        "state_since": None,
        "gone_at": None,
    }


def test_rows_round_trip_with_types_and_time_zones(store: Store) -> None:
    t0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    same_instant = t0.astimezone(PLUS2)  # one instant, two spellings: one stored value
    rows = [_vm_row(i, t0 if i % 2 else same_instant) for i in range(5)]
    with store._write() as conn:
        execute_rows(conn, insert(vms), rows)
    with store._read() as conn:
        got = {r.id: r for r in conn.execute(select(vms))}
    assert len(got) == 5
    for row in rows:
        stored = got[str(row["id"])]
        assert stored.first_seen == t0 and stored.first_seen.tzinfo is not None
        assert stored.record == row["record"]
        assert stored.persistent is row["persistent"] and stored.registered == row["registered"]
        assert stored.vcpus == row["vcpus"] and stored.memory_kib == row["memory_kib"]
        assert stored.state_since is None


def test_upsert_updates_only_the_named_columns(store: Store) -> None:
    t0 = datetime(2026, 1, 2, tzinfo=UTC)
    with store._write() as conn:
        upsert(conn, vms, [_vm_row(1, t0)], keys=["id"], update=["name"])
        changed = _vm_row(1, t0 + timedelta(days=1)) | {"name": "renamed", "vcpus": 99}
        upsert(conn, vms, [changed], keys=["id"], update=["name", "last_seen"])
    with store._read() as conn:
        (row,) = conn.execute(select(vms)).all()
    assert (row.name, row.vcpus) == ("renamed", None)
    assert row.first_seen == t0 and row.last_seen == t0 + timedelta(days=1)


def test_autoincrement_table_and_empty_batches(store: Store) -> None:
    t0 = datetime(2026, 1, 2, tzinfo=UTC)
    rows = [
        {"vm_id": "a", "at": t0 + timedelta(seconds=i), "field": "state", "old": None,
         "new": str(i), "source": "scan"}
        for i in range(4500)  # more than one chunk
    ]  # fmt: skip
    with store._write() as conn:
        execute_rows(conn, insert(vm_history), [])
        execute_rows(conn, insert(vm_history), rows)
    with store._read() as conn:
        got = conn.execute(select(vm_history).order_by(vm_history.c.id)).all()
    assert [r.new for r in got] == [str(i) for i in range(4500)]
    assert got[-1].at == t0 + timedelta(seconds=4499)
    assert len({r.id for r in got}) == 4500
