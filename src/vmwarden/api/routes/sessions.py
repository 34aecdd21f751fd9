"""Dashboard sign-in sessions: who is signed in from where, and ending a session.

Every role reads everyone's sessions (``GET /sessions``: access reviews are an auditor's
job; a listing names no cookie), only an admin ends another's; every user ends their own
(``/me/sessions``: the laptop left signed in at the office), since that changes nothing but
their own access. Ending one deletes its row -- the cookie is refused
from the next request on -- and is journaled (``session-end``) with who, why and whose.
A session is named by its public id (a prefix of the stored hash), never by the cookie.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request

from vmwarden.api.auth import AdminUser, CurrentUser
from vmwarden.api.deps import SettingsDep, StoreDep
from vmwarden.api.routes.common import PagingDep
from vmwarden.api.schemas import Page, SessionEndIn, SessionOut, UserName
from vmwarden.api.sessions import current_session_id
from vmwarden.api.settings import Settings
from vmwarden.store import Store
from vmwarden.store.session_admin import (
    PUBLIC_ID_PATTERN,
    SessionInfo,
    end_session,
    list_sessions,
)
from vmwarden.store.users import User

router = APIRouter(tags=["sessions"])
SessionKey = Annotated[
    str, Path(pattern=PUBLIC_ID_PATTERN, description="A session's public id (16 hex digits).")
]


def _out(info: SessionInfo, request: Request) -> SessionOut:
    return SessionOut(**info.to_dict(), current=info.id == current_session_id(request))


def _page(
    request: Request, store: Store, settings: Settings, paging: PagingDep, user: str | None
) -> Page[SessionOut]:
    items, total = list_sessions(
        store,
        limits=settings.session_limits,
        user=user,
        limit=paging.limit,
        offset=paging.offset,
    )
    return paging.page([_out(i, request) for i in items], total)


def _end(
    request: Request,
    store: Store,
    settings: Settings,
    session_id: str,
    body: SessionEndIn,
    actor: User,
    *,
    own: bool,
) -> SessionOut:
    ended = end_session(
        store,
        session_id,
        actor=actor.name,
        reason=body.reason,
        limits=settings.session_limits,
        user=actor.name if own else None,
    )
    if ended is None:
        whose = "of yours " if own else ""
        raise HTTPException(404, detail=f"no live session {whose}with id {session_id}")
    return _out(ended, request)


@router.get(
    "/sessions", response_model=Page[SessionOut], summary="Live sign-in sessions (any role)"
)
def sessions(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    _user: CurrentUser,
    paging: PagingDep,
    user: Annotated[UserName | None, Query(description="Only this user's sessions.")] = None,
) -> Page[SessionOut]:
    """Most recently used first; sessions past the idle or age limit are not listed."""
    return _page(request, store, settings, paging, user)


@router.delete(
    "/sessions/{session_id}",
    response_model=SessionOut,
    summary="End a session (admin; journaled with the reason)",
    responses={404: {"description": "no live session with that id"}},
)
def end(
    request: Request,
    session_id: SessionKey,
    body: SessionEndIn,
    store: StoreDep,
    settings: SettingsDep,
    user: AdminUser,
) -> SessionOut:
    """Its cookie is refused from the next request on."""
    return _end(request, store, settings, session_id, body, user, own=False)


@router.get("/me/sessions", response_model=Page[SessionOut], summary="The caller's sessions")
def my_sessions(
    request: Request, store: StoreDep, settings: SettingsDep, user: CurrentUser, paging: PagingDep
) -> Page[SessionOut]:
    return _page(request, store, settings, paging, user.name)


@router.delete(
    "/me/sessions/{session_id}",
    response_model=SessionOut,
    summary="End one of the caller's own sessions (any role; journaled)",
    responses={404: {"description": "no live session of the caller with that id"}},
)
def end_mine(
    request: Request,
    session_id: SessionKey,
    body: SessionEndIn,
    store: StoreDep,
    settings: SettingsDep,
    user: CurrentUser,
) -> SessionOut:
    """Another user's session id answers 404, as an unknown one does."""
    return _end(request, store, settings, session_id, body, user, own=True)
