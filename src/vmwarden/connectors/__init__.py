"""Connectors: how vmwarden reaches hypervisors (inventory and the operations actions need).

``open_connector(uri)`` picks the implementation registered for the URI's scheme;
``inventory_all(uris)`` sweeps several hosts at once, one thread and connection per host.
"""

from __future__ import annotations

from vmwarden.connectors.base import (
    Connector,
    KnownDomains,
    LiveChangeUnsupportedError,
    inventory_all,
    open_connector,
    register_connector,
    registered_schemes,
)

__all__ = [
    "Connector",
    "KnownDomains",
    "LiveChangeUnsupportedError",
    "inventory_all",
    "open_connector",
    "register_connector",
    "registered_schemes",
]
