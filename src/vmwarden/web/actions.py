"""The dashboard's writes: release a quarantined VM (the only write a browser makes today).

The same steps as the API's ``POST /api/vms/{vm}/release`` (``vmwarden.api.routes.vms``):
the VM must still exist, its host is reached through the app's connection pool (one open
connection per URI, as the API uses: the test driver keeps its state in the connection), and
:class:`~vmwarden.enforce.Quarantiner` journals who, when and why before touching the host.
When the API exposes this as a service function, call that instead.
"""

from __future__ import annotations

from typing import Any

from vmwarden.enforce import Quarantiner
from vmwarden.errors import EnforceError
from vmwarden.model import ActionRecord


def release_vm(state: Any, actor: str, vm_id: str, reason: str) -> ActionRecord:
    """Undo the quarantine holding ``vm_id``; raises a VmwardenError saying why it cannot."""
    store = state.store
    reason = reason.strip()
    if not reason:
        raise EnforceError("release needs a reason", hint="say what was fixed, for the audit log")
    record = store.get_vm(vm_id)
    if record is None:
        raise EnforceError(f"VM {vm_id} is not in the store", hint="run a scan first")
    if record.get("gone_at"):
        raise EnforceError(
            f"VM {record['name']} is gone from its host since the last scan",
            hint="nothing to release: it no longer exists there",
        )
    if store.active_quarantine(record["id"]) is None:
        raise EnforceError(
            f"VM {record['name']} is not quarantined by vmwarden; nothing to release",
            hint="it may have been released already: see the audit log",
        )
    with state.connections.connection(record["uri"]) as conn:
        return Quarantiner(store, actor).release(conn, record["id"], reason=reason)
