"""Actions carried out on VMs (the journal's VM entries): quarantines, releases, tags…"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from vmwarden.api.auth import CurrentUser
from vmwarden.api.deps import StoreDep
from vmwarden.api.routes.common import Filter, PagingDep, RowId, action_out, vm_filter
from vmwarden.api.schemas import Action, Page
from vmwarden.errors import StoreError
from vmwarden.store.pages import ID_KEY, JournalQuery, Pages

router = APIRouter(prefix="/actions", tags=["actions"])


@router.get("", response_model=Page[Action], summary="Actions on VMs, newest first")
def list_actions(
    store: StoreDep,
    _user: CurrentUser,
    paging: PagingDep,
    action: Filter = None,
    status: Filter = None,
    vm: Annotated[Filter, Query(description="VM UUID or name.")] = None,
) -> Page[Action]:
    vm_id = vm_filter(store, vm)
    query = JournalQuery(vm_only=True, action=action, status=status, vm_id=vm_id)
    after = paging.after(ID_KEY)
    items, total = Pages(store).journal(
        query, limit=paging.limit, offset=paging.offset, after=after
    )
    last = (items[-1].journal_id,) if items else None
    return paging.page([action_out(a) for a in items], total, last)


@router.get("/{action_id}", response_model=Action, summary="One journal entry")
def get_action(action_id: RowId, store: StoreDep, _user: CurrentUser) -> Action:
    try:
        return action_out(store.journal_get(action_id))
    except StoreError:
        raise HTTPException(404, detail=f"no journal entry {action_id}") from None
