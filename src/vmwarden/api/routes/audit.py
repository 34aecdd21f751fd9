"""The audit log: every journal entry (actions on VMs and operator events), newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from vmwarden.api.auth import CurrentUser
from vmwarden.api.deps import StoreDep
from vmwarden.api.routes.common import Filter, PagingDep, action_out, vm_filter
from vmwarden.api.schemas import Action, Page, Text
from vmwarden.store.pages import ID_KEY, JournalQuery, Pages

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", response_model=Page[Action], summary="Audit log: who did what, when, why")
def audit_log(
    store: StoreDep,
    _user: CurrentUser,
    paging: PagingDep,
    action: Annotated[Filter, Query(description="e.g. quarantine, user-add.")] = None,
    actor: Filter = None,
    vm: Annotated[Filter, Query(description="VM UUID or name.")] = None,
    since: Annotated[AwareDatetime | None, Query(description="At or after (ISO 8601).")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Before (ISO 8601).")] = None,
    exclude_action: Annotated[
        list[Text] | None,
        Query(max_length=32, description="Leave these actions out (repeat), e.g. notify."),
    ] = None,
) -> Page[Action]:
    vm_id = vm_filter(store, vm)
    query = JournalQuery(
        action=action,
        actor=actor,
        vm_id=vm_id,
        since=since,
        until=until,
        exclude_actions=tuple(exclude_action or ()),
    )
    after = paging.after(ID_KEY)
    items, total = Pages(store).journal(
        query, limit=paging.limit, offset=paging.offset, after=after
    )
    last = (items[-1].journal_id,) if items else None
    return paging.page([action_out(a) for a in items], total, last)
