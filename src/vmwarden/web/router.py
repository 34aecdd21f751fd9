"""``build_router(settings)``: the dashboard's pages, included by the API's ``create_app``.

Pages are server-rendered (Jinja2, :mod:`.http`); reads go through the store, the one write
(release) through :mod:`vmwarden.web.actions` after the CSRF check and then the role check.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from vmwarden.api.auth import (
    authenticate_token,
    check_csrf,
    login_session,
    logout_session,
    session_user,
)
from vmwarden.api.deps import get_state, get_store
from vmwarden.errors import VmwardenError
from vmwarden.web import estate
from vmwarden.web.actions import release_vm
from vmwarden.web.auth import can
from vmwarden.web.http import flash, guarded, page, post_user, redirect, refuse, signed_in
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
    router.add_api_route("/quarantine/{vm_id}/release", release, methods=["POST"])
    router.add_api_route("/audit", audit, methods=["GET"])
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
    user = authenticate_token(get_store(request), token) if token else None
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
        ctx = vm_detail_page(get_store(request), vm_id)
    except VmwardenError as exc:
        return refuse(request, user, 404, str(exc))
    if ctx is None:
        return refuse(request, user, 404, f"No VM {vm_id!r} in the store.")
    return page(request, user, "vm.html", **ctx)


@guarded
def findings(request: Request, severity: str = "", rule: str = "") -> Response:
    user = signed_in(request)
    rows = [
        f
        for f in get_store(request).findings(status="open")
        if (not severity or f["severity"] == severity) and (not rule or f["rule"] == rule)
    ]
    rank = {s: i for i, s in enumerate(estate.SEVERITIES)}
    rows.sort(key=lambda f: (rank.get(f["severity"], 9), f["rule"], f["host"], f["name"]))
    ctx = {"findings": rows, "severity": severity, "rule": rule}
    return page(request, user, "findings.html", **ctx)


@guarded
def images(request: Request, orphaned: int = 0) -> Response:
    user = signed_in(request)
    store = get_store(request)
    rows = store.list_images()
    if orphaned:
        rows = estate.orphaned_images(rows, store.list_vms())
    return page(request, user, "images.html", images=rows, orphaned=bool(orphaned))


@guarded
def quarantine_queue(request: Request) -> Response:
    user = signed_in(request)
    store = get_store(request)
    held = estate.quarantined(store)
    known = {vm["id"]: vm for vm in store.list_vms(include_gone=True)}
    return page(request, user, "quarantine.html", held=held, vms=known)


async def release(
    request: Request,
    vm_id: str,
    reason: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    user = await run_in_threadpool(post_user, request, csrf_token)
    if isinstance(user, Response):
        return user
    if not can(user.role, "release"):
        msg = f"Your role ({user.role}) may look at the queue but not release."
        return refuse(request, user, 403, msg)
    back = "/quarantine" if request.query_params.get("from") != "vm" else f"/vms/{vm_id}"
    if not reason.strip():
        flash(request, "error", "Say what was fixed: a release needs a reason.")
        return redirect(back)
    try:
        rec = await run_in_threadpool(release_vm, get_state(request), user.name, vm_id, reason)
    except VmwardenError as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        flash(request, "error", f"Release failed: {exc}{hint}")
        return redirect(back)
    if rec.status == "done":
        flash(request, "ok", f"Released {rec.name}: journal #{rec.journal_id}.")
    else:
        detail = rec.error or "see the audit log"
        flash(request, "error", f"Release of {rec.name} is {rec.status}: {detail}")
    return redirect(back)


@guarded
def audit(
    request: Request,
    actor: str = "",
    action: str = "",
    vm: str = "",
    page_no: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
) -> Response:
    user = signed_in(request)
    ctx = audit_page(get_store(request), actor=actor, action=action, vm=vm, page_no=page_no)
    return page(request, user, "audit.html", **ctx)
