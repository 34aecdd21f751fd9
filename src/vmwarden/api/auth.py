"""Who is calling, and what their role lets them do.

Interface for the API routes and for the dashboard (``vmwarden.web``):

- A request is authenticated by **either** ``Authorization: Bearer vmw_…`` (an API token,
  see :mod:`vmwarden.api.tokens`) **or** a session the web layer established. Nothing else:
  there are no default credentials and no anonymous access except ``/api/health``.
- The session is Starlette's signed cookie (``SessionMiddleware``, installed by
  ``create_app`` with ``Settings.session_secret``; HttpOnly, SameSite=Lax, name
  :data:`SESSION_COOKIE`). The web layer logs a user in with
  ``user = authenticate_token(store, token)`` then ``login_session(request, user)``, and out
  with ``logout_session(request)``. The session holds the user's id and the *token id* at
  login, so disabling the user or rotating their token ends every session at once.
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

import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from vmwarden.api.deps import StoreDep
from vmwarden.api.tokens import token_id, verify
from vmwarden.store import Store
from vmwarden.store.users import ROLES, User, UsersRepo

SESSION_COOKIE = "vmwarden_session"
SESSION_USER = "vmwarden.user_id"
SESSION_TOKEN_ID = "vmwarden.token_id"
SESSION_CSRF = "vmwarden.csrf"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_RANK = {role: i for i, role in enumerate(ROLES)}

# Memo of "this token matches this stored hash" (by SHA-256 of the token), so a client
# polling the API does not pay an argon2 check per request. The user row is still read on
# every request: a disabled user or a rotated token is refused at once.
_VERIFIED: OrderedDict[str, str] = OrderedDict()
_VERIFIED_MAX = 1024
_verified_lock = threading.Lock()


def _matches(token: str, token_hash: str) -> bool:
    key = hashlib.sha256(token.encode()).hexdigest()
    with _verified_lock:
        if _VERIFIED.get(key) == token_hash:
            _VERIFIED.move_to_end(key)
            return True
    if not verify(token_hash, token):
        return False
    with _verified_lock:
        _VERIFIED[key] = token_hash
        while len(_VERIFIED) > _VERIFIED_MAX:
            _VERIFIED.popitem(last=False)
    return True


def authenticate_token(store: Store, token: str) -> User | None:
    """The enabled user holding ``token``, or None (unknown, wrong, or disabled)."""
    tid = token_id(token)
    if tid is None:
        return None
    found = UsersRepo(store).credentials(tid)
    if found is None:
        return None
    user, token_hash = found
    if user.disabled or not _matches(token, token_hash):
        return None
    return user


# -- sessions (established by the web layer) ----------------------------------------------


def login_session(request: Request, user: User) -> str:
    """Start a session for ``user`` (after :func:`authenticate_token`); returns its CSRF token.

    The old session content is dropped first, so a session id cannot be fixed in advance.
    """
    request.session.clear()
    request.session[SESSION_USER] = user.id
    request.session[SESSION_TOKEN_ID] = user.token_id
    return csrf_token(request)


def logout_session(request: Request) -> None:
    request.session.clear()


def session_user(request: Request, store: Store) -> User | None:
    """The user of the request's session, if it is still valid (enabled, token not rotated)."""
    if "session" not in request.scope:
        return None
    user_id = request.session.get(SESSION_USER)
    if not isinstance(user_id, int):
        return None
    user = UsersRepo(store).get_user_by_id(user_id)
    if user is None or user.disabled or user.token_id != request.session.get(SESSION_TOKEN_ID):
        request.session.clear()
        return None
    return user


def csrf_token(request: Request) -> str:
    """The session's CSRF token (created on first use)."""
    token = request.session.get(SESSION_CSRF)
    if not isinstance(token, str) or not token:
        token = request.session[SESSION_CSRF] = secrets.token_urlsafe(32)
    return token


def check_csrf(request: Request, submitted: str | None) -> bool:
    expected = request.session.get(SESSION_CSRF) if "session" in request.scope else None
    return bool(
        isinstance(expected, str)
        and expected
        and submitted
        and hmac.compare_digest(expected.encode(), submitted.encode())
    )


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
    if token is not None:
        return authenticate_token(store, token) if token else None
    return session_user(request, store)


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
