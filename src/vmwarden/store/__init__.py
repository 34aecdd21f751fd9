"""vmwarden's store: the only place SQL lives.

``Store.open(url)`` opens (and migrates) an SQLite or PostgreSQL database; its methods are
grouped by noun in the modules of this package (inventory, history, images, digests, catalog,
findings, journal, scans). ``store.reads`` answers ``report findings`` on an up-to-date
SQLite file without SQLAlchemy.

The names below are imported on first use: importing a module of this package (``reads``,
``location``) must not import SQLAlchemy through the package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vmwarden.store.findings import FindingsDelta
    from vmwarden.store.history import HistoryEntry
    from vmwarden.store.images import ImagesDelta
    from vmwarden.store.inventory import InventoryDelta
    from vmwarden.store.store import Store

__all__ = ["FindingsDelta", "HistoryEntry", "ImagesDelta", "InventoryDelta", "Store"]

_HOMES = {
    "FindingsDelta": "vmwarden.store.findings",
    "HistoryEntry": "vmwarden.store.history",
    "ImagesDelta": "vmwarden.store.images",
    "InventoryDelta": "vmwarden.store.inventory",
    "Store": "vmwarden.store.store",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'vmwarden.store' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
