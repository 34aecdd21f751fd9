"""Dashboard sessions that the server can take back.

The session cookie is Starlette's signed cookie, but a signature cannot be revoked: a copied
cookie would keep working until it expired. And its content is only base64, readable by
anyone who sees it. So the cookie carries one thing, a random session id
(:data:`SESSION_SID`), and the store keeps a row for it (only its SHA-256, see
:mod:`vmwarden.store.sessions`) naming the user -- never the user's id or any part of their
token. A request's session is valid only while that row exists, is younger than
``Settings.session_max_age`` and was used within ``Settings.session_idle``, its user is
enabled, and their token was not replaced since the session began. Signing out deletes the
row, so the same cookie, replayed later, is refused; disabling a user or rotating their token
deletes all of theirs. The CSRF token of a signed-in session is an HMAC of its id (nothing
more to store); before sign-in, the login form's is a random nonce in the cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets

from fastapi import Request

from vmwarden.api.deps import get_settings, get_store
from vmwarden.store import Store
from vmwarden.store.session_admin import public_id
from vmwarden.store.sessions import SessionsRepo
from vmwarden.store.users import User, UsersRepo

SESSION_SID = "vmwarden.sid"
SESSION_CSRF = "vmwarden.csrf"  # the login form's nonce, before a session exists
_KEPT = ("vmwarden.flash",)  # the dashboard's one-shot messages (vmwarden.web.auth.FLASH)


def source_of(request: Request) -> str:
    """The client's address, for throttling and a session's source.

    The socket peer, unless ``Settings.trust_proxy``: then the last hop of
    ``X-Forwarded-For`` (what the proxy in front of us saw), when it is an IP address. The
    servers run uvicorn with ``proxy_headers=False``, so the peer is never rewritten by it.
    """
    peer = request.client.host if request.client else "unknown"
    if not get_settings(request).trust_proxy:
        return peer
    return last_forwarded_hop(request.headers.getlist("x-forwarded-for")) or peer


def last_forwarded_hop(values: list[str]) -> str | None:
    """The last address of ``X-Forwarded-For`` header(s); None when absent or not an IP."""
    hops = [hop.strip() for value in values for hop in value.split(",") if hop.strip()]
    if not hops:
        return None
    try:
        return str(ipaddress.ip_address(hops[-1].strip("[]")))
    except ValueError:
        return None


def current_session_id(request: Request) -> str | None:
    """The public id of the request's own session (see ``store.session_admin``), if any."""
    sid = request.session.get(SESSION_SID) if "session" in request.scope else None
    return public_id(_digest(sid)) if isinstance(sid, str) else None


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def login_session(request: Request, user: User) -> str:
    """Start a session for ``user`` (after a successful sign-in); returns its CSRF token.

    The old session content is dropped first and a fresh id minted, so a session id cannot
    be fixed in advance. Sessions past their limits are purged here, not on every request.
    A token rotated while this sign-in ran ends the new session at once: the user is read
    again after the row exists, and a rotation after that read deletes the row itself.
    """
    settings = get_settings(request)
    store = get_store(request)
    repo = SessionsRepo(store)
    repo.purge_expired(max_age=settings.session_max_age, idle=settings.session_idle)
    sid = secrets.token_urlsafe(32)
    repo.create(_digest(sid), user.id, source=source_of(request))
    current = UsersRepo(store).get_user_by_id(user.id)
    request.session.clear()
    if current is None or current.disabled or current.token_id != user.token_id:
        repo.revoke(_digest(sid))
        return csrf_token(request)
    request.session[SESSION_SID] = sid
    return csrf_token(request)


def logout_session(request: Request) -> None:
    """End the session server-side (its cookie, replayed, is refused) and clear the cookie."""
    if "session" not in request.scope:
        return
    sid = request.session.get(SESSION_SID)
    if isinstance(sid, str):
        SessionsRepo(get_store(request)).revoke(_digest(sid))
    request.session.clear()


def session_user(request: Request, store: Store) -> User | None:
    """The user of the request's session, if its row is live and the user still valid."""
    if "session" not in request.scope:
        return None
    sid = request.session.get(SESSION_SID)
    if not isinstance(sid, str):
        if request.session.keys() - {SESSION_CSRF, *_KEPT}:
            request.session.clear()  # an old cookie's layout, or garbage: nothing to keep
        return None
    settings = get_settings(request)
    repo = SessionsRepo(store)
    live = repo.touch(_digest(sid), max_age=settings.session_max_age, idle=settings.session_idle)
    user = UsersRepo(store).get_user_by_id(live.user_id) if live else None
    valid = (
        live is not None
        and user is not None
        and not user.disabled
        and live.created_at >= user.token_rotated_at
    )
    if not valid:
        if live is not None:
            repo.revoke(_digest(sid))
        request.session.clear()
        return None
    for stale in request.session.keys() - {SESSION_SID, *_KEPT}:
        del request.session[stale]  # a cookie from before it held the id alone
    return user


def csrf_token(request: Request) -> str:
    """The session's CSRF token: an HMAC of its id, or before sign-in a nonce (made once)."""
    sid = request.session.get(SESSION_SID)
    if isinstance(sid, str):
        return _session_csrf(request, sid)
    token = request.session.get(SESSION_CSRF)
    if not isinstance(token, str) or not token:
        token = request.session[SESSION_CSRF] = secrets.token_urlsafe(32)
    return token


def check_csrf(request: Request, submitted: str | None) -> bool:
    if "session" not in request.scope or not submitted:
        return False
    sid = request.session.get(SESSION_SID)
    expected = _session_csrf(request, sid) if isinstance(sid, str) else None
    if expected is None:
        nonce = request.session.get(SESSION_CSRF)
        expected = nonce if isinstance(nonce, str) and nonce else None
    return expected is not None and hmac.compare_digest(expected.encode(), submitted.encode())


def _session_csrf(request: Request, sid: str) -> str:
    key = get_settings(request).session_secret.encode()
    return hmac.new(key, b"csrf\0" + sid.encode(), hashlib.sha256).hexdigest()
