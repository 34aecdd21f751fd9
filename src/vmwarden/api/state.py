"""Everything one app instance holds: settings, the store, connections, scan jobs.

Kept on ``app.state.vmwarden``; built by :func:`vmwarden.api.create_app`, never at import.
The store opens on first use (or is handed in, e.g. by ``watch``, which owns it) and closes
at shutdown only if this app opened it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from vmwarden.api.connections import ConnectionPool
from vmwarden.api.jobs import ScanJobs
from vmwarden.store import Store

if TYPE_CHECKING:
    from vmwarden.api.settings import Settings


class AppState:
    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self._store = store
        self._owns_store = store is None
        self._lock = threading.Lock()
        self.connections = ConnectionPool()
        self.jobs = ScanJobs()

    @property
    def store(self) -> Store:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = Store.open(self.settings.db_url)
        return self._store

    def close(self) -> None:
        self.connections.close()
        with self._lock:
            store, self._store = self._store, None
        if store is not None and self._owns_store:
            store.close()
