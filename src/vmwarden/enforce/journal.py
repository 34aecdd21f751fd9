"""Opening a journal entry about one VM: its identity, who acts, why, and what will change.

Every executor and quarantine/release open entries the same way; the subject is the VM itself
or, for a release, the quarantine entry it undoes (both carry the VM's id, name, host, uri).
"""

from __future__ import annotations

from typing import Any

from vmwarden.model import VM, ActionRecord


def journal_begin(
    store: Any,
    action: str,
    subject: VM | ActionRecord,
    *,
    actor: str,
    reason: str,
    rule: str | None,
    changes: dict[str, Any],
    parent_id: int | None = None,
) -> int:
    """Journal ``action`` on ``subject`` before anything changes; returns the entry id."""
    return store.journal_begin(
        action,
        vm_id=subject.id,
        vm_name=subject.name,
        host=subject.host,
        uri=subject.uri,
        actor=actor,
        reason=reason,
        rule=rule,
        changes=changes,
        parent_id=parent_id,
    )
