"""#11.11: the store's database and the OCSF alert file are readable only by their owner.

An existing file with mode 0644 (argon2 hashes, alerts) is made 0600 when opened, with a
warning naming the file and its old mode; a new one is created 0600 whatever the umask."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmwarden.notify.base import Alert
from vmwarden.notify.receivers import OcsfFile
from vmwarden.store import Store


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_new_database_is_0600(tmp_path: Path, loose_umask: None) -> None:
    db = tmp_path / "new.db"
    Store.open(f"sqlite:///{db}").close()
    assert mode(db) == 0o600


def test_existing_0644_database_is_tightened_with_a_warning(
    tmp_path: Path, loose_umask: None, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "old.db"
    Store.open(f"sqlite:///{db}").close()
    os.chmod(db, 0o644)
    wal = Path(f"{db}-wal")
    wal.write_bytes(b"")  # a leftover from a crashed writer, as loose as the old file
    os.chmod(wal, 0o644)
    with caplog.at_level(logging.WARNING, logger="vmwarden.store.private"):
        store = Store.open(f"sqlite:///{db}")
    try:
        assert mode(db) == 0o600
        assert mode(wal) == 0o600  # (SQLite removes it when the last connection closes)
    finally:
        store.close()
    messages = [r.getMessage() for r in caplog.records]
    assert f"{db} was mode 0644 (readable by other users); changed to 0600" in messages
    assert f"{wal} was mode 0644 (readable by other users); changed to 0600" in messages
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vmwarden.store.private"):
        Store.open(f"sqlite:///{db}").close()
    assert caplog.records == []  # already private: nothing to say


def _alert() -> Alert:
    return Alert(
        event="finding.opened",
        rule="not-approved-template",
        severity="high",
        resource="vm",
        id="0f0e0d0c-0b0a-0908-0706-050403020100",
        name="web01",
        host="qemu:///system",
    )


def test_ocsf_file_is_created_0600_and_an_existing_one_tightened(
    tmp_path: Path, loose_umask: None, caplog: pytest.LogCaptureFixture
) -> None:
    fresh = tmp_path / "fresh.ocsf"
    OcsfFile(str(fresh)).send(_alert())
    assert mode(fresh) == 0o600
    old = tmp_path / "old.ocsf"
    old.write_text("")
    os.chmod(old, 0o644)
    with caplog.at_level(logging.WARNING, logger="vmwarden.store.private"):
        OcsfFile(str(old)).send(_alert())
    assert mode(old) == 0o600
    assert len(old.read_text().splitlines()) == 1
    assert [r.getMessage() for r in caplog.records] == [
        f"{old} was mode 0644 (readable by other users); changed to 0600"
    ]
