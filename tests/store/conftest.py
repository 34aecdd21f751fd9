"""Store fixtures: real SQLite files in tmp_path, real model VMs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.store.store_builders import T0, make_vm
from vmwarden.model import VM
from vmwarden.store import Store


@pytest.fixture
def vm_factory() -> Callable[..., VM]:
    return make_vm


@pytest.fixture
def t0() -> datetime:
    return T0


@pytest.fixture
def later() -> Callable[[int], datetime]:
    return lambda minutes: T0 + timedelta(minutes=minutes)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "vmwarden.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{db_path}") as opened:
        yield opened
