"""Quarantine and release as the API and the dashboard both perform them: one code path.

Callers resolve the VM record (and refuse a gone VM in their own words); these functions
take the policy's quarantine spec, reach the VM's host through the app's connection pool
and let the ``Quarantiner`` journal who, when and why before touching the host.
"""

from __future__ import annotations

from typing import Any

from vmwarden.api.routes.common import server_policy
from vmwarden.enforce import Quarantiner, QuarantineSpec
from vmwarden.errors import EnforceError
from vmwarden.model import ActionRecord


def quarantine_spec(settings: Any) -> QuarantineSpec:
    """The policy's ``quarantine:`` block (network, link down)."""
    q = server_policy(settings.policy_path).quarantine
    if q is None:
        raise EnforceError(
            "the policy has no quarantine: block", hint="add quarantine: {network: NAME}"
        )
    return q.spec()


def quarantine_record(state: Any, actor: str, record: dict[str, Any], reason: str) -> ActionRecord:
    """Move every NIC of the stored VM ``record`` to the quarantine network, link down."""
    spec = quarantine_spec(state.settings)
    with state.connections.connection(record["uri"]) as conn:
        target = conn.lookup(record["id"])
        return Quarantiner(state.store, actor).quarantine(
            conn, target, spec, reason=reason, rule=None
        )


def release_record(
    state: Any, actor: str, record: dict[str, Any], reason: str, on_changes: str = "refuse"
) -> ActionRecord:
    """Put back exactly what the quarantine of ``record`` changed; a NIC changed during
    quarantine is refused (``ReleaseConflict``), kept (``keep``) or overwritten (``force``)."""
    with state.connections.connection(record["uri"]) as conn:
        return Quarantiner(state.store, actor).release(
            conn,
            record["id"],
            reason=reason,
            force=on_changes == "force",
            keep_changes=on_changes == "keep",
        )
