"""vmwarden's store: the only place SQL lives.

``Store.open(url)`` opens (and migrates) an SQLite or PostgreSQL database; its methods are
grouped by noun in the modules of this package (inventory, history, images, digests, catalog,
findings, journal, scans).
"""

from vmwarden.store.findings import FindingsDelta
from vmwarden.store.history import HistoryEntry
from vmwarden.store.images import ImagesDelta
from vmwarden.store.inventory import InventoryDelta
from vmwarden.store.store import Store

__all__ = ["FindingsDelta", "HistoryEntry", "ImagesDelta", "InventoryDelta", "Store"]
