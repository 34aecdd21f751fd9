"""Vulns fixtures: the shipped real-format feed, and guest facts built small."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vmwarden.model import GuestFacts, Package
from vmwarden.vulns import VulnDB

DATA = Path(__file__).parent / "data"


def guest(*packages: Package | str, os_name: str = "debian", os_version: str = "12", **kw: Any):
    """Guest facts; packages as ``Package`` records or ``"name=version"`` (dpkg)."""
    pkgs = [p if isinstance(p, Package) else Package(*p.split("=", 1)) for p in packages]
    return GuestFacts(
        image="/i/guest.qcow2", os_name=os_name, os_version=os_version, packages=pkgs, **kw
    )


def record(ecosystem: str, name: str, *events: dict[str, str], **extra: Any) -> dict[str, Any]:
    """A minimal OSV record with one affected package and one ECOSYSTEM range."""
    rng = {"type": "ECOSYSTEM", "events": list(events)}
    affected = {"package": {"ecosystem": ecosystem, "name": name}, "ranges": [rng]}
    return {"id": extra.pop("id", f"TEST-{name}"), "affected": [affected], **extra}


@pytest.fixture(scope="session")
def feed() -> VulnDB:
    return VulnDB.load(DATA)
