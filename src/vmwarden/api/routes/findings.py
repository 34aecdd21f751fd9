"""Findings across sweeps, and acknowledging one."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query

from vmwarden.api.auth import CurrentUser, OperatorUser
from vmwarden.api.deps import StoreDep
from vmwarden.api.routes.common import Filter, PagingDep, RowId
from vmwarden.api.schemas import AcknowledgeIn, Acknowledgement, FindingOut, Page
from vmwarden.store.base import utcnow
from vmwarden.store.exceptions import ExceptionsRepo
from vmwarden.store.pages import ID_KEY, FindingQuery, Pages

router = APIRouter(prefix="/findings", tags=["findings"])
SeverityFilter = Literal["info", "low", "medium", "high", "critical"]


@router.get("", response_model=Page[FindingOut], summary="Findings, paged and filtered")
def list_findings(
    store: StoreDep,
    _user: CurrentUser,
    paging: PagingDep,
    status: Literal["open", "resolved"] | None = None,
    severity: Annotated[SeverityFilter | None, Query(description="This severity or worse.")] = None,
    rule: Filter = None,
    resource: Literal["vm", "image", "host"] | None = None,
    resource_id: Annotated[Filter, Query(description="VM UUID, image path or host.")] = None,
    host: Filter = None,
    acknowledged: bool | None = None,
) -> Page[FindingOut]:
    query = FindingQuery(
        status=status,
        severity=severity,
        rule=rule,
        resource=resource,
        resource_id=resource_id,
        host=host,
        acknowledged=acknowledged,
    )
    after = paging.after(ID_KEY)
    items, total = Pages(store).findings(
        query, limit=paging.limit, offset=paging.offset, after=after
    )
    last = (items[-1]["id"],) if items else None
    return paging.page([FindingOut(**f) for f in items], total, last)


@router.get("/{finding_id}", response_model=FindingOut, summary="One finding")
def get_finding(finding_id: RowId, store: StoreDep, _user: CurrentUser) -> FindingOut:
    found = Pages(store).finding(finding_id)
    if found is None:
        raise HTTPException(404, detail=f"no finding {finding_id}")
    return FindingOut(**found)


@router.post(
    "/{finding_id}/acknowledge",
    response_model=Acknowledgement,
    status_code=201,
    summary="Acknowledge a finding (operator)",
)
def acknowledge(
    finding_id: RowId, body: AcknowledgeIn, store: StoreDep, user: OperatorUser
) -> Acknowledgement:
    """Record that the finding is known and why, optionally until a date (then it shows as
    unacknowledged again). The finding stays open: only a sweep resolves it."""
    if body.until is not None and body.until <= utcnow():
        raise HTTPException(422, detail="until must be in the future")
    ack = ExceptionsRepo(store).acknowledge(
        finding_id, actor=user.name, reason=body.reason, until=body.until
    )
    if ack is None:
        raise HTTPException(404, detail=f"no finding {finding_id}")
    return Acknowledgement(**ack)
