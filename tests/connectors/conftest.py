"""Fixtures of the connector tests: a test-driver fleet file and a connection to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.connectors.connectors_fleet import fleet_vms, write_fleet
from vmwarden.connectors.libvirt.connection import LibvirtConnector


@pytest.fixture(scope="session")
def fleet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``…/dc1-fleet.xml``: 300 domains (+ one without devices), 3 networks, 1 pool."""
    return write_fleet(tmp_path_factory.mktemp("fleet") / "dc1-fleet.xml", fleet_vms())


@pytest.fixture(scope="session")
def fleet_uri(fleet_file: Path) -> str:
    return f"test://{fleet_file}"


@pytest.fixture
def conn(fleet_uri: str) -> Iterator[LibvirtConnector]:
    """A fresh connection (so a fresh in-memory copy of the fleet) per test."""
    with LibvirtConnector(fleet_uri) as connector:
        yield connector
