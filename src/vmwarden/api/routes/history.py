"""Forensics across VMs: which VM had this MAC, was on this host or network, and when."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from vmwarden.api.auth import CurrentUser
from vmwarden.api.deps import StoreDep
from vmwarden.api.routes.common import Filter, PagingDep, vm_filter
from vmwarden.api.schemas import HistoryItem, Page
from vmwarden.store.pages import HISTORY_KEY, Pages

router = APIRouter(prefix="/history", tags=["history"])


@router.get("", response_model=Page[HistoryItem], summary="VM changes, newest first")
def list_history(
    store: StoreDep,
    _user: CurrentUser,
    paging: PagingDep,
    vm: Annotated[Filter, Query(description="VM UUID or name.")] = None,
    field: Literal["host", "state", "mac", "network", "name"] | None = None,
    value: Annotated[Filter, Query(description="Old or new value contains (e.g. a MAC).")] = None,
) -> Page[HistoryItem]:
    vm_id = vm_filter(store, vm)
    items, total = Pages(store).history(
        vm_id=vm_id,
        field=field,
        value=value,
        limit=paging.limit,
        offset=paging.offset,
        after=paging.after(HISTORY_KEY),
    )
    last = (items[-1]["at"], items[-1]["id"]) if items else None
    out = [HistoryItem(**{k: v for k, v in h.items() if k != "id"}) for h in items]
    return paging.page(out, total, last)
