"""Who is calling, and what their role lets them do.

Interface for the API routes and for the dashboard (``vmwarden.web``):

- A request is authenticated by **either** ``Authorization: Bearer vmw_…`` (an API token,
  see :mod:`vmwarden.api.tokens`) **or** a session the web layer established. Nothing else:
  there are no default credentials and no anonymous access except ``/api/health``.
- The session is Starlette's signed cookie (``SessionMiddleware``, installed by
  ``create_app`` with ``Settings.session_secret``; HttpOnly, SameSite=Lax, name
  :data:`SESSION_COOKIE`) holding only the random id of a server-side session row
  (:mod:`vmwarden.api.sessions`; never the user's id nor any part of their token):
  signing out, disabling the user or rotating their token deletes it, so a copied cookie
  stops working then. The web layer logs a user in with
  ``user = sign_in(request, store, token, via="form")`` then ``login_session(request, user)``,
  and out with ``logout_session(request)``.
- Every token check from a request goes through :func:`vmwarden.api.throttle.sign_in`:
  failures are journaled and throttled per address and account (429 + Retry-After).
- Forms: ``csrf_token(request)`` gives the session's CSRF token to put in a hidden field;
  ``check_csrf(request, submitted)`` checks it. API calls authenticated by the session
  cookie (e.g. ``fetch`` from a page) must send it as header :data:`CSRF_HEADER` on every
  non-GET request; bearer-token calls need no CSRF token (browsers never send them alone).
- Dependencies: ``CurrentUser`` (any role, 401 otherwise), ``OperatorUser``, ``AdminUser``,
  or ``Depends(require_role("operator"))`` (403 for a lower role); ``MaybeUser`` is the
  user or ``None`` (for pages that redirect to a login form instead of answering 401).
  Plain function: ``user_from_request(request, store)``.

Roles: ``auditor`` reads; ``operator`` also quarantines, releases, acknowledges findings and
requests exceptions; ``admin`` also approves templates and exceptions, manages users and
triggers scans.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from vmwarden.api.deps import StoreDep
from vmwarden.api.sessions import (
    SESSION_CSRF,
    SESSION_SID,
    check_csrf,
    csrf_token,
    login_session,
    logout_session,
    session_user,
)
from vmwarden.api.throttle import Throttled, credentials, sign_in, verified
from vmwarden.store import Store
from vmwarden.store.users import ROLES, User

__all__ = [
    "SESSION_CSRF",
    "SESSION_SID",
    "Throttled",
    "authenticate_token",
    "check_csrf",
    "csrf_token",
    "login_session",
    "logout_session",
    "session_user",
    "sign_in",
]

SESSION_COOKIE = "vmwarden_session"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_RANK = {role: i for i, role in enumerate(ROLES)}


def authenticate_token(store: Store, token: str) -> User | None:
    """The enabled user holding ``token``, or None (unknown, wrong, or disabled).

    Not throttled nor journaled: for callers outside a request; requests use ``sign_in``.
    """
    return verified(credentials(store, token), token)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def user_from_request(request: Request, store: Store) -> User | None:
    """The caller: bearer token first, else the web session; None when neither is valid.

    A request that presents an ``Authorization`` header is judged by it alone (a wrong token
    is not rescued by a cookie).
    """
    token = _bearer(request)
    if token is None:
        return session_user(request, store)
    try:
        return sign_in(request, store, token, via="bearer")
    except Throttled as exc:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"{exc}: too many failed sign-ins from this address or for this account",
            headers={"Retry-After": str(exc.retry_after)},
        ) from exc


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


# Declares the scheme in the OpenAPI document; the header itself is read by _bearer.
_scheme = HTTPBearer(auto_error=False, description="An API token from `vmwarden user add`.")


def current_user(
    request: Request,
    store: StoreDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_scheme)] = None,
) -> User:
    """Dependency: the authenticated user, or 401; session calls that write need CSRF."""
    if _bearer(request) is None and "session" in request.scope:
        user = session_user(request, store)
        if (
            user is not None
            and request.method not in _SAFE_METHODS
            and not check_csrf(request, request.headers.get(CSRF_HEADER))
        ):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"a session request that writes needs the {CSRF_HEADER} header",
            )
        if user is not None:
            return user
        raise _unauthorized("authentication required: send Authorization: Bearer <token>")
    user = user_from_request(request, store)
    if user is None:
        if _bearer(request) is None:
            raise _unauthorized("authentication required: send Authorization: Bearer <token>")
        raise _unauthorized("token refused (unknown, wrong, rotated or user disabled)")
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def require_role(role: str) -> Callable[[User], User]:
    """Dependency factory: the current user if their role is ``role`` or higher, else 403."""
    if role not in _RANK:
        raise ValueError(f"unknown role {role!r} (valid: {', '.join(ROLES)})")

    def dependency(user: CurrentUser) -> User:
        if _RANK.get(user.role, -1) < _RANK[role]:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"this needs the {role} role; {user.name} is {user.role}",
            )
        return user

    return dependency


def optional_user(request: Request, store: StoreDep) -> User | None:
    """Dependency: the user or None (no 401), for pages that redirect to a login form."""
    return user_from_request(request, store)


OperatorUser = Annotated[User, Depends(require_role("operator"))]
AdminUser = Annotated[User, Depends(require_role("admin"))]
MaybeUser = Annotated[User | None, Depends(optional_user)]
