"""Time-limited policy exceptions: requested by one person, approved by another."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query

from vmwarden.api.auth import AdminUser, CurrentUser, OperatorUser
from vmwarden.api.deps import SettingsDep, StoreDep
from vmwarden.api.routes.common import (
    Filter,
    PagingDep,
    RowId,
    find_vm,
    server_policy,
    vm_filter,
)
from vmwarden.api.schemas import DecisionIn, ExceptionIn, ExceptionOut, Page
from vmwarden.store.base import utcnow
from vmwarden.store.exceptions import ExceptionsRepo

router = APIRouter(prefix="/exceptions", tags=["exceptions"])
MAX_DURATION = timedelta(days=366)


@router.get("", response_model=Page[ExceptionOut], summary="Exceptions, newest first")
def list_exceptions(
    store: StoreDep,
    _user: CurrentUser,
    paging: PagingDep,
    status: Literal["requested", "approved", "rejected", "expired"] | None = None,
    vm: Annotated[Filter, Query(description="VM UUID or name.")] = None,
    rule: Filter = None,
) -> Page[ExceptionOut]:
    vm_id = vm_filter(store, vm)
    items, total = ExceptionsRepo(store).list_exceptions(
        status=status, vm_id=vm_id, rule=rule, limit=paging.limit, offset=paging.offset
    )
    return paging.page([ExceptionOut(**e) for e in items], total)


@router.get("/{exception_id}", response_model=ExceptionOut, summary="One exception")
def get_exception(exception_id: RowId, store: StoreDep, _user: CurrentUser) -> ExceptionOut:
    found = ExceptionsRepo(store).get_exception(exception_id)
    if found is None:
        raise HTTPException(404, detail=f"no exception {exception_id}")
    return ExceptionOut(**found)


@router.post(
    "",
    response_model=ExceptionOut,
    status_code=201,
    summary="Request an exception (operator)",
)
def request_exception(
    body: ExceptionIn, store: StoreDep, settings: SettingsDep, user: OperatorUser
) -> ExceptionOut:
    """Ask that one VM may break one rule until a date (at most a year). It takes effect
    only once another person approves it."""
    now = utcnow()
    if body.until <= now:
        raise HTTPException(422, detail="until must be in the future")
    if body.until - now > MAX_DURATION:
        raise HTTPException(422, detail="an exception lasts at most 366 days; ask again later")
    if settings.policy_path is not None:
        names = [r.name for r in server_policy(settings.policy_path).rules]
        if body.rule not in names:
            raise HTTPException(
                422, detail=f"no rule {body.rule!r} in the policy (valid: {', '.join(names)})"
            )
    record = find_vm(store, body.vm)
    created = ExceptionsRepo(store).request_exception(
        body.rule, record["id"], record["name"], body.until, body.reason, actor=user.name
    )
    return ExceptionOut(**created)


def _decide(
    exception_id: int, body: DecisionIn, store: StoreDep, user: AdminUser, *, approve: bool
) -> ExceptionOut:
    decided = ExceptionsRepo(store).decide_exception(
        exception_id, approve=approve, actor=user.name, reason=body.reason or None
    )
    if decided is None:
        raise HTTPException(404, detail=f"no exception {exception_id}")
    return ExceptionOut(**decided)


@router.post(
    "/{exception_id}/approve",
    response_model=ExceptionOut,
    summary="Approve an exception (admin; not the requester)",
)
def approve_exception(
    exception_id: RowId, body: DecisionIn, store: StoreDep, user: AdminUser
) -> ExceptionOut:
    """403 when the approver requested it; 409 when it was already decided."""
    return _decide(exception_id, body, store, user, approve=True)


@router.post(
    "/{exception_id}/reject",
    response_model=ExceptionOut,
    summary="Reject an exception (admin; not the requester)",
)
def reject_exception(
    exception_id: RowId, body: DecisionIn, store: StoreDep, user: AdminUser
) -> ExceptionOut:
    return _decide(exception_id, body, store, user, approve=False)
