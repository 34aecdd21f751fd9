"""Fixtures of the enforce tests: a fleet file per test, a real SQLite store, a connector."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.enforce.enforce_fleet import build_fleet
from vmwarden.connectors.libvirt.connection import LibvirtConnector
from vmwarden.enforce import EnforceContext, QuarantineSpec
from vmwarden.store import Store

SPEC = QuarantineSpec("quarantine", link_down=True)


class JournalTap(Store):
    """The real store, also keeping what each ``journal_begin`` wrote *before* any change."""

    def __init__(self, engine: Any, url: str) -> None:
        super().__init__(engine, url)
        self.begun: list[dict[str, Any]] = []

    def journal_begin(self, action: str, **kw: Any) -> int:
        entry = super().journal_begin(action, **kw)
        self.begun.append(
            {"id": entry, "action": action, "row": copy.deepcopy(self.journal_get(entry))}
        )
        return entry


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    return build_fleet(tmp_path / "hv-enforce.xml")


@pytest.fixture
def uri(fleet: Path) -> str:
    return f"test://{fleet}"


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/db"


@pytest.fixture
def store(db: str) -> Iterator[JournalTap]:
    with JournalTap.open(db) as s:
        yield s


@pytest.fixture
def conn(uri: str) -> Iterator[LibvirtConnector]:
    with LibvirtConnector(uri) as c:
        yield c


@pytest.fixture
def ctx(store: JournalTap, conn: LibvirtConnector) -> EnforceContext:
    return EnforceContext(store=store, connectors={conn.uri: conn}, actor="tester", quarantine=SPEC)
