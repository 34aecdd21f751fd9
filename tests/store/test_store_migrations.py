"""Migrations: upgrading a database left at an older revision keeps its data; round trips."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import text

from tests.store.store_builders import T0, make_vm
from vmwarden.store import Store, db


def _at_revision(url: str, revision: str) -> None:
    engine = db.connect(url)
    cfg = db.alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    engine.dispose()


def test_upgrade_from_0001_keeps_data(db_path: Path) -> None:
    url = f"sqlite:///{db_path}"
    _at_revision(url, "0001")
    engine = db.connect(url)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO hosts (host, last_seen) VALUES ('kvm1', '2025-03-01 12:00:00')")
        )
        conn.execute(
            text(
                "INSERT INTO images (host, path, format, attached_to, first_seen, last_seen) "
                "VALUES ('kvm1', '/old.qcow2', 'qcow2', '[]', "
                "'2025-03-01 12:00:00', '2025-03-01 12:00:00')"
            )
        )
    engine.dispose()
    with Store.open(url) as store:
        assert db.current_revision(store._engine) == db.head_revision()
        with store._engine.connect() as conn:
            rows = conn.execute(text("SELECT host, kind FROM host_listings")).all()
        assert rows == [("kvm1", "vms")]
        (image,) = store.list_images()
        assert image["path"] == "/old.qcow2" and image["format"] == "qcow2"
        assert image["first_seen"] == T0
        vm = make_vm(1)
        assert store.record_inventory([vm], now=T0, complete_hosts={"kvm1"}).new == [vm.id]


def test_downgrade_and_upgrade_round_trip(db_path: Path) -> None:
    url = f"sqlite:///{db_path}"
    with Store.open(url) as store:
        store.record_inventory([make_vm(1)], now=T0, complete_hosts={"kvm1"})
    engine = db.connect(url)
    cfg = db.alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT host FROM hosts")).all() == [("kvm1",)]
    engine.dispose()
    with Store.open(url) as store:
        assert store.get_vm(make_vm(1).id)["last_seen"] == T0


def test_newest_file_revision_is_alembics_head() -> None:
    """Store.open skips Alembic when the store is at the newest file's revision: only right
    while revisions stay linear and numbered like their files."""
    assert db.newest_revision() == db.head_revision()
    files = sorted(p.name for p in (db.MIGRATIONS / "versions").glob("[0-9]*.py"))
    assert [f[:4] for f in files] == [f"{i:04d}" for i in range(1, len(files) + 1)]


def test_a_store_behind_the_newest_revision_is_still_upgraded(db_path: Path) -> None:
    url = f"sqlite:///{db_path}"
    _at_revision(url, "0005")
    with Store.open(url) as store:
        assert db.stored_revision(store._engine) == db.newest_revision()
