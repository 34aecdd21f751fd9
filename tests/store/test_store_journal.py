"""The audit journal: begin/update, queries, incomplete actions, active quarantine."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmwarden.errors import StoreError
from vmwarden.store import Store

VM = {"vm_id": "u1", "vm_name": "web01", "host": "kvm1", "uri": "qemu+ssh://kvm1/system"}


def _quarantine(store: Store, status: str = "pending", vm_id: str = "u1") -> int:
    args = VM | {"vm_id": vm_id}
    return store.journal_begin(
        "quarantine", **args, actor="engine", rule="unapproved-template", status=status
    )


def _release(store: Store, parent: int, status: str = "done") -> int:
    entry = store.journal_begin("release", **VM, actor="alice", reason="patched", parent_id=parent)
    store.journal_update(entry, status=status)
    return entry


def test_begin_update_get(store: Store) -> None:
    entry = store.journal_begin(
        "quarantine",
        **VM,
        actor="engine",
        rule="forbidden-software",
        changes={"nics": {"52:54:00:00:00:01": {"network": "prod"}}},
    )
    record = store.journal_get(entry)
    assert (record.journal_id, record.action, record.id, record.status) == (
        entry,
        "quarantine",
        "u1",
        "pending",
    )
    assert record.created_at is not None and record.created_at.tzinfo is not None
    updated = store.journal_update(entry, status="done", changes={"link": "down"})
    assert updated.changes == {"nics": {"52:54:00:00:00:01": {"network": "prod"}}, "link": "down"}
    assert updated.updated_at >= updated.created_at
    replaced = store.journal_update(entry, status="done", changes={"x": 1}, replace_changes=True)
    assert replaced.changes == {"x": 1}
    failed = store.journal_update(entry, status="failed", error="domain vanished")
    assert failed.error == "domain vanished" and failed.changes == {"x": 1}


def test_unknown_status_lists_choices(store: Store) -> None:
    entry = _quarantine(store)
    with pytest.raises(StoreError, match="valid: pending, done, partial, failed"):
        store.journal_update(entry, status="finished")


def test_unknown_entry(store: Store) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        store.journal_update(999, status="done")
    with pytest.raises(StoreError, match="does not exist"):
        store.journal_get(999)
    with pytest.raises(StoreError, match="parent"):
        store.journal_begin("release", **VM, actor="alice", parent_id=999)


def test_entries_newest_first_with_filters(store: Store) -> None:
    q = _quarantine(store, status="done")
    r = _release(store, q)
    other = _quarantine(store, vm_id="u2")
    audit = store.audit("policy-load", "alice", {"file": "policy.yaml"})
    assert [e.journal_id for e in store.journal_entries()] == [audit, other, r, q]
    assert [e.journal_id for e in store.journal_entries(vm_id="u1")] == [r, q]
    assert [e.journal_id for e in store.journal_entries(action="quarantine")] == [other, q]
    assert [e.journal_id for e in store.journal_entries(status="pending")] == [other]
    assert [e.journal_id for e in store.journal_entries(limit=1)] == [audit]
    cut = store.journal_get(other).created_at
    assert [e.journal_id for e in store.journal_entries(since=cut)] == [audit, other]
    assert store.journal_parent(r) == q
    event = store.journal_get(audit)
    assert event.id == "" and event.action == "policy-load" and event.status == "done"
    assert event.changes == {"file": "policy.yaml"}


def test_incomplete_actions(store: Store) -> None:
    a = _quarantine(store)
    b = _quarantine(store, vm_id="u2")
    store.journal_update(a, status="done")
    store.audit("policy-load", "alice", {})
    assert [e.journal_id for e in store.incomplete_actions()] == [b]


def test_active_quarantine(store: Store) -> None:
    assert store.active_quarantine("u1") is None
    q = _quarantine(store)
    assert store.active_quarantine("u1").journal_id == q  # pending counts: it may have applied
    store.journal_update(q, status="done")
    assert store.active_quarantine("u1").journal_id == q
    assert store.active_quarantine("u2") is None


def test_failed_quarantine_is_not_active(store: Store) -> None:
    q = _quarantine(store)
    store.journal_update(q, status="failed", error="no such network")
    assert store.active_quarantine("u1") is None


def test_completed_release_ends_quarantine(store: Store) -> None:
    q = _quarantine(store, status="done")
    _release(store, q, status="failed")
    assert store.active_quarantine("u1").journal_id == q  # a failed release changes nothing
    _release(store, q, status="done")
    assert store.active_quarantine("u1") is None
    again = _quarantine(store, status="done")
    assert store.active_quarantine("u1").journal_id == again


def test_quarantine_marked_released_is_not_active(store: Store) -> None:
    q = _quarantine(store, status="done")
    store.journal_update(q, status="released")
    assert store.active_quarantine("u1") is None


def test_later_noop_quarantine_keeps_the_earlier_one_active(store: Store) -> None:
    q = _quarantine(store, status="done")
    noop = _quarantine(store)
    store.journal_update(noop, status="noop")
    assert store.active_quarantine("u1").journal_id == q


def test_journal_is_durable_across_reopen(db_path: Path) -> None:
    url = f"sqlite:///{db_path}"
    with Store.open(url) as first:
        q = _quarantine(first)
        first.journal_update(q, status="done", changes={"restore": {"vnet0": "prod"}})
    with Store.open(url) as second:
        active = second.active_quarantine("u1")
        assert active is not None and active.changes == {"restore": {"vnet0": "prod"}}
        assert second.incomplete_actions() == []


def test_partial_quarantine_is_active_until_released(store: Store) -> None:
    q = _quarantine(store)
    store.journal_update(q, status="partial", error="52:54:00:00:00:02 live: failed")
    assert store.active_quarantine("u1").journal_id == q
    _release(store, q, status="partial")  # a partial release restores only part
    assert store.active_quarantine("u1").journal_id == q
    _release(store, q, status="done")
    assert store.active_quarantine("u1") is None
