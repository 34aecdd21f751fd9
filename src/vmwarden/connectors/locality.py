"""Which connection URIs were found to reach a hypervisor on this machine.

A disk path in a VM's definition names a file on the hypervisor's host. The engine reads it
from this machine's filesystem only when that host *is* this machine, which a connector
decides from the connection itself (for libvirt: the daemon's host UUID and hostname, see
``connectors.libvirt.locality``), never from the URI's spelling: ``qemu+tcp://localhost:PORT``
is often an SSH tunnel to another host.

Connectors record their verdict here when they connect, so that code which holds only a VM
record (its ``uri``) — the watch daemon's event path, the power-on judge — asks the same
question and gets the same answer without a libvirt import. A URI never connected to in this
process is not local: unknown locality must never make a path of another host readable.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_local: dict[str, bool] = {}


def remember(uri: str, local: bool) -> None:
    """Record what a connection to ``uri`` found (the latest connection wins)."""
    with _lock:
        _local[uri] = local


def known_local(uri: str) -> bool:
    """Whether ``uri`` was found to reach this machine. The libvirt test driver is local by
    definition (its domains and their files are described by a file here)."""
    if uri.startswith("test:"):
        return True
    with _lock:
        return _local.get(uri, False)
