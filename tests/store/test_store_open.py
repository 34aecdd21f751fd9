"""Opening a store: URLs, pragmas, migrations, file permissions, errors, durability."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from tests.store.store_builders import T0, make_vm
from vmwarden.errors import StoreError
from vmwarden.store import Store
from vmwarden.store.db import head_revision
from vmwarden.store.tables import full_metadata

TABLES = {
    "vms",
    "host_listings",
    "vm_history",
    "images",
    "digest_cache",
    "templates",
    "findings",
    "journal",
    "scans",
}


def _sqlite(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def test_migration_creates_all_tables_at_head(store: Store, db_path: Path) -> None:
    engine = create_engine(f"sqlite:///{db_path}")
    names = set(inspect(engine).get_table_names())
    assert names >= TABLES | {"alembic_version"}
    assert _sqlite(db_path, "SELECT version_num FROM alembic_version") == [(head_revision(),)]
    engine.dispose()


def test_migration_matches_the_table_classes(store: Store, db_path: Path) -> None:
    """The frozen migration and tables.py describe the same schema."""
    engine = create_engine(f"sqlite:///{db_path}")
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), full_metadata())
    engine.dispose()
    assert diffs == []


def test_reopening_is_idempotent(db_path: Path) -> None:
    url = f"sqlite:///{db_path}"
    for _ in range(3):
        with Store.open(url) as opened:
            opened.audit("policy-load", "tester", {})
    assert _sqlite(db_path, "SELECT count(*) FROM alembic_version") == [(1,)]
    assert _sqlite(db_path, "SELECT count(*) FROM journal") == [(3,)]


def test_sqlite_pragmas(store: Store) -> None:
    with store._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0


def test_new_database_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "vmwarden.db"
    with Store.open(f"sqlite:///{path}"):
        pass
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_default_url_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "env.db"
    monkeypatch.setenv("VMWARDEN_DB", f"sqlite:///{path}")
    with Store.open() as opened:
        opened.audit("policy-load", "tester", {})
    assert path.is_file()


def test_default_url_under_user_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VMWARDEN_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    with Store.open():
        pass
    path = tmp_path / "xdg" / "vmwarden" / "vmwarden.db"
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "not a database URL"),
        ("mysql://user@localhost/vmwarden", "unsupported database 'mysql'"),
        ("oracle+cx://x/y", "unsupported database"),
    ],
)
def test_bad_url_is_a_clear_store_error(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as caught:
        Store.open(url)
    assert caught.value.hint and "sqlite:///" in caught.value.hint


def test_unwritable_path_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot open store") as caught:
        Store.open(f"sqlite:///{blocker}/vmwarden.db")
    assert "--db" in (caught.value.hint or "")


def test_unreachable_postgresql_is_a_store_error() -> None:
    # Either the driver is missing or nothing listens on port 1: both must be StoreError.
    with pytest.raises(StoreError, match="cannot open store 'postgresql://vm:\\*\\*\\*@"):
        Store.open("postgresql://vm:secret@127.0.0.1:1/vmwarden")


def test_password_never_shown(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as caught:
        Store.open("postgresql://vm:hunter2@127.0.0.1:1/vmwarden")
    assert "hunter2" not in str(caught.value)


def test_in_memory_store_works() -> None:
    with Store.open("sqlite://") as mem:
        entry = mem.audit("policy-load", "tester", {"file": "p.yaml"})
        assert mem.journal_get(entry).changes == {"file": "p.yaml"}


def test_journal_survives_close_and_reopen(db_path: Path) -> None:
    url = f"sqlite:///{db_path}"
    with Store.open(url) as first:
        entry = first.journal_begin(
            "quarantine",
            vm_id="u1",
            vm_name="web01",
            host="kvm1",
            uri="qemu:///system",
            actor="engine",
            rule="unapproved-template",
            changes={"nics": {"vnet0": "prod"}},
        )
    # The WAL may still hold the commit; a reader on a fresh connection must see it.
    assert _sqlite(db_path, "SELECT status FROM journal") == [("pending",)]
    with Store.open(url) as second:
        record = second.journal_get(entry)
        assert record.status == "pending"
        assert record.changes == {"nics": {"vnet0": "prod"}}
        assert second.incomplete_actions()[0].journal_id == entry


def _open_and_write(url: str) -> None:
    with Store.open(url) as opened:
        opened.audit("policy-load", "worker", {})


def test_concurrent_first_open_migrates_once(db_path: Path) -> None:
    url = f"sqlite:///{db_path}"
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_open_and_write, args=(url,)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    assert _sqlite(db_path, "SELECT count(*) FROM journal") == [(4,)]


def test_not_a_database_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not SQLite\n" * 100)
    with pytest.raises(StoreError, match="not a database"):
        Store.open(f"sqlite:///{path}")


def test_database_from_a_newer_vmwarden(db_path: Path) -> None:
    with Store.open(f"sqlite:///{db_path}"):
        pass
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(StoreError, match="cannot migrate") as caught:
        Store.open(f"sqlite:///{db_path}")
    assert "newer vmwarden" in (caught.value.hint or "")


def _journal_then_die(url: str) -> None:
    opened = Store.open(url)
    opened.journal_begin(
        "quarantine", vm_id="u9", vm_name="db9", host="kvm1", uri="qemu:///system", actor="engine"
    )
    os._exit(0)  # no close(), no checkpoint, no interpreter clean-up: like a crash


def test_journal_entry_survives_a_crash_right_after_begin(db_path: Path) -> None:
    url = f"sqlite:///{db_path}"
    with Store.open(url):
        pass
    child = multiprocessing.get_context("spawn").Process(target=_journal_then_die, args=(url,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    with Store.open(url) as reopened:
        (pending,) = reopened.incomplete_actions()
        assert (pending.id, pending.status) == ("u9", "pending")


def test_concurrent_writers_wait_instead_of_failing(db_path: Path) -> None:
    url = f"sqlite:///{db_path}"
    stores = [Store.open(url) for _ in range(4)]

    def write(store: Store, n: int) -> None:
        for i in range(25):
            store.audit("test", f"writer{n}", {"i": i})
            store.record_inventory(
                [make_vm(n * 100 + i, host=f"kvm{n}")], now=T0, complete_hosts=set()
            )

    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(write, s, n) for n, s in enumerate(stores)]:
            future.result()
    for s in stores:
        s.close()
    assert _sqlite(db_path, "SELECT count(*) FROM journal") == [(100,)]
    assert _sqlite(db_path, "SELECT count(*) FROM vms") == [(100,)]


def test_tilde_in_sqlite_path_means_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    with Store.open("sqlite:///~/vmw/vmwarden.db"):
        pass
    assert (tmp_path / "vmw" / "vmwarden.db").is_file()
