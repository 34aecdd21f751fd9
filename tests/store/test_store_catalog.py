"""The approved-template catalog and its audit trail."""

from __future__ import annotations

from tests.store.store_builders import T0
from vmwarden.store import Store

D1, D2 = "sha256:" + "aa" * 32, "sha256:" + "bb" * 32


def test_approve_and_catalog(store: Store) -> None:
    store.approve_template("debian12-base", D1, "/srv/t/debian12.qcow2", {"os": "debian"}, "alice")
    assert store.catalog() == {D1: "debian12-base"}
    (template,) = store.templates()
    assert template["approved_by"] == "alice" and template["fingerprint"] == {"os": "debian"}
    assert template["approved_at"].tzinfo is not None


def test_reapproving_a_name_updates_it(store: Store) -> None:
    store.approve_template("debian12-base", D1, "/srv/t/a.qcow2", {}, "alice", now=T0)
    store.approve_template("debian12-base", D2, "/srv/t/b.qcow2", {"v": 2}, "bob")
    assert store.catalog() == {D2: "debian12-base"}
    (template,) = store.templates()
    assert (template["path"], template["approved_by"]) == ("/srv/t/b.qcow2", "bob")
    events = store.journal_entries(action="template-approve")
    assert [e.actor for e in events] == ["bob", "alice"]
    assert events[0].changes["previous_digest"] == D1
    assert events[0].id == ""  # operator event: no VM


def test_revoke(store: Store) -> None:
    store.approve_template("old", D1, None, {}, "alice")
    assert store.revoke_template("old", "bob") is True
    assert store.revoke_template("old", "bob") is False
    assert store.catalog() == {}
    assert store.journal_entries(action="template-revoke")[0].changes == {
        "name": "old",
        "digest": D1,
    }
