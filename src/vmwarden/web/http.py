"""What every dashboard response shares: rendering, security headers, sign-in and CSRF checks.

Sessions, tokens and CSRF tokens are the API's (:mod:`vmwarden.api.auth`): a page asked for
without a signed-in session redirects to ``/login``; a POST is refused (401/403) unless its
session is signed in and its form carries that session's CSRF token.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vmwarden.api.auth import check_csrf, csrf_token, session_user
from vmwarden.api.deps import get_store
from vmwarden.store.users import User
from vmwarden.web.auth import FLASH, can
from vmwarden.web.render import Renderer

CSRF_FIELD = "csrf_token"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; connect-src 'self'"
)


class SignIn(Exception):
    pass


@functools.cache
def renderer() -> Renderer:
    """Built on first use (no work at import time), then shared: templates are immutable."""
    return Renderer()


def harden(response: Response) -> Response:
    """Headers every dashboard response carries (pages hold estate data: never cached)."""
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def flash(request: Request, kind: str, message: str) -> None:
    """A message for the next page this session shows (kept in the session, shown once)."""
    request.session[FLASH] = [*request.session.get(FLASH, []), [kind, message]][-5:]


def page(
    request: Request, user: User | None, template: str, *, status: int = 200, **ctx: Any
) -> Response:
    flashes = request.session.pop(FLASH, []) if "session" in request.scope else []
    html = renderer().render(
        template,
        request=request,
        user=user,
        csrf=csrf_token(request) if "session" in request.scope else "",
        csrf_field=CSRF_FIELD,
        can=lambda action: user is not None and can(user.role, action),
        flashes=flashes,
        now=datetime.now(UTC),
        **ctx,
    )
    return harden(HTMLResponse(html, status_code=status))


def redirect(to: str) -> Response:
    return harden(RedirectResponse(to, status_code=303))


def signed_in(request: Request) -> User:
    user = session_user(request, get_store(request))
    if user is None:
        raise SignIn
    return user


def guarded(handler: Callable[..., Response]) -> Callable[..., Response]:
    """A page asked for without a session goes to the login page, not to an error."""

    @functools.wraps(handler)
    def run(*args: Any, **kwargs: Any) -> Response:
        try:
            return handler(*args, **kwargs)
        except SignIn:
            return redirect("/login")

    return run


def refuse(request: Request, user: User | None, status: int, message: str) -> Response:
    return page(request, user, "error.html", status=status, code=status, message=message)


def post_user(request: Request, submitted: str) -> User | Response:
    """The signed-in user of a POST whose CSRF token matches the session's; else refusal."""
    user = session_user(request, get_store(request))
    if user is None:
        return refuse(request, None, 401, "Your session has ended. Sign in again.")
    if not check_csrf(request, submitted):
        return refuse(request, user, 403, "This form has expired or did not come from this site.")
    return user
