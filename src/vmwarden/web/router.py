"""``build_router(settings)``: the dashboard's pages, included by the API's ``create_app``.

Pages are server-rendered (Jinja2, :mod:`.http`); reads go through the store, writes are the
form posts of :mod:`vmwarden.web.forms` (session, then CSRF, then role, then
:mod:`vmwarden.web.actions`, which takes the same steps as the matching API route).
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import Response

from vmwarden.api.auth import (
    Throttled,
    check_csrf,
    login_session,
    logout_session,
    session_user,
    sign_in,
)
from vmwarden.api.deps import get_state, get_store
from vmwarden.api.services import quarantine_spec
from vmwarden.api.sessions import current_session_id
from vmwarden.errors import VmwardenError
from vmwarden.store.session_admin import list_sessions
from vmwarden.web import estate, forms, review
from vmwarden.web.auth import can
from vmwarden.web.http import guarded, page, post_user, redirect, refuse, signed_in
from vmwarden.web.views import audit_page, overview_page, vm_detail_page, vms_page

STATIC = {"app.css": "text/css; charset=utf-8", "app.js": "text/javascript; charset=utf-8"}


def build_router(settings: Any = None) -> APIRouter:
    """The dashboard's routes. ``create_app(settings)`` includes it at the app's root, with
    the API's ``SessionMiddleware`` and ``app.state.vmwarden`` (which holds the store)."""
    router = APIRouter(include_in_schema=False)
    router.add_api_route("/static/{name}", static, methods=["GET"])
    router.add_api_route("/login", login_form, methods=["GET"])
    router.add_api_route("/login", login, methods=["POST"])
    router.add_api_route("/logout", logout, methods=["POST"])
    router.add_api_route("/", overview, methods=["GET"])
    router.add_api_route("/vms", vms, methods=["GET"])
    router.add_api_route("/vms/{vm_id}", vm_detail, methods=["GET"])
    router.add_api_route("/findings", findings, methods=["GET"])
    router.add_api_route("/images", images, methods=["GET"])
    router.add_api_route("/quarantine", quarantine_queue, methods=["GET"])
    router.add_api_route("/exceptions", exceptions, methods=["GET"])
    router.add_api_route("/templates", templates, methods=["GET"])
    router.add_api_route("/audit", audit, methods=["GET"])
    router.add_api_route("/sessions", sessions, methods=["GET"])
    # writes: every one a form post (session, CSRF token, role), see vmwarden.web.forms
    router.add_api_route("/vms/{vm_id}/quarantine", forms.quarantine, methods=["POST"])
    router.add_api_route("/quarantine/{vm_id}/release", forms.release, methods=["POST"])
    router.add_api_route("/findings/{finding_id}/acknowledge", forms.acknowledge, methods=["POST"])
    router.add_api_route("/exceptions", forms.request_exception, methods=["POST"])
    router.add_api_route(
        "/exceptions/{exception_id}/approve", forms.approve_exception, methods=["POST"]
    )
    router.add_api_route(
        "/exceptions/{exception_id}/reject", forms.reject_exception, methods=["POST"]
    )
    router.add_api_route("/templates", forms.approve_template, methods=["POST"])
    router.add_api_route("/sessions/{session_id}/end", forms.end_session, methods=["POST"])
    return router


# -- static -------------------------------------------------------------------------
def static(name: str) -> Response:
    if name not in STATIC:
        raise HTTPException(404)
    body = resources.files("vmwarden.web").joinpath("static", name).read_bytes()
    return Response(
        body,
        media_type=STATIC[name],
        headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
    )


# -- login / logout -----------------------------------------------------------------
def login_form(request: Request) -> Response:
    if session_user(request, get_store(request)) is not None:
        return redirect("/")
    return page(request, None, "login.html", error=None)


def login(
    request: Request,
    token: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    if not check_csrf(request, csrf_token):
        msg = "The sign-in form expired. Try again."
        return page(request, None, "login.html", status=403, error=msg)
    token = token.strip()
    try:
        user = sign_in(request, get_store(request), token, via="form")
    except Throttled as exc:
        msg = f"Too many failed sign-ins. Try again in {exc.retry_after} seconds."
        response = page(request, None, "login.html", status=429, error=msg)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if user is None:
        msg = "That token is not valid (unknown, rotated, or its user is disabled)."
        return page(request, None, "login.html", status=401, error=msg)
    login_session(request, user)
    return redirect("/")


def logout(request: Request, csrf_token: Annotated[str, Form()] = "") -> Response:
    user = post_user(request, csrf_token)
    if isinstance(user, Response):
        return user
    logout_session(request)
    return redirect("/login")


# -- pages --------------------------------------------------------------------------
@guarded
def overview(request: Request) -> Response:
    user = signed_in(request)
    return page(request, user, "overview.html", **overview_page(get_store(request)))


@guarded
def vms(request: Request, q: str = "", host: str = "", state: str = "", flag: str = "") -> Response:
    user = signed_in(request)
    ctx = vms_page(get_store(request), q=q, host=host, state=state, flag=flag)
    return page(request, user, "vms.html", **ctx)


@guarded
def vm_detail(request: Request, vm_id: str) -> Response:
    user = signed_in(request)
    try:
        ctx = vm_detail_page(get_store(request), vm_id, get_state(request).settings)
    except VmwardenError as exc:
        return refuse(request, user, 404, str(exc))
    if ctx is None:
        return refuse(request, user, 404, f"No VM {vm_id!r} in the store.")
    try:
        ctx["quarantine_to"], ctx["quarantine_off"] = (
            quarantine_spec(get_state(request).settings),
            None,
        )
    except VmwardenError as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        ctx["quarantine_to"], ctx["quarantine_off"] = None, f"{exc}{hint}"
    return page(request, user, "vm.html", **ctx)


@guarded
def findings(request: Request, severity: str = "", rule: str = "", ack: str = "") -> Response:
    user = signed_in(request)
    ctx = review.findings_page(get_store(request), severity=severity, rule=rule, ack=ack)
    return page(request, user, "findings.html", **ctx)


@guarded
def images(request: Request, orphaned: int = 0) -> Response:
    user = signed_in(request)
    store = get_store(request)
    rows = store.list_images()
    vms = store.list_vms(include_gone=True)
    if orphaned:
        rows = estate.orphaned_images(rows, [vm for vm in vms if vm.get("gone_at") is None])
    # "Used by" names the VMs (a UUID prefix tells an operator nothing); gone ones say so
    users = {vm["id"]: vm for vm in vms}
    return page(request, user, "images.html", images=rows, orphaned=bool(orphaned), users=users)


@guarded
def quarantine_queue(request: Request) -> Response:
    user = signed_in(request)
    store = get_store(request)
    held = estate.quarantined(store)
    known = {vm["id"]: vm for vm in store.list_vms(include_gone=True)}
    return page(request, user, "quarantine.html", held=held, vms=known)


@guarded
def exceptions(
    request: Request,
    status: str = "",
    vm: str = "",
    rule: str = "",
    page_no: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
) -> Response:
    user = signed_in(request)
    state = get_state(request)
    ctx = review.exceptions_page(
        state.store, state.settings, status=status, page_no=page_no, vm=vm, rule=rule
    )
    return page(request, user, "exceptions.html", **ctx)


@guarded
def templates(request: Request) -> Response:
    user = signed_in(request)
    state = get_state(request)
    return page(
        request, user, "templates.html", **review.templates_page(state.store, state.settings)
    )


@guarded
def audit(
    request: Request,
    actor: str = "",
    action: str = "",
    vm: str = "",
    page_no: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
    exclude: Annotated[list[str] | None, Query(max_length=32)] = None,
) -> Response:
    user = signed_in(request)
    ctx = audit_page(
        get_store(request), actor=actor, action=action, vm=vm, page_no=page_no, exclude=exclude
    )
    return page(request, user, "audit.html", **ctx)


@guarded
def sessions(request: Request) -> Response:
    """Every live sign-in session (any role: access reviews); admins get an end form each."""
    user = signed_in(request)
    if not can(user.role, "read-sessions"):
        return refuse(request, user, 403, f"Your role ({user.role}) may not see sign-in sessions.")
    state = get_state(request)
    items, total = list_sessions(state.store, limits=state.settings.session_limits, limit=500)
    ctx = {"sessions": items, "total": total, "current": current_session_id(request)}
    return page(request, user, "sessions.html", **ctx)
