"""Connections the API acts through: one per URI, kept open, used by one request at a time.

A libvirt connection is not thread-safe, and request handlers run in a thread pool, so each
URI has a lock. Keeping connections open also matters for libvirt's test driver, whose
state lives in the connection: a release must see what the quarantine changed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from vmwarden.connectors import Connector, open_connector
from vmwarden.errors import ConnectorError, DomainGoneError


class ConnectionPool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._conns: dict[str, Connector] = {}

    @contextmanager
    def connection(self, uri: str) -> Iterator[Connector]:
        """The open connector for ``uri`` (opened on first use), exclusively for the block.

        A connector error other than "that VM is gone" closes it; the next use reopens.
        """
        with self._lock:
            lock = self._locks.setdefault(uri, threading.Lock())
        with lock:
            conn = self._conns.get(uri)
            if conn is None:
                conn = self._conns[uri] = open_connector(uri)
            try:
                yield conn
            except DomainGoneError:
                raise
            except ConnectorError:
                self._conns.pop(uri, None)
                conn.close()
                raise

    def close(self) -> None:
        with self._lock:
            conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            conn.close()
