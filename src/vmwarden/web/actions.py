"""The dashboard's writes: release a quarantined VM (the only write a browser makes today).

One code path with the CLI's ``vmwarden release``: the VM's host is reached through the
connector registry and the release goes through :class:`~vmwarden.enforce.Quarantiner`, which
journals who, when and why before touching the hypervisor. When the API grows a service
function for release, this module should call it instead (see ``vmwarden.web`` docstring).
"""

from __future__ import annotations

from typing import Any

from vmwarden.connectors import open_connector
from vmwarden.enforce import Quarantiner
from vmwarden.errors import EnforceError
from vmwarden.model import ActionRecord


def release_vm(store: Any, actor: str, vm_id: str, reason: str) -> ActionRecord:
    """Undo the quarantine holding ``vm_id`` on its host; raises EnforceError when it cannot."""
    reason = reason.strip()
    if not reason:
        raise EnforceError("release needs a reason", hint="say what was fixed, for the audit log")
    active = store.active_quarantine(vm_id)
    if active is None:
        raise EnforceError(
            f"VM {vm_id} is not quarantined by vmwarden; nothing to release",
            hint="it may have been released already: see the audit log",
        )
    uri = active.uri
    if not uri:
        record = store.get_vm(vm_id)
        uri = record["uri"] if record else ""
    if not uri:
        raise EnforceError(f"no host is known for VM {vm_id}", hint="run a scan first")
    with open_connector(uri) as conn:
        return Quarantiner(store, actor).release(conn, vm_id, reason=reason)
