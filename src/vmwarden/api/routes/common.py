"""What several routers share: paging parameters, record conversions, VM lookup."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Path, Query

from vmwarden.api.schemas import Action, Page, Text, VmSummary
from vmwarden.errors import PolicyError, StoreError
from vmwarden.model import ActionRecord
from vmwarden.policy import Policy, load_policy
from vmwarden.store import Store
from vmwarden.store.pages import Key, decode, encode

T = TypeVar("T")
MAX_OFFSET = 2**31
MAX_ID = 2**62


class Paging:
    """``offset`` for the first pages a screen shows; ``cursor`` (the previous page's
    ``next_cursor``) to walk a long listing: it costs the same at any depth and neither
    repeats nor skips rows when rows come and go between pages (``store.pages``)."""

    def __init__(
        self,
        limit: Annotated[int, Query(ge=1, le=500, description="Items per page.")] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip.")] = 0,
        cursor: Annotated[
            str | None,
            Query(max_length=2048, description="The previous page's next_cursor."),
        ] = None,
    ) -> None:
        self.limit = limit
        self.offset = offset
        self.cursor = cursor

    def after(self, types: tuple[type, ...]) -> Key | None:
        """The sort key the cursor holds (None without one); 422 when it is not one of
        this listing's cursors, or comes with an offset."""
        if self.cursor is None:
            return None
        if self.offset:
            raise HTTPException(422, detail="give cursor or offset, not both")
        try:
            return decode(self.cursor, types)
        except ValueError as exc:
            raise HTTPException(
                422, detail=f"bad cursor ({exc}): pass a page's next_cursor as it came"
            ) from None

    def page(self, items: list[T], total: int, last: Key | None = None) -> Page[T]:
        """One page of a listing: its items (already API records) and the total matched;
        ``last``: the sort key of its last row, handed out as ``next_cursor`` when the page
        is full (a shorter page is the last)."""
        more = last is not None and len(items) == self.limit
        return Page(
            items=items,
            total=total,
            limit=self.limit,
            offset=self.offset,
            next_cursor=encode(last) if more and last is not None else None,
        )


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
