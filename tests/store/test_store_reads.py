"""``store.reads``: ``report findings`` on an up-to-date SQLite file without SQLAlchemy reads
what ``Store.open_findings`` reads, and leaves every other store to ``Store``."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from tests.store.store_builders import T0
from vmwarden.model import Finding, Severity
from vmwarden.store import Store
from vmwarden.store.reads import open_findings


def _findings() -> list[Finding]:
    hostile = {"path": "/x/\u202e\x1b[31m", "n": [1, 2.5, None], "deep": {"k": ["é", True]}}
    return [
        Finding("rogue", "vm", f"id-{i}", f"vm{i}", f"kvm{i % 3}", sev, {"i": i} | hostile)
        for i, sev in enumerate([Severity.HIGH, Severity.LOW, Severity.CRITICAL, Severity.INFO])
    ] + [Finding("orphaned-image", "image", "/img/a.qcow2", "a.qcow2", "kvm0", Severity.MEDIUM, {})]


def test_the_same_open_findings_as_the_store_in_the_same_order(db_path: Path) -> None:
    url = f"sqlite:///{db_path}"
    with Store.open(url) as store:
        assert open_findings(url) == [] == store.open_findings()
        store.record_findings(_findings(), now=T0)
        store.record_findings(_findings()[1:], now=T0.replace(hour=T0.hour + 1))  # one resolved
        expected = store.open_findings()
    assert len(expected) == 4
    assert open_findings(url) == expected
    assert [f.to_dict() for f in open_findings(url) or []] == [f.to_dict() for f in expected]


def test_other_stores_are_left_to_store(db_path: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{db_path}"
    assert open_findings(url) is None and not db_path.exists()  # created by Store, not here
    with Store.open(url):
        pass
    assert open_findings(url) == []
    for other in (
        f"sqlite+pysqlite:///{db_path}",
        f"sqlite:///{db_path}?timeout=5",
        "sqlite://",
        "sqlite:///:memory:",
        "postgresql+psycopg:///vmwarden?host=/nonexistent",
    ):
        assert open_findings(other) is None, other
    with sqlite3.connect(db_path) as conn:  # a store an older vmwarden left: Store migrates
        conn.execute("UPDATE alembic_version SET version_num = '0001'")
    assert open_findings(url) is None


def test_the_file_is_kept_private(db_path: Path) -> None:
    url = f"sqlite:///{db_path}"
    with Store.open(url):
        pass
    os.chmod(db_path, 0o644)
    assert open_findings(url) == []
    assert db_path.stat().st_mode & 0o777 == 0o600
