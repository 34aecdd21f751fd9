"""What several routers share: paging parameters, record conversions, VM lookup."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Path, Query

from vmwarden.api.schemas import Action, Page, Text, VmSummary
from vmwarden.errors import PolicyError, StoreError
from vmwarden.model import ActionRecord
from vmwarden.policy import Policy, load_policy
from vmwarden.store import Store

T = TypeVar("T")
MAX_OFFSET = 2**31
MAX_ID = 2**62


class Paging:
    def __init__(
        self,
        limit: Annotated[int, Query(ge=1, le=500, description="Items per page.")] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip.")] = 0,
    ) -> None:
        self.limit = limit
        self.offset = offset

    def page(self, items: list[T], total: int) -> Page[T]:
        """One page of a listing: its items (already API records) and the total matched."""
        return Page(items=items, total=total, limit=self.limit, offset=self.offset)


PagingDep = Annotated[Paging, Depends()]
VmKey = Annotated[str, Path(min_length=1, max_length=255, description="VM UUID or name.")]
RowId = Annotated[int, Path(ge=1, le=MAX_ID)]
Filter = Annotated[Text | None, Query()]


def action_out(rec: ActionRecord) -> Action:
    return Action(
        id=rec.journal_id or 0,
        action=rec.action,
        vm_id=rec.id or None,
        vm_name=rec.name or None,
        host=rec.host or None,
        status=rec.status,
        actor=rec.actor,
        reason=rec.reason,
        rule=rec.rule,
        changes=dict(rec.changes),
        error=rec.error,
        created_at=rec.created_at,
        updated_at=rec.updated_at,
    )


def vm_summary_fields(record: dict[str, Any]) -> dict[str, Any]:
    meta = record.get("meta") or {}
    nics = record.get("nics") or []
    return {
        "id": record["id"],
        "name": record["name"],
        "host": record["host"],
        "uri": record["uri"],
        "state": record["state"],
        "persistent": record.get("persistent"),
        "vcpus": record.get("vcpus"),
        "memory_kib": record.get("memory_kib"),
        "owner": meta.get("owner"),
        "classification": meta.get("classification"),
        "template": meta.get("template"),
        "registered": meta.get("registered"),
        "macs": [n["mac"] for n in nics if n.get("mac")],
        "networks": sorted({n["network"] for n in nics if n.get("network")}),
        "first_seen": record.get("first_seen"),
        "last_seen": record.get("last_seen"),
        "state_since": record.get("state_since"),
        "gone_at": record.get("gone_at"),
    }


def vm_summary(record: dict[str, Any]) -> VmSummary:
    return VmSummary(**vm_summary_fields(record))


def find_vm(store: Store, key: str) -> dict[str, Any]:
    """The stored VM named by UUID or name: 404 when unknown, 409 when the name is ambiguous."""
    try:
        record = store.get_vm(key)
    except StoreError as exc:
        if "ambiguous" in str(exc) or "several VMs" in str(exc):
            raise HTTPException(409, detail=f"{exc}; name the VM by its UUID") from None
        raise
    if record is None:
        raise HTTPException(404, detail=f"no VM {key!r} in the store (run a scan?)")
    return record


def server_policy(path: Any) -> Policy:
    if path is None:
        raise PolicyError(
            "this server has no policy", hint="start it with -p POLICY (vmwarden serve -p …)"
        )
    return load_policy(path)


def vm_filter(store: Store, key: str | None) -> str | None:
    """A VM filter's id: the VM's UUID when known, else the key (matching nothing)."""
    if not key:
        return None
    try:
        record = store.get_vm(key)
    except StoreError:
        raise HTTPException(409, detail=f"VM name {key!r} is ambiguous; use its UUID") from None
    return record["id"] if record else key
